package sandbox

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// defaultLibDirs are the directories the dynamic loader searches without
// /etc/ld.so.cache (which the container does not have). Libraries found
// elsewhere are mounted into the first of them.
var defaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// libMount is one file the binary needs at run time: its host path and the
// path the loader will look for inside the container.
type libMount struct {
	Source, Destination string
}

// sharedLibraries returns the dynamic loader and the transitive DT_NEEDED
// closure of the ELF file at path, as an ldd without running the binary
// would. A static binary needs nothing.
func sharedLibraries(path string) ([]libMount, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	var out []libMount
	seen := map[string]bool{}
	interp, err := interpreter(f)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	if interp == "" {
		return nil, nil // static
	}
	out = append(out, libMount{Source: interp, Destination: interp})
	seen[filepath.Base(interp)] = true
	extra := extraLibDirs()
	var walk func(f *elf.File, origin string) error
	walk = func(f *elf.File, origin string) error {
		needed, err := f.ImportedLibraries()
		if err != nil {
			return err
		}
		dirs := runpath(f, origin)
		for _, name := range needed {
			if seen[name] {
				continue
			}
			seen[name] = true
			src, dst, lf, err := findLibrary(name, f, dirs, extra)
			if err != nil {
				return err
			}
			out = append(out, libMount{Source: src, Destination: dst})
			err = walk(lf, filepath.Dir(src))
			lf.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(f, filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("resolve shared libraries of %s: %w", path, err)
	}
	return out, nil
}

func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\x00"), nil
	}
	return "", nil
}

func runpath(f *elf.File, origin string) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(d, "$ORIGIN", origin)
				d = strings.ReplaceAll(d, "${ORIGIN}", origin)
				if d != "" {
					dirs = append(dirs, d)
				}
			}
		}
	}
	return dirs
}

// extraLibDirs reads the directories of /etc/ld.so.conf.d, which the host's
// loader knows through its cache.
func extraLibDirs() []string {
	var dirs []string
	files, _ := filepath.Glob("/etc/ld.so.conf.d/*.conf")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "/") {
				dirs = append(dirs, line)
			}
		}
	}
	return dirs
}

// findLibrary looks name up as the loader would and returns the host path,
// the path inside the container, and the opened ELF (same class and machine
// as the requester, so 32-bit look-alikes are skipped).
func findLibrary(name string, from *elf.File, runpath, extra []string) (string, string, *elf.File, error) {
	try := func(dir string) (string, *elf.File) {
		p := filepath.Join(dir, name)
		lf, err := elf.Open(p)
		if err != nil {
			return "", nil
		}
		if lf.Class != from.Class || lf.Machine != from.Machine {
			lf.Close()
			return "", nil
		}
		return p, lf
	}
	if strings.Contains(name, "/") {
		if p, lf := try(filepath.Dir(name)); lf != nil {
			return p, p, lf, nil
		}
		return "", "", nil, fmt.Errorf("library %s not found", name)
	}
	for _, d := range defaultLibDirs {
		if p, lf := try(d); lf != nil {
			return p, p, lf, nil
		}
	}
	for _, d := range append(append([]string(nil), runpath...), extra...) {
		if p, lf := try(d); lf != nil {
			return p, filepath.Join("/usr/lib", name), lf, nil
		}
	}
	return "", "", nil, fmt.Errorf("library %s not found", name)
}
