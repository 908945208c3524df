package platform

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // zones must not depend on the host's zoneinfo

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// ErrUnauthenticated is a request without a valid token.
var ErrUnauthenticated = errors.New("unauthenticated")

var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Principals manages who may call the platform and authenticates their tokens.
type Principals struct {
	db  store.Store
	rec *Recorder
}

// NewPrincipals manages the principals of db.
func NewPrincipals(db store.Store, rec *Recorder) *Principals { return &Principals{db: db, rec: rec} }

// Authenticate finds the principal of a bearer token; a revoked token is as unknown as one
// that never existed.
func (ps *Principals) Authenticate(ctx context.Context, tok string) (policy.Principal, error) {
	if tok == "" {
		return policy.Principal{}, fmt.Errorf("%w: send a token as 'Authorization: Bearer <token>' (set VEIL_TOKEN or --token)", ErrUnauthenticated)
	}
	var sp store.Principal
	var replaced bool
	var ends time.Time
	err := ps.db.View(ctx, func(tx store.Tx) error {
		var err error
		sp, replaced, ends, err = lookupToken(ctx, tx, HashToken(tok))
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && sp.Revoked) {
		return policy.Principal{}, fmt.Errorf("%w: the token is unknown or revoked", ErrUnauthenticated)
	}
	if err != nil {
		return policy.Principal{}, err
	}
	if !ends.IsZero() && !ps.rec.Now().Before(ends) {
		return policy.Principal{}, ended(replaced, ends)
	}
	return policy.Principal{ID: sp.ID, Name: sp.Name, Role: policy.Role(sp.Role), Tenant: sp.Tenant}, nil
}

// Create makes a principal with a fresh token, which it returns once.
func (ps *Principals) Create(ctx context.Context, p policy.Principal, req api.CreatePrincipal) (api.Principal, error) {
	role, err := policy.ParseRole(req.Role)
	if err != nil {
		return api.Principal{}, err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 100 {
		return api.Principal{}, fmt.Errorf("%w: give the principal a name (at most 100 characters)", policy.ErrInvalid)
	}
	if role.NeedsTenant() && !tenantRE.MatchString(req.Tenant) {
		return api.Principal{}, fmt.Errorf("%w: a %s needs --tenant: lower-case letters, digits and '-'", policy.ErrInvalid, role)
	}
	if !role.NeedsTenant() && req.Tenant != "" {
		return api.Principal{}, fmt.Errorf("%w: a %s belongs to no tenant; drop --tenant", policy.ErrInvalid, role)
	}
	var ends time.Time
	if req.Expires != "" {
		d, err := ParseTerm("expires", req.Expires)
		if err != nil {
			return api.Principal{}, err
		}
		ends = ps.rec.Now().Add(d).Truncate(time.Millisecond) // as the store keeps it
	}
	tok, hash := NewToken()
	sp := store.Principal{ID: NewID("p"), Name: req.Name, Role: string(role), Tenant: req.Tenant, TokenHash: hash, Created: ps.rec.Now()}
	err = ps.db.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutPrincipal(ctx, sp); err != nil {
			return err
		}
		if !ends.IsZero() {
			if err := tx.PutTokenTerm(ctx, hash, sp.ID, ends); err != nil {
				return err
			}
		}
		return ps.rec.Record(ctx, tx, p, "principal.create", "principal/"+sp.ID, map[string]string{"role": sp.Role, "tenant": sp.Tenant, "name": sp.Name})
	})
	if err != nil {
		return api.Principal{}, err
	}
	out := toAPI(sp)
	out.Token, out.Expires = tok, ends
	return out, nil
}

func toAPI(sp store.Principal) api.Principal {
	return api.Principal{ID: sp.ID, Name: sp.Name, Role: sp.Role, Tenant: sp.Tenant, Created: sp.Created, Revoked: sp.Revoked}
}

// List lists every principal.
func (ps *Principals) List(ctx context.Context) ([]api.Principal, error) {
	var out []api.Principal
	err := ps.db.View(ctx, func(tx store.Tx) error {
		all, err := tx.Principals(ctx)
		for _, sp := range all {
			a := toAPI(sp)
			if a.Expires, _, err = tokenEnd(ctx, tx, sp.TokenHash); err != nil {
				return err
			}
			out = append(out, a)
		}
		return err
	})
	return out, err
}

// Revoke revokes a principal's token, for good; nobody revokes their own.
func (ps *Principals) Revoke(ctx context.Context, p policy.Principal, id string) (api.Principal, error) {
	if id == p.ID {
		return api.Principal{}, fmt.Errorf("%w: you cannot revoke your own token; ask another operator", policy.ErrConflict)
	}
	var sp store.Principal
	err := ps.db.Update(ctx, func(tx store.Tx) error {
		var err error
		if sp, err = tx.Principal(ctx, id); err != nil {
			return err
		}
		sp.Revoked = true
		if err := tx.PutPrincipal(ctx, sp); err != nil {
			return err
		}
		return ps.rec.Record(ctx, tx, p, "principal.revoke", "principal/"+id, nil)
	})
	return toAPI(sp), err
}

// ZoneKey is the preference that holds a principal's time zone.
const ZoneKey = "zone"

// ParseZone checks an IANA time zone name: "UTC", "Asia/Shanghai"; not "Local", whose
// meaning is the host's.
func ParseZone(name string) (*time.Location, error) {
	if name == "" || len(name) > 64 || name == "Local" {
		return nil, fmt.Errorf("%w: give an IANA time zone name such as UTC or Asia/Shanghai", policy.ErrInvalid)
	}
	z, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not an IANA time zone; give one such as UTC or Asia/Shanghai", policy.ErrInvalid, name)
	}
	return z, nil
}

// Whoami is the caller with its preferences: its time zone (UTC unless it chose one).
func (ps *Principals) Whoami(ctx context.Context, p policy.Principal) (api.Principal, error) {
	out := api.Principal{ID: p.ID, Name: p.Name, Role: string(p.Role), Tenant: p.Tenant, Zone: "UTC"}
	err := ps.db.View(ctx, func(tx store.Tx) error {
		z, err := tx.Preference(ctx, p.ID, ZoneKey)
		if z != "" {
			out.Zone = z
		}
		return err
	})
	return out, err
}

// SetZone records the time zone p reads times in; it is p's own choice, audited.
func (ps *Principals) SetZone(ctx context.Context, p policy.Principal, req api.SetZone) (api.Principal, error) {
	z, err := ParseZone(req.Zone)
	if err != nil {
		return api.Principal{}, err
	}
	err = ps.db.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutPreference(ctx, p.ID, ZoneKey, z.String()); err != nil {
			return err
		}
		return ps.rec.Record(ctx, tx, p, "principal.zone", "principal/"+p.ID, map[string]string{"zone": z.String()})
	})
	if err != nil {
		return api.Principal{}, err
	}
	return ps.Whoami(ctx, p)
}
