package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// TestServe: the benchmarks' one way of starting a daemon (serve, behind newDaemon and the
// load benchmark's daemon) answers on its socket with the operator's token, grants through
// approvedGrant, and leaves nothing of its state behind once stopped.
func TestServe(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{o: Options{Dir: t.TempDir(), Isolation: "process", Binary: bin, Log: io.Discard}}
	ld, err := startLoadDaemon(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if me, err := ld.op.Whoami(context.Background()); err != nil || me.Role != "operator" {
		t.Errorf("whoami: %+v %v", me, err)
	}
	if ld.workers < 1 {
		t.Errorf("workers %d", ld.workers)
	}
	// approvedGrant: an application every stage approves is active.
	ctx := context.Background()
	csv := filepath.Join(t.TempDir(), "people.csv")
	if err := os.WriteFile(csv, []byte("id,grp\n1,a\n2,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var prov, auth, vendor *client.Client
	for _, p := range []struct {
		c                  **client.Client
		name, role, tenant string
	}{{&prov, "p", "provider", benchProvider}, {&auth, "a", "authority", ""}, {&vendor, "v", "vendor", "bench"}} {
		if *p.c, err = ld.principal(ctx, p.name, p.role, p.tenant); err != nil {
			t.Fatal(err)
		}
	}
	schema := "name: people\nprovider: " + benchProvider + "\nunit: person\nsynthetic: true\nbudget: {epsilon: 1, delta: 1.0e-6}\ncolumns:\n" +
		"  - {name: id, type: BIGINT, level: 3, kind: none, privacy_unit: true}\n  - {name: grp, type: VARCHAR, level: 1, kind: none}\n"
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: schema, Files: []string{csv}}); err != nil {
		t.Fatal(err)
	}
	gid, err := approvedGrant(ctx, vendor, api.ApplyGrant{Scenario: "s", Purpose: "p", Modes: []string{"threshold"}, K: 5, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "people", Columns: []string{"grp"}}}}, ld.op, auth, prov)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := vendor.GetGrant(ctx, gid); err != nil || g["status"] != "active" {
		t.Errorf("grant %s: %v %v, want active", gid, g["status"], err)
	}
	if err := ld.stop(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(e.o.Dir); len(left) != 0 {
		t.Errorf("state left behind: %v", left)
	}
}
