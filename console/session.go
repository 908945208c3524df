package console

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

const (
	sessionCookie = "veil_session"
	preCookie     = "veil_signin" // the sign-in form's CSRF token, before there is a session
	langCookie    = "veil_lang"
	maxSessions   = 10000
	maxLinks      = 1000
)

// session is a signed-in principal. Its token never leaves the daemon's memory.
type session struct {
	id      string
	token   string
	p       policy.Principal
	csrf    string
	zone    *time.Location
	expires time.Time
}

// link is a one-time sign-in link: its secret is exchanged once for a session.
type link struct {
	token   string
	expires time.Time
}

func secret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func secure(r *http.Request) bool { return r.TLS != nil }

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) {
	ck := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode}
	if value == "" {
		ck.MaxAge = -1
	} else if !expires.IsZero() {
		ck.Expires = expires
	}
	http.SetCookie(w, ck)
}

// session returns the request's live session, or nil. An expired session is forgotten.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sess[ck.Value]
	if s == nil {
		return nil
	}
	if !c.now().Before(s.expires) {
		delete(c.sess, ck.Value)
		return nil
	}
	return s
}

// open exchanges a Veil token for a session: the API says who the token is (and refuses a
// wrong or revoked one).
func (c *Console) open(w http.ResponseWriter, r *http.Request, token string) (*session, error) {
	var who api.Principal
	if err := c.call(r, &session{token: token}, http.MethodGet, "/v1/whoami", nil, &who); err != nil {
		return nil, err
	}
	s := &session{id: secret(), token: token, csrf: secret(), zone: c.zoneOf(who), expires: c.now().Add(c.opt.SessionTTL),
		p: policy.Principal{ID: who.ID, Name: who.Name, Role: policy.Role(who.Role), Tenant: who.Tenant}}
	c.mu.Lock()
	c.sweep()
	if len(c.sess) >= maxSessions {
		c.mu.Unlock()
		return nil, &apiError{Status: http.StatusServiceUnavailable, Kind: "unavailable", Msg: "too many console sessions are open; try again later"}
	}
	c.sess[s.id] = s
	c.mu.Unlock()
	c.setCookie(w, r, sessionCookie, s.id, s.expires)
	c.setCookie(w, r, preCookie, "", time.Time{})
	return s, nil
}

// sweep forgets expired sessions and links; c.mu is held.
func (c *Console) sweep() {
	now := c.now()
	for id, s := range c.sess {
		if !now.Before(s.expires) {
			delete(c.sess, id)
		}
	}
	for id, l := range c.links {
		if !now.Before(l.expires) {
			delete(c.links, id)
		}
	}
}

// signinPage shows the sign-in form, with a fresh CSRF token in its own cookie.
func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	c.showSignin(w, r, "", http.StatusOK)
}

func (c *Console) showSignin(w http.ResponseWriter, r *http.Request, msg string, code int) {
	tok := secret()
	c.setCookie(w, r, preCookie, tok, c.now().Add(time.Hour))
	lang := c.lang(r)
	c.render(w, r, code, "signin", &page{L: lang, Title: tr(lang, "Sign in"), CSRF: tok, Zone: c.opt.Zone, Error: msg,
		Data: map[string]any{"Expired": r.URL.Query().Get("expired") != ""}})
}

// signin exchanges the posted token for a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(preCookie)
	want := ""
	if err == nil {
		want = ck.Value
	}
	if err := checkCSRF(r, want); err != nil {
		c.showSignin(w, r, tr(c.lang(r), err.Error()), http.StatusForbidden)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		c.showSignin(w, r, tr(c.lang(r), "Paste your Veil token (veil principal create printed it once)."), http.StatusBadRequest)
		return
	}
	if _, err := c.open(w, r, token); err != nil {
		c.showSignin(w, r, tr(c.lang(r), "The token was not accepted:")+" "+err.Error(), http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// signout ends the session.
func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	delete(c.sess, s.id)
	c.mu.Unlock()
	c.setCookie(w, r, sessionCookie, "", time.Time{})
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// newLink makes a one-time sign-in link for the bearer token of the request (POST
// /ui/links, for scripts: `make demo` prints the reviewer's). The token is checked first.
func (c *Console) newLink(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	w.Header().Set("Content-Type", "application/json")
	if !ok || token == "" {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(api.Error{Error: "send the Veil token to make a sign-in link for in an Authorization: Bearer header", Kind: "unauthenticated"})
		return
	}
	var who api.Principal
	if err := c.call(r, &session{token: token}, http.MethodGet, "/v1/whoami", nil, &who); err != nil {
		e, _ := err.(*apiError)
		code, kind := http.StatusUnauthorized, "unauthenticated"
		if e != nil {
			code, kind = e.Status, e.Kind
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(api.Error{Error: err.Error(), Kind: kind})
		return
	}
	id := secret()
	exp := c.now().Add(c.opt.LinkTTL)
	c.mu.Lock()
	c.sweep()
	full := len(c.links) >= maxLinks
	if !full {
		c.links[id] = &link{token: token, expires: exp}
	}
	c.mu.Unlock()
	if full {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(api.Error{Error: "too many sign-in links are waiting; try again later", Kind: "unavailable"})
		return
	}
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{"path": Prefix + "link/" + id, "principal": who.ID, "expires": exp.UTC()})
}

// redeem exchanges a one-time link for a session; a used or expired link sends the browser
// to the sign-in form.
func (c *Console) redeem(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c.mu.Lock()
	l := c.links[id]
	delete(c.links, id)
	c.mu.Unlock()
	if l == nil || !c.now().Before(l.expires) {
		c.showSignin(w, r, tr(c.lang(r), "This sign-in link was used already or has expired; sign in with your token."), http.StatusUnauthorized)
		return
	}
	if _, err := c.open(w, r, l.token); err != nil {
		c.showSignin(w, r, tr(c.lang(r), "The token was not accepted:")+" "+err.Error(), http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// setLang keeps the chosen language in a cookie and goes back home.
func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	l := r.PathValue("lang")
	if !isLang(l) {
		http.NotFound(w, r)
		return
	}
	c.setCookie(w, r, langCookie, l, c.now().AddDate(1, 0, 0))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// zoneOf is the zone a principal reads times in: its preference, else the console's default.
func (c *Console) zoneOf(who api.Principal) *time.Location {
	if who.Zone != "" {
		if z, err := time.LoadLocation(who.Zone); err == nil && who.Zone != "Local" {
			return z
		}
	}
	return c.opt.Zone
}

// refresh takes the principal's time zone afresh: it may have set it with the CLI since.
func (c *Console) refresh(r *http.Request, s *session) {
	var who api.Principal
	if c.call(r, s, http.MethodGet, "/v1/whoami", nil, &who) != nil {
		return // the page's own requests meet the refusal and say so
	}
	z := c.zoneOf(who)
	c.mu.Lock()
	s.zone = z
	c.mu.Unlock()
}

// setZone records the principal's time zone, through the API as `veil zone set` does.
func (c *Console) setZone(w http.ResponseWriter, r *http.Request, s *session) {
	var who api.Principal
	if err := c.call(r, s, http.MethodPut, "/v1/whoami/zone", api.SetZone{Zone: r.PostFormValue("zone")}, &who); err != nil {
		c.fail(w, r, s, err)
		return
	}
	z := c.zoneOf(who)
	c.mu.Lock()
	s.zone = z
	c.mu.Unlock()
	to := r.PostFormValue("back")
	if !strings.HasPrefix(to, Prefix) || strings.HasPrefix(to, "//") || strings.ContainsAny(to, "?#\\") {
		to = mainPage(s)
	}
	back(w, r, to, "zone")
}

// zones are the time zones the console offers in its list; a principal may have set
// another with the CLI, which the list then shows too.
var zones = []string{"UTC", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Tokyo", "Asia/Singapore", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles"}

// zoneChoices is the list with zone in it.
func zoneChoices(zone string) []string {
	for _, z := range zones {
		if z == zone {
			return zones
		}
	}
	return append([]string{zone}, zones...)
}
