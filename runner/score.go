package runner

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/he"
)

// scoreHE runs inside the sandbox. It counts rows and persons per group in the clear, keeps
// the groups of at least k persons, and scores their rows under encryption. A result with
// Error set is a refusal the vendor may read; a Go error is a failure for the operator.
func scoreHE(ctx context.Context, j *engine.Job) (*ScoreResult, error) {
	var spec Score
	if err := json.Unmarshal(j.Spec, &spec); err != nil {
		return nil, fmt.Errorf("he spec: %w", err)
	}
	// The blobs (tens of MB) are read and parsed on their own goroutines while DuckDB counts
	// the groups; the scorer waits for them at the first batch of rows.
	blobs := loadHEBlobs(j, spec.Kind)

	view := engine.Ident(spec.Dataset)
	var keys, present []string
	for _, k := range spec.GroupBy {
		keys = append(keys, fmt.Sprintf("CAST(%s AS VARCHAR)", engine.Ident(k)))
	}
	var zs []string
	for _, f := range spec.Features {
		x := fmt.Sprintf("CAST(%s AS DOUBLE)", engine.Ident(f.Name))
		present = append(present, x+" IS NOT NULL")
		c, h := (f.Lower+f.Upper)/2, (f.Upper-f.Lower)/2
		zs = append(zs, fmt.Sprintf("(CASE WHEN %[1]s < %[2]g THEN %[2]g WHEN %[1]s > %[3]g THEN %[3]g ELSE %[1]s END - %[4]g) / %[5]g",
			x, f.Lower, f.Upper, c, h))
	}
	// Rows missing a feature, or a person, are not scored, and not counted either.
	where := " WHERE " + engine.Ident(spec.Unit) + " IS NOT NULL AND " + strings.Join(present, " AND ")
	groupBy := ""
	if len(keys) > 0 {
		groupBy = " GROUP BY " + strings.Join(keys, ", ") + " ORDER BY " + strings.Join(keys, ", ")
	}
	// A group's persons are its distinct units, unless the dataset's files were measured
	// with at most one row per person: then they are its rows (the WHERE clause keeps only
	// rows with a person), and DuckDB need not hash every unit (half the stats query).
	units := fmt.Sprintf("count(DISTINCT %s)::BIGINT", engine.Ident(spec.Unit))
	if oneRowPerUnit(j, spec.Dataset) {
		units = "count(*)::BIGINT"
	}
	stats := fmt.Sprintf("SELECT %s count(*)::BIGINT, %s FROM %s%s%s",
		prefixList(keys), units, view, where, groupBy)
	rows := fmt.Sprintf("SELECT %s %s FROM %s%s", prefixList(keys), strings.Join(zs, ", "), view, where)

	res := &ScoreResult{}
	// With differential privacy, ε is split in three (groups, counts, sums) and every number
	// comes from the DP library, crypto/rand underneath; without it, the k threshold.
	var share float64
	linear := spec.Kind == he.KindLinear
	if d := spec.DP; d != nil {
		share = d.Epsilon / 3
		res.DP = &ScoreDPReport{SelectionEpsilon: share, CountEpsilon: share, SumEpsilon: share,
			CountNoiseScale: dp.Scale(dp.Laplace, d.MaxRows, float64(d.MaxRows), share, 0)}
		if linear {
			// A linear model's sums are weights times per-group feature sums: the noise goes
			// on those clear sums (a person moves them by at most MaxRows·features in L1), so
			// the output is DP whatever the encrypted weights are.
			res.DP.FeatureNoiseScale = dp.Scale(dp.Laplace, 1, float64(d.MaxRows*int64(len(spec.Features))), share, 0)
		} else {
			res.DP.SumNoiseScale = dp.Scale(dp.Laplace, d.MaxRows, float64(d.MaxRows)*d.ScoreBound, share, 0)
		}
	}
	var countNoise []float64 // released minus exact count of each kept group (linear + DP)
	slots := map[string]int32{}
	var scorer *he.Scorer
	var group []int32
	z := make([][]float64, len(zs))
	var kb []byte // a row's key, as keyString spells it
	var (
		pub       *he.PublicBundle
		model     *he.EncryptedModel
		prep      *he.PreparedModel
		prepState string
	)
	err := engine.Stream(ctx, j, []string{stats, rows}, func(q int, rec arrow.RecordBatch) error {
		nk := len(keys)
		if q == 0 {
			for r := 0; r < int(rec.NumRows()); r++ {
				n, units := rec.Column(nk).(*array.Int64).Value(r), rec.Column(nk+1).(*array.Int64).Value(r)
				if units < int64(spec.K) {
					// Under k a group is never scored, with or without DP: the DP guarantee
					// rests on a well-formed model, which the platform cannot check.
					res.Dropped++
					continue
				}
				if d := spec.DP; d != nil {
					keep, err := dp.KeepPartition(units, d.MaxRows, share, d.Delta)
					if err != nil {
						return err
					}
					if !keep {
						res.Dropped++
						continue
					}
					c, err := dp.Count(n, d.MaxRows, d.MaxRows, share, 0, dp.Laplace)
					if err != nil {
						return err
					}
					released := max(int64(math.Round(c.Value)), 0)
					countNoise = append(countNoise, float64(released-n))
					n = released
				}
				ks := keyValues(rec, nk, r)
				slots[keyString(ks)] = int32(len(res.Groups))
				res.Groups = append(res.Groups, ScoreGroup{Keys: ks, Rows: n})
				res.Rows += n
			}
			return nil
		}
		if scorer == nil {
			if len(res.Groups) == 0 {
				return errNoGroups
			}
			b := blobs.wait()
			if b.err != nil {
				return b.err
			}
			pub, model, prep, prepState = b.pub, b.model, b.prep, b.prepState
			sc, err := he.NewPreparedScorer(pub, model, prep, len(res.Groups))
			if err != nil {
				return err
			}
			scorer = sc
			res.Prepared = prepState
			if prep != nil && !scorer.Prepared() {
				res.Prepared = PreparedOtherLayout
			}
			prep = nil
		}
		group = group[:0]
		for i := range z {
			z[i] = z[i][:0]
		}
		keyCols := make([]*array.String, nk)
		for i := range keyCols {
			keyCols[i] = rec.Column(i).(*array.String)
		}
		zCols := make([][]float64, len(z))
		for i := range zCols {
			zCols[i] = rec.Column(nk + i).(*array.Float64).Float64Values()
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			kb = appendKey(kb[:0], keyCols, r)
			slot, ok := slots[string(kb)] // no allocation: the lookup converts in place
			if !ok {
				continue // a group under k
			}
			group = append(group, slot)
			for i := range z {
				z[i] = append(z[i], math.Max(-1, math.Min(1, zCols[i][r]))) // clamped above; this removes rounding
			}
		}
		if len(group) == 0 {
			return nil
		}
		return scorer.Add(group, z)
	})
	// A bad blob is the operator's failure whatever the data did, as when it was read first.
	if b := blobs.wait(); b.err != nil {
		if scorer != nil {
			scorer.Finish()
		}
		return nil, b.err
	} else if pub == nil {
		pub = b.pub
	}
	if err == errNoGroups || (err == nil && len(res.Groups) == 0) {
		msg := fmt.Sprintf("no group has at least k=%d persons with every feature present; nothing was scored", spec.K)
		if spec.DP != nil {
			msg = "no group passed differential-privacy partition selection; nothing was scored"
		}
		return &ScoreResult{Error: msg, Dropped: res.Dropped}, nil
	}
	if err != nil {
		if scorer != nil {
			scorer.Finish()
		}
		if msg, ok := heVendorError(err, len(res.Groups), pub.Lanes()); ok {
			return &ScoreResult{Error: msg}, nil
		}
		return nil, err
	}
	if d := spec.DP; d != nil && linear {
		featNoise := make([][]float64, len(res.Groups))
		for g := range featNoise {
			featNoise[g] = make([]float64, len(spec.Features))
			for f := range featNoise[g] {
				r, err := dp.Sum(0, 1, float64(d.MaxRows*int64(len(spec.Features))), share, 0, dp.Laplace)
				if err != nil {
					scorer.Finish()
					return nil, err
				}
				featNoise[g][f] = r.Value
			}
		}
		if err := scorer.NoiseLinearInputs(featNoise, countNoise); err != nil {
			scorer.Finish()
			return nil, err
		}
	}
	sums, err := scorer.Finish()
	if err != nil {
		return nil, err
	}
	if d := spec.DP; d != nil && !linear {
		// The noise goes onto the encrypted sums as a plaintext; nobody sees a sum without it.
		noise := make([]float64, len(res.Groups))
		for i := range noise {
			r, err := dp.Sum(0, d.MaxRows, float64(d.MaxRows)*d.ScoreBound, share, 0, dp.Laplace)
			if err != nil {
				return nil, err
			}
			noise[i] = r.Value
		}
		err := sums.AddNoise(noise)
		clear(noise)
		if err != nil {
			return nil, err
		}
	}
	if err := sums.Flood(); err != nil {
		return nil, err
	}
	if res.Sums, err = sums.MarshalBinary(); err != nil {
		return nil, err
	}
	res.SumErrorStd = sums.SumErrorStd()
	return res, nil
}

var errNoGroups = fmt.Errorf("no group reaches k")

// oneRowPerUnit reports whether the job's table of the dataset has a measured maximum of one
// row per privacy unit (engine.Table.MaxRowsPerUnit, of exactly the files the job reads).
func oneRowPerUnit(j *engine.Job, dataset string) bool {
	for _, t := range j.Tables {
		if t.Name == dataset {
			return t.MaxRowsPerUnit == 1
		}
	}
	return false
}

// What an he-score job did with the model's prepared lane averages (ScoreResult.Prepared).
const (
	PreparedUsed        = "used"
	PreparedAbsent      = "absent"      // none stored: the job averaged the model itself
	PreparedOtherLayout = "other-lanes" // more groups than the bundle's lanes: averaged here
	PreparedRefused     = "refused"     // stored but unreadable or bound to other blobs
)

// heBlobs are an he-score job's parsed inputs.
type heBlobs struct {
	pub       *he.PublicBundle
	model     *he.EncryptedModel
	prep      *he.PreparedModel
	prepState string
	err       error
}

type heBlobsFuture struct {
	done chan struct{}
	b    heBlobs
}

func (f *heBlobsFuture) wait() heBlobs {
	<-f.done
	return f.b
}

// loadHEBlobs reads and parses the bundle, the model and the prepared averages, each on
// its own goroutine (the parsing is serial per blob), and checks the prepared blob's
// binding once both digests are known.
func loadHEBlobs(j *engine.Job, kind string) *heBlobsFuture {
	f := &heBlobsFuture{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		var wg sync.WaitGroup
		var bundleErr, modelErr error
		var bundleDigest, modelDigest string
		wg.Add(2)
		go func() {
			defer wg.Done()
			bb, err := os.ReadFile(j.Inputs["bundle"])
			if err != nil {
				bundleErr = err
				return
			}
			f.b.pub, bundleDigest, bundleErr = he.UnmarshalPublicBundleDigest(bb)
		}()
		go func() {
			defer wg.Done()
			mb, err := os.ReadFile(j.Inputs["model"])
			if err != nil {
				modelErr = err
				return
			}
			f.b.model, modelDigest, modelErr = he.UnmarshalEncryptedModelDigest(mb)
			clear(mb)
		}()
		prep, state := readPrepared(j, kind)
		wg.Wait()
		if f.b.err = cmp.Or(bundleErr, modelErr); f.b.err != nil { // the bundle's error first, as before
			f.b.model, f.b.pub = nil, nil
			return
		}
		if prep != nil && prep.CheckBinding(modelDigest, bundleDigest) != nil {
			prep, state = nil, PreparedRefused
		}
		f.b.prep, f.b.prepState = prep, state
	}()
	return f
}

// readPrepared reads the prepared lane averages the daemon mounted (input "prepared"), if
// any; the caller checks they were computed from exactly these model and bundle blobs. Whatever is
// wrong with them, the job goes on without them (it averages the model itself).
func readPrepared(j *engine.Job, kind string) (*he.PreparedModel, string) {
	if kind != he.KindLogistic {
		return nil, "" // a linear model is not averaged
	}
	path, ok := j.Inputs["prepared"]
	if !ok {
		return nil, PreparedAbsent
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, PreparedRefused
	}
	p, err := he.UnmarshalPreparedModel(b)
	if err != nil {
		return nil, PreparedRefused
	}
	return p, PreparedUsed
}

// prepareHE runs inside the sandbox (KindPrepare): it averages a logistic model over the
// lanes of its public bundle and returns the prepared model's blob, bound to the digests of
// the two blobs as read here.
func prepareHE(j *engine.Job) ([]byte, error) {
	var spec Prepare
	if err := json.Unmarshal(j.Spec, &spec); err != nil {
		return nil, fmt.Errorf("prepare spec: %w", err)
	}
	bb, err := os.ReadFile(j.Inputs["bundle"])
	if err != nil {
		return nil, err
	}
	mb, err := os.ReadFile(j.Inputs["model"])
	if err != nil {
		return nil, err
	}
	md, bd := he.Digest(mb), he.Digest(bb)
	if md != spec.Model || bd != spec.Bundle {
		return nil, fmt.Errorf("the mounted model or bundle is not the blob named in the spec")
	}
	pub, err := he.UnmarshalPublicBundle(bb)
	if err != nil {
		return nil, err
	}
	model, err := he.UnmarshalEncryptedModel(mb)
	if err != nil {
		return nil, err
	}
	p, err := he.PrepareModel(pub, model, md, bd)
	if err != nil {
		return nil, err
	}
	return p.MarshalBinary()
}

// heVendorError turns the errors a vendor can fix into a message without data.
func heVendorError(err error, groups, lanes int) (string, bool) {
	if groups > lanes {
		return fmt.Sprintf("%d groups reach k but the public bundle was made for at most %d; run veil he keygen --groups %d and encrypt the model again", groups, lanes, groups), true
	}
	return "", false
}

func prefixList(cols []string) string {
	if len(cols) == 0 {
		return ""
	}
	return strings.Join(cols, ", ") + ","
}

func keyValues(rec arrow.RecordBatch, n, r int) []*string {
	out := make([]*string, n)
	for i := range n {
		c := rec.Column(i).(*array.String)
		if c.IsNull(r) {
			continue
		}
		v := strings.Clone(c.Value(r)) // Value aliases the batch's buffer, which is released
		out[i] = &v
	}
	return out
}

// appendKey appends row r's keys to b as keyString spells them.
func appendKey(b []byte, cols []*array.String, r int) []byte {
	for _, c := range cols {
		if c.IsNull(r) {
			b = append(b, "\x00N"...)
		} else {
			b = append(b, "\x00S"...)
			b = append(b, c.Value(r)...)
		}
	}
	return b
}

// keyString joins keys unambiguously (a NULL differs from every string).
func keyString(ks []*string) string {
	var b strings.Builder
	for _, k := range ks {
		if k == nil {
			b.WriteString("\x00N")
		} else {
			b.WriteString("\x00S")
			b.WriteString(*k)
		}
	}
	return b.String()
}
