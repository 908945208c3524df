package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/internal/testcert"
)

// tlsUploadEnv is a real daemon listening on loopback TCP with TLS (as a provider on
// another machine reaches it), a counting relay in front of it, and a provider's profile.
type tlsUploadEnv struct {
	*cliEnv
	relay  *countingRelay
	caFile string
	csv    string
	schema string
	size   int64
}

// startTLSUpload starts the daemon with edits, a relay, a provider and a visits CSV of rows
// rows with its confirmed schema; parts of uploads are 64 KiB here, so the file has many.
func startTLSUpload(t *testing.T, rows int, edits ...func(*daemon.Config)) *tlsUploadEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "veil test CA")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := ca.Server("veil", certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan []net.Addr, 1)
	e := startCLI(t, append([]func(*daemon.Config){func(c *daemon.Config) {
		c.Listen, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile, keyFile
		c.OnListening = func(a []net.Addr) { addrs <- a }
	}}, edits...)...)
	var tcp string
	for _, a := range <-addrs {
		if a.Network() == "tcp" {
			tcp = a.String()
		}
	}
	if tcp == "" {
		t.Fatal("the daemon listens on no TCP address")
	}
	relay := startRelay(t, tcp)
	old := uploadChunk
	uploadChunk = 64 << 10
	t.Cleanup(func() { uploadChunk = old })

	u := &tlsUploadEnv{cliEnv: e, relay: relay, caFile: ca.File}
	u.csv = writeVisitsRows(t, dir, rows)
	st, err := os.Stat(u.csv)
	if err != nil {
		t.Fatal(err)
	}
	u.size = st.Size()
	draft, err := runVeil(t, "dataset", "infer", "--provider", "health-commission", "--name", "visits", u.csv)
	if err != nil {
		t.Fatal(err)
	}
	u.schema = filepath.Join(dir, "visits.yaml")
	os.WriteFile(u.schema, []byte(strings.ReplaceAll(draft, "level: 0", "level: 2")), 0o644)
	out, err := runVeil(t, e.as("operator", "principal", "create", "--name", "health", "--role", "provider", "--tenant", "health-commission")...)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["health"] = field(t, out, "token")
	return u
}

// register runs veil dataset register --upload as the provider over TLS through the relay;
// stop, if set, is told each line the CLI writes on stderr and can cancel the run.
func (u *tlsUploadEnv) register(t *testing.T, ctx context.Context, stderr io.Writer) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := execute(ctx, []string{"--host", "https://" + u.relay.addr, "--ca-file", u.caFile, "--token", u.tokens["health"],
		"dataset", "register", "--upload", "--schema", u.schema, u.csv}, strings.NewReader(""), &out, stderr)
	return out.String(), err
}

// TestUploadOverTLS: a provider registers a CSV of many parts over TCP with TLS (no shared
// file system), with a progress line per tenth on a stderr that is not a terminal; every row
// arrives.
func TestUploadOverTLS(t *testing.T) {
	const rows = 20000
	u := startTLSUpload(t, rows)
	if u.size < 10*int64(uploadChunk) {
		t.Fatalf("the CSV is %d bytes: fewer than 10 parts", u.size)
	}
	var stderr bytes.Buffer
	out, err := u.register(t, context.Background(), &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if got := field(t, out, "rows"); got != strconv.Itoa(rows) {
		t.Fatalf("registered %s rows, want %d:\n%s", got, rows, out)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) < 10 || len(lines) > 11 || !strings.HasPrefix(lines[len(lines)-1], "visits.csv: 100% sent") || strings.Contains(stderr.String(), "\r") {
		t.Fatalf("progress on a stderr that is not a terminal:\n%s", stderr.String())
	}
	if sent := u.relay.sent.Load(); sent < u.size {
		t.Fatalf("%d bytes went to the daemon, fewer than the file's %d", sent, u.size)
	}
	out, err = runVeil(t, u.as("health", "dataset", "show", "visits")...)
	if err != nil || !strings.Contains(out, strconv.Itoa(rows)+" rows") {
		t.Fatalf("show: %v\n%s", err, out)
	}
}

// TestUploadResumesAcrossRuns: a register --upload interrupted after its first part, run
// again, goes on from the offset the daemon holds (it sends less than the file) and
// registers every row; the state file is gone afterwards.
func TestUploadResumesAcrossRuns(t *testing.T) {
	const rows = 20000
	u := startTLSUpload(t, rows)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first bytes.Buffer
	_, err := u.register(t, ctx, writerFunc(func(p []byte) (int, error) {
		first.Write(p)
		if bytes.Contains(p, []byte("% sent")) {
			cancel() // as Ctrl-C after the first part
		}
		return len(p), nil
	}))
	if err == nil || !strings.Contains(err.Error(), "run the same command again") {
		t.Fatalf("the interrupted run: %v\n%s", err, first.String())
	}
	if sent := u.relay.sent.Load(); sent >= u.size {
		t.Fatalf("the interrupted run sent %d bytes of %d", sent, u.size)
	}
	states, _ := filepath.Glob(filepath.Join(u.dir, "cache", "veil", "uploads", "*.json"))
	if len(states) != 1 {
		t.Fatalf("state files after the interruption: %v", states)
	}

	u.relay.sent.Store(0)
	var second bytes.Buffer
	out, err := u.register(t, context.Background(), &second)
	if err != nil {
		t.Fatalf("%v\n%s", err, second.String())
	}
	if !strings.Contains(second.String(), "visits.csv: resuming upload u-") {
		t.Fatalf("the second run did not resume:\n%s", second.String())
	}
	if sent := u.relay.sent.Load(); sent >= u.size {
		t.Fatalf("the second run sent %d bytes, the file is %d: it did not resume", sent, u.size)
	}
	if got := field(t, out, "rows"); got != strconv.Itoa(rows) {
		t.Fatalf("registered %s rows, want %d:\n%s", got, rows, out)
	}
	if states, _ := filepath.Glob(filepath.Join(u.dir, "cache", "veil", "uploads", "*.json")); len(states) != 0 {
		t.Fatalf("state files after registration: %v", states)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// countingRelay forwards loopback TCP connections to a daemon and counts the bytes clients
// send (TLS records: the file's bytes and a little more).
type countingRelay struct {
	addr string
	sent atomic.Int64
}

func startRelay(t *testing.T, to string) *countingRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &countingRelay{addr: l.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, d)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(d, countingReader{c, &r.sent})
				d.Close()
			}()
			go func() {
				defer wg.Done()
				io.Copy(c, d)
				c.Close()
			}()
		}
	}()
	return r
}

// countingReader adds what it reads to n as it goes.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// TestVendorFilesThroughUploads: veil job submit --model/--public and veil fusion upload send
// the vendor's files in resumable parts (a progress line each on a stderr that is not a
// terminal) and name the uploads; the daemon then judges the files as it would a body (here
// a blob that is no bundle, and a table whose match column identifies no one, are refused).
func TestVendorFilesThroughUploads(t *testing.T) {
	e, grant := grantEnv(t)
	dir := t.TempDir()
	bundle, model := filepath.Join(dir, "public.bundle"), filepath.Join(dir, "model.enc")
	os.WriteFile(bundle, bytes.Repeat([]byte("no bundle "), 500), 0o644)
	os.WriteFile(model, bytes.Repeat([]byte("no model "), 500), 0o644)
	_, stderr, err := runVeilIO(t, "", e.as("acme", "job", "submit", "--grant", grant, "--model", model, "--public", bundle)...)
	if err == nil || !strings.Contains(err.Error(), "upload "+bundle) || !strings.Contains(stderr, "public.bundle: 100% sent") {
		t.Fatalf("he blob through an upload: %v\n%s", err, stderr)
	}
	table := filepath.Join(dir, "customers.csv")
	var b strings.Builder
	b.WriteString("district,spend\n")
	for i := 0; i < 50; i++ {
		b.WriteString("d" + strconv.Itoa(i%3) + "," + strconv.Itoa(i) + "\n")
	}
	os.WriteFile(table, []byte(b.String()), 0o644)
	_, stderr, err = runVeilIO(t, "", e.as("acme", "fusion", "upload", "--grant", grant, "--name", "customers", "--key", "district", "--match", "residents.district", table)...)
	if err == nil || !strings.Contains(stderr, "customers.csv: 100% sent") || strings.Contains(err.Error(), "upload") && strings.Contains(err.Error(), "not found") {
		t.Fatalf("fusion table through an upload: %v\n%s", err, stderr)
	}
	t.Logf("fusion refused as expected: %v", err)
}

// TestUploadLarge is the manual large-file run of the README ("To try it with 1 GB"): with
// VEIL_UPLOAD_BYTES set (for example 1000000000), a visits CSV of about that size goes from
// the CLI to a daemon over loopback TCP with TLS in the CLI's own 8 MiB parts, with a
// progress line per tenth, and registers every row. Without the variable it skips: it
// writes and registers the whole file, which takes minutes.
//
//	VEIL_UPLOAD_BYTES=1000000000 go test -tags duckdb_arrow,seccomp -count=1 -run TestUploadLarge -timeout 60m -v ./cmd/veil
func TestUploadLarge(t *testing.T) {
	want, _ := strconv.ParseInt(os.Getenv("VEIL_UPLOAD_BYTES"), 10, 64)
	if want <= 0 {
		t.Skip("set VEIL_UPLOAD_BYTES (for example 1000000000) to upload a file of that size over TLS")
	}
	rows := int(want / 69) // a visits row is about 69 bytes
	u := startTLSUpload(t, rows)
	uploadChunk = client.UploadChunk
	t.Logf("the CSV: %d bytes, %d rows, parts of %d bytes", u.size, rows, uploadChunk)
	var stderr bytes.Buffer
	out, err := u.register(t, context.Background(), io.MultiWriter(&stderr, writerFunc(func(p []byte) (int, error) {
		t.Logf("%s", bytes.TrimSpace(p))
		return len(p), nil
	})))
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if got := field(t, out, "rows"); got != strconv.Itoa(rows) {
		t.Fatalf("registered %s rows, want %d:\n%s", got, rows, out)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) < 10 || !strings.HasPrefix(lines[len(lines)-1], "visits.csv: 100% sent") {
		t.Fatalf("progress:\n%s", stderr.String())
	}
	if sent := u.relay.sent.Load(); sent < u.size {
		t.Fatalf("%d bytes went to the daemon, fewer than the file's %d", sent, u.size)
	}
}
