package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/durable"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Service is the catalog as stored: datasets, their schemas and versions.
type Service struct {
	platform.Env
}

// New returns the catalog of db, whose files live under cfg's data directory.
func New(env platform.Env) *Service {
	return &Service{Env: env}
}

// Register checks a provider's files against its schema, copies them into the data
// directory (so that the version a grant names cannot change under it), and catalogs them.
func (s *Service) Register(ctx context.Context, p policy.Principal, req api.RegisterDataset) (api.Dataset, error) {
	return s.register(ctx, p, req, false)
}

// register registers req; a new version of a dataset already registered only with update
// (the same version again is a no-op either way).
func (s *Service) register(ctx context.Context, p policy.Principal, req api.RegisterDataset, update bool) (api.Dataset, error) {
	sch, err := policy.ParseSchema([]byte(req.Schema))
	if err != nil {
		return api.Dataset{}, err
	}
	if sch.Provider != p.Tenant {
		return api.Dataset{}, fmt.Errorf("%w: schema names provider %q but you register for %q", policy.ErrForbidden, sch.Provider, p.Tenant)
	}
	if len(req.Uploads) > 0 {
		up, err := s.uploadedFiles(p, req.Uploads)
		if err != nil {
			return api.Dataset{}, err
		}
		req.Files = append(append([]string(nil), req.Files...), up...)
	}
	if len(req.Files) == 0 || len(req.Files) > 1000 {
		return api.Dataset{}, fmt.Errorf("%w: give between 1 and 1000 data files (Parquet or CSV)", policy.ErrInvalid)
	}
	// An existing dataset of another provider cannot be replaced.
	err = s.DB.View(ctx, func(tx store.Tx) error {
		d, err := tx.Dataset(ctx, sch.Name)
		if err == nil && d.Provider != p.Tenant {
			return fmt.Errorf("%w: dataset %q belongs to another provider", policy.ErrConflict, sch.Name)
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return api.Dataset{}, err
	}
	if err := s.domainsFrom(ctx, p, sch); err != nil {
		return api.Dataset{}, err
	}
	staging, err := os.MkdirTemp(s.Config.DataPath(), ".stage-*")
	if err != nil {
		return api.Dataset{}, err
	}
	defer os.RemoveAll(staging)
	files, version, err := StageSchema(ctx, sch, req.Files, staging)
	if err != nil {
		return api.Dataset{}, err
	}
	info, err := engine.Inspect(ctx, files)
	if err != nil {
		return api.Dataset{}, fmt.Errorf("%w: the data files cannot be read as one table: %v", policy.ErrInvalid, err)
	}
	if err := matchSchema(sch, info); err != nil {
		return api.Dataset{}, err
	}
	// The gate relies on the maximum of rows per unit, so it is measured, not trusted: a
	// declaration the files break is refused, and the measured value is what is kept.
	most, missing, err := engine.UnitStats(ctx, files, sch.UnitColumn().Name)
	if err != nil {
		return api.Dataset{}, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	if sch.MaxRowsPerUnit > 0 && most > sch.MaxRowsPerUnit {
		return api.Dataset{}, fmt.Errorf("%w: the schema declares at most %d rows per %s, but the files hold up to %d for one %s; fix the declaration or the data",
			policy.ErrInvalid, sch.MaxRowsPerUnit, sch.Unit, most, sch.Unit)
	}
	sch.MaxRowsPerUnit, sch.UnitComplete = most, missing == 0
	// Per column too, where the table is small enough to measure (a tighter bound of the
	// rows of one unit in a group of that column, which the threshold fast plan uses).
	by := map[string]string{}
	for _, c := range sch.Columns {
		if !c.PrivacyUnit && !c.Identifier() {
			by[c.Name] = c.Name
		}
	}
	if sch.MaxRowsPerUnitBy, err = engine.UnitStatsBy(ctx, files, sch.UnitColumn().Name, by); err != nil {
		return api.Dataset{}, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	// And per value of a text column of few values (the units and rows of each, which decide
	// most groups of a query grouped by it without counting distinct units).
	vu, err := engine.ValueUnitStats(ctx, files, sch.UnitColumn().Name, by)
	if err != nil {
		return api.Dataset{}, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	sch.ValueUnits = nil
	for col, vals := range vu {
		if sch.ValueUnits == nil {
			sch.ValueUnits = map[string]map[string]policy.ValueUnits{}
		}
		m := make(map[string]policy.ValueUnits, len(vals))
		for v, u := range vals {
			m[v] = policy.ValueUnits{Rows: u.Rows, Units: u.Units, Max: u.Max}
		}
		sch.ValueUnits[col] = m
	}
	// Its files are readable by others (the sandboxes' roots) through directories others may
	// traverse: the version's directory has a name only the daemon can compute, since the
	// version itself is no secret (grants name it).
	private, err := s.Config.PrivateName("dataset version", sch.Name+"\x00"+version)
	if err != nil {
		return api.Dataset{}, err
	}
	final := filepath.Join(s.Config.DataPath(), sch.Name, private)
	if err := os.MkdirAll(filepath.Dir(final), 0o711); err != nil {
		return api.Dataset{}, err
	}
	created := false
	if _, err := os.Stat(final); err != nil {
		if err := os.Chmod(staging, 0o711); err != nil {
			return api.Dataset{}, err
		}
		// The copies' directory entries, then the rename, are made durable before the
		// catalog names the files: a crash cannot leave a registered dataset without them.
		if err := durable.SyncDir(staging); err != nil {
			return api.Dataset{}, err
		}
		if err := os.Rename(staging, final); err != nil {
			return api.Dataset{}, err
		}
		if err := durable.SyncDir(filepath.Dir(final)); err != nil {
			return api.Dataset{}, err
		}
		if err := durable.SyncDir(s.Config.DataPath()); err != nil {
			return api.Dataset{}, err
		}
		created = true
		os.MkdirAll(staging, 0o700) // keep the deferred RemoveAll harmless
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(final, filepath.Base(f)))
	}
	schemaJSON, _ := json.Marshal(sch)
	d := store.Dataset{Name: sch.Name, Version: version, Rows: info.Rows, Provider: sch.Provider, Schema: schemaJSON, Files: paths, Registered: s.Rec.Now()}
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		old, err := tx.Dataset(ctx, d.Name)
		if err == nil && old.Version != d.Version && !update {
			return fmt.Errorf("%w: dataset %q is registered (version %s); register a new version explicitly: veil dataset update %s", policy.ErrConflict, d.Name, old.Version[:12], d.Name)
		}
		if err == nil && old.Version == d.Version {
			d.Registered = old.Registered
		}
		if err := tx.PutDataset(ctx, d); err != nil {
			return err
		}
		if err := ledger.SetTotal(ctx, tx, sch); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "dataset.register", "dataset/"+d.Name, map[string]string{"version": version, "files": fmt.Sprint(len(paths)), "rows": fmt.Sprint(info.Rows)})
	})
	if err != nil {
		if created {
			os.RemoveAll(final) // a refused version leaves nothing
		}
		return api.Dataset{}, err
	}
	s.dropUploads(req.Uploads)
	if err := s.recordVersion(d); err != nil {
		return api.Dataset{}, err
	}
	return ToAPI(d), nil
}

// Stage copies (Parquet) or converts (CSV) the files into dir and returns their new paths
// and the dataset version: the sha256 over the names and contents of the files.
func Stage(ctx context.Context, src []string, dir string) ([]string, string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range src {
		if !filepath.IsAbs(f) {
			return nil, "", fmt.Errorf("%w: file paths must be absolute paths on the daemon's host", policy.ErrInvalid)
		}
		st, err := os.Stat(f)
		if err != nil || !st.Mode().IsRegular() {
			return nil, "", fmt.Errorf("%w: %s is not a readable regular file on the daemon's host", policy.ErrInvalid, filepath.Base(f))
		}
		base := filepath.Base(f)
		ext := strings.ToLower(filepath.Ext(base))
		name := strings.TrimSuffix(base, filepath.Ext(base)) + ".parquet"
		if seen[name] {
			return nil, "", fmt.Errorf("%w: two files are named %s", policy.ErrInvalid, name)
		}
		seen[name] = true
		dst := filepath.Join(dir, name)
		switch ext {
		case ".parquet":
			if err := copyFile(f, dst); err != nil {
				return nil, "", err
			}
		case ".csv":
			if err := engine.ConvertCSV(ctx, f, dst); err != nil {
				return nil, "", fmt.Errorf("%w: %s cannot be read as CSV: %v", policy.ErrInvalid, base, noValues(err))
			}
		default:
			return nil, "", fmt.Errorf("%w: %s: only .parquet and .csv files can be registered", policy.ErrInvalid, base)
		}
		out = append(out, dst)
	}
	return versionOf(out)
}

func sortStrings(s []string) { sort.Strings(s) }

// versionOf sorts staged files and returns them with their version: the sha256 over their
// names and contents.
func versionOf(out []string) ([]string, string, error) {
	sort.Strings(out)
	h := sha256.New()
	for _, f := range out {
		fh, err := fileHash(f)
		if err != nil {
			return nil, "", err
		}
		fmt.Fprintf(h, "%s %s\n", filepath.Base(f), fh)
	}
	return out, hex.EncodeToString(h.Sum(nil)), nil
}

// copyFile copies a registered file. What is copied is decided on the opened file, not on the
// path checked before (which could have been swapped for a device or a FIFO since), and
// bounded by the size it has when opened: a file that grows while it is copied is refused.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a readable regular file on the daemon's host", policy.ErrInvalid, filepath.Base(src))
	}
	// World-readable: the sandbox's unprivileged uid reads it through a read-only bind mount.
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(in, st.Size()+1))
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%w: %s changed while it was copied; register it once it is complete", policy.ErrInvalid, filepath.Base(src))
	}
	if err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// matchSchema checks that the files hold exactly the schema's columns with its types: every
// column must be classified before anyone can ask for it.
func matchSchema(sch *policy.Schema, info *engine.FileInfo) error {
	got := map[string]string{}
	for _, c := range info.Columns {
		got[c.Name] = c.Type
	}
	for _, c := range sch.Columns {
		t, ok := got[c.Name]
		if !ok {
			return fmt.Errorf("%w: schema column %q is not in the data files", policy.ErrInvalid, c.Name)
		}
		if !strings.EqualFold(t, c.Type) {
			return fmt.Errorf("%w: column %q is %s in the data files but %s in the schema", policy.ErrInvalid, c.Name, t, c.Type)
		}
		delete(got, c.Name)
	}
	for name := range got {
		return fmt.Errorf("%w: data column %q is not classified in the schema; every column needs a level and kind", policy.ErrInvalid, name)
	}
	return nil
}

// ToAPI is a dataset as the API shows it. What registration measures of the persons for the
// gate and the plans (policy.Schema.MaxRowsPerUnit: the most rows of one person, kept in
// place of any declaration; UnitComplete; MaxRowsPerUnitBy: the most within each value of a
// column; ValueUnits: the units and rows of each value) are exact statistics of single
// persons and are left out: every vendor may list the catalog.
func ToAPI(d store.Dataset) api.Dataset {
	return api.Dataset{Name: d.Name, Version: d.Version, Provider: d.Provider, Rows: d.Rows, Files: len(d.Files), Registered: d.Registered, Schema: publicSchema(d.Schema)}
}

// publicSchema is a stored schema's JSON without what only the engine may read.
func publicSchema(b []byte) []byte {
	if !bytes.Contains(b, []byte(`"max_rows_per_unit`)) && !bytes.Contains(b, []byte(`"unit_complete"`)) && !bytes.Contains(b, []byte(`"value_units"`)) {
		return b
	}
	var sch policy.Schema
	if err := json.Unmarshal(b, &sch); err != nil {
		return nil // not shown rather than shown whole
	}
	sch.MaxRowsPerUnit, sch.UnitComplete, sch.MaxRowsPerUnitBy, sch.ValueUnits = 0, false, nil, nil
	out, err := json.Marshal(sch) // as Register stored it
	if err != nil {
		return nil
	}
	return out
}

// List lists the datasets p may see.
func (s *Service) List(ctx context.Context, p policy.Principal) ([]api.Dataset, error) {
	out := []api.Dataset{}
	err := s.DB.View(ctx, func(tx store.Tx) error {
		ds, err := tx.Datasets(ctx)
		for _, d := range ds {
			if !CanSee(p, d) {
				continue
			}
			if p.Role == policy.Vendor && IsFused(d) {
				out = append(out, VendorView(ToAPI(d)))
				continue
			}
			out = append(out, ToAPI(d))
		}
		return err
	})
	return out, err
}

// Show shows a dataset p may see.
func (s *Service) Show(ctx context.Context, p policy.Principal, name string) (api.Dataset, error) {
	var d store.Dataset
	err := s.DB.View(ctx, func(tx store.Tx) error {
		var err error
		d, err = tx.Dataset(ctx, name)
		if errors.Is(err, store.ErrNotFound) || err == nil && !CanSee(p, d) {
			return notInCatalog(ctx, tx, name, func(d store.Dataset) bool { return CanSee(p, d) })
		}
		return err
	})
	if err != nil {
		return api.Dataset{}, err
	}
	if p.Role == policy.Vendor && IsFused(d) {
		return VendorView(ToAPI(d)), nil
	}
	return ToAPI(d), nil
}

// Load returns the schemas and versions of the named datasets.
func Load(ctx context.Context, tx store.Tx, names []string) (map[string]*policy.Schema, map[string]store.Dataset, error) {
	schemas := map[string]*policy.Schema{}
	sets := map[string]store.Dataset{}
	for _, n := range names {
		d, err := tx.Dataset(ctx, n)
		if err != nil {
			return nil, nil, notInCatalog(ctx, tx, n, func(d store.Dataset) bool { return !IsFused(d) })
		}
		var sch policy.Schema
		if err := json.Unmarshal(d.Schema, &sch); err != nil {
			return nil, nil, err
		}
		schemas[n], sets[n] = &sch, d
	}
	return schemas, sets, nil
}

// VendorView hides what a fused upload's size says about the public data.
func VendorView(d api.Dataset) api.Dataset {
	d.Rows, d.Schema = 0, nil
	return d
}

// notInCatalog is the answer about a name that is no dataset the caller may see, with the
// closest name among those it may see (see) when it looks like a typo.
func notInCatalog(ctx context.Context, tx store.Tx, name string, see func(store.Dataset) bool) error {
	var names []string
	if ds, err := tx.Datasets(ctx); err == nil {
		for _, d := range ds {
			if see(d) {
				names = append(names, d.Name)
			}
		}
	}
	return fmt.Errorf("%w: dataset %q is not in the catalog%s", policy.ErrNotFound, name, engine.Suggest(name, names))
}

// CanSee hides a vendor's fused upload from everyone but its tenant and the
// platform's own roles.
func CanSee(p policy.Principal, d store.Dataset) bool {
	var sch policy.Schema
	if json.Unmarshal(d.Schema, &sch) != nil || sch.Owner == "" {
		return true
	}
	switch p.Role {
	case policy.Operator, policy.Authority, policy.Reviewer, policy.Auditor:
		return true
	}
	return p.Tenant == sch.Owner && p.Role == policy.Vendor
}

// IsFused reports whether d is a vendor's fused upload.
func IsFused(d store.Dataset) bool {
	var sch policy.Schema
	return json.Unmarshal(d.Schema, &sch) == nil && sch.Owner != ""
}

// Totals gives every dataset registered before the ledger existed its declared total (a
// no-op for every other dataset: a total is set once).
func (s *Service) Totals(ctx context.Context) error {
	return s.DB.Update(ctx, func(tx store.Tx) error {
		sets, err := tx.Datasets(ctx)
		if err != nil {
			return err
		}
		for _, d := range sets {
			schemas, _, err := Load(ctx, tx, []string{d.Name})
			if err != nil {
				return err
			}
			if err := ledger.SetTotal(ctx, tx, schemas[d.Name]); err != nil {
				return err
			}
		}
		return nil
	})
}
