package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
)

const (
	// MaxUploadBytes bounds one uploaded data file.
	MaxUploadBytes = 64 << 30
	// MaxUploadChunk bounds one request's part of an upload.
	MaxUploadChunk = 64 << 20
	// MaxVendorUpload bounds a vendor's upload (a fusion table or an he blob; the routes
	// that take them bound them again).
	MaxVendorUpload = 256 << 20
	// maxOpenUploads bounds the uploads one tenant has under way or unregistered.
	maxOpenUploads = 32
)

var (
	uploadIDRE   = regexp.MustCompile(`^u-[0-9a-f]{24}$`)
	uploadNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}\.(csv|parquet|CSV|PARQUET)$`)
	vendorNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$`)
	hexDigestRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	uploadMu     sync.Mutex // one start at a time (each counts the tenant's open uploads)
	uploadLocks  sync.Map   // upload ID -> chan struct{}: one part (or read, or sweep) of an upload at a time
)

// lockUpload takes upload id's own lock, waiting for it while ctx lasts, and returns its
// release. Each upload has its own: a part is read from the network while it is held, and a
// client that stalls in the middle of a part (a request's body has no timeout) holds up
// nothing but its own upload.
func lockUpload(ctx context.Context, id string) (func(), error) {
	ch := uploadLock(id)
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, uploadBusy(id)
	}
}

// tryLockUpload is lockUpload without waiting: an error when a part is being received.
func tryLockUpload(id string) (func(), error) {
	ch := uploadLock(id)
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	default:
		return nil, uploadBusy(id)
	}
}

func uploadLock(id string) chan struct{} {
	v, _ := uploadLocks.LoadOrStore(id, make(chan struct{}, 1))
	return v.(chan struct{})
}

func uploadBusy(id string) error {
	return fmt.Errorf("%w: a part of upload %s is being received; wait for its answer (or for it to break off), then send from the offset the daemon holds", policy.ErrConflict, id)
}

// uploadMeta is an upload as kept beside its bytes. Touched is when its last part arrived
// (or it started); Expired once SweepUploads deleted its bytes for want of parts (the meta
// stays another TTL, so that the client is told why, not only that it is unknown).
type uploadMeta struct {
	Tenant   string    `json:"tenant"`
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	Complete bool      `json:"complete"`
	Touched  time.Time `json:"touched"`
	Expired  bool      `json:"expired,omitempty"`
}

// uploadTTL is how long an upload is kept after its last part (Config.UploadTTL).
func (s *Service) uploadTTL() time.Duration {
	if s.Config.UploadTTL > 0 {
		return s.Config.UploadTTL
	}
	return platform.DefaultUploadTTL
}

// stale reports whether m's last part is more than the TTL ago.
func (s *Service) stale(m uploadMeta) bool {
	return s.Rec.Now().Sub(m.Touched) > s.uploadTTL()
}

// expiredErr is the answer about an upload abandoned longer than the TTL.
func (s *Service) expiredErr(id string) error {
	return fmt.Errorf("%w: upload %s expired: no part arrived for %s, so the daemon deleted what it held; start the upload over (veil dataset register --upload sends the file again from its start)", policy.ErrNotFound, id, s.uploadTTL())
}

// uploadRoot holds uploads under way: beside the registered datasets, not among them (jobs
// never see an upload; registration copies it into a version).
func (s *Service) uploadRoot() string { return filepath.Join(s.Config.DataDir, "uploads") }

func (s *Service) uploadDir(id string) string {
	return filepath.Join(s.uploadRoot(), id)
}

// StartUpload opens an upload of one data file for p's tenant.
func (s *Service) StartUpload(ctx context.Context, p policy.Principal, req api.StartUpload) (api.Upload, error) {
	if p.Role == policy.Vendor {
		// A fusion table or an he blob, given by ID to the route that takes it.
		if !vendorNameRE.MatchString(req.Name) {
			return api.Upload{}, fmt.Errorf("%w: upload name %q: give the file's base name (letters, digits, . _ - and spaces)", policy.ErrInvalid, req.Name)
		}
		if req.Size <= 0 || req.Size > MaxVendorUpload {
			return api.Upload{}, fmt.Errorf("%w: a vendor's upload (a fusion table, an he bundle or model) must be between 1 byte and %d MiB", policy.ErrInvalid, MaxVendorUpload>>20)
		}
	} else {
		if !uploadNameRE.MatchString(req.Name) {
			return api.Upload{}, fmt.Errorf("%w: upload name %q: give the file's base name, ending in .csv or .parquet (letters, digits, . _ - and spaces)", policy.ErrInvalid, req.Name)
		}
		if req.Size <= 0 || req.Size > MaxUploadBytes {
			return api.Upload{}, fmt.Errorf("%w: upload size must be between 1 byte and %d GiB", policy.ErrInvalid, MaxUploadBytes>>30)
		}
	}
	if strings.HasPrefix(req.Name, "meta.json") {
		// The daemon's record of the upload lies beside its file under these names.
		return api.Upload{}, fmt.Errorf("%w: upload name %q is the daemon's own; give the file another name", policy.ErrInvalid, req.Name)
	}
	if !hexDigestRE.MatchString(req.SHA256) {
		return api.Upload{}, fmt.Errorf("%w: sha256 must be the file's SHA-256 in lower-case hex (64 digits)", policy.ErrInvalid)
	}
	root := s.uploadRoot()
	if err := os.MkdirAll(root, 0o700); err != nil {
		return api.Upload{}, err
	}
	uploadMu.Lock()
	defer uploadMu.Unlock()
	entries, _ := os.ReadDir(root)
	open := 0
	for _, e := range entries {
		if m, err := s.readMeta(e.Name()); err == nil && m.Tenant == p.Tenant && !m.Expired && !s.stale(m) {
			open++
		}
	}
	if open >= maxOpenUploads {
		return api.Upload{}, fmt.Errorf("%w: %d uploads are open for %s; register or let them finish first", policy.ErrConflict, open, p.Tenant)
	}
	var b [12]byte
	rand.Read(b[:])
	id := "u-" + hex.EncodeToString(b[:])
	dir := s.uploadDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return api.Upload{}, err
	}
	m := uploadMeta{Tenant: p.Tenant, Name: req.Name, Size: req.Size, SHA256: req.SHA256, Touched: s.Rec.Now()}
	if err := s.writeMeta(id, m); err != nil {
		os.RemoveAll(dir)
		return api.Upload{}, err
	}
	f, err := os.OpenFile(filepath.Join(dir, req.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return api.Upload{}, err
	}
	f.Close()
	return api.Upload{ID: id, Name: req.Name, Size: req.Size}, nil
}

func (s *Service) readMeta(id string) (uploadMeta, error) {
	var m uploadMeta
	if !uploadIDRE.MatchString(id) {
		return m, os.ErrNotExist
	}
	b, err := os.ReadFile(filepath.Join(s.uploadDir(id), "meta.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

func (s *Service) writeMeta(id string, m uploadMeta) error {
	b, _ := json.Marshal(m)
	tmp := filepath.Join(s.uploadDir(id), "meta.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.uploadDir(id), "meta.json"))
}

// upload finds p's upload; another tenant's is as absent as one that does not exist, and
// one abandoned longer than the TTL is expired (swept or not yet).
func (s *Service) upload(p policy.Principal, id string) (uploadMeta, error) {
	m, err := s.readMeta(id)
	if err != nil || m.Tenant != p.Tenant {
		return uploadMeta{}, fmt.Errorf("%w: upload %q not found", policy.ErrNotFound, id)
	}
	if m.Expired || s.stale(m) {
		return uploadMeta{}, s.expiredErr(id)
	}
	return m, nil
}

// SweepUploads deletes the bytes of uploads whose last part is more than the TTL ago
// (registered or not), keeping their meta another TTL to say they expired, and then that.
func (s *Service) SweepUploads(ctx context.Context) error {
	entries, err := os.ReadDir(s.uploadRoot())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		id := e.Name()
		if !uploadIDRE.MatchString(id) {
			continue
		}
		unlock, err := tryLockUpload(id)
		if err != nil {
			continue // a part is arriving: not stale
		}
		err = s.sweep(id)
		unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// sweep expires upload id if it is stale, and removes it once it has been expired a TTL.
func (s *Service) sweep(id string) error {
	m, err := s.readMeta(id)
	if err != nil {
		// Started but never described (a crash between the two): gone after the TTL.
		if st, serr := os.Stat(s.uploadDir(id)); serr == nil && s.Rec.Now().Sub(st.ModTime()) > s.uploadTTL() {
			os.RemoveAll(s.uploadDir(id))
		}
		return nil
	}
	if !s.stale(m) {
		return nil
	}
	if m.Expired {
		uploadLocks.Delete(id)
		return os.RemoveAll(s.uploadDir(id))
	}
	if err := os.Remove(filepath.Join(s.uploadDir(id), m.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	m.Expired, m.Touched = true, s.Rec.Now()
	if err := s.writeMeta(id, m); err != nil {
		return err
	}
	s.Log.Info("upload expired", "upload", id, "tenant", m.Tenant, "ttl", s.uploadTTL().String())
	return nil
}

// UploadSweeper runs SweepUploads every period until ctx ends.
func (s *Service) UploadSweeper(ctx context.Context, every time.Duration) {
	platform.Every(ctx, every, s.Log, "sweep expired uploads", s.SweepUploads)
}

func (s *Service) uploadState(id string, m uploadMeta) (api.Upload, error) {
	st, err := os.Stat(filepath.Join(s.uploadDir(id), m.Name))
	if err != nil {
		return api.Upload{}, err
	}
	return api.Upload{ID: id, Name: m.Name, Size: m.Size, Offset: st.Size(), Complete: m.Complete}, nil
}

// UploadStatus says how much of an upload the daemon holds.
func (s *Service) UploadStatus(ctx context.Context, p policy.Principal, id string) (api.Upload, error) {
	m, err := s.upload(p, id)
	if err != nil {
		return api.Upload{}, err
	}
	return s.uploadState(id, m)
}

// AppendUpload writes body at offset, which must be the bytes held so far (a client that lost
// an answer asks UploadStatus and resumes there). The part that arrives is kept even if the
// request breaks off. When the last byte is in, the file's SHA-256 is checked: a mismatch
// deletes the upload.
func (s *Service) AppendUpload(ctx context.Context, p policy.Principal, id string, offset int64, body io.Reader) (api.Upload, error) {
	if _, err := s.upload(p, id); err != nil {
		return api.Upload{}, err // another tenant's is not waited for
	}
	unlock, err := lockUpload(ctx, id)
	if err != nil {
		return api.Upload{}, err
	}
	defer unlock()
	m, err := s.upload(p, id)
	if err != nil {
		return api.Upload{}, err
	}
	if m.Complete {
		return api.Upload{}, fmt.Errorf("%w: upload %s is complete", policy.ErrConflict, id)
	}
	path := filepath.Join(s.uploadDir(id), m.Name)
	f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return api.Upload{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return api.Upload{}, err
	}
	if offset != st.Size() {
		return api.Upload{}, fmt.Errorf("%w: upload %s holds %d bytes; send from offset %d", policy.ErrConflict, id, st.Size(), st.Size())
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return api.Upload{}, err
	}
	n, err := io.Copy(f, io.LimitReader(body, m.Size-offset+1))
	if err == nil && offset+n > m.Size {
		f.Truncate(offset)
		return api.Upload{}, fmt.Errorf("%w: upload %s is %d bytes, as started; this part goes beyond it", policy.ErrInvalid, id, m.Size)
	}
	if err != nil {
		return api.Upload{}, err // what arrived is kept; the client resumes from the status
	}
	if err := f.Sync(); err != nil {
		return api.Upload{}, err
	}
	if offset+n == m.Size {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return api.Upload{}, err
		}
		h := sha256.New()
		rf, err := os.Open(path)
		if err != nil {
			return api.Upload{}, err
		}
		_, err = io.Copy(h, rf)
		rf.Close()
		if err != nil {
			return api.Upload{}, err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
			os.RemoveAll(s.uploadDir(id))
			return api.Upload{}, fmt.Errorf("%w: upload %s: the file's SHA-256 is not the one given when it started; it was deleted, upload it again", policy.ErrInvalid, id)
		}
		m.Complete = true
	}
	m.Touched = s.Rec.Now()
	if err := s.writeMeta(id, m); err != nil {
		return api.Upload{}, err
	}
	return s.uploadState(id, m)
}

// uploadedFiles returns the paths of p's completed uploads.
func (s *Service) uploadedFiles(p policy.Principal, ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		m, err := s.upload(p, id)
		if err != nil {
			return nil, err
		}
		if !m.Complete {
			return nil, fmt.Errorf("%w: upload %s is not complete; send the rest first", policy.ErrConflict, id)
		}
		out = append(out, filepath.Join(s.uploadDir(id), m.Name))
	}
	return out, nil
}

// ReadUpload returns the bytes of p's completed upload id, at most limit of them (a fusion
// table or an he blob, which their routes take whole).
func (s *Service) ReadUpload(p policy.Principal, id string, limit int64) ([]byte, error) {
	if _, err := s.upload(p, id); err != nil {
		return nil, err
	}
	unlock, err := tryLockUpload(id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	m, err := s.upload(p, id)
	if err != nil {
		return nil, err
	}
	if !m.Complete {
		return nil, fmt.Errorf("%w: upload %s is not complete; send the rest first", policy.ErrConflict, id)
	}
	if m.Size > limit {
		return nil, fmt.Errorf("%w: upload %s is %d bytes; this route takes at most %d MiB", policy.ErrInvalid, id, m.Size, limit>>20)
	}
	f, err := os.Open(filepath.Join(s.uploadDir(id), m.Name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// DropUpload deletes p's upload once what it carried is stored elsewhere.
func (s *Service) DropUpload(p policy.Principal, id string) {
	if _, err := s.upload(p, id); err == nil {
		s.dropUploads([]string{id})
	}
}

// dropUploads deletes uploads once registered (their files are copied into the version).
func (s *Service) dropUploads(ids []string) {
	for _, id := range ids {
		if uploadIDRE.MatchString(id) {
			os.RemoveAll(s.uploadDir(id))
			uploadLocks.Delete(id)
		}
	}
}
