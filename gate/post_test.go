package gate

import (
	"bytes"
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/ledger"
)

// TestDPPostProcessing: a sum of a column whose bounds are non-negative is never released
// below 0, nor its interval; with a bound below 0 the same noise does go negative. An
// average's report gives each released value its own noise scale, the sum's over its count.
func TestDPPostProcessing(t *testing.T) {
	sc, v := gateFixture(t)
	ctx := context.Background()
	exact := func(q string, opt engine.DPOptions) (*engine.Plan, func() (negative int, rep DPReport)) {
		plan, err := v.ValidateDP(ctx, q, sc, opt)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := engine.Run(ctx, &engine.Job{SQL: plan.SQL, Tables: sc.Tables, Threads: 1, MaxResultBytes: 1 << 20, Secret: 1}, &buf); err != nil {
			t.Fatal(err)
		}
		rec, err := engine.ReadResult(&buf, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rec.Release)
		spend, _ := ledger.Spend(opt.Epsilon, 0)
		return plan, func() (int, DPReport) {
			out, rep, err := DP(rec, plan, spend)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Release()
			neg := 0
			for c := 1; c <= 3; c++ { // the sum and its interval
				col := out.Column(c).(*array.Float64)
				for r := 0; r < col.Len(); r++ {
					if col.Value(r) < 0 {
						neg++
					}
				}
			}
			return neg, rep
		}
	}
	// Nobody is over 200: every exact sum is 0, and the noise alone decides the sign.
	const q = "SELECT district, SUM(age) AS s FROM residents WHERE age > 200 GROUP BY district"
	_, release := exact(q, engine.DPOptions{Epsilon: 0.1})
	_, signed := exact(q, engine.DPOptions{Epsilon: 0.1, Bounds: map[string][2]float64{"age": {-10, 120}}})
	negative, signedNegative := 0, 0
	var rep DPReport
	for range 25 {
		n, r := release()
		negative += n
		rep = r
		n, _ = signed()
		signedNegative += n
	}
	if negative != 0 {
		t.Errorf("a sum of non-negative values was released below 0 %d times", negative)
	}
	if signedNegative == 0 {
		t.Errorf("with a negative lower bound no value was ever below 0: the test cannot tell clamping from none")
	}
	if rep.Columns[0].Clamped != "at least 0" {
		t.Errorf("report %+v does not say the sum was clamped", rep.Columns[0])
	}

	_, mean := exact("SELECT district, AVG(age) AS m FROM residents GROUP BY district", engine.DPOptions{Epsilon: 2})
	_, r := mean()
	c := r.Columns[0]
	if len(c.ValueScales) != 4 {
		t.Fatalf("average: %d value scales for 4 groups", len(c.ValueScales))
	}
	// north has 60 persons: its average's scale is about the sum's over 60.
	if got := c.ValueScales[1]; !(got < c.Scale/30 && got > c.Scale/120) {
		t.Errorf("north's average has noise scale %g; the sum's is %g over about 60 values", got, c.Scale)
	}
}
