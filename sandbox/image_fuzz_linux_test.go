package sandbox

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
)

// tarOf builds a tarball of headers (and the data of regular files).
func tarOf(f *testing.F, gz bool, hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	if !gz {
		return buf.Bytes()
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(buf.Bytes())
	zw.Close()
	return z.Bytes()
}

// FuzzImportImage: an operator's image tarball is untrusted input. Whatever it holds, the
// import never panics, never writes outside its destination, leaves nothing behind when it
// refuses, and what it accepts it imports the same way twice (the same digest).
func FuzzImportImage(f *testing.F) {
	reg := func(name string, n int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o644, Size: n, Typeflag: tar.TypeReg}
	}
	dir := func(name string) *tar.Header { return &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir} }
	f.Add(tarOf(f, false, dir("etc/"), reg("etc/os-release", 10)))
	f.Add(tarOf(f, true, dir("bin/"), reg("bin/sh", 100), &tar.Header{Name: "bin/ln", Linkname: "bin/sh", Typeflag: tar.TypeLink}))
	f.Add(tarOf(f, false, &tar.Header{Name: "lib", Linkname: "/usr/lib", Typeflag: tar.TypeSymlink}, reg("lib/x", 1)))
	f.Add(tarOf(f, false, reg("../escape", 1)))
	f.Add(tarOf(f, false, &tar.Header{Name: "up", Linkname: "..", Typeflag: tar.TypeSymlink}, reg("up/escape", 1)))
	f.Add(tarOf(f, false, reg("a", 1), reg("a", 2), dir("a/")))
	f.Add(tarOf(f, false, &tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	defer func(n int, b int64) { imageMaxEntries, imageMaxBytes = n, b }(imageMaxEntries, imageMaxBytes)
	imageMaxEntries, imageMaxBytes = 64, 1<<20 // small, so that bombs are found fast
	f.Fuzz(func(t *testing.T, data []byte) {
		work := t.TempDir()
		src := filepath.Join(work, "image.tar")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(work, "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		img, err := ImportImage(src, filepath.Join(out, "a"))
		ents, _ := os.ReadDir(out)
		if err != nil {
			if len(ents) != 0 {
				t.Fatalf("a refused import left %s behind", ents[0].Name())
			}
			return
		}
		if len(ents) != 1 || ents[0].Name() != "a" {
			t.Fatalf("the import wrote beside its destination: %v", ents)
		}
		if top, _ := os.ReadDir(work); len(top) != 2 {
			t.Fatalf("the import wrote outside its destination: %v", top)
		}
		if img.Bytes > imageMaxBytes || img.Files > imageMaxEntries {
			t.Fatalf("accepted an image over the limits: %+v", img)
		}
		again, err := ImportImage(src, filepath.Join(out, "b"))
		if err != nil || again.Digest != img.Digest {
			t.Fatalf("the same tarball imported twice: %s then %s (%v)", img.Digest, again.Digest, err)
		}
		forceRemoveAll(filepath.Join(out, "a"))
		forceRemoveAll(filepath.Join(out, "b"))
	})
}
