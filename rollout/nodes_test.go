package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"wsfleet/nodeapi"
	"wsfleet/nodeapi/nodeapitest"
)

// startAdminNode starts a fake node admin API that reports apiVersion (0:
// no api_version, as a node from before versioning).
func startAdminNode(t *testing.T, apiVersion int) *nodeapitest.Node {
	t.Helper()
	return nodeapitest.Start(t, "tok", nodeapi.Status{APIVersion: apiVersion, Node: "node-x", Image: "ami-old", State: nodeapi.StateReady, Connections: 3})
}

// adminInstance is an in-service instance whose node's admin API is n.
func adminInstance(n *nodeapitest.Node, id, name string) Instance {
	return Instance{ID: id, Name: name, Lifecycle: "InService", Tags: map[string]string{AdminTag: n.URL + "/"}}
}

func TestHTTPNodesDrainAndStatus(t *testing.T) {
	n := startAdminNode(t, 0)
	h := &HTTPNodes{Token: "tok"}
	in := adminInstance(n, "i-1", "ws-01")
	ctx := context.Background()
	if err := h.Drain(ctx, in, DrainOptions{Window: 0, MaxRate: 100, Deadline: 20 * time.Second}); err != nil {
		t.Fatal(err)
	}
	st, err := h.Status(ctx, in)
	if err != nil || st.Node != "node-x" || st.State != "ready" || st.Connections != 3 || st.SpeaksVersion() != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
	// the body is the nodeapi wire form, an unpaced window sent as "0s";
	// a version 1 request reads no status first
	want := []string{`POST /admin/drain {"window":"0s","max_rate":100,"deadline":"20s"}`, "GET /admin/status"}
	if got := n.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests %q, want %q", got, want)
	}
	bad := &HTTPNodes{Token: "wrong"}
	if err := bad.Drain(ctx, in, DrainOptions{}); err == nil || !strings.Contains(err.Error(), "node ws-01 (i-1): drain") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("drain with a wrong token: %v", err)
	}
	if _, err := bad.Status(ctx, in); err == nil || !strings.Contains(err.Error(), "node ws-01 (i-1): status") {
		t.Fatalf("status with a wrong token: %v", err)
	}
}

// TestHTTPNodesRequireVersion checks that a request newer than the node
// is refused before it is sent, with an error that says which node, the
// version it speaks and the one needed.
func TestHTTPNodesRequireVersion(t *testing.T) {
	gone := startAdminNode(t, 2)
	gone.Close()
	for _, tc := range []struct {
		name     string
		node     *nodeapitest.Node
		need     int
		err      string
		speaks   int
		statusOK bool
	}{
		{name: "node from before versioning", node: startAdminNode(t, 0), need: 2, speaks: 1, statusOK: true,
			err: "node ws-01 (i-1): node node-x speaks admin API version 1; POST /admin/shed needs version 2"},
		{name: "older node", node: startAdminNode(t, 2), need: 3, speaks: 2, statusOK: true,
			err: "node node-x speaks admin API version 2; POST /admin/shed needs version 3"},
		{name: "same version", node: startAdminNode(t, 2), need: 2, statusOK: true},
		{name: "newer node", node: startAdminNode(t, 3), need: 2, statusOK: true},
		{name: "version 1 needs no status read", node: startAdminNode(t, 0), need: 1},
		{name: "unreachable", node: gone, need: 2, err: "node ws-01 (i-1): require admin API version 2: status http://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &HTTPNodes{Token: "tok"}
			err := h.RequireVersion(context.Background(), adminInstance(tc.node, "i-1", "ws-01"), tc.need, "POST /admin/shed")
			if got := tc.node.Requests(); (len(got) == 1 && got[0] == "GET /admin/status") != tc.statusOK || (!tc.statusOK && len(got) != 0) {
				t.Fatalf("node got %q; want only a status read: %v", got, tc.statusOK)
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one containing %q", err, tc.err)
			}
			var ve *nodeapi.VersionError
			if tc.speaks != 0 && (!errors.As(err, &ve) || ve.Speaks != tc.speaks || ve.Needs != tc.need) {
				t.Fatalf("err = %v, want a *nodeapi.VersionError: speaks %d, needs %d", err, tc.speaks, tc.need)
			}
		})
	}
}

func TestNodeVersionWarnings(t *testing.T) {
	v0, v1, v2 := startAdminNode(t, 0), startAdminNode(t, 1), startAdminNode(t, 2)
	gone := startAdminNode(t, 2)
	gone.Close()
	pending := adminInstance(gone, "i-5", "")
	pending.Lifecycle = "Pending"
	terminating := adminInstance(v1, "i-6", "ws-06")
	terminating.Lifecycle = "Terminating"
	fleet := Group{Name: "g", Instances: []Instance{
		adminInstance(v0, "i-1", "ws-01"), adminInstance(v1, "i-2", "ws-02"), adminInstance(v2, "i-3", "ws-03"),
		adminInstance(gone, "i-4", "ws-04"), pending, terminating,
	}}
	for _, tc := range []struct {
		name  string
		group Group
		want  int
		warn  []string
	}{
		// this build speaks version 2 (shed, cordon): version 1 nodes warn
		{"this build's version", fleet, nodeapi.Version, []string{
			"ws-01 (i-1) speaks node admin API version 1, older than this build's 2: requests added after version 1 are refused for it until it is replaced",
			"ws-02 (i-2) speaks node admin API version 1, older than this build's 2",
			"ws-04 (i-4): admin API version unknown: node ws-04 (i-4): status http://",
		}},
		{"a build at version 2", fleet, 2, []string{
			"ws-01 (i-1) speaks node admin API version 1, older than this build's 2: requests added after version 1 are refused for it until it is replaced",
			"ws-02 (i-2) speaks node admin API version 1, older than this build's 2",
			"ws-04 (i-4): admin API version unknown",
		}},
		{"a build at version 3", fleet, 3, []string{
			"ws-01 (i-1) speaks node admin API version 1, older than this build's 3",
			"ws-02 (i-2) speaks node admin API version 1, older than this build's 3",
			"ws-03 (i-3) speaks node admin API version 2, older than this build's 3: requests added after version 2",
			"ws-04 (i-4): admin API version unknown",
		}},
		{"only current nodes", Group{Instances: []Instance{adminInstance(v2, "i-3", "ws-03")}}, 2, nil},
		{"no instances", Group{}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nodeVersionWarnings(context.Background(), &HTTPNodes{Token: "tok"}, tc.group, tc.want)
			if len(got) != len(tc.warn) {
				t.Fatalf("warnings %q, want %d like %q", got, len(tc.warn), tc.warn)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.warn[i]) {
					t.Errorf("warning %d: %q, want it to start %q", i, got[i], tc.warn[i])
				}
			}
		})
	}
	if got := NodeVersionWarnings(context.Background(), &HTTPNodes{Token: "tok"}, Group{Instances: []Instance{adminInstance(v2, "i-3", "ws-03")}}); len(got) != 0 {
		t.Fatalf("a version 2 node warned against this build: %q", got)
	}
	if got := NodeVersionWarnings(context.Background(), &HTTPNodes{Token: "tok"}, Group{Instances: []Instance{adminInstance(v0, "i-1", "ws-01")}}); len(got) != 1 {
		t.Fatalf("a node from before versioning, against this build at version 2: warnings %q, want one", got)
	}
}
