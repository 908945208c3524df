package daemon_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
	"github.com/veil-dp/veil/sandbox"
)

// TestMain lets the test binary be the runner (and a container's init), as the veil binary
// is in production.
func TestMain(m *testing.M) {
	sandbox.Init()
	if len(os.Args) > 1 && os.Args[1] == "runner" {
		result := os.NewFile(3, "result")
		if err := runner.Main(context.Background(), os.Stdin, result, engine.Preset{}); err != nil {
			fmt.Fprintln(os.Stderr, "runner:", err)
			os.Exit(runner.ExitCode(err))
		}
		result.Close()
		os.Exit(0)
	}
	if len(os.Args) > 2 && os.Args[1] == "serve-child" {
		serveChild(os.Args[2])
		return
	}
	os.Exit(m.Run())
}

// isolation picks real containers when running as root (as CI does: a failure to create
// them is then a test failure, not a silent fallback) and the development child process
// otherwise, saying so.
func isolation(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Log("not root: running jobs as plain child processes (isolation=process); the sandbox itself is tested as root")
		return "process"
	}
	return "container"
}

type env struct {
	t      *testing.T
	cfg    daemon.Config
	srv    *daemon.Server
	host   string
	cancel context.CancelFunc
	done   chan error
	addrs  []net.Addr // what the daemon listens on (Config.OnListening)
	op     *client.Client
	log    lockedBuffer // everything the daemon logged
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// jobMemoryMB is the sandboxes' memory limit in these tests (race_test.go raises it).
var jobMemoryMB = 1024

// raceEnabled: this test binary is built with -race (race_test.go).
var raceEnabled bool

func start(t *testing.T, edit func(*daemon.Config)) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "veil-e2e-") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The container's unprivileged root must be able to traverse to the mounted dataset files.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Defaults(dir)
	cfg.Isolation = isolation(t)
	cfg.Binary, _ = os.Executable()
	cfg.JobMemoryMB = jobMemoryMB
	// Tests follow jobs at once; sidechan_test.go turns the release quantum on.
	cfg.ExactReleaseTimingForTests = true
	if edit != nil {
		edit(&cfg)
	}
	ctx := context.Background()
	tok, err := daemon.Init(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cfg: cfg, host: "unix://" + cfg.Socket}
	t.Cleanup(func() {
		// "internal error; the operator can find details in the daemon log": here it is.
		if t.Failed() && !testing.Verbose() {
			l := e.log.String()
			t.Logf("daemon log (last 32 KiB):\n%s", l[max(0, len(l)-32<<10):])
		}
	})
	e.boot()
	e.op = e.client(tok)
	return e
}

func (e *env) boot() {
	e.t.Helper()
	var out io.Writer = &e.log
	if testing.Verbose() {
		out = io.MultiWriter(&e.log, os.Stderr)
	}
	logger := slog.New(slog.NewTextHandler(out, nil))
	cfg := e.cfg
	listening := make(chan []net.Addr, 1)
	cfg.OnListening = func(a []net.Addr) { listening <- a }
	srv, err := daemon.New(context.Background(), cfg, logger)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.srv, e.cancel, e.done = srv, cancel, make(chan error, 1)
	go func() { e.done <- srv.Serve(ctx) }()
	select {
	case e.addrs = <-listening:
	case err := <-e.done:
		cancel()
		e.cancel = nil
		srv.Close()
		e.t.Fatalf("serve: %v", err)
	}
	// Listening means answering: the socket takes a request at once.
	if c, err := net.Dial("unix", e.cfg.Socket); err != nil {
		e.t.Fatalf("OnListening was called, but the socket refuses: %v", err)
	} else {
		c.Close()
	}
	e.t.Cleanup(e.stop)
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("serve: %v", err)
	}
	e.srv.Close()
	e.cancel = nil
}

// client is a client for tok whose every request and answer is checked against the API's
// description (openapi.json).
func (e *env) client(tok string) *client.Client {
	c, err := client.New(e.host, tok, client.WithTransport(checkAPI(e.t)))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) principal(name, role, tenant string) *client.Client {
	e.t.Helper()
	p, err := e.op.CreatePrincipal(context.Background(), api.CreatePrincipal{Name: name, Role: role, Tenant: tenant})
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return e.client(p.Token)
}

const residentsSchema = `
name: residents
title: Registered residents
provider: civil-affairs
unit: person
max_rows_per_unit: 1
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: resident_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: name, type: VARCHAR, level: 3, kind: name, mask: name}
  - {name: district, type: VARCHAR, level: 1, kind: none, domain: [north, south, tiny]}
  - {name: age, type: BIGINT, level: 2, kind: none, bounds: [0, 110], mask: "band:5"}
  - {name: income, type: BIGINT, level: 2, kind: none, bounds: [0, 100000]}
  - {name: religion, type: VARCHAR, level: 4, kind: none}
`

// writeResidents writes a CSV: 60 residents in north, 37 in south, 3 in tiny.
func writeResidents(t *testing.T, dir string) string {
	var b strings.Builder
	b.WriteString("resident_id,name,district,age,income,religion\n")
	for i := 0; i < 100; i++ {
		d := "north"
		switch {
		case i >= 97:
			d = "tiny"
		case i >= 60:
			d = "south"
		}
		fmt.Fprintf(&b, "%d,Person%d,%s,%d,%d,r%d\n", 1000+i, i, d, 20+i%50, 1000*(i%40), i%3)
	}
	p := filepath.Join(dir, "residents.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// registerResidents has prov register the residents fixture (writeResidents).
func (e *env) registerResidents(prov *client.Client) {
	e.t.Helper()
	if _, err := prov.RegisterDataset(context.Background(), api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(e.t, e.t.TempDir())}}); err != nil {
		e.t.Fatal(err)
	}
}

// grant applies for req as vendor and has each review stage approve it: the operator, auth
// (the authority) and prov (the provider); the grant's id, and the first error.
func (e *env) grant(vendor, auth, prov *client.Client, req api.ApplyGrant) (string, error) {
	ctx := context.Background()
	gr, err := vendor.ApplyGrant(ctx, req)
	if err != nil {
		return "", err
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			return gid, err
		}
	}
	return gid, nil
}

// mustGrant is grant, failing the test on an error.
func (e *env) mustGrant(vendor, auth, prov *client.Client, req api.ApplyGrant) string {
	e.t.Helper()
	gid, err := e.grant(vendor, auth, prov, req)
	if err != nil {
		e.t.Fatal(err)
	}
	return gid
}

// dpGrant is an approved dp grant of vendor on residents' district, age and income.
func (e *env) dpGrant(vendor, auth, prov *client.Client, scenario string, eps, maxQuery float64) (string, error) {
	return e.grant(vendor, auth, prov, api.ApplyGrant{Scenario: scenario, Purpose: "plan services", Modes: []string{"dp"}, Epsilon: eps, Delta: 1e-7,
		MaxQuery: maxQuery, ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}})
}

// grantFor registers the residents fixture if it is not yet and returns an approved
// threshold grant of vendor on it.
func (e *env) grantFor(vendor *client.Client) string {
	e.t.Helper()
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(e.t, e.t.TempDir())}}); err != nil && kindOf(err) != "conflict" {
		e.t.Fatal(err)
	}
	return e.grantWith(vendor, auth, prov)
}

var grantSeq atomic.Int64

// grantWith is an approved threshold grant of vendor on residents, a scenario of its own.
func (e *env) grantWith(vendor, auth, prov *client.Client) string {
	e.t.Helper()
	// A tenant holds one grant per scenario: each call applies for its own.
	return e.mustGrant(vendor, auth, prov, api.ApplyGrant{Scenario: fmt.Sprintf("district counts %d", grantSeq.Add(1)), Purpose: "plan services", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}})
}

func kindOf(err error) string {
	var ae *client.Error
	if errors.As(err, &ae) {
		return ae.Kind
	}
	return ""
}

// TestLifeOfAJob walks the whole path from the CLI's client: register, apply, review the
// grant, refuse bad queries, run, gate, review the output, export, verify, audit.
func TestLifeOfAJob(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	rival := e.principal("rival analyst", "vendor", "rival")
	rev1 := e.principal("reviewer one", "reviewer", "")
	aud := e.principal("inspector", "auditor", "")

	csv := writeResidents(t, t.TempDir())
	ds, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{csv}})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Rows != 100 || len(ds.Version) != 64 {
		t.Fatalf("registered %+v", ds)
	}
	// A vendor cannot register data: a clear refusal.
	if _, err := acme.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{csv}}); kindOf(err) != "forbidden" {
		t.Fatalf("vendor registers: %v", err)
	}

	app := api.ApplyGrant{Scenario: "district income report", Purpose: "plan services", Modes: []string{"threshold"}, K: 5, RoundTo: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}}
	bad := app
	bad.Datasets = []api.DatasetAccess{{Name: "residents", Columns: []string{"religion"}}}
	if _, err := acme.ApplyGrant(ctx, bad); kindOf(err) != "forbidden" || !strings.Contains(err.Error(), "level 4") {
		t.Fatalf("level-4 grant: %v", err)
	}
	gr, err := acme.ApplyGrant(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, step := range []struct {
		c    *client.Client
		name string
	}{{e.op, "operator"}, {auth, "authority"}, {prov, "provider"}} {
		if _, err := step.c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatalf("%s approves: %v", step.name, err)
		}
	}
	if gr, _ = acme.GetGrant(ctx, gid); gr["status"] != "active" {
		t.Fatalf("grant status %v", gr["status"])
	}

	// Another tenant learns nothing: the same answer as for a grant that does not exist.
	_, errOther := rival.GetGrant(ctx, gid)
	_, errNone := rival.GetGrant(ctx, "g-doesnotexist")
	if kindOf(errOther) != "not_found" || kindOf(errNone) != "not_found" {
		t.Fatalf("rival sees grant: %v / %v", errOther, errNone)
	}
	if _, err := rival.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district"}); kindOf(err) != "not_found" {
		t.Fatalf("rival submits under acme's grant: %v", err)
	}

	refused := []struct{ sql, want string }{
		{"SELECT district, SUM(religion) FROM residents GROUP BY district", "religion"},
		{"SELECT COUNT(*) FROM read_csv('/etc/passwd')", "read_csv"},
		{"SELECT COUNT(*) FROM '" + csv + "'", ""},
		{"SELECT district, COUNT(*) FROM residents GROUP BY district; SELECT 1", ""},
		{"COPY residents TO '/tmp/x.csv'", ""},
		{"ATTACH '/tmp/x.db'", ""},
		{"INSTALL httpfs", ""},
		{"SET threads=1", ""},
		{"PRAGMA version", ""},
		{"SELECT district, COUNT(*) FROM residents WHERE resident_id = 1001 GROUP BY district", "resident_id"},
		{"SELECT age FROM residents", ""},
	}
	for _, tc := range refused {
		_, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: tc.sql})
		if kindOf(err) != "invalid" || (tc.want != "" && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: err = %v, want a refusal naming %q", tc.sql, err, tc.want)
		}
	}
	if js, _ := acme.Jobs(ctx, "", ""); len(js) != 0 {
		t.Fatalf("refused queries left %d jobs", len(js))
	}

	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n, SUM(income) AS total FROM residents GROUP BY district ORDER BY district"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job %+v err %v", j, err)
	}
	if _, err := acme.Export(ctx, j.ID, "csv"); kindOf(err) != "conflict" {
		t.Fatalf("export before review: %v", err)
	}
	if _, err := rival.Job(ctx, j.ID); kindOf(err) != "not_found" {
		t.Fatalf("rival sees job: %v", err)
	}
	if _, err := acme.Review(ctx, j.ID); kindOf(err) != "forbidden" {
		t.Fatalf("vendor reviews: %v", err)
	}
	rv, err := rev1.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Mechanism.Suppressed != 1 || len(rv.Rows) != 2 {
		t.Fatalf("review: %+v rows %v", rv.Mechanism, rv.Rows)
	}
	for _, row := range rv.Rows {
		if row[0] == "tiny" {
			t.Fatalf("a group of 3 persons (< k=5) reached review: %v", rv.Rows)
		}
		if n := row[1].(float64); int64(n)%5 != 0 {
			t.Fatalf("count %v not rounded to 5", n)
		}
	}
	if _, err := rev1.Decide(ctx, j.ID, "approve", rv.Digest, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := rival.Export(ctx, j.ID, "csv"); kindOf(err) != "not_found" {
		t.Fatalf("rival exports: %v", err)
	}
	vkey, err := os.ReadFile(filepath.Join(e.cfg.DataDir, "platform.pub"))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"csv", "json", "parquet", "arrow"} {
		ex, err := acme.Export(ctx, j.ID, format)
		if err != nil {
			t.Fatalf("export %s: %v", format, err)
		}
		if _, err := client.VerifyExport(strings.TrimSpace(string(vkey)), ex.Data, ex.Certificate); err != nil {
			t.Fatalf("certificate of %s: %v", format, err)
		}
		flipped := bytes.Clone(ex.Data)
		flipped[len(flipped)/2] ^= 1
		if _, err := client.VerifyExport(strings.TrimSpace(string(vkey)), flipped, ex.Certificate); err == nil {
			t.Fatalf("%s: a changed byte still verifies", format)
		}
		if format == "csv" && (strings.Contains(string(ex.Data), "tiny") || !strings.Contains(string(ex.Data), "north")) {
			t.Fatalf("csv export: %s", ex.Data)
		}
	}

	if _, err := aud.VerifyAudit(ctx, strings.TrimSpace(string(vkey))); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if ok, msg, err := aud.ServerVerify(ctx); err != nil || !ok {
		t.Fatalf("server verify: %v %s", err, msg)
	}
	if _, err := acme.AuditRecords(ctx, 0, 10, false); kindOf(err) != "forbidden" {
		t.Fatalf("vendor reads audit: %v", err)
	}
}

// TestAuditTamper changes, removes, reorders and truncates entries in the SQLite file and
// checks that verification fails and says where.
func TestAuditTamper(t *testing.T) {
	cases := []struct {
		name string
		sql  []string
		want string
	}{
		{"change", []string{"UPDATE audit_records SET data = replace(data, 'operator', 'operatoR') WHERE idx = 3"}, "3"},
		{"remove", []string{"DELETE FROM audit_records WHERE idx = 4"}, "4"},
		{"reorder", []string{"UPDATE audit_records SET idx = -1 WHERE idx = 2", "UPDATE audit_records SET idx = 2 WHERE idx = 5", "UPDATE audit_records SET idx = 5 WHERE idx = -1"}, "2"},
		{"truncate", []string{"DELETE FROM audit_records WHERE idx >= 6"}, "6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, func(c *daemon.Config) { c.Isolation = "process" })
			ctx := context.Background()
			for i := range 8 {
				e.principal(fmt.Sprintf("reviewer %d", i), "reviewer", "")
			}
			aud := e.principal("inspector", "auditor", "")
			vkey, _ := os.ReadFile(filepath.Join(e.cfg.DataDir, "platform.pub"))
			if _, err := aud.VerifyAudit(ctx, strings.TrimSpace(string(vkey))); err != nil {
				t.Fatalf("untampered log: %v", err)
			}
			db, err := sql.Open("sqlite3", filepath.Join(e.cfg.DataDir, "veil.db"))
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.sql {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			_, err = aud.VerifyAudit(ctx, strings.TrimSpace(string(vkey)))
			if err == nil {
				t.Fatal("tampered log verifies")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say where (entry %s)", err, tc.want)
			}
		})
	}
}

// TestProcessIsolationRefusesRealData checks the development escape hatch: a daemon that runs
// jobs without a sandbox refuses data not declared synthetic, before anything is stored.
func TestProcessIsolationRefusesRealData(t *testing.T) {
	e := start(t, func(c *daemon.Config) { c.Isolation = "process" })
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	real := strings.Replace(residentsSchema, "synthetic: true\n", "", 1)
	if real == residentsSchema {
		t.Fatal("schema fixture changed: no synthetic flag to remove")
	}
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: real, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "s", Purpose: "p", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err = acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district"})
	if kindOf(err) != "unavailable" || !strings.Contains(err.Error(), "without a sandbox") {
		t.Fatalf("job on real data without a sandbox: %v", err)
	}
	if js, _ := acme.Jobs(ctx, "", ""); len(js) != 0 {
		t.Fatalf("refused job stored: %v", js)
	}
}

// TestRowsPerUnitMeasured checks that a schema declaring fewer rows per person than the files
// hold is refused: the gate relies on that number.
func TestRowsPerUnitMeasured(t *testing.T) {
	e := start(t, nil)
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	csv := filepath.Join(t.TempDir(), "twice.csv")
	var b strings.Builder
	b.WriteString("resident_id,name,district,age,income,religion\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "%d,P%d,north,30,1000,r\n", 1000+i%10, i) // every resident twice
	}
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := prov.RegisterDataset(context.Background(), api.RegisterDataset{Schema: residentsSchema, Files: []string{csv}})
	if kindOf(err) != "invalid" || !strings.Contains(err.Error(), "at most 1 rows per person") {
		t.Fatalf("false rows-per-unit declaration: %v", err)
	}
	ds, err := e.op.Datasets(context.Background())
	if err != nil || len(ds) != 0 {
		t.Fatalf("refused dataset listed: %v %v", ds, err)
	}
}

// TestOverdueStageDefault lets every review stage run past its deadline: the operator's takes
// the built-in default (approve), the authority's the configured one (reject); the grant is
// rejected, and the audit log says these were default decisions.
func TestOverdueStageDefault(t *testing.T) {
	e := start(t, func(c *daemon.Config) {
		c.Review.Deadline = 300 * time.Millisecond
		c.Review.Defaults = map[policy.Role]policy.Decision{policy.Authority: policy.Reject}
	})
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	acme := e.principal("acme analyst", "vendor", "acme")
	aud := e.principal("inspector", "auditor", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "s", Purpose: "p", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	// Nobody reviews: the operator stage defaults to approve, then the authority's to reject.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if gr, err = acme.GetGrant(ctx, gid); err != nil {
			t.Fatal(err)
		}
		if gr["status"] != "pending" || time.Now().After(deadline) {
			break
		}
	}
	if gr["status"] != "rejected" {
		t.Fatalf("grant after overdue stages: %v", gr["status"])
	}
	recs, err := aud.AuditRecords(ctx, 0, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range recs.Records {
		if bytes.Contains(r, []byte("grant.review.default")) && bytes.Contains(r, []byte("reject")) {
			found = true
		}
	}
	if !found {
		t.Fatal("no grant.review.default entry with the reject decision in the audit log")
	}
}

// TestRunnerOutputWithheld makes a job fail inside the runner with an error that names what
// it read (here a damaged dataset file, overwritten with text after registration; a query
// that fails on a value no longer passes validation): neither the vendor's message nor the
// daemon's log may carry the runner's output.
func TestRunnerOutputWithheld(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	gid := e.grantFor(acme)
	// A first job makes the grant's projection, the copy the sandbox mounts.
	first, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.op, first.ID, "review")
	if n := damageDataset(t, e.cfg.DataDir, "residents"); n == 0 {
		t.Fatal("no projection of the dataset was found to damage")
	}
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"})
	if err != nil {
		t.Fatal(err)
	}
	got := waitStatus(t, acme, j.ID, "failed")
	for _, leak := range []string{"north", "south", "tiny"} {
		if strings.Contains(got.Message, leak) || strings.Contains(e.log.String(), leak) || strings.Contains(got.Message, "/") {
			t.Fatalf("a data value (%q) leaked: message %q, log:\n%s", leak, got.Message, e.log.String())
		}
	}
	if !strings.Contains(e.log.String(), "bytes withheld") {
		t.Fatalf("the log does not say the runner's output was withheld:\n%s", e.log.String())
	}
}

// damageDataset overwrites a dataset's registered files and its projections (what the
// sandboxes mount) with text, and returns how many projection files it damaged.
func damageDataset(t *testing.T, dataDir, name string) int {
	t.Helper()
	raw, _ := filepath.Glob(filepath.Join(dataDir, "datasets", name, "*", "*.parquet"))
	proj, _ := filepath.Glob(filepath.Join(dataDir, "projections", name, "*", "*.parquet"))
	if len(raw) == 0 {
		t.Fatal("no registered dataset file found")
	}
	for _, f := range append(raw, proj...) {
		os.Chmod(f, 0o644)
		if err := os.WriteFile(f, []byte(strings.Repeat("north south tiny\n", 64)), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return len(proj)
}
