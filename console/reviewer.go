package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// maxQueue bounds the queue rows the console details (each is one more API request).
const maxQueue = 200

// rowsPerPage is how many output rows one page of a review shows.
const rowsPerPage = 50

type queueRow struct {
	Job       api.Job
	Age       any
	Grant     policy.Grant
	Warnings  []string
	Approvals int
	Needed    int
}

func (c *Console) reviews(w http.ResponseWriter, r *http.Request, s *session) {
	var js []api.Job
	if err := c.get(r, s, "/v1/reviews", nil, &js); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var rows []queueRow
	for i, j := range js {
		if i == maxQueue {
			break
		}
		var rv api.Review
		if err := c.get(r, s, "/v1/reviews/"+url.PathEscape(j.ID), nil, &rv); err != nil {
			continue // decided or gone since the list
		}
		var g policy.Grant
		json.Unmarshal(rv.Grant, &g)
		since := j.Finished
		if since.IsZero() {
			since = j.Created
		}
		rows = append(rows, queueRow{Job: j, Age: c.now().Sub(since), Grant: g, Warnings: rv.Warnings, Approvals: len(j.Approvals), Needed: rv.Needed})
	}
	c.render(w, r, http.StatusOK, "reviews", c.newPage(r, s, tr(c.lang(r), "Review queue"), map[string]any{"Rows": rows, "More": len(js) > maxQueue}))
}

// summary is one released column over all its rows.
type summary struct {
	Column   string
	Values   int
	Nulls    int
	Numeric  bool
	Min, Max float64
	Sum      float64
	Distinct int
}

func summarize(cols []string, rows [][]any) []summary {
	out := make([]summary, len(cols))
	for i, name := range cols {
		s := summary{Column: name, Numeric: true}
		seen := map[string]bool{}
		for _, row := range rows {
			if i >= len(row) || row[i] == nil {
				s.Nulls++
				continue
			}
			s.Values++
			seen[fmt.Sprint(row[i])] = true
			f, ok := row[i].(float64)
			if !ok {
				s.Numeric = false
				continue
			}
			if s.Values == 1 || f < s.Min {
				s.Min = f
			}
			if s.Values == 1 || f > s.Max {
				s.Max = f
			}
			s.Sum += f
		}
		if s.Values == 0 {
			s.Numeric = false
		}
		s.Distinct = len(seen)
		out[i] = s
	}
	return out
}

// report is a dp mechanism's report, every field shown: per column and the rest.
type report struct {
	Columns []map[string]any
	Keys    []string // the column fields, in a stable order
	Other   map[string]any
}

func parseReport(raw json.RawMessage) *report {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	rep := &report{Other: map[string]any{}}
	keys := map[string]bool{}
	for k, v := range m {
		cols, ok := v.([]any)
		if k != "columns" || !ok {
			rep.Other[k] = v
			continue
		}
		for _, c := range cols {
			if cm, ok := c.(map[string]any); ok {
				rep.Columns = append(rep.Columns, cm)
				for ck := range cm {
					keys[ck] = true
				}
			}
		}
	}
	for k := range keys {
		rep.Keys = append(rep.Keys, k)
	}
	sort.Strings(rep.Keys)
	return rep
}

func (c *Console) review(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var rv api.Review
	if err := c.get(r, s, "/v1/reviews/"+url.PathEscape(id), nil, &rv); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var g policy.Grant
	json.Unmarshal(rv.Grant, &g)
	pg, _ := strconv.Atoi(r.URL.Query().Get("page"))
	pages := max(1, (len(rv.Rows)+rowsPerPage-1)/rowsPerPage)
	pg = min(max(pg, 1), pages)
	lo, hi := (pg-1)*rowsPerPage, min(pg*rowsPerPage, len(rv.Rows))
	var rep *report
	if rv.Mechanism.DP != nil {
		rep = parseReport(rv.Mechanism.DP.Report)
	}
	mine := false
	for _, a := range rv.Job.Approvals {
		mine = mine || a == s.p.ID
	}
	data := map[string]any{
		"R": rv, "Grant": g, "Report": rep, "Rows": rv.Rows[lo:hi], "Page": pg, "Pages": pages, "From": lo + 1, "To": hi,
		"Summaries": summarize(rv.Columns, rv.Rows), "Approvals": len(rv.Job.Approvals), "Mine": mine,
		"Prev": pg - 1, "Next": pg + 1, "HasNext": pg < pages,
	}
	c.render(w, r, http.StatusOK, "review", c.newPage(r, s, tr(c.lang(r), "Output")+" "+rv.Job.ID, data))
}

// decide posts the reviewer's decision, naming the output's digest the page showed.
func (c *Console) decide(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	d := api.DecideOutput{Decision: r.PostFormValue("decision"), Reason: r.PostFormValue("reason"), Digest: r.PostFormValue("digest"),
		Override: r.PostFormValue("override") == "on"}
	var j api.Job
	if err := c.call(r, s, http.MethodPost, "/v1/reviews/"+url.PathEscape(id), d, &j); err != nil {
		c.fail(w, r, s, err)
		return
	}
	note := "approved"
	if d.Decision == "reject" {
		note = "rejected"
	}
	if j.Status == "review" {
		back(w, r, Prefix+"reviews/"+url.PathEscape(id), note) // four-eyes: more approvals needed
		return
	}
	back(w, r, Prefix+"reviews", note)
}
