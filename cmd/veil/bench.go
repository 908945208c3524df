package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/bench"
)

// newBenchCmd runs the whole-system benchmarks (bench package) and writes RESULTS.md and
// results.json into --out, figure by figure as they are measured.
func newBenchCmd() *cobra.Command {
	o := bench.Options{Dir: "bench/data", Rows: 10_000_000, Units: 1_000_000, Groups: 100, Reps: 5, Isolation: "container"}
	out := "bench"
	var sandboxJSON string
	var suites []string
	for _, s := range bench.Suites() {
		suites = append(suites, s[0]+" ("+s[1]+")")
	}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Veil end to end against raw DuckDB; write RESULTS.md and results.json",
		Long: "Measure Veil end to end against raw DuckDB and write RESULTS.md and results.json into --out (created if\n" +
			"missing), each figure as soon as it is measured. Figures already there are kept unless measured again.\n\nSuites: " +
			strings.Join(suites, "; ") + ".",
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			o.Binary, o.Log = bin, os.Stderr
			o.Command = "veil " + strings.Join(os.Args[1:], " ")
			if os.Geteuid() != 0 && o.Isolation == "container" {
				return fmt.Errorf("the benchmark measures the sandboxed path and needs root; run as root or pass --isolation=process")
			}
			res, err := bench.OpenResults(out)
			if err != nil {
				return err
			}
			if sandboxJSON != "" {
				sf, err := bench.SandboxFigures(sandboxJSON, "make bench (bin/bench-sandbox -n 100)")
				if err != nil {
					return err
				}
				if err := res.Add(sf...); err != nil {
					return err
				}
			}
			runErr := bench.Run(cmd.Context(), o, res)
			figs := res.Figures()
			var rows [][]string
			for _, f := range figs {
				rows = append(rows, []string{f.Name, fmt.Sprintf("%.3g", f.Value), f.Unit, f.Note})
			}
			if err := print(figs, []string{"FIGURE", "VALUE", "UNIT", "NOTE"}, rows); err != nil {
				return err
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", o.Dir, "where generated data and daemon state go")
	f.StringVar(&out, "out", out, "where RESULTS.md and results.json are written (created if missing)")
	f.IntVar(&o.Rows, "rows", o.Rows, "rows of the benchmark table")
	f.IntVar(&o.Units, "units", o.Units, "distinct persons")
	f.IntVar(&o.Groups, "groups", o.Groups, "groups")
	f.IntVar(&o.Reps, "reps", o.Reps, "measured repetitions (after one warm-up); the median is reported")
	f.StringVar(&o.Isolation, "isolation", o.Isolation, "container or process")
	f.StringVar(&o.Beam, "beam", "", "also run the Privacy on Beam peer (bin/bench-beam, built from bench/beam) on the same data")
	f.StringVar(&o.Flights, "flights", "", "vega-datasets' flights-3m.parquet, for the real-data figures")
	f.IntVar(&o.ScaleRows, "scale-rows", 0, "rows of the scale suite (default 100M; persons are a tenth)")
	f.StringSliceVar(&o.Only, "only", nil, "run only these suites (comma-separated)")
	f.StringVar(&sandboxJSON, "sandbox-json", "", "also record the sandbox figures from this output of bench/sandbox")
	return cmd
}
