package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/veil-dp/veil/policy"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", policy.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: request body has trailing data", policy.ErrInvalid)
	}
	return nil
}

// readUpload reads a request body bounded by the route's limit, saying so when it is hit.
func readUpload(r *http.Request, limit int64, what string) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return nil, fmt.Errorf("%w: the %s is larger than %d MiB", policy.ErrInvalid, what, limit>>20)
	}
	return body, err
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
