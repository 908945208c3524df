package hescore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/he"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
	"github.com/veil-dp/veil/store"
)

// Preparation (issue #18): a logistic model's lane averages (he.PreparedModel) cost a
// scoring job a fifth of its CPU, the same for every job of one model and bundle. When a
// logistic model or a public bundle is uploaded, the platform computes them once for each
// pair of the tenant's model and bundle of one key set, in a sandbox (the evaluation runs
// on vendor-supplied key material, as a scoring job's does), and stores the result in its
// own area, "he-prepared", which no upload writes: a vendor can neither supply nor replace
// it. The file is named after the pair's digests, and its header binds it to them and to
// the bundle's lane width; the scoring job checks that binding against the blobs it reads
// and averages the model itself when the file is missing, bound to other blobs, unreadable,
// or of another lane width (a job with more groups than the bundle's lanes).
//
// Preparation never fails an upload: the blob is stored first, and a preparation that fails
// leaves no file (each is written whole, atomically) and is logged; the jobs then average
// the model themselves.

// preparedArea is the data directory's area of prepared models, by tenant.
const preparedArea = "he-prepared"

// maxPreparePairs bounds how many model-bundle pairs one upload prepares (the newest
// counterparts first).
const maxPreparePairs = 4

// peekBytes is how much of a stored blob is read to learn its kind and key ID.
const peekBytes = 64 << 10

// preparedPath is where the prepared model of one model and bundle lives.
func (s *Kind) preparedPath(tenant, model, bundle string) (string, error) {
	return s.Config.TenantFile(preparedArea, tenant, he.Digest([]byte(model+"\n"+bundle)))
}

// prepareAfterUpload prepares the pairs the blob just stored (digest, with header h) makes
// with the tenant's other blobs of its key set. It only logs what fails.
//
// Each preparation is a sandbox of seconds of CPU and half a job's memory that runs beside
// the scheduler's jobs, not in one of its slots: a tenant's uploads prepare one after
// another (an upload waits for the one before it), and all tenants' at most as many at once
// as the platform runs jobs. Otherwise a vendor uploading many models at once would run as
// many preparations at once, taking the machine's memory and CPU from everyone's jobs.
func (s *Kind) prepareAfterUpload(ctx context.Context, p policy.Principal, digest string, h he.BlobHeader) {
	if h.Kind == he.BlobEncryptedModel && h.Model != he.KindLogistic {
		return
	}
	slot, _ := s.preparing.LoadOrStore(p.Tenant, make(chan struct{}, 1))
	select {
	case slot.(chan struct{}) <- struct{}{}:
		defer func() { <-slot.(chan struct{}) }()
	case <-ctx.Done():
		s.Log.Warn("he model preparation skipped: the upload ended while another upload of the tenant was being prepared; its jobs will average the model themselves", "tenant", p.Tenant, "blob", digest)
		return
	}
	want := he.BlobPublicBundle
	if h.Kind == he.BlobPublicBundle {
		want = he.BlobEncryptedModel
	}
	for _, other := range s.blobsOfKey(p.Tenant, h.KeyID, want) {
		model, bundle := digest, other
		if h.Kind == he.BlobPublicBundle {
			model, bundle = other, digest
		}
		if err := s.prepareInSlot(ctx, p, model, bundle); err != nil {
			s.Log.Warn("he model preparation failed; its jobs will average the model themselves", "tenant", p.Tenant, "model", model, "bundle", bundle, "err", err)
		}
	}
}

// blobsOfKey returns the digests of the tenant's stored blobs of one kind (logistic models
// only, for models) and key ID, newest first, at most maxPreparePairs. It reads only their
// first bytes; the sandbox checks them fully.
func (s *Kind) blobsOfKey(tenant, keyID, kind string) []string {
	probe, err := s.blobPath(tenant, he.Digest(nil))
	if err != nil {
		return nil
	}
	entries, err := os.ReadDir(filepath.Dir(probe))
	if err != nil {
		return nil
	}
	type found struct {
		digest string
		mod    time.Time
	}
	var out []found
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.Contains(name, ".") || len(name) != 64 {
			continue
		}
		h, err := peekBlob(filepath.Join(filepath.Dir(probe), name))
		if err != nil || h.Kind != kind || h.KeyID != keyID || (kind == he.BlobEncryptedModel && h.Model != he.KindLogistic) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, found{"sha256:" + name, fi.ModTime()})
	}
	slices.SortFunc(out, func(a, b found) int { return b.mod.Compare(a.mod) })
	var digests []string
	for _, f := range out[:min(len(out), maxPreparePairs)] {
		digests = append(digests, f.digest)
	}
	return digests
}

func peekBlob(path string) (he.BlobHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return he.BlobHeader{}, err
	}
	defer f.Close()
	b := make([]byte, peekBytes)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return he.BlobHeader{}, err
	}
	return he.PeekPrefix(b[:n])
}

// prepareInSlot is prepare in one of the platform's preparation slots (prepareAfterUpload).
func (s *Kind) prepareInSlot(ctx context.Context, p policy.Principal, model, bundle string) error {
	select {
	case s.prepSlots <- struct{}{}:
		defer func() { <-s.prepSlots }()
	case <-ctx.Done():
		return fmt.Errorf("the upload ended while the platform's preparation slots were taken: %w", ctx.Err())
	}
	return s.prepare(ctx, p, model, bundle)
}

// prepare computes and stores the prepared model of one stored model and bundle, unless a
// file bound to them is already there.
func (s *Kind) prepare(ctx context.Context, p policy.Principal, model, bundle string) error {
	dst, err := s.preparedPath(p.Tenant, model, bundle)
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(dst); err == nil {
		if bind, err := he.PeekPrepared(b); err == nil && bind.Model == model && bind.Bundle == bundle {
			return nil
		}
	}
	mpath, err := s.blobPath(p.Tenant, model)
	if err != nil {
		return err
	}
	bpath, err := s.blobPath(p.Tenant, bundle)
	if err != nil {
		return err
	}
	bh, err := peekBlob(bpath)
	if err != nil {
		return err
	}
	lanes := bh.Lanes
	spec, err := json.Marshal(runner.Prepare{Model: model, Bundle: bundle})
	if err != nil {
		return err
	}
	ejob := engine.Job{Kind: runner.KindPrepare, Spec: spec, Inputs: map[string]string{"model": mpath, "bundle": bpath},
		Threads: s.Config.JobThreads, MemoryLimitMB: s.Config.JobMemoryMB / 2, Tables: []engine.Table{}}
	start := time.Now()
	var out bytes.Buffer
	usage, err := s.box.Run(ctx, "prepare-"+platform.NewID("x"), ejob, &out)
	if err != nil {
		var je *launch.Failure
		if errors.As(err, &je) {
			_, detail := launch.Explain(err)
			return fmt.Errorf("the preparation sandbox failed: %s", detail)
		}
		return err
	}
	took := time.Since(start)
	// What came back was made by the platform's runner, but from vendor-supplied blobs: its
	// envelope and binding are checked before it is stored; the job parses it fully.
	bind, err := he.PeekPrepared(out.Bytes())
	if err != nil {
		return fmt.Errorf("the preparation returned no prepared model: %w", err)
	}
	if bind.Model != model || bind.Bundle != bundle || bind.Lanes != lanes {
		return fmt.Errorf("the preparation returned a prepared model bound to other blobs or lanes")
	}
	if err := platform.StoreUpload(dst, out.Bytes(), 0o644); err != nil {
		return err
	}
	return s.DB.Update(ctx, func(tx store.Tx) error {
		return s.Rec.Record(ctx, tx, p, "blob.prepare", "tenant/"+p.Tenant, map[string]string{"model": model, "bundle": bundle,
			"lanes": fmt.Sprint(bind.Lanes), "bytes": fmt.Sprint(out.Len()), "ms": fmt.Sprint(took.Milliseconds()), "cpu_ms": fmt.Sprint(usage.CPU.Milliseconds())})
	})
}
