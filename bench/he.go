package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/he"
	"github.com/veil-dp/veil/testdata"
)

// heRows is the size of the encrypted scoring benchmark (the 1M rows).
const heRows = 1_000_000

type heClients struct{ op, auth, prov, vendor, rev *client.Client }

// heModel is the benchmark's model over f01..f16 (bounds [0, 100]): deterministic weights
// whose score stays within ±8 over the bounds, as a logistic model's input range requires.
func heModel(kind string) *he.Model {
	m := &he.Model{Kind: kind, Bias: 0.1}
	if kind == he.KindLogistic {
		m.InputRange = 8
	}
	for j := range testdata.HEFeatures {
		m.Features = append(m.Features, he.Feature{Name: fmt.Sprintf("f%02d", j+1), Lower: 0, Upper: 100, Mean: 50, Scale: 29})
		m.Weights = append(m.Weights, 0.25*math.Sin(float64(j+1)))
	}
	return m
}

// plainSQL is the same model in DuckDB SQL: the plaintext baseline.
func plainSQL(m *he.Model, file string) string {
	score := fmt.Sprintf("%g", m.Bias)
	for j, f := range m.Features {
		score += fmt.Sprintf(" + %g * (least(greatest(%s, %g), %g) - %g) / %g", m.Weights[j], f.Name, f.Lower, f.Upper, f.Mean, f.Scale)
	}
	if m.Kind == he.KindLogistic {
		score = "1 / (1 + exp(-(" + score + ")))"
	}
	return fmt.Sprintf("SELECT grp, sum(%s) FROM read_parquet('%s') GROUP BY grp", score, file)
}

// benchHE measures he-score jobs end to end (upload excluded, submit to output in the review
// queue) against the plaintext model in DuckDB on the same file, and checks the decrypted
// sums against the plaintext ones.
func benchHE(ctx context.Context, o Options, file string, c heClients) ([]Figure, error) {
	gr, err := c.vendor.ApplyGrant(ctx, api.ApplyGrant{Scenario: "bench he", Purpose: "benchmark", Modes: []string{"he"}, K: 10, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "bench_features", Columns: append([]string{"grp"}, featureNames()...)}}})
	if err != nil {
		return nil, err
	}
	gid := gr["id"].(string)
	for _, cl := range []*client.Client{c.op, c.auth, c.prov} {
		if _, err := cl.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			return nil, err
		}
	}
	sk, pub, err := he.GenerateKeys(128)
	if err != nil {
		return nil, err
	}
	pubBytes, err := pub.MarshalBinary()
	if err != nil {
		return nil, err
	}
	bundle, err := c.vendor.UploadBlob(ctx, pubBytes)
	if err != nil {
		return nil, err
	}
	now, mach := time.Now().UTC().Format("2006-01-02"), machine()
	var figs []Figure
	for _, kind := range []string{he.KindLogistic, he.KindLinear} {
		m := heModel(kind)
		em, err := he.EncryptModel(pub, m)
		if err != nil {
			return nil, err
		}
		emBytes, err := em.MarshalBinary()
		if err != nil {
			return nil, err
		}
		// The upload returns once the platform has prepared a logistic model (its lane
		// averages, computed once per model and bundle): the job below starts after it.
		upStart := time.Now()
		model, err := c.vendor.UploadBlob(ctx, emBytes)
		if err != nil {
			return nil, err
		}
		tUpload := time.Since(upStart)
		start := time.Now()
		j, err := c.vendor.SubmitJob(ctx, api.SubmitJob{Grant: gid, HE: &api.HEScore{Dataset: "bench_features", GroupBy: []string{"grp"}, Model: model.Digest, Bundle: bundle.Digest}})
		if err != nil {
			return nil, err
		}
		if j, err = c.vendor.Wait(ctx, j.ID, nil); err != nil {
			return nil, err
		}
		if j.Status != "review" {
			return nil, fmt.Errorf("bench he job ended %s: %s", j.Status, j.Message)
		}
		tHE := time.Since(start)
		if j, err = c.op.Job(ctx, j.ID); err != nil { // the metering is the operator's only
			return nil, err
		}
		rv, err := c.rev.Review(ctx, j.ID)
		if err != nil {
			return nil, err
		}
		if _, err := c.rev.Decide(ctx, j.ID, "approve", rv.Digest, ""); err != nil {
			return nil, err
		}
		ex, err := c.vendor.Export(ctx, j.ID, "arrow")
		if err != nil {
			return nil, err
		}
		got, err := decryptExport(sk, ex.Data)
		if err != nil {
			return nil, err
		}
		tPlain, err := timeQuery(ctx, plainSQL(m, file), o.Reps)
		if err != nil {
			return nil, err
		}
		want, err := plainSums(ctx, plainSQL(m, file))
		if err != nil {
			return nil, err
		}
		worst := 0.0
		for g, w := range want {
			worst = math.Max(worst, math.Abs(got[g]-w)/math.Abs(w))
		}
		prep := heAudit(ctx, c.op, model.Digest)
		note := fmt.Sprintf("%s model, %d rows x %d features, %d groups, isolation=%s: submit to encrypted per-group sums in the review queue (one run) vs the same model in DuckDB SQL on the same Parquet file (median)",
			kind, heRows, testdata.HEFeatures, len(want), o.Isolation)
		if kind == he.KindLogistic {
			note += fmt.Sprintf("; lane averages prepared at upload: %s by the job", prep.used)
		}
		prefix := "he_score"
		if kind == he.KindLinear {
			prefix = "he_linear_score"
		}
		figs = append(figs,
			Figure{Name: prefix + "_1m_seconds", Value: tHE.Seconds(), Unit: "s", BaseName: "plaintext scoring in DuckDB", Baseline: tPlain.Seconds(), Command: o.Command, Machine: mach, Date: now, Note: note},
			Figure{Name: prefix + "_vs_plain_ratio", Value: float64(tHE) / float64(tPlain), Unit: "ratio", BaseName: "plaintext scoring in DuckDB", Baseline: ms(tPlain), Ratio: float64(tHE) / float64(tPlain), Command: o.Command, Machine: mach, Date: now,
				Note: fmt.Sprintf("Veil %.1f s vs DuckDB %.1f ms. %s", tHE.Seconds(), ms(tPlain), note)},
			Figure{Name: prefix + "_1m_cpu_seconds", Value: float64(j.Metering.CPUMS) / 1000, Unit: "s", Command: o.Command, Machine: mach, Date: now,
				Note: "CPU time of the sandboxed job (cgroup, all cores): steadier than the wall time on a shared machine; on an otherwise idle 2-core machine the wall time is about half of it"},
			Figure{Name: prefix + "_peak_mem_mb", Value: float64(j.Metering.PeakMemoryMB), Unit: "MB", Command: o.Command, Machine: mach, Date: now,
				Note: "peak memory of the sandboxed runner (cgroup), DuckDB and the CKKS evaluation together"},
			Figure{Name: prefix + "_max_rel_error", Value: worst, Unit: "relative error", Command: o.Command, Machine: mach, Date: now,
				Note: "largest |decrypted - plaintext| / |plaintext| over the groups, after noise flooding (exact sigmoid in the plaintext)"},
			Figure{Name: prefix + "_model_upload_seconds", Value: tUpload.Seconds(), Unit: "s", Command: o.Command, Machine: mach, Date: now,
				Note: "the encrypted model's upload (one request): its sandboxed parse check and, for a logistic model, the preparation of its lane averages"},
			Figure{Name: prefix + "_model_upload_mb", Value: float64(len(emBytes)) / (1 << 20), Unit: "MiB", Command: o.Command, Machine: mach, Date: now, Note: "the encrypted model the vendor uploads"},
			Figure{Name: prefix + "_output_kb", Value: float64(len(ex.Data)) / 1024, Unit: "KiB", Command: o.Command, Machine: mach, Date: now, Note: "the arrow export: group keys, row counts, one ciphertext"},
		)
		if kind == he.KindLogistic && prep.ms >= 0 {
			figs = append(figs, Figure{Name: "he_model_prepare_seconds", Value: prep.ms / 1000, Unit: "s", Command: o.Command, Machine: mach, Date: now,
				Note: fmt.Sprintf("once per uploaded logistic model and bundle, at upload: the sandboxed he-prepare job that averages the %d model ciphertexts over the bundle's lanes (audit blob.prepare); the scoring job then takes them (%s)", testdata.HEFeatures+1, prep.used)},
				Figure{Name: "he_model_prepare_cpu_seconds", Value: prep.cpuMS / 1000, Unit: "s", Command: o.Command, Machine: mach, Date: now,
					Note: "CPU time of the he-prepare sandbox (cgroup, all cores): the work moved out of each scoring job"})
		}
	}
	figs = append(figs, Figure{Name: "he_public_bundle_mb", Value: float64(len(pubBytes)) / (1 << 20), Unit: "MiB", Command: o.Command, Machine: mach, Date: now,
		Note: "public key, relinearization and rotation keys for 128 groups (uploaded once per key set)"})
	return figs, nil
}

// RunHE measures only the encrypted scoring figures (benchHE), on its own daemon: for
// working on the he package without the whole run. Run includes the same figures.
func RunHE(ctx context.Context, o Options) ([]Figure, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	features := filepath.Join(data, "bench_features.parquet")
	if _, err := os.Stat(features); err != nil {
		if err := testdata.GenerateHEBench(ctx, data, heRows, o.Groups); err != nil {
			return nil, err
		}
	}
	state, err := os.MkdirTemp(dir, "state-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state)
	if err := os.Chmod(state, 0o711); err != nil { // the sandbox's unprivileged root traverses it
		return nil, err
	}
	cfg := daemon.Defaults(state)
	cfg.Isolation, cfg.Binary, cfg.Workers, cfg.JobThreads, cfg.JobMemoryMB = o.Isolation, o.Binary, 1, 2, 4096
	cfg.LogRunnerOutput = true // generated data
	// The bench measures the platform's own cost, not the release quantum's rounding.
	cfg.ExactReleaseTimingForTests = true
	tok, err := daemon.Init(ctx, cfg)
	if err != nil {
		return nil, err
	}
	srv, err := daemon.New(ctx, cfg, slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	defer func() { stop(); <-done; srv.Close() }()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(cfg.Socket); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	sch, err := os.ReadFile(filepath.Join(data, "bench_features.yaml"))
	if err != nil {
		return nil, err
	}
	op, _ := client.New("unix://"+cfg.Socket, tok)
	c := heClients{op: op}
	for _, p := range []struct {
		c          **client.Client
		role, tnnt string
	}{{&c.prov, "provider", providerLine(sch)}, {&c.auth, "authority", ""}, {&c.vendor, "vendor", "bench"}, {&c.rev, "reviewer", ""}} {
		pr, err := op.CreatePrincipal(ctx, api.CreatePrincipal{Name: p.role, Role: p.role, Tenant: p.tnnt})
		if err != nil {
			return nil, err
		}
		*p.c, _ = client.New("unix://"+cfg.Socket, pr.Token)
	}
	if _, err := c.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: string(sch), Files: []string{features}}); err != nil {
		return nil, err
	}
	return benchHE(ctx, o, features, c)
}

func featureNames() []string {
	var out []string
	for j := range testdata.HEFeatures {
		out = append(out, fmt.Sprintf("f%02d", j+1))
	}
	return out
}

// decryptExport is what `veil he decrypt` does: per-group sums by key.
func decryptExport(sk *he.SecretKey, data []byte) (map[string]float64, error) {
	rd, err := ipc.NewFileReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	rec, err := rd.Record(0)
	if err != nil {
		return nil, err
	}
	md := rd.Schema().Metadata()
	i := md.FindKey("veil.he.sums")
	if i < 0 {
		return nil, fmt.Errorf("export without encrypted sums")
	}
	blob, err := base64.StdEncoding.DecodeString(md.Values()[i])
	if err != nil {
		return nil, err
	}
	sums, err := he.UnmarshalSums(blob)
	if err != nil {
		return nil, err
	}
	vals, err := he.Decrypt(sk, sums)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for r := 0; r < int(rec.NumRows()); r++ {
		out[strings.Clone(rec.Column(0).(*array.String).Value(r))] = vals[rec.Column(2).(*array.Int64).Value(r)]
	}
	return out, nil
}

func plainSums(ctx context.Context, q string) (map[string]float64, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var g string
		var v float64
		if err := rows.Scan(&g, &v); err != nil {
			return nil, err
		}
		out[g] = v
	}
	return out, rows.Err()
}

// providerLine is the provider a schema names (its `provider:` line).
func providerLine(schema []byte) string {
	for _, l := range strings.Split(string(schema), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "provider:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// hePrepared is what the audit log says about a model's lane averages.
type hePrepared struct {
	ms, cpuMS float64 // the preparation's wall and CPU milliseconds (blob.prepare); -1 if none
	used      string  // what the last he job did with them (job.gate's "prepared")
}

// heAudit reads the audit log for what the platform did with a model's lane averages.
func heAudit(ctx context.Context, op *client.Client, model string) hePrepared {
	out := hePrepared{ms: -1, cpuMS: -1, used: "nothing recorded"}
	recs, err := op.AuditRecords(ctx, 0, 1000, true)
	if err != nil {
		return out
	}
	for _, raw := range recs.Records {
		en, err := audit.DecodeEntry(raw)
		if err != nil {
			continue
		}
		switch {
		case en.Action == "blob.prepare" && en.Details["model"] == model:
			out.ms, _ = strconv.ParseFloat(en.Details["ms"], 64)
			out.cpuMS, _ = strconv.ParseFloat(en.Details["cpu_ms"], 64)
		case en.Action == "job.gate" && en.Details["mechanism"] == "he" && en.Details["prepared"] != "":
			out.used = en.Details["prepared"]
		}
	}
	return out
}
