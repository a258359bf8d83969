package nodeapi

import "context"

// Post is the client's post, for the tests of a request of a version to
// come.
func Post(c *Client, ctx context.Context, op, base, path string, r request) error {
	return c.post(ctx, op, base, path, r, nil)
}
