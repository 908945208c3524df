package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
)

// auditWindow is how many of the newest entries the log page searches (the API's page
// limit); maxShown how many matches it lists.
const (
	auditWindow = 10000
	maxShown    = 500
)

type auditRow struct {
	Index int64
	E     audit.Entry
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := struct{ Actor, Action, Object, From, To string }{q.Get("actor"), q.Get("action"), q.Get("object"), q.Get("from"), q.Get("to")}
	c.mu.Lock()
	zone := s.zone
	c.mu.Unlock()
	var from, to time.Time
	var bad string
	if f.From != "" {
		t, err := time.ParseInLocation("2006-01-02", f.From, zone)
		if err != nil {
			bad = tr(c.lang(r), "Give dates as YYYY-MM-DD.")
		}
		from = t
	}
	if f.To != "" {
		t, err := time.ParseInLocation("2006-01-02", f.To, zone)
		if err != nil {
			bad = tr(c.lang(r), "Give dates as YYYY-MM-DD.")
		}
		to = t.AddDate(0, 0, 1)
	}
	var recs api.AuditRecords
	if err := c.get(r, s, "/v1/audit/records", url.Values{"tail": {"1"}, "limit": {strconv.Itoa(auditWindow)}}, &recs); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var rows []auditRow
	undecodable := 0
	for i := len(recs.Records) - 1; i >= 0 && len(rows) < maxShown; i-- {
		e, err := audit.DecodeEntry(recs.Records[i])
		if err != nil {
			undecodable++
			continue
		}
		if !has(e.Actor, f.Actor) || !has(e.Action, f.Action) || !has(e.Object, f.Object) ||
			(!from.IsZero() && e.Time.Before(from)) || (!to.IsZero() && !e.Time.Before(to)) {
			continue
		}
		rows = append(rows, auditRow{Index: recs.From + int64(i), E: e})
	}
	var verify struct {
		OK     bool            `json:"ok"`
		Error  string          `json:"error"`
		Report json.RawMessage `json:"report"`
	}
	verr := c.get(r, s, "/v1/audit/verify", nil, &verify)
	var rep map[string]any
	json.Unmarshal(verify.Report, &rep)
	// The platform's keyring: the key that signs now and the retired ones with their terms
	// (veil key rotate), so that an auditor can compare it with the copy it got out of band.
	var ring api.PlatformKeyring
	if err := c.get(r, s, "/v1/platform/keyring", nil, &ring); err != nil {
		c.fail(w, r, s, err)
		return
	}
	p := c.newPage(r, s, tr(c.lang(r), "Audit log"), map[string]any{"F": f, "Rows": rows, "Size": recs.Size, "Window": int64(len(recs.Records)),
		"Verified": verr == nil && verify.OK, "VerifyError": verify.Error, "Report": rep, "Undecodable": undecodable, "Keys": ring.Keys})
	p.Error = bad
	c.render(w, r, http.StatusOK, "audit", p)
}

func has(v, want string) bool { return want == "" || strings.Contains(v, want) }

// proof shows an entry's inclusion proof and the checkpoint it was proved against, and
// downloads it (?download=1) as `veil audit prove --file` checks it.
func (c *Console) proof(w http.ResponseWriter, r *http.Request, s *session) {
	idx, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || idx < 0 {
		c.fail(w, r, s, &apiError{Status: http.StatusBadRequest, Kind: "invalid", Msg: tr(c.lang(r), "An entry is named by its number.")})
		return
	}
	var raw json.RawMessage
	if err := c.get(r, s, "/v1/audit/proof/"+strconv.FormatInt(idx, 10), nil, &raw); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if r.URL.Query().Get("download") != "" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="veil-audit-proof-`+strconv.FormatInt(idx, 10)+`.json"`)
		w.Write(raw)
		return
	}
	var p audit.Proof
	if err := json.Unmarshal(raw, &p); err != nil {
		c.fail(w, r, s, err)
		return
	}
	e, _ := audit.DecodeEntry(p.Record)
	c.render(w, r, http.StatusOK, "proof", c.newPage(r, s, tr(c.lang(r), "Inclusion proof of entry")+" "+strconv.FormatInt(idx, 10),
		map[string]any{"P": p, "E": e, "Checkpoint": string(p.Checkpoint), "Hashes": len(p.Hashes)}))
}
