package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"wsfleet/bayeux"
)

// Conformance tests for what other Bayeux clients than faye and halley
// (CometD's JavaScript client, browsers' cross-origin and JSONP
// transports) need; interop/ runs those clients against a real node.

// TestMountSubpaths: CometD posts to /bayeux/handshake, /bayeux/connect…
func TestMountSubpaths(t *testing.T) {
	n := startNode(t, nil)
	for _, path := range []string{"/bayeux", "/bayeux/", "/bayeux/handshake", "/bayeux/connect"} {
		resp, err := http.Post(n.url+path, "application/json",
			strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rs []msg
		if resp.StatusCode != 200 || json.Unmarshal(body, &rs) != nil || len(rs) != 1 || rs[0]["successful"] != true {
			t.Errorf("POST %s: %d %s", path, resp.StatusCode, body)
		}
	}
	resp, err := http.Post(n.url+"/bayeuxx", "application/json", strings.NewReader(`[]`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /bayeuxx: %d, want 404", resp.StatusCode)
	}
}

// TestSecondLongPollConnectAnswersTheFirst: a second /meta/connect of one
// client ends the hold of the first at once.
func TestSecondLongPollConnectAnswersTheFirst(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Timeout = 10 * time.Second })
	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	connect := func(id string) (msg, time.Duration, error) {
		start := time.Now()
		b, _ := json.Marshal([]msg{{"channel": bayeux.ChannelConnect, "clientId": p.clientID, "connectionType": "long-polling", "id": id}})
		resp, err := http.Post(n.url+"/bayeux", "application/json", bytes.NewReader(b))
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		var rs []msg
		if err := json.NewDecoder(resp.Body).Decode(&rs); err != nil || len(rs) == 0 {
			return nil, 0, fmt.Errorf("connect %s: %d %v %v", id, resp.StatusCode, rs, err)
		}
		return rs[0], time.Since(start), nil
	}
	type result struct {
		r    msg
		took time.Duration
		err  error
	}
	firstDone := make(chan result, 1)
	go func() {
		r, took, err := connect("c1")
		firstDone <- result{r, took, err}
	}()
	time.Sleep(300 * time.Millisecond)
	secondDone := make(chan result, 1)
	go func() {
		r, took, err := connect("c2")
		secondDone <- result{r, took, err}
	}()
	f := <-firstDone
	if f.err != nil || f.r["id"] != "c1" || f.r["successful"] != true {
		t.Fatalf("first connect: %v %v", f.r, f.err)
	}
	if f.took > 5*time.Second {
		t.Fatalf("first connect held %v after a second one arrived", f.took)
	}
	// the second is the one held now; a delivery ends it.
	p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/x"})
	n.publish(`{"channel":"/x","data":1}`)
	s := <-secondDone
	if s.err != nil || s.r["id"] != "c2" || s.r["successful"] != true || s.took > 5*time.Second {
		t.Fatalf("second connect: %v after %v, %v", s.r, s.took, s.err)
	}
}
