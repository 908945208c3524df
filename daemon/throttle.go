package daemon

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/veil-dp/veil/policy"
)

// retryAfter sets Retry-After (whole seconds, at least 1) on the answer to a throttled
// request (RFC 9110 §10.2.3), so that a client knows when to try again.
func retryAfter(w http.ResponseWriter, err error) {
	var t *policy.Throttled
	if !errors.As(err, &t) {
		return
	}
	secs := max(int64((t.Retry+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}
