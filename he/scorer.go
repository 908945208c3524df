package he

import (
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	lhe "github.com/tuneinsight/lattigo/v5/he"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/bignum"
)

// maxOpenBatches bounds how many partially filled packing batches the
// logistic scorer keeps; when more would be needed (very unequal groups) the
// oldest one is encrypted half-empty.
const maxOpenBatches = 8

// Scorer computes encrypted per-group sums of model scores on the platform.
// It holds only public material. It is not safe for concurrent use: call Add
// from one goroutine (it uses the cores itself), then Finish once; Finish
// also stops the worker goroutines of a logistic scorer, so always call it.
//
// Layout: lanes = the next power of two >= groups (at least the bundle's
// lane width); slot s belongs to group s mod lanes, so each ciphertext holds
// up to slots/lanes rows of every group. After Finish, every slot s holds the
// sum of group s mod lanes.
//
// Uniform weights by construction (issue #12 item 9): a logistic scorer never
// uses the vendor's weight and bias ciphertexts as they are. It first replaces
// each by its lane average, R(w)[s] = (1/n) sum_r w[s mod lanes + r*lanes]
// with n = slots/lanes, computed with its own rotations (foldLanes); every row
// of a group then meets the same weights, whatever values a crafted ciphertext
// holds slot by slot, and the decrypted sums are a function of per-group
// aggregates only. An honest, replicated weight is unchanged by R. A linear
// scorer needs no R: rows never meet the weights there, only the clear
// per-group sums do (noised under differential privacy), so whatever a weight
// holds in a slot, that slot carries a function of its group's sums.
type Scorer struct {
	params      hefloat.Parameters
	pub         *PublicBundle
	model       *EncryptedModel
	groups      int
	lanes       int
	rowsPerLane int
	counts      []int64
	rep         *replication
	prepared    bool // rep came from a PreparedModel

	// linear models: per-group sums of each feature, aggregated in the clear
	// (the platform owns the data); one encrypted product at Finish.
	featSums   [][]float64
	countNoise []float64 // NoiseLinearInputs' noise on the counts, if any

	// logistic models: packing batches handed to the workers.
	logistic  *logisticState
	finished  bool
	totalRows int64

	// exactRounding turns the randomized rounding of the feature plaintexts off. Tests
	// only: it lets them measure the evaluation noise with every term data-dependent.
	exactRounding bool
}

// NewScorer prepares scoring of `groups` groups with an encrypted model.
// It checks that bundle and model belong to the same key set and that the
// bundle has every evaluation key the computation needs.
func NewScorer(pub *PublicBundle, m *EncryptedModel, groups int) (*Scorer, error) {
	return NewPreparedScorer(pub, m, nil, groups)
}

// NewPreparedScorer is NewScorer with the lane averages of a logistic model already
// computed (PrepareModel): the scorer takes them when prep was made for this bundle's key
// set, this model's shape and the lane width of `groups` groups (Prepared then reports
// true), and computes them itself otherwise, as NewScorer. The caller checks that prep is
// bound to the blobs m and pub were read from (PreparedModel.CheckBinding). prep may be nil.
func NewPreparedScorer(pub *PublicBundle, m *EncryptedModel, prep *PreparedModel, groups int) (*Scorer, error) {
	if pub == nil || m == nil {
		return nil, fmt.Errorf("%w: NewScorer needs a public bundle and an encrypted model", ErrInvalidInput)
	}
	if groups < 1 || groups > MaxGroups {
		return nil, fmt.Errorf("%w: groups must be between 1 and %d, got %d", ErrInvalidInput, MaxGroups, groups)
	}
	if m.header.KeyID != pub.keyID {
		return nil, fmt.Errorf("%w: the encrypted model was made for key ID %s but the public bundle is key ID %s; encrypt the model with this bundle's key set", ErrOtherKey, m.header.KeyID, pub.keyID)
	}
	params, _, err := Parameters()
	if err != nil {
		return nil, err
	}
	lanes := lanesFor(groups)
	if lanes < pub.lanes {
		lanes = pub.lanes
	}
	s := &Scorer{
		params: params, pub: pub, model: m, groups: groups, lanes: lanes,
		rowsPerLane: params.MaxSlots() / lanes, counts: make([]int64, groups),
	}
	if m.header.Kind == KindLinear {
		s.featSums = make([][]float64, groups)
		for g := range s.featSums {
			s.featSums[g] = make([]float64, len(m.weights))
		}
		return s, nil
	}
	if err := pub.checkRotations(lanes, groups); err != nil {
		return nil, err
	}
	if prep.fits(pub, m, lanes) {
		s.rep, s.prepared = readyReplication(params, prep), true
	} else {
		// The averaging runs in the background while the caller streams rows in; the
		// workers wait for it.
		s.rep = startReplication(params, pub.evaluationKeys(), m, lanes, workerCount())
	}
	if s.logistic, err = newLogisticState(s); err != nil {
		s.rep.wait()
		return nil, err
	}
	return s, nil
}

// workerCount is how many goroutines do encrypted work: the cores, at most 4.
func workerCount() int {
	return min(runtime.GOMAXPROCS(0), 4)
}

// replication computes the lane averages R(bias), R(w_j) of a model's ciphertexts on its
// own goroutines (see Scorer).
type replication struct {
	done    chan struct{}
	bias    *rlwe.Ciphertext
	weights []*rlwe.Ciphertext
	// mont holds the same averages in Montgomery form (bias first), for the workers'
	// lazy multiply-accumulate.
	mont [][2]ring.Poly
	err  error
}

func startReplication(params hefloat.Parameters, keys rlwe.EvaluationKeySet, m *EncryptedModel, lanes, workers int) *replication {
	r := &replication{done: make(chan struct{})}
	in := append([]*rlwe.Ciphertext{m.bias}, m.weights...)
	out := make([]*rlwe.Ciphertext, len(in))
	r.mont = make([][2]ring.Poly, len(in))
	errs := make([]error, workers)
	n := params.MaxSlots() / lanes
	base := hefloat.NewEvaluator(params, keys)
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		eval := base
		if k > 0 {
			eval = base.ShallowCopy()
		}
		wg.Add(1)
		go func(k int, eval *hefloat.Evaluator) {
			defer wg.Done()
			f := newFolder(eval)
			for i := k; i < len(in); i += workers {
				if out[i], errs[k] = laneAverage(eval, f, in[i], lanes, n); errs[k] != nil {
					return
				}
				ringQ := params.RingQ().AtLevel(out[i].Level())
				for c := range r.mont[i] {
					r.mont[i][c] = ringQ.NewPoly()
					ringQ.MForm(out[i].Value[c], r.mont[i][c])
				}
			}
		}(k, eval)
	}
	go func() {
		wg.Wait()
		r.bias, r.weights = out[0], out[1:]
		for _, err := range errs {
			if err != nil && r.err == nil {
				r.err = fmt.Errorf("he: averaging the model over its lanes failed: %w", err)
			}
		}
		close(r.done)
	}()
	return r
}

// fits reports whether p (nil: no) holds the lane averages a scorer of `lanes` lanes needs
// for m with pub's keys.
func (p *PreparedModel) fits(pub *PublicBundle, m *EncryptedModel, lanes int) bool {
	return p != nil && p.binding.Lanes == lanes && p.binding.KeyID == pub.keyID && p.binding.KeyID == m.header.KeyID &&
		len(p.weights) == len(m.weights) && m.header.Kind == KindLogistic
}

// readyReplication is the replication of a prepared model: already done.
func readyReplication(params hefloat.Parameters, p *PreparedModel) *replication {
	r := &replication{done: make(chan struct{}), bias: p.bias, weights: p.weights}
	in := append([]*rlwe.Ciphertext{p.bias}, p.weights...)
	r.mont = make([][2]ring.Poly, len(in))
	for i, ct := range in {
		ringQ := params.RingQ().AtLevel(ct.Level())
		for c := range r.mont[i] {
			r.mont[i][c] = ringQ.NewPoly()
			ringQ.MForm(ct.Value[c], r.mont[i][c])
		}
	}
	close(r.done)
	return r
}

// Prepared reports whether the scorer took its lane averages from a PreparedModel.
func (s *Scorer) Prepared() bool { return s.prepared }

// wait blocks until the averages are ready.
func (r *replication) wait() error {
	<-r.done
	return r.err
}

// laneAverage returns R(ct): every slot holds the sum of its lane's n slots, and the
// scale is multiplied by n (a power of two, so exactly) to read it as their mean. No level
// is consumed; the scale is compensated where the average meets a plaintext (see
// featureScale).
func laneAverage(eval *hefloat.Evaluator, f *folder, ct *rlwe.Ciphertext, lanes, n int) (*rlwe.Ciphertext, error) {
	out := hefloat.NewCiphertext(*eval.GetParameters(), 1, ct.Level())
	if err := foldLanes(eval, f, ct, lanes, n, out); err != nil {
		return nil, err
	}
	out.Scale = ct.Scale.Mul(rlwe.NewScale(float64(n)))
	return out, nil
}

// foldLanes sets out to the sum of ct's rotations by 0, lanes, ..., (n-1)*lanes (n a power
// of two, n*lanes = slots): every slot then holds the sum of its lane. It is lattigo's
// InnerSum by doubling, with plain rotations, which use each key at the special primes
// it was made with (InnerSum's hoisted rotations assume keys modulo the whole P). With
// keys as keys.go makes them, f (made from eval; nil: made here) does the rotations more
// cheaply (see folder).
func foldLanes(eval *hefloat.Evaluator, f *folder, ct *rlwe.Ciphertext, lanes, n int, out *rlwe.Ciphertext) error {
	if f == nil {
		f = newFolder(eval)
	}
	if out != ct && f.usable(lanes, n, ct.Level()) {
		return f.fold(ct, lanes, n, out)
	}
	return rotateFold(eval, ct, lanes, n, out)
}

// rotateFold is foldLanes with lattigo's rotations.
func rotateFold(eval *hefloat.Evaluator, ct *rlwe.Ciphertext, lanes, n int, out *rlwe.Ciphertext) error {
	params := *eval.GetParameters()
	if out != ct {
		out.Resize(ct.Degree(), ct.Level())
		out.Copy(ct)
	}
	tmp := hefloat.NewCiphertext(params, 1, ct.Level())
	for r := lanes; r < lanes*n; r <<= 1 {
		if err := eval.Rotate(out, r, tmp); err != nil {
			return err
		}
		if err := eval.Add(out, tmp, out); err != nil {
			return err
		}
	}
	return nil
}

// featureScale is the scale of the feature plaintexts multiplied into the averaged model,
// Q7 / n: the model is at 2^46, its average at 2^46 * n, and the product then rescales (by
// Q7) to 2^46, where the sigmoid starts. It costs the features log2(n) bits of their 46,
// which the randomized rounding makes independent of the data (see roundingSigma).
func (s *Scorer) featureScale() rlwe.Scale {
	return rlwe.NewScale(s.params.Q()[topLevel]).Div(rlwe.NewScale(float64(s.rowsPerLane)))
}

// Groups returns the number of groups.
func (s *Scorer) Groups() int { return s.groups }

// Add scores a columnar batch: group[i] is the group of row i and z[j][i] is
// feature j of row i, already clamped and scaled to [-1, 1] (feature order
// as in the model header). The batch is refused as a whole if any value is
// NaN or outside [-1, 1]; the error names the feature, never the value.
func (s *Scorer) Add(group []int32, z [][]float64) error {
	if s.finished {
		return fmt.Errorf("%w: Add after Finish; create a new Scorer", ErrState)
	}
	if err := s.checkBatch(group, z); err != nil {
		return err
	}
	if s.logistic != nil {
		if err := s.logistic.err(); err != nil {
			return err
		}
	}
	for i, g := range group {
		s.counts[g]++
		if s.featSums != nil {
			for j := range z {
				s.featSums[g][j] += z[j][i]
			}
			continue
		}
		s.logistic.place(int(g), i, z)
	}
	s.totalRows += int64(len(group))
	return nil
}

func (s *Scorer) checkBatch(group []int32, z [][]float64) error {
	names := s.model.header.Features
	if len(z) != len(names) {
		return fmt.Errorf("%w: got %d feature columns, the model has %d (%s first)", ErrInvalidInput, len(z), len(names), names[0].Name)
	}
	for j, col := range z {
		if len(col) != len(group) {
			return fmt.Errorf("%w: feature %q has %d values for %d rows", ErrInvalidInput, names[j].Name, len(col), len(group))
		}
		for i, v := range col {
			if !(v >= -1 && v <= 1) { // also false for NaN
				return fmt.Errorf("%w: feature %q, row %d of this batch: value is NaN or outside [-1, 1]; clamp to the public bounds and scale as (clamp(x) - c) / h before scoring", ErrInvalidInput, names[j].Name, i)
			}
		}
	}
	for i, g := range group {
		if g < 0 || int(g) >= s.groups {
			return fmt.Errorf("%w: row %d of this batch has group %d, expected 0..%d", ErrInvalidInput, i, g, s.groups-1)
		}
	}
	return s.checkGroupSizes(group)
}

// checkGroupSizes refuses a batch that would take a group past
// MaxGroupRows (the output level's capacity for linear sums).
func (s *Scorer) checkGroupSizes(group []int32) error {
	if s.totalRows+int64(len(group)) <= MaxGroupRows {
		return nil
	}
	add := make(map[int32]int64)
	for _, g := range group {
		add[g]++
	}
	for g, n := range add {
		if s.counts[g]+n > MaxGroupRows {
			return fmt.Errorf("%w: group %d would exceed %d rows; split it into several groups", ErrInvalidInput, g, MaxGroupRows)
		}
	}
	return nil
}

// NoiseLinearInputs adds noise to a linear scorer's clear inputs before they
// meet the encrypted weights: featNoise[g][j] to group g's sum of feature j,
// countNoise[g] to its row count (the bias's multiplier). The platform draws
// the noise (differential privacy of the per-group feature sums); the
// encrypted output is then a function of noisy statistics, whatever the
// weights. Call it after the last Add and before Finish.
func (s *Scorer) NoiseLinearInputs(featNoise [][]float64, countNoise []float64) error {
	if s.finished || s.featSums == nil {
		return fmt.Errorf("%w: NoiseLinearInputs is for a linear scorer before Finish", ErrState)
	}
	if len(featNoise) != s.groups || len(countNoise) != s.groups {
		return fmt.Errorf("%w: noise for %d and %d groups, the scorer has %d", ErrInvalidInput, len(featNoise), len(countNoise), s.groups)
	}
	for g := range featNoise {
		if len(featNoise[g]) != len(s.featSums[g]) || !finite(countNoise[g]) {
			return fmt.Errorf("%w: the noise of group %d does not fit the features", ErrInvalidInput, g)
		}
		for j, v := range featNoise[g] {
			if !finite(v) {
				return fmt.Errorf("%w: the noise of group %d is not finite", ErrInvalidInput, g)
			}
			s.featSums[g][j] += v
		}
	}
	s.countNoise = countNoise
	return nil
}

// Finish waits for the encryption work and returns the encrypted per-group
// sums. Call it once; flood the result before export.
func (s *Scorer) Finish() (*EncryptedSums, error) {
	if s.finished {
		return nil, fmt.Errorf("%w: Finish called twice; create a new Scorer", ErrState)
	}
	s.finished = true
	var ct *rlwe.Ciphertext
	var noise float64
	var err error
	if s.featSums != nil {
		ct, noise, err = s.finishLinear()
	} else {
		ct, noise, err = s.logistic.finish()
	}
	if s.rep != nil {
		if rerr := s.rep.wait(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return nil, err
	}
	return &EncryptedSums{
		params: s.params, pk: s.pub.pk, keyID: s.pub.keyID, kind: s.model.header.Kind,
		groups: s.groups, lanes: s.lanes, ct: ct, evalNoise: noise, degree: s.model.header.Degree,
	}, nil
}

// periodic spreads per-group values over the layout: slot s gets
// f(s mod lanes) when that is a real group, 0 otherwise.
func (s *Scorer) periodic(f func(g int) float64) []float64 {
	return periodicVector(s.params.MaxSlots(), s.lanes, s.groups, f)
}

func periodicVector(slots, lanes, groups int, f func(g int) float64) []float64 {
	v := make([]float64, slots)
	for i := range v {
		if g := i % lanes; g < groups {
			v[i] = f(g)
		}
	}
	return v
}

// finishLinear computes sum_j W_j * S_gj + B * n_g in one plaintext-
// ciphertext multiply-add, where S_gj is the clear per-group sum of z_j: the
// same result as summing per-row scores, at a fraction of the cost. The
// clear sums are divided by 2^k (k = bits of the largest group) before
// encoding and the product is multiplied back by the integer 2^k.
func (s *Scorer) finishLinear() (*rlwe.Ciphertext, float64, error) {
	vecs, div, k := s.linearInputs()
	ecd, err := newPlainEncoder(s.params)
	if err != nil {
		return nil, 0, err
	}
	eval := hefloat.NewEvaluator(s.params, nil)
	pt := hefloat.NewPlaintext(s.params, linearLevel)
	pt.Scale = rlwe.NewScale(s.params.Q()[linearLevel])
	acc := hefloat.NewCiphertext(s.params, 1, linearLevel)
	acc.Scale = s.model.bias.Scale.Mul(pt.Scale)
	mulAdd := func(values []float64, w *rlwe.Ciphertext) error {
		// Deterministic rounding: these plaintexts carry only per-group sums.
		if err := ecd.encode(values, pt, false); err != nil {
			return err
		}
		return eval.MulThenAdd(w, pt, acc)
	}
	for j, w := range s.model.weights {
		if err := mulAdd(vecs[j], w); err != nil {
			return nil, 0, fmt.Errorf("he: linear scoring failed: %w", err)
		}
	}
	if err := mulAdd(vecs[len(vecs)-1], s.model.bias); err != nil {
		return nil, 0, fmt.Errorf("he: linear scoring failed: %w", err)
	}
	out := hefloat.NewCiphertext(s.params, 1, linearOutLevel)
	if err := eval.Rescale(acc, out); err != nil {
		return nil, 0, fmt.Errorf("he: linear scoring failed: %w", err)
	}
	if err := eval.Mul(out, int(div), out); err != nil {
		return nil, 0, fmt.Errorf("he: linear scoring failed: %w", err)
	}
	return out, linearNoiseStd(k), nil
}

// linearInputs returns the slot vectors the linear scorer encodes, one per feature and
// then the (noisy) counts, each divided by div = 2^k, the power of two above the largest.
func (s *Scorer) linearInputs() (vecs [][]float64, div float64, k int) {
	counts := make([]float64, len(s.counts))
	var maxCount int64 = 1
	for g, c := range s.counts {
		counts[g] = float64(c)
		if s.countNoise != nil {
			counts[g] += s.countNoise[g]
		}
		if m := int64(math.Ceil(math.Abs(counts[g]))); m > maxCount {
			maxCount = m
		}
	}
	for g := range s.featSums {
		for _, v := range s.featSums[g] {
			if m := int64(math.Ceil(math.Abs(v))); m > maxCount {
				maxCount = m
			}
		}
	}
	k = bits.Len64(uint64(maxCount))
	div = math.Ldexp(1, k)
	for j := range s.model.weights {
		vecs = append(vecs, s.periodic(func(g int) float64 { return s.featSums[g][j] / div }))
	}
	vecs = append(vecs, s.periodic(func(g int) float64 { return counts[g] / div }))
	return vecs, div, k
}

// logisticState packs rows into batches and runs the HE work on workers.
type logisticState struct {
	s         *Scorer
	open      []*batch
	firstFree []int // per group: index in open of the first batch with room
	spare     chan *batch
	work      chan *batch
	workers   []*worker
	wg        sync.WaitGroup
	mu        sync.Mutex
	firstErr  error
	batches   int64
}

type batch struct {
	z         [][]float64 // [feature][slot]
	mask      []float64
	fill      []int // rows per lane
	fullLanes int
}

func newLogisticState(s *Scorer) (*logisticState, error) {
	n := workerCount()
	ls := &logisticState{
		s: s, firstFree: make([]int, s.groups),
		spare: make(chan *batch, maxOpenBatches+2*n+2), work: make(chan *batch, n),
	}
	base, err := newWorker(s, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		w := base
		if i > 0 {
			if w, err = newWorker(s, base.eval); err != nil {
				close(ls.work)
				ls.wg.Wait()
				return nil, err
			}
		}
		ls.workers = append(ls.workers, w)
		ls.wg.Add(1)
		go ls.run(w)
	}
	return ls, nil
}

func (ls *logisticState) run(w *worker) {
	defer ls.wg.Done()
	if err := ls.s.rep.wait(); err != nil {
		ls.setErr(err)
	}
	for b := range ls.work {
		if ls.err() == nil {
			if err := w.process(b); err != nil {
				ls.setErr(err)
			}
		}
		ls.recycle(b)
	}
}

func (ls *logisticState) err() error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.firstErr
}

func (ls *logisticState) setErr(err error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.firstErr == nil {
		ls.firstErr = err
	}
}

func (ls *logisticState) newBatch() *batch {
	select {
	case b := <-ls.spare:
		return b
	default:
	}
	slots := ls.s.params.MaxSlots()
	b := &batch{z: make([][]float64, len(ls.s.model.weights)), mask: make([]float64, slots), fill: make([]int, ls.s.lanes)}
	for j := range b.z {
		b.z[j] = make([]float64, slots)
	}
	return b
}

func (ls *logisticState) recycle(b *batch) {
	for j := range b.z {
		clear(b.z[j])
	}
	clear(b.mask)
	clear(b.fill)
	b.fullLanes = 0
	select {
	case ls.spare <- b:
	default:
	}
}

// place writes row i of z into the first open batch with room in lane g.
func (ls *logisticState) place(g, i int, z [][]float64) {
	idx := ls.firstFree[g]
	if idx == len(ls.open) {
		if len(ls.open) == maxOpenBatches {
			ls.flushOldest()
			idx--
		}
		ls.open = append(ls.open, ls.newBatch())
	}
	b := ls.open[idx]
	slot := g + b.fill[g]*ls.s.lanes
	for j := range z {
		b.z[j][slot] = z[j][i]
	}
	b.mask[slot] = 1
	b.fill[g]++
	if b.fill[g] == ls.s.rowsPerLane {
		b.fullLanes++
		ls.firstFree[g] = idx + 1
	}
	if idx == 0 && b.fullLanes == ls.s.groups {
		ls.flushOldest()
	}
}

// flushOldest hands open[0] to the workers; groups pointing past it move
// down by one, groups pointing at it now point at the next batch (whose lane
// for them is still empty, since each group fills batches in order).
func (ls *logisticState) flushOldest() {
	b := ls.open[0]
	ls.open = ls.open[1:]
	for g, f := range ls.firstFree {
		if f > 0 {
			ls.firstFree[g] = f - 1
		}
	}
	ls.batches++
	ls.work <- b
}

func (ls *logisticState) finish() (*rlwe.Ciphertext, float64, error) {
	for len(ls.open) > 0 {
		ls.flushOldest()
	}
	close(ls.work)
	ls.wg.Wait()
	if err := ls.err(); err != nil {
		return nil, 0, err
	}
	s := ls.s
	eval := ls.workers[0].eval
	var total *rlwe.Ciphertext
	for _, w := range ls.workers {
		if w.total == nil {
			continue
		}
		if total == nil {
			total = w.total
		} else if err := eval.Add(total, w.total, total); err != nil {
			return nil, 0, fmt.Errorf("he: adding the workers' totals failed: %w", err)
		}
	}
	if total == nil {
		total = rlwe.NewEncryptor(s.params, s.pub.pk).EncryptZeroNew(outLevel)
		total.Scale = rlwe.NewScale(math.Exp2(logisticOutLogScale))
	} else if err := finishSigmoid(eval, total); err != nil {
		return nil, 0, err
	}
	out := hefloat.NewCiphertext(s.params, 1, outLevel)
	if err := foldLanes(eval, nil, total, s.lanes, s.params.MaxSlots()/s.lanes, out); err != nil {
		return nil, 0, fmt.Errorf("he: per-group sum failed: %w", err)
	}
	half := s.periodic(func(g int) float64 { return 0.5 * float64(s.counts[g]) })
	if err := eval.Add(out, half, out); err != nil {
		return nil, 0, fmt.Errorf("he: adding the sigmoid constant failed: %w", err)
	}
	return out, logisticNoiseStd(ls.batches, s.params.MaxSlots()/s.lanes), nil
}

// worker owns one evaluator, encoder and running total.
type worker struct {
	s     *Scorer
	eval  *hefloat.Evaluator
	ecd   *plainEncoder
	poly  hefloat.Polynomial
	pe    *hefloat.PolynomialEvaluator
	rs    *rescaler // lattigo's Rescale on fastNTT
	pt    *rlwe.Plaintext
	acc   *rlwe.Ciphertext
	lin   *rlwe.Ciphertext
	total *rlwe.Ciphertext
	// fullBias is R(bias) times the mask of a full batch (every real lane full), reduced:
	// the one plaintext that is the same in every full batch, encoded once (nil until the
	// worker's first full batch).
	fullBias []ring.Poly
}

// newWorker makes a worker; from, when set, is an evaluator whose keys and read-only
// tables it shares (lattigo evaluators are not safe for concurrent use, their shallow
// copies are).
func newWorker(s *Scorer, from *hefloat.Evaluator) (*worker, error) {
	eval := from
	if eval == nil {
		eval = hefloat.NewEvaluator(s.params, s.pub.evaluationKeys())
	} else {
		eval = eval.ShallowCopy()
	}
	ecd, err := newPlainEncoder(s.params)
	if err != nil {
		return nil, err
	}
	p := s.params
	h := s.model.header
	w := &worker{s: s, eval: eval, ecd: ecd}
	w.poly = hefloat.NewPolynomial(sigmoidOdd(h.InputRange, h.Degree))
	// Not Lazy: lattigo v5.0.7's lazy baby-step powers give wrong results here (measured
	// errors of 1e14 on this polynomial).
	rr, err := newRelinRescaler(p, eval)
	if err != nil {
		return nil, err
	}
	w.pe = &hefloat.PolynomialEvaluator{Parameters: p, EvaluatorForPolynomial: lazyTail{Evaluator: w.eval, rr: rr, t: newTensorer(w.eval)}}
	w.rs = rr.rs
	w.pt = hefloat.NewPlaintext(p, topLevel)
	w.pt.Scale = s.featureScale()
	w.acc = hefloat.NewCiphertext(p, 1, topLevel)
	w.lin = hefloat.NewCiphertext(p, 1, polyLevel)
	return w, nil
}

// process computes sigmoid(B*mask + sum_j W_j z_j) - 0.5 for every slot of
// the batch and adds it to the worker's running total. The multiply-adds are lazy: each
// product of an average in Montgomery form by a plaintext from a lazy NTT is below 2q,
// the 17 of them below 34q < 2^52, reduced once. A full batch starts from fullBias
// (below q) instead of the bias's product.
func (w *worker) process(b *batch) error {
	m := w.s.rep
	ringQ := w.s.params.RingQ().AtLevel(topLevel)
	acc0, acc1 := w.acc.Value[0], w.acc.Value[1]
	w.acc.Scale = m.bias.Scale.Mul(w.pt.Scale)
	full := b.fullLanes == w.s.groups
	if full {
		if w.fullBias == nil {
			if err := w.encodeFullBias(b.mask); err != nil {
				return err
			}
		}
		acc0.Copy(w.fullBias[0])
		acc1.Copy(w.fullBias[1])
	} else {
		acc0.Zero()
		acc1.Zero()
	}
	for j := range m.weights {
		if err := w.mulAdd(b.z[j], m.mont[j+1]); err != nil {
			return err
		}
	}
	if !full {
		if err := w.mulAdd(b.mask, m.mont[0]); err != nil {
			return err
		}
	}
	ringQ.Reduce(acc0, acc0)
	ringQ.Reduce(acc1, acc1)
	if err := w.rs.rescale(w.acc, w.lin); err != nil {
		return fmt.Errorf("he: rescale failed: %w", err)
	}
	// out is the sigmoid before its last relinearization and rescale (lazyTail): the
	// batches' outputs are added as they are, and Finish does both once on the total.
	out, err := w.pe.Evaluate(w.lin, w.poly, rlwe.NewScale(math.Exp2(logisticOutLogScale)))
	if err != nil {
		return fmt.Errorf("he: sigmoid evaluation failed: %w", err)
	}
	if w.total == nil {
		w.total = out
		return nil
	}
	return w.eval.Add(w.total, out, w.total)
}

// encodeFullBias sets w.fullBias from the mask of a full batch. That mask holds no row,
// only the layout (1 in every slot of a real group's lane): encoding it once per worker
// instead of once per batch changes no value the vendor can read, only makes its rounding
// residual, still randomized and independent of the data (roundingSigma), the same in every
// full batch.
func (w *worker) encodeFullBias(mask []float64) error {
	if err := w.ecd.encodeLazy(mask, w.pt, !w.s.exactRounding); err != nil {
		return fmt.Errorf("he: encoding a batch failed: %w", err)
	}
	ringQ := w.s.params.RingQ().AtLevel(topLevel)
	bias := w.s.rep.mont[0]
	w.fullBias = []ring.Poly{ringQ.NewPoly(), ringQ.NewPoly()}
	for c := range w.fullBias {
		ringQ.MulCoeffsMontgomeryLazy(bias[c], w.pt.Value, w.fullBias[c])
		ringQ.Reduce(w.fullBias[c], w.fullBias[c])
	}
	return nil
}

func (w *worker) mulAdd(values []float64, ct [2]ring.Poly) error {
	if err := w.ecd.encodeLazy(values, w.pt, !w.s.exactRounding); err != nil {
		return fmt.Errorf("he: encoding a batch failed: %w", err)
	}
	ringQ := w.s.params.RingQ().AtLevel(topLevel)
	ringQ.MulCoeffsMontgomeryLazyThenAddLazy(ct[0], w.pt.Value, w.acc.Value[0])
	ringQ.MulCoeffsMontgomeryLazyThenAddLazy(ct[1], w.pt.Value, w.acc.Value[1])
	return nil
}

// lazyTail is lattigo's evaluator for polynomials (hefloat.NewPolynomialEvaluator)
// without the last relinearization and rescale of the Paterson-Stockmeyer evaluation
// (lattigo he.EvaluatePatersonStockmeyerPolynomialVector, v5.0.7, of which this is a copy
// up to that step): its output is a degree-2 ciphertext one level above outLevel, at the
// target scale times that level's prime. Every batch's output has the same level and
// scale, so a worker adds them up as they are and finishSigmoid relinearizes and rescales
// the total once: a key switch and a rescale per job instead of per batch, and their
// noise once.
//
// It also relinearizes and rescales the power basis's products in one step (relinRescaler):
// MulRelinNew, which only lattigo's power basis calls here, leaves its product of degree 2,
// and Rescale, which that power basis calls on every product before using it, relinearizes
// and rescales it at once.
//
// The products of two ciphertexts (the power basis's and the giant steps') run on IFMA where
// the CPU has it (tensorer), with lattigo's results.
type lazyTail struct {
	lhe.Evaluator
	rr *relinRescaler
	t  *tensorer
}

// mul is the evaluator's Mul of a ciphertext by an operand.
func (e lazyTail) mul(op0 *rlwe.Ciphertext, op1 rlwe.Operand, out *rlwe.Ciphertext) error {
	if ct, ok := op1.(*rlwe.Ciphertext); ok && e.t != nil {
		if done, err := e.t.mul(op0, ct, out); done {
			return err
		}
	}
	return e.Evaluator.Mul(op0, op1, out)
}

// Mul is the evaluator's Mul, on IFMA for two ciphertexts.
func (e lazyTail) Mul(op0 *rlwe.Ciphertext, op1 rlwe.Operand, out *rlwe.Ciphertext) error {
	return e.mul(op0, op1, out)
}

// MulRelinNew is MulNew when the fused rescale can take the product (see lazyTail).
func (e lazyTail) MulRelinNew(op0 *rlwe.Ciphertext, op1 rlwe.Operand) (*rlwe.Ciphertext, error) {
	ct := hefloat.NewCiphertext(e.rr.params, op0.Degree(), op0.Level())
	err := e.mul(op0, op1, ct)
	if err != nil || e.rr.handles(ct) {
		return ct, err
	}
	return ct, e.Evaluator.Relinearize(ct, ct)
}

// Rescale relinearizes and rescales a product MulRelinNew left of degree 2.
func (e lazyTail) Rescale(op0, op1 *rlwe.Ciphertext) error {
	if e.rr.handles(op0) {
		e.rr.relinRescale(op0, op1)
		return nil
	}
	return e.rr.rs.rescale(op0, op1)
}

func (e lazyTail) EvaluatePatersonStockmeyerPolynomialVector(poly lhe.PatersonStockmeyerPolynomialVector, pb lhe.PowerBasis) (*rlwe.Ciphertext, error) {
	cg := lhe.CoefficientGetter[*bignum.Complex](&hefloat.CoefficientGetter{Values: make([]*bignum.Complex, pb.Value[1].Slots())})
	split := len(poly.Value[0].Value)
	babySteps := make([]*lhe.BabyStep, split)
	for i := range babySteps {
		var err error
		if babySteps[split-i-1], err = lhe.EvaluateBabyStep(i, e, poly, cg, pb); err != nil {
			return nil, fmt.Errorf("cannot EvaluateBabyStep: %w", err)
		}
	}
	for len(babySteps) != 1 {
		giantSteps := make([]int, len(babySteps))
		for i := 0; i < len(babySteps); i++ {
			if i == len(babySteps)-1 {
				giantSteps[i] = 2
			} else if babySteps[i].Degree == babySteps[i+1].Degree {
				giantSteps[i] = 1
				i++
			}
		}
		for i := 0; i < len(babySteps); i++ {
			if err := e.giantStep(i, giantSteps, babySteps, pb); err != nil {
				return nil, err
			}
		}
		idx := 0
		for i := range babySteps {
			if babySteps[i] != nil {
				babySteps[idx] = babySteps[i]
				idx++
			}
		}
		babySteps = babySteps[:idx]
	}
	return babySteps[0].Value, nil
}

// giantStep is lattigo's he.EvaluateGianStep (v5.0.7) with its monomial's relinearization
// and rescale fused (relinRescaler).
func (e lazyTail) giantStep(i int, giantSteps []int, babySteps []*lhe.BabyStep, pb lhe.PowerBasis) error {
	switch giantSteps[i] {
	case 2:
		babySteps[i].Degree = babySteps[i-1].Degree
	case 1:
		even, odd := babySteps[i], babySteps[i+1]
		deg := 1 << bits.Len64(uint64(babySteps[i].Degree))
		if err := e.monomial(even.Value, odd.Value, pb.Value[deg]); err != nil {
			return err
		}
		odd.Degree = 2*deg - 1
		babySteps[i] = nil
	}
	return nil
}

// monomial sets b to a + b*xpow (lattigo's he.EvaluateMonomial).
func (e lazyTail) monomial(a, b, xpow *rlwe.Ciphertext) error {
	if e.rr.handles(b) {
		e.rr.relinRescale(b, b)
	} else {
		if b.Degree() == 2 {
			if err := e.Evaluator.Relinearize(b, b); err != nil {
				return fmt.Errorf("evalMonomial: %w", err)
			}
		}
		if err := e.rr.rs.rescale(b, b); err != nil {
			return fmt.Errorf("evalMonomial: %w", err)
		}
	}
	if err := e.mul(b, xpow, b); err != nil {
		return fmt.Errorf("evalMonomial: %w", err)
	}
	if !a.Scale.InDelta(b.Scale, float64(rlwe.ScalePrecision-12)) {
		return fmt.Errorf("evalMonomial: scale discrepancy: (rescale(b) * X^{n}).Scale = %v != a.Scale = %v", &a.Scale.Value, &b.Scale.Value)
	}
	return e.Evaluator.Add(b, a, b)
}

// finishSigmoid does on the sum of lazyTail's outputs what lattigo does on each: relinearize
// and rescale, down to outLevel.
func finishSigmoid(eval *hefloat.Evaluator, total *rlwe.Ciphertext) error {
	if total.Degree() == 2 {
		if err := eval.Relinearize(total, total); err != nil {
			return fmt.Errorf("he: relinearizing the sigmoid total failed: %w", err)
		}
	}
	if err := eval.Rescale(total, total); err != nil {
		return fmt.Errorf("he: rescaling the sigmoid total failed: %w", err)
	}
	if total.Level() > outLevel {
		eval.DropLevel(total, total.Level()-outLevel)
	}
	return nil
}
