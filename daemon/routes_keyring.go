package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
)

// platformKeyring publishes the keyring: public, as the platform key is.
func (s *Server) platformKeyring(w http.ResponseWriter, r *http.Request) {
	var out api.PlatformKeyring
	for _, k := range s.ring.Keys() {
		out.Keys = append(out.Keys, api.KeyringKey{VerifierKey: k.VerifierKey, KeyID: k.KeyID, From: k.From, Until: k.Until, AuditSize: k.MaxSize})
	}
	writeJSON(w, http.StatusOK, out)
}
