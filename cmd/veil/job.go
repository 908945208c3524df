package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/he"
)

func newJobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Submit and follow jobs (vendor)"}
	submit := newSubmitCmd(false)
	plan := newPlanCmd()

	var grant, status string
	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			js, err := c.Jobs(cmd.Context(), grant, status)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, j := range js {
				rows = append(rows, []string{j.ID, j.Grant, j.Status, stamp(j.Created), j.Message})
			}
			return print(js, []string{"ID", "GRANT", "STATUS", "CREATED", "MESSAGE"}, rows)
		},
	}
	list.Flags().StringVar(&grant, "grant", "", "only jobs of this grant")
	list.Flags().StringVar(&status, "status", "", "only jobs in these statuses (comma-separated)")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			j, err := c.Job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJob(j)
		},
	}
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued, running or unreviewed job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			j, err := c.CancelJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJob(j)
		},
	}
	cmd.AddCommand(submit, plan, list, show, cancel)
	return cmd
}

// What job submit --wait waits for.
const (
	waitRun      = "run"      // the job has run: it waits for review, or it failed
	waitReleased = "released" // the job's output was released, or it never will be
)

// jobEnded turns how a followed job ended into the exit code scripts branch on.
func jobEnded(j api.Job) error {
	why := ""
	if j.Message != "" {
		why = ": " + j.Message
	}
	switch j.Status {
	case "failed":
		return &exitError{exitJobFailed, fmt.Errorf("job %s failed%s", j.ID, why)}
	case "rejected":
		return &exitError{exitJobRejected, fmt.Errorf("job %s was rejected%s", j.ID, why)}
	case "canceled":
		return &exitError{exitJobCanceled, fmt.Errorf("job %s was canceled%s", j.ID, why)}
	}
	return nil
}

func printJob(j api.Job) error {
	pairs := []string{"job", j.ID, "grant", j.Grant, "mode", j.Mode, "status", j.Status, "message", j.Message}
	if m := j.Metering; m != nil {
		pairs = append(pairs, "metering", fmt.Sprintf("wall %d ms, cpu %d ms, peak memory %d MB, %d groups (%d suppressed)", m.WallMS, m.CPUMS, m.PeakMemoryMB, m.Groups, m.Suppressed))
	}
	return kv(j, pairs...)
}

// newSubmitCmd is `veil job submit`, or with dev `veil dev run`: the same job, the same flags.
func newSubmitCmd(dev bool) *cobra.Command { return submitCmd(dev, false) }

// newPlanCmd is `veil job plan`: the flags of job submit, and nothing runs or is spent.
func newPlanCmd() *cobra.Command { return submitCmd(false, true) }

func submitCmd(dev, planOnly bool) *cobra.Command {
	var req api.SubmitJob
	var file string
	var wait string
	var dpo api.DPOptions
	var bounds []string
	var hes api.HEScore
	var model, bundle, trainFile, runtime, program string
	var datasets []string
	use, short := "submit --grant G (--sql 'SELECT ...' | -f FILE.sql | --train SPEC | --model M.enc --public P.bundle --dataset D | --runtime R --program P --datasets D)",
		"Submit a job under a grant: SQL, a model trainer, an he-score or a custom program"
	if dev {
		use, short = "run --grant G (the same flags as veil job submit)", "Run a job on the dev twins now: no budget, the output shown at once"
	}
	if planOnly {
		use, short = "plan --grant G (the same flags as veil job submit)", "Plan a job without running it: what it would spend and what would remain, and how noisy each released value would be"
	}
	var dryRun bool
	submit := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			// --wait takes an optional value; `--wait released` (with a space) reaches us as
			// the flag's default and an argument.
			if len(args) == 1 && wait == waitRun && (args[0] == waitRun || args[0] == waitReleased) {
				wait, args = args[0], nil
			}
			if len(args) > 0 {
				return usageErr("unexpected argument %q: the query goes in --sql or -f FILE", args[0])
			}
			if wait != "" && wait != waitRun && wait != waitReleased {
				return usageErr("--wait=%q: use --wait (until the job has run) or --wait=released (through review)", wait)
			}
			c, err := connect()
			if err != nil {
				return err
			}
			if runtime != "" || program != "" {
				// A custom job: the program file goes with the request.
				if runtime == "" || program == "" {
					return usageErr("a custom job needs --runtime (veil runtime list) and --program FILE")
				}
				b, err := os.ReadFile(program)
				if err != nil {
					return err
				}
				up, err := c.UploadProgram(cmd.Context(), b)
				if err != nil {
					return fmt.Errorf("upload %s: %w", program, err)
				}
				req.Custom = &api.CustomJob{Runtime: runtime, Program: up.Digest, Datasets: datasets}
			}
			if trainFile != "" {
				// A model job: the spec file (YAML or JSON) is the whole job.
				b, err := os.ReadFile(trainFile)
				if err != nil {
					return err
				}
				var spec api.TrainSpec
				dec := yaml.NewDecoder(bytes.NewReader(b))
				dec.KnownFields(true)
				if err := dec.Decode(&spec); err != nil {
					return usageErr("%s: %v (see the README for the fields of a trainer spec)", trainFile, err)
				}
				req.Train = &spec
			}
			if model != "" || bundle != "" {
				// he-score: upload the public bundle and the encrypted model, then name them.
				for _, up := range []struct {
					file string
					dst  *string
				}{{bundle, &hes.Bundle}, {model, &hes.Model}} {
					if up.file == "" {
						return usageErr("an he-score job needs both --model (veil he encrypt-model) and --public (veil he keygen)")
					}
					b, err := os.ReadFile(up.file)
					if err != nil {
						return err
					}
					// A secret key is stopped here, before it leaves the machine (the daemon
					// would refuse it too).
					if kind, _ := he.BlobKind(b); kind == he.BlobSecretKey {
						clear(b)
						return usageErr("%s is a secret key: it must never leave this machine; pass the public.bundle that veil he keygen wrote next to it", up.file)
					}
					clear(b)
					abs, err := filepath.Abs(up.file)
					if err != nil {
						return err
					}
					// Sent in resumable parts (POST /v1/uploads), then stored by the upload's ID.
					u, state, err := uploadFile(cmd, c, abs)
					if err != nil {
						return err
					}
					blob, err := c.UploadBlobFrom(cmd.Context(), u.ID)
					if err != nil {
						return fmt.Errorf("upload %s: %w", up.file, err)
					}
					forgetUploads([]string{state})
					*up.dst = blob.Digest
				}
				req.HE = &hes
			}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				req.SQL = string(b)
			}
			if cmd.Flags().Changed("epsilon") || req.Mode == "dp" {
				for _, b := range bounds {
					col, rng, ok1 := strings.Cut(b, "=")
					lo, hi, ok2 := strings.Cut(rng, ":")
					l, err1 := strconv.ParseFloat(lo, 64)
					h, err2 := strconv.ParseFloat(hi, 64)
					if !ok1 || !ok2 || err1 != nil || err2 != nil {
						return usageErr("--bound %q: write COLUMN=LOWER:UPPER, for example age=0:120", b)
					}
					if dpo.Bounds == nil {
						dpo.Bounds = map[string][2]float64{}
					}
					dpo.Bounds[col] = [2]float64{l, h}
				}
				req.DP = &dpo
			}
			if planOnly || dryRun {
				pl, err := c.PlanJob(cmd.Context(), req)
				if err != nil {
					return err
				}
				return printPlan(pl)
			}
			if dev {
				out, err := c.DevRun(cmd.Context(), req)
				if err != nil {
					return err
				}
				return printDev(out)
			}
			j, err := c.SubmitJob(cmd.Context(), req)
			if err != nil {
				return err
			}
			if wait == "" {
				return printJob(j)
			}
			done := func(j api.Job) bool { return client.Terminal(j.Status) }
			if wait == waitReleased {
				done = func(j api.Job) bool { return client.Final(j.Status) }
			}
			p := newProgress(g.errOut)
			start := time.Now()
			j, err = c.WaitUntil(cmd.Context(), j.ID, done, func(j api.Job) {
				p.line(fmt.Sprintf("job %s: %s (%.1fs)", j.ID, j.Status, time.Since(start).Seconds()))
			})
			p.done()
			if err != nil {
				return err
			}
			if err := printJob(j); err != nil {
				return err
			}
			return jobEnded(j)
		},
	}
	f := submit.Flags()
	f.StringVar(&req.Grant, "grant", "", "grant the job runs under")
	f.StringVar(&req.SQL, "sql", "", "the query")
	f.StringVarP(&file, "file", "f", "", "read the query from a file")
	f.StringVar(&req.IdempotencyKey, "idempotency-key", "", "a retry with the same key never runs (or spends) twice")
	f.StringVar(&wait, "wait", "", "follow the job: --wait until it has run (exit code 8 if it failed), --wait=released also through review (0 only if released)")
	f.Lookup("wait").NoOptDefVal = waitRun
	f.StringVar(&req.Mode, "mode", "", "threshold or dp (default: dp when --epsilon is given)")
	f.Float64Var(&dpo.Epsilon, "epsilon", 0, "dp: the epsilon this query spends (split evenly over its aggregates and partition selection)")
	f.Float64Var(&dpo.Delta, "delta", 0, "dp: the delta this query spends (partition selection; gaussian noise)")
	f.Int64Var(&dpo.MaxGroups, "max-groups", 1, "dp: groups one person may contribute to")
	f.Int64Var(&dpo.MaxRows, "max-rows", 1, "dp: rows one person may contribute to one group")
	f.StringArrayVar(&bounds, "bound", nil, "dp: COLUMN=LOWER:UPPER clamps a column (repeatable; default: the catalog's bounds)")
	f.StringVar(&dpo.Noise, "noise", "laplace", "dp: laplace or gaussian")
	f.StringVar(&runtime, "runtime", "", "custom: the registered runtime image the program runs on (veil runtime list)")
	f.StringVar(&program, "program", "", "custom: the program file (run as the runtime's entrypoint + /job/program); makes this a custom job")
	f.StringSliceVar(&datasets, "datasets", nil, "custom: the granted datasets the program reads, as /in/<dataset>.parquet")
	f.StringVar(&trainFile, "train", "", "model: a trainer spec (YAML or JSON: dataset, trainer, features, label, epsilon, ...); makes this a model job")
	f.StringVar(&model, "model", "", "he: the encrypted model (veil he encrypt-model); makes this an he-score job")
	f.StringVar(&bundle, "public", "", "he: the public key bundle the model was encrypted for (veil he keygen)")
	f.StringVar(&hes.Dataset, "dataset", "", "he: the dataset whose rows are scored")
	f.StringSliceVar(&hes.GroupBy, "group-by", nil, "he: group-by keys (comma-separated); scores are summed per group")
	if !dev && !planOnly {
		f.BoolVar(&dryRun, "dry-run", false, "plan the job instead (veil job plan): nothing runs, nothing is spent")
	}
	submit.MarkFlagRequired("grant")
	return submit
}

// printDev shows a dev run's output with its label.
func printDev(out api.DevOutput) error {
	if g.output != "table" {
		return print(out, nil, nil)
	}
	fmt.Fprintf(g.out, "%s\n", out.Label)
	for _, n := range out.Nulls {
		fmt.Fprintf(g.out, "NULL in the twin: %s.%s (%s)\n", n.Dataset, n.Column, n.Reason)
	}
	if err := printJob(out.Job); err != nil {
		return err
	}
	for _, f := range out.Files {
		fmt.Fprintf(g.out, "--- %s (%s, %d bytes)\n%s\n", f.Name, f.Kind, f.Bytes, strings.TrimRight(f.Preview, "\n"))
	}
	if out.Rows == nil {
		return nil
	}
	var rows [][]string
	for _, row := range out.Rows {
		var cells []string
		for _, v := range row {
			if v == nil {
				cells = append(cells, "NULL")
			} else {
				cells = append(cells, fmt.Sprint(v))
			}
		}
		rows = append(rows, cells)
	}
	return print(out, out.Columns, rows)
}

// newDevCmd is the development environment: run jobs on the dev twins, show them, promote
// them to production.
func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dev", Short: "Develop jobs on the datasets' dev twins (masked or synthetic), then promote them (vendor)"}
	show := &cobra.Command{
		Use:   "show JOB",
		Short: "Show a dev run and its output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			out, err := c.DevShow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printDev(out)
		},
	}
	promote := &cobra.Command{
		Use:   "promote JOB",
		Short: "Submit a dev run's job, unchanged, to production (budget and review apply there)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			j, err := c.DevPromote(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJob(j)
		},
	}
	cmd.AddCommand(newSubmitCmd(true), show, promote)
	return cmd
}
