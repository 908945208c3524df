package runner

import "github.com/veil-dp/veil/he"

// Score is what an he-score job runs; it is stored with the job and passed to the runner.
type Score struct {
	Dataset    string             `json:"dataset"`
	GroupBy    []string           `json:"group_by"`
	Features   []he.PublicFeature `json:"features"`
	Unit       string             `json:"unit"`
	K          int                `json:"k"`
	Model      string             `json:"model"`  // blob digest
	Bundle     string             `json:"bundle"` // blob digest
	KeyID      string             `json:"key_id"`
	Kind       string             `json:"kind"` // linear or logistic
	Degree     int                `json:"degree,omitempty"`
	InputRange float64            `json:"input_range,omitempty"`
	ScoreBound float64            `json:"score_bound"`
	// DP, when set, replaces the k threshold by differential privacy: partition selection
	// for the groups, noisy row counts, and noise added to the encrypted sums.
	DP *ScoreDP `json:"dp,omitempty"`
}

// ScoreDP is an he-score job's differential privacy: what the ledger charged and the bounds the
// noise is calibrated to. A person has at most MaxRows rows (measured at registration), so
// changes at most MaxRows groups, each count by at most MaxRows and each sum by at most
// MaxRows·ScoreBound. ε is split in three: partition selection, counts, sums; δ goes to
// partition selection.
type ScoreDP struct {
	Epsilon    float64 `json:"epsilon"`
	Delta      float64 `json:"delta"`
	MaxRows    int64   `json:"max_rows"`
	ScoreBound float64 `json:"score_bound"`
}

// ScoreDPReport is what the runner says about the noise it added, without any value.
type ScoreDPReport struct {
	SelectionEpsilon float64 `json:"selection_epsilon"`
	CountEpsilon     float64 `json:"count_epsilon"`
	CountNoiseScale  float64 `json:"count_noise_scale"`
	SumEpsilon       float64 `json:"sum_epsilon"`
	SumNoiseScale    float64 `json:"sum_noise_scale,omitempty"`
	// FeatureNoiseScale is the Laplace scale on each clear per-group feature sum (linear
	// models, whose encrypted sums are then post-processing of DP statistics).
	FeatureNoiseScale float64 `json:"feature_noise_scale,omitempty"`
}

// ScoreResult is what the runner writes to the result pipe. Error is safe for the vendor (it
// names no value); counts are released after the k threshold, sums are encrypted.
type ScoreResult struct {
	Error       string         `json:"error,omitempty"`
	Groups      []ScoreGroup   `json:"groups,omitempty"`
	Dropped     int            `json:"dropped"`
	Sums        []byte         `json:"sums,omitempty"`
	SumErrorStd float64        `json:"sum_error_std"`
	Rows        int64          `json:"rows"`
	DP          *ScoreDPReport `json:"dp,omitempty"`
	// Prepared says whether the job took the model's lane averages prepared at upload
	// (one of the Prepared* constants).
	Prepared string `json:"prepared,omitempty"`
}

// Prepare is what a KindPrepare job runs: the model and bundle blobs (mounted as inputs
// "model" and "bundle") by digest. Its result is the prepared model's blob itself.
type Prepare struct {
	Model  string `json:"model"`
	Bundle string `json:"bundle"`
}

type ScoreGroup struct {
	Keys []*string `json:"keys"`
	Rows int64     `json:"rows"`
}
