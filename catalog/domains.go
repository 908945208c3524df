package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// maxDomainValueBytes bounds one value of a domain taken from a column.
const maxDomainValueBytes = 200

// domainsFrom fills every domain the schema takes from another dataset's column: that
// column's declared domain, or, for a level-1 (public) column of the registering provider's
// own dataset, its distinct values. Any other column's values are protected data and are
// never made a domain.
func (s *Service) domainsFrom(ctx context.Context, p policy.Principal, sch *policy.Schema) error {
	for i, c := range sch.Columns {
		if c.DomainFrom == "" || len(c.Domain) > 0 {
			continue
		}
		dsName, colName, _ := strings.Cut(c.DomainFrom, ".")
		var d store.Dataset
		err := s.DB.View(ctx, func(tx store.Tx) error {
			var err error
			d, err = tx.Dataset(ctx, dsName)
			return err
		})
		if errors.Is(err, store.ErrNotFound) || (err == nil && (!CanSee(p, d) || IsFused(d))) {
			return fmt.Errorf("%w: column %q: domain from %s: dataset %q is not in the catalog; register it first", policy.ErrInvalid, c.Name, c.DomainFrom, dsName)
		}
		if err != nil {
			return err
		}
		var src policy.Schema
		if err := json.Unmarshal(d.Schema, &src); err != nil {
			return err
		}
		from, ok := src.Column(colName)
		if !ok {
			return fmt.Errorf("%w: column %q: domain from %s: dataset %q has no column %q", policy.ErrInvalid, c.Name, c.DomainFrom, dsName, colName)
		}
		switch {
		case len(from.Domain) > 0:
			sch.Columns[i].Domain = append([]string(nil), from.Domain...)
		case d.Provider == p.Tenant && from.Level == 1 && !from.Identifier():
			vals, err := engine.DistinctValues(ctx, d.Files, from.Name, policy.MaxDomainValues, maxDomainValueBytes)
			if err != nil {
				return fmt.Errorf("%w: column %q: domain from %s: %v", policy.ErrInvalid, c.Name, c.DomainFrom, err)
			}
			if len(vals) == 0 {
				return fmt.Errorf("%w: column %q: domain from %s: the column has no values", policy.ErrInvalid, c.Name, c.DomainFrom)
			}
			sch.Columns[i].Domain = vals
		default:
			return fmt.Errorf("%w: column %q: domain from %s: that column declares no domain, and only a level-1 column of your own dataset gives its values as a domain (its values are otherwise protected)", policy.ErrInvalid, c.Name, c.DomainFrom)
		}
	}
	return nil
}
