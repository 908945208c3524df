package main

import (
	"reflect"
	"testing"

	"github.com/spf13/pflag"

	"github.com/veil-dp/veil/daemon"
)

// serveConfig parses veil serve's flags and returns the daemon Config they make.
func serveConfig(t *testing.T, args ...string) (daemon.Config, error) {
	t.Helper()
	cmd, sf := serveCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return sf.config()
}

// TestServeFlagsReachConfig sets each of veil serve's flags to a value other than its
// default and checks that the daemon's Config changes: a flag that is parsed but not passed
// on is a setting an operator believes in and the daemon ignores.
func TestServeFlagsReachConfig(t *testing.T) {
	values := map[string]string{
		"data-dir": "/srv/veil", "socket": "/run/veil/api.sock", "listen": "127.0.0.1:8470",
		"workers": "7", "approvals": "2", "isolation": "process", "job-memory-mb": "333",
		"scratch-mb": "99", "job-threads": "3", "job-timeout": "17s", "job-pids": "77",
		"review-deadline": "5h", "overdue": "authority=reject", "log-runner-output": "true",
	}
	notConfig := map[string]bool{"log-json": true} // how the log is written, not the daemon's config
	cmd, _ := serveCommand()
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := values[f.Name]; !ok && !notConfig[f.Name] {
			t.Errorf("serve flag --%s: give it a test value here", f.Name)
		}
	})
	base, err := serveConfig(t)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range values {
		got, err := serveConfig(t, "--"+name+"="+v)
		if err != nil {
			t.Fatalf("--%s=%s: %v", name, v, err)
		}
		if reflect.DeepEqual(got, base) {
			t.Errorf("--%s=%s does not change the daemon's config", name, v)
		}
	}
	if c, _ := serveConfig(t, "--data-dir", "/srv/veil"); c.DataDir != "/srv/veil" || c.Socket != "/srv/veil/veil.sock" {
		t.Errorf("--data-dir /srv/veil: data dir %q, socket %q", c.DataDir, c.Socket)
	}
	if _, err := serveConfig(t, "--overdue", "vendor=approve"); exitCode(err, true) != exitUsage {
		t.Errorf("--overdue vendor=approve: %v, want a usage error", err)
	}
}
