package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/he"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
	"github.com/veil-dp/veil/sandbox"
	"github.com/veil-dp/veil/store"
)

// The he-score job: the vendor uploads its public key bundle and its encrypted model
// (PUT /v1/blobs), then submits a job naming the dataset and the group-by keys. The runner
// reads the model's features in the sandbox, counts each group in the clear, drops groups
// with fewer than k persons, scores the rest under encryption and sums per group (package
// he); the output is the group keys, their row counts and one ciphertext only the vendor can
// decrypt. The daemon never decrypts, never holds a secret key, and refuses one at upload.

// maxBlobBytes bounds an upload: a public bundle is about 27 MB, an encrypted model of 16
// features about 36 MB.
const maxBlobBytes = 256 << 20

func (s *Server) blobPath(tenant, digest string) (string, error) {
	return s.cfg.TenantFile("blobs", tenant, digest)
}

// readUpload reads a request body bounded by the route's limit, saying so when it is hit.
func readUpload(r *http.Request, limit int64, what string) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return nil, fmt.Errorf("%w: the %s is larger than %d MiB", policy.ErrInvalid, what, limit>>20)
	}
	return body, err
}

// uploadBlob stores a vendor's public key bundle or encrypted model under its digest. It
// looks at the envelope's header first and refuses a secret key before parsing anything.
func (s *Server) uploadBlob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	body, err := readUpload(r, maxBlobBytes, "upload")
	if err != nil {
		return err
	}
	ctx := r.Context()
	kind, err := he.BlobKind(body)
	if err != nil {
		return fmt.Errorf("%w: not an he blob: %v; upload the public.bundle of `veil he keygen` or the output of `veil he encrypt-model`", policy.ErrInvalid, err)
	}
	var keyID string
	switch kind {
	case he.BlobSecretKey:
		clear(body)
		s.db.Update(ctx, func(tx store.Tx) error {
			return s.rec.Record(ctx, tx, p, "blob.refuse", "tenant/"+p.Tenant, map[string]string{"reason": "a secret key was uploaded; it was discarded unread"})
		})
		return fmt.Errorf("%w: this is a secret key; it must never leave your machine and was discarded unread. Upload public.bundle (veil he keygen wrote both)", policy.ErrInvalid)
	case he.BlobPublicBundle:
		if keyID, _, err = he.PeekBundle(body); err != nil {
			return fmt.Errorf("%w: %v", policy.ErrInvalid, err)
		}
	case he.BlobEncryptedModel:
		h, err := he.PeekModelHeader(body)
		if err != nil {
			return fmt.Errorf("%w: %v", policy.ErrInvalid, err)
		}
		keyID = h.KeyID
	default:
		return fmt.Errorf("%w: a %s is not an upload; upload a public bundle or an encrypted model", policy.ErrInvalid, kind)
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	path, err := s.blobPath(p.Tenant, digest)
	if err != nil {
		return err
	}
	// The full parse of untrusted key material runs in a sandbox: a blob crafted to make
	// the parser allocate without bound kills a runner, never the daemon. Only a blob that
	// parses is stored under its digest.
	check := path + ".check-" + platform.NewID("x")
	if err := platform.StoreUpload(check, body, 0o644); err != nil {
		return err
	}
	defer os.Remove(check)
	if err := s.checkBlob(ctx, check); err != nil {
		return err
	}
	if err := os.Rename(check, path); err != nil {
		return err
	}
	out := api.Blob{Digest: digest, Kind: kind, KeyID: keyID, Bytes: int64(len(body))}
	err = s.db.Update(ctx, func(tx store.Tx) error {
		return s.rec.Record(ctx, tx, p, "blob.upload", "tenant/"+p.Tenant, map[string]string{"digest": digest, "kind": kind, "key_id": keyID, "bytes": fmt.Sprint(len(body))})
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// submitHE validates an he-score job and queues it.
func (s *Server) submitHE(w http.ResponseWriter, r *http.Request, p policy.Principal, req api.SubmitJob) error {
	ctx := r.Context()
	hs := req.HE
	switch {
	case strings.TrimSpace(req.SQL) != "":
		return fmt.Errorf("%w: an he-score job has no SQL: it names a dataset, group-by keys, a model and a public bundle", policy.ErrInvalid)
	case hs.Dataset == "":
		return fmt.Errorf("%w: an he-score job needs a dataset (--dataset)", policy.ErrInvalid)
	case hs.Model == "" || hs.Bundle == "":
		return fmt.Errorf("%w: an he-score job needs the encrypted model and the public bundle (--model, --public)", policy.ErrInvalid)
	case len(hs.GroupBy) > 8:
		return fmt.Errorf("%w: at most 8 group-by keys", policy.ErrInvalid)
	}
	if len(req.IdempotencyKey) > 200 {
		return fmt.Errorf("%w: the idempotency key is longer than 200 characters", policy.ErrInvalid)
	}
	g, sc, schemas, err := s.grantScope(ctx, p, req.Grant, policy.ModeHE)
	if err != nil {
		return err
	}
	spec, verr := s.heSpecFor(p, g, sc, hs)
	var spend *ledger.Amount
	if verr == nil && req.DP != nil {
		spend, verr = heDPFor(g, sc, spec, req.DP)
	}
	if verr != nil {
		s.db.Update(ctx, func(tx store.Tx) error {
			return s.rec.Record(ctx, tx, p, "job.refuse", "grant/"+g.ID, map[string]string{"reason": verr.Error()})
		})
		return verr
	}
	desc := fmt.Sprintf("he-score %s model (key %s) over %s: features %s", spec.Kind, spec.KeyID, spec.Dataset, strings.Join(featureNames(spec.Features), ", "))
	if len(spec.GroupBy) > 0 {
		desc += "; group by " + strings.Join(spec.GroupBy, ", ")
	}
	now := s.rec.Now()
	j := &job{Job: store.Job{ID: platform.NewID("j"), GrantID: g.ID, Tenant: p.Tenant, Submitter: p.ID, Status: jobQueued,
		IdemKey: req.IdempotencyKey, Created: now}, body: jobBody{Mode: policy.ModeHE, SQL: desc, HE: spec}}
	j.body.Spend = spend
	details := map[string]string{"grant": g.ID, "mode": string(policy.ModeHE), "job": desc, "model": spec.Model, "bundle": spec.Bundle}
	var reserve func(tx store.Tx) error
	if spend != nil {
		reserve = func(tx store.Tx) error {
			if err := s.ledger.Reserve(ctx, tx, j.ID, j.GrantID, *spend, []string{spec.Dataset}, ledger.QueryCap(g, schemas)); err != nil {
				return err
			}
			details["epsilon"] = ledger.FormatEpsilon(spend.Eps)
			details["delta"] = ledger.FormatDelta(spend.Delta)
			return nil
		}
	}
	return s.queue(ctx, w, p, g, j, details, reserve)
}

// heDPFor checks a request for a differentially private he-score job and returns what it
// spends: the grant must hold a budget (mode dp besides he), the dataset's rows per person
// must be known, and partition selection needs a delta.
func heDPFor(g *policy.Grant, sc engine.Scope, spec *runner.Score, o *api.DPOptions) (*ledger.Amount, error) {
	if !slices.Contains(g.Modes, policy.ModeDP) {
		return nil, fmt.Errorf("%w: grant %s has no privacy budget; apply with --mode he,dp --epsilon E to add differential privacy to he-score jobs", policy.ErrInvalid, g.ID)
	}
	if !(o.Epsilon > 0) || o.Epsilon > 100 {
		return nil, fmt.Errorf("%w: epsilon must be in (0, 100], for example --epsilon 0.5", policy.ErrInvalid)
	}
	if !(o.Delta > 0) || o.Delta >= 1e-3 {
		return nil, fmt.Errorf("%w: a dp he-score job selects its groups with DP partition selection and needs a delta in (0, 1e-3), for example --delta 1e-8", policy.ErrInvalid)
	}
	if o.Noise != "" && o.Noise != "laplace" {
		return nil, fmt.Errorf("%w: he-score jobs use Laplace noise", policy.ErrInvalid)
	}
	var m int64
	for _, t := range sc.Tables {
		if t.Name == spec.Dataset {
			m = t.MaxRowsPerUnit
		}
	}
	if m < 1 {
		return nil, fmt.Errorf("%w: dataset %s has no measured maximum of rows per person; differential privacy cannot bound a person's contribution", policy.ErrInvalid, spec.Dataset)
	}
	spend, err := ledger.Spend(o.Epsilon, o.Delta)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	// The noise is calibrated to what the ledger charged, not to what was asked.
	spec.DP = &runner.ScoreDP{Epsilon: spend.Epsilon(), Delta: spend.DeltaValue(), MaxRows: m, ScoreBound: 1}
	return &spend, nil
}

func featureNames(fs []he.PublicFeature) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

// heSpecFor checks an he-score request against the grant: the blobs exist, belong to one key
// set and parse; the model's features are granted numeric columns; the keys are granted and
// neither the privacy unit nor a direct identifier.
func (s *Server) heSpecFor(p policy.Principal, g *policy.Grant, sc engine.Scope, hs *api.HEScore) (*runner.Score, error) {
	var t *engine.Table
	for i := range sc.Tables {
		if sc.Tables[i].Name == hs.Dataset {
			t = &sc.Tables[i]
		}
	}
	if t == nil {
		return nil, fmt.Errorf("%w: grant %s does not include dataset %s", policy.ErrInvalid, g.ID, hs.Dataset)
	}
	col := func(name string) (engine.Column, bool) {
		for _, c := range t.Columns {
			if c.Name == name {
				return c, true
			}
		}
		return engine.Column{}, false
	}
	read := func(digest, what string) ([]byte, error) {
		path, err := s.blobPath(p.Tenant, digest)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: no uploaded %s %s for tenant %s; upload it first (veil job submit does)", policy.ErrInvalid, what, digest, p.Tenant)
		}
		return b, nil
	}
	bb, err := read(hs.Bundle, "public bundle")
	if err != nil {
		return nil, err
	}
	// Both were fully parsed, in a sandbox, when they were uploaded; their headers suffice.
	pubKey, _, err := he.PeekBundle(bb)
	if err != nil {
		return nil, fmt.Errorf("%w: public bundle %s: %v", policy.ErrInvalid, hs.Bundle, err)
	}
	mb, err := read(hs.Model, "encrypted model")
	if err != nil {
		return nil, err
	}
	h, err := he.PeekModelHeader(mb)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted model %s: %v", policy.ErrInvalid, hs.Model, err)
	}
	if h.KeyID != pubKey {
		return nil, fmt.Errorf("%w: the model was encrypted for key %s but the public bundle is key %s; encrypt the model with this bundle (veil he encrypt-model --public)", policy.ErrInvalid, h.KeyID, pubKey)
	}
	for _, f := range h.Features {
		c, ok := col(f.Name)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: the model's feature %s is not a granted column of %s", policy.ErrInvalid, f.Name, hs.Dataset)
		case c.PrivacyUnit || c.Identifier:
			return nil, fmt.Errorf("%w: the model's feature %s is the privacy unit or a direct identifier; a model may not read it", policy.ErrInvalid, f.Name)
		case !isNumericType(c.Type):
			return nil, fmt.Errorf("%w: the model's feature %s is %s, not a number", policy.ErrInvalid, f.Name, c.Type)
		}
	}
	for _, k := range hs.GroupBy {
		c, ok := col(k)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: group-by key %s is not a granted column of %s", policy.ErrInvalid, k, hs.Dataset)
		case c.PrivacyUnit || c.Identifier:
			return nil, fmt.Errorf("%w: group-by key %s is the privacy unit or a direct identifier; groups of one person are not released", policy.ErrInvalid, k)
		case slices.Contains(hs.GroupBy[:slices.Index(hs.GroupBy, k)], k):
			return nil, fmt.Errorf("%w: group-by key %s is named twice", policy.ErrInvalid, k)
		}
	}
	var unit string
	for _, c := range t.Columns {
		if c.PrivacyUnit {
			unit = c.Name
		}
	}
	if unit == "" {
		return nil, fmt.Errorf("%w: dataset %s has no privacy unit column in the grant", policy.ErrInvalid, hs.Dataset)
	}
	return &runner.Score{Dataset: hs.Dataset, GroupBy: hs.GroupBy, Features: h.Features, Unit: unit, K: g.K, Model: hs.Model, Bundle: hs.Bundle,
		KeyID: h.KeyID, Kind: h.Kind, Degree: h.Degree, InputRange: h.InputRange, ScoreBound: h.ScoreBound}, nil
}

func isNumericType(t string) bool {
	t = strings.ToUpper(t)
	for _, n := range []string{"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "INT"} {
		if strings.HasPrefix(t, n) {
			return true
		}
	}
	return false
}

// runHE runs an he-score job in the sandbox and puts its output in the review queue.
func (s *Server) runHE(ctx context.Context, id string, g *policy.Grant, sc engine.Scope, versions map[string]string, spec *runner.Score, tenant string) error {
	var tables []engine.Table
	for _, t := range sc.Tables {
		if t.Name == spec.Dataset {
			tables = append(tables, t)
			if spec.DP != nil {
				// The bound is that of the dataset version that runs now.
				if t.MaxRowsPerUnit < 1 {
					return launch.Fail(fmt.Sprintf("dataset %s has no measured maximum of rows per person; differential privacy cannot bound a person's contribution", t.Name), nil)
				}
				spec.DP.MaxRows = t.MaxRowsPerUnit
			}
		}
	}
	bundle, err := s.blobPath(tenant, spec.Bundle)
	if err != nil {
		return err
	}
	model, err := s.blobPath(tenant, spec.Model)
	if err != nil {
		return err
	}
	ejob := engine.Job{Kind: runner.KindScore, Tables: tables, Threads: s.cfg.JobThreads, MemoryLimitMB: s.cfg.JobMemoryMB / 4,
		MaxResultBytes: s.cfg.MaxResultByte, Inputs: map[string]string{"bundle": bundle, "model": model}}
	var res runner.ScoreResult
	usage, err := s.runSpec(ctx, id, ejob, spec, &res, &res.Error)
	if err != nil {
		return err
	}
	rec, err := heRecord(spec, &res)
	if err != nil {
		return launch.Fail("the runner returned no readable result", err)
	}
	defer rec.Release()
	var dpm *api.DPMechanism
	if spec.DP != nil && res.DP != nil {
		rep, _ := json.Marshal(res.DP)
		dpm = &api.DPMechanism{Epsilon: spec.DP.Epsilon, Delta: spec.DP.Delta, MaxGroups: spec.DP.MaxRows, MaxRows: spec.DP.MaxRows, Noise: "laplace", Report: rep}
	}
	meta := output.Meta{
		Mechanism: api.Mechanism{Kind: string(policy.ModeHE), K: g.K, DP: dpm, Groups: len(res.Groups) + res.Dropped, Suppressed: res.Dropped,
			HE: &api.HEMechanism{KeyID: spec.KeyID, Model: spec.Kind, Features: featureNames(spec.Features), GroupBy: spec.GroupBy, Degree: spec.Degree,
				InputRange: spec.InputRange, SumErrorStd: res.SumErrorStd, Rows: res.Rows,
				Statement: heStatement(spec)}},
		Datasets: versions,
	}
	return s.toReview(ctx, id, rec, meta, func(tx store.Tx, cur *job) error {
		cur.Status = jobReview
		cur.body.Finished = s.rec.Now()
		cur.body.Message = fmt.Sprintf("waiting for export review: %d groups scored under encryption, %d not scored (fewer than %d persons)", len(res.Groups), res.Dropped, g.K)
		if spec.DP != nil {
			cur.body.Message = fmt.Sprintf("waiting for export review: %d groups scored under encryption with differential privacy (ε=%g)", len(res.Groups), spec.DP.Epsilon)
		}
		cur.body.Metering = &api.Metering{WallMS: usage.Wall.Milliseconds(), CPUMS: usage.CPU.Milliseconds(), PeakMemoryMB: usage.PeakMemoryBytes >> 20,
			OutputRows: rec.NumRows(), Groups: len(res.Groups) + res.Dropped, Suppressed: res.Dropped}
		if err := cur.put(ctx, tx, s.rec.Now()); err != nil {
			return err
		}
		return s.rec.Record(ctx, tx, platform.System, "job.gate", "job/"+id, map[string]string{
			"mechanism": "he", "key_id": spec.KeyID, "k": fmt.Sprint(g.K), "groups": fmt.Sprint(len(res.Groups)), "suppressed": fmt.Sprint(res.Dropped),
			"wall_ms": fmt.Sprint(usage.Wall.Milliseconds())})
	})
}

// heRecord is the reviewable output of an he-score job: one row per scored group with its
// keys, its row count and its slot in the ciphertext, which travels as schema metadata.
func heRecord(spec *runner.Score, res *runner.ScoreResult) (arrow.RecordBatch, error) {
	fields := []arrow.Field{}
	for _, k := range spec.GroupBy {
		fields = append(fields, arrow.Field{Name: k, Type: arrow.BinaryTypes.String, Nullable: true})
	}
	fields = append(fields, arrow.Field{Name: "rows", Type: arrow.PrimitiveTypes.Int64}, arrow.Field{Name: "slot", Type: arrow.PrimitiveTypes.Int64})
	md := arrow.NewMetadata([]string{output.HESums, output.HEKeyID}, []string{base64.StdEncoding.EncodeToString(res.Sums), spec.KeyID})
	schema := arrow.NewSchema(fields, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for slot, gr := range res.Groups {
		if len(gr.Keys) != len(spec.GroupBy) {
			return nil, fmt.Errorf("group %d has %d keys, want %d", slot, len(gr.Keys), len(spec.GroupBy))
		}
		for i, k := range gr.Keys {
			sb := b.Field(i).(*array.StringBuilder)
			if k == nil {
				sb.AppendNull()
			} else {
				sb.Append(*k)
			}
		}
		b.Field(len(spec.GroupBy)).(*array.Int64Builder).Append(gr.Rows)
		b.Field(len(spec.GroupBy) + 1).(*array.Int64Builder).Append(int64(slot))
	}
	return b.NewRecordBatch(), nil
}

// heStatement is what the certificate asserts about an he-score output.
func heStatement(spec *runner.Score) string {
	st := "The model arrived encrypted under the vendor's CKKS key " + spec.KeyID + "; the platform never held the model in the clear nor any key that decrypts it. " +
		"The per-group score sums are encrypted under the same key and were noise-flooded before export. "
	if d := spec.DP; d != nil {
		if spec.Kind == he.KindLinear {
			return st + fmt.Sprintf("Differential privacy (ε=%g, δ=%g; at most %d rows per person): groups of at least k persons by partition selection, row counts and the per-group feature sums the encrypted weights multiply with Laplace noise, so the sums are differentially private whatever the weights.",
				d.Epsilon, d.Delta, d.MaxRows)
		}
		return st + fmt.Sprintf("Differential privacy (ε=%g, δ=%g; at most %d rows per person; a logistic model's score in [0, 1], which assumes the encrypted model is well formed): groups of at least k persons by partition selection, row counts and encrypted sums with Laplace noise.",
			d.Epsilon, d.Delta, d.MaxRows)
	}
	return st + "Group keys and row counts are in the clear, for groups of at least k persons."
}

// grantScope loads a grant p may use for a job of the given mode, with what the engine may
// see of it; a daemon without a sandbox gets synthetic datasets only.
func (s *Server) grantScope(ctx context.Context, p policy.Principal, grant string, mode policy.Mode) (*policy.Grant, engine.Scope, map[string]*policy.Schema, error) {
	var g *policy.Grant
	var sc engine.Scope
	var schemas map[string]*policy.Schema
	if err := s.grants.Settle(ctx); err != nil {
		return nil, sc, nil, err
	}
	err := s.db.View(ctx, func(tx store.Tx) error {
		var err error
		if g, err = grants.Load(ctx, tx, p, grant); err != nil {
			return err
		}
		if err := g.Usable(s.rec.Now(), mode); err != nil {
			return err
		}
		var sets map[string]store.Dataset
		if schemas, sets, err = catalog.Load(ctx, tx, grants.Datasets(g)); err != nil {
			return err
		}
		sc = grants.Scope(g, schemas, sets, mode)
		return s.box.Admit(schemas)
	})
	return g, sc, schemas, err
}

// checkBlob fully parses an uploaded he blob in a sandbox (runner kind he-check).
func (s *Server) checkBlob(ctx context.Context, path string) error {
	ejob := engine.Job{Kind: runner.KindCheck, Inputs: map[string]string{"blob": path}, Threads: 1, MemoryLimitMB: s.cfg.JobMemoryMB / 2, MaxResultBytes: 1 << 20,
		Tables: []engine.Table{}}
	var out strings.Builder
	if _, err := s.box.Run(ctx, "check-"+platform.NewID("x"), ejob, &out); err != nil {
		var je *launch.Failure
		if errors.As(err, &je) {
			_, detail := launch.Explain(err)
			s.slog.Warn("he upload check failed", "err", detail)
			return fmt.Errorf("%w: the upload does not parse as key material or ciphertexts of this platform's parameters; make it again with veil he", policy.ErrInvalid)
		}
		return err
	}
	var res struct{ Error string }
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		return fmt.Errorf("%w: the upload could not be checked", policy.ErrInvalid)
	}
	if res.Error != "" {
		return fmt.Errorf("%w: %s", policy.ErrInvalid, res.Error)
	}
	return nil
}

// runSpec runs a job whose runner is the daemon's own (he-score, model) with spec as its
// Spec, and decodes the runner's JSON answer into res; a refusal the runner wrote into
// *refusal (safe for the vendor) becomes the job's error.
func (s *Server) runSpec(ctx context.Context, id string, ejob engine.Job, spec, res any, refusal *string) (sandbox.Usage, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return sandbox.Usage{}, err
	}
	ejob.Spec = raw
	var out strings.Builder
	u, err := s.box.Run(ctx, id, ejob, &out)
	if err != nil {
		return u, err
	}
	if err := json.Unmarshal([]byte(out.String()), res); err != nil {
		return u, launch.Fail("the runner returned no readable result", err)
	}
	if *refusal != "" {
		return u, launch.Fail(*refusal, nil)
	}
	return u, nil
}
