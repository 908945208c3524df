package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
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
			fmt.Fprintf(w, "query:\n  %s\n", strings.ReplaceAll(strings.TrimSpace(r.Job.SQL), "\n", "\n  "))
			fmt.Fprintf(w, "mechanism: %s, k=%d, counts rounded to %d; %d groups, %d suppressed\n", m.Kind, m.K, m.RoundTo, m.Groups, m.Suppressed)
			fmt.Fprintf(w, "approvals: %d of %d needed\n", len(r.Job.Approvals), r.Needed)
			for _, x := range r.Warnings {
				fmt.Fprintf(w, "WARNING: %s\n", x)
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
		var reason string
		sub := &cobra.Command{
			Use:   d + " JOB",
			Short: strings.ToUpper(d[:1]) + d[1:] + " an output",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := connect()
				if err != nil {
					return err
				}
				j, err := c.Decide(cmd.Context(), args[0], d, reason)
				if err != nil {
					return err
				}
				return printJob(j)
			},
		}
		sub.Flags().StringVar(&reason, "reason", "", "reason (required to reject)")
		cmd.AddCommand(sub)
	}
	return cmd
}
