package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Error kinds. Callers branch with errors.Is.
var (
	// ErrInvalid marks malformed input: an entry, a key, a proof or a certificate that
	// cannot be parsed or breaks a rule of its format.
	ErrInvalid = errors.New("invalid")
	// ErrTampered marks an integrity failure: a log, proof or certificate that is well
	// formed but does not verify.
	ErrTampered = errors.New("integrity check failed")
	// ErrNotFound marks a request for an entry or checkpoint the log does not have.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable marks a storage failure outside the store: the signer's state file
	// or a checkpoint archive could not be written or read.
	ErrUnavailable = errors.New("unavailable")
)

// MaxEntrySize bounds the encoded size of one entry. Entries describe actions; they are not
// a place for data, so a large entry is a bug in the caller.
const MaxEntrySize = 64 << 10

// Entry is one audit record. It must never contain an exact query result or a secret.
type Entry struct {
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor"` // principal id
	Role    string            `json:"role"`
	Tenant  string            `json:"tenant,omitempty"`
	Action  string            `json:"action"` // e.g. "grant.apply", "job.submit", "export.get"
	Object  string            `json:"object"` // e.g. "grant/g-123"
	Details map[string]string `json:"details,omitempty"`
}

// encodeEntry returns the canonical encoding of e: JSON with fields in struct order, map
// keys sorted (encoding/json does both) and the time in UTC with nanoseconds. A zero time
// is an error rather than a silent "now", so that the time recorded is the caller's.
func encodeEntry(e Entry) ([]byte, error) {
	if e.Time.IsZero() {
		return nil, fmt.Errorf("%w: audit entry has no time", ErrInvalid)
	}
	if e.Action == "" {
		return nil, fmt.Errorf("%w: audit entry has no action", ErrInvalid)
	}
	// encoding/json would silently replace invalid UTF-8 with U+FFFD, recording something
	// other than what the caller passed.
	valid := utf8.ValidString(e.Actor) && utf8.ValidString(e.Role) && utf8.ValidString(e.Tenant) &&
		utf8.ValidString(e.Action) && utf8.ValidString(e.Object)
	for k, v := range e.Details {
		valid = valid && utf8.ValidString(k) && utf8.ValidString(v)
	}
	if !valid {
		return nil, fmt.Errorf("%w: audit entry %s has a field that is not valid UTF-8", ErrInvalid, e.Action)
	}
	e.Time = e.Time.UTC() // also drops the monotonic clock reading
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("%w: encode audit entry %s: %v", ErrInvalid, e.Action, err)
	}
	if len(data) > MaxEntrySize {
		return nil, fmt.Errorf("%w: audit entry %s is %d bytes, more than %d", ErrInvalid, e.Action, len(data), MaxEntrySize)
	}
	return data, nil
}

// DecodeEntry parses a record as stored by Log.Append. It is strict (unknown fields,
// trailing data and oversized records are refused) because records may come from an
// untrusted copy of the log. Decoding says nothing about integrity: verify the log or an
// inclusion proof first.
func DecodeEntry(data []byte) (Entry, error) {
	if len(data) > MaxEntrySize {
		return Entry{}, fmt.Errorf("%w: audit record is %d bytes, more than %d", ErrInvalid, len(data), MaxEntrySize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("%w: audit record is not an entry: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Entry{}, fmt.Errorf("%w: audit record has data after the entry", ErrInvalid)
	}
	if e.Time.IsZero() || e.Action == "" {
		return Entry{}, fmt.Errorf("%w: audit record has no time or no action", ErrInvalid)
	}
	return e, nil
}
