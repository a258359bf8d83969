package nodeapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"wsfleet/nodeapi"
	"wsfleet/nodeapi/nodeapitest"
)

// futureRequest stands for a request newer than version 1 at a path no
// node serves (the fake answers 404 once it is sent).
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
		{"node from before versioning", 0, false, "future http://127.0.0.1:"},
		{"version 1 node", 1, false, "node ws-07 speaks admin API version 1; POST /admin/future needs version 2"},
		{"version 2 node", 2, true, ""},
		{"newer node", 3, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := nodeapitest.Start(t, "tok", nodeapi.Status{APIVersion: tc.reported, Node: "ws-07", State: nodeapi.StateReady})
			c := &nodeapi.Client{Token: "tok"}
			err := nodeapi.Post(c, context.Background(), "future", node.URL, "/admin/future", futureRequest{Share: 0.5})
			want := []string{"GET /admin/status"}
			if tc.sent {
				want = append(want, `POST /admin/future {"share":0.5}`)
			}
			if got := node.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("requests %q, want %q", got, want)
			}
			if tc.sent {
				// the fake answers 404 to the unknown path: the request went out
				if err == nil || !strings.Contains(err.Error(), "404") {
					t.Fatalf("err = %v, want the node's 404", err)
				}
				return
			}
			var ve *nodeapi.VersionError
			if !errors.As(err, &ve) || ve.Speaks != 1 || ve.Needs != 2 || ve.Node != "ws-07" || ve.Request != "POST /admin/future" ||
				!strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "node ws-07 speaks admin API version 1; POST /admin/future needs version 2") {
				t.Fatalf("err = %v, want a *VersionError containing %q", err, tc.err)
			}
		})
	}
}

func TestRequireNamesAnUnnamedNodeByItsURL(t *testing.T) {
	node := nodeapitest.Start(t, "tok", nodeapi.Status{})
	err := (&nodeapi.Client{Token: "tok"}).Require(context.Background(), node.URL, 2, "POST /admin/shed")
	if want := "node " + node.URL + " speaks admin API version 1; POST /admin/shed needs version 2"; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestClientDrain(t *testing.T) {
	node := nodeapitest.Start(t, "tok", nodeapi.Status{})
	c := &nodeapi.Client{Token: "tok", HTTP: &http.Client{Timeout: 5 * time.Second}}
	r := nodeapi.DrainRequest{Window: nodeapi.Dur(0), MaxRate: 100, Deadline: nodeapi.Dur(20 * time.Second)}
	if err := c.Drain(context.Background(), node.URL, r); err != nil {
		t.Fatal(err)
	}
	// a version 1 request reads no status first: every node speaks it
	want := []string{`POST /admin/drain {"window":"0s","max_rate":100,"deadline":"20s"}`}
	if got := node.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests %q, want %q", got, want)
	}
	bad := &nodeapi.Client{Token: "wrong"}
	if err := bad.Drain(context.Background(), node.URL, nodeapi.DrainRequest{}); err == nil || !strings.Contains(err.Error(), "401 Unauthorized: unauthorized") {
		t.Fatalf("drain with a wrong token: %v", err)
	}
}

func TestClientStatus(t *testing.T) {
	node := nodeapitest.Start(t, "tok", nodeapi.Status{APIVersion: 1, Node: "ws-07", State: nodeapi.StateReady})
	st, err := (&nodeapi.Client{Token: "tok"}).Status(context.Background(), node.URL)
	if err != nil || st.Node != "ws-07" || st.State != nodeapi.StateReady || st.SpeaksVersion() != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
	if _, err := (&nodeapi.Client{}).Status(context.Background(), node.URL); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("status without a token: %v", err)
	}
	node.Close()
	if _, err := (&nodeapi.Client{Token: "tok"}).Status(context.Background(), node.URL); err == nil || !strings.Contains(err.Error(), "status "+node.URL) {
		t.Fatalf("status of a node that is down: %v", err)
	}
}

// TestClientShedAndCordon: the version 2 requests read the node's status
// first and are refused client-side, with nothing posted, by a node that
// speaks version 1 (or predates versioning); a version 2 node gets them,
// and the shed's answer is returned.
func TestClientShedAndCordon(t *testing.T) {
	req := nodeapi.ShedRequest{ID: "r1/ws-01", Count: 3, Window: nodeapi.Dur(10 * time.Second), MaxRate: 5}
	for _, tc := range []struct {
		name     string
		reported int
		sent     bool
	}{
		{"node from before versioning", 0, false},
		{"version 1 node", 1, false},
		{"version 2 node", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := nodeapitest.Start(t, "tok", nodeapi.Status{APIVersion: tc.reported, Node: "ws-01", State: nodeapi.StateReady, Connections: 2})
			c := &nodeapi.Client{Token: "tok"}
			res, shedErr := c.Shed(context.Background(), node.URL, req)
			cordonErr := c.Cordon(context.Background(), node.URL, true)
			want := []string{"GET /admin/status", "GET /admin/status"}
			if tc.sent {
				want = []string{"GET /admin/status", `POST /admin/shed {"id":"r1/ws-01","count":3,"window":"10s","max_rate":5}`,
					"GET /admin/status", `POST /admin/cordon {"cordoned":true}`}
			}
			if got := node.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("requests %q, want %q", got, want)
			}
			if !tc.sent {
				for what, err := range map[string]error{"POST /admin/shed": shedErr, "POST /admin/cordon": cordonErr} {
					var ve *nodeapi.VersionError
					if !errors.As(err, &ve) || ve.Needs != 2 || ve.Speaks != 1 || ve.Request != what {
						t.Fatalf("%s: err = %v, want a *VersionError for version 2", what, err)
					}
				}
				return
			}
			if shedErr != nil || cordonErr != nil {
				t.Fatalf("shed: %v; cordon: %v", shedErr, cordonErr)
			}
			if want := (nodeapi.ShedResult{ID: "r1/ws-01", Count: 3, Releasing: 2, Window: nodeapi.Duration(10 * time.Second), MaxRate: 5}); res != want {
				t.Fatalf("shed result %+v, want %+v", res, want)
			}
		})
	}
	node := nodeapitest.Start(t, "tok", nodeapi.Status{APIVersion: 2})
	if _, err := (&nodeapi.Client{Token: "tok"}).Shed(context.Background(), node.URL, nodeapi.ShedRequest{Count: -1}); err == nil ||
		!strings.Contains(err.Error(), "400 Bad Request: shed request: bad admin request: count -1: want 0 to 1000000") {
		t.Fatalf("shed out of range: %v", err)
	}
}
