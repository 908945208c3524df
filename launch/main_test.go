package launch

import (
	"os"
	"testing"

	"github.com/veil-dp/veil/sandbox"
)

// TestMain lets the test binary be its sandboxes' init (TestProbeMakesNoSpillArea).
func TestMain(m *testing.M) {
	sandbox.Init()
	os.Exit(m.Run())
}
