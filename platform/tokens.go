package platform

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// maxTerm bounds a token's expiry and a rotation's grace period.
const maxTerm = 5 * 365 * 24 * time.Hour

// ParseTerm reads a term: a number of days ("30d") or a Go duration ("12h", "90m").
func ParseTerm(what, s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 || d > maxTerm {
		return 0, fmt.Errorf("%w: %s %q: give days (30d) or hours and minutes (12h, 90m), at most five years", policy.ErrInvalid, what, s)
	}
	return d, nil
}

// tokenEnd is when the token with hash ends; ok is false if it does not.
func tokenEnd(ctx context.Context, tx store.Tx, hash []byte) (ends time.Time, ok bool, err error) {
	_, ends, err = tx.TokenTerm(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, false, nil
	}
	return ends, err == nil, err
}

// lookupToken finds the principal of a token: its current one, or one a rotation replaced
// (replaced true), and when the token ends, if it does.
func lookupToken(ctx context.Context, tx store.Tx, hash []byte) (sp store.Principal, replaced bool, ends time.Time, err error) {
	sp, err = tx.PrincipalByToken(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		id, e, terr := tx.TokenTerm(ctx, hash)
		if terr != nil {
			return sp, false, ends, err // unknown: as before
		}
		sp, err = tx.Principal(ctx, id)
		return sp, true, e, err
	}
	if err != nil {
		return sp, false, ends, err
	}
	ends, _, err = tokenEnd(ctx, tx, hash)
	return sp, false, ends, err
}

// ended is the refusal of a token past its end.
func ended(replaced bool, ends time.Time) error {
	at := ends.UTC().Format(time.RFC3339)
	if replaced {
		return fmt.Errorf("%w: the token was replaced by a new one and its grace period ended at %s: use the new token", ErrUnauthenticated, at)
	}
	return fmt.Errorf("%w: the token expired at %s: ask an operator for a new one (veil principal rotate)", ErrUnauthenticated, at)
}

// Rotate gives a principal a new token, which it returns once; the old one keeps working for
// the grace period (never longer than it would have), then is refused.
func (ps *Principals) Rotate(ctx context.Context, p policy.Principal, id string, req api.RotatePrincipal) (api.Principal, error) {
	var grace, expires time.Duration
	var err error
	if req.Grace != "" {
		if grace, err = ParseTerm("grace", req.Grace); err != nil {
			return api.Principal{}, err
		}
	}
	if req.Expires != "" {
		if expires, err = ParseTerm("expires", req.Expires); err != nil {
			return api.Principal{}, err
		}
	}
	now := ps.rec.Now()
	tok, hash := NewToken()
	var sp store.Principal
	var newEnds time.Time
	err = ps.db.Update(ctx, func(tx store.Tx) error {
		var err error
		if sp, err = tx.Principal(ctx, id); err != nil {
			return err
		}
		if sp.Revoked {
			return fmt.Errorf("%w: principal %s is revoked; create a new principal instead", policy.ErrConflict, id)
		}
		oldEnds := now.Add(grace)
		if e, ok, err := tokenEnd(ctx, tx, sp.TokenHash); err != nil {
			return err
		} else if ok && e.Before(oldEnds) {
			oldEnds = e
		}
		if err := tx.PutTokenTerm(ctx, sp.TokenHash, id, oldEnds); err != nil {
			return err
		}
		sp.TokenHash = hash
		if err := tx.PutPrincipal(ctx, sp); err != nil {
			return err
		}
		details := map[string]string{"old_token_ends": oldEnds.UTC().Format(time.RFC3339)}
		if expires > 0 {
			newEnds = now.Add(expires).Truncate(time.Millisecond)
			if err := tx.PutTokenTerm(ctx, hash, id, newEnds); err != nil {
				return err
			}
			details["expires"] = newEnds.UTC().Format(time.RFC3339)
		}
		return ps.rec.Record(ctx, tx, p, "principal.rotate", "principal/"+id, details)
	})
	if err != nil {
		return api.Principal{}, err
	}
	out := toAPI(sp)
	out.Token, out.Expires = tok, newEnds
	return out, nil
}
