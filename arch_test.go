package veil_test

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/veil-dp/veil"

// layers is the house drawn from DESIGN.md: a package imports only packages of lower
// layers, never one of its own layer or above. A new package gets its line here, which is
// where its place in the design is decided.
var layers = [][]string{
	// Durable file writes, the storage faults tests inject, the certificates tests make and
	// the edit distance of the "did you mean" hints: below everything.
	{"durable", "internal/fault", "internal/testcert", "internal/distance"},
	// Leaves: usable and testable alone.
	{"daemon/api", "policy", "audit", "dp", "he", "engine", "sandbox", "metrics"},
	// What runs in the sandbox; the store's interface; the shape of protected outputs.
	{"runner", "store", "output"},
	// The platform's identity and bookkeeping; the embedded store.
	{"platform", "store/sqlite"},
	// The budget ledger; running things in sandboxes.
	{"ledger", "launch"},
	// The output gates; the catalog of datasets.
	{"gate", "catalog"},
	{"grants"},
	// The job state machine; what the catalog gets from vendors.
	{"jobs", "catalog/fusion", "catalog/feedback"},
	// The job kinds (every package under kinds/, so that a new kind needs no line here), the
	// review and release, the dev twins: each knows jobs, none another.
	{"kinds/*", "review", "catalog/twin"},
	// The web console: pages over the API's handler, which the daemon mounts at /ui/.
	{"console"},
	// HTTP.
	{"daemon"},
	// The clients of the HTTP API.
	{"client"},
	// Pre-flight checks of a host and a data directory (veil doctor): reads the store
	// offline and asks the daemon who it is.
	{"doctor"},
	// Backup and restore of a data directory (veil backup, veil restore): offline file
	// copies and the store's snapshot, checked as doctor checks them.
	{"backup"},
	// The benchmark harness (it starts a daemon in process), then the CLI.
	{"bench", "bench/sandbox"},
	{"cmd/veil"},
}

// pure packages import no other Veil package (DESIGN.md: engine, dp, he, policy and audit
// can each be used and tested alone), except where listed.
var pure = map[string][]string{
	"engine": {"internal/distance"}, "dp": nil, "he": nil, "policy": nil, "audit": {"durable"}, "durable": nil, "sandbox": nil, "daemon/api": nil, "metrics": nil, "internal/distance": nil,
	"runner": {"engine", "he", "dp"},
}

// noIO packages do no I/O of their own: the ledger works only in the store transaction it is
// given, the gates and the shape of outputs only on what they are handed.
var noIO = []string{"gate", "ledger", "output", "policy", "dp"}

var ioImports = []string{"os", "os/exec", "net", "net/http", "io/ioutil", "io/fs", "syscall", "database/sql", "golang.org/x/sys/unix"}

// sqlImports are what "sandbox knows nothing of SQL" rules out, directly or not.
var sqlImports = []string{"database/sql", "github.com/duckdb/duckdb-go/v2", "github.com/mattn/go-sqlite3", module + "/engine", module + "/store", module + "/store/sqlite"}

type pkg struct {
	path    string   // relative to the module
	imports []string // direct, full paths
	deps    []string // transitive, full paths
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-tags", "duckdb_arrow,seccomp", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}", "./...")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 || f[0] == module {
			continue // this test's own package
		}
		pkgs = append(pkgs, pkg{path: strings.TrimPrefix(f[0], module+"/"), imports: split(f[1]), deps: split(f[2])})
	}
	return pkgs
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func layerOf(p string) int {
	for i, l := range layers {
		for _, q := range l {
			if q == p || (strings.HasSuffix(q, "/*") && strings.HasPrefix(p, strings.TrimSuffix(q, "*"))) {
				return i
			}
		}
	}
	return -1
}

// veil returns the Veil packages among imports, relative to the module.
func veil(imports []string) []string {
	var out []string
	for _, i := range imports {
		if r, ok := strings.CutPrefix(i, module+"/"); ok {
			out = append(out, r)
		}
	}
	return out
}

// TestImportArrows fails when an import arrow DESIGN.md forbids appears: an arrow upward or
// sideways in the layers, a pure package that imports Veil, a package that is to do no I/O
// importing what does it, the sandbox knowing of SQL, or anything but the CLI and the
// benchmarks importing the daemon.
func TestImportArrows(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages; is this the module root?", len(pkgs))
	}
	for _, p := range pkgs {
		lp := layerOf(p.path)
		if lp < 0 {
			t.Errorf("package %s has no place in the layers of arch_test.go: decide where it belongs in the design and add it", p.path)
			continue
		}
		for _, i := range veil(p.imports) {
			li := layerOf(i)
			if li >= lp {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports go to lower layers only", p.path, lp, i, li)
			}
			if i == "daemon" && p.path != "cmd/veil" && p.path != "bench" {
				t.Errorf("%s imports daemon: only the CLI (and the benchmarks, which start a daemon) may", p.path)
			}
		}
		if allowed, ok := pure[p.path]; ok {
			for _, i := range veil(p.imports) {
				if !slices.Contains(allowed, i) {
					t.Errorf("%s imports %s: it must stay usable alone (allowed: %v)", p.path, i, allowed)
				}
			}
		}
		if slices.Contains(noIO, p.path) {
			for _, i := range p.imports {
				if slices.Contains(ioImports, i) {
					t.Errorf("%s imports %s: it does no I/O of its own", p.path, i)
				}
			}
			for _, d := range veil(p.deps) {
				if d == "store/sqlite" || d == "sandbox" || d == "launch" || d == "jobs" || d == "daemon" {
					t.Errorf("%s depends on %s: it does no I/O beyond the transaction or values it is given", p.path, d)
				}
			}
		}
		if p.path == "sandbox" {
			for _, d := range p.deps {
				if slices.Contains(sqlImports, d) {
					t.Errorf("sandbox depends on %s: it knows nothing of SQL", d)
				}
			}
		}
	}
}

// TestKindsStayApart checks the plug-in shape of job kinds: jobs knows no kind, and no kind
// knows another, so that adding one touches its own package and one registration line.
func TestKindsStayApart(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, d := range veil(p.deps) {
			if !strings.HasPrefix(d, "kinds/") {
				continue
			}
			if p.path == "jobs" || (strings.HasPrefix(p.path, "kinds/") && d != p.path) {
				t.Errorf("%s depends on %s: kinds are known only through jobs.Kind, registered by the daemon", p.path, d)
			}
		}
	}
}
