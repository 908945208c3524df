package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/he"
	"github.com/veil-dp/veil/launch"
)

// customEnv is a daemon with a runtime image and an active model grant of acme on the
// residents fixture, for custom jobs.
func customEnv(t *testing.T, edit func(*daemon.Config)) (*env, *client.Client, *client.Client, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("custom jobs run only in containers, which need root; CI runs as root")
	}
	e := start(t, edit)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
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
	img := t.TempDir()
	os.MkdirAll(filepath.Join(img, "etc"), 0o755)
	os.WriteFile(filepath.Join(img, "etc", "os-release"), []byte("NAME=veil-test-runtime\n"), 0o644)
	if _, err := e.op.RegisterRuntime(ctx, api.RegisterRuntime{Name: "static", Path: img}); err != nil {
		t.Fatal(err)
	}
	return e, acme, rev, gid
}

func runCustom(t *testing.T, acme *client.Client, gid, mode string) api.Job {
	t.Helper()
	ctx := context.Background()
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

// TestCustomOutputsBounded: what a program leaves in /out is read with a bound on the bytes
// actually read, per file and in total: a sparse file far larger than the tmpfs, too many
// files, or files that add up to more than a job's output may be are refused with a reason,
// and nothing is stored. --scratch-mb sizes both /scratch and /out.
func TestCustomOutputsBounded(t *testing.T) {
	e, acme, rev, gid := customEnv(t, func(c *daemon.Config) {
		c.MaxResultByte = 1 << 20
		c.ScratchMB = 8
	})
	ctx := context.Background()
	for _, tc := range []struct{ mode, want string }{
		{"sparse", "/out/big.bin is larger than 1 MiB"},
		{"many", "more than 100 files"},
		{"bigtotal", "add up to more than 1 MiB"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			j := runCustom(t, acme, gid, tc.mode)
			// The vendor reads the class; the operator's log, the reason.
			if j.Status != "failed" || j.Message != launch.ClassMessage(launch.ClassLimit) {
				t.Fatalf("%s: %s %q, want failed with the resource limit class", tc.mode, j.Status, j.Message)
			}
			if !strings.Contains(e.log.String(), tc.want) {
				t.Fatalf("%s: the operator's log does not name %q:\n%s", tc.mode, tc.want, e.log.String())
			}
			if _, err := rev.Review(ctx, j.ID); kindOf(err) != "conflict" {
				t.Fatalf("a refused output reached review: %v", err)
			}
		})
	}
	t.Run("scratch and out sized by scratch-mb", func(t *testing.T) {
		j := runCustom(t, acme, gid, "fill")
		if j.Status != "review" {
			t.Fatalf("fill: %s %q", j.Status, j.Message)
		}
		rv, err := rev.Review(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		var scratch, out int64
		for _, f := range rv.Files {
			if f.Name == "fill.txt" {
				fmt.Sscanf(f.Preview, "scratch %d\nout %d", &scratch, &out)
			}
		}
		for name, n := range map[string]int64{"/scratch": scratch, "/out": out} {
			if n <= 4<<20 || n > 8<<20 {
				t.Errorf("%s took %d bytes; --scratch-mb 8 should let it take up to 8 MiB", name, n)
			}
		}
	})
	_ = e
}

// TestStoredBlobsBounded: an he upload is read back at submission with the bound it was
// uploaded under, on the bytes actually read, and must still hash to its digest: a stored
// bundle replaced by a sparse file of 1 GiB, or changed in one byte, is refused, not read
// whole or used.
func TestStoredBlobsBounded(t *testing.T) {
	e := startHE(t, "civil affairs", "civil-affairs", 4)
	ctx := context.Background()
	if _, err := e.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid := e.grant(api.ApplyGrant{Scenario: "credit scoring", Modes: []string{"he"}, K: 5, Datasets: residentsAccess()})
	model := e.model(&he.Model{Kind: he.KindLinear, Features: residentFeatures, Weights: []float64{0.8, -1.3}, Bias: 2.5})
	tenant := sha256.Sum256([]byte("acme"))
	path := filepath.Join(e.cfg.DataDir, "blobs", hex.EncodeToString(tenant[:8]), strings.TrimPrefix(e.bundle.Digest, "sha256:"))
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	submit := func() error {
		_, err := e.acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, HE: &api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model.Digest, Bundle: e.bundle.Digest}})
		return err
	}
	changed := bytes.Clone(orig)
	changed[len(changed)/2] ^= 1
	for name, replace := range map[string]func() error{
		"sparse": func() error { return os.Truncate(path, 1<<30) },
		"a byte": func() error { return os.WriteFile(path, changed, 0o644) },
	} {
		if err := replace(); err != nil {
			t.Fatal(err)
		}
		if err := submit(); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: submission over a changed stored bundle: %v", name, err)
		}
	}
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := submit(); err != nil {
		t.Fatalf("the restored bundle: %v", err)
	}
}

// TestRegisterSpecialFiles: a dataset file is copied only if it is a regular file when
// opened, and no more of it than its size then (a FIFO or a device behind the name would be
// an endless read).
func TestRegisterSpecialFiles(t *testing.T) {
	e := start(t, func(c *daemon.Config) { c.Isolation = "process" })
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	dir := t.TempDir()
	zero := filepath.Join(dir, "zero.parquet")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.parquet")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{zero, fifo} {
		_, err := prov.RegisterDataset(context.Background(), api.RegisterDataset{Schema: residentsSchema, Files: []string{f}})
		if kindOf(err) != "invalid" || !strings.Contains(err.Error(), "not a readable regular file") {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}
