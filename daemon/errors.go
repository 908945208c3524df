package daemon

import (
	"errors"
	"net/http"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// status maps an error kind to an HTTP status and the kind name the API reports. This is the
// one place where error kinds become statuses.
func status(err error) (int, string) {
	switch {
	case errors.Is(err, platform.ErrUnauthenticated):
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, policy.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, policy.ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, policy.ErrInvalid), errors.Is(err, engine.ErrRefused):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, policy.ErrConflict), errors.Is(err, store.ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, launch.ErrUnavailable), errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	}
	return http.StatusInternalServerError, "internal"
}
