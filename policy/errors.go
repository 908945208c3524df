package policy

import "errors"

// Error kinds. Every error this package returns wraps one of them; the daemon maps them to
// HTTP statuses in one place.
var (
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	ErrInvalid   = errors.New("invalid")
	ErrConflict  = errors.New("conflict")
)
