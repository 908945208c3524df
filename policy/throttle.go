package policy

import (
	"errors"
	"time"
)

// ErrThrottled is the kind of a request refused for how many requests its tenant makes, not
// for what it asks: it may be made again later, unchanged.
var ErrThrottled = errors.New("too many requests")

// Throttled refuses a request for its tenant's rate or load; Retry is when it is worth
// trying again (the daemon sends it as Retry-After).
type Throttled struct {
	Reason string // what limit was reached and what to do; never a data value
	Retry  time.Duration
}

func (t *Throttled) Error() string { return "too many requests: " + t.Reason }

// Is makes errors.Is(err, ErrThrottled) true for every Throttled.
func (t *Throttled) Is(target error) bool { return target == ErrThrottled }
