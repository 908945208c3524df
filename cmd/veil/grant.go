package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

func newGrantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "grant", Short: "Apply for, review and manage grants (one per scenario)"}
	var req api.ApplyGrant
	var datasets []string
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Apply for a grant (vendor)",
		Example: `  veil grant apply --scenario "district pension report" --purpose "..." \
    --dataset social_insurance:resident_id,year,monthly_wage --mode threshold --k 10 --round-to 5 --valid-for 365d`,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, d := range datasets {
				name, cols, ok := strings.Cut(d, ":")
				if !ok || cols == "" {
					return usageErr("--dataset %q: write NAME:COL1,COL2,...", d)
				}
				req.Datasets = append(req.Datasets, api.DatasetAccess{Name: name, Columns: strings.Split(cols, ",")})
			}
			c, err := connect()
			if err != nil {
				return err
			}
			gr, err := c.ApplyGrant(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printGrant(gr)
		},
	}
	f := apply.Flags()
	f.StringVar(&req.Scenario, "scenario", "", "application scenario (one grant per scenario)")
	f.StringVar(&req.Purpose, "purpose", "", "purpose of the use")
	f.StringArrayVar(&datasets, "dataset", nil, "NAME:COL1,COL2,... (repeatable): datasets and the columns needed")
	f.StringSliceVar(&req.Modes, "mode", []string{"threshold"}, "output modes: threshold, dp, he, model")
	f.IntVar(&req.K, "k", 10, "minimum persons per released group (threshold mode)")
	f.IntVar(&req.RoundTo, "round-to", 5, "round released counts to multiples of this")
	f.Float64Var(&req.Epsilon, "epsilon", 0, "differential-privacy budget asked for (dp mode)")
	f.Float64Var(&req.Delta, "delta", 0, "differential-privacy delta asked for (dp mode)")
	f.Float64Var(&req.MaxQuery, "max-query-epsilon", 0, "most one job may spend (dp mode; default 1, at most --epsilon)")
	f.StringVar(&req.ValidFor, "valid-for", "365d", "validity after approval (at most 3 years): 365d or 720h")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the grants you may see",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			gs, err := c.Grants(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, gr := range gs {
				rows = append(rows, []string{str(gr["id"]), str(gr["tenant"]), str(gr["status"]), awaiting(gr), str(gr["scenario"])})
			}
			return print(gs, []string{"ID", "TENANT", "STATUS", "AWAITING", "SCENARIO"}, rows)
		},
	}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a grant and its review stages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			gr, err := c.GetGrant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printGrant(gr)
		},
	}
	cmd.AddCommand(apply, list, show)
	for _, a := range []struct{ name, short string }{
		{"approve", "Approve the review stage you are responsible for (operator, authority, provider)"},
		{"reject", "Reject the review stage you are responsible for, with --reason"},
		{"suspend", "Suspend an active grant (authority)"},
		{"reinstate", "Reinstate a suspended grant (authority)"},
		{"revoke", "Revoke a grant for good (authority)"},
	} {
		var reason string
		sub := &cobra.Command{
			Use:   a.name + " ID",
			Short: a.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := connect()
				if err != nil {
					return err
				}
				gr, err := c.ActOnGrant(cmd.Context(), args[0], a.name, reason)
				if err != nil {
					return err
				}
				return printGrant(gr)
			},
		}
		sub.Flags().StringVar(&reason, "reason", "", "reason (required to reject, suspend, reinstate or revoke)")
		cmd.AddCommand(sub)
	}
	return cmd
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func awaiting(gr map[string]any) string {
	if str(gr["status"]) != "pending" {
		return "-"
	}
	stages, _ := gr["stages"].([]any)
	for _, s := range stages {
		m, _ := s.(map[string]any)
		if str(m["decision"]) == "" {
			if org := str(m["org"]); org != "" {
				return str(m["role"]) + ":" + org
			}
			return str(m["role"])
		}
	}
	return "-"
}

func printGrant(gr map[string]any) error {
	if g.output != "table" {
		return print(gr, nil, nil)
	}
	fmt.Fprintf(g.out, "grant %s (%s) for tenant %s: %s\n", str(gr["id"]), str(gr["scenario"]), str(gr["tenant"]), str(gr["status"]))
	if r := str(gr["reason"]); r != "" {
		fmt.Fprintf(g.out, "reason: %s\n", r)
	}
	if u := str(gr["valid_until"]); u != "" {
		fmt.Fprintf(g.out, "valid until: %s\n", stampText(u))
	}
	var rows [][]string
	stages, _ := gr["stages"].([]any)
	for _, s := range stages {
		m, _ := s.(map[string]any)
		name := str(m["role"])
		if org := str(m["org"]); org != "" {
			name += ":" + org
		}
		dec := str(m["decision"])
		if m["by_default"] == true {
			dec += " (deadline passed: default)"
		}
		rows = append(rows, []string{name, dec, str(m["by"]), stampText(str(m["deadline"]))})
	}
	return print(gr, []string{"STAGE", "DECISION", "BY", "DEADLINE"}, rows)
}
