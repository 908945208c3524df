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
		Long:  "Apply for a grant (vendor): a scenario, its datasets and columns, output modes, a budget and a validity.\n\n" + modesHelp,
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
	f.StringSliceVar(&req.Modes, "mode", []string{"threshold"}, "output modes: threshold (not differential privacy; see above), dp, he, model")
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
	for _, a := range []struct{ name, short, long string }{
		{"approve", "Approve the review stage you are responsible for (operator, authority, provider)",
			"Approve the review stage you are responsible for (operator, authority, provider). Look at the grant's modes first:\n\n" + modesHelp},
		{"reject", "Reject the review stage you are responsible for, with --reason", ""},
		{"suspend", "Suspend an active grant (authority)", ""},
		{"reinstate", "Reinstate a suspended grant (authority)", ""},
		{"revoke", "Revoke a grant for good (authority)", ""},
	} {
		var reason string
		sub := &cobra.Command{
			Use:   a.name + " ID",
			Short: a.short,
			Long:  a.long,
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

// modesHelp says what each output mode lets a vendor learn, for those who choose or approve
// one (the README's "What a vendor learns from released values" says more).
const modesHelp = `Output modes, and what each protects against:
  threshold  groups of fewer than k persons are removed and counts are rounded. This is NOT
             differential privacy: sums, averages, minima and maxima of the groups that remain
             are exact, and outputs compared with each other (queries that differ slightly,
             or many queries over the same grant) can single out a person. For reports on
             large groups, each output judged by a reviewer.
  dp         differential privacy: each person's contribution is bounded and noise added to
             match; what all the outputs of a grant together reveal about one person is
             bounded by the epsilon the grant spends, whatever the vendor asks.
  he         the vendor's encrypted model is scored per group under encryption (groups of at
             least k persons); the vendor decrypts exact per-group sums unless dp is added
             (mode he,dp).
  model      built-in trainers add differential-privacy noise in the sandbox (like dp);
             custom programs' files face statistical disclosure checks and a reviewer only,
             with no differential-privacy claim.`

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
		if m["held"] == true {
			dec = "held: deadline passed, the default not taken; awaits its reviewer"
		}
		rows = append(rows, []string{name, dec, str(m["by"]), stampText(str(m["deadline"]))})
	}
	return print(gr, []string{"STAGE", "DECISION", "BY", "DEADLINE"}, rows)
}
