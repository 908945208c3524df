package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
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

// heEnv is a daemon with a vendor holding an he key set whose public bundle is uploaded.
type heEnv struct {
	*env
	acme, prov, auth, rev *client.Client
	sk                    *he.SecretKey
	pub                   *he.PublicBundle
	bundle                api.Blob
}

func startHE(t *testing.T, provider, tenant string, groups int) *heEnv {
	if raceEnabled {
		// Scoring under encryption takes minutes under the race detector; what runs
		// concurrently here (the daemon's jobs, store and gate) is raced by the other tests.
		t.Skip("he scoring runs in the ordinary (non-race) pass of make test")
	}
	e := &heEnv{env: start(t, nil)}
	e.acme = e.principal("acme analyst", "vendor", "acme")
	e.prov = e.principal(provider, "provider", tenant)
	e.auth = e.principal("data bureau", "authority", "")
	e.rev = e.principal("reviewer", "reviewer", "")
	var err error
	if e.sk, e.pub, err = he.GenerateKeys(groups); err != nil { // vendor side, no daemon
		t.Fatal(err)
	}
	b, _ := e.pub.MarshalBinary()
	if e.bundle, err = e.acme.UploadBlob(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return e
}

// grant applies for req as the vendor and has every stage approve it.
func (e *heEnv) grant(req api.ApplyGrant) string {
	ctx := context.Background()
	req.Purpose, req.ValidFor = "score groups", "30d"
	gr, err := e.acme.ApplyGrant(ctx, req)
	if err != nil {
		e.t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, e.auth, e.prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			e.t.Fatal(err)
		}
	}
	return gid
}

// model encrypts m under the vendor's key and uploads it.
func (e *heEnv) model(m *he.Model) api.Blob {
	em, err := he.EncryptModel(e.pub, m)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := em.MarshalBinary()
	blob, err := e.acme.UploadBlob(context.Background(), b)
	if err != nil {
		e.t.Fatal(err)
	}
	return blob
}

// score runs an he-score job to review, has it approved and returns its export, decrypted by
// the vendor: sums by the first key, and the review the reviewer saw.
func (e *heEnv) score(grant string, job api.HEScore, dpo *api.DPOptions, format string) (map[string]float64, api.Review) {
	ctx := context.Background()
	job.Bundle = e.bundle.Digest
	j, err := e.acme.SubmitJob(ctx, api.SubmitJob{Grant: grant, HE: &job, DP: dpo})
	if err != nil {
		e.t.Fatal(err)
	}
	if j, err = e.acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		e.t.Fatalf("he job: %+v %v", j, err)
	}
	rv, err := e.rev.Review(ctx, j.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := approve(e.t, e.rev, j.ID); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.acme.Export(ctx, j.ID, "csv"); kindOf(err) != "invalid" {
		e.t.Fatalf("csv export of ciphertexts: %v", err)
	}
	ex, err := e.acme.Export(ctx, j.ID, format)
	if err != nil {
		e.t.Fatal(err)
	}
	return decryptExport(e.t, e.sk, ex.Data), rv
}

// decryptExport is the vendor's `veil he decrypt` on an arrow or parquet export.
func decryptExport(t *testing.T, sk *he.SecretKey, data []byte) map[string]float64 {
	t.Helper()
	var keys *array.String
	var slots *array.Int64
	var sumsB64 string
	if bytes.HasPrefix(data, []byte("PAR1")) {
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
		if v := rdr.MetaData().KeyValueMetadata().FindValue("veil.he.sums"); v != nil {
			sumsB64 = *v
		}
		keys, slots = tbl.Column(0).Data().Chunk(0).(*array.String), tbl.Column(2).Data().Chunk(0).(*array.Int64)
	} else {
		rd, err := ipc.NewFileReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		var rec arrow.RecordBatch
		if rec, err = rd.Record(0); err != nil {
			t.Fatal(err)
		}
		md := rd.Schema().Metadata()
		if i := md.FindKey("veil.he.sums"); i >= 0 {
			sumsB64 = md.Values()[i]
		}
		keys, slots = rec.Column(0).(*array.String), rec.Column(2).(*array.Int64)
	}
	blob, err := base64.StdEncoding.DecodeString(sumsB64)
	if err != nil || len(blob) == 0 {
		t.Fatalf("export without the encrypted sums (%v)", err)
	}
	sums, err := he.UnmarshalSums(blob)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := he.Decrypt(sk, sums)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{"__error_std": sums.SumErrorStd()}
	for r := 0; r < keys.Len(); r++ {
		out[strings.Clone(keys.Value(r))] = vals[slots.Value(r)]
	}
	return out
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

var residentFeatures = []he.Feature{{Name: "age", Lower: 0, Upper: 110, Mean: 45, Scale: 15}, {Name: "income", Lower: 0, Upper: 100000, Mean: 20000, Scale: 12000}}

func residentsAccess() []api.DatasetAccess {
	return []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}
}

// TestHEScoreJob: a vendor scores residents with an encrypted linear and logistic model;
// the platform never sees the model or a secret key; the decrypted per-district sums match
// the plaintext computation; a group under k is not scored; bad uploads are refused.
func TestHEScoreJob(t *testing.T) {
	e := startHE(t, "civil affairs", "civil-affairs", 4)
	ctx := context.Background()
	residents := writeResidents(t, t.TempDir())
	if _, err := e.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{residents}}); err != nil {
		t.Fatal(err)
	}
	gid := e.grant(api.ApplyGrant{Scenario: "credit scoring", Modes: []string{"he"}, K: 5, Datasets: residentsAccess()})

	// The daemon refuses a secret key (and keeps nothing of it), garbage, and damaged blobs.
	skBytes, _ := e.sk.MarshalBinary()
	pubBytes, _ := e.pub.MarshalBinary()
	damaged := bytes.Clone(pubBytes)
	damaged[len(damaged)/2] ^= 1
	for _, tc := range []struct {
		name, want string
		blob       []byte
	}{
		{"secret key", "secret key", skBytes},
		{"garbage", "not an he blob", []byte("SELECT 1")},
		{"damaged", "checksum", damaged},
		{"truncated", "truncated", pubBytes[:len(pubBytes)-100]},
	} {
		if _, err := e.acme.UploadBlob(ctx, tc.blob); kindOf(err) != "invalid" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s upload: %v, want a refusal naming %q", tc.name, err, tc.want)
		}
	}

	for _, m := range []*he.Model{
		{Kind: he.KindLinear, Features: residentFeatures, Weights: []float64{0.8, -1.3}, Bias: 2.5},
		{Kind: he.KindLogistic, Features: residentFeatures, Weights: []float64{0.6, -0.9}, Bias: 0.2, InputRange: 8},
	} {
		model := e.model(m)
		// Groups of one person are refused before anything runs.
		if _, err := e.acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, HE: &api.HEScore{Dataset: "residents", GroupBy: []string{"resident_id"}, Model: model.Digest, Bundle: e.bundle.Digest}}); kindOf(err) != "invalid" {
			t.Fatalf("group by the privacy unit: %v", err)
		}
		got, rv := e.score(gid, api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model.Digest}, nil, "arrow")
		if rv.Mechanism.HE == nil || rv.Mechanism.Suppressed != 1 || len(rv.Rows) != 2 || !strings.Contains(rv.Mechanism.HE.Statement, "never held the model") {
			t.Fatalf("review of the %s job: %+v rows %v", m.Kind, rv.Mechanism, rv.Rows)
		}
		if _, ok := got["tiny"]; ok {
			t.Errorf("%s model: a district of 3 persons (< k=5) was scored", m.Kind)
		}
		for d, w := range plainScores(t, residents, m) {
			if d == "tiny" {
				continue
			}
			// 1e-4 relative, or five standard deviations of the flooding noise, which
			// dominates for groups of a few dozen rows like these.
			tol := math.Max(1e-4*math.Abs(w), 5*got["__error_std"])
			if math.Abs(got[d]-w) > tol || tol > 1e-3*math.Abs(w) {
				t.Errorf("%s model, district %s: decrypted %.6f, plaintext %.6f (tolerance %.2g)", m.Kind, d, got[d], w, tol)
			}
		}
	}

	// No vendor secret key reached the daemon: not in its state directory, not in its log.
	probe := skBytes[len(skBytes)/2 : len(skBytes)/2+64]
	filepath.Walk(e.cfg.DataDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return nil // not a sandbox's exec fifo either: reading one takes a start's handshake
		}
		if fileHolds(t, path, probe) {
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
	e := startHE(t, "civil affairs", "civil-affairs", 4)
	ctx := context.Background()
	residents := writeResidents(t, t.TempDir())
	if _, err := e.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{residents}}); err != nil {
		t.Fatal(err)
	}
	plain := e.grant(api.ApplyGrant{Scenario: "credit scoring", Modes: []string{"he"}, K: 5, Datasets: residentsAccess()})
	gid := e.grant(api.ApplyGrant{Scenario: "private credit scoring", Modes: []string{"he", "dp"}, K: 5, Epsilon: 9, Delta: 1e-7, MaxQuery: 4.5, Datasets: residentsAccess()})
	for i, m := range []*he.Model{
		{Kind: he.KindLogistic, InputRange: 8, Bias: 0.2, Weights: []float64{0.6, -0.9}, Features: residentFeatures},
		{Kind: he.KindLinear, Bias: 2.5, Weights: []float64{0.8, -1.3}, Features: residentFeatures},
	} {
		job := api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: e.model(m).Digest, Bundle: e.bundle.Digest}
		submit := func(grant string, o *api.DPOptions) error {
			_, err := e.acme.SubmitJob(ctx, api.SubmitJob{Grant: grant, DP: o, HE: &job})
			return err
		}
		if i == 0 {
			if err := submit(plain, &api.DPOptions{Epsilon: 1, Delta: 1e-8}); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "no privacy budget") {
				t.Fatalf("dp on a grant without a budget: %v", err)
			}
			if err := submit(gid, &api.DPOptions{Epsilon: 1}); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "delta") {
				t.Fatalf("dp without delta: %v", err)
			}
		}
		got, rv := e.score(gid, job, &api.DPOptions{Epsilon: 4.5, Delta: 1e-8}, "arrow")
		if rv.Mechanism.DP == nil || rv.Mechanism.HE == nil || len(rv.Budget) != 1 || rv.Budget[0].Spent.Epsilon != 4.5*float64(i+1) || !strings.Contains(rv.Mechanism.HE.Statement, "Differential privacy") {
			t.Fatalf("review of the dp %s job: %+v budget %+v", m.Kind, rv.Mechanism, rv.Budget)
		}
		// ε/3 = 1.5 per part: the district of 3 persons is under k and never scored; the
		// others pass partition selection but for a chance below 1e-6.
		if len(rv.Rows) != 2 {
			t.Fatalf("%s: groups after partition selection: %v", m.Kind, rv.Rows)
		}
		moved := false
		for d, w := range plainScores(t, residents, m) {
			if d == "tiny" {
				continue
			}
			// Logistic: Laplace of scale 2/3 on each sum. Linear: scale 4/3 on each of the two
			// per-group feature sums in [-1, 1] units, times weights of about 3 and 5.4, and on
			// the count times the bias: beyond 80 with a chance far below 1e-6.
			diff := math.Abs(got[d] - w)
			if diff > 80 {
				t.Errorf("%s, district %s: noisy sum off by %.3g", m.Kind, d, diff)
			}
			moved = moved || diff > 1e-3
		}
		if !moved {
			t.Errorf("%s: no sum carries noise: released without DP noise", m.Kind)
		}
	}
	if _, err := e.acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, DP: &api.DPOptions{Epsilon: 1, Delta: 1e-8},
		HE: &api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: e.model(&he.Model{Kind: he.KindLinear, Bias: 1, Weights: []float64{1, 1}, Features: residentFeatures}).Digest, Bundle: e.bundle.Digest}}); err == nil || !strings.Contains(err.Error(), "budget exhausted") {
		t.Fatalf("a job beyond the slice: %v", err)
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
	e := startHE(t, "human resources", "human-resources", 8)
	schema, err := os.ReadFile(filepath.Join(city, "social_insurance.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(city, "social_insurance.parquet")
	if _, err := e.prov.RegisterDataset(context.Background(), api.RegisterDataset{Schema: string(schema), Files: []string{data}}); err != nil {
		t.Fatal(err)
	}
	gid := e.grant(api.ApplyGrant{Scenario: "credit pre-screening", Modes: []string{"he"}, K: 10,
		Datasets: []api.DatasetAccess{{Name: "social_insurance", Columns: []string{"year", "monthly_wage", "months_paid", "pension_contribution"}}}})
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
		got, _ := e.score(gid, api.HEScore{Dataset: "social_insurance", GroupBy: []string{"year"}, Model: e.model(m).Digest}, nil, "parquet")
		// The plaintext computation, in DuckDB, of the same model on the same file.
		score := fmt.Sprintf("%g", m.Bias)
		for i, f := range m.Features {
			score += fmt.Sprintf(" + %g * (least(greatest(%s, %g), %g) - %g) / %g", m.Weights[i], f.Name, f.Lower, f.Upper, f.Mean, f.Scale)
		}
		if m.Kind == he.KindLogistic {
			score = "1 / (1 + exp(-(" + score + ")))"
		}
		rows, err := db.Query(fmt.Sprintf("SELECT CAST(year AS VARCHAR), sum(%s) FROM read_parquet('%s') WHERE monthly_wage IS NOT NULL AND months_paid IS NOT NULL AND pension_contribution IS NOT NULL GROUP BY year", score, data))
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
		if n == 0 || len(got) != n+1 { // +1: the error std entry
			t.Errorf("%s model: %d years decrypted, %d in the data", m.Kind, len(got)-1, n)
		}
	}
}

// TestHEUploadCannotCrashTheDaemon: a bundle whose key section claims absurd sizes (resealed
// with a valid checksum, as anyone can) is refused, and the daemon is still there: the full
// parse of uploads runs in a sandbox.
func TestHEUploadCannotCrashTheDaemon(t *testing.T) {
	e := startHE(t, "civil affairs", "civil-affairs", 4)
	pub, _ := e.pub.MarshalBinary()
	b := bytes.Clone(pub)
	const header = 6 + 1 + 1 + 32 + 8
	first := header + 8 + int(binary.BigEndian.Uint64(b[header:header+8])) // after section 0
	for i := first + 8; i < first+8+64; i++ {
		b[i] = 0x7f // section 1's leading size words: far beyond memory
	}
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	copy(b[len(b)-sha256.Size:], sum[:])
	if _, err := e.acme.UploadBlob(context.Background(), b); kindOf(err) != "invalid" {
		t.Fatalf("a bundle with absurd sizes: %v", err)
	}
	if _, err := e.acme.Whoami(context.Background()); err != nil {
		t.Fatalf("the daemon did not survive the upload: %v", err)
	}
}
