package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
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
// client ends the hold of the first at once, and the second, now held,
// is woken by a delivery (with shared sessions too: the first one's
// answer must not hand the session back to the store while the second
// holds it).
func TestSecondLongPollConnectAnswersTheFirst(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) { secondConnect(t, shared) })
	}
}

func secondConnect(t *testing.T, shared bool) {
	var br broker.Broker
	if shared {
		br = broker.NewMemory(broker.MemoryOptions{})
	}
	n := startNode(t, func(c *Config) {
		c.Timeout = 10 * time.Second
		c.Broker = br
		c.SharedSessions = shared
	})
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

// jsonpGet sends a callback-polling request as a browser's script element
// does.
func jsonpGet(t testing.TB, h http.Handler, callback, message string) *httptest.ResponseRecorder {
	q := url.Values{"message": {message}}
	if callback != "" {
		q.Set("jsonp", callback)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/bayeux?"+q.Encode(), nil))
	return w
}

func TestCallbackPolling(t *testing.T) {
	n := startNode(t, nil)
	h := n.srv.Handler()
	hs := `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["callback-polling"],"id":"1"}]`
	for _, c := range []struct {
		callback, want string
		code           int
	}{
		{"__jsonp1__", "__jsonp1__", 200},
		{"_cometd_jsonp_0", "_cometd_jsonp_0", 200},
		{"$.cb.x1", "$.cb.x1", 200},
		{"", "jsonpcallback", 200},
		{"alert(1);x", "", 400},
		{"a b", "", 400},
		{"1abc", "", 400},
		{"a..b", "", 400},
		{"a.", "", 400},
		{"x</script>", "", 400},
		{strings.Repeat("a", 129), "", 400},
	} {
		w := jsonpGet(t, h, c.callback, hs)
		if w.Code != c.code {
			t.Errorf("callback %q: %d %q, want %d", c.callback, w.Code, w.Body.String(), c.code)
			continue
		}
		if c.code != 200 {
			if strings.Contains(w.Body.String(), "handshake") {
				t.Errorf("callback %q refused but the message was handled: %q", c.callback, w.Body.String())
			}
			continue
		}
		body := w.Body.String()
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
			t.Errorf("callback %q: Content-Type %q", c.callback, ct)
		}
		prefix := "/**/" + c.want + "("
		if !strings.HasPrefix(body, prefix) || !strings.HasSuffix(body, ");") || strings.ContainsRune(body, '\u2028') {
			t.Errorf("callback %q: body %q", c.callback, body)
			continue
		}
		var rs []msg
		if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(body, prefix), ");")), &rs); err != nil || len(rs) != 1 || rs[0]["successful"] != true {
			t.Errorf("callback %q: replies %q: %v", c.callback, body, err)
		}
	}
}

func TestJSONPBodyEscapesLineSeparators(t *testing.T) {
	got := string(jsonpBody("cb", []byte("[\"a\u2028b\u2029c\"]")))
	if want := `/**/cb(["a\u2028b\u2029c"]);`; got != want {
		t.Fatalf("jsonpBody = %q, want %q", got, want)
	}
}

// FuzzCallbackPolling: whatever the callback name and message, a JSONP
// answer is 4xx or a call of a plain identifier path with a JSON array.
func FuzzCallbackPolling(f *testing.F) {
	for _, s := range []string{"__jsonp1__", "", "a.b", "alert(1)", "x\u2028"} {
		f.Add(s, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["callback-polling"]}]`)
	}
	f.Add("cb", `{"channel":"/meta/connect","clientId":"x","connectionType":"callback-polling"}`)
	srv, err := New(Config{Timeout: 5 * time.Millisecond, MaxMessageBytes: 4096, MaxBatch: 10}, testLog(f))
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, callback, message string) {
		w := jsonpGet(t, h, callback, message)
		switch w.Code {
		case http.StatusOK:
			body := w.Body.String()
			name, rest, ok := strings.Cut(strings.TrimPrefix(body, "/**/"), "(")
			if !ok || !strings.HasPrefix(body, "/**/") || !jsonpCallback.MatchString(name) || !strings.HasSuffix(rest, ");") {
				t.Fatalf("JSONP body %q", body)
			}
			var out []json.RawMessage
			if err := json.Unmarshal([]byte(strings.TrimSuffix(rest, ");")), &out); err != nil {
				t.Fatalf("JSONP body %q does not wrap a JSON array: %v", body, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q %q", w.Code, callback, message)
		}
	})
}

// TestBrowserConnectionTypes: the handshake offers Faye's HTTP transports
// and a connect may name them.
func TestBrowserConnectionTypes(t *testing.T) {
	n := startNode(t, nil)
	for _, ct := range []string{"cross-origin-long-polling", "callback-polling"} {
		t.Run(ct, func(t *testing.T) {
			p := &lpPeer{t: t, n: n, form: true}
			_, rs := p.post(msg{"channel": bayeux.ChannelHandshake, "version": "1.0", "supportedConnectionTypes": []string{ct}, "id": "1"})
			if len(rs) != 1 || rs[0]["successful"] != true || !strings.Contains(fmt.Sprint(rs[0]["supportedConnectionTypes"]), ct) {
				t.Fatalf("handshake offering only %s: %v", ct, rs)
			}
			p.clientID = rs[0]["clientId"].(string)
			_, rs = p.post(msg{"channel": bayeux.ChannelConnect, "connectionType": ct, "advice": msg{"timeout": 0}, "id": "2"})
			if len(rs) != 1 || rs[0]["successful"] != true || rs[0]["id"] != "2" {
				t.Fatalf("connect with %s: %v", ct, rs)
			}
		})
	}
}

// TestUnknownClientRepliesCarryTheSubscription: the spec's unsuccessful
// subscribe and unsubscribe replies include the subscription.
func TestUnknownClientRepliesCarryTheSubscription(t *testing.T) {
	n := startNode(t, nil)
	p := &lpPeer{t: t, n: n}
	for _, ch := range []string{bayeux.ChannelSubscribe, bayeux.ChannelUnsubscribe} {
		_, rs := p.post(msg{"channel": ch, "clientId": "nobody", "subscription": "/a/b", "id": "9"})
		if len(rs) != 1 || rs[0]["successful"] != false || rs[0]["subscription"] != "/a/b" || rs[0]["id"] != "9" ||
			!strings.HasPrefix(fmt.Sprint(rs[0]["error"]), "401:") {
			t.Errorf("%s for an unknown client: %v", ch, rs)
		}
	}
}

// TestDisconnectAnswersHeldWebsocketConnect: a /meta/disconnect releases
// the connect held on the client's websocket.
func TestDisconnectAnswersHeldWebsocketConnect(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Timeout = 10 * time.Second })
	p := dialWS(t, n)
	h := p.handshake(nil)
	id := h["clientId"].(string)
	p.send(msg{"channel": bayeux.ChannelConnect, "clientId": id, "connectionType": "websocket", "id": "c1"})
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	p.send(msg{"channel": bayeux.ChannelDisconnect, "clientId": id, "id": "d1"})
	got := map[any]msg{}
	for len(got) < 2 {
		r := p.next(func(m msg) bool { return m["id"] == "c1" || m["id"] == "d1" })
		got[r["id"]] = r
	}
	if got["c1"]["successful"] != true || got["d1"]["successful"] != true || time.Since(start) > 5*time.Second {
		t.Fatalf("held connect and disconnect replies %v after %v", got, time.Since(start))
	}
}

// TestCallbackPollingSizeLimit: a JSONP GET is held to the size limit of
// a POST body.
func TestCallbackPollingSizeLimit(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxMessageBytes = 2048 })
	h := n.srv.Handler()
	msgOf := func(size int) string {
		return `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["callback-polling"],"ext":{"pad":"` + strings.Repeat("x", size) + `"}}]`
	}
	if w := jsonpGet(t, h, "cb", msgOf(1500)); w.Code != http.StatusOK {
		t.Fatalf("under the limit: %d %s", w.Code, w.Body.String())
	}
	if w := jsonpGet(t, h, "cb", msgOf(3000)); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("over the limit: %d %s", w.Code, w.Body.String())
	}
}
