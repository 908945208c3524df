package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

func newBudgetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "budget", Short: "Differential-privacy budgets: datasets' totals, grants' slices, what is spent"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the budgets you may see (vendors: their grants; providers: their datasets; the authority: all)",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			b, err := c.Budgets(cmd.Context())
			if err != nil {
				return err
			}
			if g.output != "table" {
				return print(b, nil, nil)
			}
			eps := func(a api.Amount) string { return decimal(a.Epsilon) }
			delta := func(a api.Amount) string { return decimal(a.Delta) }
			if len(b.Datasets) > 0 {
				var rows [][]string
				for _, d := range b.Datasets {
					rows = append(rows, []string{d.Dataset, d.Provider, eps(d.Total), eps(d.Allocated), eps(d.Spent), eps(d.Free), delta(d.Total), delta(d.Free)})
				}
				if err := print(b, []string{"DATASET", "PROVIDER", "TOTAL ε", "GIVEN TO GRANTS", "SPENT", "FREE", "TOTAL δ", "FREE δ"}, rows); err != nil {
					return err
				}
				fmt.Fprintln(g.out)
			}
			var rows [][]string
			for _, x := range b.Grants {
				rows = append(rows, []string{x.Grant, x.Tenant, x.Scenario, x.Dataset, eps(x.Slice), eps(x.Spent), eps(x.Remaining), delta(x.Slice), delta(x.Spent), delta(x.Remaining), fmt.Sprint(x.Jobs), decimal(x.MaxQuery)})
			}
			return print(b, []string{"GRANT", "TENANT", "SCENARIO", "DATASET", "SLICE ε", "SPENT ε", "REMAINING ε", "SLICE δ", "SPENT δ", "REMAINING δ", "JOBS", "MAX ε PER JOB"}, rows)
		},
	}
	cmd.AddCommand(show)
	return cmd
}
