package gate

import (
	"fmt"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/ledger"
)

// Forecast says how DP would release a dp plan's result if spend were charged: each
// aggregate's share, mechanism, noise scale and 95% interval half-width, and the group size
// partition selection would likely release. It is made from the plan alone, with the
// budget split DP uses: it reads no data and spends nothing.
func Forecast(plan *engine.Plan, spend ledger.Amount) ([]api.PlanAggregate, *api.PlanSelection, error) {
	p := plan.DP
	if p == nil {
		return nil, nil, fmt.Errorf("dp forecast: not a dp plan")
	}
	selection, eps, aggDelta, selDelta, err := split(p, spend)
	if err != nil {
		return nil, nil, err
	}
	noise := dp.Noise(p.Noise)
	var aggs []api.PlanAggregate
	for _, a := range p.Aggs {
		li := lInf(p, a)
		pa := api.PlanAggregate{Column: a.Name, Aggregate: a.Kind, Source: a.Column, Mechanism: p.Noise, Epsilon: eps, Delta: aggDelta, MaxContribution: li}
		if a.Kind != engine.AggCount && a.Kind != engine.AggCountUnits {
			lo, hi := a.Lower, a.Upper
			pa.Lower, pa.Upper = &lo, &hi
		}
		var hw float64
		switch a.Kind {
		case engine.AggCount, engine.AggCountUnits, engine.AggSum:
			pa.Scale = dp.Scale(noise, p.MaxGroups, li, eps, aggDelta)
			hw, err = dp.HalfWidth(noise, p.MaxGroups, li, eps, aggDelta, dp.Alpha, a.Kind != engine.AggSum)
			pa.HalfWidth = &hw
		case engine.AggAvg:
			// As Mean: the sum component gets half the share.
			d := aggDelta
			if noise != dp.Gaussian {
				d = 0
			}
			pa.Scale = dp.Scale(noise, p.MaxGroups, li, eps/2, d/2)
			hw, err = dp.MeanHalfWidth(noise, p.MaxGroups, p.MaxRows, a.Lower, a.Upper, eps, aggDelta)
			pa.HalfWidthTimesN = &hw
		case engine.AggQuantile:
			pa.Mechanism += " quantile tree"
			pa.Scale = dp.Scale(noise, p.MaxGroups*4, 1, eps, aggDelta)
		}
		if err != nil {
			return nil, nil, err
		}
		aggs = append(aggs, pa)
	}
	if !selection {
		return aggs, nil, nil
	}
	likely, sure, err := dp.SelectionSizes(p.MaxGroups, eps, selDelta)
	if err != nil {
		return nil, nil, err
	}
	return aggs, &api.PlanSelection{Epsilon: eps, Delta: selDelta, MaxGroups: p.MaxGroups, LikelyUnits: likely, AlmostSurelyUnits: sure}, nil
}
