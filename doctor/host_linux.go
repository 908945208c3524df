package doctor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"

	"github.com/veil-dp/veil/sandbox"
)

// The kernel versions Veil's sandbox depends on: cgroup namespaces and the cgroup v2 cpu
// controller (4.15); memory.peak, which job metering reads on cgroup v2 (5.19).
var (
	minKernel  = [2]int{4, 15}
	peakKernel = [2]int{5, 19}
)

// hostChecks are what sandbox.New needs of the host, checked without creating anything.
func hostChecks(ctx context.Context) []Check {
	root := os.Geteuid() == 0
	out := []Check{rootCheck(root), kernelCheck()}
	out = append(out, cgroupCheck(root), namespaceCheck(ctx, root), seccompCheck())
	return out
}

func rootCheck(root bool) Check {
	if root {
		return ok("privileges", "running as root, as the daemon must to create containers")
	}
	return fail("privileges", "run veil serve, and veil doctor, as root: the daemon creates containers (each job then runs as an unprivileged, capability-less uid)",
		"running as uid %d, not root", os.Geteuid())
}

// kernelRelease parses "6.1.0-18-amd64" into major and minor.
func kernelRelease(s string) (major, minor int, err error) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("kernel release %q", s)
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("kernel release %q", s)
	}
	return major, minor, nil
}

func older(major, minor int, than [2]int) bool {
	return major < than[0] || (major == than[0] && minor < than[1])
}

func kernelCheck() Check {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fail("kernel", "", "uname: %v", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	major, minor, err := kernelRelease(rel)
	switch {
	case err != nil:
		return warn("kernel", "", "cannot read the kernel version from %q", rel)
	case older(major, minor, minKernel):
		return fail("kernel", fmt.Sprintf("upgrade to Linux %d.%d or later", minKernel[0], minKernel[1]),
			"Linux %s: the sandbox needs cgroup namespaces and the cgroup v2 cpu controller (Linux %d.%d)", rel, minKernel[0], minKernel[1])
	case cgroups.IsCgroup2UnifiedMode() && older(major, minor, peakKernel):
		return warn("kernel", fmt.Sprintf("upgrade to Linux %d.%d or later for peak-memory metering", peakKernel[0], peakKernel[1]),
			"Linux %s: jobs run, but their peak memory is not metered (memory.peak needs Linux %d.%d)", rel, peakKernel[0], peakKernel[1])
	}
	return ok("kernel", "Linux %s", rel)
}

// missing returns the names in want that are not among the space-separated fields of have.
func missing(have string, want []string) []string {
	got := map[string]bool{}
	for _, f := range strings.Fields(have) {
		got[f] = true
	}
	var out []string
	for _, w := range want {
		if !got[w] {
			out = append(out, w)
		}
	}
	return out
}

// The controllers the sandbox puts limits in (sandbox/runtime_linux.go, New).
var (
	v2Controllers = []string{"cpu", "memory", "pids"}
	v1Controllers = []string{"memory", "pids", "cpu", "cpuacct", "devices", "freezer"}
)

// cgroupCheck checks the controllers where the daemon creates its job cgroups: a parent
// /veil-<hash of the state directory> directly under the root of the hierarchy, so the
// root cgroup must delegate cpu, memory and pids to its children (cgroup v2), or each v1
// controller must be mounted, and the hierarchy must be writable by the daemon.
func cgroupCheck(root bool) Check {
	const name = "cgroups"
	if cgroups.IsCgroup2UnifiedMode() {
		const mnt = "/sys/fs/cgroup"
		avail, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
		if err != nil {
			return fail(name, "mount cgroup2 on /sys/fs/cgroup", "cgroup v2: cannot read the controllers: %v", err)
		}
		if m := missing(string(avail), v2Controllers); len(m) > 0 {
			return fail(name, "enable the controllers in the kernel (check the kernel command line for cgroup_disable=)",
				"cgroup v2: the kernel offers no %s controller", strings.Join(m, ", "))
		}
		sub, err := os.ReadFile(filepath.Join(mnt, "cgroup.subtree_control"))
		if err != nil {
			return fail(name, "", "cgroup v2: cannot read the root's cgroup.subtree_control: %v", err)
		}
		if m := missing(string(sub), v2Controllers); len(m) > 0 {
			return fail(name, fmt.Sprintf("enable them for the root's children: echo '+%s' > %s/cgroup.subtree_control (systemd does this on a normal boot)", strings.Join(m, " +"), mnt),
				"cgroup v2: the root cgroup does not delegate %s to the job cgroups under it", strings.Join(m, ", "))
		}
		if root {
			if err := unix.Access(mnt, unix.W_OK); err != nil {
				return fail(name, "do not run the daemon with ProtectControlGroups=yes or in a container with a read-only /sys/fs/cgroup",
					"cgroup v2: %s is not writable (%v): the daemon creates its job cgroups there", mnt, err)
			}
		}
		return ok(name, "cgroup v2; the root delegates %s to the job cgroups (created under %s/veil-*)", strings.Join(v2Controllers, ", "), mnt)
	}
	var bad []string
	for _, c := range v1Controllers {
		mp, err := cgroups.FindCgroupMountpoint("", c)
		if err != nil {
			bad = append(bad, c+" (not mounted)")
			continue
		}
		if root && unix.Access(mp, unix.W_OK) != nil {
			bad = append(bad, c+" (read-only)")
		}
	}
	if len(bad) > 0 {
		return fail(name, "mount the cgroup v1 controllers writable, or boot with the unified hierarchy (cgroup v2: systemd.unified_cgroup_hierarchy=1)",
			"cgroup v1: the sandbox needs %s; missing: %s", strings.Join(v1Controllers, ", "), strings.Join(bad, ", "))
	}
	return warn(name, "boot with the unified hierarchy (cgroup v2: systemd.unified_cgroup_hierarchy=1) when you can",
		"cgroup v1: the sandbox works (controllers %s mounted), but cgroup v2 is what systemd delegation and the unit in deploy/ assume", strings.Join(v1Controllers, ", "))
}

// namespaceCheck looks for the namespaces a job gets and, as root, starts a process in all
// of them with the sandbox's uid mapping, as the sandbox will: a kernel that has them can
// still refuse them (user.max_user_namespaces=0, a seccomp filter on the daemon, a
// container runtime around it).
func namespaceCheck(ctx context.Context, root bool) Check {
	const name = "namespaces"
	for _, ns := range []string{"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return fail(name, "use a kernel built with namespaces (CONFIG_"+strings.ToUpper(ns)+"_NS)", "the kernel has no %s namespace", ns)
		}
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return fail(name, "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)",
			"user namespaces are disabled (user.max_user_namespaces=0): each job's root is an unprivileged host uid in one")
	}
	if !root {
		return skip(name, "the kernel has every namespace a job needs; starting a process in them needs root")
	}
	bin := ""
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return ok(name, "the kernel has every namespace a job needs (no /bin/true to start a process in them)")
	}
	cmd := exec.CommandContext(ctx, bin)
	id := []syscall.SysProcIDMap{{ContainerID: 0, HostID: sandbox.DefaultHostID, Size: 1}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | unix.CLONE_NEWCGROUP,
		UidMappings: id, GidMappings: id,
	}
	if err := cmd.Run(); err != nil {
		return fail(name, "allow the daemon to create namespaces: no seccomp filter or container runtime that forbids unshare and clone with namespace flags, user.max_user_namespaces > 0",
			"a process in new user, mount, pid, net, ipc, uts and cgroup namespaces could not start: %v", err)
	}
	return ok(name, "a process started in new user (root mapped to uid %d), mount, pid, net, ipc, uts and cgroup namespaces", sandbox.DefaultHostID)
}

func seccompCheck() Check {
	const name = "seccomp"
	if !seccomp.Enabled {
		return fail(name, "build with cgo, libseccomp-dev and -tags seccomp (make build does)", "this binary was built without seccomp support: the daemon refuses to run jobs")
	}
	if err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return fail(name, "use a kernel with CONFIG_SECCOMP_FILTER", "the kernel has no seccomp support: %v", err)
	}
	major, minor, micro := seccomp.Version()
	return ok(name, "the kernel filters system calls; libseccomp %d.%d.%d", major, minor, micro)
}

// diskCheck checks the free space (and inodes) of the data directory's file system against
// the floor: a full disk fails writes to the store, and so every job submission.
func diskCheck(dir string, floor uint64) Check {
	const name = "disk"
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fail(name, "create the data directory with veil init", "cannot read the free space of %s: %v", dir, err)
	}
	free, total := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	what := fmt.Sprintf("%s free of %s on the file system of %s", bytesText(free), bytesText(total), dir)
	switch {
	case free < floor:
		return fail(name, fmt.Sprintf("free space on that file system (old dev twins, work/ of finished jobs), or move the data directory; the floor is %s (--min-free-mb)", bytesText(floor)),
			"%s: below the floor of %s", what, bytesText(floor))
	case st.Files > 0 && st.Ffree < st.Files/100:
		return fail(name, "free inodes on that file system", "%d of %d inodes free on the file system of %s", st.Ffree, st.Files, dir)
	case free < 2*floor:
		return warn(name, "free space soon: it is less than twice the floor", "%s", what)
	}
	return ok(name, "%s", what)
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
