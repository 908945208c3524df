package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/veil-dp/veil/daemon"
)

func TestBuildVersion(t *testing.T) {
	bi := func(main string, settings ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{Main: debug.Module{Path: "github.com/veil-dp/veil", Version: main},
			Deps: []*debug.Module{{Path: "github.com/opencontainers/runc", Version: "v1.5.2"},
				{Path: "github.com/tuneinsight/lattigo/v5", Version: "v5.0.7", Replace: &debug.Module{Path: "example.com/fork", Version: "v5.0.8-fork"}}}}
		for i := 0; i+1 < len(settings); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return b
	}
	for _, c := range []struct {
		name             string
		stamped, commit  string
		bi               *debug.BuildInfo
		version, wantRev string
		modified         bool
	}{
		{"stamped by the Makefile", "v0.4.0-3-gabc1234-dirty", "abc1234def", bi("(devel)", "vcs.revision", "ffff"), "v0.4.0-3-gabc1234-dirty", "abc1234def", false},
		{"go install module@version", "", "", bi("v0.4.0"), "v0.4.0", "", false},
		{"go build in a checkout", "", "", bi("(devel)", "vcs.revision", "0123abcd", "vcs.modified", "true"), "devel", "0123abcd", true},
		{"no build info", "", "", nil, "devel", "", false},
	} {
		v := buildVersion(c.stamped, c.commit, c.bi)
		if v.Version != c.version || v.Commit != c.wantRev || v.Modified != c.modified {
			t.Errorf("%s: %+v, want version %q commit %q modified %v", c.name, v, c.version, c.wantRev, c.modified)
		}
		if c.bi != nil && (v.Modules["runc"] != "v1.5.2" || v.Modules["lattigo"] != "example.com/fork v5.0.8-fork") {
			t.Errorf("%s: modules %v (a replaced module shows its replacement)", c.name, v.Modules)
		}
	}
}

// TestVersionCommand checks veil version against this test binary: Go's own version, and a
// DuckDB library (asked with SELECT) that is the release the bindings module in go.mod
// encodes (v0.MMmmpp.0 is DuckDB MM.mm.pp).
func TestVersionCommand(t *testing.T) {
	out, err := runVeil(t, "-o", "json", "version")
	if err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("go %q %q, want %q", v.Go, v.Platform, runtime.Version())
	}
	bindings := v.Modules["duckdb-bindings"]
	n, err := strconv.Atoi(strings.Split(strings.TrimPrefix(bindings, "v0."), ".")[0])
	if err != nil {
		t.Fatalf("duckdb-bindings module version %q", bindings)
	}
	want := fmt.Sprintf("v%d.%d.%d ", n/10000, n/100%100, n%100)
	if !strings.HasPrefix(v.DuckDB, want) {
		t.Errorf("DuckDB library %q, want %s… (from the bindings module %s)", v.DuckDB, want, bindings)
	}
	if !strings.HasPrefix(v.SQLite, "3.") {
		t.Errorf("SQLite library %q", v.SQLite)
	}
	for _, m := range []string{"runc", "lattigo", "dp", "duckdb-go", "arrow"} {
		if !strings.HasPrefix(v.Modules[m], "v") {
			t.Errorf("module %s: version %q", m, v.Modules[m])
		}
	}
}

// TestVersionShowsDaemon: veil version asks the daemon it is configured for its version, and
// says why not when there is none, without failing.
func TestVersionShowsDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "veil-version-") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := daemon.Defaults(dir)
	cfg.Isolation, cfg.Version, cfg.Commit = "process", "v1.2.3-test", "c0ffee"
	tok, err := daemon.Init(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	host := "unix://" + cfg.Socket
	var v versionInfo
	out, err := runVeil(t, "--host", host, "--token", tok, "-o", "json", "version")
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Daemon.Error == "" || v.Daemon.Version != "" {
		t.Fatalf("version without a daemon: %v\n%s (want exit 0 and why the daemon was not asked)", err, out)
	}

	listening := make(chan []net.Addr, 1)
	cfg.OnListening = func(a []net.Addr) { listening <- a }
	srv, err := daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	<-listening
	out, err = runVeil(t, "--host", host, "--token", tok, "-o", "json", "version")
	v = versionInfo{}
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Daemon != (daemonVersion{Version: "v1.2.3-test", Commit: "c0ffee"}) {
		t.Fatalf("version with a daemon: %v\n%s", err, out)
	}
	if out, _ := runVeil(t, "--host", host, "--token", tok, "version"); !strings.Contains(out, "v1.2.3-test (commit c0ffee)") {
		t.Errorf("the table does not show the daemon's version:\n%s", out)
	}
}
