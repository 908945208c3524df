package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
)

// Exit codes, one per kind of failure, so that scripts can branch on what went wrong. This
// table is the one place they are decided; the README documents it (TestExitCodesDocumented
// keeps the two in step).
const (
	exitOK              = 0
	exitInternal        = 1   // the daemon's internal error, or an error of no other kind
	exitUsage           = 2   // bad flags or arguments, or a request the daemon found invalid
	exitNotFound        = 3   // no such job, grant, dataset, profile or file
	exitForbidden       = 4   // the principal's role or tenant does not allow it
	exitUnauthenticated = 5   // no token, or an unknown or revoked one
	exitConflict        = 6   // a conflict with the current state, including an exhausted budget
	exitUnavailable     = 7   // the daemon cannot be reached, or cannot do it now (no sandbox)
	exitJobFailed       = 8   // job submit --wait: the job failed
	exitJobRejected     = 9   // job submit --wait=released: a reviewer rejected the output
	exitJobCanceled     = 10  // job submit --wait: the job was canceled
	exitCheckFailed     = 11  // doctor, audit verify, export verify: a check did not pass
	exitInterrupted     = 130 // interrupted (Ctrl-C, SIGTERM), as shells report it
)

// exitKinds names each code as the CLI reports it with -o json, and says what it means.
var exitKinds = []struct {
	code    int
	kind    string
	meaning string
}{
	{exitOK, "ok", "success"},
	{exitInternal, "internal", "an internal error (details in the daemon log), or an error of no other kind"},
	{exitUsage, "usage", "bad flags or arguments, or a request the daemon refused as invalid"},
	{exitNotFound, "not_found", "no such job, grant, dataset, principal, profile or file (or not visible to you)"},
	{exitForbidden, "forbidden", "your role or tenant does not allow it"},
	{exitUnauthenticated, "unauthenticated", "no token, or an unknown or revoked token"},
	{exitConflict, "conflict", "conflicts with the current state, including an exhausted privacy budget"},
	{exitUnavailable, "unavailable", "the daemon cannot be reached, or cannot do it now"},
	{exitJobFailed, "job_failed", "job submit --wait: the job failed"},
	{exitJobRejected, "job_rejected", "job submit --wait=released: a reviewer rejected the output"},
	{exitJobCanceled, "job_canceled", "job submit --wait: the job was canceled"},
	{exitCheckFailed, "check_failed", "doctor, audit verify or export verify: a check did not pass"},
	{exitInterrupted, "interrupted", "interrupted by a signal"},
}

// apiKinds maps the API error's kind field to an exit code.
var apiKinds = map[string]int{
	"invalid":          exitUsage,
	"too_large":        exitUsage,
	"not_found":        exitNotFound,
	"forbidden":        exitForbidden,
	"unauthenticated":  exitUnauthenticated,
	"conflict":         exitConflict,
	"budget_exhausted": exitConflict,
	"unavailable":      exitUnavailable,
	"rate_limited":     exitUnavailable, // too many submissions or jobs now: try again later
	"internal":         exitInternal,
}

// httpStatuses is the fallback for an error answer without a kind (a proxy in between).
var httpStatuses = map[int]int{
	http.StatusBadRequest:            exitUsage,
	http.StatusRequestEntityTooLarge: exitUsage,
	http.StatusNotFound:              exitNotFound,
	http.StatusForbidden:             exitForbidden,
	http.StatusUnauthorized:          exitUnauthenticated,
	http.StatusConflict:              exitConflict,
	http.StatusServiceUnavailable:    exitUnavailable,
	http.StatusTooManyRequests:       exitUnavailable,
	http.StatusBadGateway:            exitUnavailable,
	http.StatusGatewayTimeout:        exitUnavailable,
}

// exitError is an error the CLI itself decided the exit code of.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr is a mistake in flags or arguments that the command found itself.
func usageErr(format string, a ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, a...)}
}

// notFoundErr is something named on the command line that does not exist locally.
func notFoundErr(format string, a ...any) error {
	return &exitError{exitNotFound, fmt.Errorf(format, a...)}
}

// checkErr is a verification or pre-flight check that did not pass.
func checkErr(format string, a ...any) error {
	return &exitError{exitCheckFailed, fmt.Errorf(format, a...)}
}

// exitCode is the exit code of err. ran says whether a command's RunE was reached: an error
// of no known kind before that came from cobra's parsing of flags and arguments.
func exitCode(err error, ran bool) int {
	var ee *exitError
	var ae *client.Error
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ae):
		if c, ok := apiKinds[ae.Kind]; ok {
			return c
		}
		if c, ok := httpStatuses[ae.Status]; ok {
			return c
		}
		return exitInternal
	case errors.Is(err, audit.ErrTampered): // the audit log, a proof or a certificate does not verify
		return exitCheckFailed
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, fs.ErrNotExist):
		return exitNotFound
	case errors.Is(err, fs.ErrPermission):
		return exitForbidden
	case !ran:
		return exitUsage
	}
	return exitInternal
}

// kindOf names an exit code as -o json reports it.
func kindOf(code int) string {
	for _, k := range exitKinds {
		if k.code == code {
			return k.kind
		}
	}
	return "internal"
}

// cliError is what execute returns: the error and its exit code, decided once.
type cliError struct {
	err  error
	code int
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// message is what the CLI prints for err: the daemon's own message for an API error (it
// already says what to do), else the error.
func message(err error) string {
	var ae *client.Error
	if errors.As(err, &ae) {
		return ae.Msg
	}
	return err.Error()
}

// reportError writes err to w: a line for people, or with -o json or yaml an object a
// script can read (error, kind, exit_code).
func reportError(w io.Writer, output string, err error, code int) {
	if output == "json" || output == "yaml" {
		out := struct {
			Error    string `json:"error"`
			Kind     string `json:"kind"`
			ExitCode int    `json:"exit_code"`
		}{message(err), kindOf(code), code}
		if encode(w, output, out) == nil {
			return
		}
	}
	fmt.Fprintf(w, "veil: %s\n", message(err))
}
