package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"golang.org/x/sys/unix"
)

// Refused requests are audited (platform.Refusals), coalesced per principal and action, or,
// without a valid token, per source and action. A source is a TCP peer's address, or the uid
// of the process on the other end of the Unix socket (its peer credentials).

type peerKey struct{}

// peerContext remembers who is on the other end of a Unix-socket connection.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	src := "unix"
	if raw, err := uc.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				src = fmt.Sprintf("unix uid %d", cred.Uid)
			}
		})
	}
	return context.WithValue(ctx, peerKey{}, src)
}

// source names where a request came from, for the audit of unauthenticated ones.
func source(r *http.Request) string {
	if s, ok := r.Context().Value(peerKey{}).(string); ok {
		return s
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return "tcp " + host
	}
	return "unknown"
}
