package client

import (
	"context"
	"net/url"

	"github.com/veil-dp/veil/daemon/api"
)

// SubmitFeedback files a data-quality note on a dataset (vendor).
func (c *Client) SubmitFeedback(ctx context.Context, dataset string, req api.SubmitFeedback) (api.Feedback, error) {
	var f api.Feedback
	return f, c.do(ctx, "POST", "/v1/datasets/"+url.PathEscape(dataset)+"/feedback", req, &f)
}

// Feedback lists the feedback the caller may see; dataset and status (open or resolved) filter
// it when not empty.
func (c *Client) Feedback(ctx context.Context, dataset, status string) ([]api.Feedback, error) {
	var fs []api.Feedback
	q := url.Values{}
	if dataset != "" {
		q.Set("dataset", dataset)
	}
	if status != "" {
		q.Set("status", status)
	}
	return fs, c.do(ctx, "GET", "/v1/feedback?"+q.Encode(), nil, &fs)
}

// ResolveFeedback resolves open feedback with a note (the dataset's provider).
func (c *Client) ResolveFeedback(ctx context.Context, id, note string) (api.Feedback, error) {
	var f api.Feedback
	return f, c.do(ctx, "POST", "/v1/feedback/"+url.PathEscape(id)+"/resolve", api.ResolveFeedback{Note: note}, &f)
}
