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
	e.registerResidents(prov)
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "customer profile", Purpose: "spend by district", Modes: []string{"threshold"}, K: 5, RoundTo: 1, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "name"}}}})
	// The vendor's customers, identified by name (residents.name is a direct identifier).
	var csv bytes.Buffer
	csv.WriteString("name,spend\n")
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&csv, "Person%d,%d\n", i, 100+i)
	}
	csv.WriteString("Nobody-Unmatched-7,5\n")
	csv.WriteString("Person0,7\nPerson1,8\n") // two customers with a second row each: 62 rows, 60 persons
	if _, err := acme.UploadFusion(ctx, gid, "customers", "name", "residents.age", csv.Bytes()); kindOf(err) != "invalid" {
		t.Fatalf("a match on a column that identifies no one: %v", err)
	}
	// Too few matches: refused, nothing kept, and the vendor is not told how many matched.
	if _, err := acme.UploadFusion(ctx, gid, "few", "name", "residents.name", []byte("name,spend\nPerson1,1\nPerson2,2\n")); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "too few") {
		t.Fatalf("a table matching 2 persons: %v", err)
	}
	// Many rows of few persons are still too few: the refusal counts persons, not rows.
	var dup bytes.Buffer
	dup.WriteString("name,spend\n")
	for i := range 12 {
		fmt.Fprintf(&dup, "Person%d,%d\n", i%2, i)
	}
	_, err := acme.UploadFusion(ctx, gid, "dupes", "name", "residents.name", dup.Bytes())
	if kindOf(err) != "invalid" || !strings.Contains(err.Error(), "too few") {
		t.Fatalf("a table of 12 rows matching 2 persons: %v", err)
	}
	if strings.Contains(err.Error(), "12") || strings.Contains(err.Error(), " 2 ") {
		t.Fatalf("the refusal tells the vendor how many matched: %v", err)
	}
	d, err := acme.UploadFusion(ctx, gid, "customers", "name", "residents.name", csv.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if d.Rows != 0 {
		t.Fatalf("the vendor is told %d rows matched", d.Rows)
	}
	if od, err := e.op.Dataset(ctx, d.Name); err != nil || od.Rows != 62 {
		t.Fatalf("fused %d rows (%v), want the 62 that match", od.Rows, err)
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
	if len(rv.Rows) != 1 || rv.Rows[0][0] != "north" || rv.Rows[0][1].(float64) != 62 {
		t.Fatalf("fused result: %v", rv.Rows)
	}
	// Neither the vendor's identifiers nor the unmatched rows stay on the platform.
	var fused string
	filepath.Walk(e.cfg.DataDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return nil // not a sandbox's exec fifo either: reading one takes a start's handshake
		}
		if filepath.Base(path) == "fused.parquet" {
			fused = path
		}
		if fileHolds(t, path, []byte("Nobody-Unmatched-7")) {
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
		// The audit log (not the vendor) has both counts of the join.
		if strings.Contains(string(r), `"fusion.upload"`) && (!strings.Contains(string(r), `"matched_rows":"62"`) || !strings.Contains(string(r), `"matched_persons":"60"`)) {
			t.Errorf("the upload's audit record lacks matched rows and persons: %s", r)
		}
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
	e.registerResidents(prov)
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "short study", Purpose: "one week", Modes: []string{"threshold"}, K: 5, ValidFor: "7d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "name"}}}})
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

// TestFusionDev: a dev run can read a fused table. Its twin is built from the released twin
// of the dataset it was matched with (that twin's persons, the vendor's columns NULL, said
// so), and until that twin exists the dev run says what is missing and who builds it.
func TestFusionDev(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	e.registerResidents(prov)
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "customer profile", Purpose: "spend by district", Modes: []string{"threshold"}, K: 5, RoundTo: 1, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "name"}}}})
	var csv bytes.Buffer
	csv.WriteString("name,spend\n")
	for i := range 30 {
		fmt.Fprintf(&csv, "Person%d,%d\n", i, 100+i)
	}
	d, err := acme.UploadFusion(ctx, gid, "customers", "name", "residents.name", csv.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.ApproveFusion(ctx, d.Name); err != nil {
		t.Fatal(err)
	}
	q := api.SubmitJob{Grant: gid, SQL: fmt.Sprintf("SELECT r.district, COUNT(*) AS customers, SUM(f.spend) AS spend FROM %s f JOIN residents r ON f.resident_id = r.resident_id GROUP BY r.district", d.Name)}
	alone := api.SubmitJob{Grant: gid, SQL: fmt.Sprintf("SELECT COUNT(*) AS customers FROM %s", d.Name)}
	out, err := acme.DevRun(ctx, alone)
	if err != nil || out.Job.Status != "failed" || !strings.Contains(out.Job.Message, "dev twin of residents") || !strings.Contains(out.Job.Message, "veil dataset twin residents") {
		t.Fatalf("dev run on a fused table before its source has a twin: %+v %v", out.Job, err)
	}
	tj, err := prov.BuildTwin(ctx, "residents", api.BuildTwin{Kind: "masked", Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := approve(t, rev, tj.ID); err != nil {
		t.Fatal(err)
	}
	if out, err = acme.DevRun(ctx, alone); err != nil || out.Job.Status != "dev" || len(out.Rows) != 1 || out.Rows[0][0].(float64) != 40 {
		t.Fatalf("dev run on a fused table alone: %+v %v %v", out.Job, out.Rows, err)
	}
	out, err = acme.DevRun(ctx, q)
	if err != nil || out.Job.Status != "dev" {
		t.Fatalf("dev run on a fused table: %+v %v", out.Job, err)
	}
	// The twins join on the unit: the run has groups, and no value of the vendor's table.
	var customers float64
	for _, r := range out.Rows {
		customers += r[1].(float64)
		if r[2] != nil {
			t.Fatalf("the fused twin holds a value of the vendor's table: %v", out.Rows)
		}
	}
	if customers < 30 || customers > 40 { // of the twin's 40 persons; a group under k is suppressed
		t.Fatalf("dev run on the fused twin counts %v rows, want the persons of the residents twin: %v", customers, out.Rows)
	}
	var said bool
	for _, n := range out.Nulls {
		said = said || (n.Dataset == d.Name && n.Column == "spend" && strings.Contains(n.Reason, "fused"))
	}
	if !said {
		t.Fatalf("the dev run does not say the fused table's columns are NULL in its twin: %+v", out.Nulls)
	}
	// The fused table's twin goes with it when the grant ends.
	twins, _ := filepath.Glob(filepath.Join(e.cfg.DataDir, "twins", d.Name+"-*"))
	if len(twins) != 1 {
		t.Fatalf("fused twin files: %v", twins)
	}
	if _, err := auth.ActOnGrant(ctx, gid, "revoke", "contract ended"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(twins[0]); !os.IsNotExist(err) {
		t.Fatalf("the fused table's twin is still there after the grant was revoked: %v", err)
	}
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
	e.registerResidents(prov)
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "customer profile", Purpose: "spend by district", Modes: []string{"threshold"}, K: 5, RoundTo: 1, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "name"}}}})
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
