package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// AdminTag is the instance tag that, when present, holds the base URL of
// the node's admin API (the local cloud sets it, since its nodes share one
// address); otherwise the admin API is at the private address and the
// plan's nodes.admin_port.
const AdminTag = "wsfleet:admin"

// HTTPNodes reaches nodes through their admin HTTP API.
type HTTPNodes struct {
	Client *http.Client
	Port   int
	Token  string // the admin bearer token; never logged
}

var _ Nodes = (*HTTPNodes)(nil)

// BaseURL returns the admin base URL of an instance's node.
func (h *HTTPNodes) BaseURL(in Instance) string {
	if u := in.Tags[AdminTag]; u != "" {
		return strings.TrimRight(u, "/")
	}
	port := h.Port
	if port == 0 {
		port = 8080
	}
	return "http://" + in.PrivateIP + ":" + strconv.Itoa(port)
}

func (h *HTTPNodes) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	return &http.Client{Timeout: 5 * time.Second}
}

// Drain posts /admin/drain; 202 and 200 both mean the node drains.
func (h *HTTPNodes) Drain(ctx context.Context, in Instance, o DrainOptions) error {
	body, _ := json.Marshal(map[string]any{
		"window":   o.Window.String(),
		"max_rate": o.MaxRate,
		"deadline": o.Deadline.String(),
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.BaseURL(in)+"/admin/drain", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("drain %s: %w", in.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.Token)
	resp, err := h.client().Do(req)
	if err != nil {
		return fmt.Errorf("drain %s: %w", in.Name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("drain %s: status %d: %s", in.Name, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Status gets /admin/status.
func (h *HTTPNodes) Status(ctx context.Context, in Instance) (NodeStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.BaseURL(in)+"/admin/status", nil)
	if err != nil {
		return NodeStatus{}, fmt.Errorf("status %s: %w", in.Name, err)
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	resp, err := h.client().Do(req)
	if err != nil {
		return NodeStatus{}, fmt.Errorf("status %s: %w", in.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return NodeStatus{}, fmt.Errorf("status %s: status %d", in.Name, resp.StatusCode)
	}
	var st NodeStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return NodeStatus{}, fmt.Errorf("status %s: %w", in.Name, err)
	}
	return st, nil
}

// MetricsURL is the node's Prometheus endpoint.
func (h *HTTPNodes) MetricsURL(in Instance) string { return h.BaseURL(in) + "/metrics" }
