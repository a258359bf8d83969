package nodeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one or more nodes' admin APIs. The zero value works with a
// 5-second timeout and no token.
type Client struct {
	HTTP  *http.Client
	Token string // the admin bearer token; never logged
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 5 * time.Second}
}

// Status reads GET /admin/status of the node whose admin API is at base
// (scheme, host and port, no trailing slash).
func (c *Client) Status(ctx context.Context, base string) (Status, error) {
	var st Status
	resp, err := c.do(ctx, http.MethodGet, base+PathStatus, nil)
	if err != nil {
		return st, fmt.Errorf("status %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %s: %s", base, answer(resp))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("status %s: decode: %w", base, err)
	}
	return st, nil
}

// Drain posts r to /admin/drain. A node that already drains answers as one
// that starts to: both are success.
func (c *Client) Drain(ctx context.Context, base string, r DrainRequest) error {
	return c.post(ctx, "drain", base, PathDrain, r, nil)
}

// Shed posts r to /admin/shed (version 2; a node that speaks version 1 is
// refused client-side with a *VersionError) and returns the node's
// answer: how many clients it will release. The repeat of a shed's ID is
// answered with that shed's result.
func (c *Client) Shed(ctx context.Context, base string, r ShedRequest) (ShedResult, error) {
	var res ShedResult
	err := c.post(ctx, "shed", base, PathShed, r, &res)
	return res, err
}

// Cordon posts {"cordoned": cordoned} to /admin/cordon (version 2): a
// cordoned node fails its readiness and keeps serving.
func (c *Client) Cordon(ctx context.Context, base string, cordoned bool) error {
	return c.post(ctx, "cordon", base, PathCordon, CordonRequest{Cordoned: cordoned}, nil)
}

// Require returns a *VersionError, without sending anything else, unless
// the node at base speaks admin API version v or later; request names
// what needs it in the error. Version 1 needs no status read: every node
// speaks it.
func (c *Client) Require(ctx context.Context, base string, v int, request string) error {
	if v <= 1 {
		return nil
	}
	st, err := c.Status(ctx, base)
	if err != nil {
		return fmt.Errorf("require admin API version %d: %w", v, err)
	}
	if st.Node == "" {
		st.Node = base
	}
	return st.Require(v, request)
}

// request is a POST body of the admin API.
type request interface {
	// Since is the admin API version the request needs.
	Since() int
}

// post sends r to path once the node is known to speak the version r
// needs (see Require); op names the call in errors. 202 and 200 are
// success; out, when not nil, receives the answer's JSON body.
func (c *Client) post(ctx context.Context, op, base, path string, r request, out any) error {
	if err := c.Require(ctx, base, r.Since(), http.MethodPost+" "+path); err != nil {
		return fmt.Errorf("%s %s: %w", op, base, err)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, base, err)
	}
	resp, err := c.do(ctx, http.MethodPost, base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", op, base, answer(resp))
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", op, base, err)
		}
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, url string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	return c.http().Do(req)
}

// answer is a refused call's status line and the start of its body.
func answer(resp *http.Response) string {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if s := strings.TrimSpace(string(msg)); s != "" {
		return resp.Status + ": " + s
	}
	return resp.Status
}
