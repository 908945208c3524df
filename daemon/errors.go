package daemon

import (
	"errors"
	"net/http"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Kinds of errors the daemon returns itself.
var (
	errUnauthenticated = errors.New("unauthenticated")
	errUnavailable     = errors.New("unavailable")
	errNotFound        = errors.New("not found")
	errInvalid         = errors.New("invalid")
	errConflict        = errors.New("conflict")
	errForbidden       = errors.New("forbidden")
)

// status maps an error kind to an HTTP status and the kind name the API reports. This is the
// one place where error kinds become statuses.
func status(err error) (int, string) {
	switch {
	case errors.Is(err, errUnauthenticated):
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, policy.ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, errNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, policy.ErrForbidden), errors.Is(err, errForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, policy.ErrInvalid), errors.Is(err, engine.ErrRefused), errors.Is(err, errInvalid):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, policy.ErrConflict), errors.Is(err, store.ErrConflict), errors.Is(err, errConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	}
	return http.StatusInternalServerError, "internal"
}
