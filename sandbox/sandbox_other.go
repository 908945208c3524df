//go:build !linux

package sandbox

import (
	"context"
	"fmt"
	"io"
	"runtime"
)

// Option configures a Runtime.
type Option func(*struct{})

// Runtime is not available outside Linux.
type Runtime struct{}

// New always fails outside Linux.
func New(stateDir string, opts ...Option) (*Runtime, error) {
	return nil, fmt.Errorf("%w: containers need Linux, this is %s", ErrUnavailable, runtime.GOOS)
}

func (r *Runtime) Run(ctx context.Context, spec Spec, result io.Writer) (*Result, error) {
	return nil, ErrUnavailable
}

func (r *Runtime) Cleanup(ctx context.Context) ([]string, error) { return nil, ErrUnavailable }

// ImportImage is not implemented outside Linux.
func ImportImage(src, dst string) (Image, error) { return Image{}, ErrUnavailable }

// DigestImage is not implemented outside Linux.
func DigestImage(path string) (Image, error) { return Image{}, ErrUnavailable }

// SpillErr is ErrUnavailable outside Linux.
func (r *Runtime) SpillErr() error { return ErrUnavailable }

// HostID is 0 outside Linux.
func (r *Runtime) HostID() int64 { return 0 }

// RunLocal is not implemented outside Linux.
func RunLocal(ctx context.Context, spec Spec, result io.Writer) (*Result, error) {
	return nil, ErrUnavailable
}

// Init does nothing outside Linux.
func Init() {}

// RemoveCgroupParent does nothing where there are no sandboxes.
func (r *Runtime) RemoveCgroupParent() {}

// Template is what every sandbox of a Pool runs.
type Template struct {
	Args   []string
	Env    []string
	Limits Limits
}

// Pool is not available outside Linux.
type Pool struct{}

// NewPool always fails outside Linux.
func (r *Runtime) NewPool(t Template, size int) (*Pool, error) { return nil, ErrUnavailable }

func (p *Pool) Run(ctx context.Context, spec Spec, result io.Writer) (*Result, error) {
	return nil, ErrUnavailable
}

func (p *Pool) Close() error { return nil }

// Ready is 0 outside Linux.
func (p *Pool) Ready() int { return 0 }

// PoolStats is what a Pool has done since it was made.
type PoolStats struct {
	Ready                                 int
	StartedAhead, StartedOnDemand, Failed int64
}

// Stats is zero outside Linux.
func (p *Pool) Stats() PoolStats { return PoolStats{} }
