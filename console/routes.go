package console

import (
	"errors"
	"net/http"
	"net/url"
)

func (c *Console) routes() {
	m := http.NewServeMux()
	m.Handle("GET /ui/static/", http.StripPrefix(Prefix, http.FileServerFS(assets)))
	m.HandleFunc("GET /ui/signin", c.signinPage)
	m.HandleFunc("POST /ui/signin", c.signin)
	m.HandleFunc("POST /ui/links", c.newLink)
	m.HandleFunc("GET /ui/link/{id}", c.redeem)
	m.HandleFunc("GET /ui/lang/{lang}", c.setLang)
	m.Handle("POST /ui/signout", c.post(c.signout))
	m.Handle("POST /ui/zone", c.post(c.setZone))
	m.Handle("GET /ui/{$}", c.page(c.home))
	// Reviewer.
	m.Handle("GET /ui/reviews", c.page(c.reviews))
	m.Handle("GET /ui/reviews/{id}", c.page(c.review))
	m.Handle("POST /ui/reviews/{id}", c.post(c.decide))
	// Grants: every role that reads them; stage decisions and the authority's actions.
	m.Handle("GET /ui/grants/{id}", c.page(c.grant))
	m.Handle("POST /ui/grants/{id}/{action}", c.post(c.actOnGrant))
	// Vendor.
	m.Handle("GET /ui/vendor", c.page(c.vendor))
	m.Handle("GET /ui/jobs/{id}", c.page(c.job))
	m.Handle("GET /ui/exports/{id}", c.page(c.export))
	// Provider.
	m.Handle("GET /ui/provider", c.page(c.provider))
	m.Handle("GET /ui/datasets/{name}", c.page(c.dataset))
	m.Handle("GET /ui/charts/budget/{name}", c.page(c.budgetChart))
	m.Handle("GET /ui/charts/burndown/{name}", c.page(c.burndown))
	m.Handle("POST /ui/feedback/{id}/resolve", c.post(c.resolveFeedback))
	// Authority.
	m.Handle("GET /ui/authority", c.page(c.authority))
	// Auditor (and the other roles the API lets read the log).
	m.Handle("GET /ui/audit", c.page(c.audit))
	m.Handle("GET /ui/audit/proof/{index}", c.page(c.proof))
	// Operator.
	m.Handle("GET /ui/operator", c.page(c.operator))
	m.Handle("POST /ui/principals", c.post(c.createPrincipal))
	m.Handle("POST /ui/principals/{id}/revoke", c.post(c.revokePrincipal))
	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, c.session(r), &apiError{Status: http.StatusNotFound, Kind: "not_found", Msg: tr(c.lang(r), "There is no such page.")})
	})
	c.mux = m
}

type sessionHandler func(w http.ResponseWriter, r *http.Request, s *session)

// page serves fn to a signed-in principal; anyone else (an expired session included) is sent
// to the sign-in form.
func (c *Console) page(fn sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			to := Prefix + "signin"
			if _, err := r.Cookie(sessionCookie); err == nil {
				to += "?expired=1"
				c.setCookie(w, r, sessionCookie, "", timeZero)
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		c.refresh(r, s)
		fn(w, r, s)
	})
}

// post serves a state-changing form: a session and its CSRF token are required.
func (c *Console) post(fn sessionHandler) http.Handler {
	return c.page(func(w http.ResponseWriter, r *http.Request, s *session) {
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, s, &apiError{Status: http.StatusBadRequest, Kind: "invalid", Msg: tr(c.lang(r), "The form could not be read.")})
			return
		}
		if err := checkCSRF(r, s.csrf); err != nil {
			c.opt.Log.Info("console form refused", "path", r.URL.Path, "principal", s.p.ID, "err", err)
			c.fail(w, r, s, &apiError{Status: http.StatusForbidden, Kind: "forbidden", Msg: tr(c.lang(r), err.Error())})
			return
		}
		fn(w, r, s)
	})
}

// home sends the principal to its role's main page.
func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) {
	http.Redirect(w, r, mainPage(s), http.StatusSeeOther)
}

func mainPage(s *session) string {
	switch s.p.Role {
	case "reviewer":
		return Prefix + "reviews"
	case "vendor":
		return Prefix + "vendor"
	case "provider":
		return Prefix + "provider"
	case "authority":
		return Prefix + "authority"
	case "auditor":
		return Prefix + "audit"
	case "operator":
		return Prefix + "operator"
	}
	return Prefix + "signin"
}

// fail shows an error page with the API's status and wording.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		c.opt.Log.Error("console", "path", r.URL.Path, "err", err)
		e = &apiError{Status: http.StatusInternalServerError, Kind: "internal", Msg: tr(c.lang(r), "Internal error; the operator can find details in the daemon log.")}
	}
	if e.Status == http.StatusUnauthorized && s != nil {
		// The token was revoked under the session: the session ends with it.
		c.mu.Lock()
		delete(c.sess, s.id)
		c.mu.Unlock()
		c.setCookie(w, r, sessionCookie, "", timeZero)
		http.Redirect(w, r, Prefix+"signin?expired=1", http.StatusSeeOther)
		return
	}
	lang := c.lang(r)
	c.render(w, r, e.Status, "error", c.newPage(r, s, tr(lang, "Error"), map[string]any{"Status": e.Status, "Kind": e.Kind, "Message": e.Msg}))
}

// back redirects to a console path after an action, with a note to show.
func back(w http.ResponseWriter, r *http.Request, path, note string) {
	if note != "" {
		path += "?done=" + url.QueryEscape(note)
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}
