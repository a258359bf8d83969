package rollout

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"wsfleet/nodeapi"
)

// AdminTag is the instance tag that, when present, holds the base URL of
// the node's admin API (the local cloud sets it on its simulated instances,
// whose nodes it serves itself; a launch may set it too); otherwise the
// admin API is at the private address and the plan's nodes.admin_port.
const AdminTag = "wsfleet:admin"

// HTTPNodes reaches nodes through their admin HTTP API (package nodeapi).
type HTTPNodes struct {
	Client *http.Client // nil: a 5-second timeout
	Port   int
	Token  string // the admin bearer token; never logged
}

var (
	_ Nodes  = (*HTTPNodes)(nil)
	_ Placer = (*HTTPNodes)(nil)
)

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

func (h *HTTPNodes) api() *nodeapi.Client {
	return &nodeapi.Client{HTTP: h.Client, Token: h.Token}
}

// Drain posts /admin/drain with every option set: a zero window is sent
// as "0s" (an unpaced drain), not left to the node's default; a zero
// deadline or max_rate takes the node's default. 202 and 200 both mean the
// node drains.
func (h *HTTPNodes) Drain(ctx context.Context, in Instance, o DrainOptions) error {
	r := nodeapi.DrainRequest{Window: nodeapi.Dur(o.Window), MaxRate: o.MaxRate, Deadline: nodeapi.Dur(o.Deadline)}
	if err := h.api().Drain(ctx, h.BaseURL(in), r); err != nil {
		return fmt.Errorf("node %s: %w", nodeLabel(in), err)
	}
	return nil
}

// Cordon posts /admin/cordon (version 2): a cordoned node's readiness
// fails while it keeps serving.
func (h *HTTPNodes) Cordon(ctx context.Context, in Instance, cordoned bool) error {
	if err := h.api().Cordon(ctx, h.BaseURL(in), cordoned); err != nil {
		return fmt.Errorf("node %s: %w", nodeLabel(in), err)
	}
	return nil
}

// Shed posts /admin/shed (version 2): release o.Count clients over
// o.Window at most o.MaxRate a second, idempotent by o.ID.
func (h *HTTPNodes) Shed(ctx context.Context, in Instance, o ShedOptions) error {
	r := nodeapi.ShedRequest{ID: o.ID, Count: o.Count, Window: nodeapi.Dur(o.Window), MaxRate: o.MaxRate}
	if _, err := h.api().Shed(ctx, h.BaseURL(in), r); err != nil {
		return fmt.Errorf("node %s: %w", nodeLabel(in), err)
	}
	return nil
}

// Status gets /admin/status.
func (h *HTTPNodes) Status(ctx context.Context, in Instance) (NodeStatus, error) {
	st, err := h.api().Status(ctx, h.BaseURL(in))
	if err != nil {
		return NodeStatus{}, fmt.Errorf("node %s: %w", nodeLabel(in), err)
	}
	return st, nil
}

// RequireVersion is nil when the instance's node speaks admin API version
// v or later, and otherwise an error wrapping a *nodeapi.VersionError that
// names the node, the version it speaks and v; what names what needs v
// (such as "POST /admin/shed"). The engine calls it before it uses a
// request newer than version 1, so that an older node stops the step with
// this error before anything is sent, not with a 400 halfway through.
func (h *HTTPNodes) RequireVersion(ctx context.Context, in Instance, v int, what string) error {
	if err := h.api().Require(ctx, h.BaseURL(in), v, what); err != nil {
		return fmt.Errorf("node %s: %w", nodeLabel(in), err)
	}
	return nil
}

// MetricsURL is the node's Prometheus endpoint.
func (h *HTTPNodes) MetricsURL(in Instance) string { return h.BaseURL(in) + "/metrics" }

// NodeVersionWarnings reads the status of every in-service node of g and
// returns a line for each that speaks an older admin API version than this
// build (requests added since will be refused for it until it is
// replaced) or that does not answer (its version is unknown). `wsfleet
// plan` prints them; they are warnings, not errors: a rollout that only
// drains works with every version.
func NodeVersionWarnings(ctx context.Context, nodes Nodes, g Group) []string {
	return nodeVersionWarnings(ctx, nodes, g, nodeapi.Version)
}

// nodeVersionWarnings is NodeVersionWarnings against version want.
func nodeVersionWarnings(ctx context.Context, nodes Nodes, g Group, want int) []string {
	out := make([]string, len(g.Instances))
	var wg sync.WaitGroup
	for i, in := range g.Instances {
		if in.Lifecycle != "InService" {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			st, err := nodes.Status(ctx, in)
			switch {
			case err != nil:
				out[i] = fmt.Sprintf("%s: admin API version unknown: %v", nodeLabel(in), err)
			case st.SpeaksVersion() < want:
				out[i] = fmt.Sprintf("%s speaks node admin API version %d, older than this build's %d: requests added after version %d are refused for it until it is replaced",
					nodeLabel(in), st.SpeaksVersion(), want, st.SpeaksVersion())
			}
		})
	}
	wg.Wait()
	var warn []string
	for _, w := range out {
		if w != "" {
			warn = append(warn, w)
		}
	}
	return warn
}

// nodeLabel names an instance in messages: its Name tag and id, or the id
// of one not yet named.
func nodeLabel(in Instance) string {
	if in.Name == "" {
		return in.ID
	}
	return in.Name + " (" + in.ID + ")"
}
