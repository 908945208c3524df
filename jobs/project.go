package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/veil-dp/veil/engine"
)

// projection returns the files a production job's sandbox mounts for table t of a dataset
// at version: the version's files projected onto the table's (the grant's) columns, made
// once per version and column set, then reused. The dataset's own files are never mounted.
func (s *Service) projection(ctx context.Context, t engine.Table, version string) ([]string, error) {
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
	dir := filepath.Join(parent, key)
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
