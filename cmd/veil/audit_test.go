package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// veilAt runs the CLI against the platform served at url.
func veilAt(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	return runVeil(t, append([]string{"--host", url, "--token", "veil_test"}, args...)...)
}

func TestAuditCheckpointVerifyWitness(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t)
	p, err := m.start(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	p.put(t, 7)
	u := p.srv.URL

	out, err := veilAt(t, u, "audit", "checkpoint", "--key", m.pub())
	if err != nil || !strings.HasPrefix(out, origin+"\n7\n") {
		t.Fatalf("checkpoint: %v\n%s", err, out)
	}
	if out, err = veilAt(t, u, "audit", "checkpoint", "--key", m.pub(), "-o", m.kept()); err != nil || !strings.Contains(out, "saved the checkpoint of 7 entries") {
		t.Fatalf("checkpoint -o: %v\n%s", err, out)
	}
	kept7, _ := os.ReadFile(m.kept())
	if _, err := note.Open(kept7, note.VerifierList(m.key.Verifier())); err != nil {
		t.Fatalf("kept checkpoint is not a signed note: %v", err)
	}

	out, err = veilAt(t, u, "audit", "witness", "keygen", "--name", "witness.example/w1", "--out", m.witnessKey())
	if err != nil || !strings.Contains(out, "witness.example/w1+") {
		t.Fatalf("witness keygen: %v\n%s", err, out)
	}
	if fi, _ := os.Stat(m.witnessKey()); fi.Mode().Perm() != 0o600 {
		t.Errorf("witness key mode %v", fi.Mode().Perm())
	}
	wargs := []string{"audit", "witness", "--key", m.pub(), "--witness-key", m.witnessKey(), "--state", m.witnessState()}
	if _, err := veilAt(t, u, wargs...); err == nil || !strings.Contains(err.Error(), "--init") {
		t.Fatalf("witness without state or --init: %v", err)
	}
	cosigned := filepath.Join(m.root, "auditor", "cosigned.checkpoint")
	if out, err := veilAt(t, u, append(wargs, "--init", "-o", cosigned)...); err != nil || !strings.Contains(out, "cosigned the checkpoint of 7 entries") {
		t.Fatalf("witness --init: %v\n%s", err, out)
	}

	p.put(t, 5)
	if out, err := veilAt(t, u, append(wargs, "-o", cosigned)...); err != nil || !strings.Contains(out, "of 12 entries") {
		t.Fatalf("witness: %v\n%s", err, out)
	}
	out, err = veilAt(t, u, "audit", "verify", "--key", m.pub(), "--since", m.kept(), "--since", cosigned)
	if err != nil {
		t.Fatalf("verify --since: %v\n%s", err, out)
	}
	out2, err := veilAt(t, u, "audit", "verify", "--key", m.pub(), "--since", cosigned, "--witness", m.witnessKey()+".pub")
	if err != nil {
		t.Fatalf("verify --since --witness: %v\n%s", err, out2)
	}
	out += out2
	for _, want := range []string{"OK: 12 entries", "extends the kept checkpoint " + m.kept() + " (7 entries)", "(12 entries)", "cosigned by witness.example/w1"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	// The kept checkpoint is not cosigned: --witness says so.
	if _, err := veilAt(t, u, "audit", "verify", "--key", m.pub(), "--since", m.kept(), "--witness", m.witnessKey()+".pub"); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "not cosigned") {
		t.Errorf("verify --witness of an uncosigned checkpoint: %v", err)
	}
	// checkpoint -o over a kept one replaces it only with a checkpoint that extends it.
	if out, err := veilAt(t, u, "audit", "checkpoint", "--key", m.pub(), "-o", m.kept()); err != nil || !strings.Contains(out, "of 12 entries") {
		t.Fatalf("checkpoint -o over a kept checkpoint: %v\n%s", err, out)
	}
	// A daemon that serves a bad proof convinces neither the auditor nor the witness.
	h := auditHandler(p.db, p.signer.Log())
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/audit/consistency" {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var cp audit.ConsistencyProof
		json.Unmarshal(rec.Body.Bytes(), &cp)
		if len(cp.Hashes) > 0 {
			cp.Hashes[0][0] ^= 1
		}
		json.NewEncoder(w).Encode(cp)
	}))
	defer liar.Close()
	p.put(t, 1)
	if _, err := veilAt(t, liar.URL, "audit", "verify", "--key", m.pub(), "--since", m.kept()); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "does not extend") {
		t.Errorf("verify --since with a bad proof: %v", err)
	}
	if _, err := veilAt(t, liar.URL, append(wargs, "-o", cosigned)...); !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "does not extend") {
		t.Errorf("witness with a bad proof: %v", err)
	}

	// Archived as they were signed.
	last, err := os.ReadFile(filepath.Join(m.archive(), "checkpoint"))
	if err != nil || !strings.HasPrefix(string(last), origin+"\n13\n") {
		t.Errorf("archive's latest: %q %v", last, err)
	}
}

// TestAuditInsider is the list of what an insider with write access to the data
// directory (or a bad disk) does to the store, each done to the real SQLite file as they
// would do it. Each must be caught by the start-up checks, by the witness, or by an
// auditor's verify --since with a kept checkpoint; none may pass silently.
func TestAuditInsider(t *testing.T) {
	const (
		caught = "caught"
		passes = "passes"
		either = "" // depends on where the damage lands
	)
	type scene struct {
		m      machine
		p      *platform // running, 10 entries kept by the auditor, 15 cosigned by the witness
		backup string    // the store file as shut down with 10 entries
	}
	cases := []struct {
		name string
		// attack is what the insider does; it returns with the platform stopped (cleanly or
		// not) and the files as the insider left them.
		attack func(t *testing.T, s *scene)
		// What catches it: the store's start-up check (sqlite.OpenWith: shutdown marker,
		// WAL, quick_check), the signer's start-up check (audit.Signer.Check, run on the
		// store adopted as found, as if the marker were forged or missing), the witness,
		// and the auditor's verify --since.
		store, signer, witness, verify string
	}{
		{"nothing (control)", func(t *testing.T, s *scene) { s.p.stop() }, passes, passes, passes, passes},
		{"edit a record and recompute every hash", func(t *testing.T, s *scene) {
			s.p.stop()
			rewrite(t, s.m.store(), 3, nil)
		}, caught, caught, passes, caught},
		{"truncate the tail", func(t *testing.T, s *scene) {
			s.p.stop()
			execSQL(t, s.m.store(), `DELETE FROM audit_records WHERE idx >= 8`, `DELETE FROM audit_hashes WHERE idx >= 14`, `DELETE FROM audit_checkpoints WHERE size > 8`)
		}, caught, caught, caught, caught},
		{"fork: a different tree of the same size, signed with a stolen key", func(t *testing.T, s *scene) {
			s.p.stop()
			rewrite(t, s.m.store(), 5, s.m.key)
		}, caught, caught, caught, caught},
		{"restore an older store file", func(t *testing.T, s *scene) {
			s.p.stop()
			copyFileT(t, s.backup, s.m.store())
		}, caught, caught, caught, passes},
		{"remove the WAL after a crash", func(t *testing.T, s *scene) {
			// The disk as a kill -9 leaves it: an image of every file while the store is open.
			crashed := t.TempDir()
			copyTree(t, s.m.root, crashed)
			s.p.stop()
			s.m.root = crashed
			if err := os.Remove(s.m.store() + "-wal"); err != nil {
				t.Fatal(err)
			}
		}, caught, caught, caught, passes},
		{"flip a byte of the store file", func(t *testing.T, s *scene) {
			s.p.stop()
			fi, _ := os.Stat(s.m.store())
			flip(t, s.m.store(), fi.Size()/2)
		}, caught, either, either, either},
		{"delete a record while running", func(t *testing.T, s *scene) {
			execSQL(t, s.m.store(), `DELETE FROM audit_records WHERE idx = 4`)
			s.p.put(t, 2) // appends go on
			s.p.stop()
		}, passes, passes, passes, caught},
		{"edit a record while running, hashes left", func(t *testing.T, s *scene) {
			execSQL(t, s.m.store(), `UPDATE audit_records SET data = replace(data, 'operator', 'operatoR') WHERE idx = 6`)
			s.p.stop()
		}, passes, passes, passes, caught},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := &scene{m: newMachine(t)}
			p, err := s.m.start(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			p.put(t, 10)
			mustVeil(t, p.srv.URL, "audit", "checkpoint", "--key", s.m.pub(), "-o", s.m.kept())
			p.stop()
			s.backup = filepath.Join(t.TempDir(), "veil.db.backup")
			copyFileT(t, s.m.store(), s.backup)
			if s.p, err = s.m.start(ctx, false); err != nil {
				t.Fatal(err)
			}
			s.p.put(t, 5)
			mustVeil(t, s.p.srv.URL, "audit", "witness", "keygen", "--name", "witness.example/w1", "--out", s.m.witnessKey())
			mustVeil(t, s.p.srv.URL, "audit", "witness", "--init", "--key", s.m.pub(), "--witness-key", s.m.witnessKey(), "--state", s.m.witnessState())

			tc.attack(t, s)

			var storeErr, signerErr error
			if db, err := sqlite.OpenWith(ctx, sqlite.Options{Path: s.m.store(), Marker: s.m.marker()}); err != nil {
				storeErr = err
			} else {
				db.Close()
			}
			if db, err := sqlite.OpenWith(ctx, sqlite.Options{Path: s.m.store(), Marker: filepath.Join(t.TempDir(), "forged"), Adopt: true}); err != nil {
				signerErr = err
			} else {
				if p, err := s.m.wire(ctx, db); err != nil {
					signerErr = err
				} else {
					p.srv.Close()
				}
				db.Close()
			}
			// The auditor and the witness face the store as found, as if the insider also
			// skipped the start-up checks.
			var witnessErr, verifyErr error
			if srv := s.m.serve(t); srv == nil {
				witnessErr = errors.New("the store cannot be served")
				verifyErr = witnessErr
			} else {
				_, witnessErr = veilAt(t, srv.srv.URL, "audit", "witness", "--key", s.m.pub(), "--witness-key", s.m.witnessKey(), "--state", s.m.witnessState())
				_, verifyErr = veilAt(t, srv.srv.URL, "audit", "verify", "--key", s.m.pub(), "--since", s.m.kept())
			}
			t.Logf("store start-up check: %v\nsigner start-up check: %v\nwitness: %v\nverify --since: %v", storeErr, signerErr, witnessErr, verifyErr)
			for _, d := range []struct {
				name string
				want string
				err  error
			}{{"store start-up check", tc.store, storeErr}, {"signer start-up check", tc.signer, signerErr}, {"witness", tc.witness, witnessErr}, {"verify --since", tc.verify, verifyErr}} {
				switch {
				case d.want == caught && d.err == nil:
					t.Errorf("%s did not catch it", d.name)
				case d.want == passes && d.err != nil:
					t.Errorf("%s fails: %v", d.name, d.err)
				}
			}
			if storeErr == nil && signerErr == nil && witnessErr == nil && verifyErr == nil && tc.store != passes {
				t.Error("nothing caught it")
			}
		})
	}
}

func mustVeil(t *testing.T, url string, args ...string) string {
	t.Helper()
	out, err := veilAt(t, url, args...)
	if err != nil {
		t.Fatalf("veil %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func execSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// rewrite changes the audit records from index from on, as an insider who understands the
// log would, and recomputes every stored hash. With key (stolen), it also re-signs every
// checkpoint, so the forged log verifies on its own.
func rewrite(t *testing.T, path string, from int64, key *audit.Key) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT idx, data FROM audit_records ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for rows.Next() {
		var idx int64
		var b []byte
		rows.Scan(&idx, &b)
		if idx >= from {
			b = bytes.Replace(b, []byte(`"operator"`), []byte(`"operatoR"`), 1)
		}
		recs = append(recs, b)
	}
	rows.Close()
	var hashes []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, r := range recs {
		hs, err := tlog.StoredHashes(int64(i), r, hr)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	tx, _ := db.Begin()
	for i, r := range recs {
		tx.Exec(`UPDATE audit_records SET data = ? WHERE idx = ?`, r, i)
	}
	for i, h := range hashes {
		tx.Exec(`UPDATE audit_hashes SET hash = ? WHERE idx = ?`, h[:], i)
	}
	if key != nil {
		tx.Exec(`DELETE FROM audit_checkpoints`)
		for n := int64(1); n <= int64(len(recs)); n++ {
			root, _ := tlog.TreeHash(n, hr)
			msg, err := note.Sign(&note.Note{Text: origin + "\n" + strconv.FormatInt(n, 10) + "\n" + root.String() + "\n"}, key.Signer())
			if err != nil {
				t.Fatal(err)
			}
			tx.Exec(`INSERT INTO audit_checkpoints (size, note) VALUES (?, ?)`, n, msg)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func copyFileT(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x20
	f.WriteAt(b, off)
}

// TestVerifyWhileAppending runs veil audit verify while the platform appends: between any
// two of the requests verify makes, the platform commits an entry (deterministically, as
// the worst interleaving of a busy daemon). Verify reads the log as of one checkpoint, so it
// never reports as truncated a log that only grew.
func TestVerifyWhileAppending(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t)
	p, err := m.start(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	p.put(t, 20)
	mustVeil(t, p.srv.URL, "audit", "checkpoint", "--key", m.pub(), "-o", m.kept())
	h := auditHandler(p.db, p.signer.Log())
	var mu sync.Mutex
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		mu.Lock()
		defer mu.Unlock()
		if err := p.add(1); err != nil {
			t.Error(err)
		}
	}))
	defer busy.Close()
	before := p.next
	for i := range 3 {
		if out, err := veilAt(t, busy.URL, "audit", "verify", "--key", m.pub(), "--since", m.kept()); err != nil {
			t.Fatalf("verify %d while appending: %v\n%s", i, err, out)
		}
	}
	if p.next-before < 6 {
		t.Errorf("only %d entries were appended during the verifications: the test proved nothing", p.next-before)
	}
}

// TestConcurrentAppends hammers the wired platform from many goroutines: every commit's
// hook signs, stores and archives under one Checkpointer. Afterwards the log verifies, and
// the signer, the store and the archive agree on the latest checkpoint.
func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t)
	p, err := m.start(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				err := p.db.Update(ctx, func(tx store.Tx) error {
					_, err := p.signer.Log().Append(ctx, tx, audit.Entry{Time: time.Unix(int64(g*100+i), 0), Actor: "w", Action: "hammer", Object: "x"})
					return err
				})
				if err != nil {
					mu.Lock()
					t.Error(err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	out := mustVeil(t, p.srv.URL, "audit", "verify", "--key", m.pub())
	if !strings.Contains(out, "OK: 80 entries") {
		t.Errorf("verify: %s", out)
	}
	latest, ok := p.signer.Latest()
	arch, _ := os.ReadFile(filepath.Join(m.archive(), "checkpoint"))
	var stored audit.Checkpoint
	p.db.View(ctx, func(tx store.Tx) error {
		cps, _ := tx.Checkpoints(ctx)
		stored = cps[len(cps)-1]
		return nil
	})
	if !ok || latest.Size != 80 || !bytes.Equal(latest.Note, stored.Note) || !bytes.Equal(arch, stored.Note) {
		t.Errorf("signer %d, store %d, archive %q disagree", latest.Size, stored.Size, arch)
	}
	if err := p.cp.Err(); err != nil {
		t.Error(err)
	}
}

// TestAuditProveFile checks a proof saved earlier (the console downloads one) offline, and
// refuses one whose entry was changed.
func TestAuditProveFile(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t)
	p, err := m.start(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	p.put(t, 5)
	req, _ := http.NewRequest("GET", p.srv.URL+"/v1/audit/proof/3", nil)
	req.Header.Set("Authorization", "Bearer veil_test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("proof: %s %s", resp.Status, raw.String())
	}
	file := filepath.Join(t.TempDir(), "proof.json")
	os.WriteFile(file, raw.Bytes(), 0o644)
	// Offline: the host is unreachable, and not asked.
	out, err := runVeil(t, "--host", "unix:///nonexistent.sock", "audit", "prove", "--file", file, "--key", m.pub())
	if err != nil || !strings.Contains(out, "OK: entry 3 is included") {
		t.Fatalf("prove --file: %v\n%s", err, out)
	}
	var pf audit.Proof
	json.Unmarshal(raw.Bytes(), &pf)
	pf.Record = bytes.Replace(pf.Record, []byte("principal/p-3"), []byte("principal/p-4"), 1)
	b, _ := json.Marshal(pf)
	os.WriteFile(file, b, 0o644)
	if out, err := runVeil(t, "--host", "unix:///nonexistent.sock", "audit", "prove", "--file", file, "--key", m.pub()); err == nil || !strings.Contains(err.Error()+out, "does NOT verify") {
		t.Fatalf("a changed entry: %v\n%s", err, out)
	}
	if _, err := runVeil(t, "audit", "prove", "--file", file, "3", "--key", m.pub()); err == nil {
		t.Fatal("an entry number with --file was accepted")
	}
}
