package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/doctor"
	"github.com/veil-dp/veil/sandbox"
)

// update rewrites the golden files of TestCLI: go test ./cmd/veil -run TestCLI -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestMain lets the test binary be the veil binary where the daemon re-executes it: a
// container's init, and the runner (through the CLI's own hidden runner command); and,
// with VEIL_TEST_MAIN=1, the veil command itself, main and its exit code included.
func TestMain(m *testing.M) {
	sandbox.Init()
	if len(os.Args) > 1 && os.Args[1] == "runner" {
		root := newRoot()
		root.SetArgs(os.Args[1:])
		if err := root.Execute(); err != nil {
			fmt.Fprintln(os.Stderr, "runner:", err)
			os.Exit(exitCode(err, true))
		}
		os.Exit(0)
	}
	if os.Getenv("VEIL_TEST_MAIN") == "1" {
		os.Unsetenv("VEIL_TEST_MAIN")
		main()
	}
	os.Exit(m.Run())
}

// veilBinary returns a command that runs this test binary as the veil binary.
func veilBinary(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "VEIL_TEST_MAIN=1")
	return cmd
}

// runBinary runs the veil binary and returns its stdout, stderr and exit code.
func runBinary(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := veilBinary(t, args...)
	var out, errOut strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run veil %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// as returns the global flags that make a command run as a profile's principal.
func (e *cliEnv) as(profile string, args ...string) []string {
	return append([]string{"--host", e.host, "--token", e.tokens[profile]}, args...)
}

// cliEnv is a real daemon on a Unix socket in a temporary directory and the tokens of one
// principal per role, all made through the CLI.
type cliEnv struct {
	t      *testing.T
	dir    string
	host   string
	tokens map[string]string // profile → token
	norm   *normalizer
}

func startCLI(t *testing.T, edits ...func(*daemon.Config)) *cliEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "veil-cli-") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil { // the sandbox's root traverses to the data
		t.Fatal(err)
	}
	t.Setenv("VEIL_CONFIG", filepath.Join(dir, "config.yaml"))
	t.Setenv("VEIL_HOST", "")
	t.Setenv("VEIL_TOKEN", "")
	t.Setenv("VEIL_PROFILE", "")
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache")) // upload state files
	data := filepath.Join(dir, "data")
	cfg := daemon.Defaults(data)
	cfg.Isolation = "container"
	if os.Geteuid() != 0 {
		t.Log("not root: running jobs as plain child processes (isolation=process)")
		cfg.Isolation = "process"
	}
	cfg.Binary, _ = os.Executable()
	cfg.JobMemoryMB = 1024
	// The goldens follow jobs at once (and the clock below is not the wall clock).
	cfg.ExactReleaseTimingForTests = true
	// A clock a second further at each reading: lists ordered by creation (the store keeps
	// milliseconds) come out in one order, whatever the machine's speed.
	var tick atomic.Int64
	start := time.Now().UTC().Truncate(time.Second)
	cfg.Clock = func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Second) }
	for _, edit := range edits {
		edit(&cfg)
	}
	e := &cliEnv{t: t, dir: dir, host: "unix://" + cfg.Socket, tokens: map[string]string{}, norm: newNormalizer(dir)}
	out, err := runVeil(t, "init", "--data-dir", data)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	e.golden("init", "operator", out, nil)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	e.tokens["operator"] = lines[len(lines)-1]

	srv, err := daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		srv.Close()
	})
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", cfg.Socket); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			t.Fatal("daemon did not start listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return e
}

// veil runs one command as a profile's principal and compares what it printed with
// testdata/<command>/<case>/stdout (and, for a refusal, stderr).
func (e *cliEnv) veil(command, name, as string, args ...string) string {
	e.t.Helper()
	out, err := runVeil(e.t, append([]string{"--host", e.host, "--token", e.tokens[as]}, args...)...)
	e.golden(command, name, out, err)
	return out
}

// veilNoisy is veil for outputs that carry noise: what follows the header of the released
// rows (the line after "output as it would be released:") is left out of the comparison.
func (e *cliEnv) veilNoisy(command, name, as string, args ...string) string {
	e.t.Helper()
	out, err := runVeil(e.t, append([]string{"--host", e.host, "--token", e.tokens[as]}, args...)...)
	kept := out
	if i := strings.Index(out, "output as it would be released:\n"); i >= 0 {
		rest := out[i+len("output as it would be released:\n"):]
		header, _, _ := strings.Cut(rest, "\n")
		kept = out[:i] + "output as it would be released:\n" + header + "\n(noisy rows left out)\n"
	}
	e.golden(command, name, kept, err)
	return out
}

// golden compares normalized output with the golden files of a case, or writes them.
func (e *cliEnv) golden(command, name, out string, err error) {
	e.t.Helper()
	dir := filepath.Join("testdata", command, name)
	got := map[string]string{"stdout": e.norm.apply(out)}
	if err != nil {
		got["stderr"] = e.norm.apply("veil: " + message(err) + "\n")
		got["exit"] = fmt.Sprintf("%d\n", codeOf(err))
	}
	if *update {
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.t.Fatal(err)
		}
		for f, s := range got {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o644); err != nil {
				e.t.Fatal(err)
			}
		}
		return
	}
	for _, f := range []string{"stdout", "stderr", "exit"} {
		want, rerr := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(rerr, os.ErrNotExist) && got[f] == "" {
			continue
		}
		if rerr != nil {
			e.t.Errorf("%s/%s: %v (run go test ./cmd/veil -run TestCLI -update to write the golden files)", command, name, rerr)
			continue
		}
		if got[f] != string(want) {
			e.t.Errorf("%s/%s: %s differs from %s:\n--- got\n%s\n--- want\n%s", command, name, f, filepath.Join(dir, f), got[f], want)
		}
	}
}

// codeOf is the exit code execute decided for err.
func codeOf(err error) int {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitCode(err, true)
}

// normalizer replaces what differs from run to run (ids, tokens, times, hashes, keys,
// timings, the temporary directory) by stable placeholders; ids are numbered in the order
// they first appear, so that a case still shows which job or grant it names.
type normalizer struct {
	dir string
	ids map[string]string
	n   map[string]int
}

func newNormalizer(dir string) *normalizer {
	return &normalizer{dir: dir, ids: map[string]string{}, n: map[string]int{}}
}

var (
	reID       = regexp.MustCompile(`\b([pgjf])-[a-km-z2-9]{12}\b`)
	reToken    = regexp.MustCompile(`veil_[A-Za-z0-9_-]{43}`)
	reRFC3339  = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)
	reDateTime = regexp.MustCompile(`\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?( [A-Z]{3,4})?`)
	reVerifier = regexp.MustCompile(`veil-platform\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+`)
	reSHA      = regexp.MustCompile(`[0-9a-f]{64}`)
	reMetering = regexp.MustCompile(`wall \d+ ms, cpu \d+ ms, peak memory \d+ MB`)
	reWallMS   = regexp.MustCompile(`("wall_ms"|"cpu_ms"|"peak_memory_mb"): \d+`)
	reSig      = regexp.MustCompile(`("sig"|"signature"|"payload"): "[A-Za-z0-9+/=_-]+"`)
	reShortHex = regexp.MustCompile(`(sha256:|version |\s)[0-9a-f]{12}\b`)
	reRoot     = regexp.MustCompile(`root [A-Za-z0-9+/]{43}=`)
	// The daemon signs after each commit and one checkpoint covers the commits that
	// queued behind it (group commit), and refused requests are audited per window of
	// time, so how many entries and checkpoints there are depends on timing.
	reCheckpoints = regexp.MustCompile(`\d+ entries, \d+ signed checkpoints`)
)

func (z *normalizer) apply(s string) string {
	s = strings.ReplaceAll(s, z.dir, "<dir>")
	s = reToken.ReplaceAllString(s, "veil_<token>")
	s = reVerifier.ReplaceAllString(s, "<platform-key>")
	s = reRFC3339.ReplaceAllString(s, "<time>")
	s = reDateTime.ReplaceAllString(s, "<time>")
	s = reSHA.ReplaceAllString(s, "<sha256>")
	s = reMetering.ReplaceAllString(s, "wall <n> ms, cpu <n> ms, peak memory <n> MB")
	s = reWallMS.ReplaceAllString(s, "$1: <n>")
	s = reSig.ReplaceAllString(s, `$1: "<signature>"`)
	s = reRoot.ReplaceAllString(s, "root <hash>")
	s = reCheckpoints.ReplaceAllString(s, "<n> entries, <n> signed checkpoints")
	s = reID.ReplaceAllStringFunc(s, func(id string) string {
		if v, ok := z.ids[id]; ok {
			return v
		}
		p := id[:1]
		z.n[p]++
		v := fmt.Sprintf("%s-<%d>", p, z.n[p])
		z.ids[id] = v
		return v
	})
	return reShortHex.ReplaceAllString(s, "${1}<hash>")
}

// field reads "key:  value" from kv output.
func field(t *testing.T, out, key string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			return f[1]
		}
	}
	t.Fatalf("no %s in:\n%s", key, out)
	return ""
}

// firstID returns the first id with the prefix in out.
func firstID(t *testing.T, out, prefix string) string {
	t.Helper()
	m := regexp.MustCompile(`\b` + prefix + `-[a-km-z2-9]{12}\b`).FindString(out)
	if m == "" {
		t.Fatalf("no %s- id in:\n%s", prefix, out)
	}
	return m
}

func wd(t *testing.T) string {
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// digest is the digest of a job's output as the reviewer's `review show` prints it.
func (e *cliEnv) digest(job string) string {
	e.t.Helper()
	out, err := runVeil(e.t, "--host", e.host, "--token", e.tokens["reviewer"], "review", "show", job)
	if err != nil {
		e.t.Fatalf("review show %s: %v\n%s", job, err, out)
	}
	return field(e.t, out, "digest")
}

// approve has each stage of a grant's review approve it.
func (e *cliEnv) approve(grant string, who ...string) {
	e.t.Helper()
	for _, w := range who {
		if out, err := runVeil(e.t, "--host", e.host, "--token", e.tokens[w], "grant", "approve", grant); err != nil {
			e.t.Fatalf("%s approves %s: %v\n%s", w, grant, err, out)
		}
	}
}

// TestCLI runs every role's main commands through the CLI against a real daemon and checks
// what each prints against its golden file: the CLI's output for every role is part of
// Veil's interface. Outputs that carry noise (dp releases) are checked for their shape by
// the daemon's tests, not here.
func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon and runs jobs")
	}
	e := startCLI(t)
	// 100 residents: 60 in north, 37 in south, 3 in tiny.
	schema, csv := filepath.Join(wd(t), "testdata", "residents.yaml"), filepath.Join(wd(t), "testdata", "residents.csv")
	e.veil("whoami", "operator", "operator", "whoami")
	e.veil("zone", "set", "operator", "zone", "set", "Asia/Shanghai")
	e.veil("zone", "show", "operator", "zone", "show")
	e.veil("zone", "refused", "operator", "zone", "set", "Mars/Olympus")
	e.veil("zone", "set-utc", "operator", "zone", "set", "UTC")
	for _, p := range []struct{ profile, name, role, tenant string }{
		{"civil", "Civil Affairs Bureau", "provider", "civil-affairs"},
		{"bureau", "Municipal Data Bureau", "authority", ""},
		{"acme", "Acme Credit analyst", "vendor", "acme"},
		{"rival", "Rival Analytics analyst", "vendor", "rival"},
		{"reviewer", "Export reviewer", "reviewer", ""},
		{"auditor", "Inspector", "auditor", ""},
	} {
		args := []string{"principal", "create", "--name", p.name, "--role", p.role}
		if p.tenant != "" {
			args = append(args, "--tenant", p.tenant)
		}
		out := e.veil("principal-create", p.role+"-"+p.profile, "operator", args...)
		e.tokens[p.profile] = field(t, out, "token")
	}
	e.veil("principal-create", "refused-tenant", "operator", "principal", "create", "--name", "x", "--role", "vendor")
	e.veil("principal-create", "refused-vendor", "acme", "principal", "create", "--name", "x", "--role", "operator")
	e.veil("principal-list", "operator", "operator", "principal", "list")

	// Provider: the catalog.
	e.veil("dataset-register", "residents", "civil", "dataset", "register", "--schema", schema, csv)
	e.veil("dataset-register", "refused-vendor", "acme", "dataset", "register", "--schema", schema, csv)
	e.veil("dataset-list", "vendor", "acme", "dataset", "list")
	// Shell completion asks the daemon for the names the caller may see.
	if out, err := runVeil(t, e.as("acme", "__complete", "dataset", "show", "res")...); err != nil || !strings.Contains(out, "residents\n") {
		t.Errorf("completing a dataset name: %q, %v", out, err)
	}
	e.veil("dataset-show", "vendor", "acme", "dataset", "show", "residents")
	e.veil("dataset-show", "missing", "acme", "dataset", "show", "nothing")

	// Vendor: a threshold grant and its review.
	e.veil("grant-apply", "refused-level4", "acme", "grant", "apply", "--scenario", "faith census", "--purpose", "x",
		"--dataset", "residents:district,religion", "--mode", "threshold", "--k", "10")
	out := e.veil("grant-apply", "threshold", "acme", "grant", "apply", "--scenario", "District income report",
		"--purpose", "Income per district for planning", "--dataset", "residents:district,age,income",
		"--mode", "threshold", "--k", "5", "--round-to", "5", "--valid-for", "180d")
	gt := firstID(t, out, "g")
	e.veil("grant-approve", "operator", "operator", "grant", "approve", gt)
	e.veil("grant-approve", "refused-vendor", "acme", "grant", "approve", gt)
	e.veil("grant-approve", "authority", "bureau", "grant", "approve", gt)
	e.veil("grant-approve", "provider", "civil", "grant", "approve", gt)
	e.veil("grant-show", "vendor", "acme", "grant", "show", gt)
	e.veil("grant-show", "rival", "rival", "grant", "show", gt)
	e.veil("grant-list", "vendor", "acme", "grant", "list")
	e.veil("grant-list", "authority", "bureau", "grant", "list")

	// Vendor: jobs under it.
	e.veil("job-submit", "refused-column", "acme", "job", "submit", "--grant", gt, "--sql", "SELECT religion, COUNT(*) FROM residents GROUP BY religion")
	e.veil("job-submit", "refused-file", "acme", "job", "submit", "--grant", gt, "--sql", "SELECT COUNT(*) FROM read_csv('/etc/passwd')")
	out = e.veil("job-submit", "threshold", "acme", "job", "submit", "--grant", gt, "--wait",
		"--sql", "SELECT district, COUNT(*) AS persons, AVG(income) AS income FROM residents GROUP BY district ORDER BY district")
	jt := field(t, out, "job")
	e.veil("job-show", "vendor", "acme", "job", "show", jt)
	e.veil("job-show", "rival", "rival", "job", "show", jt)
	e.veil("job-list", "vendor", "acme", "job", "list")
	e.veil("job-list", "rival", "rival", "job", "list")

	// Reviewer: the queue.
	e.veil("review-list", "reviewer", "reviewer", "review", "list")
	e.veil("review-show", "threshold", "reviewer", "review", "show", jt)
	e.veil("review-approve", "refused-vendor", "acme", "review", "approve", jt)
	e.veil("review-approve", "threshold", "reviewer", "review", "approve", jt, "--digest", e.digest(jt))

	// Vendor: the export and its certificate.
	exp := filepath.Join(e.dir, "income.csv")
	e.veil("export-get", "csv", "acme", "export", "get", jt, "-o", exp)
	b, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	e.golden("export-get", "csv-file", string(b), nil)
	e.veil("export-get", "rival", "rival", "export", "get", jt, "-o", filepath.Join(e.dir, "rival.csv"))
	e.veil("export-verify", "csv", "acme", "export", "verify", exp, "--key", filepath.Join(e.dir, "data", "platform.pub"))

	// Authority: suspend and reinstate.
	e.veil("grant-suspend", "authority", "bureau", "grant", "suspend", gt, "--reason", "quarterly inspection")
	e.veil("job-submit", "refused-suspended", "acme", "job", "submit", "--grant", gt, "--sql", "SELECT district, COUNT(*) FROM residents GROUP BY district")
	e.veil("grant-reinstate", "authority", "bureau", "grant", "reinstate", gt, "--reason", "inspection passed")

	// Differential privacy: a grant's slice of the dataset's budget.
	out = e.veil("grant-apply", "dp", "acme", "grant", "apply", "--scenario", "District counts with DP", "--purpose", "Residents per district",
		"--dataset", "residents:district,age,income", "--mode", "dp", "--epsilon", "2", "--delta", "1e-7", "--max-query-epsilon", "1", "--valid-for", "180d")
	gd := firstID(t, out, "g")
	e.approve(gd, "operator", "bureau", "civil")
	e.veil("budget-show", "authority", "bureau", "budget", "show")
	e.veil("job-submit", "refused-dp-cap", "acme", "job", "submit", "--grant", gd, "--epsilon", "1.5", "--sql", "SELECT COUNT(*) FROM residents")
	e.veil("job-submit", "refused-dp-unit", "acme", "job", "submit", "--grant", gd, "--epsilon", "0.5", "--sql", "SELECT district, COUNT(*) FROM residents WHERE resident_id = 1000 GROUP BY district")
	// A plan first: nothing runs, nothing is spent (budget-show vendor, below, has one job).
	e.veil("job-plan", "dp", "acme", "job", "plan", "--grant", gd, "--epsilon", "0.5",
		"--sql", "SELECT district, COUNT(*) AS persons, AVG(income) AS income FROM residents GROUP BY district")
	e.veil("job-plan", "selection-json", "acme", "job", "submit", "--dry-run", "-o", "json", "--grant", gd, "--epsilon", "0.5", "--delta", "1e-8",
		"--sql", "SELECT age, SUM(income) AS income FROM residents GROUP BY age")
	out = e.veil("job-submit", "dp", "acme", "job", "submit", "--grant", gd, "--wait", "--epsilon", "0.5",
		"--sql", "SELECT district, COUNT(*) AS persons FROM residents GROUP BY district")
	jd := field(t, out, "job")
	e.veilNoisy("review-show", "dp", "reviewer", "review", "show", jd)
	e.veil("review-approve", "dp", "reviewer", "review", "approve", jd, "--digest", e.digest(jd))
	e.veil("budget-show", "vendor", "acme", "budget", "show")
	e.veil("budget-show", "provider", "civil", "budget", "show")
	e.veil("budget-show", "rival", "rival", "budget", "show")

	// A model job: a built-in trainer with differential privacy.
	out = e.veil("grant-apply", "model", "acme", "grant", "apply", "--scenario", "Income model", "--purpose", "Income by age",
		"--dataset", "residents:age,income", "--mode", "model", "--epsilon", "2", "--delta", "1e-7", "--max-query-epsilon", "1", "--valid-for", "90d")
	gm := firstID(t, out, "g")
	e.approve(gm, "operator", "bureau", "civil")
	spec := filepath.Join(e.dir, "linreg.yaml")
	os.WriteFile(spec, []byte("dataset: residents\ntrainer: linear_regression\nfeatures: [age]\nlabel: income\nepsilon: 1\ndelta: 1.0e-8\n"), 0o644)
	out = e.veil("job-submit", "model", "acme", "job", "submit", "--grant", gm, "--wait", "--train", spec)
	e.veilNoisy("review-show", "model", "reviewer", "review", "show", field(t, out, "job"))
	bad := filepath.Join(e.dir, "bad.yaml")
	os.WriteFile(bad, []byte("dataset: residents\ntrainer: histogram\ncolumn: name\nepsilon: 1\n"), 0o644)
	e.veil("job-submit", "refused-model", "acme", "job", "submit", "--grant", gm, "--train", bad)

	// Custom jobs need containers.
	if os.Geteuid() == 0 {
		img := filepath.Join(e.dir, "image")
		os.MkdirAll(filepath.Join(img, "etc"), 0o755)
		os.WriteFile(filepath.Join(img, "etc", "os-release"), []byte("NAME=veil-cli-test\n"), 0o644)
		e.veil("runtime-register", "operator", "operator", "runtime", "register", "--name", "static", "--rootfs", img)
		e.veil("runtime-list", "vendor", "acme", "runtime", "list")
		out = e.veil("grant-apply", "custom", "acme", "grant", "apply", "--scenario", "Own district analysis", "--purpose", "District profile by our code",
			"--dataset", "residents:district,age", "--mode", "model", "--valid-for", "30d")
		gc := firstID(t, out, "g")
		e.approve(gc, "operator", "bureau", "civil")
		prog := filepath.Join(e.dir, "aggregate")
		cmd := exec.Command("go", "build", "-ldflags", "-s -w -X main.mode=aggregate", "-o", prog, "../../testdata/vendorprog")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the vendor program: %v\n%s", err, b)
		}
		out = e.veil("job-submit", "custom", "acme", "job", "submit", "--grant", gc, "--wait", "--runtime", "static", "--program", prog, "--datasets", "residents")
		jc := field(t, out, "job")
		e.veil("review-show", "custom", "reviewer", "review", "show", jc)
		e.veil("review-approve", "custom", "reviewer", "review", "approve", jc, "--digest", e.digest(jc))
	}

	// Development: a masked twin, a dev run on it, its promotion.
	out = e.veil("dataset-twin", "masked", "civil", "dataset", "twin", "residents", "--masked", "--rows", "1000")
	tw := field(t, out, "job")
	e.veil("review-approve", "twin", "reviewer", "review", "approve", tw, "--digest", e.digest(tw))
	out = e.veil("dev-run", "threshold", "acme", "dev", "run", "--grant", gt, "--sql", "SELECT district, COUNT(*) AS persons FROM residents GROUP BY district ORDER BY district")
	jv := field(t, out, "job")
	e.veil("dev-show", "threshold", "acme", "dev", "show", jv)
	e.veil("dev-promote", "threshold", "acme", "dev", "promote", jv)

	// Feedback on the data.
	out = e.veil("feedback-submit", "vendor", "acme", "-o", "json", "dataset", "feedback", "residents", "--column", "income", "--message", "some incomes look yearly")
	fb := ""
	if m := regexp.MustCompile(`"id": "(f-[a-z0-9]+)"`).FindStringSubmatch(out); m != nil {
		fb = m[1]
	}
	e.veil("feedback-submit", "refused-rival", "rival", "dataset", "feedback", "residents", "--message", "x")
	e.veil("feedback-list", "provider", "civil", "dataset", "feedback", "list", "--status", "open")
	e.veil("feedback-resolve", "provider", "civil", "dataset", "feedback", "resolve", fb, "--note", "checked: all are yearly")
	e.veil("feedback-list", "vendor", "acme", "dataset", "feedback", "list")

	// Cancel, and the audit log.
	e.veil("job-cancel", "refused-released", "acme", "job", "cancel", jt)
	e.veil("audit-verify", "auditor", "auditor", "audit", "verify", "--key", filepath.Join(e.dir, "data", "platform.pub"))
	e.veil("audit-verify", "refused-vendor", "acme", "audit", "verify", "--key", filepath.Join(e.dir, "data", "platform.pub"))

	// Differencing: the same query without one person in each of north and south (the only
	// ones aged 30) has those cells suppressed, and its reviewer told which job it pairs with.
	out = e.veil("job-submit", "differencing", "acme", "job", "submit", "--grant", gt, "--wait",
		"--sql", "SELECT district, COUNT(*) AS persons, AVG(income) AS income FROM residents WHERE age <> 30 GROUP BY district ORDER BY district")
	e.veil("review-show", "differencing", "reviewer", "review", "show", field(t, out, "job"))

	// Every command's -o json, against this daemon.
	e.sweep(t, gt, gd, jt)

	// The data directory after all of the above (datasets, twins, sandbox state, custom
	// jobs' work), with the daemon running, passes veil doctor.
	// A job the sweep left running has its job.start entry signed with its output (package
	// jobs), so until it ends doctor finds entries no checkpoint covers yet and says to run
	// it again while the daemon runs; as an operator would, run it again until they are.
	var rep doctor.Report
	for try := 0; ; try++ {
		out, err = runVeil(t, "-o", "json", "doctor", "--data-dir", filepath.Join(e.dir, "data"), "--min-free-mb", "1")
		rep = doctor.Report{}
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			t.Fatalf("doctor -o json: %v (%v)\n%s", jerr, err, out)
		}
		pending := false
		for _, c := range rep.Checks {
			if c.Name == "audit-log" && c.Status != doctor.OK && strings.Contains(c.Detail, "not covered by any signed checkpoint") {
				pending = true
			}
		}
		if !pending || try == 60 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, c := range rep.Checks {
		switch c.Name {
		case "data-dir", "disk", "store", "audit-log", "platform-key", "daemon":
			if c.Status != doctor.OK {
				t.Errorf("doctor on the daemon's data directory: %s: %s: %s (fix: %s)", c.Name, c.Status, c.Detail, c.Fix)
			}
		}
		if c.Name == "daemon" && !strings.HasPrefix(c.Detail, "running") {
			t.Errorf("doctor does not see the running daemon: %s", c.Detail)
		}
	}
	if os.Geteuid() == 0 && err != nil {
		t.Errorf("doctor as root on this host: %v\n%s", err, out)
	}
}

// writeCLIData returns the schema and residents of testdata (100 residents: 60 in north, 37
// in south, 3 in tiny), copied into dir so that a test may change them.
func writeCLIData(t *testing.T, dir string) (schema, csv string) {
	schema, csv = filepath.Join(dir, "residents.yaml"), filepath.Join(dir, "residents.csv")
	for dst, src := range map[string]string{schema: "residents.yaml", csv: "residents.csv"} {
		b, err := os.ReadFile(filepath.Join(wd(t), "testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return schema, csv
}
