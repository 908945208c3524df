package daemon_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// fileHolds reports whether the file at path contains needle, reading only its data (the
// holes of a sparse file, such as a sandbox's spill image, are skipped) in bounded chunks:
// the scans of the data directory must not read a prepared sandbox's spill image of
// gigabytes of holes into memory.
func fileHolds(t *testing.T, path string, needle []byte) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	const chunk = 1 << 20
	buf := make([]byte, chunk+len(needle))
	var off int64
	for {
		start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			return false // ENXIO: no data after off
		}
		end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		// Read [start, end) in chunks, each after the last len(needle)-1 bytes of the one
		// before (tail of them at buf's start).
		tail := 0
		for pos := start; pos < end; {
			n := int(min(int64(chunk), end-pos))
			m, err := f.ReadAt(buf[tail:tail+n], pos)
			if bytes.Contains(buf[:tail+m], needle) {
				return true
			}
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("%s: %v", path, err)
			}
			if m == 0 {
				break
			}
			pos += int64(m)
			k := min(len(needle)-1, tail+m)
			copy(buf, buf[tail+m-k:tail+m])
			tail = k
		}
		off = end
	}
}

// A needle across a chunk boundary and one in the data after a hole are found; a file of
// holes alone holds nothing.
func TestFileHolds(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(dir + "/sparse")
	if err != nil {
		t.Fatal(err)
	}
	needle := []byte("Nobody-Unmatched-7")
	if _, err := f.WriteAt(needle, (1<<20)-5); err != nil { // across the first chunk's end
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("after a hole: secret"), 512<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !fileHolds(t, dir+"/sparse", needle) || !fileHolds(t, dir+"/sparse", []byte("secret")) {
		t.Error("a needle in the data was not found")
	}
	if fileHolds(t, dir+"/sparse", []byte("absent")) {
		t.Error("found what is not there")
	}
	g, _ := os.Create(dir + "/holes")
	g.Truncate(1 << 30)
	g.Close()
	if fileHolds(t, dir+"/holes", []byte{0, 0, 0, 1}) {
		t.Error("a file of holes holds nothing")
	}
}
