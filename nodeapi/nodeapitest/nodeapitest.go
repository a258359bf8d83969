// Package nodeapitest is a fake node admin API for the tests of code that
// calls nodes (the client, the rollout engine's HTTPNodes): it reports the
// status, and so the API version, it is given, requires the bearer token,
// decodes drain, shed and cordon requests as strictly as a node does
// (and answers them without changing its status), and records every
// request, so a test can tell what was sent and what was refused before
// it was sent.
package nodeapitest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"wsfleet/nodeapi"
)

// Node is one fake node's admin API.
type Node struct {
	URL string // base URL, no trailing slash

	srv    *httptest.Server
	token  string
	status nodeapi.Status

	mu   sync.Mutex
	reqs []string
}

// Start starts a fake node that answers status to GET /admin/status and
// requires token; it stops when the test ends.
func Start(t testing.TB, token string, status nodeapi.Status) *Node {
	t.Helper()
	n := &Node{token: token, status: status}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	n.URL = n.srv.URL
	t.Cleanup(n.srv.Close)
	return n
}

// Close stops the node, which then answers nothing: a node that is down.
func (n *Node) Close() { n.srv.Close() }

// Requests returns every request so far as "METHOD path body", the body
// trimmed and left out when empty.
func (n *Node) Requests() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.reqs...)
}

func (n *Node) serve(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	n.mu.Lock()
	n.reqs = append(n.reqs, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+strings.TrimSpace(string(b))))
	n.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+n.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.Method + " " + r.URL.Path {
	case http.MethodGet + " " + nodeapi.PathStatus:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.status)
	case http.MethodPost + " " + nodeapi.PathDrain:
		if _, err := nodeapi.DecodeDrainRequest(b); err != nil {
			http.Error(w, "drain request: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case http.MethodPost + " " + nodeapi.PathShed:
		req, err := nodeapi.DecodeShedRequest(b)
		if err != nil {
			http.Error(w, "shed request: "+err.Error(), http.StatusBadRequest)
			return
		}
		// it releases no one: the answer says how many a node holding
		// status's connections would
		res := nodeapi.ShedResult{ID: req.ID, Count: req.Count, Releasing: min(req.Count, n.status.Connections), MaxRate: req.MaxRate}
		if req.Window != nil {
			res.Window = *req.Window
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(res)
	case http.MethodPost + " " + nodeapi.PathCordon:
		if _, err := nodeapi.DecodeCordonRequest(b); err != nil {
			http.Error(w, "cordon request: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}
