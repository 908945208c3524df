package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// ErrTooLarge is a request larger than its route accepts; it becomes 413.
var ErrTooLarge = errors.New("too large")

// maxJSONBody bounds the JSON body of every route but the uploads; the largest is a
// dataset's schema.
const maxJSONBody = 4 << 20

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// readJSON is the one decoder of request bodies: bounded by the route's limit, and strict
// (api.Decode), so that what runs is what the body says to anyone who reads it.
func readJSON(r *http.Request, v any) error {
	body, err := readBody(r, "request body")
	if err != nil {
		return err
	}
	if err := api.Decode(body, v); err != nil {
		return fmt.Errorf("%w: request body: %v", policy.ErrInvalid, err)
	}
	return nil
}

// readBody reads a request body through the route's MaxBytesReader, saying so when its limit
// is hit.
func readBody(r *http.Request, what string) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return nil, fmt.Errorf("%w: the %s is larger than %s, the limit of %s %s", ErrTooLarge, what, size(mb.Limit), r.Method, r.Pattern)
	}
	return body, err
}

func size(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// checkQuery refuses a query string that does not parse, or that gives a parameter twice:
// which of two values a handler, a proxy or a log takes is not the same everywhere.
func checkQuery(r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("%w: the query string does not parse: separate parameters with '&' and escape their values", policy.ErrInvalid)
	}
	for k, vs := range q {
		if len(vs) > 1 {
			return fmt.Errorf("%w: query parameter %.40q is given %d times; give it once", policy.ErrInvalid, k, len(vs))
		}
	}
	return nil
}

// reply writes out with code, unless err.
func reply[T any](w http.ResponseWriter, code int, out T, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, code, out)
	return nil
}

// answer decodes the request body strictly into a Req, calls fn with it and replies with
// what fn returns.
func answer[Req, Out any](w http.ResponseWriter, r *http.Request, code int, fn func(context.Context, Req) (Out, error)) error {
	var req Req
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := fn(r.Context(), req)
	return reply(w, code, out, err)
}
