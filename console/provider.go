package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

func (c *Console) provider(w http.ResponseWriter, r *http.Request, s *session) {
	var ds []api.Dataset
	if err := c.get(r, s, "/v1/datasets", nil, &ds); err != nil {
		c.fail(w, r, s, err)
		return
	}
	gs, err := c.grants(r, s)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var waiting []grantView
	for _, g := range gs {
		if v := view(s, g); v.Mine {
			waiting = append(waiting, v)
		}
	}
	var fb []api.Feedback
	if can(s, policy.ActFeedbackRead) {
		if err := c.get(r, s, "/v1/feedback", url.Values{"status": {"open"}}, &fb); err != nil {
			c.fail(w, r, s, err)
			return
		}
	}
	var b api.Budgets
	c.get(r, s, "/v1/budget", nil, &b)
	var versions []api.DatasetVersions
	for _, d := range ds {
		var v api.DatasetVersions
		if c.get(r, s, "/v1/datasets/"+url.PathEscape(d.Name)+"/versions", nil, &v) == nil {
			versions = append(versions, v)
		}
	}
	c.render(w, r, http.StatusOK, "provider", c.newPage(r, s, tr(c.lang(r), "My datasets"),
		map[string]any{"Datasets": ds, "Waiting": waiting, "Feedback": fb, "Budget": b, "Versions": versions}))
}

// column is a catalog column as the schema describes it.
type column struct {
	Name        string    `json:"name"`
	Type        string    `json:"type"`
	Level       int       `json:"level"`
	Kind        string    `json:"kind"`
	PrivacyUnit bool      `json:"privacy_unit"`
	Mask        string    `json:"mask"`
	Domain      []string  `json:"domain"`
	Bounds      []float64 `json:"bounds"`
}

func (c *Console) dataset(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	var d api.Dataset
	if err := c.get(r, s, "/v1/datasets/"+url.PathEscape(name), nil, &d); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var schema map[string]any
	json.Unmarshal(d.Schema, &schema)
	var cols struct {
		Columns []column `json:"columns"`
	}
	json.Unmarshal(d.Schema, &cols)
	var b api.Budgets
	var budget []api.DatasetBudget
	var grantSlices []api.GrantBudget
	if c.get(r, s, "/v1/budget", nil, &b) == nil {
		for _, x := range b.Datasets {
			if x.Dataset == d.Name {
				budget = append(budget, x)
			}
		}
		for _, x := range b.Grants {
			if x.Dataset == d.Name {
				grantSlices = append(grantSlices, x)
			}
		}
	}
	var versions api.DatasetVersions
	c.get(r, s, "/v1/datasets/"+url.PathEscape(d.Name)+"/versions", nil, &versions)
	// The newest 100 spends, newest first: the chart draws all of them.
	var spends api.BudgetSpends
	if len(budget) > 0 || len(grantSlices) > 0 {
		if c.get(r, s, "/v1/budget/spends", url.Values{"dataset": {d.Name}, "limit": {"1"}}, &spends) == nil && spends.Total > 1 {
			c.get(r, s, "/v1/budget/spends", url.Values{"dataset": {d.Name}, "offset": {strconv.Itoa(max(0, spends.Total-100))}, "limit": {"100"}}, &spends)
		}
		slices.Reverse(spends.Spends)
	}
	lang := c.lang(r)
	spent := 0.0
	if len(spends.Spends) > 0 {
		spent = spends.Spends[0].Sum.Epsilon
	}
	alt := fmt.Sprintf(tr(lang, "Budget burn-down of %s"), d.Name) + ": " +
		fmt.Sprintf(tr(lang, "%d spends, ε %g spent, %g left of %g."), spends.Total, spent, spends.Limit.Epsilon-spent, spends.Limit.Epsilon)
	c.render(w, r, http.StatusOK, "dataset", c.newPage(r, s, tr(c.lang(r), "Dataset")+" "+d.Name,
		map[string]any{"D": d, "Columns": cols.Columns, "Schema": schema, "Budget": budget, "Slices": grantSlices,
			"Versions": versions.Versions, "Spends": spends, "ChartAlt": alt}))
}

// budgetChart draws a dataset's budget burn-down as SVG: ε of the whole budget, of what is
// allocated to grants, spent by jobs, and still free; then each grant's slice, spent and
// remaining. Nothing but the API's budget answer goes into it.
func (c *Console) budgetChart(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	var b api.Budgets
	if err := c.get(r, s, "/v1/budget", nil, &b); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var db *api.DatasetBudget
	for i := range b.Datasets {
		if b.Datasets[i].Dataset == name {
			db = &b.Datasets[i]
		}
	}
	if db == nil {
		c.fail(w, r, s, &apiError{Status: http.StatusNotFound, Kind: "not_found", Msg: tr(c.lang(r), "There is no budget of that dataset for you to see.")})
		return
	}
	lang := c.lang(r)
	blue, grey, red, green := drawing.ColorFromHex("1f4e79"), drawing.ColorFromHex("7f7f7f"), drawing.ColorFromHex("a4262c"), drawing.ColorFromHex("2e7d32")
	bar := func(label string, v float64, col drawing.Color) chart.Value {
		return chart.Value{Label: label, Value: v, Style: chart.Style{FillColor: col, StrokeColor: col}}
	}
	bars := []chart.Value{
		bar(tr(lang, "total"), db.Total.Epsilon, blue),
		bar(tr(lang, "allocated"), db.Allocated.Epsilon, grey),
		bar(tr(lang, "spent"), db.Spent.Epsilon, red),
		bar(tr(lang, "free"), db.Free.Epsilon, green),
	}
	for _, g := range b.Grants {
		if g.Dataset == name && len(bars) < 16 {
			bars = append(bars, bar(g.Grant+" "+tr(lang, "spent"), g.Spent.Epsilon, red), bar(g.Grant+" "+tr(lang, "left"), g.Remaining.Epsilon, green))
		}
	}
	for i := range bars {
		if bars[i].Value == 0 {
			bars[i].Value = 1e-9 // go-chart refuses an all-zero range
		}
	}
	font, err := chartFont()
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	ch := chart.BarChart{
		Font:       font,
		Title:      name + ": ε " + tr(lang, "budget"),
		TitleStyle: chart.Style{FontSize: 12},
		Background: chart.Style{Padding: chart.Box{Top: 40, Left: 10, Right: 10, Bottom: 30}},
		Height:     320, Width: max(480, 90*len(bars)), BarWidth: 50,
		XAxis: chart.Style{FontSize: 9},
		YAxis: chart.YAxis{Style: chart.Style{FontSize: 9}, Range: &chart.ContinuousRange{Min: 0, Max: max(db.Total.Epsilon, 1e-6)}},
		Bars:  bars,
	}
	var buf bytes.Buffer
	if err := ch.Render(chart.SVG, &buf); err != nil {
		c.fail(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write(buf.Bytes())
}

func (c *Console) resolveFeedback(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var f api.Feedback
	if err := c.call(r, s, http.MethodPost, "/v1/feedback/"+url.PathEscape(id)+"/resolve", api.ResolveFeedback{Note: r.PostFormValue("note")}, &f); err != nil {
		c.fail(w, r, s, err)
		return
	}
	back(w, r, Prefix+"provider", "resolved")
}
