package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// rule is what one path of the data directory must be. The modes are those veil init and
// the daemon give them (daemon/init.go, datasets.go, custom.go, dev.go, fusion.go, he.go,
// store/sqlite, sandbox.New); TestDoctorOnFreshDataDir keeps the two in step.
type rule struct {
	rel      string
	dir      bool
	required bool
	// secret: nobody but the owner may have any access (keys, the store, its socket).
	secret bool
	// shared: the sandbox's unprivileged root reaches it (others may traverse a directory,
	// read a file); bits beyond max are a warning.
	shared bool
	max    fs.FileMode
}

var layout = []rule{
	{rel: ".", dir: true, required: true, shared: true, max: 0o711},
	{rel: "keys", dir: true, required: true, secret: true},
	{rel: "keys/platform.key", required: true, secret: true},
	{rel: "keys/mask.key", secret: true},
	{rel: "keys/paths.key", secret: true},
	{rel: "platform.pub", required: true, max: 0o644},
	{rel: "veil.db", secret: true}, // its absence is the store check's
	{rel: "veil.db-wal", secret: true},
	{rel: "veil.db-shm", secret: true},
	{rel: "veil.sock", secret: true},
	{rel: "datasets", dir: true, required: true, shared: true, max: 0o711},
	{rel: "sandbox", dir: true, shared: true, max: 0o711},
	{rel: "sandbox/containers", dir: true, secret: true},
	{rel: "runtimes", dir: true, shared: true, max: 0o711},
	{rel: "twins", dir: true, shared: true, max: 0o711},
	{rel: "work", dir: true, shared: true, max: 0o711},
	{rel: "projections", dir: true, shared: true, max: 0o711},
	{rel: "blobs", dir: true, shared: true, max: 0o711},
	{rel: "he-prepared", dir: true, shared: true, max: 0o711},
	{rel: "programs", dir: true, shared: true, max: 0o711},
	{rel: "tenants", dir: true, shared: true, max: 0o711},
}

// maxWalk bounds how many entries of datasets/ and tenants/ are looked at.
const maxWalk = 100_000

// finding is one path that breaks a rule.
type finding struct {
	fail bool
	what string
	fix  string
}

// dataDirChecks checks ownership and modes: of the data directory's own layout, of every
// registered dataset file and directory, of the grants' fusion secrets, and of the
// directories above the data directory.
func dataDirChecks(dir string) []Check {
	const name = "data-dir"
	abs, err := filepath.Abs(dir)
	if err != nil {
		return []Check{fail(name, "", "data directory %q: %v", dir, err)}
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return []Check{fail(name, fmt.Sprintf("create it with veil init --data-dir %s", abs), "%s is not a data directory: %v", abs, errOrNotDir(err))}
	}
	uid := os.Geteuid()
	var found []finding
	for _, r := range layout {
		found = append(found, checkPath(filepath.Join(abs, r.rel), r, uid)...)
	}
	n := 0
	walk := func(top string, visit func(path string, d fs.DirEntry) []finding) {
		filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err != nil || path == top {
				return nil
			}
			if n++; n > maxWalk {
				return filepath.SkipAll
			}
			found = append(found, visit(path, d)...)
			return nil
		})
	}
	// Registered files are mounted into jobs: the way to them must be traversable and the
	// files readable by the sandbox's root, and nobody else may change them (their hash is
	// the dataset's version, named in certificates). The owner's write bit is not looked
	// at: the owner is root, whom modes do not stop (copied files are 0444, files converted
	// from CSV 0644).
	walk(filepath.Join(abs, "datasets"), func(path string, d fs.DirEntry) []finding {
		if d.IsDir() {
			return checkPath(path, rule{dir: true, shared: true, max: 0o711}, uid)
		}
		return checkPath(path, rule{shared: true, max: 0o644}, uid)
	})
	walk(filepath.Join(abs, "tenants"), func(path string, d fs.DirEntry) []finding {
		if !d.IsDir() && d.Name() == "secret" {
			return checkPath(path, rule{secret: true}, uid)
		}
		return nil
	})
	found = append(found, checkParents(abs)...)
	return []Check{summarize(name, abs, found)}
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}

// checkPath checks one path against its rule.
func checkPath(path string, r rule, uid int) []finding {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		if r.required {
			return []finding{{fail: true, what: path + " is missing", fix: "restore it from a backup (a data directory is made by veil init)"}}
		}
		return nil
	}
	if err != nil {
		return []finding{{fail: true, what: fmt.Sprintf("%s: %v", path, err), fix: "run veil doctor as the daemon's user (root)"}}
	}
	var out []finding
	if fi.Mode()&os.ModeSymlink != 0 {
		return []finding{{fail: true, what: path + " is a symbolic link", fix: "replace it with the file or directory itself: the daemon does not follow links out of its data directory"}}
	}
	if r.dir != fi.IsDir() {
		want := "a file"
		if r.dir {
			want = "a directory"
		}
		return []finding{{fail: true, what: fmt.Sprintf("%s is not %s", path, want), fix: "restore it from a backup"}}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		out = append(out, finding{fail: true, what: fmt.Sprintf("%s is owned by uid %d, not by the daemon's uid %d", path, st.Uid, uid),
			fix: fmt.Sprintf("chown %d %s", uid, path)})
	}
	perm := fi.Mode().Perm()
	switch {
	case r.secret && perm&0o077 != 0:
		want := fs.FileMode(0o600)
		if r.dir {
			want = 0o700
		}
		out = append(out, finding{fail: true, what: fmt.Sprintf("%s has mode %04o: others can reach a secret", path, perm), fix: fmt.Sprintf("chmod %o %s", want, path)})
	case perm&0o022 != 0:
		out = append(out, finding{fail: true, what: fmt.Sprintf("%s has mode %04o: writable by others", path, perm), fix: fmt.Sprintf("chmod go-w %s", path)})
	case r.shared && r.dir && perm&0o001 == 0:
		out = append(out, finding{fail: true, what: fmt.Sprintf("%s has mode %04o: the sandbox's unprivileged root cannot traverse it to the dataset files", path, perm), fix: fmt.Sprintf("chmod o+x %s", path)})
	case r.shared && !r.dir && perm&0o004 == 0:
		out = append(out, finding{fail: true, what: fmt.Sprintf("%s has mode %04o: jobs cannot read it", path, perm), fix: fmt.Sprintf("chmod o+r %s", path)})
	case r.max != 0 && perm&^r.max != 0:
		why := "more open than needed"
		if r.dir && perm&0o004 != 0 {
			why = "others can list it"
		}
		out = append(out, finding{what: fmt.Sprintf("%s has mode %04o: %s", path, perm, why), fix: fmt.Sprintf("chmod %o %s", r.max, path)})
	}
	return out
}

// checkParents checks the directories above the data directory: the sandbox's root must
// traverse them to the dataset files, and nobody else may replace what they hold.
func checkParents(abs string) []finding {
	var out []finding
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			out = append(out, finding{fail: true, what: fmt.Sprintf("%s: %v", d, err)})
			break
		}
		perm := fi.Mode().Perm()
		if perm&0o001 == 0 {
			out = append(out, finding{fail: true, what: fmt.Sprintf("%s (above the data directory) has mode %04o: the sandbox's unprivileged root cannot traverse it", d, perm),
				fix: fmt.Sprintf("chmod o+x %s", d)})
		}
		if perm&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
			out = append(out, finding{fail: true, what: fmt.Sprintf("%s (above the data directory) has mode %04o: others can replace the data directory", d, perm),
				fix: fmt.Sprintf("chmod go-w %s", d)})
		}
		if d == "/" {
			break
		}
	}
	return out
}

// summarize makes one check of the findings: failed if any fails, each with its fix.
func summarize(name, abs string, found []finding) Check {
	if len(found) == 0 {
		return ok(name, "%s: owned by the daemon's user; keys, store and socket owner-only; datasets readable by the sandbox", abs)
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].fail && !found[j].fail })
	var what, fix []string
	failed := false
	for _, f := range found {
		failed = failed || f.fail
		what = append(what, f.what)
		if f.fix != "" {
			fix = append(fix, f.fix)
		}
	}
	if failed {
		return fail(name, strings.Join(fix, "; "), "%s", strings.Join(what, "; "))
	}
	return warn(name, strings.Join(fix, "; "), "%s", strings.Join(what, "; "))
}
