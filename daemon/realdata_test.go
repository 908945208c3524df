package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// strikesHeader is the header of the FAA wildlife-strike records as vega-datasets ships them
// (birdstrikes.csv), with an id column of leading zeros and a Chinese column added.
const strikesHeader = "Record ID,Airport Name,Aircraft Make Model,Effect Amount of damage,Flight Date,Aircraft Airline Operator,Origin State,Phase of flight,Wildlife Size,Wildlife Species,Time of day,Cost Other,Cost Repair,Cost Total $,Speed IAS in knots,机场所在省\n"

// writeStrikes writes n strike records over three states (Texas 60%, Ohio 37%, Utah 3%).
func writeStrikes(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(strikesHeader)
	for i := 0; i < n; i++ {
		st := "Texas"
		switch {
		case i >= n*97/100:
			st = "Utah"
		case i >= n*60/100:
			st = "Ohio"
		}
		fmt.Fprintf(&b, "%05d,AIRPORT %d,B-737,None,1990-01-%02d,AIRLINE,%s,Climb,Small,Gull,Day,0,%d,%d,%d,省%d\n", i, i%7, 1+i%28, st, i%3, 10*(i%9), 100+i%200, i%4)
	}
	p := filepath.Join(t.TempDir(), "birdstrikes.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// strikesSchema names most columns by their headers as they are (Veil derives the simple
// names vendors query), maps two explicitly, and declares each row its own unit.
const strikesSchema = `
name: strikes
provider: faa
unit: row
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: record_id, source: Record ID, type: VARCHAR, level: 2, kind: none}
  - {name: Airport Name, type: VARCHAR, level: 1, kind: none}
  - {name: Aircraft Make Model, type: VARCHAR, level: 1, kind: none}
  - {name: Effect Amount of damage, type: VARCHAR, level: 1, kind: none}
  - {name: Flight Date, type: DATE, level: 1, kind: none}
  - {name: Aircraft Airline Operator, type: VARCHAR, level: 1, kind: none}
  - {name: Origin State, type: VARCHAR, level: 1, kind: none}
  - {name: Phase of flight, type: VARCHAR, level: 1, kind: none}
  - {name: Wildlife Size, type: VARCHAR, level: 1, kind: none}
  - {name: Wildlife Species, type: VARCHAR, level: 1, kind: none}
  - {name: Time of day, type: VARCHAR, level: 1, kind: none}
  - {name: Cost Other, type: BIGINT, level: 1, kind: none}
  - {name: Cost Repair, type: BIGINT, level: 1, kind: none}
  - {name: Cost Total $, type: BIGINT, level: 1, kind: none, bounds: [0, 100000]}
  - {name: Speed IAS in knots, type: BIGINT, level: 1, kind: none}
  - {name: province, source: 机场所在省, type: VARCHAR, level: 1, kind: none}
`

// TestRealHeaders: the wildlife-strike records register unchanged, with their own headers,
// as event-level data (unit row); an id with leading zeros stays text; a vendor's query on
// "Origin State" and "Cost Total $" runs and the threshold gate counts rows as units.
func TestRealHeaders(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	rev := e.principal("reviewer", "reviewer", "")
	csv := writeStrikes(t, 200)
	before, _ := os.ReadFile(csv)
	ds, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{csv}})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(csv); string(after) != string(before) || ds.Rows != 200 {
		t.Fatalf("rows %d; file unchanged: %v", ds.Rows, string(after) == string(before))
	}
	var sch struct {
		Columns []struct{ Name, Source, Type string } `json:"columns"`
	}
	if err := json.Unmarshal(ds.Schema, &sch); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range sch.Columns {
		names = append(names, c.Name+"="+c.Source)
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"origin_state=Origin State", "cost_total=Cost Total $", "province=机场所在省", "record_id=Record ID", "veil_row_id="} {
		if !strings.Contains(got, want) {
			t.Fatalf("stored schema lacks %s: %s", want, got)
		}
	}
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "strike costs", Purpose: "airport safety", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "strikes", Columns: []string{"origin_state", "cost_total", "record_id"}}}})
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: `SELECT "Origin State", COUNT(*) AS n, SUM("Cost Total $") AS cost FROM strikes GROUP BY "Origin State" ORDER BY 1`})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job %+v err %v", j, err)
	}
	rv, err := rev.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Utah has 6 rows = 6 units (k=5 passes); every state shows. (A MIN of the unique record
	// ids would be suppressed by the extremes rule of the dominance check;
	// engine's TestStageFileHeadersAndTypes keeps the ids' leading zeros.)
	if len(rv.Rows) != 3 || rv.Rows[0][0] != "Ohio" {
		t.Fatalf("review rows %v", rv.Rows)
	}
}

// TestRegisterMismatchesAtOnce: every difference between schema and files is reported in one
// refusal, in the schema's column order; a CSV value that does not fit its type is named by
// line and column in one line that quotes no value. Nothing is registered.
func TestRegisterMismatchesAtOnce(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	csv := writeStrikes(t, 20)
	bad := strings.Replace(strikesSchema, "  - {name: Wildlife Size, type: VARCHAR, level: 1, kind: none}\n", "", 1)
	bad = strings.Replace(bad, "name: Time of day", "name: Time of Night", 1)
	bad = strings.Replace(bad, "source: 机场所在省", "source: 省", 1)
	_, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: bad, Files: []string{csv}})
	if kindOf(err) != "invalid" {
		t.Fatalf("mismatched schema: %v", err)
	}
	msg := err.Error()
	order := []string{`"time_of_night"`, `"province" (header "省")`, `file column "Wildlife Size"`, `file column "Time of day"`, `file column "机场所在省"`}
	last := -1
	for _, w := range order {
		i := strings.Index(msg, w)
		if i < 0 || i < last {
			t.Fatalf("refusal does not list %s in order: %s", w, msg)
		}
		last = i
	}
	// A cost that is not a number, on line 4.
	b, _ := os.ReadFile(csv)
	lines := strings.Split(string(b), "\n")
	lines[3] = strings.Replace(lines[3], ",Day,0,", ",Day,CONFIDENTIAL,", 1)
	os.WriteFile(csv, []byte(strings.Join(lines, "\n")), 0o644)
	_, err = prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{csv}})
	if kindOf(err) != "invalid" || !strings.Contains(err.Error(), `line 4, column "Cost Other"`) || strings.Contains(err.Error(), "CONFIDENTIAL") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad value: %v", err)
	}
	if ds, _ := e.op.Datasets(ctx); len(ds) != 0 {
		t.Fatalf("a refused dataset is listed: %v", ds)
	}
}

// TestDomainFrom: a column's public domain is taken from a level-1 column of the provider's
// own reference dataset, or from a column's declared domain; a column of protected values
// (level 2 here) never becomes a domain.
func TestDomainFrom(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	ref := filepath.Join(t.TempDir(), "zipcodes.csv")
	os.WriteFile(ref, []byte("zip,state,county\n00501,Texas,c1\n43001,Ohio,c2\n84001,Utah,c3\n75001,Texas,c4\n"), 0o644)
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Files: []string{ref}, Schema: `
name: zipcodes
provider: faa
unit: row
budget: {epsilon: 1, delta: 1.0e-6}
columns:
  - {name: zip, type: VARCHAR, level: 1, kind: none}
  - {name: state, type: VARCHAR, level: 1, kind: none}
  - {name: county, type: VARCHAR, level: 2, kind: none}
`}); err != nil {
		t.Fatal(err)
	}
	csv := writeStrikes(t, 40)
	withFrom := strings.Replace(strikesSchema, "{name: Origin State, type: VARCHAR, level: 1, kind: none}", "{name: Origin State, type: VARCHAR, level: 1, kind: none, domain: {from: zipcodes.state}}", 1)
	ds, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: withFrom, Files: []string{csv}})
	if err != nil {
		t.Fatal(err)
	}
	var sch struct {
		Columns []struct {
			Name       string   `json:"name"`
			Domain     []string `json:"domain"`
			DomainFrom string   `json:"domain_from"`
		} `json:"columns"`
	}
	json.Unmarshal(ds.Schema, &sch)
	found := false
	for _, c := range sch.Columns {
		if c.Name == "origin_state" {
			found = strings.Join(c.Domain, ",") == "Ohio,Texas,Utah" && c.DomainFrom == "zipcodes.state"
		}
	}
	if !found {
		t.Fatalf("domain not taken from zipcodes.state: %s", ds.Schema)
	}
	protected := strings.Replace(withFrom, "zipcodes.state", "zipcodes.county", 1)
	_, err = prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strings.Replace(protected, "name: strikes", "name: strikes2", 1), Files: []string{csv}})
	if kindOf(err) != "invalid" || !strings.Contains(err.Error(), "level-1") {
		t.Fatalf("a level-2 column became a domain: %v", err)
	}
	other := e.principal("other agency", "provider", "dot")
	_, err = other.RegisterDataset(ctx, api.RegisterDataset{Schema: strings.Replace(strings.Replace(withFrom, "provider: faa", "provider: dot", 1), "name: strikes", "name: strikes3", 1), Files: []string{csv}})
	if kindOf(err) != "invalid" {
		t.Fatalf("another provider's undeclared column became a domain: %v", err)
	}
}

// TestUploadDataFile: a provider sends a file over the API in parts at the offset the daemon
// holds (a part at another offset is refused and the upload resumes from the status), the
// digest is checked at the last byte (a mismatch deletes the upload), another tenant cannot
// see or extend it, and the completed upload registers like a file and is then removed.
func TestUploadDataFile(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	other := e.principal("dot", "provider", "dot")
	data, _ := os.ReadFile(writeStrikes(t, 50))
	sum := sha256.Sum256(data)
	u, err := prov.StartUpload(ctx, api.StartUpload{Name: "birdstrikes.csv", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	half := int64(len(data) / 2)
	if u, err = prov.AppendUpload(ctx, u.ID, 0, data[:half]); err != nil || u.Offset != half || u.Complete {
		t.Fatalf("first part: %+v %v", u, err)
	}
	if _, err := prov.AppendUpload(ctx, u.ID, 0, data[:half]); kindOf(err) != "conflict" {
		t.Fatalf("a part at a stale offset: %v", err)
	}
	if _, err := other.UploadStatus(ctx, u.ID); kindOf(err) != "not_found" {
		t.Fatalf("another tenant sees the upload: %v", err)
	}
	if _, err := other.AppendUpload(ctx, u.ID, half, data[half:]); kindOf(err) != "not_found" {
		t.Fatalf("another tenant extends the upload: %v", err)
	}
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Uploads: []string{u.ID}}); kindOf(err) != "conflict" {
		t.Fatalf("an incomplete upload registered: %v", err)
	}
	st, err := prov.UploadStatus(ctx, u.ID)
	if err != nil || st.Offset != half {
		t.Fatalf("status %+v %v", st, err)
	}
	if u, err = prov.AppendUpload(ctx, u.ID, st.Offset, data[half:]); err != nil || !u.Complete {
		t.Fatalf("last part: %+v %v", u, err)
	}
	ds, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Uploads: []string{u.ID}})
	if err != nil || ds.Rows != 50 {
		t.Fatalf("register the upload: %+v %v", ds, err)
	}
	if _, err := prov.UploadStatus(ctx, u.ID); kindOf(err) != "not_found" {
		t.Fatalf("a registered upload is kept: %v", err)
	}
	// A file whose bytes are not the digest given is deleted at its last byte.
	bad, err := prov.StartUpload(ctx, api.StartUpload{Name: "b.csv", Size: int64(len(data)), SHA256: strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.AppendUpload(ctx, bad.ID, 0, data); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("digest mismatch: %v", err)
	}
	if _, err := prov.UploadStatus(ctx, bad.ID); kindOf(err) != "not_found" {
		t.Fatalf("a mismatched upload is kept: %v", err)
	}
	// The whole path through the client, parts and all.
	f := writeStrikes(t, 30)
	var seen int64
	up, err := prov.UploadFile(ctx, f, client.UploadOptions{Progress: func(done, total int64) { seen = done }})
	if err != nil || !up.Complete || seen != up.Size {
		t.Fatalf("UploadFile: %+v %v (progress %d)", up, err, seen)
	}
	if _, err := prov.StartUpload(ctx, api.StartUpload{Name: "../x.csv", Size: 1, SHA256: strings.Repeat("0", 64)}); kindOf(err) != "invalid" {
		t.Fatalf("a path as upload name: %v", err)
	}
}

// TestDatasetUpdate: a new version under a registered name is refused unless registered
// explicitly as an update (the same files again are a no-op); the update lists the versions,
// newest first, and names the active grants that read the new version; a refused version
// leaves no files; vendors do not see versions.
func TestDatasetUpdate(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	first := writeStrikes(t, 40)
	d1, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{first}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{first}}); err != nil {
		t.Fatalf("the same version again: %v", err)
	}
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "strike costs", Purpose: "airport safety", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "strikes", Columns: []string{"origin_state"}}}})
	// A job on the first version: its sandbox mounts a projection of it.
	runJob := func() {
		t.Helper()
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT origin_state, COUNT(*) AS n FROM strikes GROUP BY origin_state"})
		if err != nil {
			t.Fatal(err)
		}
		if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
			t.Fatalf("job on strikes: %+v %v", j, err)
		}
	}
	projections := func() []string {
		ents, _ := os.ReadDir(filepath.Join(e.cfg.ProjectionsPath(), "strikes"))
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		return names
	}
	runJob()
	before := projections()
	if len(before) != 1 {
		t.Fatalf("projections of strikes after a job: %v", before)
	}
	second := writeStrikes(t, 60)
	entries, _ := os.ReadDir(filepath.Join(filepath.Join(e.cfg.DataDir, "datasets"), "strikes"))
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{second}}); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "veil dataset update strikes") {
		t.Fatalf("a new version by register: %v", err)
	}
	if after, _ := os.ReadDir(filepath.Join(filepath.Join(e.cfg.DataDir, "datasets"), "strikes")); len(after) != len(entries) {
		t.Fatalf("a refused version left files: %d entries, were %d", len(after), len(entries))
	}
	v, err := prov.UpdateDataset(ctx, "strikes", api.RegisterDataset{Schema: strikesSchema, Files: []string{second}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Dataset.Rows != 60 || len(v.Versions) != 2 || !v.Versions[0].Current || v.Versions[1].Version != d1.Version || v.Versions[1].Current || len(v.Grants) != 1 || v.Grants[0] != gid {
		t.Fatalf("update: %+v", v)
	}
	// The next job mounts a projection of the new version; the old version's goes.
	runJob()
	if after := projections(); len(after) != 1 || after[0] == before[0] {
		t.Fatalf("projections of strikes after a job on its new version: %v (were %v)", after, before)
	}
	if _, err := acme.DatasetVersions(ctx, "strikes"); kindOf(err) != "forbidden" {
		t.Fatalf("a vendor lists versions: %v", err)
	}
	if _, err := prov.UpdateDataset(ctx, "nothing", api.RegisterDataset{Schema: strings.Replace(strikesSchema, "name: strikes", "name: nothing", 1), Files: []string{second}}); kindOf(err) != "not_found" {
		t.Fatalf("update of a dataset not registered: %v", err)
	}
}

// TestUploadExpires: an upload with no part for longer than the TTL (platform config) is
// expired at once and its bytes are deleted by the sweep; its ID then says it expired and to
// start over (registering it too), while an upload whose parts keep coming lives on; after
// another TTL the expired ID is forgotten.
func TestUploadExpires(t *testing.T) {
	var clock offsetClock
	e := start(t, func(c *daemon.Config) {
		c.Clock = clock.now
		c.UploadTTL = time.Hour
		c.SweepEvery = 10 * time.Millisecond
	})
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	data, _ := os.ReadFile(writeStrikes(t, 50))
	sum := sha256.Sum256(data)
	half := int64(len(data) / 2)
	begin := func() api.Upload {
		u, err := prov.StartUpload(ctx, api.StartUpload{Name: "birdstrikes.csv", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
		if err != nil {
			t.Fatal(err)
		}
		if u, err = prov.AppendUpload(ctx, u.ID, 0, data[:half]); err != nil {
			t.Fatal(err)
		}
		return u
	}
	abandoned, alive := begin(), begin()
	clock.advance(40 * time.Minute)
	if _, err := prov.AppendUpload(ctx, alive.ID, half, data[half:half+10]); err != nil {
		t.Fatal(err)
	}
	clock.advance(40 * time.Minute) // abandoned: 80 minutes without a part; alive: 40
	_, err := prov.UploadStatus(ctx, abandoned.ID)
	if kindOf(err) != "not_found" || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "start the upload over") {
		t.Fatalf("status of an abandoned upload: %v", err)
	}
	bytesOf := func(u api.Upload) string {
		return filepath.Join(e.cfg.DataDir, "uploads", u.ID, "birdstrikes.csv")
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(bytesOf(abandoned)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweep did not delete the abandoned upload's bytes")
		}
	}
	if _, err := os.Stat(bytesOf(alive)); err != nil {
		t.Fatalf("the sweep deleted an upload whose parts came: %v", err)
	}
	if _, err := prov.AppendUpload(ctx, abandoned.ID, half, data[half:]); kindOf(err) != "not_found" || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a part of a swept upload: %v", err)
	}
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Uploads: []string{abandoned.ID}}); !strings.Contains(fmt.Sprint(err), "expired") {
		t.Fatalf("registering a swept upload: %v", err)
	}
	u, err := prov.AppendUpload(ctx, alive.ID, half+10, data[half+10:])
	if err != nil || !u.Complete {
		t.Fatalf("the live upload: %+v %v", u, err)
	}
	if ds, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Uploads: []string{alive.ID}}); err != nil || ds.Rows != 50 {
		t.Fatalf("register the live upload: %+v %v", ds, err)
	}
	clock.advance(2 * time.Hour)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Dir(bytesOf(abandoned))); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired upload's record outlived a second TTL")
		}
	}
	if _, err := prov.UploadStatus(ctx, abandoned.ID); kindOf(err) != "not_found" {
		t.Fatalf("a forgotten upload: %v", err)
	}
}

// TestDatasetDidYouMean: a dataset name with a typo is answered with the closest name in the
// catalog, in a grant application, dataset show and dataset update alike; a name close to
// none gets no guess.
func TestDatasetDidYouMean(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	acme := e.principal("acme", "vendor", "acme")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{writeStrikes(t, 20)}}); err != nil {
		t.Fatal(err)
	}
	_, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "s", Purpose: "p", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "strkes", Columns: []string{"origin_state"}}}})
	if kindOf(err) != "not_found" || !strings.Contains(err.Error(), `dataset "strkes" is not in the catalog (did you mean strikes?)`) {
		t.Fatalf("grant apply with a typo: %v", err)
	}
	if _, err := acme.Dataset(ctx, "Strike"); kindOf(err) != "not_found" || !strings.Contains(err.Error(), "(did you mean strikes?)") {
		t.Fatalf("dataset show with a typo: %v", err)
	}
	if _, err := acme.Dataset(ctx, "flights"); kindOf(err) != "not_found" || strings.Contains(err.Error(), "did you mean") {
		t.Fatalf("dataset show of a name close to none: %v", err)
	}
	_, err = prov.UpdateDataset(ctx, "strikez", api.RegisterDataset{Schema: strings.Replace(strikesSchema, "name: strikes", "name: strikez", 1), Files: []string{writeStrikes(t, 20)}})
	if kindOf(err) != "not_found" || !strings.Contains(err.Error(), "(did you mean strikes?); register it first") {
		t.Fatalf("dataset update with a typo: %v", err)
	}
}
