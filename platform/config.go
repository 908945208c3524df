package platform

import (
	"net"
	"path/filepath"
	"time"

	"github.com/veil-dp/veil/policy"
)

// Config is the daemon's configuration. cmd/veil fills it from flags, the environment and an
// optional file; Defaults gives every field a value.
type Config struct {
	DataDir   string
	Socket    string // Unix socket path; default DataDir/veil.sock
	Listen    string // optional TCP address, e.g. 127.0.0.1:8470
	Workers   int    // concurrent jobs
	Approvals int    // distinct reviewer approvals a release needs (2 for four-eyes review)
	Review    policy.ReviewConfig

	// Isolation is "container" (libcontainer sandbox; the default, needs root on Linux) or
	// "process" (a plain child process; a development escape hatch, recorded in the audit log).
	Isolation string
	Binary    string // the veil binary re-executed as the runner; default os.Executable()
	// SandboxPool is how many sandboxes (namespaces, cgroups, seccomp, the runner started
	// with DuckDB open, waiting for its job) are kept prepared ahead with container
	// isolation; each runs one job and is destroyed after it. 0: each job's sandbox is made
	// when the job starts. At most 64. The default, twice Workers, lets two jobs at once
	// start from a prepared sandbox and leaves half of the pool ready after two jobs sent
	// back to back, so that its refill waits until no job runs (sandbox.Pool) rather than
	// run beside the second. Each prepared sandbox holds about 12 MB of memory (the
	// runner's heap with DuckDB opened; the binary's pages are shared) and a spill area's
	// room on the disk (JobSpillMB).
	SandboxPool int

	// Per-job limits (operator policy).
	JobMemoryMB   int
	JobThreads    int
	JobWall       time.Duration
	JobPids       int64
	MaxResultByte int64
	// JobSpillMB is the size of a job's spill area: a file system of its own on the data
	// directory's disk (sandbox.SpillPath), for DuckDB's temporary files only, when what the
	// job's DuckDB works on does not fit in its memory. It is empty when the job starts,
	// mounted into no other sandbox and wiped after the job. Space is reserved for every live
	// area at its full size, so the disk needs (Workers + SandboxPool) × JobSpillMB free.
	// Without a pool, a job whose files are less than a sixteenth of DuckDBMemoryMB gets
	// none (launch.Launcher.Run): making one costs a file system per job.
	// 0: jobs cannot spill (a job that does not fit in memory fails).
	JobSpillMB int
	// SweepEvery is how often fused uploads of ended grants, and data-file uploads past
	// UploadTTL, are looked for and deleted.
	SweepEvery time.Duration
	// UploadTTL is how long a data-file upload (POST /v1/uploads) is kept after its last
	// part, finished or not, unless registered; then its bytes are deleted and its ID answers
	// that it expired. Zero or less: DefaultUploadTTL.
	UploadTTL time.Duration
	// Clock, when set, replaces the wall clock (tests of expiry); nil in production.
	Clock func() time.Time
	// LogRunnerOutput writes the runner's stderr of failed jobs to the log. It can contain
	// data values: for debugging on synthetic data only.
	LogRunnerOutput bool
	ScratchMB       int

	// TLS of the TCP listeners (Listen, MetricsListen): a PEM certificate chain and its key,
	// read again by ReloadTLS (veil serve: on SIGHUP). A listener on an address other than
	// loopback is refused without them unless InsecureListen is set.
	TLSCert, TLSKey string
	InsecureListen  bool
	// MetricsListen, when set, serves /metrics (and /healthz, /readyz) without a token on
	// its own TCP address, for a Prometheus that holds no Veil token.
	MetricsListen string
	// MinFreeMB is the free space of the data directory's file system below which the
	// daemon reports itself not ready (/readyz).
	MinFreeMB int
	// Version and Commit are the daemon's build, for GET /v1/version.
	Version, Commit string
	// OnListening, when set, is called by Serve with the addresses it listens on once every
	// listener is up and the API answers on them (veil serve: systemd's READY=1).
	OnListening func([]net.Addr)
	// RefusalWindow is how long refused requests are counted before one audit entry per
	// principal (or source) and action records them.
	RefusalWindow time.Duration
	// ReleaseQuantum: a vendor sees a production job's status change (started, and how its
	// run ended) only at whole multiples of it after the submission, so that when a job
	// ends does not tell the data (jobs.Service.View). Zero or less means the default; it
	// cannot be turned off from the command line.
	ReleaseQuantum time.Duration
	// ExactReleaseTimingForTests turns the release quantum off: a vendor then sees each
	// status change at once, which tells it how long a job ran on the data. Tests only;
	// veil serve has no flag for it.
	ExactReleaseTimingForTests bool

	// The audit signer and the store's start-up checks (auditcfg.go): the signing key's
	// file (default DataDir/keys/platform.key) or a file descriptor it is read from
	// (AuditKeyFD ≥ 3), the signer's state file (default beside the key), the archives
	// every signed checkpoint is appended to, AuditAdopt to take over a store whose log
	// the signer has no state for (first start after an upgrade), StoreAdopt to accept the
	// store file as found after a deliberate restore.
	AuditKey      string
	AuditKeyFD    int
	AuditState    string
	AuditArchives []string
	AuditAdopt    bool
	StoreAdopt    bool

	// Per-tenant admission (operator policy): at most TenantJobs jobs queued or running, at
	// most SubmitRate submissions a second in bursts of SubmitBurst, at most
	// TenantValidations validations at once (more wait their turn). Beyond a limit a
	// submission is answered 429 with Retry-After. Zero: no limit.
	TenantJobs        int
	SubmitRate        float64
	SubmitBurst       int
	TenantValidations int
}

// DefaultUploadTTL is how long an abandoned upload is kept unless the operator sets another.
const DefaultUploadTTL = 24 * time.Hour

// DefaultReleaseQuantum is the release quantum unless the operator sets another.
const DefaultReleaseQuantum = 5 * time.Second

// Defaults returns a Config with every default filled in for dataDir.
func Defaults(dataDir string) Config {
	return Config{
		DataDir:        dataDir,
		Socket:         filepath.Join(dataDir, "veil.sock"),
		Workers:        2,
		Approvals:      1,
		Review:         policy.DefaultReviewConfig(),
		Isolation:      "container",
		SandboxPool:    4, // twice Workers (see SandboxPool)
		JobMemoryMB:    2048,
		JobThreads:     2,
		JobWall:        5 * time.Minute,
		JobPids:        256,
		MaxResultByte:  64 << 20,
		JobSpillMB:     8 << 10,
		ScratchMB:      64,
		SweepEvery:     30 * time.Second,
		UploadTTL:      DefaultUploadTTL,
		MinFreeMB:      1024,
		RefusalWindow:  time.Minute,
		ReleaseQuantum: DefaultReleaseQuantum,
		// A tenant's flood is bounded; an ordinary workload (a script resubmitting nightly
		// jobs, a notebook) does not notice.
		TenantJobs:        100,
		SubmitRate:        10,
		SubmitBurst:       100,
		TenantValidations: 2,
	}
}

// DuckDBMemoryMB is the memory limit of a job's DuckDB (a SQL job's, a training job's):
// three quarters of JobMemoryMB, but leaving at least 256 MB of the job's limit for what
// DuckDB allocates beyond its own limit and the runner's Go runtime (measured: about 170
// MB over DuckDB's 1536 MB on 100M rows, 60 MB over 192 MB), and never less than a
// quarter. Beyond its limit DuckDB spills to the job's spill area (JobSpillMB).
func (c Config) DuckDBMemoryMB() int {
	return max(c.JobMemoryMB/4, min(c.JobMemoryMB*3/4, c.JobMemoryMB-256))
}

// StorePath is the store's file.
func (c Config) StorePath() string { return filepath.Join(c.DataDir, "veil.db") }

// KeyPath is the platform's signing key (owner-only): AuditKey, or DataDir/keys/platform.key.
func (c Config) KeyPath() string {
	if c.AuditKey != "" {
		return c.AuditKey
	}
	return filepath.Join(c.DataDir, "keys", "platform.key")
}

// PubPath is the platform's public key, for anyone who verifies its signatures.
func (c Config) PubPath() string { return filepath.Join(c.DataDir, "platform.pub") }

// ProjectionsPath is where the projections of dataset versions onto grants' columns are
// kept (the files a production job's sandbox mounts), one directory per dataset.
func (c Config) ProjectionsPath() string { return filepath.Join(c.DataDir, "projections") }

// DataPath is where registered dataset files are kept, one directory per version.
func (c Config) DataPath() string { return filepath.Join(c.DataDir, "datasets") }
