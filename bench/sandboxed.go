package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/sandbox"
)

// sbEnv is a sandbox runtime of the run's own (the daemon has another), for the figures of
// the runner in a sandbox without the daemon: the part of a job that the sandbox and the
// runner cost, measured against raw DuckDB on the same file.
type sbEnv struct {
	rt    *sandbox.Runtime
	state string
	pools map[sandbox.Limits]*sandbox.Pool
	seq   int
}

// runnerArgs is how the daemon starts the runner in a sandbox.
var runnerArgs = []string{"/veil", "runner"}

func (e *env) sandboxes() (*sbEnv, error) {
	if e.sb != nil {
		return e.sb, nil
	}
	if e.o.Isolation != "container" {
		return nil, errors.New("the sandbox figures need --isolation=container")
	}
	state, err := os.MkdirTemp(e.o.Dir, "sandbox-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(state, 0o711); err != nil { // the sandbox's unprivileged root traverses it
		return nil, errors.Join(err, os.RemoveAll(state))
	}
	rt, err := sandbox.New(filepath.Join(state, "sandbox"), sandbox.WithBinary(e.o.Binary))
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(state))
	}
	e.sb = &sbEnv{rt: rt, state: state, pools: map[sandbox.Limits]*sandbox.Pool{}}
	return e.sb, nil
}

func (e *env) stopSandboxes() error {
	if e.sb == nil {
		return nil
	}
	var errs []error
	for _, p := range e.sb.pools {
		errs = append(errs, p.Close())
	}
	if _, err := e.sb.rt.Cleanup(context.Background()); err != nil {
		errs = append(errs, err)
	}
	e.sb.rt.RemoveCgroupParent()
	errs = append(errs, os.RemoveAll(e.sb.state))
	e.sb = nil
	return errors.Join(errs...)
}

// pool returns the pool (two sandboxes prepared ahead) of the runner with limits l.
func (s *sbEnv) pool(l sandbox.Limits) (*sandbox.Pool, error) {
	if p, ok := s.pools[l]; ok {
		return p, nil
	}
	p, err := s.rt.NewPool(sandbox.Template{Args: runnerArgs, Limits: l}, poolSize)
	if err != nil {
		return nil, err
	}
	s.pools[l] = p
	return p, nil
}

// waitReady waits (up to 30 s) until the pool of limits l has a sandbox ready.
func (s *sbEnv) waitReady(l sandbox.Limits) (*sandbox.Pool, error) {
	p, err := s.pool(l)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); p.Ready() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	return p, nil
}

// settle waits (up to 30 s) until every pool is full again, so that refilling one does not
// slow what is measured next.
func (s *sbEnv) settle() {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		full := true
		for _, p := range s.pools {
			full = full && p.Ready() == poolSize
		}
		if full {
			return
		}
	}
}

// poolSize is how many sandboxes the benchmark's pools keep ready: as many as the daemon's
// default pool.
var poolSize = daemon.Defaults("").SandboxPool

// inSandbox mounts a job's files at /data/<table>/<file>, as the daemon's launcher does.
func inSandbox(j engine.Job) (engine.Job, []sandbox.Mount) {
	var mounts []sandbox.Mount
	j.Tables = slices.Clone(j.Tables)
	for i, t := range j.Tables {
		var inside []string
		for _, f := range t.Files {
			dst := "/data/" + t.Name + "/" + filepath.Base(f)
			mounts = append(mounts, sandbox.Mount{Source: f, Destination: dst})
			inside = append(inside, dst)
		}
		j.Tables[i].Files = inside
	}
	return j, mounts
}

// run runs j by the runner in a sandbox: a fresh one, or one of the pool's (waiting, not
// timed, until the pool has one ready: the steady state of a daemon between jobs). It
// returns the wall time of the call and the result.
func (s *sbEnv) run(ctx context.Context, j engine.Job, l sandbox.Limits, pooled bool) (time.Duration, *sandbox.Result, []byte, error) {
	j, mounts := inSandbox(j)
	if l.SpillBytes > 0 {
		j.TempDir, j.TempMaxMB = sandbox.SpillPath, int(l.SpillBytes>>20)*9/10
	}
	in, err := json.Marshal(j)
	if err != nil {
		return 0, nil, nil, err
	}
	s.seq++
	spec := sandbox.Spec{ID: fmt.Sprintf("bench-%d-%d", os.Getpid(), s.seq), Args: runnerArgs, Stdin: in, Mounts: mounts, Limits: l}
	var out bytes.Buffer
	var res *sandbox.Result
	var start time.Time
	if pooled {
		p, err := s.waitReady(l)
		if err != nil {
			return 0, nil, nil, err
		}
		start = time.Now()
		res, err = p.Run(ctx, spec, &out)
		if err != nil {
			return 0, nil, nil, err
		}
	} else {
		start = time.Now()
		if res, err = s.rt.Run(ctx, spec, &out); err != nil {
			return 0, nil, nil, err
		}
	}
	d := time.Since(start)
	if res.Status != sandbox.StatusOK {
		return 0, res, nil, fmt.Errorf("runner in a sandbox: %s: %s (stderr %q)", res.Status, res.Message, tail(res.Stderr, 500))
	}
	return d, res, out.Bytes(), nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// rawDB is a warm raw DuckDB (threads=2) that times one query at a time.
type rawDB struct{ db *sql.DB }

func openRaw(setup ...string) (*rawDB, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	for _, st := range append([]string{"SET threads=2"}, setup...) {
		if _, err := db.Exec(st); err != nil {
			db.Close()
			return nil, err
		}
	}
	return &rawDB{db: db}, nil
}

func (r *rawDB) time(ctx context.Context, q string) (time.Duration, error) {
	start := time.Now()
	rows, err := r.db.QueryContext(ctx, q)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
	}
	err = errors.Join(rows.Err(), rows.Close())
	return time.Since(start), err
}

func (r *rawDB) close() error { return r.db.Close() }

// step is one thing timed in each round of an interleaved measurement.
type step struct {
	name string
	run  func() (time.Duration, error)
}

// samples are the times of the steps of an interleaved measurement, by step, one per round.
type samples map[string][]time.Duration

// interleave runs every step once per round, for a warm-up round and then reps rounds, so
// that a machine whose speed drifts (it is shared) slows all of them alike; compare steps
// with ratio, round by round. settle, when not nil, runs (untimed) before each step: it
// waits for background work of the previous step (a pool refilling) to end.
func interleave(reps int, settle func(), steps ...step) (samples, error) {
	return rounds(1, reps, settle, steps...)
}

// rounds is interleave with warm rounds not counted (0 for steps that take minutes and
// whose files are already cached).
func rounds(warm, reps int, settle func(), steps ...step) (samples, error) {
	out := samples{}
	for r := 0; r < warm+reps; r++ {
		for _, s := range steps {
			if settle != nil {
				settle()
			}
			d, err := s.run()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			if r >= warm {
				out[s.name] = append(out[s.name], d)
			}
		}
	}
	return out, nil
}

// med is the median time of a step.
func (s samples) med(name string) time.Duration { return median(s[name]) }

// ratio is the median over rounds of a's time over b's.
func (s samples) ratio(a, b string) float64 {
	var rs []float64
	for i := range s[a] {
		rs = append(rs, float64(s[a][i])/float64(s[b][i]))
	}
	slices.Sort(rs)
	if len(rs)%2 == 0 {
		return (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	return rs[len(rs)/2]
}

// diff is the median over rounds of a's time minus b's.
func (s samples) diff(a, b string) time.Duration {
	var ds []time.Duration
	for i := range s[a] {
		ds = append(ds, s[a][i]-s[b][i])
	}
	return median(ds)
}

// pairedRatio is a ratio figure whose value is the median of per-round ratios (the times in
// its note are medians of their own).
func (e *env) pairedRatio(name string, s samples, a, b, bname, note string) Figure {
	f := e.st.ratio(name, ms(s.med(a)), bname, ms(s.med(b)), note+" Median of per-round ratios, steps interleaved.")
	f.Ratio = s.ratio(a, b)
	f.Value = f.Ratio
	return f
}
