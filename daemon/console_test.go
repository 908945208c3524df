package daemon_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// chromium finds Debian's chromium (make deps installs it) or another Chrome.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary found (install Debian's chromium package: make deps does); the console's browser tests need it")
	return ""
}

// desk is one person's browser: its own browser context (cookies, downloads) in the test's
// one browser.
type desk struct {
	t     *testing.T
	ctx   context.Context
	base  string
	dl    string // download directory
	token string
}

func (d *desk) do(steps ...chromedp.Action[chromedp.Void]) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		d.t.Fatalf("browser: %v", err)
	}
}

// open navigates to a console path and returns the HTTP status of the page.
func (d *desk) open(path string) int64 {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 60*time.Second)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(d.base+path))
	if err != nil {
		d.t.Fatalf("open %s: %v", path, err)
	}
	return resp.Status
}

// click clicks and waits for the page it loads.
func (d *desk) click(sel string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		d.t.Fatalf("click %s: %v", sel, err)
	}
}

func (d *desk) text(sel string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		d.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (d *desk) location() string {
	d.t.Helper()
	s, err := chromedp.Run(d.ctx, chromedp.Location())
	if err != nil {
		d.t.Fatal(err)
	}
	return strings.TrimPrefix(s, d.base)
}

// signIn signs in with the token on the sign-in form.
func (d *desk) signIn() {
	d.t.Helper()
	d.open("/ui/signin")
	d.do(chromedp.SendKeys(chromedp.ID("token"), d.token))
	d.click("#signin")
	if strings.HasPrefix(d.location(), "/ui/signin") {
		d.t.Fatalf("sign-in refused: %s", d.text("main"))
	}
}

// screenshot saves the page under the test's artifacts and checks that it is not blank.
func (d *desk) screenshot(name string) {
	d.t.Helper()
	buf, err := chromedp.Run(d.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		d.t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		d.t.Fatalf("screenshot of %s is not a PNG: %v", name, err)
	}
	colours := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) < 8 || b.Dx() < 400 {
		d.t.Fatalf("screenshot of %s is blank: %d colours, %v", name, len(colours), b)
	}
	p := filepath.Join(d.t.ArtifactDir(), name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.t.Logf("screenshot of %s: %s (%d colours)", name, p, len(colours))
}

// download clicks a download link and returns the name and contents of the file that
// arrives in the download directory with that name prefix.
func (d *desk) download(sel, prefix string) (string, []byte) {
	d.t.Helper()
	d.do(chromedp.Click(chromedp.CSS(sel)))
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(d.dl)
		for _, en := range ents {
			n := en.Name()
			if !strings.HasPrefix(n, prefix) || strings.HasSuffix(n, ".crdownload") {
				continue
			}
			if _, err := os.Stat(filepath.Join(d.dl, n+".crdownload")); err == nil {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(d.dl, n)); err == nil && len(b) > 0 {
				return n, b
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	ents, _ := os.ReadDir(d.dl)
	d.t.Fatalf("no download %s* after clicking %s (the directory has %v)", prefix, sel, ents)
	return "", nil
}

func (d *desk) cookie(name string) *network.Cookie {
	d.t.Helper()
	res, err := chromedp.Call(d.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{d.base + "/ui/"}})
	if err != nil {
		d.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

type offsetClock struct{ d atomic.Int64 }

func (c *offsetClock) now() time.Time           { return time.Now().Add(time.Duration(c.d.Load())) }
func (c *offsetClock) advance(by time.Duration) { c.d.Add(int64(by)) }

// TestConsole walks the people's work through the web console in a real headless browser
// against the real daemon: the provider confirms its stage of a grant, two reviewers
// release an output (four-eyes), the vendor downloads it and its certificate verifies, an
// auditor downloads a proof that verifies; and the refusals: another tenant sees nothing of
// it, a forged form is refused, an expired session goes to sign-in.
func TestConsole(t *testing.T) {
	chrome := chromium(t)
	var clock offsetClock
	e := start(t, func(c *daemon.Config) {
		c.Listen = "127.0.0.1:0"
		c.Approvals = 2
		c.Clock = clock.now
	})
	var base string
	for _, a := range e.addrs {
		if a.Network() == "tcp" {
			base = "http://" + a.String()
		}
	}
	if base == "" {
		t.Fatalf("no TCP listener in %v", e.addrs)
	}
	if resp, err := http.Get(base + "/ui/signin"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/signin: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	ctx := context.Background()
	tokens, ids := map[string]string{}, map[string]string{}
	clients := map[string]*client.Client{}
	for _, p := range []struct{ key, name, role, tenant string }{
		{"prov", "civil affairs", "provider", "civil-affairs"}, {"auth", "data bureau", "authority", ""},
		{"acme", "acme analyst", "vendor", "acme"}, {"rival", "rival analyst", "vendor", "rival"},
		{"rev1", "reviewer one", "reviewer", ""}, {"rev2", "reviewer two", "reviewer", ""}, {"aud", "inspector", "auditor", ""},
		{"op", "second operator", "operator", ""},
	} {
		pr, err := e.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: p.name, Role: p.role, Tenant: p.tenant})
		if err != nil {
			t.Fatal(err)
		}
		tokens[p.key], ids[p.key], clients[p.key] = pr.Token, pr.ID, e.client(pr.Token)
	}
	csv := writeResidents(t, t.TempDir())
	if _, err := clients["prov"].RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{csv}}); err != nil {
		t.Fatal(err)
	}
	gr, err := clients["acme"].ApplyGrant(ctx, api.ApplyGrant{Scenario: "district income report", Purpose: "plan services", Modes: []string{"threshold"}, K: 5, RoundTo: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, clients["auth"]} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}

	// One browser for the whole test binary's console tests.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", chrome, err)
	}
	person := func(key string) *desk {
		t.Helper()
		c, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		d := &desk{t: t, ctx: c, base: base, dl: t.TempDir(), token: tokens[key]}
		// The first run opens the tab, which lives as long as the context of that run.
		if err := chromedp.Do(c); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.CallBrowser(c, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, BrowserContextID: chromedp.FromContext(c).BrowserContextID, DownloadPath: d.dl}); err != nil {
			t.Fatal(err)
		}
		return d
	}

	// The provider confirms its stage: the grant waits for it on its main page.
	prov := person("prov")
	prov.signIn()
	if loc := prov.location(); loc != "/ui/provider" {
		t.Fatalf("provider lands on %s", loc)
	}
	if !strings.Contains(prov.text("main"), gid) {
		t.Fatalf("the provider's page does not list grant %s waiting for it: %s", gid, prov.text("main"))
	}
	prov.screenshot("provider")
	prov.click(`a[href="/ui/grants/` + gid + `"]`)
	prov.click("#grant-approve")
	if st := prov.text("#status"); !strings.Contains(st, "active") {
		t.Fatalf("after the provider's approval the grant is %q", st)
	}
	if g, _ := clients["acme"].GetGrant(ctx, gid); g["status"] != "active" {
		t.Fatalf("the API says the grant is %v", g["status"])
	}

	j, err := clients["acme"].SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n, SUM(income) AS total FROM residents GROUP BY district ORDER BY district"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = clients["acme"].Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job %+v: %v", j, err)
	}

	// The first reviewer: queue, output page, approve; four-eyes shows 1 of 2.
	rev1 := person("rev1")
	rev1.signIn()
	if loc := rev1.location(); loc != "/ui/reviews" {
		t.Fatalf("reviewer lands on %s", loc)
	}
	queue := rev1.text("main")
	if !strings.Contains(queue, j.ID) || !strings.Contains(queue, "0 of 2") || !strings.Contains(queue, gid) {
		t.Fatalf("queue: %s", queue)
	}
	rev1.screenshot("reviewer")
	rev1.click(`a[href="/ui/reviews/` + j.ID + `"]`)
	out := rev1.text("#output")
	if !strings.Contains(out, "north") || !strings.Contains(out, "south") || strings.Contains(out, "tiny") {
		t.Fatalf("preview: %s", out)
	}
	pageText := rev1.text("main")
	rv, err := clients["rev1"].Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Everything `veil review show` prints is on the page.
	for _, want := range []string{rv.Digest, "GROUP BY district", "district income report", "k", "5", "Groups suppressed", "0 of 2"} {
		if !strings.Contains(pageText, want) {
			t.Errorf("the output page does not show %q", want)
		}
	}
	rev1.click("#approve")
	if p := rev1.text("#progress"); !strings.Contains(p, "1 of 2") {
		t.Fatalf("after one approval: %q", p)
	}
	if j, _ = clients["acme"].Job(ctx, j.ID); j.Status != "review" || len(j.Approvals) != 1 {
		t.Fatalf("after one approval the job is %s with %v", j.Status, j.Approvals)
	}

	// A forged form, from another origin and without the CSRF token, is refused.
	t.Run("forged form refused", func(t *testing.T) {
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<!DOCTYPE html><form method="post" action="%s/ui/grants/%s/suspend"><input name="reason" value="x"><button id="go">go</button></form>`, base, gid)
		}))
		defer evil.Close()
		rev1.do(chromedp.Navigate(evil.URL))
		rev1.click("#go")
		if body := rev1.text("body"); !strings.Contains(body, "another site") {
			t.Fatalf("a forged form was not refused: %s", body)
		}
		// With the session's cookie but no token, from no origin at all: refused too.
		ck := rev1.cookie("veil_session")
		if ck == nil || !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict {
			t.Fatalf("session cookie %+v: want HttpOnly and SameSite=Strict", ck)
		}
		req, _ := http.NewRequest("POST", base+"/ui/reviews/"+j.ID, strings.NewReader(url.Values{"decision": {"reject"}, "reason": {"forged"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a form without its CSRF token: %s", resp.Status)
		}
		if g, _ := clients["auth"].GetGrant(ctx, gid); g["status"] != "active" {
			t.Fatalf("the forged form changed the grant: %v", g["status"])
		}
		if rv, _ := clients["rev2"].Review(ctx, j.ID); len(rv.Decisions) != 1 {
			t.Fatalf("the forged form left a decision: %+v", rv.Decisions)
		}
	})

	// The second reviewer, signed in through a one-time link, completes four-eyes, in Chinese.
	rev2 := person("rev2")
	linkReq, _ := http.NewRequest("POST", base+"/ui/links", nil)
	linkReq.Header.Set("Authorization", "Bearer "+tokens["rev2"])
	resp, err := http.DefaultClient.Do(linkReq)
	if err != nil {
		t.Fatal(err)
	}
	var link struct{ Path string }
	json.NewDecoder(resp.Body).Decode(&link)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || link.Path == "" {
		t.Fatalf("one-time link: %s", resp.Status)
	}
	rev2.open("/ui/lang/zh-CN")
	rev2.open(link.Path)
	if loc := rev2.location(); loc != "/ui/reviews" {
		t.Fatalf("the one-time link led to %s", loc)
	}
	if h := rev2.text("h1"); h != "审核队列" {
		t.Fatalf("zh-CN queue heading %q", h)
	}
	rev2.open("/ui/reviews/" + j.ID)
	rev2.click("#approve")
	if j, _ = clients["acme"].Job(ctx, j.ID); j.Status != "released" {
		t.Fatalf("after two approvals the job is %s", j.Status)
	}
	// The link is one-time.
	other := person("rev2")
	if code := other.open(link.Path); code != http.StatusUnauthorized || !strings.Contains(other.text("main"), "used already") || other.cookie("veil_session") != nil {
		t.Fatalf("a used link: %d %s", code, other.text("main"))
	}

	// The vendor downloads the export; its certificate verifies with the platform key.
	acme := person("acme")
	acme.signIn()
	acme.screenshot("vendor")
	zname, zipped := acme.download("#dl-"+j.ID+"-csv", j.ID)
	if zname != j.ID+".csv.zip" {
		t.Fatalf("the export downloads as %s", zname)
	}
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	vkey, err := os.ReadFile(filepath.Join(e.cfg.DataDir, "platform.pub"))
	if err != nil {
		t.Fatal(err)
	}
	data, cert := files[j.ID+".csv"], files[j.ID+".csv.cert.json"]
	if _, err := client.VerifyExport(strings.TrimSpace(string(vkey)), data, cert); err != nil {
		t.Fatalf("the console's export does not verify: %v", err)
	}
	if !strings.Contains(string(data), "north") || strings.Contains(string(data), "tiny") {
		t.Fatalf("export: %s", data)
	}

	t.Run("other tenant sees nothing", func(t *testing.T) {
		rival := person("rival")
		rival.signIn()
		if txt := rival.text("main"); strings.Contains(txt, gid) || strings.Contains(txt, j.ID) {
			t.Fatalf("rival's page shows acme's objects: %s", txt)
		}
		for _, p := range []string{"/ui/jobs/" + j.ID, "/ui/grants/" + gid, "/ui/exports/" + j.ID + "?format=csv"} {
			if code := rival.open(p); code != http.StatusNotFound {
				t.Errorf("rival opens %s: %d, want 404", p, code)
			}
		}
		// A page the role may not see at all: the API's refusal.
		if code := rival.open("/ui/reviews"); code != http.StatusForbidden {
			t.Errorf("vendor opens the review queue: %d", code)
		}
	})

	// The auditor: the log verifies; an entry's proof, downloaded, verifies offline.
	aud := person("aud")
	aud.signIn()
	if v := aud.text("#verify"); !strings.Contains(v, "verifies") {
		t.Fatalf("verification: %s", v)
	}
	// The keyring is published on the auditor's page: the key that signs now, named current.
	ring, err := e.op.PlatformKeyring(ctx)
	if err != nil || len(ring.Keys) == 0 {
		t.Fatalf("keyring %+v: %v", ring, err)
	}
	if keys := aud.text("#keys"); !strings.Contains(keys, ring.Keys[len(ring.Keys)-1].KeyID) || !strings.Contains(keys, "current") {
		t.Errorf("the auditor's page does not show the signing key %s as current: %s", ring.Keys[len(ring.Keys)-1].KeyID, keys)
	}
	aud.screenshot("auditor")
	aud.open("/ui/audit?action=job.release")
	entries := aud.text("#entries")
	if !strings.Contains(entries, "job/"+j.ID) && !strings.Contains(entries, j.ID) {
		t.Fatalf("filtered log: %s", entries)
	}
	aud.click("#entries tbody tr:first-child a")
	pname, raw := aud.download("#download-proof", "veil-audit-proof-")
	var pf audit.Proof
	if err := json.Unmarshal(raw, &pf); err != nil {
		t.Fatalf("downloaded proof %s: %v", pname, err)
	}
	v, _, err := audit.ParseVerifierKey(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.CheckProof(v, &pf); err != nil {
		t.Fatalf("downloaded proof: %v", err)
	}

	// Authority and operator main pages.
	auth := person("auth")
	auth.signIn()
	if !strings.Contains(auth.text("main"), gid) {
		t.Fatalf("authority page: %s", auth.text("main"))
	}
	auth.screenshot("authority")
	// The authority suspends the grant with a reason, then reinstates it.
	auth.open("/ui/grants/" + gid)
	auth.do(chromedp.SendKeys(chromedp.ID("reason"), "inspection of the vendor"))
	auth.click("#grant-suspend")
	if st := auth.text("#status"); !strings.Contains(st, "suspended") || !strings.Contains(st, "inspection of the vendor") {
		t.Fatalf("after suspend: %q", st)
	}
	if _, err := clients["acme"].Export(ctx, j.ID, "csv"); err == nil {
		t.Fatal("an export of a suspended grant was served")
	}
	// Audited as the API call: the authority, the action, the grant, the reason.
	recs, err := clients["aud"].AuditRecords(ctx, 0, 1000, true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, raw := range recs.Records {
		en, err := audit.DecodeEntry(raw)
		if err == nil && en.Action == "grant.suspend" && en.Object == "grant/"+gid {
			found = true
			if en.Actor != ids["auth"] || en.Role != "authority" {
				t.Fatalf("the console's suspension is audited as %+v", en)
			}
		}
	}
	if !found {
		t.Fatal("the console's suspension is not in the audit log")
	}
	auth.do(chromedp.SendKeys(chromedp.ID("reason"), "inspection done"))
	auth.click("#grant-reinstate")
	if g, _ := clients["acme"].GetGrant(ctx, gid); g["status"] != "active" {
		t.Fatalf("after reinstate the API says %v; the page: %s", g["status"], auth.text("main"))
	}

	// The operator: health, and a principal created from the console, its token shown once.
	op := person("op")
	op.signIn()
	if h := op.text("#health"); !strings.Contains(h, "ready") {
		t.Fatalf("operator health: %s", h)
	}
	op.screenshot("operator")
	op.do(chromedp.SendKeys(chromedp.ID("pname"), "console made"), chromedp.SetValue(chromedp.ID("prole"), "auditor"))
	op.click(`form[action="/ui/principals"] button`)
	newTok := op.text("#new-token")
	if who, err := e.client(newTok).Whoami(ctx); err != nil || who.Role != "auditor" || who.Name != "console made" {
		t.Fatalf("the console's new principal: %+v %v", who, err)
	}
	if strings.Contains(op.location(), newTok) {
		t.Fatal("the new token is in the URL")
	}

	// The provider resolves a vendor's data-quality feedback.
	fb, err := clients["acme"].SubmitFeedback(ctx, "residents", api.SubmitFeedback{Column: "age", Message: "ages above 69 are missing"})
	if err != nil {
		t.Fatal(err)
	}
	prov.open("/ui/provider")
	if !strings.Contains(prov.text("main"), fb.ID) {
		t.Fatalf("the provider's page does not list feedback %s", fb.ID)
	}
	prov.do(chromedp.SendKeys(chromedp.ID("note-"+fb.ID), "the generator stops at 69"))
	prov.click(`form[action="/ui/feedback/` + fb.ID + `/resolve"] button`)
	if fs, _ := clients["acme"].Feedback(ctx, "residents", "resolved"); len(fs) != 1 || fs[0].Note != "the generator stops at 69" {
		t.Fatalf("feedback after the console's resolution: %+v", fs)
	}

	// An expired session is sent to sign-in.
	clock.advance(9 * time.Hour)
	rev1.open("/ui/reviews")
	if loc := rev1.location(); loc != "/ui/signin?expired=1" {
		t.Fatalf("an expired session went to %s", loc)
	}
	if !strings.Contains(rev1.text("main"), "session has ended") {
		t.Fatalf("sign-in page after expiry: %s", rev1.text("main"))
	}
}
