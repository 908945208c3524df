package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
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
