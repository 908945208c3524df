//go:build linux

package fault

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Syscall sets for Fail.
var (
	Fsync = []uintptr{unix.SYS_FSYNC, unix.SYS_FDATASYNC}
	// Pwrite is how SQLite writes its database and WAL; Go's own writes (the test's
	// output) use write(2) and keep working.
	Pwrite = []uintptr{unix.SYS_PWRITE64}
)

// Fail makes every later call of the given system calls fail with errno, in every thread of
// the process. With fd ≥ 0 only calls on that file descriptor fail.
func Fail(errno syscall.Errno, fd int, calls []uintptr) error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("fault: no seccomp architecture for %s", runtime.GOARCH)
	}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
		// struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6] (little end first).
		offNr, offArch, offArg0 = 0, 4, 16
	)
	var prog []unix.SockFilter
	// Layout: arch check, nr checks (each jumps to the fd check or the errno), allow,
	// [fd check], errno.
	n := len(calls)
	allowAt := 3 + n // index of the allow instruction
	prog = append(prog,
		unix.SockFilter{Code: ld, K: offArch},
		unix.SockFilter{Code: jeq, K: arch, Jt: 0, Jf: uint8(allowAt - 2)},
		unix.SockFilter{Code: ld, K: offNr},
	)
	for i, nr := range calls {
		here := 3 + i
		prog = append(prog, unix.SockFilter{Code: jeq, K: uint32(nr), Jt: uint8(allowAt + 1 - here - 1), Jf: 0})
	}
	prog = append(prog, unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW})
	if fd >= 0 {
		// At allowAt+1: load arg0, if == fd fall through to errno, else allow.
		prog = append(prog,
			unix.SockFilter{Code: ld, K: offArg0},
			unix.SockFilter{Code: jeq, K: uint32(fd), Jt: 1, Jf: 0},
			unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		)
	}
	prog = append(prog, unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(errno)})
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("fault: no_new_privs: %w", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		return fmt.Errorf("fault: install seccomp filter: %w", e)
	}
	runtime.KeepAlive(prog)
	return nil
}

const childEnv = "VEIL_FAULT_CHILD"

// InChild reports whether this test process is the child RunChild started for the
// top-level test name. A test checks it first thing, before any subtest.
func InChild(name string) bool { return os.Getenv(childEnv) == name }

// RunChild runs the current test binary again with only t's top-level test selected and
// InChild true for it, passing env, and returns what it printed. The child's failures are
// the parent's.
func RunChild(t *testing.T, env ...string) string {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Fatal("fault.RunChild called in the child: check fault.InChild before starting subtests")
	}
	top, _, _ := strings.Cut(t.Name(), "/")
	cmd := exec.Command(os.Args[0], "-test.run=^"+top+"$", "-test.v", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childEnv+"="+top), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process failed: %v\n%s", err, out)
	}
	return string(out)
}
