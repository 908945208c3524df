package client

import (
	"context"
	"net/url"

	"github.com/veil-dp/veil/daemon/api"
)

// RotatePrincipal gives a principal a new token (POST /v1/principals/{id}/rotate); the
// answer carries it, once.
func (c *Client) RotatePrincipal(ctx context.Context, id string, req api.RotatePrincipal) (api.Principal, error) {
	var p api.Principal
	return p, c.do(ctx, "POST", "/v1/principals/"+url.PathEscape(id)+"/rotate", req, &p)
}
