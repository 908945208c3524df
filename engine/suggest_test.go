package engine

import (
	"context"
	"strings"
	"testing"
)

// TestRefusalHints: an unknown column or dataset close to a granted one gets a "did you
// mean"; a double-quoted text read as a column gets a hint to use single quotes; nothing
// is suggested that is not granted, nor anything far from what was written.
func TestRefusalHints(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	for _, tc := range []struct {
		sql, want, not string
	}{
		{"SELECT distrct, COUNT(*) FROM residents GROUP BY distrct", "(did you mean district?)", ""},
		{"SELECT district, COUNT(*) FROM residnts GROUP BY district", "(did you mean residents?)", ""},
		{`SELECT COUNT(*) FROM residents WHERE district = "north"`, `"north" in double quotes is a column name in SQL: for the text, use single quotes ('north')`, "did you mean"},
		{"SELECT COUNT(*) FROM residents WHERE religion = 'x'", "not granted", "did you mean"},
		// The name column is an identifier: never suggested.
		{"SELECT nme, COUNT(*) FROM residents GROUP BY nme", "not granted", "did you mean"},
	} {
		_, err := v.Validate(ctx, tc.sql, scope())
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.not != "" && strings.Contains(err.Error(), tc.not)) {
			t.Errorf("%s: %v, want %q", tc.sql, err, tc.want)
		}
	}
	// dp mode gives the same hints.
	if _, err := v.ValidateDP(ctx, `SELECT COUNT(*) FROM residents WHERE district = "north"`, dpScope("", ""), DPOptions{Epsilon: 1}); err == nil || !strings.Contains(err.Error(), "single quotes") {
		t.Errorf("dp: %v", err)
	}
}
