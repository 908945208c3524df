package hescore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
	"github.com/veil-dp/veil/he"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
	"github.com/veil-dp/veil/store"
)

// The he-score job: the vendor uploads its public key bundle and its encrypted model
// (PUT /v1/blobs), then submits a job naming the dataset and the group-by keys. The runner
// reads the model's features in the sandbox, counts each group in the clear, drops groups
// with fewer than k persons, scores the rest under encryption and sums per group (package
// he); the output is the group keys, their row counts and one ciphertext only the vendor can
// decrypt. The daemon never decrypts, never holds a secret key, and refuses one at upload.

// MaxUpload bounds an he upload, as it arrives and as it is read back: a public bundle is
// about 27 MB, an encrypted model of 16 features about 36 MB.
const MaxUpload = 256 << 20

// Kind is the he-score job kind; it also takes the vendors' uploads its jobs need.
type Kind struct {
	platform.Env
	box *launch.Launcher
	// preparing holds, per tenant, the one preparation its uploads may run at a time (a
	// chan of one slot); prepSlots those of all tenants (prepareAfterUpload).
	preparing sync.Map
	prepSlots chan struct{}
}

// New returns the he-score kind.
func New(env platform.Env, box *launch.Launcher) *Kind {
	return &Kind{Env: env, box: box, prepSlots: make(chan struct{}, max(env.Config.Workers, 1))}
}

// Name is the key an he-score job's spec is stored under.
func (*Kind) Name() string { return "he" }

// Accepts takes the requests that name an encrypted model to score.
func (*Kind) Accepts(req *api.SubmitJob) bool { return req.HE != nil }

func (s *Kind) blobPath(tenant, digest string) (string, error) {
	return s.Config.TenantFile("blobs", tenant, digest)
}

// Upload stores a vendor's public key bundle or encrypted model under its digest. It looks
// at the envelope's header first and refuses a secret key before parsing anything.
func (s *Kind) Upload(ctx context.Context, p policy.Principal, body []byte) (api.Blob, error) {
	kind, err := he.BlobKind(body)
	if err != nil {
		return api.Blob{}, fmt.Errorf("%w: not an he blob: %v; upload the public.bundle of `veil he keygen` or the output of `veil he encrypt-model`", policy.ErrInvalid, err)
	}
	var keyID string
	switch kind {
	case he.BlobSecretKey:
		clear(body)
		s.DB.Update(ctx, func(tx store.Tx) error {
			return s.Rec.Record(ctx, tx, p, "blob.refuse", "tenant/"+p.Tenant, map[string]string{"reason": "a secret key was uploaded; it was discarded unread"})
		})
		return api.Blob{}, fmt.Errorf("%w: this is a secret key; it must never leave your machine and was discarded unread. Upload public.bundle (veil he keygen wrote both)", policy.ErrInvalid)
	case he.BlobPublicBundle:
		if keyID, _, err = he.PeekBundle(body); err != nil {
			return api.Blob{}, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
		}
	case he.BlobEncryptedModel:
		h, err := he.PeekModelHeader(body)
		if err != nil {
			return api.Blob{}, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
		}
		keyID = h.KeyID
	default:
		return api.Blob{}, fmt.Errorf("%w: a %s is not an upload; upload a public bundle or an encrypted model", policy.ErrInvalid, kind)
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	path, err := s.blobPath(p.Tenant, digest)
	if err != nil {
		return api.Blob{}, err
	}
	// The full parse of untrusted key material runs in a sandbox: a blob crafted to make
	// the parser allocate without bound kills a runner, never the daemon. Only a blob that
	// parses is stored under its digest.
	check := path + ".check-" + platform.NewID("x")
	if err := platform.StoreUpload(check, body, 0o644); err != nil {
		return api.Blob{}, err
	}
	defer os.Remove(check)
	if err := s.checkBlob(ctx, check); err != nil {
		return api.Blob{}, err
	}
	if err := os.Rename(check, path); err != nil {
		return api.Blob{}, err
	}
	out := api.Blob{Digest: digest, Kind: kind, KeyID: keyID, Bytes: int64(len(body))}
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		return s.Rec.Record(ctx, tx, p, "blob.upload", "tenant/"+p.Tenant, map[string]string{"digest": digest, "kind": kind, "key_id": keyID, "bytes": fmt.Sprint(len(body))})
	})
	if err != nil {
		return api.Blob{}, err
	}
	// The blob is stored and recorded: what follows may fail without losing it.
	if h, err := he.PeekPrefix(body[:min(len(body), peekBytes)]); err == nil {
		s.prepareAfterUpload(ctx, p, digest, h)
	}
	return out, nil
}

// Plan checks an he-score request against its grant: the blobs, the model's features, the
// group-by keys and, with differential privacy, what it spends.
func (s *Kind) Plan(ctx context.Context, sub *jobs.Submission) (*jobs.Plan, error) {
	req, p := sub.Request, sub.Principal
	hs := req.HE
	switch {
	case strings.TrimSpace(req.SQL) != "":
		return nil, fmt.Errorf("%w: an he-score job has no SQL: it names a dataset, group-by keys, a model and a public bundle", policy.ErrInvalid)
	case hs.Dataset == "":
		return nil, fmt.Errorf("%w: an he-score job needs a dataset (--dataset)", policy.ErrInvalid)
	case hs.Model == "" || hs.Bundle == "":
		return nil, fmt.Errorf("%w: an he-score job needs the encrypted model and the public bundle (--model, --public)", policy.ErrInvalid)
	case len(hs.GroupBy) > 8:
		return nil, fmt.Errorf("%w: at most 8 group-by keys", policy.ErrInvalid)
	}
	g, sc, schemas, err := sub.Grant(ctx, jobs.Mode(policy.ModeHE))
	if err != nil {
		return nil, err
	}
	spec, verr := s.heSpecFor(p, g, sc, hs)
	var spend *ledger.Amount
	if verr == nil && req.DP != nil {
		spend, verr = heDPFor(g, sc, spec, req.DP)
	}
	if verr != nil {
		return nil, sub.Refuse(g, verr)
	}
	desc := fmt.Sprintf("he-score %s model (key %s) over %s: features %s", spec.Kind, spec.KeyID, spec.Dataset, strings.Join(featureNames(spec.Features), ", "))
	if len(spec.GroupBy) > 0 {
		desc += "; group by " + strings.Join(spec.GroupBy, ", ")
	}
	return &jobs.Plan{Grant: g, Mode: policy.ModeHE, Describe: desc, Spec: spec, Spend: spend, Datasets: []string{spec.Dataset}, Cap: ledger.QueryCap(g, schemas),
		Audit: map[string]string{"grant": g.ID, "mode": string(policy.ModeHE), "job": desc, "model": spec.Model, "bundle": spec.Bundle}}, nil
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
func (s *Kind) heSpecFor(p policy.Principal, g *policy.Grant, sc engine.Scope, hs *api.HEScore) (*runner.Score, error) {
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
		b, err := platform.ReadUpload(path, digest, MaxUpload)
		if errors.Is(err, platform.ErrUploadDamaged) {
			s.Log.Error("stored he upload damaged", "tenant", p.Tenant, "digest", digest, "err", err)
			return nil, fmt.Errorf("%w: the stored %s %s is damaged; upload it again", policy.ErrConflict, what, digest)
		}
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
		case !policy.NumericType(c.Type):
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

// Run scores the model in the sandbox; what comes back is already thresholded or noisy, and
// encrypted.
func (s *Kind) Run(ctx context.Context, run *jobs.Run) (*jobs.Output, error) {
	var spec runner.Score
	if err := json.Unmarshal(run.Spec, &spec); err != nil {
		return nil, err
	}
	all, err := run.Tables(ctx, []string{spec.Dataset})
	if err != nil {
		return nil, err
	}
	id, g, tenant := run.ID, run.Grant, run.Tenant
	var tables []engine.Table
	for _, t := range all {
		if t.Name == spec.Dataset {
			tables = append(tables, t)
			if spec.DP != nil {
				// The bound is that of the dataset version that runs now.
				if t.MaxRowsPerUnit < 1 {
					return nil, launch.Fail(fmt.Sprintf("dataset %s has no measured maximum of rows per person; differential privacy cannot bound a person's contribution", t.Name), nil)
				}
				spec.DP.MaxRows = t.MaxRowsPerUnit
			}
		}
	}
	bundle, err := s.blobPath(tenant, spec.Bundle)
	if err != nil {
		return nil, err
	}
	model, err := s.blobPath(tenant, spec.Model)
	if err != nil {
		return nil, err
	}
	inputs := map[string]string{"bundle": bundle, "model": model}
	if spec.Kind == he.KindLogistic {
		// The lane averages prepared at upload, if there: the runner checks their binding.
		if prepared, err := s.preparedPath(tenant, spec.Model, spec.Bundle); err == nil {
			if fi, err := os.Stat(prepared); err == nil && fi.Mode().IsRegular() {
				inputs["prepared"] = prepared
			}
		}
	}
	ejob := engine.Job{Kind: runner.KindScore, Tables: tables, Threads: s.Config.JobThreads, MemoryLimitMB: s.Config.JobMemoryMB / 4,
		MaxResultBytes: s.Config.MaxResultByte, Inputs: inputs}
	var res runner.ScoreResult
	usage, err := s.box.RunSpec(ctx, id, ejob, spec, &res, &res.Error)
	if err != nil {
		return nil, err
	}
	if res.Prepared == runner.PreparedRefused {
		s.Log.Warn("the stored prepared he model was refused by the job; it averaged the model itself", "job", id, "model", spec.Model, "bundle", spec.Bundle)
	}
	rec, err := gate.HE(&spec, &res)
	if err != nil {
		return nil, launch.FailOnData(launch.ClassData, "the runner returned no readable result", err)
	}
	var dpm *api.DPMechanism
	if spec.DP != nil && res.DP != nil {
		rep, _ := json.Marshal(res.DP)
		dpm = &api.DPMechanism{Epsilon: spec.DP.Epsilon, Delta: spec.DP.Delta, MaxGroups: spec.DP.MaxRows, MaxRows: spec.DP.MaxRows, Noise: "laplace", Report: rep}
	}
	msg := fmt.Sprintf("waiting for export review: %d groups scored under encryption, %d not scored (fewer than %d persons)", len(res.Groups), res.Dropped, g.K)
	if spec.DP != nil {
		msg = fmt.Sprintf("waiting for export review: %d groups scored under encryption with differential privacy (ε=%g)", len(res.Groups), spec.DP.Epsilon)
	}
	return &jobs.Output{
		Record: rec,
		Mechanism: api.Mechanism{Kind: string(policy.ModeHE), K: g.K, DP: dpm, Groups: len(res.Groups) + res.Dropped, Suppressed: res.Dropped,
			HE: &api.HEMechanism{KeyID: spec.KeyID, Model: spec.Kind, Features: featureNames(spec.Features), GroupBy: spec.GroupBy, Degree: spec.Degree,
				InputRange: spec.InputRange, SumErrorStd: res.SumErrorStd, Rows: res.Rows,
				Statement: heStatement(&spec)}},
		Message: msg,
		Metering: &api.Metering{WallMS: usage.Wall.Milliseconds(), CPUMS: usage.CPU.Milliseconds(), PeakMemoryMB: usage.PeakMemoryBytes >> 20,
			OutputRows: rec.NumRows(), Groups: len(res.Groups) + res.Dropped, Suppressed: res.Dropped},
		Audit: map[string]string{
			"mechanism": "he", "key_id": spec.KeyID, "k": fmt.Sprint(g.K), "groups": fmt.Sprint(len(res.Groups)), "suppressed": fmt.Sprint(res.Dropped),
			"wall_ms": fmt.Sprint(usage.Wall.Milliseconds()), "prepared": res.Prepared},
	}, nil
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

// checkBlob fully parses an uploaded he blob in a sandbox (runner kind he-check).
func (s *Kind) checkBlob(ctx context.Context, path string) error {
	ejob := engine.Job{Kind: runner.KindCheck, Inputs: map[string]string{"blob": path}, Threads: 1, MemoryLimitMB: s.Config.JobMemoryMB / 2, MaxResultBytes: 1 << 20,
		Tables: []engine.Table{}}
	var out strings.Builder
	if _, err := s.box.Run(ctx, "check-"+platform.NewID("x"), ejob, &out); err != nil {
		var je *launch.Failure
		if errors.As(err, &je) {
			_, detail := launch.Explain(err)
			s.Log.Warn("he upload check failed", "err", detail)
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
