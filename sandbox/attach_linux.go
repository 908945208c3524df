package sandbox

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// attach bind-mounts a job's mounts into the running container whose init is pid, after the
// container was started: the way a sandbox prepared ahead receives its job's files.
//
// Each source is cloned here, in the daemon's mount namespace, as a detached mount
// (open_tree, never recursive: nothing mounted below a source comes along), and its flags
// are set on the clone before it is attached (mount_setattr: read-only, nosuid, nodev and
// noexec unless the Mount says otherwise), so the job never sees it with other flags. A
// thread of its own then enters the container's mount namespace and moves the clones onto
// their mount points, which the caller made in the container's root skeleton on the host
// (the container sees them at once: its root is that directory). That thread has changed
// namespace and is thrown away (its goroutine ends locked to it). The mounts live in the
// container's mount namespace only and disappear with it.
func attach(pid int, mounts []Mount) error {
	if len(mounts) == 0 {
		return nil
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, m := range mounts {
		fd, err := unix.OpenTree(unix.AT_FDCWD, m.Source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("clone mount source %s: %w", m.Destination, err)
		}
		fds = append(fds, fd)
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Propagation: unix.MS_PRIVATE}
		if !m.Writable {
			attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
		}
		if !m.Exec {
			attr.Attr_set |= unix.MOUNT_ATTR_NOEXEC
		}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("set flags of mount %s: %w", m.Destination, err)
		}
	}
	// The mount points are resolved inside the container's root, with no symlink followed
	// (there are none: the skeleton is ours), before entering its namespace.
	root, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the container's root: %w", err)
	}
	defer unix.Close(root)
	var targets []int
	defer func() {
		for _, fd := range targets {
			unix.Close(fd)
		}
	}()
	for _, m := range mounts {
		fd, err := unix.Openat2(root, strings.TrimPrefix(m.Destination, "/"), &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			return fmt.Errorf("mount point %s: %w", m.Destination, err)
		}
		targets = append(targets, fd)
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	if err != nil {
		return fmt.Errorf("open the container's mount namespace: %w", err)
	}
	defer ns.Close()
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread leaves with this goroutine, so no other goroutine
		// ever runs in the container's mount namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unshare the file system context: %w", err)
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("enter the container's mount namespace: %w", err)
			return
		}
		var errs []error
		for i, m := range mounts {
			if err := unix.MoveMount(fds[i], "", targets[i], "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
				errs = append(errs, fmt.Errorf("mount %s: %w", m.Destination, err))
			}
		}
		done <- errors.Join(errs...)
	}()
	return <-done
}
