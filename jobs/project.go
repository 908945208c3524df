package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/store"
)

// projection returns the files a production job's sandbox mounts for table t of a dataset
// at version: the version's files projected onto the table's (the grant's) columns, made
// once per version and column set, then reused. The dataset's own files are never mounted.
// The projection's directory is held for run r (PruneProjections leaves it) until r ends
// (release).
func (s *Service) projection(ctx context.Context, r *Run, t engine.Table, version string) ([]string, error) {
	if version == "" {
		return nil, fmt.Errorf("project %s: no dataset version", t.Name)
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = c.Name
	}
	key := engine.ProjectionKey(version, cols)
	parent := filepath.Join(s.Config.ProjectionsPath(), t.Name)
	// Like datasets/: others may traverse to a file they are given the name of, not list.
	for _, d := range []string{s.Config.ProjectionsPath(), parent} {
		if err := os.Mkdir(d, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("project %s: %w", t.Name, err)
		}
	}
	// The directory's name starts with a tag of the version: pruning tells the current
	// version's projections from older ones by it.
	// The rest of it only the daemon can compute (the version and the columns are no
	// secret; others may read the files of a directory they know the name of).
	private, err := s.Config.PrivateName("projection", key)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, versionTag(version)+"-p"+private)
	s.hold(r, dir)
	// Jobs that need the same projection at once wait for the one making it; different
	// projections are made in parallel.
	mu, _ := s.projecting.LoadOrStore(dir, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	files, err := engine.ProjectColumns(ctx, t.Files, cols, dir)
	if err != nil {
		return nil, fmt.Errorf("project dataset %s onto the grant's columns: %w", t.Name, err)
	}
	return files, nil
}

// versionTag names a dataset version in its projections' directory names.
func versionTag(version string) string {
	h := sha256.Sum256([]byte("veil projection version\x00" + version))
	return hex.EncodeToString(h[:8])
}

// hold marks dir as mounted by run r until release(r).
func (s *Service) hold(r *Run, dir string) {
	s.projMu.Lock()
	defer s.projMu.Unlock()
	if s.projUse == nil {
		s.projUse = map[string]int{}
	}
	s.projUse[dir]++
	r.held = append(r.held, dir)
}

// release ends r's hold on the projections it mounted.
func (s *Service) release(r *Run) {
	s.projMu.Lock()
	defer s.projMu.Unlock()
	for _, dir := range r.held {
		if s.projUse[dir]--; s.projUse[dir] <= 0 {
			delete(s.projUse, dir)
		}
	}
	r.held = nil
}

// PruneProjections removes the projections of dataset versions that are no longer current
// (a dataset's new version was registered, or the dataset is gone), except those a running
// job mounts; the next job on a current version makes its own. It runs after every
// production job.
func (s *Service) PruneProjections(ctx context.Context) error {
	current := map[string]string{}
	err := s.DB.View(ctx, func(tx store.Tx) error {
		ds, err := tx.Datasets(ctx)
		for _, d := range ds {
			current[d.Name] = d.Version
		}
		return err
	})
	if err != nil {
		return err
	}
	removed, err := s.prune(current)
	if len(removed) > 0 {
		s.Log.Info("projections of old dataset versions removed", "count", len(removed))
	}
	return err
}

// prune removes the projection directories of versions not in current (dataset name ->
// version) that no running job holds, and returns them.
func (s *Service) prune(current map[string]string) ([]string, error) {
	root := s.Config.ProjectionsPath()
	sets, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, set := range sets {
		if !set.IsDir() {
			continue
		}
		keep := "\x00" // no directory name starts with it: the dataset is gone, nothing is kept
		if v, ok := current[set.Name()]; ok {
			// "-p": a private name; the version's projections named before there were any
			// (its columns' hash, which anyone can compute) go too.
			keep = versionTag(v) + "-p"
		}
		ents, err := os.ReadDir(filepath.Join(root, set.Name()))
		if err != nil {
			return removed, err
		}
		for _, e := range ents {
			// A name starting with "." is a projection being written (engine.ProjectColumns).
			if strings.HasPrefix(e.Name(), ".") || strings.HasPrefix(e.Name(), keep) {
				continue
			}
			dir := filepath.Join(root, set.Name(), e.Name())
			s.projMu.Lock()
			if s.projUse[dir] == 0 {
				if err := os.RemoveAll(dir); err != nil {
					s.projMu.Unlock()
					return removed, err
				}
				removed = append(removed, dir)
			}
			s.projMu.Unlock()
		}
	}
	return removed, nil
}
