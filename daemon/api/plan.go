package api

// PlanJob asks what a job would do and spend (POST /v1/jobs/plan): the request is a job's.
// Nothing runs, no data is read and no budget is spent.

// JobPlan is a job's plan: its validated query, what it would spend and what would remain,
// and how noisy each released value would be. It depends on the query, the grant and the
// catalog only, never on the data.
type JobPlan struct {
	Grant    string   `json:"grant"`
	Mode     string   `json:"mode"`
	SQL      string   `json:"sql"` // the query as validated
	Datasets []string `json:"datasets"`
	// Spend is what the job would spend (dp jobs); MaxQueryEpsilon the most one job may.
	Spend           *Amount `json:"spend,omitempty"`
	MaxQueryEpsilon float64 `json:"max_query_epsilon,omitempty"`
	// Budget is, per dataset the job reads, what the grant has left now and would have left
	// after the job.
	Budget []PlanBudget `json:"budget,omitempty"`
	// Aggregates say how each released value would be made (dp jobs).
	Aggregates []PlanAggregate `json:"aggregates,omitempty"`
	// Selection is the DP partition selection that decides which groups appear, when the
	// keys have no public domain.
	Selection *PlanSelection `json:"partition_selection,omitempty"`
	// K and RoundTo are a threshold job's rule: groups of fewer than K persons are
	// suppressed, counts rounded to RoundTo.
	K       int `json:"k,omitempty"`
	RoundTo int `json:"round_to,omitempty"`
	// Refusal, if set, is why submitting the job now would be refused (the budget); the
	// plan is still shown.
	Refusal string   `json:"refusal,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// PlanBudget is what a grant has left on one dataset, now and after the planned job.
type PlanBudget struct {
	Dataset   string `json:"dataset"`
	Remaining Amount `json:"remaining"`
	After     Amount `json:"after"`
}

// PlanAggregate is how one released aggregate would be made.
type PlanAggregate struct {
	Column    string  `json:"column"`    // the output column
	Aggregate string  `json:"aggregate"` // count, count_units, sum, avg, quantile
	Source    string  `json:"source,omitempty"`
	Mechanism string  `json:"mechanism"`
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta"`
	// Scale is the noise's scale (Laplace b, or the Gaussian's standard deviation); for an
	// average, that of its sum component (the average's own is that divided by its count).
	Scale float64 `json:"noise_scale"`
	// HalfWidth is the half-width of the released 95% interval (counts and sums). An
	// average's depends on its group's count n: at most about HalfWidthTimesN / n.
	HalfWidth       *float64 `json:"ci_half_width,omitempty"`
	HalfWidthTimesN *float64 `json:"ci_half_width_times_n,omitempty"`
	Lower           *float64 `json:"lower,omitempty"` // the clamping bounds
	Upper           *float64 `json:"upper,omitempty"`
	MaxContribution float64  `json:"max_contribution"` // per person and group
}

// PlanSelection is the partition selection of a plan: a group of at least LikelyUnits
// distinct persons is released with probability at least one half, one of at least
// AlmostSurelyUnits with probability at least 95%.
type PlanSelection struct {
	Epsilon           float64 `json:"epsilon"`
	Delta             float64 `json:"delta"`
	MaxGroups         int64   `json:"max_groups"`
	LikelyUnits       int64   `json:"likely_released_units"`
	AlmostSurelyUnits int64   `json:"almost_surely_released_units"`
}
