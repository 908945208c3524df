// Command bench-beam measures a peer of Veil's user-level differentially private COUNT per
// group: the same query run with Privacy on Beam
// (github.com/google/differential-privacy/privacy-on-beam/v3 v3.0.0) on the Apache Beam Go
// SDK's in-process direct runner, at the Beam version that Privacy on Beam v3.0.0's go.mod
// requires (github.com/apache/beam/sdks/v2 v2.54.0).
//
// It is a benchmark peer only. It must never be used to release data, and it is never part
// of Veil's build, tests or release path: it lives in its own Go module (bench/beam/go.mod)
// so that Beam and its dependencies never enter Veil's go.mod.
//
// # What it measures
//
// The input is a Parquet file with the columns person_id BIGINT, grp VARCHAR and value
// DOUBLE, one row per event, a person having several rows in several groups (the file
// testdata.GenerateBench writes, made by DuckDB with zstd compression). Each repetition
// builds and runs one whole pipeline and is timed from pipeline construction to the end of
// the runner's Execute, so the timing includes reading and decoding the Parquet file:
//
//	parquetio.Read(file) -> (person_id, grp) -> pbeam.MakePrivate (privacy unit person_id)
//	  -> pbeam.Count{MaxPartitionsContributed: -max-groups, MaxValue: -max-rows,
//	                 Laplace noise, private partition selection}
//	  -> collect (grp, count) back into the Go process
//
// The privacy budget is split as Privacy on Beam needs it for one count with private
// partition selection: half of -epsilon for the aggregation, half for partition selection,
// and all of -delta for partition selection. Rows whose person_id or grp is NULL are
// dropped; value is read but not used by COUNT.
//
// # How it reads the data
//
// The file is read inside the pipeline, and so inside the measured time, by Beam's own
// parquetio (github.com/apache/beam/sdks/v2/go/pkg/beam/io/parquetio, which decodes with
// github.com/xitongsys/parquet-go; it reads DuckDB's zstd files). Before the first run the
// footer is read once, outside the measured time, to check the columns and take the row
// count.
//
// The pipeline runs -reps+1 times; the first run is a warm-up and is not reported.
//
// # Build and run
//
//	cd bench/beam && go build -o ../../bin/bench-beam . && ../../bin/bench-beam -parquet FILE -json
//
// Flags: -parquet FILE (required), -epsilon (1), -delta (1e-8), -max-groups (1, groups per
// person), -max-rows (10, rows per person per group), -reps (3), -json (print one JSON
// object on stdout), -beam-log (keep Beam's informational logging on stderr).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/local"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/parquetio"
	beamlog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/direct"
	"github.com/google/differential-privacy/privacy-on-beam/v3/pbeam"
	"github.com/xitongsys/parquet-go-source/local"
	"github.com/xitongsys/parquet-go/parquet"
	"github.com/xitongsys/parquet-go/reader"
)

const (
	beamModule = "github.com/apache/beam/sdks/v2"
	pobModule  = "github.com/google/differential-privacy/privacy-on-beam/v3"
	// Versions pinned in go.mod, used if the binary carries no module build information.
	beamPinned = "v2.54.0"
	pobPinned  = "v3.0.0"
)

// Event is one row of the input file. DuckDB writes every column as OPTIONAL, so the
// fields are pointers (nil for NULL).
type Event struct {
	PersonID *int64   `parquet:"name=person_id, type=INT64, repetitiontype=OPTIONAL"`
	Grp      *string  `parquet:"name=grp, type=BYTE_ARRAY, convertedtype=UTF8, repetitiontype=OPTIONAL"`
	Value    *float64 `parquet:"name=value, type=DOUBLE, repetitiontype=OPTIONAL"`
}

// toIDGroup keys an event by its privacy unit and keeps its group, dropping NULLs.
func toIDGroup(e Event, emit func(int64, string)) {
	if e.PersonID == nil || e.Grp == nil {
		return
	}
	emit(*e.PersonID, *e.Grp)
}

// The direct runner executes in this process, so released counts are collected through a
// package-level sink.
var (
	sinkMu sync.Mutex
	sink   map[string]int64
)

func collect(grp string, n int64) {
	sinkMu.Lock()
	sink[grp] = n
	sinkMu.Unlock()
}

func init() {
	beam.RegisterType(reflect.TypeOf((*Event)(nil)).Elem())
	register.Function2x0(toIDGroup)
	register.Emitter2[int64, string]()
	register.Function2x0(collect)
}

type params struct {
	file             string
	epsilon, delta   float64
	maxGroups, maxPR int64
}

// runOnce builds and executes one pipeline and returns the released (group, count) pairs.
func runOnce(ctx context.Context, p params) (map[string]int64, error) {
	spec, err := pbeam.NewPrivacySpec(pbeam.PrivacySpecParams{
		AggregationEpsilon:        p.epsilon / 2,
		PartitionSelectionEpsilon: p.epsilon / 2,
		PartitionSelectionDelta:   p.delta,
	})
	if err != nil {
		return nil, fmt.Errorf("privacy spec: %w", err)
	}
	sinkMu.Lock()
	sink = make(map[string]int64)
	sinkMu.Unlock()

	pipeline, s := beam.NewPipelineWithRoot()
	events := parquetio.Read(s, p.file, reflect.TypeOf(Event{}))
	idGroup := beam.ParDo(s, toIDGroup, events)
	private := pbeam.MakePrivate(s, idGroup, spec)
	counts := pbeam.Count(s, private, pbeam.CountParams{
		NoiseKind:                pbeam.LaplaceNoise{},
		MaxPartitionsContributed: p.maxGroups,
		MaxValue:                 p.maxPR,
	})
	beam.ParDo0(s, collect, counts)
	if _, err := direct.Execute(ctx, pipeline); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	sinkMu.Lock()
	defer sinkMu.Unlock()
	out := sink
	sink = nil
	return out, nil
}

// checkFile reads the Parquet footer, checks the three columns and returns the row count.
func checkFile(file string) (int64, error) {
	st, err := os.Stat(file)
	if err != nil {
		return 0, err
	}
	if st.IsDir() {
		return 0, fmt.Errorf("%s is a directory", file)
	}
	fr, err := local.NewLocalFileReader(file)
	if err != nil {
		return 0, err
	}
	defer fr.Close()
	pr, err := reader.NewParquetReader(fr, nil, 1)
	if err != nil {
		return 0, fmt.Errorf("%s: not a readable Parquet file: %w", file, err)
	}
	defer pr.ReadStop()
	want := map[string]parquet.Type{
		"person_id": parquet.Type_INT64,
		"grp":       parquet.Type_BYTE_ARRAY,
		"value":     parquet.Type_DOUBLE,
	}
	have := map[string]parquet.Type{}
	var names []string
	// parquet-go renames the footer's schema to Go identifiers; ExName keeps the file's names.
	sh := pr.SchemaHandler
	for i := 1; i < len(sh.SchemaElements) && i < len(sh.Infos); i++ {
		name := sh.Infos[i].ExName
		if t := sh.SchemaElements[i].Type; t != nil {
			have[name] = *t
		}
		names = append(names, name)
	}
	var problems []string
	for _, name := range []string{"person_id", "grp", "value"} {
		t, ok := have[name]
		switch {
		case !ok:
			problems = append(problems, "missing column "+name)
		case t != want[name]:
			problems = append(problems, fmt.Sprintf("column %s has physical type %s, want %s", name, t, want[name]))
		}
	}
	if len(problems) > 0 {
		return 0, fmt.Errorf("%s: %s (want person_id BIGINT, grp VARCHAR, value DOUBLE; file has %s)",
			file, strings.Join(problems, "; "), strings.Join(names, ", "))
	}
	return pr.GetNumRows(), nil
}

func moduleVersions() (beamV, pobV string) {
	beamV, pobV = beamPinned, pobPinned
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case beamModule:
				beamV = d.Version
			case pobModule:
				pobV = d.Version
			}
		}
	}
	return beamV, pobV
}

// quietLogger drops Beam's debug and info messages (the direct runner logs the whole plan).
type quietLogger struct{ next beamlog.Logger }

func (q quietLogger) Log(ctx context.Context, sev beamlog.Severity, depth int, msg string) {
	if sev >= beamlog.SevWarn {
		q.next.Log(ctx, sev, depth+1, msg)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-beam:", err)
	os.Exit(1)
}

func main() {
	var p params
	flag.StringVar(&p.file, "parquet", "", "input Parquet file with columns person_id BIGINT, grp VARCHAR, value DOUBLE (required)")
	flag.Float64Var(&p.epsilon, "epsilon", 1, "total epsilon: half for the count, half for partition selection")
	flag.Float64Var(&p.delta, "delta", 1e-8, "total delta, all of it for partition selection")
	flag.Int64Var(&p.maxGroups, "max-groups", 1, "groups a person may contribute to (MaxPartitionsContributed)")
	flag.Int64Var(&p.maxPR, "max-rows", 10, "rows a person may contribute to one group (MaxValue)")
	reps := flag.Int("reps", 3, "measured repetitions (one warm-up run is added before them)")
	asJSON := flag.Bool("json", false, "print one JSON object on stdout")
	verbose := flag.Bool("beam-log", false, "keep Beam's informational logging on stderr")
	flag.Parse()
	beam.Init()

	if p.file == "" {
		fail(errors.New("-parquet FILE is required"))
	}
	if *reps < 1 {
		fail(errors.New("-reps must be at least 1"))
	}
	if !(p.epsilon > 0) || !(p.delta > 0 && p.delta < 1) || p.maxGroups < 1 || p.maxPR < 1 {
		fail(errors.New("need -epsilon > 0, 0 < -delta < 1, -max-groups >= 1 and -max-rows >= 1"))
	}
	if !*verbose {
		beamlog.SetLogger(quietLogger{next: &beamlog.Standard{}})
	}
	rows, err := checkFile(p.file)
	if err != nil {
		fail(err)
	}

	ctx := context.Background()
	var secs []float64
	var released map[string]int64
	for i := 0; i <= *reps; i++ {
		start := time.Now()
		out, err := runOnce(ctx, p)
		if err != nil {
			fail(err)
		}
		el := time.Since(start).Seconds()
		if i == 0 {
			if !*asJSON {
				fmt.Printf("warm-up: %.3f s, %d groups released\n", el, len(out))
			}
			continue
		}
		secs = append(secs, el)
		released = out
		if !*asJSON {
			fmt.Printf("rep %d: %.3f s, %d groups released\n", i, el, len(out))
		}
	}

	beamV, pobV := moduleVersions()
	res := struct {
		Median   float64   `json:"pob_count_seconds_median"`
		Seconds  []float64 `json:"pob_count_seconds"`
		Rows     int64     `json:"rows"`
		Released int       `json:"groups_released"`
		Beam     string    `json:"beam_version"`
		PoB      string    `json:"privacy_on_beam_version"`
		Reader   string    `json:"reader"`
	}{median(secs), secs, rows, len(released), beamV, pobV, "parquetio"}
	if *asJSON {
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			fail(err)
		}
		return
	}
	var total int64
	for _, n := range released {
		total += n
	}
	fmt.Printf("median %.3f s over %d reps, %d rows, %d groups released with %d noisy rows in all (Beam %s, Privacy on Beam %s, reader %s)\n",
		res.Median, len(secs), rows, res.Released, total, beamV, pobV, res.Reader)
}
