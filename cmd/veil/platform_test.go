package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// A machine is the files of one Veil platform under root, laid out as the README tells an
// operator to: the data directory (the store) writable by the daemon and by the insider of
// these tests; the signer's key, state and the store's shutdown marker elsewhere; a
// checkpoint archive on another "machine"; and the witness's and the auditor's files, which
// the platform never touches.
type machine struct {
	root string
	key  *audit.Key
}

func (m machine) store() string   { return filepath.Join(m.root, "data", "veil.db") }
func (m machine) keyFile() string { return filepath.Join(m.root, "signer", "platform.key") }
func (m machine) state() string   { return filepath.Join(m.root, "signer", "audit.state") }
func (m machine) marker() string  { return filepath.Join(m.root, "signer", "veil.db.shutdown") }
func (m machine) archive() string { return filepath.Join(m.root, "archive") }
func (m machine) pub() string     { return filepath.Join(m.root, "platform.pub") }
func (m machine) kept() string    { return filepath.Join(m.root, "auditor", "kept.checkpoint") }
func (m machine) witnessKey() string {
	return filepath.Join(m.root, "witness", "witness.key")
}
func (m machine) witnessState() string {
	return filepath.Join(m.root, "witness", "witness.state")
}

const origin = "veil-platform"

func newMachine(t *testing.T) machine {
	t.Helper()
	m := machine{root: t.TempDir()}
	for _, d := range []string{"data", "signer", "archive", "auditor", "witness"} {
		if err := os.Mkdir(filepath.Join(m.root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	k, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	m.key = k
	os.WriteFile(m.keyFile(), k.Secret(), 0o600)
	os.WriteFile(m.pub(), []byte(k.VerifierKey()+"\n"), 0o644)
	return m
}

// platform is the store, signer and checkpointer wired as the daemon must wire them, and
// the audit routes served over HTTP as the daemon must serve them (auditHandler).
type platform struct {
	db     *sqlite.DB
	signer *audit.Signer
	cp     *audit.Checkpointer
	srv    *httptest.Server
	next   int
}

// start runs the start-up sequence the daemon must run: open the store with its checks,
// load the key from outside the data directory, check the store against the signer's state,
// sign what a crash left unsigned. create is for the first start (veil init).
func (m machine) start(ctx context.Context, create bool) (*platform, error) {
	db, err := sqlite.OpenWith(ctx, sqlite.Options{Path: m.store(), Marker: m.marker(), Create: create})
	if err != nil {
		return nil, err
	}
	p, err := m.wire(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

func (m machine) wire(ctx context.Context, db *sqlite.DB) (*platform, error) {
	key, err := audit.LoadKey(origin, m.keyFile())
	if err != nil {
		return nil, err
	}
	signer, err := audit.NewSigner(origin, key, m.state())
	if err != nil {
		return nil, err
	}
	if err := db.View(ctx, func(tx store.Tx) error { return signer.Check(ctx, tx) }); err != nil {
		return nil, err
	}
	arch, err := audit.OpenArchive(m.archive(), origin, signer.Verifier())
	if err != nil {
		return nil, err
	}
	cp := audit.NewCheckpointer(signer, store.AuditLog(db), []*audit.Archive{arch}, db.Halt)
	db.AfterAuditCommit(func(ctx context.Context) { cp.Sync(ctx) })
	if _, err := cp.Sync(ctx); err != nil {
		return nil, err
	}
	p := &platform{db: db, signer: signer, cp: cp}
	p.srv = httptest.NewServer(auditHandler(db, signer.Log()))
	db.View(ctx, func(tx store.Tx) error {
		n, _ := tx.Size(ctx)
		p.next = int(n)
		return nil
	})
	return p, nil
}

// serve serves a store as found, without the start-up checks: what an auditor faces when
// the insider also skipped them.
func (m machine) serve(t *testing.T) *platform {
	t.Helper()
	db, err := sqlite.OpenWith(context.Background(), sqlite.Options{Path: m.store(), Marker: filepath.Join(t.TempDir(), "marker"), Adopt: true})
	if err != nil {
		return nil
	}
	p := &platform{db: db, srv: httptest.NewServer(auditHandler(db, audit.NewVerifyingLog(m.key.VerifierKey())))}
	t.Cleanup(p.stop)
	return p
}

// put commits entries, each with the principal it records, as the daemon's requests do.
func (p *platform) put(t *testing.T, n int) {
	t.Helper()
	if err := p.add(n); err != nil {
		t.Fatal(err)
	}
}

func (p *platform) add(n int) error {
	ctx := context.Background()
	for range n {
		i := p.next
		p.next++
		err := p.db.Update(ctx, func(tx store.Tx) error {
			id := fmt.Sprintf("p-%d", i)
			if err := tx.PutPrincipal(ctx, store.Principal{ID: id, Name: id, Role: "reviewer", TokenHash: []byte(id), Created: time.Unix(int64(i), 0)}); err != nil {
				return err
			}
			_, err := p.signer.Log().Append(ctx, tx, audit.Entry{Time: time.Unix(int64(i), 0), Actor: "p-0", Role: "operator", Action: "principal.create", Object: "principal/" + id})
			return err
		})
		if err != nil {
			return fmt.Errorf("put %d: %w", i, err)
		}
	}
	return nil
}

// stop shuts the platform down cleanly: the last checkpoint, then the store.
func (p *platform) stop() {
	if p.srv != nil {
		p.srv.Close()
	}
	if p.cp != nil {
		p.cp.Sync(context.Background())
	}
	p.db.Close()
}

// copyTree copies a machine's files, as a disk image taken at that instant.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		return os.WriteFile(dst, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// auditHandler serves the audit routes over one store, as the daemon serves them (without
// authentication, which is not what these tests are about). GET /v1/audit/checkpoint and
// GET /v1/audit/consistency are the two routes the daemon must add.
func auditHandler(db store.Store, l *audit.Log) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, audit.ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, audit.ErrInvalid):
				code = http.StatusBadRequest
			}
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(api.Error{Error: err.Error(), Kind: "error"})
			return
		}
		json.NewEncoder(w).Encode(v)
	}
	num := func(r *http.Request, name string) int64 {
		n, _ := strconv.ParseInt(r.URL.Query().Get(name), 10, 64)
		return n
	}
	mux.HandleFunc("GET /v1/audit/records", func(w http.ResponseWriter, r *http.Request) {
		var out api.AuditRecords
		from, limit := num(r, "from"), num(r, "limit")
		err := db.View(r.Context(), func(tx store.Tx) error {
			n, err := tx.Size(r.Context())
			if err != nil {
				return err
			}
			out.Size, out.From = n, from
			if r.URL.Query().Get("tail") != "" && from == 0 {
				out.From = max(0, n-limit)
			}
			out.Records, err = tx.ReadRecords(r.Context(), out.From, min(n, out.From+limit))
			return err
		})
		reply(w, out, err)
	})
	mux.HandleFunc("GET /v1/audit/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		var out api.AuditCheckpoints
		err := db.View(r.Context(), func(tx store.Tx) error {
			cps, err := tx.Checkpoints(r.Context())
			for _, c := range cps {
				out.Checkpoints = append(out.Checkpoints, api.AuditCheckpoint{Size: c.Size, Note: c.Note})
			}
			return err
		})
		reply(w, out, err)
	})
	mux.HandleFunc("GET /v1/audit/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		var out api.AuditCheckpoint
		err := db.View(r.Context(), func(tx store.Tx) error {
			cps, err := tx.Checkpoints(r.Context())
			if err == nil && len(cps) == 0 {
				err = fmt.Errorf("%w: the audit log has no checkpoint yet", audit.ErrNotFound)
			}
			if err == nil {
				out = api.AuditCheckpoint{Size: cps[len(cps)-1].Size, Note: cps[len(cps)-1].Note}
			}
			return err
		})
		reply(w, out, err)
	})
	mux.HandleFunc("GET /v1/audit/consistency", func(w http.ResponseWriter, r *http.Request) {
		var p *audit.ConsistencyProof
		err := db.View(r.Context(), func(tx store.Tx) error {
			var err error
			p, err = l.ProveConsistency(r.Context(), tx, num(r, "from"), num(r, "to"))
			return err
		})
		reply(w, p, err)
	})
	mux.HandleFunc("GET /v1/audit/verify", func(w http.ResponseWriter, r *http.Request) {
		var rep *audit.Report
		var verr error
		err := db.View(r.Context(), func(tx store.Tx) error {
			rep, verr = l.Verify(r.Context(), tx)
			return nil
		})
		if err == nil && verr != nil {
			reply(w, map[string]any{"ok": false, "error": verr.Error()}, nil)
			return
		}
		reply(w, map[string]any{"ok": true, "report": rep}, err)
	})
	mux.HandleFunc("GET /v1/audit/proof/{index}", func(w http.ResponseWriter, r *http.Request) {
		idx, _ := strconv.ParseInt(r.PathValue("index"), 10, 64)
		var p *audit.Proof
		err := db.View(r.Context(), func(tx store.Tx) error {
			var err error
			p, err = l.Prove(r.Context(), tx, idx)
			return err
		})
		reply(w, p, err)
	})
	return mux
}
