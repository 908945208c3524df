package daemon

import (
	"context"
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// platformKeyring publishes the keyring: public, as the platform key is.
func (s *Server) platformKeyring(w http.ResponseWriter, r *http.Request) {
	var out api.PlatformKeyring
	for _, k := range s.ring.Keys() {
		out.Keys = append(out.Keys, api.KeyringKey{VerifierKey: k.VerifierKey, KeyID: k.KeyID, From: k.From, Until: k.Until, AuditSize: k.MaxSize})
	}
	writeJSON(w, http.StatusOK, out)
}

// rotatePrincipal gives a principal a new token; the old one ends after the grace period.
func (s *Server) rotatePrincipal(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusOK, func(ctx context.Context, req api.RotatePrincipal) (api.Principal, error) {
		return s.principals.Rotate(ctx, p, r.PathValue("id"), req)
	})
}
