package api

import "time"

// SubmitFeedback is a vendor's data-quality note on a dataset (数据质量反馈), sent to
// POST /v1/datasets/{name}/feedback.
type SubmitFeedback struct {
	Column  string `json:"column,omitempty"` // a catalog column of the dataset; empty: the dataset as a whole
	Message string `json:"message"`          // what is wrong; at most 4000 characters, no personal data
}

// ResolveFeedback is the provider's answer, sent to POST /v1/feedback/{id}/resolve.
type ResolveFeedback struct {
	Note string `json:"note"` // what was done or why nothing will be; at most 4000 characters
}

// Feedback is one data-quality note and, once resolved, its resolution.
type Feedback struct {
	ID        string    `json:"id"`
	Dataset   string    `json:"dataset"`
	Column    string    `json:"column,omitempty"`
	Tenant    string    `json:"tenant"`
	Submitter string    `json:"submitter"`
	Message   string    `json:"message"`
	Status    string    `json:"status"` // open | resolved
	Created   time.Time `json:"created"`
	Resolver  string    `json:"resolver,omitempty"`
	Note      string    `json:"note,omitempty"`
	Resolved  time.Time `json:"resolved,omitzero"`
}
