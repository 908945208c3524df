package daemon

import (
	"net/http"
	"strings"
	"time"

	"github.com/veil-dp/veil/console"
)

// withConsole serves the web console at /ui/ beside the API on the same listeners. The
// console makes its requests to api in process, with the signed-in principal's token, so
// that it is authorized and audited exactly as the API is.
func (s *Server) withConsole(api http.Handler) http.Handler {
	ui, err := console.New(console.Options{API: api, Clock: s.cfg.Clock, Zone: time.UTC, Log: s.slog})
	if err != nil {
		// The templates are embedded and checked by the console's tests: this is a build defect.
		s.slog.Error("console disabled", "err", err)
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" {
			http.Redirect(w, r, console.Prefix, http.StatusSeeOther)
			return
		}
		if strings.HasPrefix(r.URL.Path, console.Prefix) {
			ui.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
