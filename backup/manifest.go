package backup

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Format names the manifest's format.
const Format = "veil-backup v1"

// ManifestName is the manifest's file in a backup directory.
const ManifestName = "manifest.json"

// StoreName is the store's file, in a data directory and in a backup.
const StoreName = "veil.db"

// maxManifest bounds the read of a manifest: a runtime image of many files makes it large,
// but not this large.
const maxManifest = 64 << 20

// Manifest describes a backup.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// DataDir is the absolute path of the data directory backed up: the store names its
	// files by absolute paths under it, which Restore points at the new directory.
	DataDir string `json:"data_dir"`
	// Audit is the audit log in the store's snapshot.
	Audit AuditSummary `json:"audit"`
	// Entries are every directory, file and link of the backup but the manifest, parents
	// before children.
	Entries []Entry `json:"entries"`
}

// AuditSummary says how far the snapshot's audit log goes.
type AuditSummary struct {
	Entries     int64  `json:"entries"`
	Checkpoints int64  `json:"checkpoints"`
	Signed      int64  `json:"signed"` // entries covered by the latest signed checkpoint
	Root        string `json:"root"`   // the latest checkpoint's root hash
}

// Entry is one directory, regular file or symbolic link.
type Entry struct {
	Path   string `json:"path"` // slash-separated, relative, clean
	Type   string `json:"type"` // "dir", "file" or "symlink"
	Mode   uint32 `json:"mode"` // permission bits, with setuid, setgid and sticky
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Bytes  int64  `json:"bytes,omitempty"`
	SHA256 string `json:"sha256,omitempty"` // of a file's content
	Target string `json:"target,omitempty"` // of a link
}

const (
	typeDir     = "dir"
	typeFile    = "file"
	typeSymlink = "symlink"
)

const modeBits = uint32(fs.ModePerm) | 0o7000

// fileMode turns the manifest's mode into an fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & uint32(fs.ModePerm))
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// modeOf is the manifest's mode of an fs.FileMode.
func modeOf(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// readManifest reads and checks a backup's manifest: its format, and that every entry is a
// relative path inside the backup whose parents are directories of the manifest, listed
// once, with a digest for each file. A manifest that fails is ErrDamaged.
func readManifest(dir string) (*Manifest, error) {
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s has no %s: it is not a Veil backup, or the backup did not finish (the manifest is written last)", ErrDamaged, dir, ManifestName)
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("read the manifest: %w", err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%w: the manifest is more than %d bytes", ErrDamaged, maxManifest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: the manifest is not valid: %v", ErrDamaged, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: the manifest has data after its end", ErrDamaged)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: the manifest's format is %q; this veil restores %q", ErrDamaged, m.Format, Format)
	}
	if !filepath.IsAbs(m.DataDir) {
		return nil, fmt.Errorf("%w: the manifest's data_dir %q is not an absolute path", ErrDamaged, m.DataDir)
	}
	dirs := map[string]bool{".": true}
	seen := map[string]bool{}
	haveStore := false
	for _, e := range m.Entries {
		bad := func(why string) error {
			return fmt.Errorf("%w: manifest entry %.200q: %s", ErrDamaged, e.Path, why)
		}
		p := filepath.FromSlash(e.Path)
		if !filepath.IsLocal(p) || filepath.Clean(p) != p || p == ManifestName {
			return nil, bad("not a clean relative path inside the backup")
		}
		if seen[p] {
			return nil, bad("listed twice")
		}
		seen[p] = true
		if !dirs[filepath.Dir(p)] {
			return nil, bad("its parent is not a directory listed before it")
		}
		if e.Mode&^modeBits != 0 {
			return nil, bad("mode has bits other than permissions")
		}
		switch e.Type {
		case typeDir:
			dirs[p] = true
		case typeFile:
			if d, err := hex.DecodeString(e.SHA256); err != nil || len(d) != 32 || e.Bytes < 0 {
				return nil, bad("a file needs its size and a SHA-256 of 64 hex digits")
			}
			haveStore = haveStore || p == StoreName
		case typeSymlink:
			if e.Target == "" {
				return nil, bad("a link without a target")
			}
		default:
			return nil, bad("type must be dir, file or symlink")
		}
	}
	if !haveStore {
		return nil, fmt.Errorf("%w: the manifest has no store (%s)", ErrDamaged, StoreName)
	}
	return &m, nil
}
