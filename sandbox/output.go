package sandbox

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// boundedBuffer keeps the first max bytes written to it and silently drops
// the rest; with tail, the last max bytes (a failing program says why at the end),
// after a line saying how many bytes before them were dropped. Writes never fail,
// so the program writing is never stopped by the bound.
type boundedBuffer struct {
	mu      sync.Mutex
	max     int64
	tail    bool
	buf     []byte
	dropped int64 // with tail: bytes dropped from the start
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tail {
		if int64(len(p)) >= b.max {
			b.dropped += int64(len(b.buf)) + int64(len(p)) - b.max
			b.buf = append(b.buf[:0], p[int64(len(p))-b.max:]...)
			return len(p), nil
		}
		b.buf = append(b.buf, p...)
		// Compact only past twice the bound, so that each byte is moved at most once or so.
		if over := int64(len(b.buf)) - b.max; over > 0 && int64(len(b.buf)) >= 2*b.max {
			b.dropped += over
			b.buf = append(b.buf[:0], b.buf[over:]...)
		}
		return len(p), nil
	}
	if room := b.max - int64(len(b.buf)); room > 0 {
		q := p
		if int64(len(q)) > room {
			q = q[:room]
		}
		b.buf = append(b.buf, q...)
	}
	return len(p), nil
}

func (b *boundedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.tail {
		return append([]byte(nil), b.buf...)
	}
	keep, dropped := b.buf, b.dropped
	if over := int64(len(keep)) - b.max; over > 0 {
		keep, dropped = keep[over:], dropped+over
	}
	if dropped == 0 {
		return append([]byte(nil), keep...)
	}
	return append([]byte(fmt.Sprintf("[the first %d bytes dropped; the last %d follow]\n", dropped, len(keep))), keep...)
}

var errResultTooLarge = errors.New("result exceeds its limit")

// copyResult copies at most limit bytes from r to w. It returns
// errResultTooLarge as soon as a byte beyond the limit is read, without
// passing that byte on.
func copyResult(w io.Writer, r io.Reader, limit int64) (int64, error) {
	n, err := io.Copy(w, io.LimitReader(r, limit))
	if err != nil {
		return n, err
	}
	var one [1]byte
	m, _ := io.ReadFull(r, one[:])
	if m > 0 {
		return n, errResultTooLarge
	}
	return n, nil
}

// outcome gathers what is known when a job ends; decide turns it into a
// Status. The order is the order of blame: a limit we enforced explains a
// failure better than the failure itself.
type outcome struct {
	exitCode     int
	tooLarge     bool // result pipe overflowed; we killed the job
	oom          bool // the memory cgroup OOM-killed something
	pidsHit      bool // a fork/clone failed on the pids limit
	timedOut     bool // the wall clock ran out; we killed the job
	cancelled    bool // the caller's context ended; we killed the job
	resultFailed bool // copying the result to the caller's writer failed
}

func (o outcome) decide() Status {
	switch {
	case o.tooLarge:
		return StatusResultTooLarge
	case o.oom:
		return StatusOOM
	case o.pidsHit && o.exitCode != 0:
		return StatusPids
	case o.timedOut:
		return StatusTimeout
	case o.cancelled:
		return StatusKilled
	case o.exitCode == 0 && !o.resultFailed:
		return StatusOK
	}
	return StatusFailed
}
