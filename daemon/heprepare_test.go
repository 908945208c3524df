package daemon_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/he"
)

// auditDetails returns the details of the audit entries with this action, oldest first.
func auditDetails(t *testing.T, e *heEnv, action string) []map[string]string {
	t.Helper()
	recs, err := e.op.AuditRecords(context.Background(), 0, 10000, true)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, raw := range recs.Records {
		if en, err := audit.DecodeEntry(raw); err == nil && en.Action == action {
			out = append(out, en.Details)
		}
	}
	return out
}

// preparedFiles lists the prepared models in the daemon's data directory.
func preparedFiles(t *testing.T, e *heEnv) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.cfg.DataDir, "he-prepared", "*", "*"))
	return files
}

// TestHEModelPreparedAtUpload: uploading a logistic model has the platform average it over
// its bundle's lanes once (in a sandbox); the job then takes those averages instead of
// computing them, and scores as before. A vendor cannot upload a prepared model, a stored
// one bound to other blobs is refused by the job (which averages the model itself, with the
// same result), and a preparation that cannot be stored loses neither the upload nor the
// job.
func TestHEModelPreparedAtUpload(t *testing.T) {
	e := startHE(t, "civil affairs", "civil-affairs", 4)
	ctx := context.Background()
	residents := writeResidents(t, t.TempDir())
	if _, err := e.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{residents}}); err != nil {
		t.Fatal(err)
	}
	gid := e.grant(api.ApplyGrant{Scenario: "credit scoring", Modes: []string{"he"}, K: 5, Datasets: residentsAccess()})
	m := &he.Model{Kind: he.KindLogistic, Features: residentFeatures, Weights: []float64{0.6, -0.9}, Bias: 0.2, InputRange: 8}
	check := func(what string, got map[string]float64) {
		t.Helper()
		for d, w := range plainScores(t, residents, m) {
			if d == "tiny" {
				continue
			}
			tol := math.Max(1e-4*math.Abs(w), 5*got["__error_std"])
			if math.Abs(got[d]-w) > tol {
				t.Errorf("%s, district %s: decrypted %.6f, plaintext %.6f (tolerance %.2g)", what, d, got[d], w, tol)
			}
		}
	}
	jobPrepared := func() string {
		t.Helper()
		gates := auditDetails(t, e, "job.gate")
		if len(gates) == 0 {
			t.Fatal("no job.gate audit entry")
		}
		return gates[len(gates)-1]["prepared"]
	}

	model := e.model(m)
	preps := auditDetails(t, e, "blob.prepare")
	if len(preps) != 1 || preps[0]["model"] != model.Digest || preps[0]["bundle"] != e.bundle.Digest || preps[0]["lanes"] != "4" {
		t.Fatalf("blob.prepare audit entries after the model's upload: %v", preps)
	}
	files := preparedFiles(t, e)
	if len(files) != 1 {
		t.Fatalf("prepared files: %v", files)
	}
	got, _ := e.score(gid, api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model.Digest}, nil, "arrow")
	check("prepared", got)
	if p := jobPrepared(); p != "used" {
		t.Fatalf("the job's prepared averages: %q, want used", p)
	}

	// The platform's file is no upload: a vendor sending its bytes is refused.
	blob, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.acme.UploadBlob(ctx, blob); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "prepared model") {
		t.Fatalf("upload of a prepared model: %v", err)
	}

	// A second model of the same key set gets its own file; put it in the place of the
	// first model's: the job refuses it (bound to another model) and averages itself.
	m2 := &he.Model{Kind: he.KindLogistic, Features: residentFeatures, Weights: []float64{-0.3, 0.5}, Bias: -0.1, InputRange: 8}
	e.model(m2)
	files2 := preparedFiles(t, e)
	if len(files2) != 2 {
		t.Fatalf("prepared files after a second model: %v", files2)
	}
	other := files2[0]
	if other == files[0] {
		other = files2[1]
	}
	b2, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], b2, 0o644); err != nil {
		t.Fatal(err)
	}
	got, _ = e.score(gid, api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model.Digest}, nil, "arrow")
	check("prepared file of another model", got)
	if p := jobPrepared(); p != "refused" {
		t.Fatalf("the job's prepared averages with another model's file in place: %q, want refused", p)
	}

	// The model first, its bundle second: the bundle's upload prepares the pair.
	sk2, pub2, err := he.GenerateKeys(4)
	if err != nil {
		t.Fatal(err)
	}
	em2, err := he.EncryptModel(pub2, m)
	if err != nil {
		t.Fatal(err)
	}
	mb2, _ := em2.MarshalBinary()
	model2, err := e.acme.UploadBlob(ctx, mb2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(preparedFiles(t, e)); n != 2 {
		t.Fatalf("%d prepared files after a model without its bundle, want 2", n)
	}
	pb2, _ := pub2.MarshalBinary()
	bundle2, err := e.acme.UploadBlob(ctx, pb2)
	if err != nil {
		t.Fatal(err)
	}
	preps = auditDetails(t, e, "blob.prepare")
	if last := preps[len(preps)-1]; last["model"] != model2.Digest || last["bundle"] != bundle2.Digest {
		t.Fatalf("the bundle's upload did not prepare the model uploaded before it: %v", preps)
	}
	sk1, bundle1 := e.sk, e.bundle
	e.sk, e.bundle = sk2, bundle2
	got, _ = e.score(gid, api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model2.Digest}, nil, "arrow")
	check("model uploaded before its bundle", got)
	if p := jobPrepared(); p != "used" {
		t.Fatalf("the job of a model uploaded before its bundle: prepared %q, want used", p)
	}
	e.sk, e.bundle = sk1, bundle1

	// Preparation that cannot store its file: the upload still succeeds, the job averages.
	if err := os.RemoveAll(filepath.Join(e.cfg.DataDir, "he-prepared")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.cfg.DataDir, "he-prepared"), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	m3 := &he.Model{Kind: he.KindLogistic, Features: residentFeatures, Weights: []float64{0.2, 0.4}, Bias: 0.3, InputRange: 8}
	model3 := e.model(m3)
	m = m3
	got, _ = e.score(gid, api.HEScore{Dataset: "residents", GroupBy: []string{"district"}, Model: model3.Digest}, nil, "arrow")
	check("preparation failed", got)
	if p := jobPrepared(); p != "absent" {
		t.Fatalf("the job's prepared averages after a failed preparation: %q, want absent", p)
	}
	if !strings.Contains(e.log.String(), "preparation failed") {
		t.Error("the failed preparation was not logged")
	}
}

// TestHEPreparationsOneAtATime: the preparations that uploads start are sandboxed HE
// evaluations of seconds each, outside the job scheduler's slots. A vendor uploading many
// models at once must not run as many preparations at once (each a sandbox of half a job's
// memory, beside everyone's jobs): a tenant's run one after another. Four models uploaded
// together are prepared, and no two preparations overlap (each audit entry is recorded
// before the next one starts; its ms is the time it took).
func TestHEPreparationsOneAtATime(t *testing.T) {
	e := startHE(t, "civil affairs", "civil-affairs", 4)
	ctx := context.Background()
	const n = 4
	blobs := make([][]byte, n)
	for i := range blobs {
		m := &he.Model{Kind: he.KindLogistic, Features: residentFeatures, Weights: []float64{0.1 * float64(i+1), -0.2}, Bias: 0.1, InputRange: 8}
		em, err := he.EncryptModel(e.pub, m)
		if err != nil {
			t.Fatal(err)
		}
		blobs[i], _ = em.MarshalBinary()
	}
	errs := make(chan error, n)
	for _, b := range blobs {
		go func() {
			_, err := e.acme.UploadBlob(ctx, b)
			errs <- err
		}()
	}
	for range blobs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	recs, err := e.op.AuditRecords(ctx, 0, 10000, true)
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ start, end time.Time }
	var spans []span
	for _, raw := range recs.Records {
		en, err := audit.DecodeEntry(raw)
		if err != nil || en.Action != "blob.prepare" {
			continue
		}
		ms, err := strconv.Atoi(en.Details["ms"])
		if err != nil {
			t.Fatalf("blob.prepare without its time: %v", en.Details)
		}
		spans = append(spans, span{en.Time.Add(-time.Duration(ms) * time.Millisecond), en.Time})
	}
	if len(spans) != n {
		t.Fatalf("%d preparations recorded, want %d", len(spans), n)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end) {
			t.Errorf("preparation %d started %v before preparation %d ended", i, spans[i-1].end.Sub(spans[i].start), i-1)
		}
	}
}
