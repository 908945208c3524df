package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

func newReviewCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "review", Short: "Review outputs before they leave (reviewer)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List outputs waiting for review",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			js, err := c.Reviews(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, j := range js {
				rows = append(rows, []string{j.ID, j.Grant, j.Tenant, j.Mode, j.Message})
			}
			return print(js, []string{"JOB", "GRANT", "TENANT", "MODE", "MESSAGE"}, rows)
		},
	}
	show := &cobra.Command{
		Use:   "show JOB",
		Short: "Show an output as it would be released, with its query, grant, mechanism and warnings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			r, err := c.Review(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.output != "table" {
				return print(r, nil, nil)
			}
			w := g.out
			m := r.Mechanism
			fmt.Fprintf(w, "job %s under grant %s (tenant %s), submitted by %s\n", r.Job.ID, r.Job.Grant, r.Job.Tenant, r.Job.Submitter)
			// The digest names this output: an approval sends it back (--digest), and is
			// refused if the stored output is no longer the one shown here.
			fmt.Fprintf(w, "digest: %s\n", r.Digest)
			fmt.Fprintf(w, "query:\n  %s\n", strings.ReplaceAll(strings.TrimSpace(r.Job.SQL), "\n", "\n  "))
			if tw := m.Twin; tw != nil {
				fmt.Fprintf(w, "mechanism: %s dev twin of %s (version %.12s): %s\n", tw.Kind, tw.Dataset, tw.Version, tw.Statement)
				if d := m.DP; d != nil {
					fmt.Fprintf(w, "  differential privacy: the marginals spend ε=%g of the dataset's budget\n", d.Epsilon)
				}
			} else if h := m.HE; h != nil {
				fmt.Fprintf(w, "mechanism: homomorphic encryption (CKKS), %s model on %s, key %s; %d rows scored; %d groups, %d not scored\n",
					h.Model, strings.Join(h.Features, ", "), h.KeyID, h.Rows, m.Groups, m.Suppressed)
				fmt.Fprintf(w, "  the score sums are one ciphertext only the vendor can decrypt (flooding error std %.2g per sum)\n", h.SumErrorStd)
				if d := m.DP; d != nil {
					var rep struct {
						Count   float64 `json:"count_noise_scale"`
						Sum     float64 `json:"sum_noise_scale"`
						Feature float64 `json:"feature_noise_scale"`
					}
					json.Unmarshal(d.Report, &rep)
					on := fmt.Sprintf("%.4g on the encrypted sums", rep.Sum)
					if rep.Feature > 0 {
						on = fmt.Sprintf("%.4g on each per-group feature sum the weights multiply", rep.Feature)
					}
					fmt.Fprintf(w, "  differential privacy: this job spends ε=%g δ=%.3g; groups by partition selection; Laplace noise scale %.4g on counts, %s\n", d.Epsilon, d.Delta, rep.Count, on)
					for _, b := range r.Budget {
						fmt.Fprintf(w, "budget of grant %s on %s: ε=%g of %g spent, ε=%g remains\n", b.Grant, b.Dataset, b.Spent.Epsilon, b.Slice.Epsilon, b.Remaining.Epsilon)
					}
				} else {
					fmt.Fprintf(w, "  groups of fewer than k=%d persons are not scored\n", m.K)
				}
				fmt.Fprintf(w, "  %s\n", h.Statement)
			} else if d := m.DP; d != nil && m.Kind == "model" {
				var rep map[string]any
				json.Unmarshal(d.Report, &rep)
				fmt.Fprintf(w, "mechanism: model trainer %v with differential privacy: %v; this job spends ε=%g δ=%.3g; each person counts as at most %d rows\n",
					rep["trainer"], rep["mechanism"], d.Epsilon, d.Delta, d.MaxRows)
				for _, k := range []string{"noise_stddev", "gradient_noise_stddev", "noise_scale", "iterations", "ridge"} {
					if v, ok := rep[k]; ok {
						fmt.Fprintf(w, "  %s: %v\n", k, v)
					}
				}
				for _, b := range r.Budget {
					fmt.Fprintf(w, "budget of grant %s on %s: ε=%g of %g spent, ε=%g remains\n", b.Grant, b.Dataset, b.Spent.Epsilon, b.Slice.Epsilon, b.Remaining.Epsilon)
				}
			} else if d := m.DP; d != nil {
				fmt.Fprintf(w, "mechanism: differential privacy, %s noise; this job spends ε=%g δ=%g; each person in at most %d groups with at most %d rows each; %d groups released\n",
					d.Noise, d.Epsilon, d.Delta, d.MaxGroups, d.MaxRows, m.Groups)
				var rep struct {
					Columns []struct {
						Column, Aggregate, Mechanism string
						Scale                        float64 `json:"noise_scale"`
						Epsilon                      float64
					}
					Selection *struct{ Epsilon, Delta float64 } `json:"partition_selection"`
				}
				json.Unmarshal(d.Report, &rep)
				for _, c := range rep.Columns {
					fmt.Fprintf(w, "  %s: %s, %s, noise scale %.4g, ε=%g\n", c.Column, c.Aggregate, c.Mechanism, c.Scale, c.Epsilon)
				}
				if s := rep.Selection; s != nil {
					fmt.Fprintf(w, "  groups: partition selection, ε=%g δ=%g\n", s.Epsilon, s.Delta)
				}
				for _, b := range r.Budget {
					fmt.Fprintf(w, "budget of grant %s on %s: ε=%g of %g spent, ε=%g remains\n", b.Grant, b.Dataset, b.Spent.Epsilon, b.Slice.Epsilon, b.Remaining.Epsilon)
				}
			} else if m.Custom == nil {
				fmt.Fprintf(w, "mechanism: %s, k=%d, counts rounded to %d; %d groups, %d suppressed\n", m.Kind, m.K, m.RoundTo, m.Groups, m.Suppressed)
				if m.Dominance > 0 {
					fmt.Fprintf(w, "  %d more suppressed by the dominance rules\n", m.Dominance)
				}
				if m.Differencing > 0 {
					fmt.Fprintf(w, "  %d more suppressed against differencing, paired with job %s\n", m.Differencing, strings.Join(m.Paired, ", "))
				}
			}
			if c := m.Custom; c != nil {
				fmt.Fprintf(w, "mechanism: custom program %s on runtime %s (%s), ended %s; %d files\n", c.Program, c.Runtime, c.Digest, c.Status, c.Files)
				fmt.Fprintf(w, "  %s\n", c.Statement)
				for _, f := range c.Findings {
					where := ""
					if f.Where != "" {
						where = " (" + f.Where + ")"
					}
					fmt.Fprintf(w, "FINDING %s %s%s: %s\n", f.Output, f.Rule, where, f.Message)
				}
			}
			fmt.Fprintf(w, "approvals: %d of %d needed\n", len(r.Job.Approvals), r.Needed)
			for _, x := range r.Warnings {
				fmt.Fprintf(w, "WARNING: %s\n", x)
			}
			if r.Files != nil {
				fmt.Fprintln(w, "files as they would be released:")
				for _, f := range r.Files {
					fmt.Fprintf(w, "--- %s (%s, %d bytes)\n", f.Name, f.Kind, f.Bytes)
					if f.Preview != "" {
						fmt.Fprintln(w, strings.TrimRight(f.Preview, "\n"))
					} else {
						fmt.Fprintln(w, "(not text)")
					}
				}
				return nil
			}
			fmt.Fprintln(w, "output as it would be released:")
			var rows [][]string
			for _, row := range r.Rows {
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
			return print(r, r.Columns, rows)
		},
	}
	cmd.AddCommand(list, show)
	for _, d := range []string{"approve", "reject"} {
		var reason, digest string
		var override bool
		sub := &cobra.Command{
			Use:   d + " JOB",
			Short: strings.ToUpper(d[:1]) + d[1:] + " an output",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := connect()
				if err != nil {
					return err
				}
				var j api.Job
				if override {
					j, err = c.Override(cmd.Context(), args[0], digest, reason)
				} else {
					j, err = c.Decide(cmd.Context(), args[0], d, digest, reason)
				}
				if err != nil {
					return err
				}
				return printJob(j)
			},
		}
		sub.Flags().StringVar(&reason, "reason", "", "reason (required to reject, and to override)")
		if d == "approve" {
			sub.Flags().StringVar(&digest, "digest", "", "the digest of the output you approve, as `veil review show` prints it (required: the approval is refused if the output is no longer that one)")
			sub.Flags().BoolVar(&override, "override", false, "release despite disclosure findings (custom outputs); needs --reason; recorded in the audit log")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}
