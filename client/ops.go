package client

import (
	"context"

	"github.com/veil-dp/veil/daemon/api"
)

// Version returns the daemon's build (GET /v1/version).
func (c *Client) Version(ctx context.Context) (api.Version, error) {
	var v api.Version
	return v, c.do(ctx, "GET", "/v1/version", nil, &v)
}
