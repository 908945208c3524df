package main

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/internal/testcert"
)

// serveConfig parses veil serve's flags and returns the daemon Config they make.
func serveConfig(t *testing.T, args ...string) (daemon.Config, error) {
	t.Helper()
	cmd, sf := serveCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return sf.config()
}

// TestServeFlagsReachConfig sets each of veil serve's flags to a value other than its
// default and checks that the daemon's Config changes: a flag that is parsed but not passed
// on is a setting an operator believes in and the daemon ignores.
func TestServeFlagsReachConfig(t *testing.T) {
	values := map[string]string{
		"data-dir": "/srv/veil", "socket": "/run/veil/api.sock", "listen": "127.0.0.1:8470",
		"workers": "7", "approvals": "2", "isolation": "process", "job-memory-mb": "333",
		"scratch-mb": "99", "job-threads": "3", "job-timeout": "17s", "job-pids": "77",
		"review-deadline": "5h", "overdue": "authority=reject", "log-runner-output": "true",
		"tls-cert": "/etc/veil/tls.crt", "tls-key": "/etc/veil/tls.key", "insecure-listen": "true",
		"metrics-listen": "127.0.0.1:9470", "min-free-mb": "7", "upload-ttl": "90m",
		"audit-key": "/etc/veil/platform.key", "audit-key-fd": "3", "audit-state": "/etc/veil/audit.state",
		"audit-archive": "/mnt/witness/veil", "audit-adopt": "true", "store-adopt": "true",
		"release-quantum": "30s", "sandbox-pool": "5", "job-spill-mb": "1234",

		"tenant-jobs": "9", "submit-rate": "0.5", "submit-burst": "4", "tenant-validations": "1",
	}
	notConfig := map[string]bool{"log-json": true} // how the log is written, not the daemon's config
	cmd, _ := serveCommand()
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := values[f.Name]; !ok && !notConfig[f.Name] {
			t.Errorf("serve flag --%s: give it a test value here", f.Name)
		}
	})
	base, err := serveConfig(t)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range values {
		got, err := serveConfig(t, "--"+name+"="+v)
		if err != nil {
			t.Fatalf("--%s=%s: %v", name, v, err)
		}
		if reflect.DeepEqual(got, base) {
			t.Errorf("--%s=%s does not change the daemon's config", name, v)
		}
	}
	if c, _ := serveConfig(t, "--data-dir", "/srv/veil"); c.DataDir != "/srv/veil" || c.Socket != "/srv/veil/veil.sock" {
		t.Errorf("--data-dir /srv/veil: data dir %q, socket %q", c.DataDir, c.Socket)
	}
	if _, err := serveConfig(t, "--overdue", "vendor=approve"); exitCode(err, true) != exitUsage {
		t.Errorf("--overdue vendor=approve: %v, want a usage error", err)
	}
	// The release quantum cannot be turned off, nor made so fine it tells run times.
	for _, q := range []string{"0", "500ms", "-5s", "2h"} {
		if _, err := serveConfig(t, "--release-quantum="+q); exitCode(err, true) != exitUsage || !strings.Contains(err.Error(), "release-quantum") {
			t.Errorf("--release-quantum=%s: %v, want a usage error naming the flag", q, err)
		}
	}
	if c, _ := serveConfig(t); c.ReleaseQuantum != 5*time.Second || c.ExactReleaseTimingForTests {
		t.Errorf("default release quantum %v (exact timing %v)", c.ReleaseQuantum, c.ExactReleaseTimingForTests)
	}
}

// TestServeNotify runs veil serve through the binary under a fake systemd: a datagram socket
// in NOTIFY_SOCKET. READY=1 must come only once the API answers, WATCHDOG=1 while it does,
// STOPPING=1 when SIGTERM starts the graceful shutdown; and the daemon must exit 0.
func TestServeNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon")
	}
	parent, err := os.MkdirTemp("", "veil-notify-") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o711)
	data := filepath.Join(parent, "data")
	if out, err := runVeil(t, "init", "--data-dir", data); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	notify := filepath.Join(parent, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	isolation := "container"
	if os.Geteuid() != 0 {
		isolation = "process"
	}
	cmd := veilBinary(t, "serve", "--data-dir", data, "--isolation", isolation)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notify, "WATCHDOG_USEC=200000")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	next := func(want string) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s from veil serve; its log:\n%s", want, logs.String())
		}
		return ""
	}
	m := next("READY=1")
	if !strings.HasPrefix(m, "READY=1\n") || !strings.Contains(m, "STATUS=serving on "+filepath.Join(data, "veil.sock")) {
		t.Fatalf("first notification %q, want READY=1 with a STATUS", m)
	}
	// Ready means the API answers now, not soon.
	c, err := client.New("unix://"+filepath.Join(data, "veil.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PlatformKey(context.Background()); err != nil {
		t.Fatalf("READY=1 was sent but the API does not answer: %v", err)
	}
	if m := next("WATCHDOG=1"); m != "WATCHDOG=1" {
		t.Fatalf("notification %q, want WATCHDOG=1 (WATCHDOG_USEC was set)", m)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for m = next("STOPPING=1"); m == "WATCHDOG=1"; m = next("STOPPING=1") {
	}
	if !strings.HasPrefix(m, "STOPPING=1") {
		t.Fatalf("notification %q after SIGTERM, want STOPPING=1", m)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("veil serve after SIGTERM: %v; its log:\n%s", err, logs.String())
	}
}

// TestNotifierHidesSocket checks that the notification socket is taken out of the
// environment, so that no process the daemon starts can speak for it to systemd.
func TestNotifierHidesSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "@veil-test")
	t.Setenv("WATCHDOG_USEC", "5000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := newNotifier()
	if !n.enabled() || n.watchdog != 5*time.Second {
		t.Errorf("notifier %+v", n)
	}
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("%s is still in the environment", v)
		}
	}
	// A watchdog meant for another process is not ours.
	t.Setenv("NOTIFY_SOCKET", "@veil-test")
	t.Setenv("WATCHDOG_USEC", "5000000")
	t.Setenv("WATCHDOG_PID", "1")
	if n := newNotifier(); n.watchdog != 0 {
		t.Errorf("watchdog for pid 1 taken: %+v", n)
	}
}

// syncBuffer is a log both the daemon's process and the test touch.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeTLSReloadOnHangup runs veil serve with TLS on loopback through the binary: the
// CLI reaches it with --ca-file, and after the certificate files are replaced a SIGHUP makes
// new connections get the new certificate.
func TestServeTLSReloadOnHangup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon")
	}
	parent, err := os.MkdirTemp("", "veil-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o711)
	data := filepath.Join(parent, "data")
	out, err := runVeil(t, "init", "--data-dir", data)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	token := lines[len(lines)-1]
	ca, err := testcert.NewCA(parent, "veil test CA")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(parent, "tls.crt"), filepath.Join(parent, "tls.key")
	first, err := ca.Server("veil one", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	isolation := "container"
	if os.Geteuid() != 0 {
		isolation = "process"
	}
	cmd := veilBinary(t, "serve", "--data-dir", data, "--isolation", isolation, "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	listening := regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+) tls=true`)
	var addr string
	for deadline := time.Now().Add(60 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("veil serve did not listen with TLS; its log:\n%s", logs.String())
	}
	if got, err := ca.Presented(addr); err != nil || !got.Equal(first) {
		t.Fatalf("presented %v (%v), want %s", got, err, first.Subject)
	}
	if out, err := runVeil(t, "--host", "https://"+addr, "--ca-file", ca.File, "--token", token, "whoami"); err != nil || !strings.Contains(out, "operator") {
		t.Fatalf("veil whoami over TLS with --ca-file: %v\n%s", err, out)
	}
	if _, err := runVeil(t, "--host", "https://"+addr, "--token", token, "whoami"); exitCode(err, true) != exitUnavailable {
		t.Errorf("veil whoami over TLS without the CA: %v, want exit %d (the certificate is not trusted)", err, exitUnavailable)
	}

	second, err := ca.Server("veil two", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var got *x509.Certificate
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, err = ca.Presented(addr); err == nil && got.Equal(second) {
			break
		}
	}
	if got == nil || !got.Equal(second) {
		t.Fatalf("after SIGHUP: presented %v (%v), want %s; log:\n%s", got, err, second.Subject, logs.String())
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("the reload is not in the log:\n%s", logs.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("veil serve after SIGTERM: %v; its log:\n%s", err, logs.String())
	}
}
