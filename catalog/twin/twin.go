package twin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

const (
	twinKindMask  = "masked"
	twinKindSynth = "synthetic"
	maxTwinRows   = 1_000_000
	synthBins     = 10
)

// Service builds dev twins and finds the released ones.
type Service struct {
	platform.Env
	box    *launch.Launcher
	ledger *ledger.Book
	jobs   *jobs.Service
}

// New returns the twin service. A build is a job (js) that waits for review like any other.
func New(env platform.Env, box *launch.Launcher, l *ledger.Book, js *jobs.Service) *Service {
	return &Service{Env: env, box: box, ledger: l, jobs: js}
}

// kind is the key a twin build's spec is stored under in its job's body.
const kind = "twin"

// twinSpec is a twin build, stored with its job.
type twinSpec struct {
	Dataset string      `json:"dataset"`
	Version string      `json:"version"`
	Kind    string      `json:"kind"`
	Rows    int         `json:"rows"`
	Pairs   [][2]string `json:"pairs,omitempty"`
	Epsilon float64     `json:"epsilon,omitempty"` // synthetic: as charged
}

// Build builds a dataset's twin (for the dataset's provider) and puts it in review.
func (s *Service) Build(ctx context.Context, p policy.Principal, name string, req api.BuildTwin) (api.Job, error) {
	var sch *policy.Schema
	var set store.Dataset
	err := s.DB.View(ctx, func(tx store.Tx) error {
		schemas, sets, err := catalog.Load(ctx, tx, []string{name})
		if err != nil {
			return err
		}
		sch, set = schemas[name], sets[name]
		if sch.Provider != p.Tenant {
			return fmt.Errorf("%w: dataset %q is not in the catalog", policy.ErrNotFound, name)
		}
		return nil
	})
	if err != nil {
		return api.Job{}, err
	}
	spec := &twinSpec{Dataset: name, Version: set.Version, Kind: req.Kind, Rows: req.Rows}
	var spend *ledger.Amount
	switch req.Kind {
	case twinKindMask:
		if spec.Rows == 0 {
			spec.Rows = 1000
		}
		if req.Epsilon != 0 || len(req.Pairs) > 0 {
			return api.Job{}, fmt.Errorf("%w: a masked twin spends no budget and has no pairs; those are for --synthetic", policy.ErrInvalid)
		}
	case twinKindSynth:
		if !(req.Epsilon > 0) || req.Epsilon > 10 {
			return api.Job{}, fmt.Errorf("%w: a synthetic twin spends the dataset's budget: give an epsilon in (0, 10], for example --epsilon 1", policy.ErrInvalid)
		}
		a, err := ledger.Spend(req.Epsilon, 0)
		if err != nil {
			return api.Job{}, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
		}
		spend = &a
		spec.Epsilon = a.Epsilon()
		spec.Pairs = req.Pairs
		if _, _, err := synthColumns(sch, spec.Pairs); err != nil {
			return api.Job{}, err
		}
		if err := s.box.Admit(map[string]*policy.Schema{name: sch}); err != nil {
			return api.Job{}, err
		}
	default:
		return api.Job{}, fmt.Errorf("%w: a twin is masked or synthetic", policy.ErrInvalid)
	}
	if spec.Rows < 0 || spec.Rows > maxTwinRows {
		return api.Job{}, fmt.Errorf("%w: a twin has at most %d rows", policy.ErrInvalid, maxTwinRows)
	}
	now := s.Rec.Now()
	raw, err := json.Marshal(spec)
	if err != nil {
		return api.Job{}, err
	}
	j := &jobs.Job{Job: store.Job{ID: platform.NewID("j"), Tenant: p.Tenant, Submitter: p.ID, Status: jobs.Running, Created: now},
		Body: jobs.Body{Mode: "twin", SQL: fmt.Sprintf("%s twin of %s (version %s)", spec.Kind, name, set.Version[:12]), Kind: kind, Spec: raw, Started: now, Spend: spend}}
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		if spend != nil {
			// The provider's own use of the dataset's budget, in the transaction that records
			// the build.
			if err := s.ledger.Draw(ctx, tx, name, j.ID, *spend); err != nil {
				return err
			}
		}
		if err := j.Put(ctx, tx, now); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "twin.build", "dataset/"+name, map[string]string{"job": j.ID, "kind": spec.Kind, "version": set.Version})
	})
	if err != nil {
		return api.Job{}, err
	}
	var rec arrow.RecordBatch
	var mech api.Mechanism
	if spec.Kind == twinKindMask {
		rec, err = s.maskedTwin(ctx, sch, set, spec)
		mech = api.Mechanism{Kind: "twin", Twin: &api.TwinMechanism{Kind: spec.Kind, Dataset: name, Version: set.Version,
			Statement: "A sample of rows with every column masked by its catalog rule (hmac pseudonyms, kept prefixes and suffixes, generalization, suppression), applied by Veil."}}
	} else {
		var rep dp.SynthReport
		rec, rep, err = s.syntheticTwin(ctx, j.ID, sch, set, spec)
		repJSON, _ := json.Marshal(rep)
		mech = api.Mechanism{Kind: "twin", DP: &api.DPMechanism{Epsilon: spend.Epsilon(), Noise: "laplace", Report: repJSON},
			Twin: &api.TwinMechanism{Kind: spec.Kind, Dataset: name, Version: set.Version,
				Statement: "Synthetic rows drawn from differentially private marginals of the data (every column's, and the declared pairs'); no row is a person's."}}
	}
	if err != nil {
		// The build ran (and a synthetic one spent its budget): the job says how it ended.
		s.jobs.Fail(j.ID, err)
		var je *launch.Failure
		if errors.As(err, &je) {
			return api.Job{}, fmt.Errorf("%w: the twin could not be built: %s", policy.ErrInvalid, je.Msg)
		}
		return api.Job{}, err
	}
	defer rec.Release()
	mech.Groups = int(rec.NumRows())
	err = s.jobs.ToReview(ctx, j.ID, map[string]string{name: set.Version}, &jobs.Output{Record: rec, Mechanism: mech,
		Message: fmt.Sprintf("%s twin of %s: %d rows wait for export review; once released, vendors' dev runs use it", spec.Kind, name, rec.NumRows()),
		Audit:   map[string]string{"mechanism": "twin", "kind": spec.Kind, "rows": fmt.Sprint(rec.NumRows())}})
	if err != nil {
		return api.Job{}, err
	}
	var out api.Job
	err = s.DB.View(ctx, func(tx store.Tx) error {
		sj, err := tx.Job(ctx, j.ID)
		if err != nil {
			return err
		}
		cur, err := jobs.Decode(sj)
		out = cur.API()
		return err
	})
	return out, err
}

// maskKey is the platform's masking key (hmac pseudonyms in masked twins), made on first use.
func (s *Service) maskKey() ([]byte, error) {
	path := filepath.Join(s.Config.DataDir, "keys", "mask.key")
	if b, err := os.ReadFile(path); err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// O_EXCL: of two first uses, one writes the key and both read it back.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = f.WriteString(hex.EncodeToString(key) + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	for range 100 { // another first use may still be writing it
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if k := strings.TrimSpace(string(b)); k != "" {
			return hex.DecodeString(k)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, errors.New("the masking key file stays empty")
}

// maskRule is the rule a twin applies to a column: the catalog's, else the safe default for
// what the column is.
func maskRule(c policy.Column) string {
	switch {
	case c.Mask != "":
		return c.Mask
	case c.PrivacyUnit:
		return "hmac"
	case c.Identifier() || c.Level >= 3:
		return "suppress"
	}
	return "none"
}

// maskedTwin samples rows of the dataset and masks every column by its rule. Numbers
// generalized into bands keep their type (the band's lower end), so that queries written
// for the data run on the twin.
func (s *Service) maskedTwin(ctx context.Context, sch *policy.Schema, set store.Dataset, spec *twinSpec) (arrow.RecordBatch, error) {
	key, err := s.maskKey()
	if err != nil {
		return nil, err
	}
	var cols []string
	for _, c := range sch.Columns {
		if c.Level < 4 {
			cols = append(cols, c.Name)
		}
	}
	rec, err := engine.Sample(ctx, set.Files, cols, spec.Rows)
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	var fields []arrow.Field
	var arrs []arrow.Array
	defer func() {
		for _, a := range arrs {
			a.Release()
		}
	}()
	for i, name := range cols {
		c, _ := sch.Column(name)
		rule, err := engine.ParseMaskRule(maskRule(c))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		m, err := engine.MaskArray(rule, key, rec.Column(i))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		if strings.HasPrefix(rule.String(), "band:") && policy.NumericType(c.Type) {
			m = bandLower(m)
		}
		fields = append(fields, arrow.Field{Name: name, Type: m.DataType(), Nullable: true})
		arrs = append(arrs, m)
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, rec.NumRows()), nil
}

// bandLower turns bands like "35-39" or "-5--1" into their lower end as a number.
func bandLower(a arrow.Array) arrow.Array {
	defer a.Release()
	s := a.(*array.String)
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := 0; i < s.Len(); i++ {
		v := s.Value(i)
		cut := strings.Index(v[1:], "-")
		if s.IsNull(i) || cut < 0 {
			b.AppendNull()
			continue
		}
		f, err := strconv.ParseFloat(v[:cut+1], 64)
		if err != nil {
			b.AppendNull()
			continue
		}
		b.Append(f)
	}
	return b.NewArray()
}

// synthColumn is how a column is synthesized: from a domain, from bins over its bounds, or
// not at all (NULL: identifiers, free text, columns with neither).
type synthColumn struct {
	col     policy.Column
	domain  []string
	lo, hi  float64
	numeric bool
}

// nullCategory stands for NULL among a column's categories (a sign no real value uses).
const nullCategory = "␀"

// syntheticTwin computes exact marginals in a sandbox (one row per person), makes them
// differentially private and draws synthetic rows from them.
func (s *Service) syntheticTwin(ctx context.Context, id string, sch *policy.Schema, set store.Dataset, spec *twinSpec) (arrow.RecordBatch, dp.SynthReport, error) {
	var rep dp.SynthReport
	cols, idx, err := synthColumns(sch, spec.Pairs)
	if err != nil {
		return nil, rep, err
	}
	// One row per person, chosen by a keyed hash; then every marginal's exact counts.
	unit := sch.UnitColumn().Name
	var secret [8]byte
	rand.Read(secret[:])
	cat := func(c synthColumn) string {
		x := engine.Ident(c.col.Name)
		if c.numeric {
			return fmt.Sprintf("COALESCE(CAST(least(greatest(CAST(floor((TRY_CAST(%s AS DOUBLE) - %g) / %g * %d) AS BIGINT), 0), %d) AS VARCHAR), '%s')",
				x, c.lo, c.hi-c.lo, synthBins, synthBins-1, nullCategory)
		}
		// A value outside the declared domain counts as missing: the domain is public, the
		// value is not.
		return fmt.Sprintf("(CASE WHEN CAST(%[1]s AS VARCHAR) IN (%[2]s) THEN CAST(%[1]s AS VARCHAR) ELSE '%[3]s' END)", x, sqlList(c.domain[:len(c.domain)-1]), nullCategory)
	}
	one := fmt.Sprintf("(SELECT * FROM %s WHERE %s IS NOT NULL QUALIFY row_number() OVER (PARTITION BY %s ORDER BY hash(%s, %d::BIGINT)) = 1)",
		engine.Ident(set.Name), engine.Ident(unit), engine.Ident(unit), engine.Ident(unit), int64(binary.LittleEndian.Uint64(secret[:])))
	var parts []string
	for i, c := range cols {
		parts = append(parts, fmt.Sprintf("SELECT %d AS m, %s AS a, '' AS b, count(*) AS n FROM %s GROUP BY ALL", i, cat(c), one))
	}
	for i, pr := range spec.Pairs {
		parts = append(parts, fmt.Sprintf("SELECT %d AS m, %s AS a, %s AS b, count(*) AS n FROM %s GROUP BY ALL", len(cols)+i, cat(cols[idx[pr[0]]]), cat(cols[idx[pr[1]]]), one))
	}
	var tcols []engine.Column
	for _, c := range sch.Columns {
		if c.Level < 4 {
			tcols = append(tcols, engine.Column{Name: c.Name, Type: c.Type})
		}
	}
	ejob := engine.Job{SQL: strings.Join(parts, " UNION ALL "), Tables: []engine.Table{{Name: set.Name, Files: set.Files, Columns: tcols}},
		Threads: s.Config.JobThreads, MemoryLimitMB: s.Config.DuckDBMemoryMB(), MaxResultBytes: s.Config.MaxResultByte}
	var buf bytes.Buffer
	if _, err := s.box.Run(ctx, id, ejob, &buf); err != nil {
		return nil, rep, err
	}
	res, err := engine.ReadResult(&buf, s.Config.MaxResultByte)
	clear(buf.Bytes())
	if err != nil {
		return nil, rep, err
	}
	ms := make([]dp.Marginal, len(cols)+len(spec.Pairs))
	for i, c := range cols {
		ms[i] = dp.Marginal{Columns: []string{c.col.Name}, Domains: [][]string{c.domain}, Counts: map[string]float64{}}
	}
	for i, pr := range spec.Pairs {
		a, b := cols[idx[pr[0]]], cols[idx[pr[1]]]
		ms[len(cols)+i] = dp.Marginal{Columns: []string{pr[0], pr[1]}, Domains: [][]string{a.domain, b.domain}, Counts: map[string]float64{}}
	}
	mi, ac, bc, nc := res.Column(0).(*array.Int32), res.Column(1).(*array.String), res.Column(2).(*array.String), res.Column(3).(*array.Int64)
	for r := 0; r < int(res.NumRows()); r++ {
		m := &ms[mi.Value(r)]
		k := dp.CellKey(ac.Value(r))
		if len(m.Columns) == 2 {
			k = dp.CellKey(ac.Value(r), bc.Value(r))
		}
		m.Counts[strings.Clone(k)] += float64(nc.Value(r))
	}
	res.Release()
	noisy, rep, err := dp.NoisyMarginals(ms, spec.Epsilon)
	for i := range ms {
		clear(ms[i].Counts)
	}
	if err != nil {
		return nil, rep, err
	}
	rows := spec.Rows
	if rows == 0 {
		var total float64
		for _, v := range noisy[0].Counts {
			total += v
		}
		rows = min(int(math.Round(total)), maxTwinRows)
	}
	var names []string
	for _, c := range cols {
		names = append(names, c.col.Name)
	}
	var seed [8]byte
	rand.Read(seed[:])
	drawn, err := dp.Synthesize(noisy, names, rows, binary.LittleEndian.Uint64(seed[:]))
	if err != nil {
		return nil, rep, err
	}
	return synthRecord(sch, cols, drawn, binary.LittleEndian.Uint64(seed[:])), rep, nil
}

// synthRecord turns drawn categories into a table with the real schema's columns: numbers
// uniform within their bin, categories as drawn, the privacy unit numbered, columns that
// cannot be synthesized NULL.
func synthRecord(sch *policy.Schema, cols []synthColumn, drawn [][]string, seed uint64) arrow.RecordBatch {
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pos := map[string]int{}
	for i, c := range cols {
		pos[c.col.Name] = i
	}
	var fields []arrow.Field
	var arrs []arrow.Array
	for _, c := range sch.Columns {
		if c.Level >= 4 {
			continue
		}
		i, ok := pos[c.Name]
		var a arrow.Array
		switch {
		case c.PrivacyUnit:
			b := array.NewInt64Builder(memory.DefaultAllocator)
			for r := range drawn {
				b.Append(int64(r + 1))
			}
			a = b.NewArray()
		case ok && cols[i].numeric:
			b := array.NewFloat64Builder(memory.DefaultAllocator)
			sc := cols[i]
			width := (sc.hi - sc.lo) / synthBins
			for _, row := range drawn {
				bin, err := strconv.Atoi(row[i])
				if err != nil {
					b.AppendNull()
					continue
				}
				v := sc.lo + (float64(bin)+rng.Float64())*width
				if !strings.Contains(strings.ToUpper(c.Type), "DOUBLE") && !strings.Contains(strings.ToUpper(c.Type), "FLOAT") && !strings.Contains(strings.ToUpper(c.Type), "DECIMAL") {
					v = math.Floor(v)
				}
				b.Append(v)
			}
			a = b.NewArray()
		default:
			b := array.NewStringBuilder(memory.DefaultAllocator)
			for _, row := range drawn {
				if !ok || row[i] == nullCategory {
					b.AppendNull()
				} else {
					b.Append(row[i])
				}
			}
			a = b.NewArray()
		}
		fields = append(fields, arrow.Field{Name: c.Name, Type: a.DataType(), Nullable: true})
		arrs = append(arrs, a)
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, int64(len(drawn)))
	for _, a := range arrs {
		a.Release()
	}
	return rec
}

// File returns the released twin of a dataset as a Parquet file the sandbox can mount,
// written once from the stored output.
func (s *Service) File(ctx context.Context, dataset string) (string, error) {
	sch, err := s.schema(ctx, dataset)
	if err != nil {
		return "", err
	}
	if sch != nil && sch.Owner != "" {
		return s.fusedFile(ctx, sch)
	}
	best, _, err := s.released(ctx, dataset)
	if err != nil {
		return "", err
	}
	if best == nil {
		return "", launch.Fail(fmt.Sprintf("dataset %s has no released dev twin yet; its provider builds one (veil dataset twin %s --masked or --synthetic) and a reviewer releases it", dataset, dataset), nil)
	}
	return s.file(ctx, dataset, best)
}

// schema is a dataset's schema, nil when it has none.
func (s *Service) schema(ctx context.Context, dataset string) (*policy.Schema, error) {
	var sch *policy.Schema
	err := s.DB.View(ctx, func(tx store.Tx) error {
		schemas, _, err := catalog.Load(ctx, tx, []string{dataset})
		sch = schemas[dataset]
		return err
	})
	return sch, err
}

// fusedFile is the dev twin of a vendor's fused table, built from the released twin of the
// dataset it was matched with: that twin's persons (its privacy unit as the twin holds it,
// so the two twins join on it), with the fused table's own columns NULL. Which of the
// vendor's rows matched a person is data of the public side; the twin shows none of it.
func (s *Service) fusedFile(ctx context.Context, sch *policy.Schema) (string, error) {
	if sch.FusedWith == "" {
		return "", launch.Fail(fmt.Sprintf("dataset %s was fused before fused tables had dev twins, so Veil does not know which dataset's twin to build it from; upload it again (veil fusion upload) to use it in dev runs", sch.Name), nil)
	}
	best, _, err := s.released(ctx, sch.FusedWith)
	if err != nil {
		return "", err
	}
	if best == nil {
		return "", launch.Fail(fmt.Sprintf("dataset %s is your table fused with %s, and its dev twin is built from the dev twin of %s, which has none released yet; the provider of %s builds one (veil dataset twin %s --masked or --synthetic) and a reviewer releases it", sch.Name, sch.FusedWith, sch.FusedWith, sch.FusedWith, sch.FusedWith), nil)
	}
	src, err := s.file(ctx, sch.FusedWith, best)
	if err != nil {
		return "", err
	}
	var cols []engine.Column
	shape := sha256.New()
	for _, c := range sch.Columns {
		cols = append(cols, engine.Column{Name: c.Name, Type: c.Type})
		fmt.Fprintf(shape, "%q %q\n", c.Name, c.Type)
	}
	// Named by the source twin and the table's columns: an upload of the same name made
	// again with other columns gets a twin of its own.
	dir := filepath.Join(s.Config.DataDir, "twins")
	path := filepath.Join(dir, fmt.Sprintf("%s-%s-%x.parquet", sch.Name, best.ID, shape.Sum(nil)[:6]))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	tmp := path + "." + platform.NewID("tmp")
	defer os.Remove(tmp)
	if _, err := engine.ShapeFile(ctx, src, sch.UnitColumn().Name, cols, tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// released finds the newest released twin of a dataset: its job and build, or nil.
func (s *Service) released(ctx context.Context, dataset string) (*jobs.Job, twinSpec, error) {
	var best *jobs.Job
	var bestSpec twinSpec
	err := s.DB.View(ctx, func(tx store.Tx) error {
		js, err := tx.Jobs(ctx, store.JobFilter{Statuses: []string{jobs.Released}})
		if err != nil {
			return err
		}
		for _, sj := range js {
			j, err := jobs.Decode(sj)
			if err != nil {
				return err
			}
			if j.Body.Kind != kind {
				continue
			}
			var spec twinSpec
			if err := json.Unmarshal(j.Body.Spec, &spec); err != nil {
				return err
			}
			if spec.Dataset == dataset && (best == nil || j.Updated.After(best.Updated)) {
				best, bestSpec = j, spec
			}
		}
		return nil
	})
	return best, bestSpec, err
}

// Nulls says which columns of a dataset's released twin are NULL (suppressed) and why;
// nothing when it has no released twin.
func (s *Service) Nulls(ctx context.Context, dataset string) (map[string]string, error) {
	if sch, err := s.schema(ctx, dataset); err != nil || (sch != nil && sch.Owner != "") {
		if err != nil || sch.FusedWith == "" {
			return nil, err
		}
		src, err := s.Nulls(ctx, sch.FusedWith)
		if err != nil {
			return nil, err
		}
		out := map[string]string{}
		unit := sch.UnitColumn().Name
		for _, c := range sch.Columns {
			switch {
			case c.Name == unit && src[c.Name] != "":
				out[c.Name] = "fused table, twin built from the twin of " + sch.FusedWith + ": " + src[c.Name]
			case c.Name != unit:
				out[c.Name] = "fused table: its twin has the persons of the twin of " + sch.FusedWith + " and none of your table's values (which of your rows matched is not told)"
			}
		}
		return out, nil
	}
	best, spec, err := s.released(ctx, dataset)
	if err != nil || best == nil {
		return nil, err
	}
	var sch *policy.Schema
	err = s.DB.View(ctx, func(tx store.Tx) error {
		schemas, _, err := catalog.Load(ctx, tx, []string{dataset})
		sch = schemas[dataset]
		return err
	})
	if err != nil || sch == nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range sch.Columns {
		if c.Level >= 4 {
			continue // never in a twin, never granted
		}
		switch {
		case spec.Kind == twinKindSynth && (c.PrivacyUnit || c.Identifier()):
			out[c.Name] = "synthetic twin: identifiers and the privacy unit are not synthesized"
		case spec.Kind == twinKindSynth && len(c.Domain) == 0 && !(len(c.Bounds) == 2 && policy.NumericType(c.Type)):
			out[c.Name] = "synthetic twin: the catalog gives the column neither a public domain nor numeric bounds to draw from"
		case spec.Kind != twinKindSynth && maskRule(c) == "suppress":
			why := "its catalog mask rule is suppress"
			if c.Mask == "" {
				why = "an identifier or level-3 column without a mask rule in the catalog is suppressed"
			}
			out[c.Name] = "masked twin: " + why
		}
	}
	return out, nil
}

func (s *Service) file(ctx context.Context, dataset string, best *jobs.Job) (string, error) {
	dir := filepath.Join(s.Config.DataDir, "twins")
	path := filepath.Join(dir, dataset+"-"+best.ID+".parquet")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var rec arrow.RecordBatch
	err := s.DB.View(ctx, func(tx store.Tx) error {
		_, r, err := s.jobs.LoadOutput(ctx, tx, best.ID)
		rec = r
		return err
	})
	if err != nil {
		return "", s.jobs.Note(ctx, platform.System, "twin.file", err)
	}
	defer rec.Release()
	data, err := output.Encode(rec, "parquet")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", err
	}
	return path, platform.WriteFileAtomic(path, data, 0o644)
}

// synthColumns picks the columns a synthetic twin draws (those with a public domain or
// numeric bounds) and checks the pairs; it runs before any budget is spent.
func synthColumns(sch *policy.Schema, pairs [][2]string) ([]synthColumn, map[string]int, error) {
	var cols []synthColumn
	for _, c := range sch.Columns {
		if c.Level >= 4 || c.PrivacyUnit || c.Identifier() {
			continue
		}
		sc := synthColumn{col: c}
		switch {
		case len(c.Domain) > 0:
			sc.domain = append(slices.Clone(c.Domain), nullCategory)
		case len(c.Bounds) == 2 && policy.NumericType(c.Type):
			sc.numeric, sc.lo, sc.hi = true, c.Bounds[0], c.Bounds[1]
			for b := range synthBins {
				sc.domain = append(sc.domain, strconv.Itoa(b))
			}
			sc.domain = append(sc.domain, nullCategory)
		default:
			continue
		}
		cols = append(cols, sc)
	}
	if len(cols) == 0 {
		return nil, nil, fmt.Errorf("%w: no column of this dataset has a public domain or numeric bounds to synthesize; declare them in the schema", policy.ErrInvalid)
	}
	idx := map[string]int{}
	for i, c := range cols {
		idx[c.col.Name] = i
	}
	for _, pr := range pairs {
		for _, c := range pr {
			if _, ok := idx[c]; !ok {
				return nil, nil, fmt.Errorf("%w: pair column %s has no public domain or numeric bounds to synthesize", policy.ErrInvalid, c)
			}
		}
		if pr[0] == pr[1] {
			return nil, nil, fmt.Errorf("%w: a pair needs two different columns", policy.ErrInvalid)
		}
	}
	return cols, idx, nil
}

func sqlList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}
