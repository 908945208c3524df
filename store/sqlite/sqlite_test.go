package sqlite

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/internal/fault"
	"github.com/veil-dp/veil/store"
)

func testKey(t testing.TB) *audit.Key {
	t.Helper()
	k, err := audit.NewKey("veil.test", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testLog is the log the tests append with: signed inside the transaction, as the daemon
// does until it uses a Signer, so that each record has its checkpoint.
func testLog(t testing.TB) *audit.Log { return audit.NewLog("veil.test", testKey(t)) }

// put commits one principal and the audit entry that records it.
func put(t testing.TB, db *DB, l *audit.Log, i int) error {
	t.Helper()
	ctx := context.Background()
	return db.Update(ctx, func(tx store.Tx) error {
		id := fmt.Sprintf("p-%d", i)
		if err := tx.PutPrincipal(ctx, store.Principal{ID: id, Name: id, Role: "reviewer", TokenHash: []byte(id), Created: time.Unix(int64(i), 0)}); err != nil {
			return err
		}
		_, err := l.Append(ctx, tx, audit.Entry{Time: time.Unix(int64(i), 0), Actor: "test", Role: "system", Action: "principal.create", Object: "principal/" + id})
		return err
	})
}

func mustOpen(t testing.TB, o Options) *DB {
	t.Helper()
	db, err := OpenWith(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newStore creates a store with n entries and closes it cleanly.
func newStore(t *testing.T, n int) Options {
	t.Helper()
	o := Options{Path: filepath.Join(t.TempDir(), "veil.db")}
	db := mustOpen(t, Options{Path: o.Path, Create: true})
	l := testLog(t)
	for i := range n {
		if err := put(t, db, l, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return o
}

func verify(t *testing.T, db *DB) (*audit.Report, error) {
	t.Helper()
	var rep *audit.Report
	var verr error
	err := db.View(context.Background(), func(tx store.Tx) error {
		rep, verr = testLog(t).Verify(context.Background(), tx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep, verr
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// crash runs a child process that opens the store, commits n more entries and dies by
// SIGKILL, leaving the files as a crash does.
func crash(t *testing.T, o Options, from, n int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VEIL_CRASH_STORE="+o.Path, fmt.Sprintf("VEIL_CRASH_RANGE=%d,%d", from, n))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crash child: %v\n%s", err, out)
	}
}

// TestCrashChild is the child of crash.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("VEIL_CRASH_STORE")
	if path == "" {
		t.Skip("the child process of crash()")
	}
	var from, n int
	fmt.Sscanf(os.Getenv("VEIL_CRASH_RANGE"), "%d,%d", &from, &n)
	db := mustOpen(t, Options{Path: path})
	l := testLog(t)
	for i := from; i < from+n; i++ {
		if err := put(t, db, l, i); err != nil {
			t.Fatal(err)
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// TestStartupChecks does to a stopped store's files what an insider or a bad disk does and
// checks that the next start refuses it, saying what happened, and that an untouched store
// starts.
func TestStartupChecks(t *testing.T) {
	cases := []struct {
		name string
		// damage changes the files of a store with 6 entries, closed cleanly.
		damage func(t *testing.T, o *Options)
		says   string // "" for a store that must open
		adopt  bool   // and opens with Adopt
	}{
		{"untouched", func(t *testing.T, o *Options) {}, "", false},
		{"crashed, WAL intact", func(t *testing.T, o *Options) { crash(t, *o, 6, 3) }, "", false},
		{"store file moved away", func(t *testing.T, o *Options) {
			os.Rename(o.Path, o.Path+".moved")
		}, "is missing", false},
		{"store file and marker moved away", func(t *testing.T, o *Options) {
			os.Rename(o.Path, o.Path+".moved")
			os.Rename(o.Path+".shutdown", o.Path+".shutdown.moved")
		}, "there is no store", false},
		{"byte flipped while stopped", func(t *testing.T, o *Options) {
			fi, _ := os.Stat(o.Path)
			flipByte(t, o.Path, fi.Size()-100)
		}, "not the file Veil shut down", true},
		{"older copy restored", func(t *testing.T, o *Options) {
			copyFile(t, o.Path, o.Path+".backup")
			db := mustOpen(t, *o)
			put(t, db, testLog(t), 6)
			db.Close()
			os.Rename(o.Path+".backup", o.Path)
		}, "not the file Veil shut down", true},
		{"edited offline with sqlite3", func(t *testing.T, o *Options) {
			raw, err := sql.Open("sqlite3", o.Path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec(`UPDATE principals SET role = 'operator' WHERE id = 'p-3'`); err != nil {
				t.Fatal(err)
			}
			raw.Close()
		}, "not the file Veil shut down", true},
		{"WAL removed after a crash", func(t *testing.T, o *Options) {
			crash(t, *o, 6, 3)
			if err := os.Remove(o.Path + "-wal"); err != nil {
				t.Fatal(err)
			}
		}, "write-ahead log " + "", true},
		{"marker removed", func(t *testing.T, o *Options) {
			os.Remove(o.Path + ".shutdown")
		}, "no shutdown marker", true},
		{"marker damaged", func(t *testing.T, o *Options) {
			os.WriteFile(o.Path+".shutdown", []byte("veil-store-marker v1\nstate clean\nbytes x\n"), 0o600)
		}, "marker", true},
		{"page structure damaged", func(t *testing.T, o *Options) {
			// Page 2's b-tree page type byte: structure, found by quick_check even when the
			// store is adopted as found.
			flipByte(t, o.Path, 4096)
		}, "not the file Veil shut down", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newStore(t, 6)
			tc.damage(t, &o)
			db, err := OpenWith(context.Background(), o)
			if tc.says == "" {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if _, err := verify(t, db); err != nil {
					t.Errorf("verify: %v", err)
				}
				db.Close()
				return
			}
			if err == nil {
				db.Close()
				t.Fatal("the damaged store opens")
			}
			t.Log(err)
			if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("open: %v, want ErrDamaged saying %q", err, tc.says)
			}
			o.Adopt = true
			db, err = OpenWith(context.Background(), o)
			if tc.adopt != (err == nil) {
				t.Errorf("open with Adopt: %v, want success %v", err, tc.adopt)
			}
			if err == nil {
				db.Close()
			}
		})
	}
}

// TestQuickCheck: damage to the page structure is found even without a marker to compare.
func TestQuickCheck(t *testing.T) {
	o := newStore(t, 30)
	o.Adopt = true
	flipByte(t, o.Path, 4096)
	_, err := OpenWith(context.Background(), o)
	if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open of a store with a damaged page: %v", err)
	}
}

// TestCleanMarker: a clean Close records the file as it stays on disk.
func TestCleanMarker(t *testing.T) {
	o := newStore(t, 3)
	m, ok, err := readMarker(o.Path + ".shutdown")
	if err != nil || !ok || m.state != stateClean {
		t.Fatalf("marker after Close: %+v %v %v", m, ok, err)
	}
	got, _ := digestFile(o.Path)
	if got != m {
		t.Errorf("marker %+v, file %+v", m, got)
	}
	if fi, err := os.Stat(o.Path + "-wal"); err != nil || fi.Size() != 0 {
		t.Errorf("WAL after a clean close: %v (kept, empty, so that only removal makes it go)", err)
	}
	db := mustOpen(t, o)
	if m, _, _ := readMarker(o.Path + ".shutdown"); m.state != stateOpen {
		t.Errorf("marker of an open store: %+v", m)
	}
	db.Close()
}

// TestDeletedRecord: an insider deletes audit rows from the live store. Appends go on (today
// a deleted row made every later append fail on a taken index) and Verify names the damage.
func TestDeletedRecord(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sql   string
		index int64
	}{
		{"a middle record", `DELETE FROM audit_records WHERE idx = 4`, 4},
		{"the last record", `DELETE FROM audit_records WHERE idx = 9`, 9},
		{"the tail, hashes kept", `DELETE FROM audit_records WHERE idx >= 7`, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newStore(t, 10)
			db := mustOpen(t, o)
			defer db.Close()
			raw, err := sql.Open("sqlite3", o.Path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			raw.Close()
			l := testLog(t)
			for i := 10; i < 15; i++ {
				if err := put(t, db, l, i); err != nil {
					t.Fatalf("append %d after the deletion: %v", i, err)
				}
			}
			_, err = verify(t, db)
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || ve.Index != tc.index {
				t.Errorf("verify: %v, want damage at record %d", err, tc.index)
			}
		})
	}
}

func TestRecordsWithHashes(t *testing.T) {
	for n := int64(0); n < 300; n++ {
		if got := recordsWithHashes(tlog.StoredHashIndex(0, n)); got != n {
			t.Fatalf("recordsWithHashes(%d) = %d, want %d", tlog.StoredHashIndex(0, n), got, n)
		}
	}
}

func TestAfterAuditCommit(t *testing.T) {
	ctx := context.Background()
	o := newStore(t, 1)
	db := mustOpen(t, o)
	defer db.Close()
	calls := 0
	db.AfterAuditCommit(func(context.Context) { calls++ })
	put(t, db, testLog(t), 1)
	if calls != 1 {
		t.Errorf("%d calls after an audited commit", calls)
	}
	db.Update(ctx, func(tx store.Tx) error { return tx.SetBudget(ctx, "d", 1, 1) })
	db.Update(ctx, func(tx store.Tx) error {
		testLog(t).Append(ctx, tx, audit.Entry{Time: time.Unix(9, 0), Action: "x"})
		return errors.New("rolled back")
	})
	if calls != 1 {
		t.Errorf("%d calls: the hook ran for a commit without audit records or a rollback", calls)
	}
}

// TestStorageFailure makes the disk fail under a real SQLite store (fsync or write returning
// EIO, by a seccomp filter in a child process) and checks that the store stops accepting
// writes at once, says so in the error and in Err, still serves reads, and that after a
// restart the transaction that hit the failure is whole or absent and the log verifies.
func TestStorageFailure(t *testing.T) {
	if fault.InChild(t.Name()) {
		storageFailureChild(t)
		return
	}
	for _, which := range []string{"fsync", "pwrite"} {
		t.Run(which, func(t *testing.T) {
			o := newStore(t, 5)
			out := fault.RunChild(t, "VEIL_FAULT_STORE="+o.Path, "VEIL_FAULT_CALL="+which)
			if !strings.Contains(out, "CHILD DONE") {
				t.Fatalf("child output:\n%s", out)
			}
			t.Logf("child:\n%s", out)
			db := mustOpen(t, o) // not closed cleanly: recovered from the WAL
			defer db.Close()
			var p5, p6 bool
			var size int64
			db.View(context.Background(), func(tx store.Tx) error {
				_, err5 := tx.Principal(context.Background(), "p-5")
				_, err6 := tx.Principal(context.Background(), "p-6")
				p5, p6 = err5 == nil, err6 == nil
				size, _ = tx.Size(context.Background())
				return nil
			})
			if p6 || p5 != (size == 6) || size != 5 && size != 6 {
				t.Errorf("after recovery: p-5 %v, p-6 %v, %d audit records: the failed transaction is not whole or absent", p5, p6, size)
			}
			if _, err := verify(t, db); err != nil {
				t.Errorf("verify after recovery: %v", err)
			}
			if err := put(t, db, testLog(t), 7); err != nil {
				t.Errorf("write after restart: %v", err)
			}
		})
	}
}

func storageFailureChild(t *testing.T) {
	o := Options{Path: os.Getenv("VEIL_FAULT_STORE")}
	db := mustOpen(t, o)
	l := testLog(t)
	calls := fault.Fsync
	if os.Getenv("VEIL_FAULT_CALL") == "pwrite" {
		calls = fault.Pwrite
	}
	if err := fault.Fail(syscall.EIO, -1, calls); err != nil {
		t.Fatal(err)
	}
	err := put(t, db, l, 5)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "storage failure") {
		t.Fatalf("write on a failing disk: %v", err)
	}
	if db.Err() == nil {
		t.Fatal("Err is nil after a storage failure")
	}
	// Latched: refused without trying, even for a change that would fit in memory.
	err = put(t, db, l, 6)
	if !errors.Is(err, store.ErrUnavailable) || err.Error() != db.Err().Error() {
		t.Fatalf("second write: %v", err)
	}
	// Reads still answer (the readiness endpoint, auditors).
	if err := db.View(context.Background(), func(tx store.Tx) error {
		_, err := tx.Principal(context.Background(), "p-1")
		return err
	}); err != nil {
		t.Errorf("read after the failure: %v", err)
	}
	// Closing a failed store leaves it marked open, for recovery at the next start.
	db.Close()
	if m, _, _ := readMarker(o.Path + ".shutdown"); m.state != stateOpen {
		t.Errorf("a failed store was marked %q at close", m.state)
	}
	fmt.Println("CHILD DONE:", err)
}

// TestDiskFull fills a small tmpfs under a real store: the write is refused clearly, nothing
// of it is stored, the store is not latched, and writes work again once there is space.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	ctx := context.Background()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	db := mustOpen(t, Options{Path: filepath.Join(dir, "veil.db"), Create: true})
	defer db.Close()
	l := testLog(t)
	for i := range 3 {
		if err := put(t, db, l, i); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	big := bytes.Repeat([]byte("x"), 1<<20)
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutOutput(ctx, store.Output{JobID: "j-1", Data: big, Meta: []byte("{}"), Created: time.Unix(1, 0)}); err != nil {
			return err
		}
		_, err := l.Append(ctx, tx, audit.Entry{Time: time.Unix(9, 0), Actor: "test", Action: "output.store", Object: "job/j-1"})
		return err
	})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "disk that holds the store is full") {
		t.Fatalf("write to a full disk: %v", err)
	}
	if db.Err() != nil {
		t.Errorf("a full disk latched the store: %v", db.Err())
	}
	db.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Output(ctx, "j-1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the refused output is stored: %v", err)
		}
		if n, _ := tx.Size(ctx); n != 3 {
			t.Errorf("the refused audit entry is stored: %d records", n)
		}
		return nil
	})
	os.Remove(filler)
	if err := put(t, db, l, 3); err != nil {
		t.Fatalf("write once there is space again: %v", err)
	}
	if _, err := verify(t, db); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// TestHaltStopsWrites: the audit signer's refusal stops writes the same way.
func TestHaltStopsWrites(t *testing.T) {
	o := newStore(t, 2)
	db := mustOpen(t, o)
	defer db.Close()
	db.Halt(errors.New("the audit signer refuses the log (state /secret/path/audit.state)"))
	err := put(t, db, testLog(t), 2)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "stopped accepting writes") || strings.Contains(err.Error(), "/secret/path") {
		t.Errorf("write after Halt: %v (want a refusal that does not repeat the reason's paths)", err)
	}
	if e := db.Err(); e == nil || !strings.Contains(e.Error(), "signer refuses") {
		t.Errorf("Err after Halt: %v", e)
	}
}

// TestDeletedHashesStopWrites deletes a record together with its stored hashes: no append can
// compute its tree hashes any more. The first write after it stops the store with the reason
// (audit.ErrTampered behind the refusal, in Err), and later writes are refused at once, rather
// than each failing with an internal error of its own.
func TestDeletedHashesStopWrites(t *testing.T) {
	o := newStore(t, 10)
	db := mustOpen(t, o)
	defer db.Close()
	raw, err := sql.Open("sqlite3", o.Path)
	if err != nil {
		t.Fatal(err)
	}
	// Every stored hash of records 0..7: the next tree hash needs the one of their subtree.
	if _, err := raw.Exec(`DELETE FROM audit_hashes WHERE idx < ?`, tlog.StoredHashIndex(0, 8)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	l := testLog(t)
	err = put(t, db, l, 10)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("append over a log with a deleted hash: %v, want the store to stop (ErrUnavailable)", err)
	}
	if !errors.Is(db.Err(), audit.ErrTampered) || !strings.Contains(db.Err().Error(), "missing") {
		t.Errorf("Err = %v, want the missing hash named", db.Err())
	}
	if err := put(t, db, l, 11); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("second write: %v", err)
	}
	var found bool
	db.View(context.Background(), func(tx store.Tx) error {
		_, err := tx.Principal(context.Background(), "p-10")
		found = err == nil
		return nil
	})
	if found {
		t.Error("the refused change was written")
	}
}

// putAsync is put through UpdateAsync.
func putAsync(t testing.TB, db *DB, l *audit.Log, i int) (func() error, error) {
	t.Helper()
	ctx := context.Background()
	return db.UpdateAsync(ctx, func(tx store.Tx) error {
		id := fmt.Sprintf("p-%d", i)
		if err := tx.PutPrincipal(ctx, store.Principal{ID: id, Name: id, Role: "reviewer", TokenHash: []byte(id), Created: time.Unix(int64(i), 0)}); err != nil {
			return err
		}
		_, err := l.Append(ctx, tx, audit.Entry{Time: time.Unix(int64(i), 0), Actor: "test", Role: "system", Action: "principal.create", Object: "principal/" + id})
		return err
	})
}

// TestUpdateAsync commits without waiting for the disk: the change is visible at once and
// survives a kill -9 of the process, the audit hook does not run for it, the writer is back
// at synchronous=FULL for the next Update, and a rolled-back change leaves nothing.
func TestUpdateAsync(t *testing.T) {
	ctx := context.Background()
	o := newStore(t, 2)
	db := mustOpen(t, o)
	calls := 0
	db.AfterAuditCommit(func(context.Context) { calls++ })
	flush, err := putAsync(t, db, testLog(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Errorf("the audit hook ran %d times for UpdateAsync", calls)
	}
	var sync int
	if err := db.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Errorf("writer synchronous = %d (%v) after UpdateAsync, want 2 (FULL)", sync, err)
	}
	if err := flush(); err != nil {
		t.Errorf("flush: %v", err)
	}
	if err := flush(); err != nil {
		t.Errorf("second flush: %v", err)
	}
	if _, err := db.UpdateAsync(ctx, func(tx store.Tx) error {
		tx.PutPrincipal(ctx, store.Principal{ID: "p-x", Name: "p-x", Role: "reviewer", TokenHash: []byte("x"), Created: time.Unix(9, 0)})
		return errors.New("rolled back")
	}); err == nil || err.Error() != "rolled back" {
		t.Errorf("UpdateAsync of a failing change: %v", err)
	}
	if err := put(t, db, testLog(t), 3); err != nil || calls != 1 {
		t.Errorf("Update after UpdateAsync: %v, %d hook calls", err, calls)
	}
	db.Close()
	// Not flushed, then killed: the change is in the write-ahead log.
	crashAsync(t, o, 4)
	db = mustOpen(t, o)
	defer db.Close()
	db.View(ctx, func(tx store.Tx) error {
		for _, id := range []string{"p-2", "p-3", "p-4"} {
			if _, err := tx.Principal(ctx, id); err != nil {
				t.Errorf("%s after the crash: %v", id, err)
			}
		}
		if _, err := tx.Principal(ctx, "p-x"); err == nil {
			t.Error("the rolled-back change was stored")
		}
		return nil
	})
	if rep, err := verify(t, db); err != nil || rep.Size != 5 {
		t.Errorf("verify after the crash: %v, %+v", err, rep)
	}
}

// crashAsync runs a child that commits entry i with UpdateAsync, never flushes, and dies by
// SIGKILL.
func crashAsync(t *testing.T, o Options, i int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashAsyncChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VEIL_CRASH_STORE="+o.Path, fmt.Sprintf("VEIL_CRASH_RANGE=%d", i))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crash child: %v\n%s", err, out)
	}
}

// TestCrashAsyncChild is the child of crashAsync.
func TestCrashAsyncChild(t *testing.T) {
	path := os.Getenv("VEIL_CRASH_STORE")
	if path == "" {
		t.Skip("the child process of crashAsync()")
	}
	var i int
	fmt.Sscanf(os.Getenv("VEIL_CRASH_RANGE"), "%d", &i)
	db := mustOpen(t, Options{Path: path})
	if _, err := putAsync(t, db, testLog(t), i); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// TestUpdateAsyncFlushFailure fails every fsync after an UpdateAsync (a seccomp filter in a
// child process): the commit answers, its flush reports the storage failure, and the store
// then refuses writes as after a failed commit.
func TestUpdateAsyncFlushFailure(t *testing.T) {
	if fault.InChild(t.Name()) {
		o := Options{Path: os.Getenv("VEIL_FAULT_STORE")}
		db := mustOpen(t, o)
		// The first write after a checkpoint starts the log again, which SQLite syncs even
		// at synchronous=NORMAL: one synchronous commit first.
		if err := put(t, db, testLog(t), 5); err != nil {
			t.Fatal(err)
		}
		if err := fault.Fail(syscall.EIO, -1, fault.Fsync); err != nil {
			t.Fatal(err)
		}
		flush, err := putAsync(t, db, testLog(t), 6)
		if err != nil {
			t.Fatalf("UpdateAsync on a disk whose fsync fails: %v (it does not fsync)", err)
		}
		err = flush()
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "storage failure") {
			t.Fatalf("flush on a failing disk: %v", err)
		}
		if db.Err() == nil {
			t.Fatal("Err is nil after a failed flush")
		}
		if err := put(t, db, testLog(t), 7); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("write after a failed flush: %v", err)
		}
		fmt.Println("CHILD DONE:", err)
		return
	}
	o := newStore(t, 5)
	out := fault.RunChild(t, "VEIL_FAULT_STORE="+o.Path)
	if !strings.Contains(out, "CHILD DONE") {
		t.Fatalf("child output:\n%s", out)
	}
}

// TestSignsOnlyWhatIsOnDisk: the audit signer's view of the log (store.AuditLog) never
// shows it a record committed without waiting for the disk (UpdateAsync, a job's start)
// before that record is on disk: a checkpoint it signed, durable in its state file, over a
// record that a machine crash then took from the write-ahead log would make the restart
// find the log shorter than what was signed, and refuse to start. Every fsync fails from
// the middle on (a seccomp filter in a child): a flush of a commit that a later flush put
// on disk, and a view with nothing pending, need none and answer; a view that would hold
// an unflushed record ends before it, where an earlier view or the last synchronous commit
// left the log.
func TestSignsOnlyWhatIsOnDisk(t *testing.T) {
	if fault.InChild(t.Name()) {
		ctx := context.Background()
		db := mustOpen(t, Options{Path: os.Getenv("VEIL_FAULT_STORE")})
		if err := put(t, db, testLog(t), 5); err != nil { // synchronous: on disk
			t.Fatal(err)
		}
		view := func() (int64, error) {
			var n int64
			err := store.AuditLog(db).ViewLog(ctx, func(r audit.Reader) error {
				var err error
				n, err = r.Size(ctx)
				return err
			})
			return n, err
		}
		// Two unflushed commits; the second's flush puts both on disk.
		flush6, err := putAsync(t, db, testLog(t), 6)
		if err != nil {
			t.Fatal(err)
		}
		flush7, err := putAsync(t, db, testLog(t), 7)
		if err != nil {
			t.Fatal(err)
		}
		if err := flush7(); err != nil {
			t.Fatal(err)
		}
		if err := fault.Fail(syscall.EIO, -1, fault.Fsync); err != nil {
			t.Fatal(err)
		}
		if err := flush6(); err != nil {
			t.Fatalf("the flush of a commit a later flush put on disk: %v (want no fsync)", err)
		}
		if n, err := view(); err != nil || n != 8 {
			t.Fatalf("the signer's view with every record on disk: %d records, %v (want 8, no fsync needed)", n, err)
		}
		if _, err := putAsync(t, db, testLog(t), 8); err != nil {
			t.Fatal(err)
		}
		// Record 8 is not on disk: the view ends where the last view left the log (past
		// the last synchronous commit, record 5), all of it on disk, without an fsync.
		if n, err := view(); err != nil || n != 8 {
			t.Fatalf("the signer's view with record 8 not on disk: %d records, %v (want 8, the log as the last view showed it)", n, err)
		}
		fmt.Println("CHILD DONE")
		return
	}
	o := newStore(t, 5)
	out := fault.RunChild(t, "VEIL_FAULT_STORE="+o.Path)
	if !strings.Contains(out, "CHILD DONE") {
		t.Fatalf("child output:\n%s", out)
	}
}

// TestFlushReachesCurrentWAL closes every connection of the store's pools between a commit
// and its flush, and lets a connection of another program (read-write, without
// SQLITE_FCNTL_PERSIST_WAL, as the sqlite3 shell opens) be the last to close: SQLite would
// then checkpoint and delete the write-ahead log, the next commit would go to a new one, and
// a descriptor kept from the first flush would fsync a deleted file. The flush must reach
// the log that holds the commit: the store keeps it from being deleted, and no descriptor of
// this process is left on a deleted log.
func TestFlushReachesCurrentWAL(t *testing.T) {
	ctx := context.Background()
	o := newStore(t, 2)
	db := mustOpen(t, o)
	defer db.Close()
	l := testLog(t)
	flush, err := putAsync(t, db, l, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	flush, err = putAsync(t, db, l, 3)
	if err != nil {
		t.Fatal(err)
	}
	db.w.SetMaxIdleConns(0)
	db.r.SetMaxIdleConns(0)
	if n := db.w.Stats().OpenConnections + db.r.Stats().Idle; n != 0 {
		t.Fatalf("%d connections still open in the pools", n)
	}
	other, err := sql.Open("sqlite3", "file:"+o.Path)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := other.QueryRowContext(ctx, `SELECT count(*) FROM principals`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("another program reads %d principals (%v), want 4", n, err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	db.w.SetMaxIdleConns(2)
	db.r.SetMaxIdleConns(2)
	if _, err := os.Stat(o.Path + "-wal"); err != nil {
		t.Errorf("the write-ahead log after another program closed the store: %v", err)
	}
	if _, err := putAsync(t, db, l, 4); err != nil {
		t.Fatal(err)
	}
	if err := flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if to, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(to, o.Path+"-wal") && to != o.Path+"-wal" {
			t.Errorf("descriptor %s is on %s: the flush fsyncs a log that no longer holds the commits", fd.Name(), to)
		}
	}
	if err := db.View(ctx, func(tx store.Tx) error {
		_, err := tx.Principal(ctx, "p-4")
		return err
	}); err != nil {
		t.Errorf("the last commit: %v", err)
	}
}

// TestFlushRemovedWAL removes the write-ahead log while the store is open (as an operator
// by mistake): SQLite goes on writing to the removed file, which no restart would read, so
// the flush latches the failure instead of fsyncing whatever is at the path now.
func TestFlushRemovedWAL(t *testing.T) {
	o := newStore(t, 2)
	db := mustOpen(t, o)
	defer db.Close()
	l := testLog(t)
	flush, err := putAsync(t, db, l, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(o.Path + "-wal"); err != nil {
		t.Fatal(err)
	}
	flush, err = putAsync(t, db, l, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := flush(); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "write-ahead log") {
		t.Fatalf("flush after the log was removed: %v", err)
	}
	if err := put(t, db, l, 4); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("write after the log was removed: %v", err)
	}
}

// TestPanicInTransaction panics inside a write transaction of Update and of UpdateAsync (a
// bug in the caller, recovered by it, as net/http recovers a handler): the transaction is
// rolled back and the one writer connection is free again at synchronous=FULL, so the next
// write neither waits forever for it nor commits without fsync.
func TestPanicInTransaction(t *testing.T) {
	ctx := context.Background()
	o := newStore(t, 2)
	db := mustOpen(t, o)
	defer db.Close()
	updates := map[string]func(fn func(store.Tx) error){
		"Update":      func(fn func(store.Tx) error) { db.Update(ctx, fn) },
		"UpdateAsync": func(fn func(store.Tx) error) { db.UpdateAsync(ctx, fn) },
	}
	for _, name := range []string{"Update", "UpdateAsync"} {
		id := "p-panic-" + name
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("%s did not pass the panic on", name)
				}
			}()
			updates[name](func(tx store.Tx) error {
				tx.PutPrincipal(ctx, store.Principal{ID: id, Name: id, Role: "reviewer", TokenHash: []byte(id), Created: time.Unix(9, 0)})
				panic("a bug")
			})
		}()
		if n := db.w.Stats().InUse; n != 0 {
			t.Fatalf("after a panic in %s the writer connection is still in use (%d): every later write would wait for it", name, n)
		}
		var sync int
		if err := db.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
			t.Errorf("writer synchronous = %d (%v) after a panic in %s, want 2 (FULL)", sync, err, name)
		}
		if err := db.View(ctx, func(tx store.Tx) error { _, err := tx.Principal(ctx, id); return err }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the change of the panicking %s: %v, want it rolled back", name, err)
		}
	}
	if err := put(t, db, testLog(t), 2); err != nil {
		t.Errorf("write after the panics: %v", err)
	}
}

// TestAfterCommit: what a transaction registers with Tx.AfterCommit runs once it has
// committed (Update: on disk), before the audit hook signs its records, and not at all when
// it is rolled back.
func TestAfterCommit(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t, newStore(t, 1))
	defer db.Close()
	var order []string
	db.AfterAuditCommit(func(context.Context) { order = append(order, "signed") })
	l := testLog(t)
	err := db.Update(ctx, func(tx store.Tx) error {
		tx.AfterCommit(func() {
			var n int
			// A new read sees the change: it committed.
			if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM principals WHERE id = 'p-a'`).Scan(&n); err != nil || n != 1 {
				t.Errorf("after commit, the change is not visible: %d, %v", n, err)
			}
			order = append(order, "committed")
		})
		if err := tx.PutPrincipal(ctx, store.Principal{ID: "p-a", Name: "a", Role: "reviewer", TokenHash: []byte("a"), Created: time.Unix(1, 0)}); err != nil {
			return err
		}
		_, err := l.Append(ctx, tx, audit.Entry{Time: time.Unix(1, 0), Actor: "test", Action: "principal.create", Object: "principal/p-a"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, ",") != "committed,signed" {
		t.Errorf("order %v, want committed, then signed", order)
	}
	ran := false
	for _, update := range []func(func(store.Tx) error) error{
		func(fn func(store.Tx) error) error { return db.Update(ctx, fn) },
		func(fn func(store.Tx) error) error { _, err := db.UpdateAsync(ctx, fn); return err },
	} {
		update(func(tx store.Tx) error {
			tx.AfterCommit(func() { ran = true })
			return errors.New("rolled back")
		})
	}
	if ran {
		t.Error("AfterCommit ran for a transaction that was rolled back")
	}
}

// TestSignerViewNeverShrinks: the signer's view of the log never ends before a view it was
// shown earlier. One shown with every record on disk may end past the last synchronous
// commit (a job's start, flushed); a later view that ends early because of a record not yet
// on disk must not end before it, or the signer would take the log for truncated and stop.
func TestSignerViewNeverShrinks(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t, newStore(t, 1))
	defer db.Close()
	l := testLog(t)
	view := func() int64 {
		t.Helper()
		var n int64
		if err := store.AuditLog(db).ViewLog(ctx, func(r audit.Reader) error {
			var err error
			n, err = r.Size(ctx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := put(t, db, l, 1); err != nil { // synchronous: the log of 2 on disk
		t.Fatal(err)
	}
	flush, err := putAsync(t, db, l, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if n := view(); n != 3 {
		t.Fatalf("the view with every record on disk shows %d records, want 3", n)
	}
	if _, err := putAsync(t, db, l, 3); err != nil { // not flushed
		t.Fatal(err)
	}
	if n := view(); n != 3 {
		t.Errorf("with record 3 not on disk the view shows %d records, want 3 (what was shown before, all on disk)", n)
	}
}
