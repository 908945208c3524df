//go:build !linux

package doctor

import (
	"context"
	"runtime"
)

func hostChecks(context.Context) []Check {
	return []Check{fail("host", "run Veil on Linux", "the sandbox needs Linux; this is %s", runtime.GOOS)}
}

func diskCheck(dir string, floor uint64) Check {
	return skip("disk", "free space is checked on Linux only")
}
