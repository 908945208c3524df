package durable

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/veil-dp/veil/internal/fault"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	for i, content := range []string{"first\n", "second, longer\n", ""} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("write %d: read %q, %v", i, got, err)
		}
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("write %d: mode %v, want 0600", i, fi.Mode().Perm())
		}
	}
	if err := WriteFile(p, []byte("public\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	// No temporary file is left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestAppendFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	for _, rec := range []string{"a\n", "b\n", "c\n"} {
		if err := AppendFile(p, []byte(rec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(p); string(got) != "a\nb\nc\n" {
		t.Errorf("log %q", got)
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}

// TestFsyncFailure makes fsync fail with EIO (a seccomp filter, in a child process, on a
// real file system) and checks that WriteFile reports it and leaves the old file as it was.
func TestFsyncFailure(t *testing.T) {
	if fault.InChild(t.Name()) {
		p := os.Getenv("DURABLE_TEST_PATH")
		if err := fault.Fail(syscall.EIO, -1, fault.Fsync); err != nil {
			t.Fatal(err)
		}
		err := WriteFile(p, []byte("new content\n"), 0o600)
		if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "fsync") {
			t.Fatalf("WriteFile with failing fsync: %v", err)
		}
		err = AppendFile(p+".log", []byte("x\n"), 0o600)
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("AppendFile with failing fsync: %v", err)
		}
		return
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "state")
	if err := WriteFile(p, []byte("old content\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fault.RunChild(t, "DURABLE_TEST_PATH="+p)
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, []byte("old content\n")) {
		t.Errorf("after a failed replace the file holds %q (%v), want the old content", got, err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
