package rollout

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// httpKind is the http check: GET a URL, want a status.
var httpKind = GateKind{Key: "http", Spec: func() GateSpec { return &HTTPCheck{} }}

// HTTPCheck passes when GET URL answers Status.
type HTTPCheck struct {
	URL     string   `yaml:"url" json:"url"`
	Status  int      `yaml:"status" json:"status,omitempty"`
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Validate wants an http(s) URL, an HTTP status (default 200) and a
// timeout within maxHTTPTimeout.
func (h *HTTPCheck) Validate(at func(key, format string, args ...any)) {
	if !strings.HasPrefix(h.URL, "http://") && !strings.HasPrefix(h.URL, "https://") {
		at("url", "%q; want an http:// or https:// URL", h.URL)
	}
	if h.Status != 0 && (h.Status < 100 || h.Status > 599) {
		outOfRange(at, "status", h.Status, "100 to 599 (an HTTP status; absent: 200)")
	}
	if h.Timeout.D() > maxHTTPTimeout {
		outOfRange(at, "timeout", h.Timeout.D(), "1ms to "+maxHTTPTimeout.String()+" (0 or absent: 5s)")
	}
	if h.Status == 0 {
		h.Status = http.StatusOK
	}
}

// maxHTTPTimeout bounds an http check's timeout: a health URL that takes
// longer than this is failing.
const maxHTTPTimeout = 5 * time.Minute

// Describe says what the check asks.
func (h *HTTPCheck) Describe() string { return fmt.Sprintf("GET %s answers %d", h.URL, h.Status) }

// Gate returns the check's gate: stateless, so the spec itself.
func (h *HTTPCheck) Gate() Gate { return httpGate{h} }

type httpGate struct{ *HTTPCheck }

func (httpGate) Begin(context.Context, PhaseEnv) error     { return nil }
func (httpGate) End(context.Context, PhaseEnv) *GateResult { return nil }
func (g httpGate) Evaluate(ctx context.Context, env PhaseEnv) GateResult {
	return verdict(g.get(ctx, env.Checker))
}

func (h *HTTPCheck) get(ctx context.Context, c *Checker) (string, error) {
	to := h.Timeout.D()
	if to == 0 {
		to = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", h.URL, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	want := h.Status
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return "", fmt.Errorf("GET %s: status %d, want %d", h.URL, resp.StatusCode, want)
	}
	return fmt.Sprintf("status %d", resp.StatusCode), nil
}
