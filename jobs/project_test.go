package jobs

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/platform"
)

// writeDataset writes a Parquet file with a column no grant in this test names (religion).
func writeDataset(t *testing.T, dir string) string {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f := filepath.Join(dir, "residents.parquet")
	if _, err := db.Exec(`COPY (SELECT 1000 + i AS resident_id, 'north' AS district, 20 + i % 50 AS age, 'secret-' || (i % 3) AS religion
		FROM range(100) t(i)) TO '` + f + `' (FORMAT parquet)`); err != nil {
		t.Fatal(err)
	}
	return f
}

// runBypass runs SQL in the runner over tables exactly as a job's sandbox would get them,
// with no validator in between: what a validator bug would let through.
func runBypass(t *testing.T, q string, tables []engine.Table) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := engine.Run(context.Background(), &engine.Job{SQL: q, Tables: tables, Threads: 1, MemoryLimitMB: 256, MaxResultBytes: 1 << 20}, &out)
	if err != nil {
		return "", err
	}
	rec, err := engine.ReadResult(&out, 1<<20)
	if err != nil {
		return "", err
	}
	defer rec.Release()
	var names []string
	for _, f := range rec.Schema().Fields() {
		names = append(names, f.Name)
	}
	return strings.Join(names, ","), nil
}

// TestProductionMountsOnlyGrantedColumns: the files a production job's runner gets hold the
// grant's columns and nothing else, so a query that bypasses the validator and reads the
// mounted file directly cannot reach a column the grant does not name. The projection is
// made once per dataset version and column set, and kept under the data directory.
func TestProductionMountsOnlyGrantedColumns(t *testing.T) {
	raw := writeDataset(t, t.TempDir())
	data := t.TempDir()
	s := &Service{Env: platform.Env{Config: platform.Config{DataDir: data}}}
	table := engine.Table{Name: "residents", Files: []string{raw}, Columns: []engine.Column{
		{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true}, {Name: "district", Type: "VARCHAR"}, {Name: "age", Type: "BIGINT"}}}
	run := &Run{scope: engine.Scope{Tables: []engine.Table{table}}, versions: map[string]string{"residents": "v1"}, s: s}

	// Without the projection, the bypass reads the ungranted column from the raw file.
	if cols, err := runBypass(t, "SELECT religion FROM read_parquet('"+raw+"')", []engine.Table{table}); err != nil || cols != "religion" {
		t.Fatalf("the raw file: %q %v; the test needs the bypass to work on it", cols, err)
	}
	tables, err := run.Tables(context.Background(), []string{"residents"})
	if err != nil {
		t.Fatal(err)
	}
	files := tables[0].Files
	if len(files) != 1 || slices.Contains(files, raw) || !strings.HasPrefix(files[0], s.Config.ProjectionsPath()) {
		t.Fatalf("production files %v: want a projection under %s, never %s", files, s.Config.ProjectionsPath(), raw)
	}
	for _, q := range []string{
		"SELECT religion FROM read_parquet('" + files[0] + "')",
		"SELECT religion FROM residents",
	} {
		if cols, err := runBypass(t, q, tables); err == nil {
			t.Errorf("%s: read %q, want no such column", q, cols)
		}
	}
	if cols, err := runBypass(t, "SELECT * FROM read_parquet('"+files[0]+"')", tables); err != nil || cols != "resident_id,district,age" {
		t.Errorf("all of the mounted file: %q %v, want the granted columns only", cols, err)
	}
	names, _, _, err := engine.TextColumns(context.Background(), files[0], 1)
	if err != nil || strings.Join(names, ",") != "resident_id,district,age" {
		t.Errorf("projection columns %v %v", names, err)
	}

	// Made once: the next job of the same version and grant gets the same files untouched.
	st, _ := os.Stat(files[0])
	again, err := run.Tables(context.Background(), []string{"residents"})
	if err != nil || !slices.Equal(again[0].Files, files) {
		t.Fatalf("second run: %v %v, want %v", again, err, files)
	}
	if st2, _ := os.Stat(files[0]); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("the projection was written again")
	}
	// Another version, or another column set, is another projection.
	run.versions["residents"] = "v2"
	v2, err := run.Tables(context.Background(), nil)
	if err != nil || slices.Equal(v2[0].Files, files) {
		t.Fatalf("a new version: %v %v", v2, err)
	}
	// No version known: nothing is mounted rather than the raw file.
	run.versions = nil
	if _, err := run.Tables(context.Background(), nil); err == nil {
		t.Error("a table without a version got files")
	}
}

// TestPruneProjections: once a dataset's new version is current, the projections of the old
// one go, except while a running job still mounts them; a dataset that is gone leaves none.
func TestPruneProjections(t *testing.T) {
	raw := writeDataset(t, t.TempDir())
	s := &Service{Env: platform.Env{Config: platform.Config{DataDir: t.TempDir()}}}
	table := engine.Table{Name: "residents", Files: []string{raw}, Columns: []engine.Column{
		{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true}, {Name: "district", Type: "VARCHAR"}}}
	runOn := func(version string) (*Run, string) {
		r := &Run{scope: engine.Scope{Tables: []engine.Table{table}}, versions: map[string]string{"residents": version}, s: s}
		tables, err := r.Tables(context.Background(), []string{"residents"})
		if err != nil {
			t.Fatal(err)
		}
		return r, filepath.Dir(tables[0].Files[0])
	}
	exists := func(dir string) bool { _, err := os.Stat(dir); return err == nil }

	old, oldDir := runOn("v1") // still running when v2 arrives
	done, _ := runOn("v1")
	s.release(done)
	first, newDir := runOn("v2")
	if oldDir == newDir {
		t.Fatal("two versions share a projection")
	}
	if removed, err := s.prune(map[string]string{"residents": "v2"}); err != nil || len(removed) != 0 || !exists(oldDir) {
		t.Fatalf("pruned %v (%v) while a running job mounts %s", removed, err, oldDir)
	}
	s.release(old)
	if removed, err := s.prune(map[string]string{"residents": "v2"}); err != nil || len(removed) != 1 || exists(oldDir) || !exists(newDir) {
		t.Fatalf("pruned %v (%v): want only the old version's %s gone", removed, err, oldDir)
	}
	// A projection of the current version named as before names were private (its
	// columns' hash, which anyone who knows the version computes) goes at the next prune.
	guessable := filepath.Join(filepath.Dir(newDir), versionTag("v2")+"-"+engine.ProjectionKey("v2", []string{"resident_id", "district"}))
	if err := os.Mkdir(guessable, 0o711); err != nil {
		t.Fatal(err)
	}
	if removed, err := s.prune(map[string]string{"residents": "v2"}); err != nil || len(removed) != 1 || exists(guessable) || !exists(newDir) {
		t.Fatalf("pruned %v (%v): want the guessably named %s gone, not %s", removed, err, guessable, newDir)
	}
	// The current version's projection serves the next job as it is.
	next, dir := runOn("v2")
	if dir != newDir {
		t.Fatalf("the current projection was not reused: %s, %s", dir, newDir)
	}
	if _, err := s.prune(map[string]string{}); err != nil || !exists(newDir) {
		t.Fatalf("a projection a running job holds was pruned with its dataset: %v", err)
	}
	s.release(first)
	s.release(next)
	if _, err := s.prune(map[string]string{}); err != nil || exists(newDir) {
		t.Fatalf("the projections of a dataset that is gone remain: %v", err)
	}
}
