package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
)

// decimal prints a number in plain decimal, never in exponent notation (0.0000001, not
// 1e-07), with at most 6 significant digits below 1 and whole numbers as they are.
func decimal(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if f != 0 && (f < 1 && f > -1) {
		// Significant digits: 6 after the leading zeros.
		r := strconv.FormatFloat(f, 'g', 6, 64)
		v, _ := strconv.ParseFloat(r, 64)
		s = strconv.FormatFloat(v, 'f', -1, 64)
	} else if i := strings.IndexByte(s, '.'); i >= 0 && len(s)-i > 4 {
		s = strconv.FormatFloat(f, 'f', 3, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// amount prints a budget amount with both dimensions.
func amount(a api.Amount) string { return "ε=" + decimal(a.Epsilon) + " δ=" + decimal(a.Delta) }

// printPlan shows a job's plan: what it would spend, what would remain, and the noise of
// each released value.
func printPlan(p api.JobPlan) error {
	if !isTable() {
		return print(p, nil, nil)
	}
	pairs := []string{"grant", p.Grant, "mode", p.Mode, "sql", p.SQL, "datasets", strings.Join(p.Datasets, ", ")}
	if p.Spend != nil {
		pairs = append(pairs, "spend", fmt.Sprintf("%s (at most ε=%s per job)", amount(*p.Spend), decimal(p.MaxQueryEpsilon)))
	} else {
		pairs = append(pairs, "spend", "nothing")
	}
	for _, b := range p.Budget {
		pairs = append(pairs, "budget", fmt.Sprintf("%s: %s left now, %s after", b.Dataset, amount(b.Remaining), amount(b.After)))
	}
	if p.K > 0 {
		pairs = append(pairs, "rule", fmt.Sprintf("groups of fewer than %d persons suppressed, counts rounded to %d", p.K, max(p.RoundTo, 1)))
	}
	if s := p.Selection; s != nil {
		pairs = append(pairs, "groups", fmt.Sprintf("partition selection (ε=%s δ=%s): a group of %d persons or more is likely released (50%%), of %d or more almost surely (95%%)",
			decimal(s.Epsilon), decimal(s.Delta), s.LikelyUnits, s.AlmostSurelyUnits))
	}
	if p.Refusal != "" {
		pairs = append(pairs, "refused", "submitting it now would be refused: "+p.Refusal)
	}
	for _, n := range p.Notes {
		pairs = append(pairs, "note", n)
	}
	if err := kv(p, pairs...); err != nil {
		return err
	}
	if len(p.Aggregates) == 0 {
		return nil
	}
	var rows [][]string
	for _, a := range p.Aggregates {
		hw := "no interval"
		switch {
		case a.HalfWidth != nil:
			hw = "±" + decimal(*a.HalfWidth)
		case a.HalfWidthTimesN != nil:
			hw = "±" + decimal(*a.HalfWidthTimesN) + " / n (n values in the group)"
		}
		bounds := "-"
		if a.Lower != nil && a.Upper != nil {
			bounds = decimal(*a.Lower) + ".." + decimal(*a.Upper)
		}
		rows = append(rows, []string{a.Column, a.Aggregate, bounds, a.Mechanism, decimal(a.Epsilon), decimal(a.Delta), decimal(a.Scale), hw})
	}
	fmt.Fprintln(g.out)
	return print(p, []string{"COLUMN", "AGGREGATE", "BOUNDS", "NOISE", "ε", "δ", "NOISE SCALE", "95% INTERVAL"}, rows)
}
