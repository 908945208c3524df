package sandbox

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/opencontainers/runc/libcontainer"
	// nsexec runs as a C constructor before the Go runtime starts when the
	// binary is re-executed as "init", to enter the new namespaces while the
	// process is still single-threaded.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init must be called first thing in main() (or TestMain) of any binary that
// can be a container init. When the binary was started by libcontainer as a
// container's init (argument "init" and libcontainer's init pipe in the
// environment) it runs libcontainer's init, which ends by executing the job
// and never returns; otherwise it returns at once, so that a command line
// such as `veil init` keeps its own meaning.
func Init() {
	if len(os.Args) > 1 && os.Args[1] == "init" && os.Getenv("_LIBCONTAINER_INITPIPE") != "" {
		libcontainer.Init()
	}
	// Inside a job: die with the daemon. libcontainer's ParentDeathSignal only
	// reaches its short-lived bootstrap process, not the job, so Run asks the
	// job to set it itself (the job's parent is a daemon thread that never
	// exits, see spawn_linux.go). A job that does not call Init (a custom
	// executable) is instead reaped by Cleanup at the next start.
	if os.Getenv(pdeathsigEnv) != "" {
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
		os.Unsetenv(pdeathsigEnv)
	}
}

// pdeathsigEnv marks a process started by Run; Init removes it.
const pdeathsigEnv = "_VEIL_SANDBOX_PDEATHSIG"
