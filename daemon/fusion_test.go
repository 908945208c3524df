package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// TestFusion: a vendor's own table is fused with public data on a pseudonymized key, usable
// only by that tenant's jobs under its grant once the authority approved it, and deleted —
// files and catalog entry — when the grant ends.
func TestFusion(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	rival := e.principal("rival analyst", "vendor", "rival")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	auditor := e.principal("inspector", "auditor", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "customer profile", Purpose: "spend by district", Modes: []string{"threshold"}, K: 5, RoundTo: 1, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "name"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	// The vendor's customers, identified by name (residents.name is a direct identifier).
	var csv bytes.Buffer
	csv.WriteString("name,spend\n")
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&csv, "Person%d,%d\n", i, 100+i)
	}
	csv.WriteString("Nobody-Unmatched-7,5\n")
	if _, err := acme.UploadFusion(ctx, gid, "customers", "name", "residents.age", csv.Bytes()); kindOf(err) != "invalid" {
		t.Fatalf("a match on a column that identifies no one: %v", err)
	}
	// Too few matches: refused, nothing kept, and the vendor is not told how many matched.
	if _, err := acme.UploadFusion(ctx, gid, "few", "name", "residents.name", []byte("name,spend\nPerson1,1\nPerson2,2\n")); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "too few") {
		t.Fatalf("a table matching 2 persons: %v", err)
	}
	d, err := acme.UploadFusion(ctx, gid, "customers", "name", "residents.name", csv.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if d.Rows != 0 {
		t.Fatalf("the vendor is told %d rows matched", d.Rows)
	}
	if od, err := e.op.Dataset(ctx, d.Name); err != nil || od.Rows != 60 {
		t.Fatalf("fused %d rows (%v), want the 60 that match", od.Rows, err)
	}
	// Only acme (and the platform's roles) see it; nobody can apply for it.
	if ds, _ := rival.Datasets(ctx); slices(ds, d.Name) {
		t.Fatal("another tenant sees the fused upload")
	}
	if _, err := rival.Dataset(ctx, d.Name); kindOf(err) != "not_found" {
		t.Fatalf("another tenant reads the fused upload: %v", err)
	}
	if _, err := rival.ApplyGrant(ctx, api.ApplyGrant{Scenario: "x", Purpose: "x", Modes: []string{"threshold"}, K: 5, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: d.Name, Columns: []string{"spend"}}}}); kindOf(err) != "not_found" {
		t.Fatalf("another tenant applied for the fused upload: %v", err)
	}
	q := fmt.Sprintf("SELECT r.district, COUNT(*) AS customers, SUM(f.spend) AS spend FROM %s f JOIN residents r ON f.resident_id = r.resident_id GROUP BY r.district", d.Name)
	if _, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q}); err == nil {
		t.Fatal("a fused upload was used before the authority approved it")
	}
	if _, err := acme.ApproveFusion(ctx, d.Name); kindOf(err) != "forbidden" {
		t.Fatalf("a vendor approved its own upload: %v", err)
	}
	if _, err := auth.ApproveFusion(ctx, d.Name); err != nil {
		t.Fatal(err)
	}
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job on the fused upload: %+v %v", j, err)
	}
	rv, err := rev.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.Rows) != 1 || rv.Rows[0][0] != "north" || rv.Rows[0][1].(float64) != 60 {
		t.Fatalf("fused result: %v", rv.Rows)
	}
	// Neither the vendor's identifiers nor the unmatched rows stay on the platform.
	var fused string
	filepath.Walk(e.cfg.DataDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		if filepath.Base(path) == "fused.parquet" {
			fused = path
		}
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte("Nobody-Unmatched-7")) {
			t.Errorf("%s keeps the vendor's raw data", path)
		}
		return nil
	})
	if fused == "" {
		t.Fatal("no fused file")
	}
	// The grant ends: the upload goes, and the audit log says so.
	if _, err := auth.ActOnGrant(ctx, gid, "revoke", "contract ended"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fused); !os.IsNotExist(err) {
		t.Fatalf("the fused file is still there after the grant was revoked: %v", err)
	}
	// The projection the job's sandbox mounted goes with it.
	if _, err := os.Stat(filepath.Join(e.cfg.ProjectionsPath(), d.Name)); !os.IsNotExist(err) {
		t.Fatalf("the fused table's projection is still there after the grant was revoked: %v", err)
	}
	if ds, _ := e.op.Datasets(ctx); slices(ds, d.Name) {
		t.Fatal("the fused upload is still in the catalog")
	}
	if _, err := e.op.Budgets(ctx); err != nil {
		t.Fatalf("the budget listing after the upload went: %v", err)
	}
	recs, err := auditor.AuditRecords(ctx, 0, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	var saw []string
	for _, r := range recs.Records {
		for _, a := range []string{"fusion.upload", "fusion.approve", "fusion.delete"} {
			if strings.Contains(string(r), `"`+a+`"`) {
				saw = append(saw, a)
			}
		}
	}
	if strings.Join(saw, ",") != "fusion.upload,fusion.approve,fusion.delete" {
		t.Fatalf("audit log fusion entries: %v", saw)
	}
}

// TestFusionExpiry: a fused upload goes when its grant expires, with nobody acting: the
// sweeper finds it.
func TestFusionExpiry(t *testing.T) {
	var skew atomic.Int64
	e := start(t, func(c *daemon.Config) {
		c.SweepEvery = 20 * time.Millisecond
		c.Clock = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "short study", Purpose: "one week", Modes: []string{"threshold"}, K: 5, ValidFor: "7d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "name"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	var rows strings.Builder
	rows.WriteString("name,spend\n")
	for i := range 20 {
		fmt.Fprintf(&rows, "Person%d,%d\n", i, i)
	}
	d, err := acme.UploadFusion(ctx, gid, "customers", "name", "residents.name", []byte(rows.String()))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if ds, _ := e.op.Datasets(ctx); !slices(ds, d.Name) {
		t.Fatal("the upload went before its grant ended")
	}
	skew.Store(int64(8 * 24 * time.Hour)) // a week and a day later
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds, _ := e.op.Datasets(ctx)
		if !slices(ds, d.Name) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload of an expired grant is still in the catalog")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func slices(ds []api.Dataset, name string) bool {
	for _, d := range ds {
		if d.Name == name {
			return true
		}
	}
	return false
}

// TestFusionThroughUploads: a vendor sends its fusion table and an he blob in resumable parts
// (POST /v1/uploads) and names the upload instead of a body; the fused table is the same as
// from a body and the upload is removed, another tenant cannot use it, and a vendor's upload
// is bounded and is not a dataset to register.
func TestFusionThroughUploads(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	rival := e.principal("rival analyst", "vendor", "rival")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "customer profile", Purpose: "spend by district", Modes: []string{"threshold"}, K: 5, RoundTo: 1, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "name"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	var csv bytes.Buffer
	csv.WriteString("name,spend\n")
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&csv, "Person%d,%d\n", i, 100+i)
	}
	file := filepath.Join(t.TempDir(), "customers.csv")
	if err := os.WriteFile(file, csv.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	parts := 0
	u, err := acme.UploadFile(ctx, file, client.UploadOptions{Chunk: 200, Progress: func(int64, int64) { parts++ }})
	if err != nil || !u.Complete || parts < 3 {
		t.Fatalf("vendor upload: %+v %v (%d parts)", u, err, parts)
	}
	if _, err := rival.UploadFusionFrom(ctx, gid, "customers", "name", "residents.name", u.ID); kindOf(err) == "" {
		t.Fatal("another tenant used the upload")
	}
	if _, err := acme.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Uploads: []string{u.ID}}); kindOf(err) != "forbidden" {
		t.Fatalf("a vendor registered its upload as a dataset: %v", err)
	}
	d, err := acme.UploadFusionFrom(ctx, gid, "customers", "name", "residents.name", u.ID)
	if err != nil || d.Name != "fusion_acme_customers" {
		t.Fatalf("fusion from an upload: %+v %v", d, err)
	}
	if _, err := acme.UploadStatus(ctx, u.ID); kindOf(err) != "not_found" {
		t.Fatalf("a fused upload is kept: %v", err)
	}
	// An he blob the same way; a malformed one is refused as from a body, and kept to retry.
	blob := filepath.Join(t.TempDir(), "model.enc")
	os.WriteFile(blob, bytes.Repeat([]byte("not a model "), 100), 0o600)
	bu, err := acme.UploadFile(ctx, blob, client.UploadOptions{Chunk: 256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acme.UploadBlobFrom(ctx, bu.ID); kindOf(err) != "invalid" {
		t.Fatalf("a malformed blob from an upload: %v", err)
	}
	if _, err := acme.UploadStatus(ctx, bu.ID); err != nil {
		t.Fatalf("a refused blob's upload is gone: %v", err)
	}
	if _, err := acme.StartUpload(ctx, api.StartUpload{Name: "big.bundle", Size: 257 << 20, SHA256: strings.Repeat("0", 64)}); kindOf(err) != "invalid" {
		t.Fatalf("a vendor upload over 256 MiB: %v", err)
	}
}
