package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"wsfleet/internal/nodetest"
)

// The probes speak Bayeux with plain net/http and a websocket library,
// not with the project's client, and check what the Bayeux 1.0
// specification (the CometD documentation's bayeux.adoc) requires and
// what Faye's own server does. One node serves all probes of a test.

type msg = map[string]any

// probe is one raw HTTP peer of a node.
type probe struct {
	t    *testing.T
	n    *nodetest.Node
	hc   *http.Client
	path string // endpoint path; default /bayeux
}

func newProbe(t *testing.T, n *nodetest.Node) *probe {
	return &probe{t: t, n: n, hc: &http.Client{Timeout: 20 * time.Second}, path: "/bayeux"}
}

// do sends req and returns the status, the Content-Type and the body.
func (p *probe) do(req *http.Request) (int, string, []byte) {
	p.t.Helper()
	resp, err := p.hc.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

// postJSON posts a batch as application/json and decodes the replies.
func (p *probe) postJSON(ms ...msg) []msg {
	p.t.Helper()
	b, err := json.Marshal(ms)
	if err != nil {
		p.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.n.URL()+p.path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	code, ct, body := p.do(req)
	if code != http.StatusOK {
		p.t.Fatalf("POST %s: %d %s", b, code, body)
	}
	if !strings.HasPrefix(ct, "application/json") {
		p.t.Errorf("reply Content-Type %q, want application/json", ct)
	}
	return decode(p.t, body)
}

// dialWS opens a websocket to n's /bayeux, with a context that ends after
// within; the test's cleanup closes both.
func dialWS(t *testing.T, n *nodetest.Node, within time.Duration) (context.Context, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	c, _, err := websocket.Dial(ctx, "ws://"+n.Addr+"/bayeux", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return ctx, c
}

func decode(t *testing.T, b []byte) []msg {
	t.Helper()
	var out []msg
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("reply %q is not a JSON array of messages: %v", b, err)
	}
	return out
}

// handshake returns a new clientId.
func (p *probe) handshake(types ...string) string {
	p.t.Helper()
	if len(types) == 0 {
		types = []string{"long-polling"}
	}
	rs := p.postJSON(msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": types, "id": "h"})
	if len(rs) != 1 || rs[0]["successful"] != true {
		p.t.Fatalf("handshake: %v", rs)
	}
	return rs[0]["clientId"].(string)
}

// first returns the first reply on channel.
func first(t *testing.T, rs []msg, channel string) msg {
	t.Helper()
	for _, r := range rs {
		if r["channel"] == channel {
			return r
		}
	}
	t.Fatalf("no reply on %s in %v", channel, rs)
	return nil
}

func TestHandshakeAdvertisesTransports(t *testing.T) {
	n := suite.Start(t)
	p := newProbe(t, n)
	rs := p.postJSON(msg{"channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
		"supportedConnectionTypes": []string{"websocket", "long-polling", "callback-polling"}, "id": "7"})
	h := first(t, rs, "/meta/handshake")
	if h["successful"] != true || h["version"] != "1.0" || h["id"] != "7" {
		t.Fatalf("handshake reply %v", h)
	}
	got, _ := h["supportedConnectionTypes"].([]any)
	for _, want := range []string{"websocket", "long-polling", "callback-polling", "cross-origin-long-polling"} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("supportedConnectionTypes %v lacks %s", got, want)
		}
	}
	// a client offering only a transport the server lacks is refused with
	// 301 and the server's own list.
	rs = p.postJSON(msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"iframe"}, "id": "8"})
	h = first(t, rs, "/meta/handshake")
	if h["successful"] != false || !strings.HasPrefix(fmt.Sprint(h["error"]), "301:") || h["id"] != "8" || h["supportedConnectionTypes"] == nil {
		t.Errorf("handshake with no common transport: %v", h)
	}
}

// TestRepliesEchoIDAndCarryError sends requests the server must refuse and
// checks every reply: successful false, an error in the Bayeux form, the
// request's id, and the request's channel and subscription (the spec's
// unsuccessful subscribe reply "MUST include the subscription").
func TestRepliesEchoIDAndCarryError(t *testing.T) {
	n := suite.Start(t, "--max-subscriptions", "2")
	p := newProbe(t, n)
	id := p.handshake()
	cases := []struct {
		name string
		req  msg
		code string // error code prefix
	}{
		{"unknown meta channel", msg{"channel": "/meta/frobnicate", "clientId": id}, "404:"},
		{"connect without clientId", msg{"channel": "/meta/connect", "connectionType": "long-polling"}, "402:"},
		{"connect without connectionType", msg{"channel": "/meta/connect", "clientId": id}, "402:"},
		{"connect with unknown connectionType", msg{"channel": "/meta/connect", "clientId": id, "connectionType": "flash"}, "301:"},
		{"connect with unknown client", msg{"channel": "/meta/connect", "clientId": "nobody", "connectionType": "long-polling"}, "401:"},
		{"subscribe without clientId", msg{"channel": "/meta/subscribe", "subscription": "/a"}, "402:"},
		{"subscribe unknown client", msg{"channel": "/meta/subscribe", "clientId": "nobody", "subscription": "/a"}, "401:"},
		{"subscribe invalid channel", msg{"channel": "/meta/subscribe", "clientId": id, "subscription": "no-slash"}, "405:"},
		{"subscribe meta channel", msg{"channel": "/meta/subscribe", "clientId": id, "subscription": "/meta/handshake"}, "403:"},
		{"subscribe over the limit", msg{"channel": "/meta/subscribe", "clientId": id, "subscription": []string{"/a", "/b", "/c"}}, "403:"},
		{"unsubscribe unknown client", msg{"channel": "/meta/unsubscribe", "clientId": "nobody", "subscription": "/a"}, "401:"},
		{"disconnect unknown client", msg{"channel": "/meta/disconnect", "clientId": "nobody"}, "401:"},
		{"handshake without version", msg{"channel": "/meta/handshake", "supportedConnectionTypes": []string{"long-polling"}}, "402:"},
		{"publish to a wildcard", msg{"channel": "/chat/*", "clientId": id, "data": 1}, "405:"},
		{"publish without data", msg{"channel": "/chat/a", "clientId": id}, "402:"},
		{"publish unknown client", msg{"channel": "/chat/a", "clientId": "nobody", "data": 1}, "401:"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reqID := fmt.Sprintf("r%d", i)
			c.req["id"] = reqID
			rs := newProbe(t, n).postJSON(c.req)
			r := first(t, rs, c.req["channel"].(string))
			if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), c.code) {
				t.Errorf("reply %v: want successful false, error %s...", r, c.code)
			}
			if r["id"] != reqID {
				t.Errorf("reply %v does not echo id %s", r, reqID)
			}
			if sub, ok := c.req["subscription"]; ok && fmt.Sprint(r["subscription"]) != fmt.Sprint(sub) {
				t.Errorf("reply %v does not carry the subscription %v", r, sub)
			}
		})
	}
}

// TestPublishToAnEmptyChannel: a publish nobody hears is still a success.
func TestPublishToAnEmptyChannel(t *testing.T) {
	n := suite.Start(t)
	p := newProbe(t, n)
	id := p.handshake()
	rs := p.postJSON(msg{"channel": "/nobody/here", "clientId": id, "data": msg{"x": 1}, "id": "p1"})
	r := first(t, rs, "/nobody/here")
	if r["successful"] != true || r["id"] != "p1" {
		t.Fatalf("publish reply %v", r)
	}
	if _, ok := r["data"]; ok {
		t.Errorf("publish reply %v carries data: clients take a reply with data for a delivery", r)
	}
}

// TestConnectAdviceTimeout: a connect's advice.timeout bounds how long the
// server holds it (CometD sends 0 on its first connect), and the server's
// own timeout (4s here) bounds the rest.
func TestConnectAdviceTimeout(t *testing.T) {
	n := suite.Start(t)
	p := newProbe(t, n)
	id := p.handshake()
	for _, c := range []struct {
		name     string
		advice   any
		min, max time.Duration
	}{
		{"timeout 0 answered at once", msg{"timeout": 0}, 0, 2 * time.Second},
		{"timeout 1000 held about 1s", msg{"timeout": 1000}, 900 * time.Millisecond, 3500 * time.Millisecond},
		{"no advice held for the server timeout", nil, 2500 * time.Millisecond, 8 * time.Second},
		{"larger timeout capped by the server", msg{"timeout": 60000}, 2500 * time.Millisecond, 8 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := msg{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "id": "c"}
			if c.advice != nil {
				m["advice"] = c.advice
			}
			start := time.Now()
			r := first(t, p.postJSON(m), "/meta/connect")
			took := time.Since(start)
			if r["successful"] != true || r["id"] != "c" {
				t.Fatalf("connect reply %v", r)
			}
			if took < c.min || took > c.max {
				t.Errorf("connect answered after %v, want between %v and %v", took, c.min, c.max)
			}
		})
	}
}

// TestSecondConnectAnswersTheFirst: when a client sends a new long-poll
// /meta/connect while one is held (a browser whose request the user agent
// retried, or a client that timed its poll out), the server must answer
// the held one rather than leave it hanging, as CometD's and Faye's
// servers do; a client limited to two connections would stall otherwise.
func TestSecondConnectAnswersTheFirst(t *testing.T) {
	n := suite.Start(t)
	p := newProbe(t, n)
	id := p.handshake()
	type res struct {
		rs   []msg
		took time.Duration
	}
	firstDone := make(chan res, 1)
	start := time.Now()
	go func() {
		rs := p.postJSON(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "id": "c1"})
		firstDone <- res{rs, time.Since(start)}
	}()
	time.Sleep(500 * time.Millisecond)
	secondDone := make(chan []msg, 1)
	go func() {
		secondDone <- p.postJSON(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "id": "c2"})
	}()
	select {
	case r := <-firstDone:
		c := first(t, r.rs, "/meta/connect")
		if c["id"] != "c1" || c["successful"] != true {
			t.Errorf("first connect's reply %v", c)
		}
		if r.took > 3*time.Second {
			t.Errorf("first connect answered after %v: it waited for its own hold", r.took)
		}
	case <-time.After(3 * time.Second):
		t.Errorf("first connect still held 2.5s after a second connect for the same client")
		<-firstDone
	}
	// the second connect is the one held now; a publish wakes it.
	go func() {
		time.Sleep(300 * time.Millisecond)
		p.postJSON(msg{"channel": "/meta/subscribe", "clientId": id, "subscription": "/x"})
		time.Sleep(100 * time.Millisecond)
		p.adminPublish(`{"channel":"/x","data":1}`)
	}()
	rs := <-secondDone
	if c := first(t, rs, "/meta/connect"); c["id"] != "c2" || c["successful"] != true {
		t.Errorf("second connect's reply %v", c)
	}
}

func (p *probe) adminPublish(body string) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.n.URL()+"/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	if code, _, b := p.do(req); code != http.StatusOK {
		p.t.Fatalf("publish: %d %s", code, b)
	}
}

// TestContentTypes: the JSON body is read whatever its media type
// parameters, a form body is read from its message field (Faye's
// cross-origin transport posts text/plain "message=..."), and replies are
// application/json.
func TestContentTypes(t *testing.T) {
	n := suite.Start(t)
	hs := `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"h"}]`
	for _, c := range []struct {
		name, contentType, body string
	}{
		{"json", "application/json", hs},
		{"json with charset", "application/json;charset=UTF-8", hs},
		{"single object", "application/json", strings.Trim(hs, "[]")},
		{"form", "application/x-www-form-urlencoded", "message=" + url.QueryEscape(hs)},
		{"faye cors text/plain form", "text/plain;charset=UTF-8", "message=" + url.QueryEscape(hs)},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newProbe(t, n)
			req, _ := http.NewRequest(http.MethodPost, n.URL()+"/bayeux", strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.contentType)
			code, ct, body := p.do(req)
			if code != http.StatusOK || !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("%d %q %s", code, ct, body)
			}
			if r := first(t, decode(t, body), "/meta/handshake"); r["successful"] != true || r["id"] != "h" {
				t.Fatalf("handshake reply %v", r)
			}
		})
	}
}

// TestSizeLimits: a body over --max-message-bytes is refused with 413
// (not read to its end), a 10 MB body too, a JSONP GET too, a websocket
// frame over it closes the socket with 1009, and the node serves the next
// client.
func TestSizeLimits(t *testing.T) {
	n := suite.Start(t, "--max-message-bytes", "4096")
	p := newProbe(t, n)
	id := p.handshake()
	big := func(size int) []byte {
		b, _ := json.Marshal([]msg{{"channel": "/chat/a", "clientId": id, "data": strings.Repeat("x", size)}})
		return b
	}
	// just under the limit passes
	rs := p.postJSON(msg{"channel": "/chat/a", "clientId": id, "data": strings.Repeat("x", 3900), "id": "ok"})
	if r := first(t, rs, "/chat/a"); r["successful"] != true {
		t.Fatalf("publish under the limit: %v", r)
	}
	for _, size := range []int{5000, 10 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, n.URL()+"/bayeux", bytes.NewReader(big(size)))
			req.Header.Set("Content-Type", "application/json")
			code, _, body := p.do(req)
			if code != http.StatusRequestEntityTooLarge {
				t.Fatalf("body of %d bytes: %d %s", size, code, body)
			}
		})
	}
	t.Run("callback-polling GET", func(t *testing.T) {
		q := url.Values{"message": {string(big(5000))}, "jsonp": {"cb"}}
		req, _ := http.NewRequest(http.MethodGet, n.URL()+"/bayeux?"+q.Encode(), nil)
		if code, _, body := p.do(req); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("JSONP GET over the limit: %d %s", code, body)
		}
	})
	t.Run("websocket frame", func(t *testing.T) {
		ctx, c := dialWS(t, n, 10*time.Second)
		c.SetReadLimit(1 << 20)
		if err := c.Write(ctx, websocket.MessageText, big(5000)); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Fatalf("oversized frame: read gave %v, want close 1009", err)
		}
	})
	if newProbe(t, n).handshake() == "" {
		t.Fatal("node refuses a handshake after the oversized requests")
	}
}

// TestWebsocketProtocol: over a websocket, a connect with advice.timeout 0
// is answered at once, a second connect answers the held one, and replies
// echo ids.
func TestWebsocketProtocol(t *testing.T) {
	n := suite.Start(t)
	ctx, c := dialWS(t, n, 20*time.Second)
	send := func(ms ...msg) {
		t.Helper()
		b, _ := json.Marshal(ms)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	// next reads frames until a reply on channel with id arrives.
	next := func(channel, id string, within time.Duration) msg {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, within)
		defer rcancel()
		for {
			_, b, err := c.Read(rctx)
			if err != nil {
				t.Fatalf("waiting %v for %s id %s: %v", within, channel, id, err)
			}
			for _, m := range decode(t, b) {
				if m["channel"] == channel && m["id"] == id {
					return m
				}
			}
		}
	}
	send(msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"websocket"}, "id": "1"})
	h := next("/meta/handshake", "1", 5*time.Second)
	id, _ := h["clientId"].(string)
	if h["successful"] != true || id == "" {
		t.Fatalf("handshake %v", h)
	}
	send(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket", "advice": msg{"timeout": 0}, "id": "2"})
	if r := next("/meta/connect", "2", 2*time.Second); r["successful"] != true {
		t.Fatalf("connect %v", r)
	}
	send(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket", "id": "3"})
	time.Sleep(300 * time.Millisecond)
	send(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket", "id": "4"})
	if r := next("/meta/connect", "3", 2*time.Second); r["successful"] != true {
		t.Fatalf("held connect %v", r)
	}
	send(msg{"channel": "/meta/frobnicate", "clientId": id, "id": "5"})
	if r := next("/meta/frobnicate", "5", 2*time.Second); r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "404:") {
		t.Fatalf("unknown meta channel %v", r)
	}
	send(msg{"channel": "/meta/disconnect", "clientId": id, "id": "6"})
	if r := next("/meta/disconnect", "6", 2*time.Second); r["successful"] != true {
		t.Fatalf("disconnect %v", r)
	}
}

// TestCrossOriginLongPolling is what a browser Faye or CometD client does
// on another origin: a CORS preflight, then POSTs with an Origin, and
// connects with connectionType cross-origin-long-polling (Faye).
func TestCrossOriginLongPolling(t *testing.T) {
	n := suite.Start(t)
	p := newProbe(t, n)
	const origin = "http://app.example"
	req, _ := http.NewRequest(http.MethodOptions, n.URL()+"/bayeux", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := p.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	post := func(ms ...msg) []msg {
		t.Helper()
		b, _ := json.Marshal(ms)
		req, _ := http.NewRequest(http.MethodPost, n.URL()+"/bayeux", strings.NewReader("message="+url.QueryEscape(string(b))))
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		resp, err := p.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("cross-origin POST: %d %v %s", resp.StatusCode, resp.Header, body)
		}
		return decode(t, body)
	}
	h := first(t, post(msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"cross-origin-long-polling", "callback-polling"}, "id": "1"}), "/meta/handshake")
	id, _ := h["clientId"].(string)
	if h["successful"] != true || id == "" {
		t.Fatalf("handshake offering cross-origin-long-polling and callback-polling: %v", h)
	}
	rs := post(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "cross-origin-long-polling", "advice": msg{"timeout": 0}, "id": "2"},
		msg{"channel": "/meta/subscribe", "clientId": id, "subscription": "/room", "id": "3"})
	if c := first(t, rs, "/meta/connect"); c["successful"] != true {
		t.Fatalf("connect with cross-origin-long-polling: %v", c)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		p.adminPublish(`{"channel":"/room","data":"hi"}`)
	}()
	rs = post(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "cross-origin-long-polling", "id": "4"})
	if first(t, rs, "/meta/connect")["successful"] != true || first(t, rs, "/room")["data"] != "hi" {
		t.Fatalf("held cross-origin connect: %v", rs)
	}
}

// TestCallbackPolling is JSONP as Faye's and CometD's browser transports
// do it: a GET with message= and jsonp=, answered with a script that calls
// the callback, served as JavaScript; a callback name that is not a plain
// JavaScript identifier path is refused (it would be script injection).
func TestCallbackPolling(t *testing.T) {
	n := suite.Start(t)
	p := newProbe(t, n)
	get := func(callback string, ms ...msg) (int, string, string) {
		t.Helper()
		b, _ := json.Marshal(ms)
		q := url.Values{"message": {string(b)}}
		if callback != "" {
			q.Set("jsonp", callback)
		}
		req, _ := http.NewRequest(http.MethodGet, n.URL()+"/bayeux?"+q.Encode(), nil)
		code, ct, body := p.do(req)
		return code, ct, string(body)
	}
	// unwrap checks the script's shape and returns the replies inside.
	unwrap := func(callback, ct, body string) []msg {
		t.Helper()
		if !strings.HasPrefix(ct, "text/javascript") {
			t.Fatalf("JSONP served as %q, want text/javascript", ct)
		}
		prefix := "/**/" + callback + "("
		if !strings.HasPrefix(body, prefix) || !strings.HasSuffix(body, ");") {
			t.Fatalf("JSONP body %q, want %s...);", body, prefix)
		}
		return decode(t, []byte(strings.TrimSuffix(strings.TrimPrefix(body, prefix), ");")))
	}
	code, ct, body := get("__jsonp1__", msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"callback-polling"}, "id": "1"})
	if code != http.StatusOK {
		t.Fatalf("JSONP handshake: %d %s", code, body)
	}
	h := first(t, unwrap("__jsonp1__", ct, body), "/meta/handshake")
	id, _ := h["clientId"].(string)
	if h["successful"] != true || id == "" {
		t.Fatalf("JSONP handshake reply %v", h)
	}
	code, ct, body = get("_cometd_jsonp_2", msg{"channel": "/meta/connect", "clientId": id, "connectionType": "callback-polling", "advice": msg{"timeout": 0}, "id": "2"})
	if code != http.StatusOK {
		t.Fatalf("JSONP connect: %d %s", code, body)
	}
	if c := first(t, unwrap("_cometd_jsonp_2", ct, body), "/meta/connect"); c["successful"] != true {
		t.Fatalf("connect with callback-polling: %v", c)
	}
	// Faye's default callback name when none is given
	code, ct, body = get("", msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"callback-polling"}, "id": "3"})
	if code != http.StatusOK {
		t.Fatalf("JSONP without a callback name: %d %s", code, body)
	}
	unwrap("jsonpcallback", ct, body)
	for _, bad := range []string{"alert(1);x", "a b", "1abc", "a..b", "a.", "x</script>", "a\u2028b", strings.Repeat("a", 300)} {
		code, _, body := get(bad, msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"callback-polling"}})
		if code != http.StatusBadRequest || strings.Contains(body, "/meta/handshake") {
			t.Errorf("callback %q: %d %q, want 400 without replies", bad, code, body)
		}
	}
}

// TestMountSubpaths: CometD appends the message type to the URL of its
// HTTP transports by default (/bayeux/handshake, /bayeux/connect), and
// Faye's server answers any path under its mount; the node must too.
func TestMountSubpaths(t *testing.T) {
	n := suite.Start(t)
	for _, sub := range []string{"/handshake", "/connect", "/"} {
		p := newProbe(t, n)
		p.path = "/bayeux" + sub
		if id := p.handshake(); id == "" {
			t.Fatalf("no handshake at %s", p.path)
		}
	}
}

// TestDisconnectReleasesHeldConnect: "The server SHOULD release any
// waiting meta message handlers" on /meta/disconnect: a held connect is
// answered at once rather than left to its hold, over both transports.
func TestDisconnectReleasesHeldConnect(t *testing.T) {
	n := suite.Start(t)
	t.Run("long-polling", func(t *testing.T) {
		p := newProbe(t, n)
		id := p.handshake()
		held := make(chan time.Time, 1)
		go func() {
			p.postJSON(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "id": "c"})
			held <- time.Now()
		}()
		time.Sleep(300 * time.Millisecond)
		sent := time.Now()
		if r := first(t, p.postJSON(msg{"channel": "/meta/disconnect", "clientId": id, "id": "d"}), "/meta/disconnect"); r["successful"] != true {
			t.Fatalf("disconnect %v", r)
		}
		select {
		case at := <-held:
			if at.Sub(sent) > 2*time.Second {
				t.Errorf("held connect answered %v after the disconnect", at.Sub(sent))
			}
		case <-time.After(3 * time.Second):
			t.Errorf("held connect not answered 3s after the disconnect")
			<-held
		}
	})
	t.Run("websocket", func(t *testing.T) {
		ctx, c := dialWS(t, n, 10*time.Second)
		send := func(m msg) {
			b, _ := json.Marshal([]msg{m})
			if err := c.Write(ctx, websocket.MessageText, b); err != nil {
				t.Fatal(err)
			}
		}
		replies := map[string]msg{}
		read := func(want ...string) {
			t.Helper()
			rctx, rcancel := context.WithTimeout(ctx, 2500*time.Millisecond)
			defer rcancel()
			for {
				done := true
				for _, w := range want {
					if replies[w] == nil {
						done = false
					}
				}
				if done {
					return
				}
				_, b, err := c.Read(rctx)
				if err != nil {
					t.Fatalf("waiting for replies %v, have %v: %v", want, replies, err)
				}
				for _, m := range decode(t, b) {
					if id, ok := m["id"].(string); ok {
						replies[id] = m
					}
				}
			}
		}
		send(msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"websocket"}, "id": "h"})
		read("h")
		id, _ := replies["h"]["clientId"].(string)
		send(msg{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket", "id": "c"})
		time.Sleep(300 * time.Millisecond)
		send(msg{"channel": "/meta/disconnect", "clientId": id, "id": "d"})
		read("d", "c")
	})
}
