package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/he"
)

// Kinds of jobs the runner runs besides SQL (engine.Job.Kind).
const (
	KindScore   = "he-score"   // score an encrypted model (Score)
	KindCheck   = "he-check"   // parse an uploaded he blob fully
	KindPrepare = "he-prepare" // average a logistic model over its lanes (Prepare)
	KindModel   = "model"      // train a built-in model (Model)
)

// Main is the runner the daemon starts inside each sandbox (`veil runner`): it reads the job
// from stdin and writes the exact result to result, the pipe to the daemon. SQL jobs are the
// engine's; an he-score job is scored here, because only the runner may join the engine
// (which reads the data) and he (which encrypts); model jobs train here.
//
// DuckDB is opened before the job is read: in a sandbox prepared ahead (launch's pool) the
// runner starts long before its job is known and waits on stdin with its database open, so
// a SQL job pays neither the process start nor the open. Nothing of any job is in that
// database yet, and the process runs exactly one job and ends with it.
//
// preset are the settings the daemon gives its SQL jobs, applied with the others ahead.
func Main(ctx context.Context, stdin io.Reader, result io.Writer, preset engine.Preset) error {
	db, err := engine.OpenRunnerWith(preset)
	if err != nil {
		return err
	}
	j, err := engine.ReadJob(stdin)
	if err != nil {
		return err
	}
	if j.Kind != "" {
		// The other kinds open a database for each pass over the data.
		db.Close()
	}
	if j.MemoryLimitMB > 0 {
		// The Go heap (he parsing and scoring, model training) collects before the
		// sandbox's memory limit kills the job: a soft limit at three quarters of it.
		debug.SetMemoryLimit(int64(j.MemoryLimitMB) << 20 * 3 / 4)
	}
	switch j.Kind {
	case "":
		// Not closed: the process ends with the job.
		return db.Run(ctx, j, result)
	case KindScore:
		res, err := scoreHE(ctx, j)
		if err != nil {
			return err
		}
		return json.NewEncoder(result).Encode(res)
	case KindCheck:
		// The full parse of an uploaded blob, here where a crash costs only this process.
		res := map[string]string{}
		b, err := os.ReadFile(j.Inputs["blob"])
		if err != nil {
			return err
		}
		kind, err := he.BlobKind(b)
		if err == nil {
			switch kind {
			case he.BlobPublicBundle:
				_, err = he.UnmarshalPublicBundle(b)
			case he.BlobEncryptedModel:
				_, err = he.UnmarshalEncryptedModel(b)
			default:
				err = fmt.Errorf("a %s is not an upload", kind)
			}
		}
		if err != nil {
			res["error"] = err.Error()
		}
		return json.NewEncoder(result).Encode(res)
	case KindPrepare:
		// The prepared model's blob, raw: the daemon checks its envelope and binding.
		b, err := prepareHE(j)
		if err != nil {
			return err
		}
		_, err = result.Write(b)
		return err
	case KindModel:
		var spec Model
		if err := json.Unmarshal(j.Spec, &spec); err != nil {
			return fmt.Errorf("model spec: %w", err)
		}
		res, err := train(ctx, j, &spec)
		if err != nil {
			return err
		}
		return json.NewEncoder(result).Encode(res)
	}
	return fmt.Errorf("unknown job kind %q", j.Kind)
}

// ExitCode is the runner's exit code for Main's error: engine.ExitResourceLimit when DuckDB
// stopped at the job's memory or spill limit (the launcher reads a resource limit), 1 for
// any other failure, 0 for none.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case engine.IsResourceLimit(err):
		return engine.ExitResourceLimit
	}
	return 1
}
