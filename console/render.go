package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/veil-dp/veil/policy"
)

var timeZero time.Time

// page is what every template gets.
type page struct {
	L     string // language
	Title string
	P     policy.Principal
	In    bool // signed in
	CSRF  string
	Zone  *time.Location
	Nav   []nav
	Error string
	Done  string // a note on the action just done
	Path  string // the page's path, for forms that come back to it
	Data  any
}

type nav struct {
	Path, Label string
	Here        bool
}

// notes are the notes an action may leave for the page it returns to (?done=KEY); any
// other value is ignored, so a link cannot put words in the console's mouth.
var notes = map[string]string{
	"approved":  "Your approval is recorded.",
	"rejected":  "Your rejection is recorded.",
	"granted":   "The grant action is recorded.",
	"resolved":  "The feedback is resolved.",
	"revoked":   "The principal is revoked.",
	"zone":      "The time zone is changed.",
	"signedout": "You are signed out.",
}

func (c *Console) newPage(r *http.Request, s *session, title string, data any) *page {
	lang := c.lang(r)
	p := &page{L: lang, Title: title, Zone: c.opt.Zone, Data: data, Path: r.URL.Path}
	if k := r.URL.Query().Get("done"); notes[k] != "" {
		p.Done = tr(lang, notes[k])
	}
	if s == nil {
		return p
	}
	c.mu.Lock()
	p.Zone = s.zone
	c.mu.Unlock()
	p.P, p.In, p.CSRF = s.p, true, s.csrf
	main := mainPage(s)
	p.Nav = append(p.Nav, nav{Path: main, Label: tr(lang, roleHome[string(s.p.Role)])})
	if can(s, policy.ActAuditRead) && main != Prefix+"audit" {
		p.Nav = append(p.Nav, nav{Path: Prefix + "audit", Label: tr(lang, "Audit log")})
	}
	for i := range p.Nav {
		p.Nav[i].Here = r.URL.Path == p.Nav[i].Path
	}
	return p
}

var roleHome = map[string]string{
	"reviewer": "Review queue", "vendor": "My grants, jobs and exports", "provider": "My datasets",
	"authority": "Applications and grants", "auditor": "Audit log", "operator": "Operations",
}

// render writes the page template with code.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, p *page) {
	t := c.pages[p.L][name]
	if t == nil {
		http.Error(w, "no such page template", http.StatusInternalServerError)
		return
	}
	if p.Zone == nil {
		p.Zone = c.opt.Zone
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		c.opt.Log.Error("console template", "page", name, "err", err)
		http.Error(w, "the page could not be drawn; the operator can find details in the daemon log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func funcs(lang string) template.FuncMap {
	return template.FuncMap{
		"t": func(key any) string { return tr(lang, fmt.Sprint(key)) },
		"tf": func(key string, args ...any) string {
			return fmt.Sprintf(tr(lang, key), args...)
		},
		"date": func(z *time.Location, t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(z).Format("2006-01-02 15:04 MST")
		},
		"age": func(d time.Duration) string {
			d = d.Round(time.Minute)
			if d < time.Minute {
				return "<1m"
			}
			h, m := int(d.Hours()), int(d.Minutes())%60
			if h >= 24 {
				return fmt.Sprintf("%dd%dh", h/24, h%24)
			}
			if h > 0 {
				return fmt.Sprintf("%dh%dm", h, m)
			}
			return fmt.Sprintf("%dm", m)
		},
		"cell": func(v any) string {
			if v == nil {
				return "NULL"
			}
			if f, ok := v.(float64); ok {
				return fmt.Sprint(f)
			}
			return fmt.Sprint(v)
		},
		"join":  strings.Join,
		"add":   func(a, b int) int { return a + b },
		"short": func(s string) string { return s[:min(len(s), 12)] },
		"zones": zoneChoices,
	}
}
