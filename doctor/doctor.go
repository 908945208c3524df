package doctor

import (
	"context"
	"fmt"
	"path/filepath"
)

// Status is the outcome of one check.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn" // works, but something is worth doing
	Fail Status = "fail" // the daemon cannot run safely until it is fixed
	Skip Status = "skip" // could not be checked here (say, not root); Detail says why
)

// Check is one check's outcome. Fix says what to do when Status is Warn or Fail.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Options say what to check.
type Options struct {
	DataDir string
	// MinFreeBytes is the free disk floor of the data directory's file system.
	MinFreeBytes uint64
	// KeyPath, AuditState and StoreMarker are where the daemon keeps the platform key, the
	// audit signer's state and the store's shutdown marker (veil serve --audit-key,
	// --audit-state); empty: DataDir/keys/platform.key, and audit.state and store.shutdown
	// beside the key.
	KeyPath, AuditState, StoreMarker string
}

// DefaultMinFree is the default free disk floor: the store, dev twins, registered datasets
// and a custom job's inputs all grow on the data directory's file system.
const DefaultMinFree = 1 << 30

// Report is the outcome of Run.
type Report struct {
	OK      bool    `json:"ok"` // no check failed
	DataDir string  `json:"data_dir"`
	Checks  []Check `json:"checks"`
}

// Failed lists the checks that failed.
func (r Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c)
		}
	}
	return out
}

// Run runs every check: the host's, then the data directory's, the store's and the audit
// log's. It never stops at a failure, so that one run lists everything to fix.
func Run(ctx context.Context, o Options) Report {
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFree
	}
	if o.KeyPath == "" {
		o.KeyPath = filepath.Join(o.DataDir, "keys", "platform.key")
	}
	if o.AuditState == "" {
		o.AuditState = filepath.Join(filepath.Dir(o.KeyPath), "audit.state")
	}
	if o.StoreMarker == "" {
		o.StoreMarker = filepath.Join(filepath.Dir(o.AuditState), "store.shutdown")
	}
	var checks []Check
	checks = append(checks, hostChecks(ctx)...)
	checks = append(checks, dataDirChecks(o.DataDir)...)
	checks = append(checks, diskCheck(o.DataDir, o.MinFreeBytes))
	checks = append(checks, storeChecks(ctx, o)...)
	checks = append(checks, daemonCheck(ctx, o.DataDir))
	r := Report{OK: true, DataDir: o.DataDir, Checks: checks}
	for _, c := range checks {
		if c.Status == Fail {
			r.OK = false
		}
	}
	return r
}

func ok(name, format string, a ...any) Check {
	return Check{Name: name, Status: OK, Detail: fmt.Sprintf(format, a...)}
}

func skip(name, format string, a ...any) Check {
	return Check{Name: name, Status: Skip, Detail: fmt.Sprintf(format, a...)}
}

func fail(name, fix, format string, a ...any) Check {
	return Check{Name: name, Status: Fail, Detail: fmt.Sprintf(format, a...), Fix: fix}
}

func warn(name, fix, format string, a ...any) Check {
	return Check{Name: name, Status: Warn, Detail: fmt.Sprintf(format, a...), Fix: fix}
}
