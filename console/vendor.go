package console

import (
	"archive/zip"
	"bytes"
	"net/http"
	"net/url"
	"slices"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// formats are the export formats the API offers.
var formats = []string{"csv", "json", "parquet", "arrow"}

func (c *Console) vendor(w http.ResponseWriter, r *http.Request, s *session) {
	gs, err := c.grants(r, s)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var js []api.Job
	if err := c.get(r, s, "/v1/jobs", nil, &js); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var released []api.Job
	for _, j := range js {
		if j.Status == "released" {
			released = append(released, j)
		}
	}
	var views []grantView
	for _, g := range gs {
		views = append(views, view(s, g))
	}
	var b api.Budgets
	if can(s, policy.ActBudgetRead) {
		c.get(r, s, "/v1/budget", nil, &b)
	}
	c.render(w, r, http.StatusOK, "vendor", c.newPage(r, s, tr(c.lang(r), "My grants, jobs and exports"),
		map[string]any{"Grants": views, "Jobs": js, "Released": released, "Formats": formats, "Budget": b.Grants}))
}

func (c *Console) job(w http.ResponseWriter, r *http.Request, s *session) {
	var j api.Job
	if err := c.get(r, s, "/v1/jobs/"+url.PathEscape(r.PathValue("id")), nil, &j); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "job", c.newPage(r, s, tr(c.lang(r), "Job")+" "+j.ID,
		map[string]any{"J": j, "Formats": formats, "Vendor": can(s, policy.ActExportGet)}))
}

// export downloads a released output and its certificate as one zip, laid out as `veil
// export get JOB FILE` writes them (FILE and FILE.cert.json), so that `veil export verify
// FILE` checks it as it is: one export request, audited as the CLI's.
func (c *Console) export(w http.ResponseWriter, r *http.Request, s *session) {
	id, format := r.PathValue("id"), r.URL.Query().Get("format")
	if !slices.Contains(formats, format) {
		c.fail(w, r, s, &apiError{Status: http.StatusBadRequest, Kind: "invalid", Msg: tr(c.lang(r), "Pick a format: csv, json, parquet or arrow.")})
		return
	}
	var e api.Export
	if err := c.get(r, s, "/v1/exports/"+url.PathEscape(id), url.Values{"format": {format}}, &e); err != nil {
		c.fail(w, r, s, err)
		return
	}
	name := e.Job + "." + format
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{name, e.Data}, {name + ".cert.json", e.Certificate}} {
		fw, err := z.Create(f.name)
		if err == nil {
			_, err = fw.Write(f.data)
		}
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
	}
	if err := z.Close(); err != nil {
		c.fail(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.zip"`)
	w.Write(buf.Bytes())
}
