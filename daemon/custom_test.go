package daemon_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// buildProgram builds testdata/customprog statically in one of its modes: a vendor's program
// that needs nothing from its runtime image.
func buildProgram(t *testing.T, mode string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), mode)
	cmd := exec.Command("go", "build", "-ldflags", "-s -w -X main.mode="+mode, "-o", out, "../testdata/vendorprog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test program: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCustomJobs: a vendor's program runs on a registered runtime image over the grant's
// columns; a program that copies its input rows out is flagged and released only with a
// recorded override; one that writes a safe aggregate table passes; a failing program shows
// the vendor a status class and nothing else, except in a dev run on the twins, which shows
// its exit code and the tail of its stderr.
func TestCustomJobs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("custom jobs run only in containers, which need root; CI runs as root")
	}
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	auditor := e.principal("inspector", "auditor", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "own analysis", Purpose: "district profile", Modes: []string{"model"}, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	// The operator registers an image (here a minimal one: the programs are static).
	img := t.TempDir()
	os.MkdirAll(filepath.Join(img, "etc"), 0o755)
	os.WriteFile(filepath.Join(img, "etc", "os-release"), []byte("NAME=veil-test-runtime\n"), 0o644)
	if _, err := acme.RegisterRuntime(ctx, api.RegisterRuntime{Name: "static", Path: img}); kindOf(err) != "forbidden" {
		t.Fatalf("a vendor registered a runtime: %v", err)
	}
	rt, err := e.op.RegisterRuntime(ctx, api.RegisterRuntime{Name: "static", Path: img})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rt.Digest, "sha256:") {
		t.Fatalf("runtime without digest: %+v", rt)
	}
	if _, err := e.op.RegisterRuntime(ctx, api.RegisterRuntime{Name: "static", Path: img}); kindOf(err) != "conflict" {
		t.Fatalf("a runtime name registered twice: %v", err)
	}

	run := func(mode string) api.Job {
		prog, err := acme.UploadProgram(ctx, buildProgram(t, mode))
		if err != nil {
			t.Fatal(err)
		}
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, Custom: &api.CustomJob{Runtime: "static", Program: prog.Digest, Datasets: []string{"residents"}}})
		if err != nil {
			t.Fatal(err)
		}
		if j, err = acme.Wait(ctx, j.ID, nil); err != nil {
			t.Fatal(err)
		}
		return j
	}

	// A program that fails: on the data the vendor sees the class only.
	j := run("fail")
	if j.Status != "failed" || !strings.Contains(j.Message, "failed") || strings.Contains(j.Message, "SECRET") || strings.Contains(j.Message, "3") {
		t.Fatalf("failed program: %s %q", j.Status, j.Message)
	}
	// The same program in a dev run on the twins (which hold no real person): its exit code
	// and the tail of its stderr are shown, for the vendor to debug it.
	tj, err := prov.BuildTwin(ctx, "residents", api.BuildTwin{Kind: "masked", Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := approve(t, rev, tj.ID); err != nil {
		t.Fatal(err)
	}
	failProg, err := acme.UploadProgram(ctx, buildProgram(t, "fail"))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := acme.DevRun(ctx, api.SubmitJob{Grant: gid, Custom: &api.CustomJob{Runtime: "static", Program: failProg.Digest, Datasets: []string{"residents"}}})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Job.Status != "failed" || !strings.Contains(dev.Job.Message, "exit code 3") || !strings.Contains(dev.Job.Message, "SECRET-STDERR-MARKER") {
		t.Fatalf("a failed dev run does not show the program's exit code and stderr: %s %q", dev.Job.Status, dev.Job.Message)
	}

	// A program that copies rows: flagged, and released only with an override.
	j = run("copy")
	if j.Status != "review" {
		t.Fatalf("copy program: %s %q", j.Status, j.Message)
	}
	rv, err := rev.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]bool{}
	for _, f := range rv.Mechanism.Custom.Findings {
		rules[f.Rule] = true
	}
	if !rules["row_count"] || !rules["copied_column"] || len(rv.Files) != 1 || rv.Files[0].Name != "rows.csv" {
		t.Fatalf("findings on a copy of the input: %+v files %+v", rv.Mechanism.Custom.Findings, rv.Files)
	}
	if _, err := rev.Decide(ctx, j.ID, "approve", rv.Digest, ""); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "override") {
		t.Fatalf("approval without override: %v", err)
	}
	if _, err := rev.Override(ctx, j.ID, rv.Digest, ""); kindOf(err) != "invalid" {
		t.Fatalf("override without reason: %v", err)
	}
	if _, err := rev.Override(ctx, j.ID, rv.Digest, "test fixture, synthetic data"); err != nil {
		t.Fatal(err)
	}
	recs, err := auditor.AuditRecords(ctx, 0, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs.Records {
		found = found || (strings.Contains(string(r), "review.override") && strings.Contains(string(r), "synthetic data"))
	}
	if !found {
		t.Error("the override is not in the audit log")
	}
	if _, err := acme.Export(ctx, j.ID, "csv"); kindOf(err) != "invalid" {
		t.Fatalf("custom output as csv: %v", err)
	}
	ex, err := acme.Export(ctx, j.ID, "tar")
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(ex.Data))
	h, err := tr.Next()
	if err != nil || h.Name != "rows.csv" {
		t.Fatalf("export: %v %v", h, err)
	}
	b, _ := io.ReadAll(tr)
	if head := strings.SplitN(string(b), "\n", 2)[0]; !strings.Contains(head, "resident_id") || !strings.Contains(head, "district") {
		t.Fatalf("exported file: %.80q", b)
	}

	// A program that writes a safe aggregate (counts >= 10, rounded to 5, declared): no
	// findings, released by a plain approval.
	j = run("aggregate")
	if j.Status != "review" {
		t.Fatalf("aggregate program: %s %q", j.Status, j.Message)
	}
	rv, err = rev.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.Mechanism.Custom.Findings) != 0 || len(rv.Files) != 2 {
		t.Fatalf("a safe aggregate was flagged: %+v files %+v", rv.Mechanism.Custom.Findings, rv.Files)
	}
	if _, err := rev.Decide(ctx, j.ID, "approve", rv.Digest, ""); err != nil {
		t.Fatal(err)
	}
}
