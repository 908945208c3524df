package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is its own container init and its own job: TestMain calls
// Init, and "payload NAME ARGS..." runs one behaviour below. Payloads write
// their findings to fd 3 with raw syscalls, so that the Go runtime opens no
// descriptor of its own (an epoll fd would show up in the fds payload).

func runPayload(args []string) {
	name := args[0]
	args = args[1:]
	var out bytes.Buffer
	code := 0
	switch name {
	case "job":
		// A stand-in for the runner in a pooled sandbox: read the job (the argv of a
		// payload, one per line) from stdin to the end, then run it.
		b, _ := readAll(0)
		job := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(job) == 0 || job[0] == "" || job[0] == "job" {
			os.Exit(2)
		}
		runPayload(job)
	case "mounts":
		// Mount point, per-mount options and file system type of every mount.
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			code = 1
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			sep := slices.Index(f, "-")
			if len(f) < 6 || sep < 0 || sep+1 >= len(f) {
				continue
			}
			fmt.Fprintf(&out, "%s %s %s\n", f[4], f[5], f[sep+1])
		}
	case "ls":
		for _, p := range args {
			ents, err := os.ReadDir(p)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			fmt.Fprintf(&out, "%s: %v %v\n", p, names, err)
		}
	case "fill":
		// Write n MiB to a file, reporting how far it got.
		n, _ := strconv.Atoi(args[1])
		f, err := os.Create(args[0])
		if err == nil {
			chunk := bytes.Repeat([]byte("s"), 1<<20)
			for i := 0; i < n && err == nil; i++ {
				_, err = f.Write(chunk)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		fmt.Fprintf(&out, "%s: %v\n", args[0], err)
	case "stat":
		for _, p := range args {
			var st unix.Stat_t
			err := unix.Stat(p, &st)
			fmt.Fprintf(&out, "%s: uid %d mode %o %v\n", p, st.Uid, st.Mode&0o7777, err)
		}
	case "statfs":
		// Size of the file system at each path: blocks, block size, inodes, type.
		for _, p := range args {
			var st unix.Statfs_t
			err := unix.Statfs(p, &st)
			fmt.Fprintf(&out, "%s: blocks %d bsize %d files %d type %x %v\n", p, st.Blocks, st.Bsize, st.Files, st.Type, err)
		}
	case "pids":
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err == nil {
				fmt.Fprintf(&out, "%s ", e.Name())
			}
		}
	case "true":
	case "false":
		code = 3
	case "echo":
		b, _ := readAll(0)
		out.Write(b)
		fmt.Fprint(os.Stdout, "to stdout")
		fmt.Fprint(os.Stderr, "to stderr")
	case "status":
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			code = 1
		}
		out.Write(b)
	case "open":
		for _, p := range args {
			fd, err := unix.Open(p, unix.O_RDONLY, 0)
			if err == nil {
				unix.Close(fd)
				fmt.Fprintf(&out, "%s: ok\n", p)
			} else {
				fmt.Fprintf(&out, "%s: %v\n", p, err)
			}
		}
	case "connect":
		for _, addr := range args {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err == nil {
				c.Close()
				fmt.Fprintf(&out, "%s: connected\n", addr)
			} else {
				fmt.Fprintf(&out, "%s: %v\n", addr, err)
			}
		}
	case "write":
		for _, p := range args {
			err := os.WriteFile(p, []byte("x"), 0o644)
			if err == nil {
				fmt.Fprintf(&out, "%s: ok\n", p)
			} else {
				fmt.Fprintf(&out, "%s: %v\n", p, err)
			}
		}
	case "syscalls":
		try := func(name string, err error) { fmt.Fprintf(&out, "%s: %v\n", name, err) }
		try("unshare", unix.Unshare(unix.CLONE_NEWUSER))
		try("mount", unix.Mount("tmpfs", "/scratch", "tmpfs", 0, ""))
		_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		try("ptrace", errnoErr(e))
		_, _, e = unix.RawSyscall(unix.SYS_BPF, 0, 0, 0)
		try("bpf", errnoErr(e))
		_, _, e = unix.RawSyscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
		try("io_uring_setup", errnoErr(e))
		_, _, e = unix.RawSyscall(unix.SYS_CLONE, unix.CLONE_NEWNET, 0, 0)
		try("clone-newnet", errnoErr(e))
		_, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, 0)
		try("socket-netlink", err)
		_, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		try("socket-packet", err)
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		try("socket-inet", err)
	case "fds":
		fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			code = 1
			break
		}
		buf := make([]byte, 4096)
		n, _ := unix.Getdents(fd, buf)
		var names []string
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		for _, nm := range names {
			// The Go runtime keeps the cgroup CPU limit files open to track
			// GOMAXPROCS; they are the job's own (and absent in a container,
			// which has no /sys).
			link, _ := os.Readlink("/proc/self/fd/" + nm)
			if nm != strconv.Itoa(fd) && !strings.HasPrefix(link, "/sys/fs/cgroup/") {
				fmt.Fprintf(&out, "%s ", nm)
			}
		}
	case "forkbomb":
		for {
			cmd := exec.Command("/proc/self/exe", "payload", "sleep")
			_ = cmd.Start()
		}
	case "daemon":
		// A stand-in for the daemon: start a job and wait to be killed -9.
		r, err := New(args[0], WithCgroupParent("/veil-test"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_, err = r.Run(context.Background(), Spec{ID: args[1], Args: []string{"/veil", "payload", "sleep"}}, io.Discard)
		fmt.Fprintln(os.Stderr, "job ended before the daemon was killed:", err)
		os.Exit(1)
	case "pooldaemon":
		// A stand-in for a daemon with a pool of two sandboxes prepared ahead (with spill
		// areas), one of them running a job, until it is killed -9.
		r, err := New(args[0], WithCgroupParent("/veil-test"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		p, err := r.NewPool(Template{Args: []string{"/veil", "payload", "job"}, Limits: Limits{SpillBytes: 16 << 20}}, 2)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for len(p.ready) < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		_, err = p.Run(context.Background(), Spec{ID: args[1], Stdin: []byte("sleep")}, io.Discard)
		fmt.Fprintln(os.Stderr, "job ended before the daemon was killed:", err)
		os.Exit(1)
	case "sleep":
		// Past Init (and its parent-death signal): tell whoever looks in
		// through /proc/PID/root.
		_ = os.WriteFile("/scratch/ready", nil, 0o644)
		time.Sleep(time.Hour)
	case "membomb":
		var keep [][]byte
		for {
			b := make([]byte, 16<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "spin":
		for {
		}
	case "stderr":
		// n bytes of noise on stderr, then the line that says what went wrong, and failure.
		n, _ := strconv.Atoi(args[0])
		os.Stderr.Write(bytes.Repeat([]byte("noise\n"), n/6))
		os.Stderr.WriteString("panic: the line that says what went wrong\n")
		code = 3
	case "result":
		n, _ := strconv.Atoi(args[0])
		b := bytes.Repeat([]byte("r"), 64<<10)
		for n > 0 {
			k := min(n, len(b))
			if err := writeAll(3, b[:k]); err != nil {
				os.Exit(1)
			}
			n -= k
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown payload %q\n", name)
		code = 2
	}
	if err := writeAll(3, out.Bytes()); err != nil {
		code = 1
	}
	os.Exit(code)
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func readAll(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
		}
		if n == 0 || err != nil {
			return out, err
		}
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// field returns the value of "Key:\tvalue" in /proc/self/status text.
func field(status, key string) string {
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
