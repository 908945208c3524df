package daemon_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/launch"
)

const wideSchema = `
name: wide
title: Many persons in many groups
provider: civil-affairs
unit: person
max_rows_per_unit: 4
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: person_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: grp, type: VARCHAR, level: 1, kind: none}
  - {name: value, type: DOUBLE, level: 2, kind: none, bounds: [0, 1000]}
`

// writeWide writes rows rows of rows/4 persons, each person's rows in different groups of
// 100: the dp plan's aggregate per (person, group) has as many entries as rows.
func writeWide(t *testing.T, dir string, rows int) string {
	t.Helper()
	file := filepath.Join(dir, "wide.parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := fmt.Sprintf(`COPY (SELECT (i %% %d)::BIGINT AS person_id, 'g' || ((i * 7919) %% 100)::VARCHAR AS grp, ((i * 31) %% 1000)::DOUBLE AS value
		FROM range(%d) t(i)) TO '%s' (FORMAT parquet)`, rows/4, rows, file)
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestDPJobSpills: a dp group-by whose aggregate does not fit in the job's memory fails
// without a spill area and finishes through the daemon with one (the default), by DuckDB
// writing its temporary files there, within the job's memory limit; the job's spill area
// is not left after the job (the pool's sandboxes prepared since have empty ones). (That a spill area is empty for the next job and its own: sandbox's
// TestPoolWipes and TestPoolSpill.)
func TestDPJobSpills(t *testing.T) {
	needRoot(t)
	if isolation(t) != "container" {
		t.Skip("spill areas need container isolation")
	}
	if testing.Short() {
		t.Skip("skipping: writes and aggregates 10M rows")
	}
	file := writeWide(t, t.TempDir(), 10_000_000)
	for _, spillMB := range []int{0, daemon.Defaults("").JobSpillMB} {
		// 384 MB for the job, 128 MB of it DuckDB's (DuckDBMemoryMB): the aggregate of 10M
		// (person, group) entries needs several times that.
		e := start(t, func(c *daemon.Config) {
			c.JobMemoryMB, c.JobThreads, c.JobSpillMB, c.LogRunnerOutput = 384, 1, spillMB, true
		})
		ctx := context.Background()
		acme := e.principal("acme analyst", "vendor", "acme")
		prov := e.principal("civil affairs", "provider", "civil-affairs")
		auth := e.principal("data bureau", "authority", "")
		if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: wideSchema, Files: []string{file}}); err != nil {
			t.Fatal(err)
		}
		gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "wide", Purpose: "plan services", Modes: []string{"dp"}, Epsilon: 2, Delta: 1e-7,
			ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "wide", Columns: []string{"grp", "value"}}}})
		if err != nil {
			t.Fatal(err)
		}
		gid := gr["id"].(string)
		for _, c := range []*client.Client{e.op, auth, prov} {
			if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
				t.Fatal(err)
			}
		}
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM wide GROUP BY grp",
			DP: &api.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 4}})
		if err != nil {
			t.Fatal(err)
		}
		if spillMB == 0 {
			if j = waitEnd(t, acme, j.ID); j.Status != "failed" {
				t.Fatalf("without a spill area the job ended %s (%s), want failed", j.Status, j.Message)
			}
			// DuckDB's own out-of-memory error is a resource limit, as the cgroup's is.
			if j.Message != launch.ClassMessage(launch.ClassLimit) {
				t.Errorf("without a spill area the vendor reads %q, want the resource limit class", j.Message)
			}
			e.stop()
			continue
		}
		if j = waitEnd(t, acme, j.ID); j.Status != "review" {
			t.Fatalf("with a spill area the job ended %s (%s), want review; the daemon logged:\n%s", j.Status, j.Message, e.log.String())
		}
		if j, err = e.op.Job(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		if m := j.Metering; m == nil || m.PeakMemoryMB > 384 || m.PeakResidentMB <= 0 || m.PeakResidentMB > m.PeakMemoryMB {
			t.Errorf("metering %+v, want a peak within the job's 384 MB, of which resident more than 0", j.Metering)
		}
		t.Logf("metering %+v", j.Metering)
		// The job's sandbox, spill area and all, is gone before its output is in review: what
		// is left are the areas of the sandboxes the pool has prepared since, each of a live
		// sandbox (one being prepared may have its area before its container: wait a little
		// for it; an area left by the job never gets one) and empty but for lost+found.
		spill, containers := filepath.Join(e.cfg.DataDir, "sandbox", "spill"), filepath.Join(e.cfg.DataDir, "sandbox", "containers")
		var orphans []string
		for try := 0; try < 100; try++ {
			orphans = nil
			ents, _ := os.ReadDir(spill)
			for _, ent := range ents {
				if !ent.IsDir() {
					continue
				}
				if _, err := os.Stat(filepath.Join(containers, ent.Name())); err != nil {
					orphans = append(orphans, ent.Name())
					continue
				}
				inside, _ := os.ReadDir(filepath.Join(spill, ent.Name()))
				for _, f := range inside {
					if f.Name() != "lost+found" {
						t.Errorf("spill area %s of a prepared sandbox holds %s", ent.Name(), f.Name())
					}
				}
			}
			if len(orphans) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(orphans) > 0 {
			t.Errorf("spill areas of no sandbox left after the job: %v", orphans)
		}
		e.stop()
	}
}

// waitEnd waits for job id to end, whichever way.
func waitEnd(t *testing.T, c *client.Client, id string) api.Job {
	t.Helper()
	j, err := c.Wait(context.Background(), id, nil)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
