package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A job's spill area is a file system of its own: an ext4 image file under the runtime's
// state directory (so on the data directory's disk, not in memory), attached to a loop
// device and mounted for that one job at SpillPath. Its size is the image's size, so no
// job can fill the host's disk whatever the program inside does (DuckDB's own
// max_temp_directory_size is the first limit; this is the backstop). Its root belongs to
// the job's own host uid, mode 0700, and it is mounted into no other sandbox. After the
// job its files are deleted (their dirty pages are dropped, never written back), the file
// system is unmounted (the loop device detaches itself) and the image is removed; Cleanup
// does the same for what a crashed daemon left.
//
// Why not the alternatives: a tmpfs is memory, not disk; a project quota needs the data
// directory's file system to be mounted with quotas, which the daemon cannot assume; a
// directory with only DuckDB's limit has no backstop against a program that ignores it.

// spillFS is one job's spill file system.
type spillFS struct {
	image string // the ext4 image on the host
	dir   string // where it is mounted on the host (the bind source for SpillPath)
	size  int64
	r     *Runtime // that accounts for it while it exists
	// frozen: its container's processes are gone, so it grows no more (spillBook.mu).
	frozen bool
}

// freeze records that nothing writes to s any more: its container's processes are gone.
// What it holds is on the disk already; the room it could still have grown into is free.
func (s *spillFS) freeze() {
	if s.r == nil {
		return
	}
	s.r.spills.mu.Lock()
	s.frozen = true
	s.r.spills.mu.Unlock()
}

// spillBook accounts for the live spill areas of a runtime: images are sparse, so a new
// one is made only if the disk can hold what every live area may still grow to, plus it.
// A job can then never fill the disk under the daemon's store, whatever the others do.
type spillBook struct {
	mu   sync.Mutex
	live map[*spillFS]bool
}

// reserve checks that the disk of the spill directory can hold s at its full size on top
// of what the live areas may still write, and records s.
func (r *Runtime) reserve(s *spillFS) error {
	r.spills.mu.Lock()
	defer r.spills.mu.Unlock()
	var st unix.Statfs_t
	if err := unix.Statfs(r.spillDir(), &st); err != nil {
		return err
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	need := s.size
	for o := range r.spills.live {
		if !o.frozen {
			need += o.size - allocated(o.image)
		}
	}
	if free < need {
		return fmt.Errorf("%w: the disk of %s has %d MiB free, spill areas need %d MiB; free space, or give jobs smaller spill areas", ErrUnavailable, r.spillDir(), free>>20, need>>20)
	}
	if r.spills.live == nil {
		r.spills.live = map[*spillFS]bool{}
	}
	r.spills.live[s] = true
	s.r = r
	return nil
}

// allocated is how much of an image is on disk.
func allocated(path string) int64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

// spillDir holds images and mount points; like the rootfs directory it is traversable but
// not listable, so that a container's root (an unprivileged uid) can reach its own mount.
func (r *Runtime) spillDir() string { return filepath.Join(r.stateDir, "spill") }

// SpillErr says why this host cannot give jobs spill areas (Limits.SpillBytes): no
// mkfs.ext4 or no loop devices; nil when it can.
func (r *Runtime) SpillErr() error { return r.spillErr }

// checkSpill reports why spill areas cannot be made here, or nil.
func checkSpill() error {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("%w: a job's spill area needs mkfs.ext4 (Debian: e2fsprogs)", ErrUnavailable)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("%w: a job's spill area needs loop devices (/dev/loop-control: %v)", ErrUnavailable, err)
	}
	return nil
}

// makeSpill creates, formats and mounts a spill file system of size bytes whose root
// belongs to uid. mkfs runs in the CPU cgroup cgroup when it is not empty (a sandbox
// prepared ahead: at its least share, so that formatting never takes CPU from a job).
func (r *Runtime) makeSpill(ctx context.Context, cid string, size, uid int64, cgroup string) (_ *spillFS, err error) {
	if r.spillErr != nil {
		return nil, r.spillErr
	}
	s := &spillFS{image: filepath.Join(r.spillDir(), cid+".img"), dir: filepath.Join(r.spillDir(), cid), size: size}
	if err := r.reserve(s); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.remove())
		}
	}()
	f, err := os.OpenFile(s.image, os.O_CREATE|os.O_EXCL|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil { // sparse: blocks are allocated as the job writes
		return nil, err
	}
	// No journal (nothing on it survives a crash anyway), few inodes' worth of tables,
	// nothing reserved for root, the root directory the job's own; 4 KiB blocks, the
	// loop device's block size (which direct I/O needs).
	owner := strconv.FormatInt(uid, 10)
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-i", "65536", "-O", "^has_journal,^resize_inode",
		"-E", "root_owner="+owner+":"+owner+",lazy_itable_init=1,nodiscard", s.image)
	var out bytes.Buffer
	mkfs.Stdout, mkfs.Stderr = &out, &out
	err = mkfs.Start()
	if err == nil {
		if cgroup != "" {
			// Best effort: it may have run its first instructions in the daemon's cgroup.
			_ = os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(mkfs.Process.Pid)), 0)
		}
		err = mkfs.Wait()
	}
	if err != nil {
		return nil, fmt.Errorf("format spill area: %v: %s", err, strings.TrimSpace(out.String()))
	}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		return nil, err
	}
	dev, err := attachLoop(f)
	if err != nil {
		return nil, err
	}
	// The mount holds the loop device; once it is unmounted the device detaches itself
	// (autoclear), also when the daemon dies before it could do so.
	err = unix.Mount(dev.Name(), s.dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME, "")
	dev.Close()
	if err != nil {
		return nil, fmt.Errorf("mount spill area: %w", err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return nil, err
	}
	return s, nil
}

// attachLoop attaches f to a free loop device with direct I/O (the job's spilled pages are
// not cached a second time on the host) and autoclear, and returns the open device.
func attachLoop(f *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile("/dev/loop"+strconv.Itoa(n), os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Size: 4096, Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO}}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		// Another process took the same free device between the two calls.
		if !errors.Is(err, unix.EBUSY) || attempt > 20 {
			return nil, fmt.Errorf("attach loop device: %w", err)
		}
	}
}

// remove wipes and removes the spill file system: its files are deleted first, so that
// unmounting has nothing to write back, then it is unmounted and its image removed. One
// that cannot be unmounted (a process still holds it) keeps its image and its place in the
// runtime's account of the disk, as it may still grow; removing it again once nothing
// holds it (or Cleanup after a restart) finishes the job.
func (s *spillFS) remove() error {
	var errs []error
	if mounted(s.dir) {
		ents, _ := os.ReadDir(s.dir)
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
		if err := unmount(s.dir); err != nil {
			return errors.Join(append(errs, fmt.Errorf("unmount spill area: %w", err))...)
		}
	}
	if err := os.Remove(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := os.Remove(s.image); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if s.r != nil {
		s.r.spills.mu.Lock()
		delete(s.r.spills.live, s)
		s.r.spills.mu.Unlock()
	}
	return errors.Join(errs...)
}

// unmount unmounts dir, retrying while the file system is busy: a container that is being
// destroyed may still hold its bind mount for a moment.
func unmount(dir string) error {
	var err error
	for i := 0; i < 200; i++ {
		if err = unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// mounted reports whether something is mounted on dir.
func mounted(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// cleanupSpill removes the spill areas a crashed daemon left (after their containers are
// gone, so that nothing holds them).
func (r *Runtime) cleanupSpill() error {
	ents, err := os.ReadDir(r.spillDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".img")
		if !strings.HasPrefix(name, containerPrefix) {
			continue
		}
		s := &spillFS{image: filepath.Join(r.spillDir(), name+".img"), dir: filepath.Join(r.spillDir(), name)}
		if err := s.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
