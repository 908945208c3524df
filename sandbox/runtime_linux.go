package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"
)

// DefaultHostID is the host uid and gid that root inside a container maps to
// when user namespaces are in use. It is far above the ranges useradd and
// /etc/subuid hand out, so it owns nothing on the host.
const DefaultHostID = 1_900_000_000

// Option configures a Runtime.
type Option func(*options)

type options struct {
	binary       string
	cgroupParent string
	hostID       int64
	noUserNS     bool
}

// WithBinary sets the host binary that is mounted at Spec.Args[0] in every
// container (default: the running executable, i.e. the veil binary itself).
func WithBinary(path string) Option { return func(o *options) { o.binary = path } }

// WithCgroupParent sets the cgroup under which job cgroups are created
// (default "/veil-" and a hash of the state directory, absolute in every hierarchy).
func WithCgroupParent(p string) Option { return func(o *options) { o.cgroupParent = p } }

// WithHostID sets the host uid/gid that container root maps to.
func WithHostID(id int64) Option { return func(o *options) { o.hostID = id } }

// WithoutUserNamespace runs containers without a user namespace: container
// root is then host root without capabilities. Only for kernels that forbid
// user namespaces; New refuses to fall back on its own.
func WithoutUserNamespace() Option { return func(o *options) { o.noUserNS = true } }

// Runtime creates and destroys job containers. It owns a state directory
// (libcontainer state under containers/, per-job root filesystems made of
// mount points under rootfs/) and a cgroup parent. Run is safe for
// concurrent use.
type Runtime struct {
	stateDir      string
	containersDir string
	rootfsDir     string
	binary        string
	libs          []libMount
	cgroupParent  string
	hostID        int64
	userNS        bool
	cgroup2       bool
	memsw         bool
	seccomp       *configs.Seccomp
	spillErr      error // why spill areas cannot be made here (nil: they can)
	spills        spillBook
}

// New checks that this host can create containers and prepares what every
// container shares (library list, seccomp profile). It returns an error
// wrapping ErrUnavailable that says why when it cannot.
func New(stateDir string, opts ...Option) (*Runtime, error) {
	o := options{hostID: DefaultHostID}
	for _, opt := range opts {
		opt(&o)
	}
	if o.cgroupParent == "" {
		// Each state directory has a cgroup parent of its own, so that Cleanup, which
		// destroys every job cgroup under it, never touches another runtime's jobs (two
		// daemons, or tests, on one host).
		abs, err := filepath.Abs(stateDir)
		if err != nil {
			return nil, fmt.Errorf("%w: state dir: %v", ErrUnavailable, err)
		}
		sum := sha256.Sum256([]byte(abs))
		o.cgroupParent = "/veil-" + hex.EncodeToString(sum[:6])
	}
	unavailable := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrUnavailable}, a...)...)
	}
	if os.Geteuid() != 0 {
		return nil, unavailable("the daemon must run as root to create containers (euid %d)", os.Geteuid())
	}
	if !seccomp.Enabled {
		return nil, unavailable("this binary was built without seccomp support; build with cgo, libseccomp-dev and -tags seccomp")
	}
	if err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return nil, unavailable("the kernel has no seccomp support: %v", err)
	}
	r := &Runtime{
		cgroupParent: "/" + strings.Trim(o.cgroupParent, "/"),
		hostID:       o.hostID,
		userNS:       !o.noUserNS,
		cgroup2:      cgroups.IsCgroup2UnifiedMode(),
		seccomp:      seccompProfile(),
	}
	if !r.cgroup2 {
		for _, sub := range []string{"memory", "pids", "cpu", "cpuacct", "devices", "freezer"} {
			if _, err := cgroups.FindCgroupMountpoint("", sub); err != nil {
				return nil, unavailable("cgroup v1 controller %q is not mounted: %v", sub, err)
			}
		}
		mnt, _ := cgroups.FindCgroupMountpoint("", "memory")
		_, err := os.Stat(filepath.Join(mnt, "memory.memsw.limit_in_bytes"))
		r.memsw = err == nil
	} else {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
		if err != nil {
			return nil, unavailable("cannot read cgroup v2 controllers: %v", err)
		}
		for _, c := range []string{"memory", "pids", "cpu"} {
			if !strings.Contains(string(b), c) {
				return nil, unavailable("cgroup v2 controller %q is not enabled in the root cgroup", c)
			}
		}
		r.memsw = true
	}
	if r.userNS {
		if _, err := os.Stat("/proc/self/ns/user"); err != nil {
			return nil, unavailable("the kernel has no user namespaces (or use WithoutUserNamespace)")
		}
		if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
			return nil, unavailable("user namespaces are disabled (user.max_user_namespaces=0); enable them or use WithoutUserNamespace")
		}
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts", "net", "cgroup"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return nil, unavailable("the kernel has no %s namespace", ns)
		}
	}

	bin := o.binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, unavailable("cannot find the running executable: %v", err)
		}
		bin = exe
	}
	bin, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return nil, unavailable("job binary: %v", err)
	}
	r.binary = bin
	if r.libs, err = sharedLibraries(bin); err != nil {
		return nil, unavailable("%v", err)
	}

	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, unavailable("state dir: %v", err)
	}
	r.stateDir = abs
	r.containersDir = filepath.Join(abs, "containers")
	r.rootfsDir = filepath.Join(abs, "rootfs")
	// Container root (an unprivileged host uid under a user namespace) must be
	// able to reach its root filesystem and its spill area, so the way there is
	// 0711: traversable, not listable.
	for _, d := range []string{abs, r.rootfsDir, r.spillDir()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, unavailable("state dir: %v", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, unavailable("state dir: %v", err)
		}
	}
	// The containers' libcontainer state (each one's exec fifo is mode 0622) and the job
	// markers are root's alone, whatever mode their directories had before.
	for _, d := range []string{r.containersDir, filepath.Dir(r.jobMarker("x"))} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, unavailable("state dir: %v", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, unavailable("state dir: %v", err)
		}
	}
	r.spillErr = checkSpill()
	if r.userNS {
		for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return nil, unavailable("state dir: %v", err)
			}
			if fi.Mode().Perm()&0o001 == 0 {
				return nil, unavailable("state dir %s: parent %s is not traversable by others (needs o+x for the container's unprivileged root)", abs, d)
			}
			if d == "/" {
				break
			}
		}
	}
	return r, nil
}

// UserNamespace reports whether containers get their own user namespace.
func (r *Runtime) UserNamespace() bool { return r.userNS }

// HostID is the first host uid and gid of jobs' roots: under a user
// namespace each container's root is one of HostID and the 65535 uids after it
// (DefaultHostID or WithHostID's), a different one for each container in
// turn; without one it is 0 (root without capabilities). The source of a
// Writable mount must be writable by whichever it is, e.g. a tmpfs mounted with
// mode=0777 (as a custom job's /out is).
func (r *Runtime) HostID() int64 {
	if r.userNS {
		return r.hostID
	}
	return 0
}

const (
	mountRO      = unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	mountNoExec  = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	scratchPath  = "/scratch"
	wallGraceMax = 2 * time.Second
)

// Paths masked and made read-only inside /proc and /sys, as in runc's default
// spec (libcontainer/specconv/example.go). /sys itself is not mounted.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
		"/proc/scsi", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// The only device nodes a job gets.
var jobDevices = []*devices.Device{
	charDevice("/dev/null", 1, 3),
	charDevice("/dev/zero", 1, 5),
	charDevice("/dev/random", 1, 8),
	charDevice("/dev/urandom", 1, 9),
}

func charDevice(path string, major, minor int64) *devices.Device {
	return &devices.Device{
		Path:     path,
		FileMode: 0o666,
		Rule: devices.Rule{
			Type: devices.CharDevice, Major: major, Minor: minor,
			Permissions: "rwm", Allow: true,
		},
	}
}

func validID(id string) bool {
	if id == "" || len(id) > 200 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func validDest(p string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p && p != "/"
}

// mountFlags are the flags of one of a Spec's bind mounts: always nosuid and
// nodev; read-only unless Writable; noexec unless Exec.
func mountFlags(m Mount) int {
	flags := unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV
	if !m.Writable {
		flags |= unix.MS_RDONLY
	}
	if !m.Exec {
		flags |= unix.MS_NOEXEC
	}
	return flags
}

// boxOptions are what a container's configuration takes besides its Spec.
type boxOptions struct {
	uid    int64    // the host uid and gid of its root
	spill  *spillFS // mounted at SpillPath when not nil
	lowCPU bool     // prepared ahead: the least CPU share until its job is handed over
	// idleCPU: prepared ahead in a CPU cgroup made idle already (box.lowCPUCgroup), whose
	// share is set and cannot be written while it is idle.
	idleCPU bool
}

// config builds the libcontainer configuration of one job on the root
// filesystem skel that makeRootfs made for it.
func (r *Runtime) config(cid, rootfs string, spec *Spec, l Limits, skel *skeleton, opt boxOptions) *configs.Config {
	pids := l.Pids
	period := uint64(100_000)
	res := &cgroups.Resources{
		Memory:    l.MemoryBytes,
		PidsLimit: &pids,
		CpuPeriod: period,
		CpuQuota:  int64(l.CPUs * float64(period)),
		Devices: []*devices.Rule{
			{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: false},
		},
	}
	if r.memsw {
		res.MemorySwap = l.MemoryBytes // memory+swap == memory: no swap
	}
	if opt.lowCPU && opt.idleCPU {
		idle := int64(1) // cleared by setCPUWeight at the hand-over
		res.CPUIdle = &idle
	} else if opt.lowCPU {
		res.CpuShares = 2 // cpu.weight 1 on cgroup v2; raised by setCPUWeight at the hand-over
	}
	var zero uint64
	if !r.cgroup2 {
		res.MemorySwappiness = &zero
	}
	if r.cgroup2 {
		res.Devices = nil // needs the eBPF device manager; see devices_linux.go
	} else {
		for _, d := range jobDevices {
			res.Devices = append(res.Devices, &d.Rule)
		}
	}
	mounts := []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: mountNoExec},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_STRICTATIME, Data: "mode=755,size=64k"},
		{Source: "tmpfs", Destination: scratchPath, Device: "tmpfs", Flags: mountNoExec, Data: "mode=1777,size=" + strconv.FormatInt(l.ScratchBytes, 10)},
	}
	if spec.Image == "" {
		mounts = append(mounts, &configs.Mount{Source: r.binary, Destination: spec.Args[0], Device: "bind", Flags: mountRO})
		for _, lib := range r.libs {
			mounts = append(mounts, &configs.Mount{Source: lib.Source, Destination: lib.Destination, Device: "bind", Flags: mountRO})
		}
	} else {
		// The image's top-level directories and files, read-only, exec
		// allowed (they hold the interpreter); never recursive, so nothing
		// mounted below them on the host comes along.
		for _, name := range skel.imageMounts {
			mounts = append(mounts, &configs.Mount{Source: filepath.Join(spec.Image, name), Destination: "/" + name, Device: "bind", Flags: mountRO})
		}
	}
	for _, m := range spec.Mounts {
		mounts = append(mounts, &configs.Mount{Source: m.Source, Destination: m.Destination, Device: "bind", Flags: mountFlags(m)})
	}
	if opt.spill != nil {
		mounts = append(mounts, &configs.Mount{Source: opt.spill.dir, Destination: SpillPath, Device: "bind", Flags: mountFlags(Mount{Writable: true})})
	}
	ns := configs.Namespaces{
		{Type: configs.NEWNS}, {Type: configs.NEWPID}, {Type: configs.NEWIPC},
		{Type: configs.NEWUTS}, {Type: configs.NEWNET}, {Type: configs.NEWCGROUP},
	}
	oomScore := 1000 // under host memory pressure, jobs die before the daemon
	cfg := &configs.Config{
		Rootfs:            rootfs,
		Readonlyfs:        true,
		Mounts:            mounts,
		Devices:           jobDevices,
		Hostname:          "veil",
		Namespaces:        ns,
		Capabilities:      &configs.Capabilities{},
		Networks:          []*configs.Network{{Type: "loopback"}},
		Cgroups:           &cgroups.Cgroup{Path: r.cgroupParent + "/" + cid, Resources: res},
		MaskPaths:         maskedPaths,
		ReadonlyPaths:     readonlyPaths,
		NoNewPrivileges:   true,
		Seccomp:           r.seccomp,
		ParentDeathSignal: int(unix.SIGKILL), // see spawn_linux.go
		OomScoreAdj:       &oomScore,
		Rlimits: []configs.Rlimit{
			{Type: unix.RLIMIT_CORE, Hard: 0, Soft: 0},
			{Type: unix.RLIMIT_NOFILE, Hard: 4096, Soft: 4096},
		},
	}
	if r.userNS {
		cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWUSER})
		cfg.UIDMappings = []configs.IDMap{{ContainerID: 0, HostID: opt.uid, Size: 1}}
		cfg.GIDMappings = []configs.IDMap{{ContainerID: 0, HostID: opt.uid, Size: 1}}
	} else {
		// Without a user namespace, RLIMIT_NPROC is per host uid (root, shared
		// with the daemon) and so cannot be used; the pids cgroup is the limit.
	}
	return cfg
}

func (r *Runtime) checkSpec(spec *Spec) error {
	if !validID(spec.ID) {
		return fmt.Errorf("%w: job id %q must be letters, digits, '_', '-' or '.'", ErrInvalid, spec.ID)
	}
	if len(spec.Args) == 0 || !validDest(spec.Args[0]) {
		return fmt.Errorf("%w: Args[0] must be an absolute path inside the container", ErrInvalid)
	}
	if spec.Image != "" && !(filepath.IsAbs(spec.Image) && filepath.Clean(spec.Image) == spec.Image) {
		return fmt.Errorf("%w: Image must be the absolute, clean host path of an imported runtime image", ErrInvalid)
	}
	reserved := []string{"/proc", "/dev", scratchPath, "/tmp", SpillPath}
	if spec.Image == "" {
		for _, lib := range r.libs {
			reserved = append(reserved, lib.Destination)
		}
	}
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, dst := range append([]string{spec.Args[0]}, mountDests(spec.Mounts)...) {
		for _, res := range reserved {
			if under(dst, res) || under(res, dst) {
				return fmt.Errorf("%w: mount destination %s collides with %s", ErrInvalid, dst, res)
			}
		}
	}
	// Without an image the job binary is mounted at Args[0]; with one,
	// Args[0] may be one of the mounts (a vendor's program at /job/program).
	seen := map[string]bool{}
	if spec.Image == "" {
		seen[spec.Args[0]] = true
	}
	for _, m := range spec.Mounts {
		if !validDest(m.Destination) || !filepath.IsAbs(m.Source) {
			return fmt.Errorf("%w: mount %s: source and destination must be absolute, clean paths", ErrInvalid, m.Destination)
		}
		if m.Writable && m.Exec {
			return fmt.Errorf("%w: mount %s is both Writable and Exec; a job must never run what it wrote, choose one", ErrInvalid, m.Destination)
		}
		if seen[m.Destination] {
			return fmt.Errorf("%w: mount destination %s given twice", ErrInvalid, m.Destination)
		}
		seen[m.Destination] = true
	}
	// A writable mount neither holds another mount (its mount point would be
	// created in the caller's directory) nor lies inside one.
	for i, a := range spec.Mounts {
		for j, b := range spec.Mounts {
			if i != j && (a.Writable || b.Writable) && under(b.Destination, a.Destination) {
				return fmt.Errorf("%w: mount %s is inside mount %s; a Writable mount may not contain or be inside another mount", ErrInvalid, b.Destination, a.Destination)
			}
		}
	}
	return nil
}

func mountDests(ms []Mount) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Destination
	}
	return out
}

// Run runs one job in a fresh container and destroys it. The process gets
// spec.Stdin on fd 0, bounded capture on fds 1 and 2, and the write end of
// the result pipe on fd 3; what it writes there is copied to result, at most
// Limits.ResultBytes. When the returned Status is not ok, whatever was
// written to result must be discarded. The error is non-nil only when the
// container could not be set up (never because of what the job did).
func (r *Runtime) Run(ctx context.Context, spec Spec, result io.Writer) (_ *Result, retErr error) {
	if err := r.checkSpec(&spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	l := spec.Limits.withDefaults()
	b, err := r.create(ctx, containerPrefix+spec.ID, &spec, l, spec.Mounts, false)
	if err != nil {
		return nil, err
	}
	// Every container is destroyed, whatever happens below; a failure to do
	// so is reported, never swallowed.
	var res *Result
	defer func() {
		t := time.Now()
		if err := b.destroy(); err != nil && retErr == nil {
			retErr = err
		}
		if res != nil {
			res.Timing.Teardown = time.Since(t)
		}
	}()
	t1 := time.Now()
	if err := b.start(ctx, spec.Args, spec.Env, bytes.NewReader(spec.Stdin)); err != nil {
		if ctx.Err() != nil { // the caller ended it while it started: killed, as a run is
			res = killedAtStart(l)
			return res, nil
		}
		return nil, err
	}
	t2 := time.Now()
	if res, err = b.supervise(ctx, result, usageMark{}); err != nil {
		return nil, err
	}
	// A fresh container's wall time counts its start, as it always has for metering.
	res.Usage.Wall += t2.Sub(t1)
	res.Timing.Prepare, res.Timing.Start = t1.Sub(t0), t2.Sub(t1)
	return res, nil
}

// killedAtStart is the result of a job whose caller's context ended while its sandbox
// started (the start is killed, see box.start): as if it had been killed running.
func killedAtStart(l Limits) *Result {
	return &Result{Status: StatusKilled, ExitCode: -1, Message: message(StatusKilled, l, -1)}
}

// destroy kills a container's processes and removes its cgroups and state.
// SIGKILL is asynchronous, so Destroy is retried until the init is gone.
func destroy(c *libcontainer.Container) error {
	_ = c.Signal(unix.SIGKILL)
	var err error
	for i := 0; i < 500; i++ {
		if err = c.Destroy(); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1
	}
	return ps.ExitCode()
}

// usage reads CPU time and peak memory from the job's cgroup, since base.
func (r *Runtime) usage(paths map[string]string, base usageMark) Usage {
	var u Usage
	if r.cgroup2 {
		dir := paths[""]
		if v, ok := keyedValue(filepath.Join(dir, "cpu.stat"), "usage_usec"); ok {
			u.CPU = time.Duration(v)*time.Microsecond - base.cpu
		}
		if base.peak != nil {
			if v, err := readIntFile(base.peak); err == nil {
				u.PeakMemoryBytes = v
			}
		} else if v, err := readInt(filepath.Join(dir, "memory.peak")); err == nil {
			u.PeakMemoryBytes = v
		}
		return u
	}
	if v, err := readInt(filepath.Join(paths["cpuacct"], "cpuacct.usage")); err == nil {
		u.CPU = time.Duration(v) - base.cpu
	}
	if v, err := readInt(filepath.Join(paths["memory"], "memory.max_usage_in_bytes")); err == nil {
		u.PeakMemoryBytes = v
	}
	return u
}

// residentEvery is how often a job's resident memory is sampled (Usage.PeakResidentBytes).
const residentEvery = 100 * time.Millisecond

// resident is the memory of a job's cgroup that the kernel cannot reclaim without swap:
// anonymous and tmpfs (shmem) pages.
func (r *Runtime) resident(paths map[string]string) int64 {
	stat, key := filepath.Join(paths[""], "memory.stat"), "anon"
	if !r.cgroup2 {
		stat, key = filepath.Join(paths["memory"], "memory.stat"), "rss"
	}
	b, err := os.ReadFile(stat)
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		if k == key || k == "shmem" {
			x, _ := strconv.ParseInt(v, 10, 64)
			n += x
		}
	}
	return n
}

// limitsHit reports whether the memory cgroup OOM-killed a process and
// whether a fork or clone failed on the pids limit, since base.
func (r *Runtime) limitsHit(paths map[string]string, base usageMark) (oom, pids bool) {
	n, m := r.limitCounts(paths)
	return n > base.oom, m > base.pids
}

// limitCounts reads how often the cgroup OOM-killed a process and refused a fork.
func (r *Runtime) limitCounts(paths map[string]string) (oom, pids int64) {
	if r.cgroup2 {
		dir := paths[""]
		n, _ := keyedValue(filepath.Join(dir, "memory.events"), "oom_kill")
		m, _ := keyedValue(filepath.Join(dir, "pids.events"), "max")
		return n, m
	}
	n, _ := keyedValue(filepath.Join(paths["memory"], "memory.oom_control"), "oom_kill")
	m, _ := keyedValue(filepath.Join(paths["pids"], "pids.events"), "max")
	return n, m
}

func readIntFile(f *os.File) (int64, error) {
	b := make([]byte, 64)
	n, err := f.ReadAt(b, 0)
	if n == 0 && err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b[:n])), 10, 64)
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// keyedValue reads "key value" lines (memory.events, pids.events, cpu.stat).
func keyedValue(path, key string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// skeleton is a per-job root filesystem: only the directories and empty files
// that mounts land on (and an image's top-level symlinks), so that one job's dataset paths are never visible to
// another. Entries are removed in reverse order of creation, one by one, so
// removal never descends into anything mounted.
type skeleton struct {
	created []string
	// imageMounts are the names of the image's top-level directories and
	// files that config bind-mounts at /name (Spec.Image only).
	imageMounts []string
}

func (s *skeleton) remove() {
	for i := len(s.created) - 1; i >= 0; i-- {
		_ = os.Remove(s.created[i])
	}
}

func (r *Runtime) makeRootfs(rootfs string, spec *Spec) (*skeleton, error) {
	s := &skeleton{}
	mkdir := func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				return nil
			}
			return err
		}
		s.created = append(s.created, p)
		return nil
	}
	mkdirAll := func(rel string) error {
		p := rootfs
		for _, part := range strings.Split(strings.Trim(rel, "/"), "/") {
			if part == "" {
				continue
			}
			p = filepath.Join(p, part)
			if err := mkdir(p); err != nil {
				return err
			}
		}
		return nil
	}
	touch := func(rel string) error {
		if err := mkdirAll(filepath.Dir(rel)); err != nil {
			return err
		}
		p := filepath.Join(rootfs, rel)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
		s.created = append(s.created, p)
		return nil
	}
	// The job's root must be new: a leftover of a crash is Cleanup's business.
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return s, err
	}
	s.created = append(s.created, rootfs)
	if err := os.Chmod(rootfs, 0o755); err != nil {
		return s, err
	}
	for _, d := range []string{"/proc", "/dev", scratchPath} {
		if err := mkdirAll(d); err != nil {
			return s, err
		}
	}
	tmp := filepath.Join(rootfs, "tmp")
	if err := os.Symlink(strings.TrimPrefix(scratchPath, "/"), tmp); err != nil {
		return s, err
	}
	s.created = append(s.created, tmp)
	if spec.Image == "" {
		if err := touch(spec.Args[0]); err != nil {
			return s, err
		}
		for _, lib := range r.libs {
			if err := touch(lib.Destination); err != nil {
				return s, err
			}
		}
	} else if err := s.addImage(rootfs, spec, mkdir, touch); err != nil {
		return s, err
	}
	for _, m := range spec.Mounts {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return s, fmt.Errorf("mount source: %w", err)
		}
		if fi.IsDir() {
			err = mkdirAll(m.Destination)
		} else {
			err = touch(m.Destination)
		}
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

// imageSkipped are the top-level names of an image that the sandbox owns.
var imageSkipped = map[string]bool{"proc": true, "dev": true, "sys": true, "tmp": true, strings.Trim(scratchPath, "/"): true, strings.Trim(SpillPath, "/"): true}

// addImage adds the top-level entries of spec.Image to the skeleton:
// directories and regular files become mount points (mounted by config),
// symlinks are recreated as they are. Entries the sandbox owns, or named
// like the first component of a mount destination, are skipped, so that an
// image can never cover /proc, /dev, /scratch or the job's mounts.
func (s *skeleton) addImage(rootfs string, spec *Spec, mkdir, touch func(string) error) error {
	fi, err := os.Stat(spec.Image)
	if err != nil {
		return fmt.Errorf("runtime image: %w (import it with ImportImage first)", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("runtime image %s is not a directory", spec.Image)
	}
	skip := map[string]bool{}
	for name := range imageSkipped {
		skip[name] = true
	}
	for _, m := range spec.Mounts {
		top, _, _ := strings.Cut(strings.TrimPrefix(m.Destination, "/"), "/")
		skip[top] = true
	}
	entries, err := os.ReadDir(spec.Image)
	if err != nil {
		return fmt.Errorf("runtime image: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if skip[name] {
			continue
		}
		p := filepath.Join(rootfs, name)
		switch e.Type() {
		case fs.ModeDir:
			if err := mkdir(p); err != nil {
				return err
			}
			s.imageMounts = append(s.imageMounts, name)
		case 0: // regular file
			if err := touch(name); err != nil {
				return err
			}
			s.imageMounts = append(s.imageMounts, name)
		case fs.ModeSymlink:
			target, err := os.Readlink(filepath.Join(spec.Image, name))
			if err != nil {
				return fmt.Errorf("runtime image: %w", err)
			}
			// Resolved inside the container, whose root is this skeleton.
			if err := os.Symlink(target, p); err != nil {
				return err
			}
			s.created = append(s.created, p)
		default:
			// Device nodes, fifos and sockets are never part of a job's root
			// (ImportImage refuses them).
		}
	}
	return nil
}

// Cleanup destroys what a crashed daemon left behind: containers named
// veil-* in the state directory, their cgroups (also those that never made
// it into the state directory), their root filesystems and their spill
// areas. It returns the IDs of the jobs that were running (a sandbox
// prepared ahead and never handed a job is destroyed without being
// reported). Call it before the first Run and before starting a Pool.
func (r *Runtime) Cleanup(ctx context.Context) ([]string, error) {
	found := map[string]bool{}
	var errs []error
	entries, err := os.ReadDir(r.containersDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cid := e.Name()
		if !strings.HasPrefix(cid, containerPrefix) {
			continue
		}
		found[cid] = true
		if c, err := libcontainer.Load(r.containersDir, cid); err == nil {
			if err := destroy(c); err != nil {
				errs = append(errs, fmt.Errorf("destroy %s: %w", cid, err))
			}
		}
		// A container that crashed before its state was saved cannot be
		// loaded; its cgroups are handled below.
		if err := os.RemoveAll(filepath.Join(r.containersDir, cid)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, dir := range r.cgroupParentDirs() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), containerPrefix) {
				continue
			}
			found[e.Name()] = true
			if err := removeCgroup(ctx, filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	roots, _ := os.ReadDir(r.rootfsDir)
	for _, e := range roots {
		if !strings.HasPrefix(e.Name(), containerPrefix) {
			continue
		}
		found[e.Name()] = true
		if err := removeTree(filepath.Join(r.rootfsDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	// Spill areas last: nothing holds them once their containers are gone.
	if err := r.cleanupSpill(); err != nil {
		errs = append(errs, err)
	}
	ids := make([]string, 0, len(found))
	for cid := range found {
		name := strings.TrimPrefix(cid, containerPrefix)
		if !strings.HasPrefix(name, poolPrefix) {
			ids = append(ids, name)
			continue
		}
		// A sandbox prepared ahead ran a job only if it was handed one.
		if b, err := os.ReadFile(r.jobMarker(cid)); err == nil && validID(string(b)) {
			ids = append(ids, string(b))
		}
	}
	markers, _ := os.ReadDir(filepath.Dir(r.jobMarker("x")))
	for _, e := range markers {
		if err := os.Remove(filepath.Join(filepath.Dir(r.jobMarker("x")), e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	sort.Strings(ids)
	return ids, errors.Join(errs...)
}

// RemoveCgroupParent removes the runtime's (empty) parent cgroups, when it is done with
// them: call it after the last Run has returned. A parent that still holds a job stays.
func (r *Runtime) RemoveCgroupParent() {
	for _, dir := range r.cgroupParentDirs() {
		os.Remove(dir)
	}
}

// cgroupParentDirs lists the parent cgroup directory in every hierarchy.
func (r *Runtime) cgroupParentDirs() []string {
	if r.cgroup2 {
		return []string{filepath.Join("/sys/fs/cgroup", r.cgroupParent)}
	}
	var out []string
	mounts, err := cgroups.GetCgroupMounts(false)
	if err != nil {
		return nil
	}
	for _, m := range mounts {
		out = append(out, filepath.Join(m.Mountpoint, r.cgroupParent))
	}
	if p := "/sys/fs/cgroup/unified"; dirExists(p) {
		out = append(out, filepath.Join(p, r.cgroupParent))
	}
	return out
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// removeCgroup kills every process in a cgroup (and its children) and
// removes it.
func removeCgroup(ctx context.Context, dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		for attempt := 0; ; attempt++ {
			killProcs(filepath.Join(d, "cgroup.procs"))
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if attempt > 100 || ctx.Err() != nil {
				return fmt.Errorf("remove cgroup %s: %w", d, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

func killProcs(procs string) {
	b, err := os.ReadFile(procs)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// removeTree removes a leftover skeleton root filesystem bottom-up without
// crossing into another file system, so a stray mount can never take host
// files with it.
func removeTree(root string) error {
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	dev := st.Dev
	var paths []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var s unix.Stat_t
		if err := unix.Lstat(p, &s); err != nil {
			return err
		}
		if s.Dev != dev {
			return fmt.Errorf("refusing to remove %s: a file system is mounted there", p)
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := os.Remove(paths[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
