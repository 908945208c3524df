package sandbox

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ImportImage copies a runtime image from src, a directory or a .tar,
// .tar.gz or .tgz file (gzip is recognised by its content), into dst, a new
// directory, and returns its digest. dst must not exist; its parent must.
// The copy is written into dst+".tmp-*" and renamed to dst only when
// complete, so dst is either absent or whole.
//
// Rules:
//   - Only regular files, directories and symlinks. Device nodes, fifos and
//     sockets are refused, naming the entry. A tarball's hard link must name
//     a regular file earlier in the archive; it becomes a copy of it.
//   - Paths are relative: absolute paths and ".." components are refused, and
//     so is an entry whose parent is a symlink or a file ("a -> /etc", then
//     "a/passwd"). Writing never follows a symlink: every directory is
//     opened with O_NOFOLLOW from the root down. Reading a directory never
//     follows a symlink either (symlinks are copied as symlinks, whatever
//     they point to: their targets are resolved inside the job's root).
//   - Setuid, setgid and sticky bits are cleared; the permission bits are
//     kept (executables stay executable). Everything is owned by the caller
//     (the daemon); owners, times and extended attributes (file
//     capabilities included) are not copied.
//   - At most MaxImageBytes of regular files and MaxImageEntries entries.
//
// The digest is "sha256:" and the hex SHA-256 of this listing: the line
// "veil-image-v1", then one line per entry (the root excluded), sorted by
// relative slash-separated path, of the form
//
//	<Go-quoted path> <type: d, f or l> <mode, 4 octal digits> <content>
//
// where content is "-" for a directory, the hex SHA-256 of the data for a
// file, and the Go-quoted target for a symlink (whose mode is 0000), each
// line ending in "\n".
func ImportImage(src, dst string) (Image, error) {
	fail := func(format string, a ...any) (Image, error) {
		return Image{}, fmt.Errorf("import image: "+format, a...)
	}
	if src == "" || dst == "" {
		return fail("source and destination are required")
	}
	dst, err := filepath.Abs(dst)
	if err != nil {
		return fail("destination: %v", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fail("destination %s already exists; an image is never overwritten: import it under a new path", dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail("destination: %v", err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return fail("source: %v", err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return fail("source %s is neither a directory nor a .tar, .tar.gz or .tgz file", src)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(dst))
	if err != nil {
		return fail("parent of the destination: %v (create it first)", err)
	}
	if fi.IsDir() {
		s, err := filepath.EvalSymlinks(src)
		if err != nil {
			return fail("source: %v", err)
		}
		if s, _ = filepath.Abs(s); s == "/" || parent == s || strings.HasPrefix(parent, s+"/") {
			return fail("destination %s is inside the source directory %s; import to somewhere else", dst, src)
		}
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fail("%v", err)
	}
	done := false
	defer func() {
		if !done {
			forceRemoveAll(tmp)
		}
	}()
	root, err := os.OpenFile(tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("%v", err)
	}
	defer root.Close()
	b := newImageBuilder(root, true)
	if fi.IsDir() {
		err = walkImageDir(src, b)
	} else {
		err = readImageTar(src, b)
	}
	if err == nil {
		err = b.finish()
	}
	if err != nil {
		return fail("%v", err)
	}
	if err := unix.Fchmod(int(root.Fd()), 0o755); err != nil {
		return fail("%v", err)
	}
	if err := unix.Syncfs(int(root.Fd())); err != nil {
		return fail("sync: %v", err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fail("destination %s appeared while importing; import it under a new path", dst)
		}
		return fail("rename %s to %s: %v", tmp, dst, err)
	}
	done = true
	if d, err := os.Open(parent); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return Image{Digest: b.digest(), Path: dst, Files: b.files, Bytes: b.bytes}, nil
}

// DigestImage recomputes the digest of an imported image at path, e.g. to
// check that it is still what ImportImage returned. It reads the tree as
// ImportImage reads a source directory, but keeps setuid, setgid and sticky
// bits in the listing, so an image changed after import gets another
// digest.
func DigestImage(path string) (Image, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Image{}, fmt.Errorf("image digest: %w", err)
	}
	b := newImageBuilder(nil, false)
	if err := walkImageDir(abs, b); err != nil {
		return Image{}, fmt.Errorf("image digest: %w", err)
	}
	return Image{Digest: b.digest(), Path: abs, Files: b.files, Bytes: b.bytes}, nil
}

// forceRemoveAll removes a partial import, making its directories writable
// first so that a non-root caller can remove them too.
func forceRemoveAll(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}

// Kinds of image entries, as they appear in the digest listing.
const (
	kindDir     = 'd'
	kindFile    = 'f'
	kindSymlink = 'l'
)

type imageEntry struct {
	kind   byte
	mode   uint32 // permission bits as written
	target string // symlink target
	sum    [32]byte
}

// imageBuilder checks entries, writes them below root (when root is not
// nil) and keeps what the digest needs.
type imageBuilder struct {
	root         *os.File
	clearSpecial bool
	entries      map[string]*imageEntry
	files        int
	bytes        int64
	// one cached parent directory: archives list siblings together
	cachedPath string
	cachedDir  *os.File
}

func newImageBuilder(root *os.File, clearSpecial bool) *imageBuilder {
	return &imageBuilder{root: root, clearSpecial: clearSpecial, entries: map[string]*imageEntry{}}
}

func (b *imageBuilder) mode(m uint32) uint32 {
	if b.clearSpecial {
		return m & 0o777
	}
	return m & 0o7777
}

func (b *imageBuilder) count(p string) error {
	if len(b.entries) >= imageMaxEntries {
		return fmt.Errorf("entry %q: the image has more than %d entries, the limit; remove what jobs do not need", p, imageMaxEntries)
	}
	return nil
}

// checkParents makes sure every parent of p is a directory of the image,
// creating the missing ones (tarballs may omit them) with mode 0755.
func (b *imageBuilder) checkParents(p string) error {
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/")
		e := b.entries[dir]
		if e == nil {
			if err := b.add(dir, imageEntry{kind: kindDir, mode: 0o755}, nil); err != nil {
				return err
			}
			continue
		}
		switch e.kind {
		case kindDir:
		case kindSymlink:
			return fmt.Errorf("entry %q: its parent %q is a symlink; an entry may not be written through a symlink (it could escape the image)", p, dir)
		default:
			return fmt.Errorf("entry %q: its parent %q is not a directory", p, dir)
		}
	}
	return nil
}

// openDir opens the directory rel ("" is the root) below root without
// following any symlink.
func (b *imageBuilder) openDir(rel string) (*os.File, error) {
	if rel == b.cachedPath && b.cachedDir != nil {
		return b.cachedDir, nil
	}
	fd, err := unix.Dup(int(b.root.Fd()))
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if rel != "" {
		for _, part := range strings.Split(rel, "/") {
			next, err := unix.Openat(fd, part, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			if err != nil {
				return nil, fmt.Errorf("open directory %q: %w", rel, err)
			}
			fd = next
		}
	}
	if b.cachedDir != nil {
		b.cachedDir.Close()
	}
	b.cachedPath, b.cachedDir = rel, os.NewFile(uintptr(fd), rel)
	return b.cachedDir, nil
}

// add adds the entry p (clean, relative, slash-separated). A file's content
// is read from data, at most what is left of the byte limit.
func (b *imageBuilder) add(p string, e imageEntry, data io.Reader) error {
	e.mode = b.mode(e.mode)
	if old := b.entries[p]; old != nil {
		if old.kind == kindDir && e.kind == kindDir {
			old.mode = e.mode // a directory listed again (or after its files)
			return nil
		}
		return fmt.Errorf("entry %q appears twice; an image entry cannot be replaced", p)
	}
	if err := b.count(p); err != nil {
		return err
	}
	if err := b.checkParents(p); err != nil {
		return err
	}
	if err := b.count(p); err != nil {
		return err
	}
	dirPath, name := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dirPath, name = p[:i], p[i+1:]
	}
	var dir *os.File
	if b.root != nil {
		var err error
		if dir, err = b.openDir(dirPath); err != nil {
			return err
		}
	}
	switch e.kind {
	case kindDir:
		if dir != nil {
			// Made writable for now; finish sets the final mode.
			if err := unix.Mkdirat(int(dir.Fd()), name, 0o700); err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
		}
	case kindSymlink:
		if e.target == "" || strings.IndexByte(e.target, 0) >= 0 || len(e.target) >= unix.PathMax {
			return fmt.Errorf("entry %q: invalid symlink target", p)
		}
		e.mode = 0
		if dir != nil {
			if err := unix.Symlinkat(e.target, int(dir.Fd()), name); err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
		}
	case kindFile:
		w := io.Writer(io.Discard)
		var f *os.File
		if dir != nil {
			fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
			f = os.NewFile(uintptr(fd), p)
			defer f.Close()
			w = f
		}
		h := sha256.New()
		left := imageMaxBytes - b.bytes
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(data, left+1))
		if err != nil {
			return fmt.Errorf("entry %q: %w", p, err)
		}
		if n > left {
			return fmt.Errorf("entry %q: the image's files add up to more than %s, the limit; remove what jobs do not need", p, formatBytes(imageMaxBytes))
		}
		b.bytes += n
		b.files++
		h.Sum(e.sum[:0])
		if f != nil {
			if err := unix.Fchmod(int(f.Fd()), e.mode); err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
		}
	default:
		return fmt.Errorf("entry %q: unsupported type", p)
	}
	b.entries[p] = &e
	return nil
}

// finish gives directories their final modes (they were writable while
// being filled).
func (b *imageBuilder) finish() error {
	if b.cachedDir != nil {
		b.cachedDir.Close()
		b.cachedDir, b.cachedPath = nil, ""
	}
	if b.root == nil {
		return nil
	}
	for p, e := range b.entries {
		if e.kind != kindDir {
			continue
		}
		d, err := b.openDir(p)
		if err != nil {
			return err
		}
		if err := unix.Fchmod(int(d.Fd()), e.mode); err != nil {
			return fmt.Errorf("entry %q: %w", p, err)
		}
	}
	if b.cachedDir != nil {
		b.cachedDir.Close()
		b.cachedDir, b.cachedPath = nil, ""
	}
	return nil
}

// digest hashes the canonical listing (see ImportImage).
func (b *imageBuilder) digest() string {
	paths := make([]string, 0, len(b.entries))
	for p := range b.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha256.New()
	w := bufio.NewWriter(h)
	w.WriteString("veil-image-v1\n")
	for _, p := range paths {
		e := b.entries[p]
		content := "-"
		switch e.kind {
		case kindFile:
			content = hex.EncodeToString(e.sum[:])
		case kindSymlink:
			content = strconv.Quote(e.target)
		}
		fmt.Fprintf(w, "%s %c %04o %s\n", strconv.Quote(p), e.kind, e.mode, content)
	}
	w.Flush()
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// cleanEntryName turns an archive entry name into a clean relative path
// ("" for the root), refusing absolute paths and "..".
func cleanEntryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q has an absolute path; image entries must be relative to its root", name)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("entry %q: invalid name", name)
	}
	p := name
	for strings.HasPrefix(p, "./") {
		p = p[2:]
	}
	p = strings.TrimRight(p, "/")
	if p == "" || p == "." {
		return "", nil
	}
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "..":
			return "", fmt.Errorf("entry %q contains \"..\"; image entries must stay inside its root", name)
		case "", ".":
			return "", fmt.Errorf("entry %q is not a clean path (empty or \".\" component)", name)
		}
	}
	return p, nil
}

// walkImageDir adds the tree below the directory src to b. Every entry is
// opened relative to its parent's descriptor with O_NOFOLLOW, so a symlink
// (even one swapped in while reading) is never followed.
func walkImageDir(src string, b *imageBuilder) error {
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	return walkDirFD(os.NewFile(uintptr(fd), src), "", 0, b)
}

func walkDirFD(dir *os.File, rel string, depth int, b *imageBuilder) error {
	defer dir.Close()
	if depth > maxImageDepth {
		return fmt.Errorf("directory %q: nested more than %d levels deep, the limit", rel, maxImageDepth)
	}
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %q: %w", rel, err)
	}
	sort.Strings(names)
	dfd := int(dir.Fd())
	for _, name := range names {
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("entry %q: %w", p, err)
		}
		mode := st.Mode & 0o7777
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := b.add(p, imageEntry{kind: kindDir, mode: mode}, nil); err != nil {
				return err
			}
			cfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
			if err := walkDirFD(os.NewFile(uintptr(cfd), p), p, depth+1, b); err != nil {
				return err
			}
		case unix.S_IFREG:
			// O_NONBLOCK: should a fifo have been swapped in, opening it
			// must not hang; fstat then refuses it.
			ffd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
			f := os.NewFile(uintptr(ffd), p)
			var fst unix.Stat_t
			if err := unix.Fstat(ffd, &fst); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFREG || fst.Ino != st.Ino || fst.Dev != st.Dev {
				f.Close()
				return fmt.Errorf("entry %q changed while it was being read; import again from a source nobody is writing to", p)
			}
			err = b.add(p, imageEntry{kind: kindFile, mode: mode}, f)
			f.Close()
			if err != nil {
				return err
			}
		case unix.S_IFLNK:
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlinkat(dfd, name, buf)
			if err != nil {
				return fmt.Errorf("entry %q: %w", p, err)
			}
			if err := b.add(p, imageEntry{kind: kindSymlink, target: string(buf[:n])}, nil); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q is %s; an image holds only regular files, directories and symlinks: remove it from the source", p, describeType(st.Mode))
		}
	}
	return nil
}

func describeType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return "a character device node"
	case unix.S_IFBLK:
		return "a block device node"
	case unix.S_IFIFO:
		return "a fifo"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "of an unsupported type"
}

// cappedReader fails once more than n bytes were read: it bounds what a
// compressed archive may expand to.
type cappedReader struct {
	r io.Reader
	n int64
}

var errArchiveTooLarge = errors.New("archive too large")

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errArchiveTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// readImageTar adds the entries of the tarball src (gzip-compressed or not)
// to b.
func readImageTar(src string, b *imageBuilder) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("read %s: %w (is it a .tar.gz file?)", src, err)
		}
		defer zr.Close()
		r = zr
	}
	// Room for the files, their headers and padding.
	r = &cappedReader{r: r, n: imageMaxBytes + int64(imageMaxEntries)*2048 + 1<<20}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errArchiveTooLarge) {
			return fmt.Errorf("the archive expands to more than an image may hold (%s of files, %d entries); remove what jobs do not need", formatBytes(imageMaxBytes), imageMaxEntries)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w (is it a .tar, .tar.gz or .tgz file?)", src, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p, err := cleanEntryName(hdr.Name)
		if err != nil {
			return err
		}
		mode := uint32(hdr.Mode) & 0o7777
		if p == "" {
			if hdr.Typeflag != tar.TypeDir {
				return fmt.Errorf("entry %q: the image root must be a directory", hdr.Name)
			}
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = b.add(p, imageEntry{kind: kindDir, mode: mode}, nil)
		case tar.TypeReg:
			if hdr.Size > imageMaxBytes-b.bytes {
				return fmt.Errorf("entry %q: the image's files add up to more than %s, the limit; remove what jobs do not need", p, formatBytes(imageMaxBytes))
			}
			err = b.add(p, imageEntry{kind: kindFile, mode: mode}, tr)
		case tar.TypeSymlink:
			err = b.add(p, imageEntry{kind: kindSymlink, target: hdr.Linkname}, nil)
		case tar.TypeLink:
			err = b.addHardLink(p, hdr.Linkname, mode)
		case tar.TypeChar, tar.TypeBlock:
			return fmt.Errorf("entry %q is a device node; an image holds only regular files, directories and symlinks: remove it from the archive", hdr.Name)
		case tar.TypeFifo:
			return fmt.Errorf("entry %q is a fifo; an image holds only regular files, directories and symlinks: remove it from the archive", hdr.Name)
		default:
			return fmt.Errorf("entry %q has unsupported tar type %q; an image holds only regular files, directories, symlinks and hard links to its files", hdr.Name, hdr.Typeflag)
		}
		if errors.Is(err, errArchiveTooLarge) {
			return fmt.Errorf("the archive expands to more than an image may hold (%s of files, %d entries); remove what jobs do not need", formatBytes(imageMaxBytes), imageMaxEntries)
		}
		if err != nil {
			return err
		}
	}
}

// addHardLink adds p as a copy of target, a regular file added before.
func (b *imageBuilder) addHardLink(p, target string, mode uint32) error {
	t, err := cleanEntryName(target)
	if err != nil || t == "" {
		return fmt.Errorf("entry %q is a hard link to %q, outside the image; hard links must name a file of the archive", p, target)
	}
	e := b.entries[t]
	if e == nil || e.kind != kindFile {
		return fmt.Errorf("entry %q is a hard link to %q, which is not a regular file earlier in the archive", p, target)
	}
	if b.root == nil {
		return fmt.Errorf("entry %q: hard links need a destination", p)
	}
	dirPath, name := "", t
	if i := strings.LastIndexByte(t, '/'); i >= 0 {
		dirPath, name = t[:i], t[i+1:]
	}
	dir, err := b.openDir(dirPath)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("entry %q: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), t)
	defer f.Close()
	return b.add(p, imageEntry{kind: kindFile, mode: mode}, f)
}
