package main

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// notifier speaks systemd's service notification protocol (sd_notify(3)): datagrams of
// newline-separated KEY=VALUE assignments sent to the Unix socket named by $NOTIFY_SOCKET
// (a name starting with '@' is in the abstract namespace, which Go's net package maps).
//
// It is written here rather than taken from github.com/coreos/go-systemd/v22/daemon (in
// the module graph through runc) because that package reads $NOTIFY_SOCKET on every call:
// it can either keep the variable, and every child process (the runner, containers)
// inherits the socket, or unset it on the first message and send no STOPPING=1 or
// WATCHDOG=1 after READY=1. Here the address is read once, the variables are removed from
// the environment at once, and the daemon keeps talking.
type notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration // WatchdogSec as systemd passed it; 0 when off
}

// newNotifier reads and unsets NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID.
func newNotifier() *notifier {
	n := &notifier{}
	path := os.Getenv("NOTIFY_SOCKET")
	usec, pid := os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID")
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(v)
	}
	if path == "" {
		return n
	}
	n.addr = &net.UnixAddr{Name: path, Net: "unixgram"}
	// WATCHDOG_PID, when set, names the process the watchdog is for (sd_watchdog_enabled(3)).
	if us, err := strconv.ParseInt(usec, 10, 64); err == nil && us > 0 && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		n.watchdog = time.Duration(us) * time.Microsecond
	}
	return n
}

func (n *notifier) enabled() bool { return n.addr != nil }

// send sends one notification; a failure is logged, never fatal: the daemon serves anyway
// and systemd's start timeout says the rest.
func (n *notifier) send(state string, logger *slog.Logger) {
	if n.addr == nil {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err == nil {
		_, err = conn.Write([]byte(state))
		conn.Close()
	}
	if err != nil {
		logger.Error("systemd notify", "socket", n.addr.Name, "err", err)
	}
}
