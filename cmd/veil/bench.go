package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/bench"
)

// newBenchCmd runs the whole-system benchmarks (bench package) and writes bench/RESULTS.md
// and bench/results.json.
func newBenchCmd() *cobra.Command {
	o := bench.Options{Dir: "bench/data", OutDir: "bench", Rows: 10_000_000, Units: 1_000_000, Groups: 100, Reps: 5, Isolation: "container"}
	var sandboxJSON string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Veil end to end against raw DuckDB; write bench/RESULTS.md and results.json",
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
			figs, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if sandboxJSON != "" {
				sf, err := bench.SandboxFigures(sandboxJSON, "make bench (bin/bench-sandbox -n 100)")
				if err != nil {
					return err
				}
				figs = append(figs, sf...)
			}
			if err := bench.Write(o.OutDir, figs); err != nil {
				return err
			}
			var rows [][]string
			for _, f := range figs {
				rows = append(rows, []string{f.Name, fmt.Sprintf("%.3g", f.Value), f.Unit, f.Note})
			}
			return print(figs, []string{"FIGURE", "VALUE", "UNIT", "NOTE"}, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", o.Dir, "where generated data and daemon state go")
	f.StringVar(&o.OutDir, "out", o.OutDir, "where RESULTS.md and results.json are written")
	f.IntVar(&o.Rows, "rows", o.Rows, "rows of the benchmark table")
	f.IntVar(&o.Units, "units", o.Units, "distinct persons")
	f.IntVar(&o.Groups, "groups", o.Groups, "groups")
	f.IntVar(&o.Reps, "reps", o.Reps, "measured repetitions (after one warm-up); the median is reported")
	f.StringVar(&o.Isolation, "isolation", o.Isolation, "container or process")
	f.StringVar(&o.Beam, "beam", "", "also run the Privacy on Beam peer (bin/bench-beam, built from bench/beam) on the same data")
	f.StringVar(&sandboxJSON, "sandbox-json", "", "also record the sandbox figures from this output of bench/sandbox")
	return cmd
}
