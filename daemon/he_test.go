package daemon_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/he"
	"github.com/veil-dp/veil/testdata"
)

// heGrant applies for and approves an he grant on residents with k=5.
func (e *env) heGrant(vendor, auth, prov *client.Client) string {
	ctx := context.Background()
	gr, err := vendor.ApplyGrant(ctx, api.ApplyGrant{Scenario: "credit scoring", Purpose: "score districts", Modes: []string{"he"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}})
	if err != nil {
		e.t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			e.t.Fatal(err)
		}
	}
	return gid
}

// plainScores computes the model on the residents CSV in the clear: the per-district sums
// the decrypted export must match.
func plainScores(t *testing.T, csvPath string, m *he.Model) map[string]float64 {
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, r := range recs[1:] {
		score := m.Bias
		for j, ft := range m.Features {
			col := map[string]int{"age": 3, "income": 4}[ft.Name]
			x, _ := strconv.ParseFloat(r[col], 64)
			x = math.Max(ft.Lower, math.Min(ft.Upper, x))
			score += m.Weights[j] * (x - ft.Mean) / ft.Scale
		}
		if m.Kind == he.KindLogistic {
			score = 1 / (1 + math.Exp(-score))
		}
		out[r[2]] += score
	}
	return out
}

// TestHEScoreJob: a vendor scores residents with an encrypted linear and logistic model;
// the platform never sees the model or a secret key; the decrypted per-district sums match
// the plaintext computation; a group under k is not scored; bad uploads are refused.
func TestHEScoreJob(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	residents := writeResidents(t, t.TempDir())
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{residents}}); err != nil {
		t.Fatal(err)
	}
	gid := e.heGrant(acme, auth, prov)

	// Vendor side, no daemon involved.
	sk, pub, err := he.GenerateKeys(4)
	if err != nil {
		t.Fatal(err)
	}
	skBytes, _ := sk.MarshalBinary()
	pubBytes, _ := pub.MarshalBinary()

	// The daemon refuses a secret key (and keeps nothing of it), garbage, and damaged blobs.
	if _, err := acme.UploadBlob(ctx, skBytes); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "secret key") {
		t.Fatalf("secret key upload: %v", err)
	}
	if _, err := acme.UploadBlob(ctx, []byte("SELECT 1")); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "not an he blob") {
		t.Fatalf("garbage upload: %v", err)
	}
	damaged := bytes.Clone(pubBytes)
	damaged[len(damaged)/2] ^= 1
	if _, err := acme.UploadBlob(ctx, damaged); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("damaged upload: %v", err)
	}
	if _, err := acme.UploadBlob(ctx, pubBytes[:len(pubBytes)-100]); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated upload: %v", err)
	}
	bundle, err := acme.UploadBlob(ctx, pubBytes)
	if err != nil {
		t.Fatal(err)
	}

	features := []he.Feature{{Name: "age", Lower: 0, Upper: 110, Mean: 45, Scale: 15}, {Name: "income", Lower: 0, Upper: 100000, Mean: 20000, Scale: 12000}}
	for _, m := range []*he.Model{
		{Kind: he.KindLinear, Features: features, Weights: []float64{0.8, -1.3}, Bias: 2.5},
		{Kind: he.KindLogistic, Features: features, Weights: []float64{0.6, -0.9}, Bias: 0.2, InputRange: 8},
	} {
		em, err := he.EncryptModel(pub, m)
		if err != nil {
			t.Fatal(err)
		}
		emBytes, _ := em.MarshalBinary()
		model, err := acme.UploadBlob(ctx, emBytes)
		if err != nil {
			t.Fatal(err)
		}
		// A model for features the grant does not include is refused before anything runs.
		if _, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, HE: &api.HEScore{Dataset: "residents", GroupBy: []string{"resident_id"}, Model: model.Digest, Bundle: bundle.Digest}}); kindOf(err) != "invalid" {
			t.Fatalf("group by the privacy unit: %v", err)
		}
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, HE: &api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model.Digest, Bundle: bundle.Digest}})
		if err != nil {
			t.Fatal(err)
		}
		if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
			t.Fatalf("%s job: %+v %v", m.Kind, j, err)
		}
		rv, err := rev.Review(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rv.Mechanism.HE == nil || rv.Mechanism.Suppressed != 1 || len(rv.Rows) != 2 || !strings.Contains(rv.Mechanism.HE.Statement, "never held the model") {
			t.Fatalf("review of the %s job: %+v rows %v", m.Kind, rv.Mechanism, rv.Rows)
		}
		if _, err := rev.Decide(ctx, j.ID, "approve", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := acme.Export(ctx, j.ID, "csv"); kindOf(err) != "invalid" {
			t.Fatalf("csv export of ciphertexts: %v", err)
		}
		ex, err := acme.Export(ctx, j.ID, "arrow")
		if err != nil {
			t.Fatal(err)
		}
		// Vendor side again: decrypt and compare with the plaintext computation.
		rd, err := ipc.NewFileReader(bytes.NewReader(ex.Data))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := rd.Record(0)
		if err != nil {
			t.Fatal(err)
		}
		md := rd.Schema().Metadata()
		blob, err := base64.StdEncoding.DecodeString(md.Values()[md.FindKey("veil.he.sums")])
		if err != nil {
			t.Fatal(err)
		}
		sums, err := he.UnmarshalSums(blob)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := he.Decrypt(sk, sums)
		if err != nil {
			t.Fatal(err)
		}
		want := plainScores(t, residents, m)
		for r := 0; r < int(rec.NumRows()); r++ {
			d := rec.Column(0).(*array.String).Value(r)
			slot := rec.Column(2).(*array.Int64).Value(r)
			got := vals[slot]
			// The tolerance: 1e-4 relative, or five standard deviations of the flooding
			// noise, which dominates for groups of a few dozen rows like these.
			tol := math.Max(1e-4*math.Abs(want[d]), 5*sums.SumErrorStd())
			if math.Abs(got-want[d]) > tol || tol > 1e-3*math.Abs(want[d]) {
				t.Errorf("%s model, district %s: decrypted %.6f, plaintext %.6f (tolerance %.2g)", m.Kind, d, got, want[d], tol)
			}
		}
		rd.Close()
	}

	// No vendor secret key reached the daemon: not in its state directory, not in its log.
	probe := skBytes[len(skBytes)/2 : len(skBytes)/2+64]
	filepath.Walk(e.cfg.DataDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		if b, _ := os.ReadFile(path); bytes.Contains(b, probe) {
			t.Errorf("%s holds bytes of the vendor's secret key", path)
		}
		return nil
	})
	if strings.Contains(e.log.String(), base64.StdEncoding.EncodeToString(probe[:48])) {
		t.Error("the daemon log holds bytes of the vendor's secret key")
	}
}

// TestHEScoreDP: under a grant with a privacy budget, an he-score job spends it like any dp
// job: groups come from partition selection, counts and the encrypted sums carry Laplace
// noise, and a job beyond the slice is refused before it runs.
func TestHEScoreDP(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	residents := writeResidents(t, t.TempDir())
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{residents}}); err != nil {
		t.Fatal(err)
	}
	plain := e.heGrant(acme, auth, prov)
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "private credit scoring", Purpose: "score districts", Modes: []string{"he", "dp"}, K: 5,
		Epsilon: 9, Delta: 1e-7, MaxQuery: 9, ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	sk, pub, err := he.GenerateKeys(4)
	if err != nil {
		t.Fatal(err)
	}
	pubBytes, _ := pub.MarshalBinary()
	bundle, err := acme.UploadBlob(ctx, pubBytes)
	if err != nil {
		t.Fatal(err)
	}
	m := &he.Model{Kind: he.KindLogistic, InputRange: 8, Bias: 0.2, Weights: []float64{0.6, -0.9},
		Features: []he.Feature{{Name: "age", Lower: 0, Upper: 110, Mean: 45, Scale: 15}, {Name: "income", Lower: 0, Upper: 100000, Mean: 20000, Scale: 12000}}}
	em, err := he.EncryptModel(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	emBytes, _ := em.MarshalBinary()
	model, err := acme.UploadBlob(ctx, emBytes)
	if err != nil {
		t.Fatal(err)
	}
	job := func(grant string, o *api.DPOptions) (api.Job, error) {
		return acme.SubmitJob(ctx, api.SubmitJob{Grant: grant, DP: o, HE: &api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model.Digest, Bundle: bundle.Digest}})
	}
	if _, err := job(plain, &api.DPOptions{Epsilon: 1, Delta: 1e-8}); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "no privacy budget") {
		t.Fatalf("dp on a grant without a budget: %v", err)
	}
	if _, err := job(gid, &api.DPOptions{Epsilon: 1}); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "delta") {
		t.Fatalf("dp without delta: %v", err)
	}
	j, err := job(gid, &api.DPOptions{Epsilon: 9, Delta: 1e-8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job(gid, &api.DPOptions{Epsilon: 1, Delta: 1e-8}); err == nil || !strings.Contains(err.Error(), "budget exhausted") {
		t.Fatalf("a job beyond the slice: %v", err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("dp he job: %+v %v", j, err)
	}
	rv, err := rev.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Mechanism.DP == nil || rv.Mechanism.HE == nil || len(rv.Budget) != 1 || rv.Budget[0].Spent.Epsilon != 9 || !strings.Contains(rv.Mechanism.HE.Statement, "Differential privacy") {
		t.Fatalf("review of the dp he job: %+v budget %+v", rv.Mechanism, rv.Budget)
	}
	// ε/3 = 3 per part: the district of 3 persons is dropped by partition selection (it
	// would be kept with probability below 1e-6), the other two kept (the same, reversed).
	if len(rv.Rows) != 2 {
		t.Fatalf("groups after partition selection: %v", rv.Rows)
	}
	if _, err := rev.Decide(ctx, j.ID, "approve", ""); err != nil {
		t.Fatal(err)
	}
	ex, err := acme.Export(ctx, j.ID, "arrow")
	if err != nil {
		t.Fatal(err)
	}
	rd, err := ipc.NewFileReader(bytes.NewReader(ex.Data))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rec, _ := rd.Record(0)
	md := rd.Schema().Metadata()
	blob, _ := base64.StdEncoding.DecodeString(md.Values()[md.FindKey("veil.he.sums")])
	sums, err := he.UnmarshalSums(blob)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := he.Decrypt(sk, sums)
	if err != nil {
		t.Fatal(err)
	}
	want := plainScores(t, residents, m)
	moved := false
	for r := 0; r < int(rec.NumRows()); r++ {
		d := rec.Column(0).(*array.String).Value(r)
		diff := math.Abs(vals[rec.Column(2).(*array.Int64).Value(r)] - want[d])
		// Laplace with scale 1/3 (one row per person, score in [0, 1], ε=3): beyond 15 scales
		// with probability 3e-7.
		if diff > 5 {
			t.Errorf("district %s: noisy sum off by %.3g, more than 15 noise scales", d, diff)
		}
		moved = moved || diff > 1e-3
	}
	if !moved {
		t.Error("no sum carries noise: the encrypted sums were released without DP noise")
	}
}

// TestHEScoreDemoData: on the demo city's social-insurance records, the decrypted per-year
// sums of a linear and a logistic model match the plaintext computation in DuckDB within
// 1e-4 relative, after noise flooding.
func TestHEScoreDemoData(t *testing.T) {
	city := t.TempDir()
	if err := testdata.Generate(context.Background(), city, 5000); err != nil {
		t.Fatal(err)
	}
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	hr := e.principal("human resources", "provider", "human-resources")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	schema, err := os.ReadFile(filepath.Join(city, "social_insurance.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(city, "social_insurance.parquet")
	if _, err := hr.RegisterDataset(ctx, api.RegisterDataset{Schema: string(schema), Files: []string{file}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "credit pre-screening", Purpose: "score years", Modes: []string{"he"}, K: 10, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "social_insurance", Columns: []string{"year", "monthly_wage", "months_paid", "pension_contribution"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, hr} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	sk, pub, err := he.GenerateKeys(8)
	if err != nil {
		t.Fatal(err)
	}
	pubBytes, _ := pub.MarshalBinary()
	bundle, err := acme.UploadBlob(ctx, pubBytes)
	if err != nil {
		t.Fatal(err)
	}
	features := []he.Feature{{Name: "monthly_wage", Lower: 0, Upper: 30000, Mean: 8000, Scale: 4000},
		{Name: "months_paid", Lower: 0, Upper: 12, Mean: 10, Scale: 2}, {Name: "pension_contribution", Lower: 0, Upper: 3000, Mean: 800, Scale: 400}}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, m := range []*he.Model{
		{Kind: he.KindLinear, Features: features, Weights: []float64{0.5, 0.4, 0.2}, Bias: -0.5},
		{Kind: he.KindLogistic, Features: features, Weights: []float64{0.5, 0.4, 0.2}, Bias: -0.5, InputRange: 8},
	} {
		em, err := he.EncryptModel(pub, m)
		if err != nil {
			t.Fatal(err)
		}
		emBytes, _ := em.MarshalBinary()
		model, err := acme.UploadBlob(ctx, emBytes)
		if err != nil {
			t.Fatal(err)
		}
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, HE: &api.HEScore{Dataset: "social_insurance", GroupBy: []string{"year"}, Model: model.Digest, Bundle: bundle.Digest}})
		if err != nil {
			t.Fatal(err)
		}
		if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
			t.Fatalf("%s job: %+v %v", m.Kind, j, err)
		}
		if _, err := rev.Decide(ctx, j.ID, "approve", ""); err != nil {
			t.Fatal(err)
		}
		ex, err := acme.Export(ctx, j.ID, "parquet")
		if err != nil {
			t.Fatal(err)
		}
		got := decryptParquet(t, sk, ex.Data)
		// The plaintext computation, in DuckDB, of the same model on the same file.
		score := fmt.Sprintf("%g", m.Bias)
		for i, f := range m.Features {
			score += fmt.Sprintf(" + %g * (least(greatest(%s, %g), %g) - %g) / %g", m.Weights[i], f.Name, f.Lower, f.Upper, f.Mean, f.Scale)
		}
		if m.Kind == he.KindLogistic {
			score = "1 / (1 + exp(-(" + score + ")))"
		}
		rows, err := db.Query(fmt.Sprintf("SELECT CAST(year AS VARCHAR), sum(%s) FROM read_parquet('%s') WHERE monthly_wage IS NOT NULL AND months_paid IS NOT NULL AND pension_contribution IS NOT NULL GROUP BY year", score, file))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var year string
			var want float64
			if err := rows.Scan(&year, &want); err != nil {
				t.Fatal(err)
			}
			n++
			g, ok := got[year]
			if !ok {
				t.Errorf("%s model: year %s missing from the export", m.Kind, year)
			} else if rel := math.Abs(g-want) / math.Abs(want); rel > 1e-4 {
				t.Errorf("%s model, year %s: decrypted %.6f, plaintext %.6f, relative error %.2g > 1e-4", m.Kind, year, g, want, rel)
			}
		}
		rows.Close()
		if n == 0 || len(got) != n {
			t.Errorf("%s model: %d years decrypted, %d in the data", m.Kind, len(got), n)
		}
	}
}

// decryptParquet is the vendor's `veil he decrypt` on a Parquet export: sums by key.
func decryptParquet(t *testing.T, sk *he.SecretKey, data []byte) map[string]float64 {
	t.Helper()
	rdr, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	v := rdr.MetaData().KeyValueMetadata().FindValue("veil.he.sums")
	if v == nil {
		t.Fatal("parquet export without the encrypted sums")
	}
	blob, _ := base64.StdEncoding.DecodeString(*v)
	sums, err := he.UnmarshalSums(blob)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := he.Decrypt(sk, sums)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	keys := tbl.Column(0).Data().Chunk(0).(*array.String)
	slots := tbl.Column(2).Data().Chunk(0).(*array.Int64)
	for r := 0; r < keys.Len(); r++ {
		out[keys.Value(r)] = vals[slots.Value(r)]
	}
	return out
}
