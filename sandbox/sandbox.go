package sandbox

import (
	"errors"
	"strconv"
	"time"
)

// Mount is a bind mount of a host file or directory. By default it is
// read-only and nothing on it can be executed (nosuid, nodev, noexec).
// Writable makes it read-write (still nosuid, nodev, noexec): the job can
// then fill it, so back it with something size-limited (a tmpfs of its own)
// that the job's root can write to (see Runtime.HostID). Exec allows
// executing its files (a vendor's program at /job/program); it stays
// read-only. A mount is never both Writable and Exec.
type Mount struct {
	Source      string // host path
	Destination string // absolute path inside the container
	Writable    bool   // read-write instead of read-only (never with Exec)
	Exec        bool   // its files may be executed (read-only mounts only)
}

// Limits bounds what one job may use. A zero field takes the default from
// DefaultLimits.
type Limits struct {
	MemoryBytes  int64         // hard limit, no swap
	Pids         int64         // processes and threads
	CPUs         float64       // CPU quota in cores (e.g. 1.0)
	Wall         time.Duration // wall-clock limit
	ScratchBytes int64         // size of the tmpfs at /scratch
	ResultBytes  int64         // max bytes accepted from the result pipe
	OutputBytes  int64         // max bytes kept of stdout (its first) and of stderr (its last)
	// SpillBytes is the size of the job's spill area at SpillPath: a file system of its
	// own on the disk of the state directory, for what does not fit in MemoryBytes
	// (DuckDB's temporary files). Zero (the default): no spill area.
	SpillBytes int64
}

// SpillPath is where a job's spill area is mounted (read-write, no-exec), when its Limits
// ask for one. It is empty at the start of the job, belongs to the job's root, is mounted
// into no other sandbox, and is wiped and removed with the sandbox.
const SpillPath = "/spill"

// DefaultLimits fill the zero fields of a Spec's Limits.
var DefaultLimits = Limits{
	MemoryBytes:  1 << 30,
	Pids:         256,
	CPUs:         1,
	Wall:         5 * time.Minute,
	ScratchBytes: 256 << 20,
	ResultBytes:  64 << 20,
	OutputBytes:  64 << 10,
}

// withDefaults returns l with every zero field replaced by its default (SpillBytes
// stays zero: no spill area unless asked for).
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.Pids <= 0 {
		l.Pids = d.Pids
	}
	if l.CPUs <= 0 {
		l.CPUs = d.CPUs
	}
	if l.Wall <= 0 {
		l.Wall = d.Wall
	}
	if l.ScratchBytes <= 0 {
		l.ScratchBytes = d.ScratchBytes
	}
	if l.ResultBytes <= 0 {
		l.ResultBytes = d.ResultBytes
	}
	if l.OutputBytes <= 0 {
		l.OutputBytes = d.OutputBytes
	}
	return l
}

// Spec is what the daemon asks to run.
type Spec struct {
	ID string // unique job id; the container id is "veil-"+ID
	// Args is the argv. Args[0] is the path of the program inside the
	// container: without Image, the job binary is mounted there (e.g.
	// /veil); with Image, it is a file of the image or of an Exec mount.
	Args   []string
	Env    []string
	Stdin  []byte  // given to the process on fd 0, then EOF
	Mounts []Mount // only these host paths (read-only unless Writable)
	// Image is the host path of a runtime image's root directory (see
	// ImportImage), shared read-only by many jobs and never written. When
	// set, the job's root holds the image's top-level entries (directories
	// and files bind-mounted read-only, exec allowed; symlinks recreated)
	// instead of the job binary and its libraries. Entries named like what
	// the sandbox owns (/proc, /dev, /sys, /tmp, /scratch) or like the first
	// component of a mount destination (/in, /out, /job) are left out.
	Image  string
	Limits Limits
}

// Status is how a job ended.
type Status string

const (
	StatusOK             Status = "ok"               // exited 0
	StatusFailed         Status = "failed"           // exited non-zero or by a signal we did not send
	StatusOOM            Status = "oom"              // the memory limit was hit
	StatusPids           Status = "pids"             // the process limit was hit
	StatusTimeout        Status = "timeout"          // the wall-clock limit was hit
	StatusResultTooLarge Status = "result-too-large" // the result exceeded ResultBytes
	StatusKilled         Status = "killed"           // the caller cancelled the job
)

// Usage is what a job consumed.
type Usage struct {
	CPU             time.Duration
	PeakMemoryBytes int64
	// PeakResidentBytes is the most memory of the job's cgroup that the kernel could not
	// reclaim (anonymous and tmpfs pages; without swap they stay until freed), sampled
	// every 100 ms while the job runs: PeakMemoryBytes also counts the page cache of the
	// files it read and wrote (its spill area's included), which the kernel reclaims
	// before the limit is hit, so a peak at the limit need not be a job near it.
	PeakResidentBytes int64
	Wall              time.Duration
}

// Timing is where the time of one Run went, for operators and benchmarks. It is exact (not
// padded or rounded), so it is never shown to vendors.
//
// For a sandbox a Pool prepared ahead, Prepare and Start are what the job waited for
// them (zero when the sandbox was ready), Handoff is giving it the job's mounts and
// stdin, and Teardown is zero: the sandbox is destroyed after Run returns.
type Timing struct {
	Prepare  time.Duration // root filesystem skeleton, spill area, configuration, cgroups and state (libcontainer create)
	Start    time.Duration // namespaces, mounts, seccomp, up to the job's execve
	Handoff  time.Duration // pooled sandboxes: the job's mounts attached and its stdin given
	Run      time.Duration // the job's process, from its start (or hand-over) to its exit
	Teardown time.Duration // kill, cgroups, state, spill area and skeleton removed
	Ahead    bool          // the sandbox was prepared before the job came
}

// Result is the outcome of Run or RunLocal.
type Result struct {
	Status   Status
	ExitCode int // -1 when the process was killed by a signal
	Usage    Usage
	Timing   Timing
	// Stdout and Stderr are bounded copies for operators only: they may contain
	// data values and must never be shown to vendors.
	Stdout, Stderr []byte
	// Message is sanitized, safe for vendors: what limit was hit and what to do.
	Message string
}

// Setup is the time from the call of Run until the job's process ran: the sandbox's own
// cost (for the operator's metrics; it says nothing of the data).
func (r *Result) Setup() time.Duration { return r.Timing.Prepare + r.Timing.Start + r.Timing.Handoff }

const containerPrefix = "veil-"

// Errors returned by this package; callers branch with errors.Is.
var (
	// ErrUnavailable: containers cannot be created on this host (the wrapped
	// error says why).
	ErrUnavailable = errors.New("sandbox unavailable")
	// ErrInvalid: the Spec is malformed.
	ErrInvalid = errors.New("invalid sandbox spec")
)

// message returns the vendor-facing text of a status. It never contains a
// host path, a data value or a stack trace.
func message(s Status, l Limits, exitCode int) string {
	switch s {
	case StatusOK:
		return "the job finished"
	case StatusFailed:
		return "the job failed inside the sandbox; check the query or job and try again, or ask the operator"
	case StatusOOM:
		return "the job used more memory than its limit of " + formatBytes(l.MemoryBytes) +
			"; reduce the data it touches (filter earlier, fewer groups or columns) or ask the operator for a larger limit"
	case StatusPids:
		return "the job started more processes or threads than its limit of " + itoa(l.Pids) +
			"; reduce its parallelism or ask the operator for a larger limit"
	case StatusTimeout:
		return "the job ran longer than its time limit of " + l.Wall.String() +
			"; simplify it or run it on less data, or ask the operator for a longer limit"
	case StatusResultTooLarge:
		return "the job's result is larger than the limit of " + formatBytes(l.ResultBytes) +
			"; return fewer rows or columns (aggregate more coarsely)"
	case StatusKilled:
		return "the job was cancelled before it finished"
	}
	return "the job ended in an unknown state"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func formatBytes(n int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
		gib = 1 << 30
	)
	switch {
	case n >= gib && n%gib == 0:
		return itoa(n/gib) + " GiB"
	case n >= mib && n%mib == 0:
		return itoa(n/mib) + " MiB"
	case n >= kib && n%kib == 0:
		return itoa(n/kib) + " KiB"
	}
	return itoa(n) + " bytes"
}
