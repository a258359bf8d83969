package nodeapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNode is an admin API that reports apiVersion (0: none, as a node
// from before versioning) and records the requests it gets.
type fakeNode struct {
	apiVersion int

	mu   sync.Mutex
	reqs []string // method, path and body
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(b)))
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case PathStatus:
		json.NewEncoder(w).Encode(Status{APIVersion: f.apiVersion, Node: "ws-07", State: StateReady})
	case PathDrain:
		if _, err := DecodeDrainRequest(b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeNode) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// futureRequest stands for a request of a later version: the shed request
// an issue to come adds at version 2.
type futureRequest struct {
	Share float64 `json:"share"`
}

func (futureRequest) Since() int { return 2 }

func TestClientRefusesANewerRequestClientSide(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reported int
		sent     bool
		err      string
	}{
		{"node from before versioning", 0, false, "node ws-07 speaks admin API version 1; POST /admin/future needs version 2"},
		{"version 1 node", 1, false, "node ws-07 speaks admin API version 1; POST /admin/future needs version 2"},
		{"version 2 node", 2, true, ""},
		{"newer node", 3, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := &fakeNode{apiVersion: tc.reported}
			srv := httptest.NewServer(node)
			defer srv.Close()
			c := &Client{Token: "tok"}
			err := c.post(context.Background(), "future", srv.URL, "/admin/future", futureRequest{Share: 0.5})
			posted := false
			for _, r := range node.requests() {
				posted = posted || strings.HasPrefix(r, "POST ")
			}
			if posted != tc.sent {
				t.Fatalf("posted = %v, want %v (requests %q)", posted, tc.sent, node.requests())
			}
			if tc.err == "" {
				// the fake answers 404 to the unknown path: the request went out
				if err == nil || !strings.Contains(err.Error(), "404") {
					t.Fatalf("err = %v, want the node's 404", err)
				}
				return
			}
			var ve *VersionError
			if !errors.As(err, &ve) || ve.Speaks != 1 || ve.Needs != 2 || ve.Node != "ws-07" || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want a *VersionError containing %q", err, tc.err)
			}
		})
	}
}

func TestClientDrain(t *testing.T) {
	node := &fakeNode{}
	srv := httptest.NewServer(node)
	defer srv.Close()
	c := &Client{Token: "tok", HTTP: &http.Client{Timeout: 5 * time.Second}}
	if err := c.Drain(context.Background(), srv.URL, DrainRequest{Window: Dur(0), MaxRate: 100, Deadline: Dur(20 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	// a version 1 request reads no status first: every node speaks it
	want := []string{`POST /admin/drain {"window":"0s","max_rate":100,"deadline":"20s"}`}
	if got := node.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests %q, want %q", got, want)
	}
	bad := &Client{Token: "wrong"}
	if err := bad.Drain(context.Background(), srv.URL, DrainRequest{}); err == nil || !strings.Contains(err.Error(), "401 Unauthorized: unauthorized") {
		t.Fatalf("drain with a wrong token: %v", err)
	}
}

func TestClientStatus(t *testing.T) {
	node := &fakeNode{apiVersion: 1}
	srv := httptest.NewServer(node)
	defer srv.Close()
	st, err := (&Client{Token: "tok"}).Status(context.Background(), srv.URL)
	if err != nil || st.Node != "ws-07" || st.State != StateReady || st.SpeaksVersion() != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
	if _, err := (&Client{}).Status(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("status without a token: %v", err)
	}
}
