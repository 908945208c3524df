package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

func newDatasetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dataset", Short: "Register and browse the catalog"}
	var schemaFile string
	var upload bool
	register := &cobra.Command{
		Use:   "register --schema FILE.yaml DATA-FILE...",
		Short: "Register Parquet or CSV files under a schema (provider)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			req, states, err := registerRequest(cmd, c, schemaFile, args, upload)
			if err != nil {
				return err
			}
			d, err := c.RegisterDataset(cmd.Context(), req)
			if err != nil {
				return err
			}
			forgetUploads(states)
			return kv(d, "dataset", d.Name, "version", d.Version, "provider", d.Provider, "rows", fmt.Sprint(d.Rows), "files", fmt.Sprint(d.Files))
		},
	}
	register.Flags().StringVar(&schemaFile, "schema", "", "schema file (YAML) classifying every column")
	register.Flags().BoolVar(&upload, "upload", false, "send the files to the daemon over the API (streamed in parts, digest checked, resumed after a failed part or by running the same command again; a progress bar when stderr is a terminal, a line per 10% otherwise) instead of naming paths on the daemon's host")
	register.MarkFlagRequired("schema")
	list := &cobra.Command{
		Use:   "list",
		Short: "List datasets",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			ds, err := c.Datasets(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, d := range ds {
				rows = append(rows, []string{d.Name, d.Provider, fmt.Sprint(d.Rows), d.Version[:12], stamp(d.Registered)})
			}
			return print(ds, []string{"NAME", "PROVIDER", "ROWS", "VERSION", "REGISTERED"}, rows)
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a dataset and the classification of its columns",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			d, err := c.Dataset(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var sch struct {
				Title   string `json:"title"`
				Unit    string `json:"unit"`
				Columns []struct {
					Name        string    `json:"name"`
					Source      string    `json:"source"`
					DomainFrom  string    `json:"domain_from"`
					Type        string    `json:"type"`
					Level       int       `json:"level"`
					Kind        string    `json:"kind"`
					PrivacyUnit bool      `json:"privacy_unit"`
					Bounds      []float64 `json:"bounds"`
					Domain      []string  `json:"domain"`
					Mask        string    `json:"mask"`
				} `json:"columns"`
			}
			if err := json.Unmarshal(d.Schema, &sch); err != nil {
				return err
			}
			if g.output != "table" {
				return print(d, nil, nil)
			}
			fmt.Fprintf(g.out, "%s (%s): %d rows, provider %s, unit %s, version %s\n\n", d.Name, sch.Title, d.Rows, d.Provider, sch.Unit, d.Version)
			var rows [][]string
			for _, c := range sch.Columns {
				extra := ""
				if c.PrivacyUnit {
					extra = "privacy unit"
				}
				if len(c.Bounds) == 2 {
					extra = strings.TrimSpace(extra + fmt.Sprintf(" bounds [%g, %g]", c.Bounds[0], c.Bounds[1]))
				}
				if len(c.Domain) > 0 {
					extra = strings.TrimSpace(extra + fmt.Sprintf(" domain of %d values", len(c.Domain)))
				}
				if c.DomainFrom != "" {
					extra += " from " + c.DomainFrom
				}
				if c.Source != "" {
					extra = strings.TrimSpace(extra + fmt.Sprintf(" header %q", c.Source))
				}
				rows = append(rows, []string{c.Name, c.Type, fmt.Sprint(c.Level), c.Kind, c.Mask, extra})
			}
			return print(d, []string{"COLUMN", "TYPE", "LEVEL", "KIND", "MASK", "NOTES"}, rows)
		},
	}
	var tw api.BuildTwin
	var masked, synthetic bool
	var pairs []string
	twin := &cobra.Command{
		Use:   "twin NAME (--masked [--rows N] | --synthetic --epsilon E [--rows N] [--pair A,B]...)",
		Short: "Build a dataset's dev twin (its provider): a masked sample, or synthetic rows from DP marginals; it waits for review",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case masked == synthetic:
				return usageErr("give one of --masked and --synthetic")
			case masked:
				tw.Kind = "masked"
			default:
				tw.Kind = "synthetic"
			}
			for _, p := range pairs {
				a, b, ok := strings.Cut(p, ",")
				if !ok {
					return usageErr("--pair %q: write COLUMN_A,COLUMN_B", p)
				}
				tw.Pairs = append(tw.Pairs, [2]string{a, b})
			}
			c, err := connect()
			if err != nil {
				return err
			}
			j, err := c.BuildTwin(cmd.Context(), args[0], tw)
			if err != nil {
				return err
			}
			return printJob(j)
		},
	}
	tf := twin.Flags()
	tf.BoolVar(&masked, "masked", false, "a sample of rows, every column masked by its catalog rule")
	tf.BoolVar(&synthetic, "synthetic", false, "synthetic rows from differentially private marginals (spends the dataset's budget)")
	tf.IntVar(&tw.Rows, "rows", 0, "rows of the twin (masked: 1000; synthetic: the noisy number of persons)")
	tf.Float64Var(&tw.Epsilon, "epsilon", 0, "synthetic: the budget the marginals spend")
	tf.StringArrayVar(&pairs, "pair", nil, "synthetic: COLUMN_A,COLUMN_B whose joint distribution is kept (repeatable)")
	var syn api.BuildTwin
	var synPairs []string
	synthesize := &cobra.Command{
		Use:   "synthesize NAME --epsilon E [--rows N] [--pair A,B]...",
		Short: "Build a synthetic twin from DP marginals (the same as veil dataset twin --synthetic); it waits for review",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			syn.Kind = "synthetic"
			for _, p := range synPairs {
				a, b, ok := strings.Cut(p, ",")
				if !ok {
					return usageErr("--pair %q: write COLUMN_A,COLUMN_B", p)
				}
				syn.Pairs = append(syn.Pairs, [2]string{a, b})
			}
			c, err := connect()
			if err != nil {
				return err
			}
			j, err := c.BuildTwin(cmd.Context(), args[0], syn)
			if err != nil {
				return err
			}
			return printJob(j)
		},
	}
	sf := synthesize.Flags()
	sf.IntVar(&syn.Rows, "rows", 0, "rows of the twin (default: the noisy number of persons)")
	sf.Float64Var(&syn.Epsilon, "epsilon", 0, "the dataset's budget the marginals spend")
	sf.StringArrayVar(&synPairs, "pair", nil, "COLUMN_A,COLUMN_B whose joint distribution is kept (repeatable)")
	cmd.AddCommand(register, list, show, twin, synthesize, newFeedbackCmd(), newDatasetInferCmd())
	cmd.AddCommand(newDatasetVersionCmds()...)
	return cmd
}
