package console

import (
	"bytes"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"

	"github.com/veil-dp/veil/daemon/api"
)

// maxChartPages bounds the spend history one chart reads (pages of the API's largest size).
const maxChartPages = 5

// spendHistory reads the spend history of a dataset (under grant when not empty) page by
// page, at most maxChartPages pages; more says whether some was left unread.
func (c *Console) spendHistory(r *http.Request, s *session, dataset, grant string) (h api.BudgetSpends, more bool, err error) {
	offset := 0
	for range maxChartPages {
		q := url.Values{"dataset": {dataset}, "offset": {strconv.Itoa(offset)}, "limit": {"1000"}}
		if grant != "" {
			q.Set("grant", grant)
		}
		var p api.BudgetSpends
		if err := c.get(r, s, "/v1/budget/spends", q, &p); err != nil {
			return h, false, err
		}
		if offset == 0 {
			h = p
		} else {
			h.Spends = append(h.Spends, p.Spends...)
		}
		if p.Next == 0 {
			return h, false, nil
		}
		offset = p.Next
	}
	return h, true, nil
}

// burndown draws the budget burn-down of a dataset (or of one grant's slice of it, with
// ?grant=ID) as SVG: ε left of the budget over time, from the dataset's registration, one
// point per spend. The SVG carries a title and a description (role="img") that say the same
// in words; the page around the chart has the spends as a table.
func (c *Console) burndown(w http.ResponseWriter, r *http.Request, s *session) {
	name, grant := r.PathValue("name"), r.URL.Query().Get("grant")
	lang := c.lang(r)
	var d api.Dataset
	if err := c.get(r, s, "/v1/datasets/"+url.PathEscape(name), nil, &d); err != nil {
		c.fail(w, r, s, err)
		return
	}
	h, more, err := c.spendHistory(r, s, name, grant)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.mu.Lock()
	zone := s.zone
	c.mu.Unlock()
	if zone == nil {
		zone = c.opt.Zone
	}
	limit := h.Limit.Epsilon
	start := d.Registered
	if len(h.Spends) > 0 && h.Spends[0].At.Before(start) {
		start = h.Spends[0].At
	}
	end := c.now()
	if n := len(h.Spends); n > 0 && h.Spends[n-1].At.After(end) {
		end = h.Spends[n-1].At
	}
	if !end.After(start) {
		end = start.Add(time.Minute)
	}
	line := chart.TimeSeries{Name: tr(lang, "ε left"), XValues: []time.Time{start}, YValues: []float64{limit},
		Style: chart.Style{StrokeColor: drawing.ColorFromHex("1f4e79"), StrokeWidth: 2}}
	dots := chart.TimeSeries{Name: tr(lang, "spends"),
		Style: chart.Style{StrokeWidth: chart.Disabled, DotWidth: 4, DotColor: drawing.ColorFromHex("a4262c")}}
	for _, sp := range h.Spends {
		left := limit - sp.Sum.Epsilon
		line.XValues = append(line.XValues, sp.At)
		line.YValues = append(line.YValues, left)
		dots.XValues = append(dots.XValues, sp.At)
		dots.YValues = append(dots.YValues, left)
	}
	line.XValues = append(line.XValues, end)
	line.YValues = append(line.YValues, line.YValues[len(line.YValues)-1])
	series := []chart.Series{line}
	if len(dots.XValues) > 0 {
		series = append(series, dots)
	}
	subject := name
	if grant != "" {
		subject = name + " · " + grant
	}
	title := fmt.Sprintf(tr(lang, "Budget burn-down of %s"), subject)
	left := limit
	if n := len(h.Spends); n > 0 {
		left = limit - h.Spends[n-1].Sum.Epsilon
	}
	desc := fmt.Sprintf(tr(lang, "ε left of %g over time: %d spends from %s to %s, %g left."),
		limit, len(h.Spends), start.In(zone).Format("2006-01-02 15:04 MST"), end.In(zone).Format("2006-01-02 15:04 MST"), left)
	if more {
		desc += " " + fmt.Sprintf(tr(lang, "Only the first %d spends are drawn."), len(h.Spends))
	}
	tick := "2006-01-02"
	switch span := end.Sub(start); {
	case span < 2*time.Hour:
		tick = "15:04:05"
	case span < 48*time.Hour:
		tick = "01-02 15:04"
	}
	font, err := chartFont()
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	ch := chart.Chart{
		Font:       font,
		Title:      title,
		TitleStyle: chart.Style{FontSize: 12},
		Width:      640, Height: 320,
		Background: chart.Style{Padding: chart.Box{Top: 40, Left: 10, Right: 20, Bottom: 10}},
		XAxis: chart.XAxis{Style: chart.Style{FontSize: 9},
			ValueFormatter: func(v any) string {
				if f, ok := v.(float64); ok {
					return time.Unix(0, int64(f)).In(zone).Format(tick)
				}
				return ""
			}},
		YAxis:  chart.YAxis{Style: chart.Style{FontSize: 9}, Range: &chart.ContinuousRange{Min: 0, Max: max(limit, 1e-6)}},
		Series: series,
	}
	var buf bytes.Buffer
	if err := ch.Render(chart.SVG, &buf); err != nil {
		c.fail(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write(accessibleSVG(buf.Bytes(), title, desc))
}

// accessibleSVG gives an SVG that go-chart drew its role, title and description: what a
// screen reader says of it.
func accessibleSVG(svg []byte, title, desc string) []byte {
	open := bytes.Index(svg, []byte("<svg "))
	end := bytes.IndexByte(svg[max(open, 0):], '>')
	if open < 0 || end < 0 {
		return svg
	}
	end += open
	var out bytes.Buffer
	out.Write(svg[:open])
	out.WriteString(`<svg role="img" aria-labelledby="chart-title chart-desc" `)
	out.Write(svg[open+len("<svg ") : end+1])
	fmt.Fprintf(&out, `<title id="chart-title">%s</title><desc id="chart-desc">%s</desc>`, html.EscapeString(title), html.EscapeString(desc))
	out.Write(svg[end+1:])
	return out.Bytes()
}

// chartFont is go-chart's default font, loaded once: go-chart loads it lazily into a global
// without a lock, so two charts rendered at once (two console pages) would race on it.
var chartFont = sync.OnceValues(chart.GetDefaultFont)
