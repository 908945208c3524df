package sandbox

import (
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// allowedSyscalls is what a Go binary with cgo DuckDB (and the tail of
// libcontainer's init, which runs after the filter is loaded) needs.
// Everything else fails with EPERM. Keep it sorted by topic, not alphabet:
// reviewers read it by what it lets a job do.
var allowedSyscalls = []string{
	// memory
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
	"mlock", "munlock", "membarrier", "get_mempolicy", "set_mempolicy", "mbind",
	// threads, futexes, scheduling
	"futex", "futex_waitv", "set_robust_list", "get_robust_list", "set_tid_address",
	"rseq", "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
	"sched_getscheduler", "sched_getattr", "sched_get_priority_max",
	"sched_get_priority_min", "getcpu", "arch_prctl", "prctl",
	// processes (clone is allowed below without namespace flags)
	"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
	"kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid", "getpgrp",
	"setpgid", "getsid", "setsid", "getuid", "geteuid", "getgid", "getegid",
	"getresuid", "getresgid", "getgroups", "capget", "getpriority", "setpriority",
	"getrlimit", "setrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname",
	"pidfd_open", "pidfd_send_signal",
	// signals
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending",
	"rt_sigsuspend", "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
	"sigaltstack", "restart_syscall", "pause",
	// time
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday",
	"time", "getitimer", "setitimer", "alarm", "timer_create", "timer_settime",
	"timer_gettime", "timer_getoverrun", "timer_delete", "timerfd_create",
	"timerfd_settime", "timerfd_gettime",
	// files
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range",
	"lseek", "dup", "dup2", "dup3", "fcntl", "flock", "fsync", "fdatasync", "syncfs",
	"sync_file_range", "ftruncate", "truncate", "fallocate", "fadvise64", "readahead",
	"sendfile", "copy_file_range", "splice", "tee", "stat", "fstat", "lstat",
	"newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2",
	"getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir",
	"rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat",
	"symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat",
	"fchmodat2", "chown", "fchown", "fchownat", "lchown", "umask", "utime", "utimes",
	"utimensat", "futimesat", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
	"llistxattr", "flistxattr", "ioctl", "pipe", "pipe2",
	// polling
	"poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1",
	"epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
	// sockets: the network namespace only has loopback; socket() is limited to
	// unix and inet families below.
	"socketpair", "bind", "listen", "accept", "accept4", "connect", "shutdown",
	"getsockname", "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom",
	"sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
	// randomness
	"getrandom",
}

// deniedSyscalls are never allowed, whatever allowedSyscalls says; the test
// suite checks that the two lists do not meet. They are listed (rather than
// left to the default action) so that the intent survives edits.
var deniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
	"mount_setattr", "unshare", "setns", "bpf", "perf_event_open", "keyctl",
	"add_key", "request_key", "io_uring_setup", "io_uring_enter",
	"io_uring_register", "userfaultfd", "kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module", "clock_settime",
	"clock_adjtime", "adjtimex", "settimeofday", "pivot_root", "chroot", "swapon",
	"swapoff", "reboot", "name_to_handle_at", "open_by_handle_at", "acct",
	"quotactl", "lookup_dcookie", "personality", "syslog", "uselib", "vhangup",
	"iopl", "ioperm", "kcmp", "pidfd_getfd", "setuid", "setgid", "setreuid",
	"setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
	"capset", "seccomp", "sethostname", "setdomainname",
}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// seccompProfile builds the container's filter: default EPERM, the allow
// list, clone without namespace flags, clone3 reported as absent (its flags
// live in memory a filter cannot read, so libc falls back to clone), socket
// only for AF_UNIX, AF_INET and AF_INET6.
func seccompProfile() *configs.Seccomp {
	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	s := &configs.Seccomp{
		DefaultAction:   configs.Errno,
		DefaultErrnoRet: &eperm,
	}
	for _, name := range allowedSyscalls {
		s.Syscalls = append(s.Syscalls, &configs.Syscall{Name: name, Action: configs.Allow})
	}
	s.Syscalls = append(s.Syscalls,
		&configs.Syscall{Name: "clone", Action: configs.Allow, Args: []*configs.Arg{
			{Index: 0, Value: namespaceFlags, ValueTwo: 0, Op: configs.MaskEqualTo},
		}},
		&configs.Syscall{Name: "clone3", Action: configs.Errno, ErrnoRet: &enosys},
	)
	for _, family := range []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6} {
		s.Syscalls = append(s.Syscalls, &configs.Syscall{Name: "socket", Action: configs.Allow,
			Args: []*configs.Arg{{Index: 0, Value: family, Op: configs.EqualTo}}})
	}
	return s
}
