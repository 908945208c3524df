package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// grantEnv is a daemon with the residents dataset and an active threshold grant of acme's,
// set up through the CLI (in process, without golden files).
func grantEnv(t *testing.T, edits ...func(*daemon.Config)) (e *cliEnv, grant string) {
	t.Helper()
	e = startCLI(t, edits...)
	schema, csv := writeCLIData(t, e.dir)
	must := func(args ...string) string {
		t.Helper()
		out, err := runVeil(t, args...)
		if err != nil {
			t.Fatalf("veil %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for _, p := range []struct{ profile, role, tenant string }{
		{"civil", "provider", "civil-affairs"}, {"bureau", "authority", ""}, {"acme", "vendor", "acme"},
		{"rival", "vendor", "rival"}, {"reviewer", "reviewer", ""},
	} {
		args := e.as("operator", "principal", "create", "--name", p.profile, "--role", p.role)
		if p.tenant != "" {
			args = append(args, "--tenant", p.tenant)
		}
		e.tokens[p.profile] = field(t, must(args...), "token")
	}
	must(e.as("civil", "dataset", "register", "--schema", schema, csv)...)
	grant = firstID(t, must(e.as("acme", "grant", "apply", "--scenario", "exit codes", "--purpose", "scripts",
		"--dataset", "residents:district,age,income", "--mode", "threshold", "--k", "5", "--valid-for", "30d")...), "g")
	for _, who := range []string{"operator", "bureau", "civil"} {
		must(e.as(who, "grant", "approve", grant)...)
	}
	return e, grant
}

// TestExitCodes runs the real binary (main, os.Exit and all) against a real daemon and
// checks that each kind of failure has its own exit code, and that -o json reports it on
// stderr as an object a script can read.
func TestExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon and runs jobs")
	}
	// A small result limit makes a job with many exact groups fail when it runs.
	e, gt := grantEnv(t, func(c *daemon.Config) { c.MaxResultByte = 1536 })
	sql := "SELECT district, COUNT(*) AS persons FROM residents GROUP BY district"
	for _, c := range []struct {
		name string
		args []string
		want int
	}{
		{"ok", e.as("acme", "whoami"), exitOK},
		{"unknown flag", e.as("acme", "job", "submit", "--grant", gt, "--frobnicate"), exitUsage},
		{"unknown subcommand", e.as("acme", "job", "frobnicate"), exitUsage},
		{"unknown command", e.as("acme", "frobnicate"), exitUsage},
		{"missing argument", e.as("acme", "job", "show"), exitUsage},
		{"bad output format", e.as("acme", "-o", "xml", "whoami"), exitUsage},
		{"bad --wait", e.as("acme", "job", "submit", "--grant", gt, "--wait=forever", "--sql", sql), exitUsage},
		{"invalid query", e.as("acme", "job", "submit", "--grant", gt, "--sql", "SELECT religion FROM residents"), exitUsage},
		{"not found", e.as("acme", "job", "show", "j-aaaaaaaaaaaa"), exitNotFound},
		{"other tenant's job is not found", e.as("rival", "grant", "show", gt), exitNotFound},
		{"missing local file", e.as("acme", "job", "submit", "--grant", gt, "-f", filepath.Join(e.dir, "none.sql")), exitNotFound},
		{"forbidden", e.as("acme", "principal", "list"), exitForbidden},
		{"unauthenticated", []string{"--host", e.host, "--token", "veil_" + strings.Repeat("x", 43), "whoami"}, exitUnauthenticated},
		{"no token", []string{"--host", e.host, "whoami"}, exitUnauthenticated},
		{"unavailable", []string{"--host", "unix://" + filepath.Join(e.dir, "nothing.sock"), "--token", e.tokens["acme"], "whoami"}, exitUnavailable},
		{"certificate does not verify", []string{"export", "verify", filepath.Join(e.dir, "residents.csv"), "--cert", filepath.Join(e.dir, "residents.yaml"),
			"--key", filepath.Join(e.dir, "data", "platform.pub")}, exitCheckFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runBinary(t, "", c.args...)
			if code != c.want {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.want, out, errOut)
			}
			if code == exitOK {
				return
			}
			if !strings.HasPrefix(errOut, "veil: ") || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr is not one line saying what was wrong: %q", errOut)
			}
			// The same failure with -o json: an object on stderr, stdout empty.
			out, errOut, code = runBinary(t, "", append([]string{"-o", "json"}, c.args...)...)
			if c.name == "bad output format" {
				return // -o is what is wrong
			}
			var rep struct {
				Error    string `json:"error"`
				Kind     string `json:"kind"`
				ExitCode int    `json:"exit_code"`
			}
			if err := json.Unmarshal([]byte(errOut), &rep); err != nil || code != c.want || rep.ExitCode != c.want || rep.Kind != kindOf(c.want) || rep.Error == "" {
				t.Errorf("-o json: exit %d, stderr %q (%v), want a JSON error of kind %s and exit code %d", code, errOut, err, kindOf(c.want), c.want)
			}
			if out != "" {
				t.Errorf("-o json: a failure printed on stdout: %q", out)
			}
		})
	}

	// A job that fails when it runs: the query passes validation, its exact result (a row
	// per age and income, before the gate) is larger than the daemon's result limit.
	out, errOut, code := runBinary(t, "", e.as("acme", "job", "submit", "--grant", gt, "--wait",
		"--sql", "SELECT age, income, COUNT(*) AS n FROM residents GROUP BY age, income")...)
	if code != exitJobFailed || !strings.Contains(out, "failed") || !strings.Contains(errOut, "failed") {
		t.Errorf("a failing job under --wait: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitJobFailed, out, errOut)
	}
	// --wait alone ends at review, successfully.
	out, _, code = runBinary(t, "", e.as("acme", "job", "submit", "--grant", gt, "--wait", "--sql", sql)...)
	if code != exitOK || field(t, out, "status") != "review" {
		t.Errorf("--wait: exit %d, want 0 with the job waiting for review:\n%s", code, out)
	}

	// --wait released (with a space, as the issue writes it) follows the job through review:
	// the exit code is the reviewer's decision.
	for i, c := range []struct {
		decide func(id string) []string // what is done to the job once it waits for review
		status string
		want   int
	}{
		{func(id string) []string { return e.as("reviewer", "review", "approve", id, "--digest", e.digest(id)) }, "released", exitOK},
		{func(id string) []string { return e.as("reviewer", "review", "reject", id, "--reason", "too fine") }, "rejected", exitJobRejected},
		{func(id string) []string { return e.as("acme", "job", "cancel", id) }, "canceled", exitJobCanceled},
	} {
		t.Run("wait released, then "+c.status, func(t *testing.T) {
			q := sql + " ORDER BY district LIMIT " + strconv.Itoa(10+i) // a query to find the job by
			cmd := veilBinary(t, e.as("acme", "job", "submit", "--grant", gt, "--wait", "released", "--sql", q)...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			id := waitForReview(t, e, q)
			if out, err := runVeil(t, c.decide(id)...); err != nil {
				t.Fatalf("%v: %v\n%s", c.decide(id), err, out)
			}
			err := cmd.Wait()
			code := cmd.ProcessState.ExitCode()
			if code != c.want || field(t, stdout.String(), "status") != c.status {
				t.Errorf("exit %d (%v), want %d with status %s\nstdout:\n%s\nstderr:\n%s", code, err, c.want, c.status, stdout.String(), stderr.String())
			}
		})
	}
}

// waitForReview returns the id of acme's job with query q once it waits for review.
func waitForReview(t *testing.T, e *cliEnv, q string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, err := runVeil(t, e.as("acme", "-o", "json", "job", "list", "--status", "review")...)
		if err != nil {
			t.Fatal(err)
		}
		var js []api.Job
		if err := json.Unmarshal([]byte(out), &js); err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			if j.SQL == q {
				return j.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no job for %q waits for review", q)
	return ""
}

// TestExitCodesDocumented checks that the README's table of exit codes is the CLI's.
func TestExitCodesDocumented(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range exitKinds {
		row := regexp.MustCompile(`(?m)^\| ` + strconv.Itoa(k.code) + ` \| ` + "`" + k.kind + "`" + ` \|`)
		if !row.Match(b) {
			t.Errorf("README: no row \"| %d | `%s` | ...\" in the table of exit codes", k.code, k.kind)
		}
	}
}

// TestDoctorExitCode runs veil doctor through the binary on a data directory with its
// platform key readable by others: exit code 11, and the fix printed.
func TestDoctorExitCode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the data directory's key is root's")
	}
	parent, err := os.MkdirTemp("", "veil-doctor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o711)
	data := filepath.Join(parent, "data")
	if out, err := runVeil(t, "init", "--data-dir", data); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if out, errOut, code := runBinary(t, "", "doctor", "--data-dir", data, "--min-free-mb", "1"); code != exitOK {
		t.Fatalf("doctor on a fresh data directory: exit %d\n%s%s", code, out, errOut)
	}
	key := filepath.Join(data, "keys", "platform.key")
	os.Chmod(key, 0o644)
	out, errOut, code := runBinary(t, "", "doctor", "--data-dir", data, "--min-free-mb", "1")
	if code != exitCheckFailed || !strings.Contains(out, "FAIL") || !strings.Contains(out, "chmod 600 "+key) || !strings.Contains(errOut, "data-dir") {
		t.Errorf("doctor with %s readable by others: exit %d, want %d, the check failed and its fix\nstdout:\n%s\nstderr:\n%s", key, code, exitCheckFailed, out, errOut)
	}
}

func TestExitCodeOfErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		ran  bool
		want int
	}{
		{"nil", nil, true, exitOK},
		{"api kind", &client.Error{Status: 409, Kind: "conflict", Msg: "x"}, true, exitConflict},
		{"budget", fmt.Errorf("submit: %w", &client.Error{Status: 409, Kind: "budget_exhausted"}), true, exitConflict},
		{"api invalid", &client.Error{Status: 400, Kind: "invalid"}, true, exitUsage},
		{"status without kind", &client.Error{Status: 503}, true, exitUnavailable},
		{"unknown status", &client.Error{Status: 418}, true, exitInternal},
		{"unreachable", &client.Error{Kind: "unavailable"}, true, exitUnavailable},
		{"tampered log", fmt.Errorf("audit log does NOT verify: %w", &audit.VerifyError{Index: 3, Reason: "changed"}), true, exitCheckFailed},
		{"bad proof", fmt.Errorf("proof does NOT verify: %w", audit.ErrTampered), true, exitCheckFailed},
		{"interrupted", fmt.Errorf("wait: %w", context.Canceled), true, exitInterrupted},
		{"missing file", fmt.Errorf("read: %w", fs.ErrNotExist), true, exitNotFound},
		{"unreadable file", fmt.Errorf("read: %w", fs.ErrPermission), true, exitForbidden},
		{"cobra's parse error", errors.New(`unknown flag: --x`), false, exitUsage},
		{"anything else", errors.New("boom"), true, exitInternal},
		{"explicit", usageErr("--bound: write COL=LO:HI"), true, exitUsage},
	} {
		if got := exitCode(c.err, c.ran); got != c.want {
			t.Errorf("%s: exit code %d, want %d", c.name, got, c.want)
		}
	}
}
