// Package sandbox runs one job in a fresh, locked-down container (runc's
// libcontainer used as a library) and hands back its exit status and its
// result stream. A Spec goes in (argv, environment, stdin, mounts, an
// optional runtime image, limits); a Result comes out (status, exit code,
// usage, bounded stdout and stderr for operators, and a sanitized message for
// vendors), and the bytes the job wrote on fd 3 are copied to the caller's
// writer.
//
// Invariants:
//
//   - It knows nothing of SQL, grants or datasets: a job is a binary, its
//     arguments and some host paths to mount.
//   - Every container is destroyed and its cgroups removed when Run returns,
//     on success, on a limit breach, on ctx cancellation and on errors. A
//     Pool's sandbox runs exactly one job: when Pool.Run returns its job's
//     processes are gone, and the rest of it is removed right after (Close
//     waits for that); a sandbox is never handed a second job. A
//     daemon killed with -9 takes its running jobs with it (a job that
//     calls Init sets a parent-death signal, see spawn_linux.go); Cleanup removes what is left (state,
//     cgroups, root filesystems) at the next start.
//   - Nothing leaves a container but the result pipe (fd 3, size-limited)
//     and what the job writes to a mount the caller made Writable.
//     Stdout and stderr are captured, bounded, for operators only; they are
//     never meant for vendors. Result.Message never contains a data value,
//     a host path or a stack trace.
//   - It never mounts anything writable but the /scratch tmpfs, the job's
//     own spill area at /spill (when Limits.SpillBytes asks for one) and the
//     mounts the caller marks Writable (which stay nosuid, nodev, noexec),
//     never lets a job execute a file it can write, and never lets a job see
//     the host's file system: a job's root is a per-job skeleton holding only
//     mount points, and an image or a mount can never cover /proc, /dev,
//     /scratch or another mount.
//
// What a job sees: a read-only root holding only the job binary (bind-mounted
// at Args[0]) and the shared libraries it needs (the ELF's loader and
// DT_NEEDED closure, computed once in New); /proc with runc's default masked
// and read-only paths; a read-only /dev with null, zero, random and urandom;
// a size-limited tmpfs at /scratch (/tmp links to it); the Spec's mounts,
// read-only and no-exec unless the Mount says Writable (read-write, still
// no-exec) or Exec (executable, still read-only). No /sys, no /etc. Fresh
// mount, pid, ipc, uts, net (loopback only) and cgroup namespaces, and a
// user namespace in which container root is one unprivileged host uid
// owning nothing: each container gets its own (DefaultHostID and the next
// 65535 uids, in turn), one no other live container on the host has, of
// any Runtime or process (a lock per uid under /run/veil/uids).
// No capabilities, no_new_privs, RLIMIT_CORE 0, RLIMIT_NOFILE 4096, and a
// seccomp allow-list (default EPERM; clone without namespace flags; no
// ptrace, mount, unshare, setns, bpf, io_uring, keyctl, ...). Only fds 0-3
// are open when the job starts. Memory (no swap), pids and CPU quota are
// cgroup limits; wall clock is a timer. Breaches end the job with a distinct
// Status.
//
// Spill areas: with Limits.SpillBytes, a job gets /spill, a file system of its
// own (an ext4 image on the state directory's disk, on a loop device with
// direct I/O) of that size, owned by the job's root with mode 0700 and mounted
// into no other sandbox; it is wiped and removed with the sandbox, and by
// Cleanup after a crash (see spill_linux.go for why not a tmpfs or a quota).
//
// Pools: a Pool keeps sandboxes of one Template (the runner, its limits)
// prepared ahead, program started and waiting for its stdin, at the least CPU
// share (an idle cgroup where the kernel has cpu.idle). A job's mounts are attached when it is handed over (cloned with
// open_tree, flags set with mount_setattr before they are attached, moved into
// the container's mount namespace from a thread that enters it and is then
// discarded), then its stdin is written. Its metering starts at the hand-over.
//
// Runtime images (custom jobs): with Spec.Image, the root holds a runtime
// image's top-level entries instead of the job binary and its libraries
// (e.g. a minimal Python root filesystem): directories and files
// bind-mounted read-only, nosuid and nodev but executable, symlinks
// (/bin -> usr/bin) recreated; entries named /proc, /dev, /sys, /tmp,
// /scratch or like the first component of a mount destination are left
// out. Args[0] is then a program of the image, or a vendor's binary mounted
// with Exec (e.g. /job/program). The container's init is still this binary,
// re-executed from the host, so an image needs no veil binary. Images are
// made by ImportImage, which copies a directory or tarball into a new
// directory (regular files, directories and symlinks only, nothing outside
// its root, no setuid bits) and names it by a digest of its content; an
// image is shared by many jobs and never written. Jobs read it as an
// unprivileged user, so its files must be readable by others.
//
// Binaries that can be a container init must call Init first thing in main:
// the job binary re-executes itself as "init" (libcontainer's nsexec runs as
// a C constructor before the Go runtime, which is why this package imports
// libcontainer/nsenter and needs cgo). Seccomp needs the "seccomp" build tag
// and libseccomp-dev; without it New refuses to run, saying so.
//
// This package must never run a prod job without the sandbox: RunLocal is
// for development, tests and benchmarks only, and New returns an error
// wrapping ErrUnavailable, saying why, where containers cannot be created.
package sandbox
