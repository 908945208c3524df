package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// deskRoom is a daemon with a TCP listener and one headless browser, in which each person
// gets a browser context of their own.
type deskRoom struct {
	t       *testing.T
	e       *env
	base    string
	browser context.Context
	tokens  map[string]string
	clients map[string]*client.Client
}

// newDeskRoom starts the daemon (edit may change its config), creates the principals
// (key, name, role, tenant) and starts chromium with a window of w×h.
func newDeskRoom(t *testing.T, edit func(*daemon.Config), w, h int, people ...[4]string) *deskRoom {
	t.Helper()
	chrome := chromium(t)
	e := start(t, func(c *daemon.Config) {
		c.Listen = "127.0.0.1:0"
		if edit != nil {
			edit(c)
		}
	})
	room := &deskRoom{t: t, e: e, tokens: map[string]string{}, clients: map[string]*client.Client{}}
	for _, a := range e.addrs {
		if a.Network() == "tcp" {
			room.base = "http://" + a.String()
		}
	}
	if room.base == "" {
		t.Fatalf("no TCP listener in %v", e.addrs)
	}
	for _, p := range people {
		pr, err := e.op.CreatePrincipal(context.Background(), api.CreatePrincipal{Name: p[1], Role: p[2], Tenant: p[3]})
		if err != nil {
			t.Fatal(err)
		}
		room.tokens[p[0]], room.clients[p[0]] = pr.Token, e.client(pr.Token)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.WindowSize(w, h))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", chrome, err)
	}
	room.browser = browserCtx
	return room
}

// person opens a browser context for the principal key, with a viewport of w×h.
func (room *deskRoom) person(key string, w, h int) *desk {
	room.t.Helper()
	c, cancel := chromedp.NewContext(room.browser, chromedp.WithNewBrowserContext())
	room.t.Cleanup(cancel)
	d := &desk{t: room.t, ctx: c, base: room.base, dl: room.t.TempDir(), token: room.tokens[key]}
	if err := chromedp.Do(c, chromedp.EmulateViewport(int64(w), int64(h))); err != nil {
		room.t.Fatal(err)
	}
	return d
}

// eval evaluates a JavaScript expression in the page (the test's, not the console's: the
// console runs none) into out.
func evalJS[T any](d *desk, expr string) T {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		d.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// providerWithSpends registers residents, grants acme a dp slice and runs n dp jobs under
// it: n spends on the ledger. It returns the grant.
func (room *deskRoom) providerWithSpends(n int) string {
	t, ctx := room.t, context.Background()
	csv := writeResidents(t, t.TempDir())
	if _, err := room.clients["prov"].RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{csv}}); err != nil {
		t.Fatal(err)
	}
	gid, err := room.e.dpGrant(room.clients["acme"], room.clients["auth"], room.clients["prov"], "district counts", 2, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		j, err := room.clients["acme"].SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.1 * float64(i+1)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := room.clients["acme"].Wait(ctx, j.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	return gid
}

type svgFacts struct {
	Circles int    `json:"circles"`
	Role    string `json:"role"`
	Title   string `json:"title"`
	Desc    string `json:"desc"`
	Labels  string `json:"labels"`
}

type versionRow struct {
	Text    string `json:"text"`
	Current bool   `json:"current"`
}

var deskPeople = [][4]string{
	{"prov", "civil affairs", "provider", "civil-affairs"}, {"auth", "data bureau", "authority", ""},
	{"acme", "acme analyst", "vendor", "acme"}, {"rival", "rival analyst", "vendor", "rival"},
	{"rev", "reviewer one", "reviewer", ""}, {"aud", "inspector", "auditor", ""}, {"op", "second operator", "operator", ""},
}

// TestConsoleBurndown: the provider's pages draw each dataset's budget burn-down from the
// ledger's spend history, one point per spend, with a title and a description; the API
// pages the history and shows a vendor only its own grants' spends.
func TestConsoleBurndown(t *testing.T) {
	room := newDeskRoom(t, nil, 1280, 900, deskPeople...)
	gid := room.providerWithSpends(3)
	ctx := context.Background()

	// The API: oldest first, paged, the running sum; refusals for others' data.
	h, err := room.clients["prov"].BudgetSpends(ctx, "residents", "", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if h.Total != 3 || len(h.Spends) != 2 || h.Next != 2 || h.Limit.Epsilon != 10 || h.Spends[1].Sum.Epsilon != 0.3 || h.Spends[0].Grant != gid {
		t.Fatalf("first page: %+v", h)
	}
	if h, err = room.clients["prov"].BudgetSpends(ctx, "residents", "", 2, 2); err != nil || len(h.Spends) != 1 || h.Next != 0 || h.Spends[0].Sum.Epsilon != 0.6 {
		t.Fatalf("second page: %+v %v", h, err)
	}
	if h, err = room.clients["acme"].BudgetSpends(ctx, "residents", gid, 0, 10); err != nil || h.Total != 3 || h.Limit.Epsilon != 2 {
		t.Fatalf("the vendor's own grant: %+v %v", h, err)
	}
	if h, err = room.clients["rival"].BudgetSpends(ctx, "residents", "", 0, 10); err != nil || h.Total != 0 {
		t.Fatalf("another tenant sees spends: %+v %v", h, err)
	}
	if _, err := room.clients["rival"].BudgetSpends(ctx, "residents", gid, 0, 10); kindOf(err) != "not_found" {
		t.Fatalf("another tenant's grant: %v", err)
	}
	if _, err := room.clients["prov"].BudgetSpends(ctx, "residents", "", 0, 5000); kindOf(err) != "invalid" {
		t.Fatalf("an unbounded page: %v", err)
	}

	prov := room.person("prov", 1280, 900)
	prov.signIn()
	loaded := evalJS[bool](prov, `(() => { const i = document.querySelector('#burndown-residents'); return !!i && i.complete && i.naturalWidth > 0 && i.alt.length > 10 })()`)
	if !loaded {
		t.Fatal("the provider's page has no drawn burn-down of residents with a text alternative")
	}
	prov.open("/ui/datasets/residents")
	loaded = evalJS[bool](prov, `(() => { const i = document.querySelector('#burndown'); return !!i && i.complete && i.naturalWidth > 0 && i.alt.includes('3') })()`)
	if !loaded {
		t.Fatal("the dataset page has no drawn burn-down whose text alternative counts the spends")
	}
	rows := evalJS[int](prov, `document.querySelectorAll('#spends tbody tr').length`)
	if rows != 3 {
		t.Fatalf("the spends table has %d rows, want 3", rows)
	}
	prov.screenshot("provider-dataset")

	for _, tc := range []struct{ path, title string }{
		{"/ui/charts/burndown/residents", "residents"},
		{"/ui/charts/burndown/residents?grant=" + gid, gid},
	} {
		if code := prov.open(tc.path); code != http.StatusOK {
			t.Fatalf("%s: %d", tc.path, code)
		}
		got := evalJS[svgFacts](prov, `(() => { const s = document.documentElement; return {circles: s.querySelectorAll('circle').length, role: s.getAttribute('role') || '',
			labels: s.getAttribute('aria-labelledby') || '', title: (s.querySelector('title') || {}).textContent || '', desc: (s.querySelector('desc') || {}).textContent || ''} })()`)
		if got.Circles != 3 {
			t.Errorf("%s: %d points, want one per spend (3)", tc.path, got.Circles)
		}
		if got.Role != "img" || got.Labels != "chart-title chart-desc" || !strings.Contains(got.Title, tc.title) || !strings.Contains(got.Desc, "3 spends") {
			t.Errorf("%s: not described for assistive technology: %+v", tc.path, got)
		}
	}
	// A vendor's browser cannot draw another tenant's grant.
	rival := room.person("rival", 1280, 900)
	rival.signIn()
	if code := rival.open("/ui/charts/burndown/residents?grant=" + gid); code != http.StatusNotFound {
		t.Fatalf("rival draws acme's burn-down: %d", code)
	}
}

// TestConsoleVersions: the provider's page lists each dataset's versions, newest first,
// the current one marked, with their row counts and times.
func TestConsoleVersions(t *testing.T) {
	room := newDeskRoom(t, nil, 1280, 900, deskPeople[:3]...)
	ctx := context.Background()
	dir := t.TempDir()
	first := writeResidents(t, dir)
	if _, err := room.clients["prov"].RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{first}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "more.csv")
	extra := "1100,Person100,north,30,2000,r1\n1101,Person101,south,31,3000,r2\n"
	if err := os.WriteFile(second, append(raw, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := room.clients["prov"].UpdateDataset(ctx, "residents", api.RegisterDataset{Schema: residentsSchema, Files: []string{second}})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Versions) != 2 {
		t.Fatalf("versions: %+v", v.Versions)
	}
	prov := room.person("prov", 1280, 900)
	prov.signIn()
	rows := evalJS[[]versionRow](prov, `[...document.querySelectorAll('#versions-residents tbody tr')].map(r => ({text: r.innerText, current: r.getAttribute('aria-current') === 'true'}))`)
	if len(rows) != 2 {
		t.Fatalf("the provider's page lists %d versions of residents: %+v", len(rows), rows)
	}
	for i, want := range v.Versions {
		r := rows[i]
		if !strings.Contains(r.Text, want.Version[:12]) || !strings.Contains(r.Text, fmt.Sprint(want.Rows)) || !strings.Contains(r.Text, want.Registered.UTC().Format("2006-01-02")) || r.Current != want.Current {
			t.Errorf("version row %d %+v, want %+v", i, r, want)
		}
	}
	if !rows[0].Current || rows[1].Current || !strings.Contains(rows[0].Text, "102") || !strings.Contains(rows[1].Text, "100") {
		t.Errorf("the newest version (102 rows) should be first and current: %+v", rows)
	}
	prov.open("/ui/datasets/residents")
	n := evalJS[int](prov, `document.querySelectorAll('#versions tbody tr[aria-current="true"]').length`)
	if n != 1 {
		t.Errorf("the dataset page marks %d versions current", n)
	}
	prov.screenshot("provider-versions")
}

// TestConsoleZone: a principal reads every time in the console in its own zone (UTC until
// it sets one), which it sets in the console or with the CLI's API call; the choice is kept
// with the principal, not the browser, and audited.
func TestConsoleZone(t *testing.T) {
	room := newDeskRoom(t, nil, 1280, 900, deskPeople[:3]...)
	ctx := context.Background()
	csv := writeResidents(t, t.TempDir())
	d, err := room.clients["prov"].RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{csv}})
	if err != nil {
		t.Fatal(err)
	}
	if who, err := room.clients["prov"].Whoami(ctx); err != nil || who.Zone != "UTC" {
		t.Fatalf("the default zone: %+v %v", who, err)
	}
	registered := func(z string) string {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		return d.Registered.In(loc).Format("2006-01-02 15:04 MST")
	}
	prov := room.person("prov", 1280, 900)
	prov.signIn()
	prov.open("/ui/datasets/residents")
	if main, foot := prov.text("main dl"), prov.text("footer"); !strings.Contains(main, registered("UTC")) || !strings.Contains(foot, "UTC") {
		t.Fatalf("before any choice the page is not in UTC: %s / %s", main, foot)
	}

	// In the console: the footer's form, back to the same page, now in Shanghai's time.
	prov.do(chromedp.SetValue(chromedp.ID("zone"), "Asia/Shanghai"))
	prov.click(`form[action="/ui/zone"] button`)
	if loc := prov.location(); !strings.HasPrefix(loc, "/ui/datasets/residents") {
		t.Fatalf("after the zone change the browser is at %s", loc)
	}
	if main := prov.text("main dl"); !strings.Contains(main, registered("Asia/Shanghai")) {
		t.Fatalf("the dataset page after choosing Asia/Shanghai: %s, want %s", main, registered("Asia/Shanghai"))
	}
	if who, err := room.clients["prov"].Whoami(ctx); err != nil || who.Zone != "Asia/Shanghai" {
		t.Fatalf("the console's choice is not the principal's: %+v %v", who, err)
	}
	// Kept with the principal: a new browser signs in to the same zone.
	other := room.person("prov", 1280, 900)
	other.signIn()
	if foot := other.text("footer"); !strings.Contains(foot, "Asia/Shanghai") {
		t.Fatalf("a new session's zone: %s", foot)
	}

	// With the CLI's call (veil zone set): any IANA zone, taken on the next page.
	if who, err := room.clients["prov"].SetZone(ctx, "America/New_York"); err != nil || who.Zone != "America/New_York" {
		t.Fatalf("set zone: %+v %v", who, err)
	}
	prov.open("/ui/datasets/residents")
	if main := prov.text("main dl"); !strings.Contains(main, registered("America/New_York")) {
		t.Fatalf("the page after veil zone set America/New_York: %s", main)
	}
	for _, bad := range []string{"Local", "", "Mars/Olympus", "../../etc/passwd"} {
		if _, err := room.clients["prov"].SetZone(ctx, bad); kindOf(err) != "invalid" {
			t.Errorf("zone %q: %v, want invalid", bad, err)
		}
	}
	// A forged zone from the browser is the API's refusal, shown on a page.
	if who, _ := room.clients["acme"].Whoami(ctx); who.Zone != "UTC" {
		t.Fatalf("another principal's zone changed: %+v", who)
	}
	recs, err := room.e.op.AuditRecords(ctx, 0, 1000, true)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, raw := range recs.Records {
		if en, err := audit.DecodeEntry(raw); err == nil && en.Action == "principal.zone" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d zone changes audited, want 2", n)
	}
}

// pageFacts is what the accessibility check finds on a page.
type pageFacts struct {
	Overflow   int      `json:"overflow"`   // pixels the page is wider than the viewport
	Unlabelled []string `json:"unlabelled"` // form controls without a label
	NoAlt      []string `json:"noAlt"`      // images and charts without a text alternative
	Headings   []string `json:"headings"`   // h1..h6 in document order
	Nameless   []string `json:"nameless"`   // buttons and links without a name
}

// a11yCheck gathers pageFacts; it runs in the test's browser only (the console runs no
// script).
const a11yCheck = `(() => {
	const d = document, out = {overflow: 0, unlabelled: [], noAlt: [], headings: [], nameless: []};
	out.overflow = Math.max(d.documentElement.scrollWidth, d.body.scrollWidth) - window.innerWidth;
	const named = e => (e.getAttribute('aria-label') || '').trim() !== '' || (e.getAttribute('aria-labelledby') || '') !== '';
	for (const c of d.querySelectorAll('input, select, textarea')) {
		if (c.type === 'hidden') continue;
		if (!(c.labels && c.labels.length > 0 && [...c.labels].some(l => l.textContent.trim() !== '')) && !named(c)) out.unlabelled.push(c.outerHTML.slice(0, 120));
	}
	for (const i of d.querySelectorAll('img')) if (!(i.getAttribute('alt') || '').trim()) out.noAlt.push(i.outerHTML.slice(0, 120));
	for (const s of d.querySelectorAll('svg')) if (!named(s) && !s.querySelector('title')) out.noAlt.push(s.outerHTML.slice(0, 120));
	for (const h of d.querySelectorAll('h1, h2, h3, h4, h5, h6')) out.headings.push(h.tagName);
	for (const b of d.querySelectorAll('button, a[href]')) if (!b.textContent.trim() && !named(b)) out.nameless.push(b.outerHTML.slice(0, 120));
	return out;
})()`

// TestConsoleTablet: every role's main pages, in both languages, on a tablet (768×1024):
// nothing wider than the screen, every form control labelled, every image and chart with a
// text alternative, buttons and links named, headings in order (one h1, no level skipped).
func TestConsoleTablet(t *testing.T) {
	if raceEnabled {
		t.Skip("layout and labels are not concurrency: the ordinary pass checks them; its 28 page loads take two minutes without -race and would take more of the race pass")
	}
	room := newDeskRoom(t, nil, 768, 1024, deskPeople...)
	gid := room.providerWithSpends(2)
	ctx := context.Background()
	jobs, err := room.clients["acme"].Jobs(ctx, gid, "")
	if err != nil || len(jobs) == 0 {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	jid := jobs[0].ID
	// The check itself finds each fault on a page made to have them all.
	probe := room.person("", 768, 1024)
	probe.do(chromedp.Navigate(`data:text/html,<h1>a</h1><h3>skipped</h3><h1>two</h1><input name=x><img src=x><button></button><div style="width:2000px">wide</div>`))
	if f := evalJS[pageFacts](probe, a11yCheck); f.Overflow <= 0 || len(f.Unlabelled) != 1 || len(f.NoAlt) != 1 || len(f.Nameless) != 1 || len(f.Headings) != 3 {
		t.Fatalf("the accessibility check misses faults: %+v", f)
	}
	pages := map[string][]string{
		"":     {"/ui/signin"},
		"rev":  {"/ui/reviews", "/ui/reviews/" + jid},
		"acme": {"/ui/vendor", "/ui/jobs/" + jid, "/ui/grants/" + gid},
		"prov": {"/ui/provider", "/ui/datasets/residents"},
		"auth": {"/ui/authority", "/ui/grants/" + gid},
		"aud":  {"/ui/audit", "/ui/audit/proof/1"},
		"op":   {"/ui/operator"},
	}
	for _, who := range []string{"", "rev", "acme", "prov", "auth", "aud", "op"} {
		for _, lang := range []string{"en", "zh-CN"} {
			d := room.person(who, 768, 1024)
			d.open("/ui/lang/" + lang)
			if who != "" {
				d.signIn()
			}
			for _, p := range pages[who] {
				if code := d.open(p); code != http.StatusOK {
					t.Errorf("%s %s %s: %d", who, lang, p, code)
					continue
				}
				f := evalJS[pageFacts](d, a11yCheck)
				where := fmt.Sprintf("%s (%s, %s)", p, who, lang)
				if f.Overflow > 0 {
					t.Errorf("%s is %dpx wider than a 768px tablet", where, f.Overflow)
				}
				if len(f.Unlabelled) > 0 {
					t.Errorf("%s: form controls without a label: %v", where, f.Unlabelled)
				}
				if len(f.NoAlt) > 0 {
					t.Errorf("%s: images without a text alternative: %v", where, f.NoAlt)
				}
				if len(f.Nameless) > 0 {
					t.Errorf("%s: buttons or links without a name: %v", where, f.Nameless)
				}
				if len(f.Headings) == 0 || f.Headings[0] != "H1" {
					t.Errorf("%s: the first heading is not h1: %v", where, f.Headings)
				}
				h1, prev := 0, 0
				for _, h := range f.Headings {
					lv := int(h[1] - '0')
					if lv == 1 {
						h1++
					}
					if prev > 0 && lv > prev+1 {
						t.Errorf("%s: headings skip a level (%v)", where, f.Headings)
						break
					}
					prev = lv
				}
				if h1 != 1 {
					t.Errorf("%s: %d h1 headings, want 1", where, h1)
				}
			}
			if who != "" && lang == "zh-CN" {
				d.open(pages[who][0])
				d.screenshot("tablet-" + who + "-zh")
			}
		}
	}
}
