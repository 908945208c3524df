package sandbox

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// buildImgProg builds testdata/imgprog as a static binary.
func buildImgProg(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: the go command is needed to build testdata/imgprog")
	}
	out := filepath.Join(t.TempDir(), "prog")
	cmd := exec.Command(goBin, "build", "-o", out, "./testdata/imgprog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/imgprog: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if interp, _ := interpreter(f); interp != "" {
		t.Fatalf("testdata/imgprog is not static (interpreter %s)", interp)
	}
	return out
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// makeImageSrc lays out a small runtime image: the program at /bin/prog,
// /usr/bin -> ../bin, a top-level symlink /sbin -> bin, a top-level file, an
// /etc file, and entries named like what the sandbox owns (/tmp, /in),
// which a job must never see.
func makeImageSrc(t *testing.T, prog string) string {
	t.Helper()
	src := t.TempDir()
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "bin/prog"), b, 0o755)
	writeFile(t, filepath.Join(src, "bin/suid"), []byte("#!/bin/false\n"), 0o755|fs.ModeSetuid|fs.ModeSetgid)
	writeFile(t, filepath.Join(src, "etc/os-release"), []byte("NAME=veil-test\n"), 0o644)
	writeFile(t, filepath.Join(src, "VERSION"), []byte("1\n"), 0o644)
	writeFile(t, filepath.Join(src, "tmp/imagefile"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(src, "in/shadowed"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(src, "usr/lib/empty"), nil, 0o644)
	if err := os.Mkdir(filepath.Join(src, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "var/tmp"), 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(src, "var/tmp"), 0o777|fs.ModeSticky)
	for link, target := range map[string]string{
		"usr/bin":         "../bin",
		"sbin":            "bin",
		"etc/shadow-link": "/etc/shadow", // copied as a symlink, never followed
	} {
		if err := os.Symlink(target, filepath.Join(src, link)); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// tarDir writes the tree dir as a tarball (gzip-compressed if gz).
func tarDir(t *testing.T, dir, dst string, gz bool) {
	t.Helper()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr.Name = "./" + filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func writeTar(t *testing.T, path string, entries []tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// assertNoTmp checks that a failed or finished import left no dst.tmp-*.
func assertNoTmp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover %s", filepath.Join(dir, e.Name()))
		}
	}
}

func TestImportImage(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "bin/prog"), []byte("\x7fELF not really"), 0o755)
	writeFile(t, filepath.Join(src, "bin/suid"), []byte("x"), 0o755|fs.ModeSetuid|fs.ModeSetgid)
	writeFile(t, filepath.Join(src, "etc/os-release"), []byte("NAME=veil-test\n"), 0o644)
	writeFile(t, filepath.Join(src, "etc/secret"), []byte("s"), 0o600)
	if err := os.Mkdir(filepath.Join(src, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "var/tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "var/tmp"), 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../bin", filepath.Join(src, "var/bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	fromDir, err := ImportImage(src, filepath.Join(work, "from-dir"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fromDir.Digest, "sha256:") || len(fromDir.Digest) != len("sha256:")+64 {
		t.Fatalf("digest %q", fromDir.Digest)
	}
	if fromDir.Files != 4 || fromDir.Bytes != int64(len("\x7fELF not really")+1+len("NAME=veil-test\n")+1) {
		t.Errorf("files %d bytes %d", fromDir.Files, fromDir.Bytes)
	}
	for path, want := range map[string]fs.FileMode{
		"bin/prog": 0o755, "bin/suid": 0o755, "etc/os-release": 0o644, "etc/secret": 0o600,
		"var/tmp": fs.ModeDir | 0o777, "var/bin": fs.ModeSymlink | 0o777, "etc/passwd": fs.ModeSymlink | 0o777,
	} {
		if got := fileMode(t, filepath.Join(fromDir.Path, path)); got != want {
			t.Errorf("%s: mode %v, want %v (special bits cleared, the rest kept)", path, got, want)
		}
	}
	if target, _ := os.Readlink(filepath.Join(fromDir.Path, "etc/passwd")); target != "/etc/passwd" {
		t.Errorf("symlink copied as %q", target)
	}
	if d, err := DigestImage(fromDir.Path); err != nil || d.Digest != fromDir.Digest {
		t.Errorf("DigestImage %v %v, want %s", d.Digest, err, fromDir.Digest)
	}

	for _, name := range []string{"image.tar", "image.tar.gz", "image.tgz"} {
		tarball := filepath.Join(work, name)
		tarDir(t, src, tarball, name != "image.tar")
		img, err := ImportImage(tarball, filepath.Join(work, "from-"+name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if img.Digest != fromDir.Digest || img.Files != fromDir.Files || img.Bytes != fromDir.Bytes {
			t.Errorf("%s: %+v, want the digest of the directory import %+v", name, img, fromDir)
		}
		if d, err := DigestImage(img.Path); err != nil || d.Digest != img.Digest {
			t.Errorf("%s: DigestImage %v %v", name, d.Digest, err)
		}
	}

	// The digest follows content, modes and symlink targets.
	digest := func(name string) string {
		img, err := ImportImage(src, filepath.Join(work, name))
		if err != nil {
			t.Fatal(err)
		}
		return img.Digest
	}
	writeFile(t, filepath.Join(src, "etc/os-release"), []byte("NAME=veil-test2\n"), 0o644)
	changed := digest("changed-content")
	if changed == fromDir.Digest {
		t.Error("a modified file kept the digest")
	}
	os.Chmod(filepath.Join(src, "etc/os-release"), 0o600)
	if d := digest("changed-mode"); d == changed {
		t.Error("a mode change kept the digest")
	}

	// dst is never overwritten; nothing is left behind.
	if _, err := ImportImage(src, fromDir.Path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("import over an existing image: %v", err)
	}
	if _, err := ImportImage(src, filepath.Join(src, "inside")); err == nil || !strings.Contains(err.Error(), "inside the source") {
		t.Errorf("import into the source: %v", err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "etc/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ImportImage(src, filepath.Join(work, "fifo")); err == nil || !strings.Contains(err.Error(), `"etc/fifo" is a fifo`) {
		t.Errorf("import of a fifo: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(work, "fifo")); err == nil {
		t.Error("a failed import left its destination")
	}
	assertNoTmp(t, work)
}

func TestImportImageRefusals(t *testing.T) {
	work := t.TempDir()
	outside := t.TempDir()
	reg := func(name, body string) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, body: body}
	}
	link := func(typ byte, name, target string) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target}}
	}
	tests := []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"dot-dot", []tarEntry{reg("../x", "x")}, `contains ".."`},
		{"dot-dot inside", []tarEntry{reg("a/../../x", "x")}, `contains ".."`},
		{"absolute", []tarEntry{reg(outside+"/x", "x")}, "absolute path"},
		{"device node", []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}}}, `"dev/null" is a device node`},
		{"block device", []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}}}, `"sda" is a device node`},
		{"fifo", []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}}, `"p" is a fifo`},
		{"symlink escape", []tarEntry{link(tar.TypeSymlink, "a", outside), reg("a/passwd", "root::0:0")}, `parent "a" is a symlink`},
		{"relative symlink escape", []tarEntry{link(tar.TypeSymlink, "b", "../../../.."), reg("b/x", "x")}, `parent "b" is a symlink`},
		{"nested symlink escape", []tarEntry{reg("d/f", "x"), link(tar.TypeSymlink, "d/l", outside), reg("d/l/x", "x")}, `parent "d/l" is a symlink`},
		{"file as parent", []tarEntry{reg("f", "x"), reg("f/x", "x")}, `parent "f" is not a directory`},
		{"hard link outside", []tarEntry{link(tar.TypeLink, "h", "../etc/passwd")}, "outside the image"},
		{"hard link absolute", []tarEntry{link(tar.TypeLink, "h", "/etc/passwd")}, "outside the image"},
		{"hard link to nothing", []tarEntry{link(tar.TypeLink, "h", "missing")}, "not a regular file earlier"},
		{"replaced file", []tarEntry{reg("f", "x"), reg("f", "y")}, "appears twice"},
		{"symlink then file", []tarEntry{link(tar.TypeSymlink, "f", outside+"/f"), reg("f", "y")}, "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tarball := filepath.Join(work, "t.tar")
			writeTar(t, tarball, tt.entries)
			dst := filepath.Join(work, "img")
			_, err := ImportImage(tarball, dst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one containing %q", err, tt.want)
			}
			t.Logf("%v", err)
			if _, err := os.Lstat(dst); err == nil {
				t.Error("a refused import left its destination")
			}
			assertNoTmp(t, work)
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("the import wrote outside its destination: %v", entries)
			}
		})
	}

	t.Run("modes and hard links", func(t *testing.T) {
		tarball := filepath.Join(work, "ok.tar")
		writeTar(t, tarball, []tarEntry{
			{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./"}},
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./bin/su", Mode: 0o4755}, body: "su"},
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/sg", Mode: 0o2711}, body: "sg"},
			{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}},
			{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/su2", Linkname: "./bin/su", Mode: 0o4755}},
			{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "ro/", Mode: 0o555}},
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "ro/f", Mode: 0o444}, body: "f"},
		})
		img, err := ImportImage(tarball, filepath.Join(work, "ok"))
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]fs.FileMode{
			"bin": fs.ModeDir | 0o755, "bin/su": 0o755, "bin/sg": 0o711, "bin/su2": 0o755,
			"tmp": fs.ModeDir | 0o777, "ro": fs.ModeDir | 0o555, "ro/f": 0o444,
		} {
			if got := fileMode(t, filepath.Join(img.Path, path)); got != want {
				t.Errorf("%s: mode %v, want %v", path, got, want)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(img.Path, "bin/su2")); string(b) != "su" {
			t.Errorf("hard link copied as %q", b)
		}
		if img.Files != 4 {
			t.Errorf("files %d, want 4", img.Files)
		}
	})

	t.Run("limits", func(t *testing.T) {
		defer func(n int, b int64) { imageMaxEntries, imageMaxBytes = n, b }(imageMaxEntries, imageMaxBytes)
		imageMaxEntries, imageMaxBytes = 3, 10
		tarball := filepath.Join(work, "big.tar")
		writeTar(t, tarball, []tarEntry{reg("a", "1"), reg("b", "2"), reg("c/d", "3")})
		if _, err := ImportImage(tarball, filepath.Join(work, "big")); err == nil || !strings.Contains(err.Error(), "more than 3 entries") {
			t.Errorf("entries: %v", err)
		}
		writeTar(t, tarball, []tarEntry{reg("a", "12345"), reg("b", "123456")})
		if _, err := ImportImage(tarball, filepath.Join(work, "big")); err == nil || !strings.Contains(err.Error(), "more than 10 bytes") {
			t.Errorf("bytes: %v", err)
		}
		src := t.TempDir()
		writeFile(t, filepath.Join(src, "a"), []byte("12345678901"), 0o644)
		if _, err := ImportImage(src, filepath.Join(work, "big")); err == nil || !strings.Contains(err.Error(), "more than 10 bytes") {
			t.Errorf("bytes from a directory: %v", err)
		}
		assertNoTmp(t, work)
	})

	t.Run("not an archive", func(t *testing.T) {
		p := filepath.Join(work, "junk.tar")
		if err := os.WriteFile(p, bytes.Repeat([]byte("junk"), 300), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ImportImage(p, filepath.Join(work, "junk")); err == nil || !strings.Contains(err.Error(), ".tar") {
			t.Errorf("junk: %v", err)
		}
	})
}

// TestImageJob runs a static program on an imported runtime image with a
// read-only /in and a writable /out backed by a host tmpfs.
func TestImageJob(t *testing.T) {
	r := newRuntime(t)
	prog := buildImgProg(t)
	work := t.TempDir()
	src := makeImageSrc(t, prog)
	img, err := ImportImage(src, filepath.Join(work, "image"))
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(work, "image.tgz")
	tarDir(t, src, tarball, true)
	if img2, err := ImportImage(tarball, filepath.Join(work, "image2")); err != nil || img2.Digest != img.Digest {
		t.Fatalf("tarball import: %v %+v, want digest %s", err, img2, img.Digest)
	}

	in := t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "data.txt"), []byte("hello image"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	// As a custom job's /out is (kinds/custom): mode 0777, since the container's root is
	// whichever host uid of HostID's range is free (another package's sandboxes, running at
	// the same time, may hold HostID itself).
	if err := unix.Mount("tmpfs", out, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=1m,mode=0777"); err != nil {
		t.Fatalf("mount a tmpfs for /out: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(out, unix.MNT_DETACH) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("VEIL_TEST_HOST_SECRET", "s3cret")

	steps := []string{
		"copy=/in/data.txt:/out/result.txt",
		"read=/etc/os-release",
		"open=/usr/bin/prog",
		"open=/VERSION",
		"write=/x",
		"write=/in/new",
		"write=/bin/new",
		"write=/etc/os-release",
		"write=/scratch/ok",
		"open=/veil",
		"open=/in/shadowed",
		"open=/tmp/imagefile",
		"open=/etc/shadow",
		"open=/etc/shadow-link",
		"open=" + prog,
		"open=" + src,
		fmt.Sprintf("open=/proc/%d/environ", os.Getpid()),
		"read=/proc/1/cmdline",
		"read=/proc/1/environ",
		"connect=" + ln.Addr().String(),
		"connect=192.0.2.1:80",
		"exec=/bin/suid",
	}
	res, _ := run(t, r, Spec{
		Image: img.Path,
		Args:  append([]string{"/sbin/prog"}, steps...),
		Mounts: []Mount{
			{Source: in, Destination: "/in"},
			{Source: out, Destination: "/out", Writable: true},
		},
	})
	if res.Status != StatusOK {
		t.Fatalf("status %s exit %d: %s", res.Status, res.ExitCode, res.Stdout)
	}
	stdout := string(res.Stdout)
	t.Logf("job output:\n%s", stdout)
	for _, want := range []string{
		"copy=/in/data.txt:/out/result.txt: ok",
		`read=/etc/os-release: content "NAME=veil-test\n"`,
		"open=/usr/bin/prog: ok",
		"open=/VERSION: ok",
		"write=/x: open /x: read-only file system",
		"write=/in/new: open /in/new: read-only file system",
		"write=/bin/new: open /bin/new: read-only file system",
		"write=/etc/os-release: open /etc/os-release: read-only file system",
		"write=/scratch/ok: ok",
		"open=/veil: open /veil: no such file or directory",
		"open=/in/shadowed: open /in/shadowed: no such file or directory",
		"open=/tmp/imagefile: open /tmp/imagefile: no such file or directory",
		"open=/etc/shadow: open /etc/shadow: no such file or directory",
		"open=/etc/shadow-link: open /etc/shadow-link: no such file or directory",
		"open=" + prog + ": open " + prog + ": no such file or directory",
		"open=" + src + ": open " + src + ": no such file or directory",
		fmt.Sprintf("open=/proc/%d/environ: open /proc/%d/environ: no such file or directory", os.Getpid(), os.Getpid()),
		`read=/proc/1/cmdline: content "/sbin/prog\x00`,
		"connect=" + ln.Addr().String() + ": dial tcp " + ln.Addr().String() + ": connect: connection refused",
		"connect=192.0.2.1:80: dial tcp 192.0.2.1:80: connect: network is unreachable",
		"exec=/bin/suid: ", // not "ok": it is not a program; the suid bit is gone anyway
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(stdout, "s3cret") {
		t.Error("the daemon's environment is visible inside the job")
	}
	if b, err := os.ReadFile(filepath.Join(out, "result.txt")); err != nil || string(b) != "HELLO IMAGE" {
		t.Errorf("/out/result.txt on the host: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(in); len(entries) != 1 {
		t.Errorf("the job changed /in: %v", entries)
	}
	if d, err := DigestImage(img.Path); err != nil || d.Digest != img.Digest {
		t.Errorf("the image changed while a job ran on it: %v %v", d.Digest, err)
	}
	assertClean(t, r)
}

// TestExecMount runs a vendor's static program mounted at /job/program on an
// empty image: it runs with Exec, it cannot be executed without.
func TestExecMount(t *testing.T) {
	r := newRuntime(t)
	prog := buildImgProg(t)
	empty, err := ImportImage(t.TempDir(), filepath.Join(t.TempDir(), "empty"))
	if err != nil {
		t.Fatal(err)
	}
	spec := func(exec bool) Spec {
		return Spec{
			ID:     jobID(t),
			Image:  empty.Path,
			Args:   []string{"/job/program", "open=/job/program", "write=/job/x", "exec=/job/program"},
			Mounts: []Mount{{Source: prog, Destination: "/job/program", Exec: exec}},
		}
	}
	res, _ := run(t, r, spec(true))
	if res.Status != StatusOK {
		t.Fatalf("with Exec: status %s: %s", res.Status, res.Stdout)
	}
	// The last step re-executes the program, which then has no steps.
	for _, want := range []string{"open=/job/program: ok", "write=/job/x: open /job/x: read-only file system"} {
		if !strings.Contains(string(res.Stdout), want) {
			t.Errorf("missing %q in\n%s", want, res.Stdout)
		}
	}

	res, err = r.Run(context.Background(), spec(false), io.Discard)
	switch {
	case err != nil:
		t.Logf("without Exec: %v", err)
		if !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("without Exec: %v, want permission denied", err)
		}
	case res.Status == StatusOK:
		t.Fatalf("without Exec the program ran: %s", res.Stdout)
	}

	for _, bad := range []Spec{
		{ID: "x", Image: empty.Path, Args: []string{"/job/program"}, Mounts: []Mount{{Source: prog, Destination: "/job/program", Exec: true, Writable: true}}},
		{ID: "x", Image: "relative/image", Args: []string{"/bin/prog"}},
		{ID: "x", Image: empty.Path, Args: []string{"/job/program"}, Mounts: []Mount{{Source: "/nonexistent", Destination: "/out", Writable: true}, {Source: prog, Destination: "/out/program"}}},
		{ID: "x", Image: empty.Path, Args: []string{"/job/program"}, Mounts: []Mount{{Source: prog, Destination: "/job/program"}, {Source: prog, Destination: "/job/program"}}},
	} {
		if _, err := r.Run(context.Background(), bad, io.Discard); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", bad, err)
		}
	}
	assertClean(t, r)
}
