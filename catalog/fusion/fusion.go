package fusion

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Vendor data fusion (社会数据融合). A vendor uploads its own table into its tenant area for
// one of its grants, naming the column that identifies a person in it (a phone or ID
// number) and the public column it matches. In a sandbox, both sides are pseudonymized with
// a secret of that grant (SHA-256 of secret and value) and joined; the vendor's identifier is
// dropped and the person's privacy unit takes its place, so that the fused table joins the
// public data like any dataset about persons. It becomes usable once the authority approves
// it for the grant, is visible only to that tenant's jobs under that grant, and is deleted
// when the grant ends — files removed and checked, recorded in the audit log.

var fusionName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

const maxFusionsPerGrant = 5

// Service fuses vendors' tables with public data and sweeps them when their grant ends.
type Service struct {
	platform.Env
	box *launch.Launcher
}

// New returns the fusion service; box runs the joins.
func New(env platform.Env, box *launch.Launcher) *Service {
	return &Service{Env: env, box: box}
}

func tenantSlug(t string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t))
}

// fusionDir is where a grant's fused uploads of a tenant live.
func (s *Service) fusionDir(tenant, grant string) string {
	h := sha256.Sum256([]byte(tenant))
	return filepath.Join(s.Config.DataDir, "tenants", hex.EncodeToString(h[:8]), grant)
}

// grantSecret is the grant's pseudonymization secret, made on first use; it never leaves
// the platform.
func (s *Service) grantSecret(dir string) (string, error) {
	path := filepath.Join(dir, "secret")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	if err := platform.WriteFileAtomic(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Upload takes a vendor's table for one of its grants and fuses it in a sandbox: key is the
// column of the table that identifies a person, match the granted public column it matches
// (dataset.column). The table is read with read once the request has passed every check.
func (s *Service) Upload(ctx context.Context, p policy.Principal, grant, name, key, match string, read func() ([]byte, error)) (api.Dataset, error) {
	if !fusionName.MatchString(name) {
		return api.Dataset{}, fmt.Errorf("%w: a fused table's name is lower-case letters, digits and '_' (for example customers)", policy.ErrInvalid)
	}
	matchDS, matchCol, ok := strings.Cut(match, ".")
	if key == "" || !ok {
		return api.Dataset{}, fmt.Errorf("%w: name the column that identifies a person in your table (key=phone) and the public column it matches (match=residents.phone)", policy.ErrInvalid)
	}
	var g *policy.Grant
	var msch *policy.Schema
	var mset store.Dataset
	err := s.DB.View(ctx, func(tx store.Tx) error {
		var err error
		if g, err = grants.Load(ctx, tx, p, grant); err != nil {
			return err
		}
		if st := g.Effective(s.Rec.Now()); st != policy.StatusActive {
			return fmt.Errorf("%w: grant %s is %s; data is fused only into an active grant", policy.ErrConflict, g.ID, st)
		}
		cols, ok := g.Access(matchDS)
		if !ok {
			return fmt.Errorf("%w: grant %s does not include dataset %s", policy.ErrInvalid, g.ID, matchDS)
		}
		// The key is matched only where the review of the grant allowed it.
		if !slices.Contains(cols, matchCol) {
			return fmt.Errorf("%w: grant %s does not include column %s of %s; a fusion key must be granted (apply for it with the grant)", policy.ErrInvalid, g.ID, matchCol, matchDS)
		}
		schemas, sets, err := catalog.Load(ctx, tx, []string{matchDS})
		if err != nil {
			return err
		}
		msch, mset = schemas[matchDS], sets[matchDS]
		ups, err := tx.Datasets(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, d := range ups {
			var sch policy.Schema
			if json.Unmarshal(d.Schema, &sch) == nil && sch.Grant == g.ID {
				n++
			}
		}
		if n >= maxFusionsPerGrant {
			return fmt.Errorf("%w: grant %s already holds %d fused uploads, the most one grant may", policy.ErrConflict, g.ID, n)
		}
		return s.box.Admit(schemas)
	})
	if err != nil {
		return api.Dataset{}, err
	}
	if msch.Unit == policy.RowUnit {
		return api.Dataset{}, fmt.Errorf("%w: %s is event-level data (unit row): its rows are events, not persons, so a vendor's table cannot be matched to it", policy.ErrInvalid, matchDS)
	}
	mc, ok := msch.Column(matchCol)
	if !ok || !(mc.Identifier() || mc.PrivacyUnit) {
		return api.Dataset{}, fmt.Errorf("%w: %s.%s is not a column that identifies a person (an id number, phone, name or the privacy unit)", policy.ErrInvalid, matchDS, matchCol)
	}
	unit := msch.UnitColumn()
	dsName := "fusion_" + tenantSlug(p.Tenant) + "_" + name
	body, err := read()
	if err != nil {
		return api.Dataset{}, err
	}
	dir := filepath.Join(s.fusionDir(p.Tenant, g.ID), name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return api.Dataset{}, err
	}
	// Mkdir claims the name: of two uploads under one name, one gets it.
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return api.Dataset{}, fmt.Errorf("%w: %s was already uploaded for grant %s", policy.ErrConflict, name, g.ID)
		}
		return api.Dataset{}, err
	}
	for d := dir; d != s.Config.DataDir && strings.HasPrefix(d, s.Config.DataDir); d = filepath.Dir(d) {
		os.Chmod(d, 0o711) // the sandbox's unprivileged root traverses them
	}
	ok = false
	defer func() {
		if !ok {
			os.RemoveAll(dir) // a refused upload leaves nothing behind
		}
	}()
	ext := ".csv"
	if bytes.HasPrefix(body, []byte("PAR1")) {
		ext = ".parquet"
	}
	raw := filepath.Join(dir, "upload"+ext)
	if err := platform.WriteFileAtomic(raw, body, 0o600); err != nil {
		return api.Dataset{}, err
	}
	clear(body)
	if err := os.Mkdir(filepath.Join(dir, "staged"), 0o711); err != nil {
		return api.Dataset{}, err
	}
	staged, _, err := catalog.Stage(ctx, []string{raw}, filepath.Join(dir, "staged"))
	os.Remove(raw)
	if err != nil {
		return api.Dataset{}, err
	}
	for _, f := range staged {
		os.Chmod(f, 0o644)
	}
	os.Chmod(filepath.Join(dir, "staged"), 0o711)
	info, err := engine.Inspect(ctx, staged)
	if err != nil {
		return api.Dataset{}, fmt.Errorf("%w: the upload cannot be read as a table: %v", policy.ErrInvalid, err)
	}
	var vcols []engine.Column
	var keyType string
	for _, c := range info.Columns {
		vcols = append(vcols, engine.Column{Name: c.Name, Type: c.Type})
		if c.Name == key {
			keyType = c.Type
		}
		if c.Name == unit.Name && c.Name != key {
			return api.Dataset{}, fmt.Errorf("%w: your table has a column named %s, the name the public person column takes after fusion; rename it", policy.ErrInvalid, c.Name)
		}
	}
	if keyType == "" {
		return api.Dataset{}, fmt.Errorf("%w: your table has no column %q", policy.ErrInvalid, key)
	}
	secret, err := s.grantSecret(s.fusionDir(p.Tenant, g.ID))
	if err != nil {
		return api.Dataset{}, err
	}
	pseud := func(col string) string {
		return fmt.Sprintf("sha256('%s' || trim(CAST(%s AS VARCHAR)))", secret, col)
	}
	q := fmt.Sprintf(`SELECT m.%[1]s AS %[1]s, v.* EXCLUDE (%[2]s) FROM vendor_upload v
		JOIN (SELECT %[1]s, %[3]s AS h FROM %[4]s WHERE %[5]s IS NOT NULL) m ON %[6]s = m.h`,
		engine.Ident(unit.Name), engine.Ident(key), pseud(engine.Ident(matchCol)), engine.Ident(matchDS), engine.Ident(matchCol), pseud("v."+engine.Ident(key)))
	ejob := engine.Job{SQL: q, Tables: []engine.Table{{Name: "vendor_upload", Files: staged, Columns: vcols},
		{Name: matchDS, Files: mset.Files, Columns: []engine.Column{{Name: unit.Name, Type: unit.Type}, {Name: matchCol, Type: mc.Type}}}},
		Threads: s.Config.JobThreads, MemoryLimitMB: s.Config.DuckDBMemoryMB(), MaxResultBytes: s.Config.MaxResultByte}
	var out bytes.Buffer
	if _, err := s.box.Run(ctx, "fuse-"+platform.NewID("x"), ejob, &out); err != nil {
		return api.Dataset{}, err
	}
	rec, err := engine.ReadResult(&out, s.Config.MaxResultByte)
	if err != nil {
		return api.Dataset{}, err
	}
	defer rec.Release()
	// How many of the vendor's rows are persons in the public data is itself data: it is not
	// told (the audit log has it), and a table that matches fewer than k persons is refused.
	// Persons, not rows: twelve rows of two customers are two persons.
	persons := distinctPersons(rec)
	if persons < int64(max(g.K, 10)) {
		return api.Dataset{}, fmt.Errorf("%w: too few of the table's rows match persons of %s to be fused (fewer than %d); nothing was kept", policy.ErrInvalid, matchDS, max(g.K, 10))
	}
	data, err := output.Encode(rec, "parquet")
	if err != nil {
		return api.Dataset{}, err
	}
	fused := filepath.Join(dir, "fused.parquet")
	if err := platform.WriteFileAtomic(fused, data, 0o644); err != nil {
		return api.Dataset{}, err
	}
	os.RemoveAll(filepath.Join(dir, "staged")) // the vendor's identifiers are gone with it
	most, missing, err := engine.UnitStats(ctx, []string{fused}, unit.Name)
	if err != nil {
		return api.Dataset{}, err
	}
	sch := policy.Schema{Name: dsName, Title: fmt.Sprintf("%s's own data %s, fused for grant %s", p.Tenant, name, g.ID), Provider: p.Tenant,
		Unit: msch.Unit, MaxRowsPerUnit: most, UnitComplete: missing == 0, Budget: policy.Budget{Epsilon: 10, Delta: 1e-6},
		Owner: p.Tenant, Grant: g.ID, FusedWith: matchDS}
	sch.Columns = append(sch.Columns, policy.Column{Name: unit.Name, Type: unit.Type, Level: 3, Kind: policy.KindNone, PrivacyUnit: true})
	for _, f := range rec.Schema().Fields()[1:] {
		for _, c := range info.Columns {
			if c.Name == f.Name {
				sch.Columns = append(sch.Columns, policy.Column{Name: c.Name, Type: c.Type, Level: 2, Kind: policy.KindNone})
			}
		}
	}
	schemaJSON, _ := json.Marshal(sch)
	sum := sha256.Sum256(data)
	d := store.Dataset{Name: dsName, Version: hex.EncodeToString(sum[:]), Rows: rec.NumRows(), Provider: p.Tenant, Schema: schemaJSON, Files: []string{fused}, Registered: s.Rec.Now()}
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Dataset(ctx, dsName); err == nil {
			return fmt.Errorf("%w: dataset %s exists", policy.ErrConflict, dsName)
		}
		if err := tx.PutDataset(ctx, d); err != nil {
			return err
		}
		if err := ledger.SetTotal(ctx, tx, &sch); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "fusion.upload", "dataset/"+dsName, map[string]string{"grant": g.ID, "rows": fmt.Sprint(info.Rows),
			"matched_rows": fmt.Sprint(rec.NumRows()), "matched_persons": fmt.Sprint(persons), "match": match})
	})
	if err != nil {
		return api.Dataset{}, err
	}
	ok = true
	return catalog.VendorView(catalog.ToAPI(d)), nil
}

// Approve lets the authority add a fused upload to its grant.
func (s *Service) Approve(ctx context.Context, p policy.Principal, name string) (api.Dataset, error) {
	var out api.Dataset
	err := s.DB.Update(ctx, func(tx store.Tx) error {
		schemas, sets, err := catalog.Load(ctx, tx, []string{name})
		if err != nil {
			return err
		}
		sch := schemas[name]
		if sch.Owner == "" {
			return fmt.Errorf("%w: dataset %s is not a vendor's fused upload", policy.ErrInvalid, name)
		}
		if sch.Approved {
			return fmt.Errorf("%w: dataset %s is already approved for grant %s", policy.ErrConflict, name, sch.Grant)
		}
		sg, err := tx.Grant(ctx, sch.Grant)
		if err != nil {
			return err
		}
		g, err := grants.Decode(sg)
		if err != nil {
			return err
		}
		if st := g.Effective(s.Rec.Now()); st != policy.StatusActive {
			return fmt.Errorf("%w: grant %s is %s", policy.ErrConflict, g.ID, st)
		}
		var cols []string
		for _, c := range sch.Columns {
			cols = append(cols, c.Name)
		}
		g.Datasets = append(g.Datasets, policy.DatasetAccess{Name: name, Columns: cols})
		if err := grants.Put(ctx, tx, g, s.Rec.Now()); err != nil {
			return err
		}
		sch.Approved = true
		d := sets[name]
		d.Schema, _ = json.Marshal(sch)
		if err := tx.PutDataset(ctx, d); err != nil {
			return err
		}
		out = catalog.ToAPI(d)
		return s.Rec.Record(ctx, tx, p, "fusion.approve", "dataset/"+name, map[string]string{"grant": g.ID, "tenant": sch.Owner})
	})
	return out, err
}

// Sweep deletes the fused uploads whose grant has ended (expired, revoked or
// rejected), checks that their files are gone, and records it.
func (s *Service) Sweep(ctx context.Context) error {
	return s.DB.Update(ctx, func(tx store.Tx) error {
		ds, err := tx.Datasets(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			var sch policy.Schema
			if json.Unmarshal(d.Schema, &sch) != nil || sch.Owner == "" {
				continue
			}
			status := policy.StatusRevoked
			if sg, err := tx.Grant(ctx, sch.Grant); err == nil {
				if g, err := grants.Decode(sg); err == nil {
					status = g.Effective(s.Rec.Now())
				}
			}
			if status == policy.StatusActive || status == policy.StatusSuspended || status == policy.StatusPending {
				continue
			}
			// The grant's own pseudonymization secret goes with the grant's uploads.
			dir := filepath.Dir(filepath.Dir(d.Files[0]))
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			// So do the projections of the fused table that its jobs' sandboxes mounted.
			proj := filepath.Join(s.Config.ProjectionsPath(), d.Name)
			if err := os.RemoveAll(proj); err != nil {
				return err
			}
			// And its dev twins (package twin), which hold no value of the upload but are
			// named after it.
			twins, _ := filepath.Glob(filepath.Join(s.Config.DataDir, "twins", d.Name+"-j-*.parquet"))
			for _, f := range twins {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			for _, f := range append(append(slices.Clone(d.Files), proj), twins...) {
				if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("fused upload %s: %s is still there after deletion", d.Name, f)
				}
			}
			if err := tx.DeleteDataset(ctx, d.Name); err != nil {
				return err
			}
			if sg, err := tx.Grant(ctx, sch.Grant); err == nil {
				if g, err := grants.Decode(sg); err == nil {
					g.Datasets = slices.DeleteFunc(g.Datasets, func(a policy.DatasetAccess) bool { return a.Name == d.Name })
					if err := grants.Put(ctx, tx, g, s.Rec.Now()); err != nil {
						return err
					}
				}
			}
			if err := s.Rec.Record(ctx, tx, platform.System, "fusion.delete", "dataset/"+d.Name, map[string]string{"grant": sch.Grant, "grant_status": string(status),
				"tenant": sch.Owner, "verified": "files removed and checked absent"}); err != nil {
				return err
			}
			s.Log.Info("fused upload deleted", "dataset", d.Name, "grant", sch.Grant, "status", status)
		}
		return nil
	})
}

// Sweeper runs Sweep every interval until ctx ends.
func (s *Service) Sweeper(ctx context.Context, every time.Duration) {
	platform.Every(ctx, every, s.Log, "sweep fused uploads", s.Sweep)
}

// distinctPersons counts the distinct non-null values of the joined table's first column,
// the public data's person column.
func distinctPersons(rec arrow.RecordBatch) int64 {
	col := rec.Column(0)
	seen := make(map[string]struct{}, col.Len())
	for i := range col.Len() {
		if col.IsValid(i) {
			seen[col.ValueStr(i)] = struct{}{}
		}
	}
	return int64(len(seen))
}
