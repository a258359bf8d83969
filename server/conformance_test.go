package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
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
