package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// maxVersionsFile bounds a dataset's record of versions.
const maxVersionsFile = 4 << 20

func (s *Service) versionsPath(name string) string {
	return filepath.Join(s.Config.DataPath(), name, "versions.json")
}

// recordVersion adds a registered version to the dataset's record (kept beside the versions'
// directories, which are never removed while grants may name them).
func (s *Service) recordVersion(d store.Dataset) error {
	vs, _ := s.readVersions(d.Name)
	for _, v := range vs {
		if v.Version == d.Version {
			return nil
		}
	}
	vs = append(vs, api.DatasetVersion{Version: d.Version, Rows: d.Rows, Registered: d.Registered})
	b, _ := json.Marshal(vs)
	tmp := s.versionsPath(d.Name) + ".tmp"
	// Readable like the files beside it (doctor checks that jobs can read the whole tree);
	// it holds only versions, row counts and times.
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.versionsPath(d.Name))
}

func (s *Service) readVersions(name string) ([]api.DatasetVersion, error) {
	f, err := os.Open(s.versionsPath(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var vs []api.DatasetVersion
	dec := json.NewDecoder(&limited{f, maxVersionsFile})
	return vs, dec.Decode(&vs)
}

type limited struct {
	f *os.File
	n int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("the record of versions is larger than %d bytes", maxVersionsFile)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}

// Versions lists a dataset's versions (its provider and the platform's roles) and the active
// grants that read it.
func (s *Service) Versions(ctx context.Context, p policy.Principal, name string) (api.DatasetVersions, error) {
	d, err := s.Show(ctx, p, name)
	if err != nil {
		return api.DatasetVersions{}, err
	}
	if p.Role == policy.Vendor || (p.Role == policy.Provider && d.Provider != p.Tenant) {
		return api.DatasetVersions{}, fmt.Errorf("%w: the versions of %s are its provider's to see", policy.ErrForbidden, name)
	}
	vs, _ := s.readVersions(name)
	if len(vs) == 0 { // registered before versions were recorded
		vs = []api.DatasetVersion{{Version: d.Version, Rows: d.Rows, Registered: d.Registered}}
	}
	for i := range vs {
		vs[i].Current = vs[i].Version == d.Version
	}
	slices.Reverse(vs)
	out := api.DatasetVersions{Dataset: d, Versions: vs, Grants: []string{}}
	err = s.DB.View(ctx, func(tx store.Tx) error {
		gs, err := tx.Grants(ctx, "")
		if err != nil {
			return err
		}
		for _, sg := range gs {
			if sg.Status != string(policy.StatusActive) {
				continue
			}
			var g policy.Grant
			if json.Unmarshal(sg.Body, &g) != nil {
				continue
			}
			for _, a := range g.Datasets {
				if a.Name == name {
					out.Grants = append(out.Grants, g.ID)
				}
			}
		}
		return nil
	})
	return out, err
}

// Update registers a new version of an existing dataset: explicit, so that a provider never
// replaces the data active grants read by registering under a name in use.
func (s *Service) Update(ctx context.Context, p policy.Principal, name string, req api.RegisterDataset) (api.DatasetVersions, error) {
	sch, err := policy.ParseSchema([]byte(req.Schema))
	if err != nil {
		return api.DatasetVersions{}, err
	}
	if sch.Name != name {
		return api.DatasetVersions{}, fmt.Errorf("%w: the schema names dataset %q, not %q", policy.ErrInvalid, sch.Name, name)
	}
	if _, err := s.Show(ctx, p, name); err != nil {
		if !errors.Is(err, policy.ErrNotFound) {
			return api.DatasetVersions{}, err
		}
		return api.DatasetVersions{}, fmt.Errorf("%w; register it first (veil dataset register)", err)
	}
	if _, err := s.register(ctx, p, req, true); err != nil {
		return api.DatasetVersions{}, err
	}
	return s.Versions(ctx, p, name)
}
