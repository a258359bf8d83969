package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
	"wsfleet/broker"
	"wsfleet/nodeapi"
)

func TestWebsocketFlow(t *testing.T) {
	n := startNode(t, nil)
	p := dialWS(t, n)
	h := p.handshake(nil)
	if h["successful"] != true || h["version"] != "1.0" || h["id"] == nil {
		t.Fatalf("handshake reply %v", h)
	}
	if adv, _ := h["advice"].(map[string]any); adv["reconnect"] != "retry" || adv["timeout"] != float64(2000) {
		t.Fatalf("handshake advice %v", h["advice"])
	}
	if id := h["clientId"].(string); len(id) < 30 {
		t.Fatalf("client id %q is short enough to guess", id)
	}
	if r := p.subscribe("/chat/*", nil); r["successful"] != true || r["subscription"] != "/chat/*" {
		t.Fatalf("subscribe reply %v", r)
	}
	code, res := n.publish(`[{"channel":"/chat/a","data":{"n":1}},{"channel":"/chat/a/deeper","data":2},{"channel":"/chat/b","data":"x"}]`)
	if code != 200 || len(res) != 3 || !res[0].Successful || res[0].Seq == 0 {
		t.Fatalf("publish: %d %+v", code, res)
	}
	got := p.dataN(2)
	if got[0]["channel"] != "/chat/a" || seqOf(got[0]) != res[0].Seq || got[1]["channel"] != "/chat/b" || seqOf(got[1]) != res[2].Seq {
		t.Fatalf("received %v", got)
	}
	if _, leaked := got[0]["clientId"]; leaked {
		t.Fatalf("delivery carries a clientId: %v", got[0])
	}
	p.noData(100 * time.Millisecond) // /chat/a/deeper does not match /chat/*

	// halley's ping
	p.sendRaw([]byte("[]"))
	p.next(func(m msg) bool { return m["pong"] == true })

	// a client publishes (anonymous node: allowed) and receives its own message
	p.send(msg{"channel": "/chat/c", "data": "hi", "ext": msg{"token": "must-not-leak"}})
	// the delivery may overtake the reply: it is pushed as soon as the
	// broker accepts the message.
	var r, d msg
	for r == nil || d == nil {
		m := p.next(func(m msg) bool { return m["channel"] == "/chat/c" })
		if isData(m) {
			d = m
		} else {
			r = m
		}
	}
	if r["successful"] != true {
		t.Fatalf("publish reply %v", r)
	}
	if d["data"] != "hi" || strings.Contains(fmt.Sprint(d), "must-not-leak") {
		t.Fatalf("delivery %v", d)
	}

	// unsubscribe stops delivery
	p.send(msg{"channel": bayeux.ChannelUnsubscribe, "subscription": "/chat/*"})
	if r := p.next(onChannel(bayeux.ChannelUnsubscribe)); r["successful"] != true {
		t.Fatalf("unsubscribe reply %v", r)
	}
	n.publish(`{"channel":"/chat/a","data":3}`)
	p.noData(100 * time.Millisecond)

	// the held connect is answered after the hold, with advice
	c := p.next(onChannel(bayeux.ChannelConnect))
	if c["successful"] != true || c["advice"] == nil {
		t.Fatalf("connect reply %v", c)
	}
}

func TestLongPolling(t *testing.T) {
	for _, form := range []bool{false, true} {
		t.Run(fmt.Sprintf("form=%v", form), func(t *testing.T) {
			n := startNode(t, nil)
			p := &lpPeer{t: t, n: n, form: form}
			if h := p.handshake(nil); h["successful"] != true {
				t.Fatalf("handshake %v", h)
			}
			_, rs := p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/room/**", "id": "s1"})
			if len(rs) != 1 || rs[0]["successful"] != true || rs[0]["id"] != "s1" {
				t.Fatalf("subscribe %v", rs)
			}
			go func() {
				time.Sleep(200 * time.Millisecond)
				n.publish(`{"channel":"/room/1/x","data":1}`)
			}()
			start := time.Now()
			reply, data := p.connect()
			if reply["successful"] != true || len(data) != 1 || data[0]["channel"] != "/room/1/x" {
				t.Fatalf("connect %v %v", reply, data)
			}
			if time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("connect held %v although a message was queued", time.Since(start))
			}
			// nothing queued: the connect is held for the timeout
			start = time.Now()
			reply, data = p.connect()
			if reply["successful"] != true || len(data) != 0 || time.Since(start) < time.Second {
				t.Fatalf("idle connect %v %v after %v", reply, data, time.Since(start))
			}
		})
	}
}

func TestProtocolErrors(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxSubscriptions = 2 })
	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	tests := []struct {
		name string
		in   msg
		want string // error string
	}{
		{"handshake without version", msg{"channel": "/meta/handshake", "supportedConnectionTypes": []string{"websocket"}}, "402:version:Missing required parameter"},
		{"handshake without types", msg{"channel": "/meta/handshake", "version": "1.0"}, "402:supportedConnectionTypes:Missing required parameter"},
		{"handshake with unknown types", msg{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"carrier-pigeon"}}, "301:carrier-pigeon:Connection types not supported"},
		{"connect unknown client", msg{"channel": "/meta/connect", "clientId": "nope", "connectionType": "long-polling"}, "401:nope:Unknown client"},
		{"connect without type", msg{"channel": "/meta/connect"}, "402:connectionType:Missing required parameter"},
		{"subscribe invalid", msg{"channel": "/meta/subscribe", "subscription": "/a//b"}, "405:/a//b:Invalid channel"},
		{"subscribe meta", msg{"channel": "/meta/subscribe", "subscription": "/meta/connect"}, "403:/meta/connect:Forbidden channel"},
		{"subscribe service", msg{"channel": "/meta/subscribe", "subscription": "/service/x"}, "403:/service/x:Forbidden channel"},
		{"subscribe nothing", msg{"channel": "/meta/subscribe"}, "402:subscription:Missing required parameter"},
		{"too many subscriptions", msg{"channel": "/meta/subscribe", "subscription": []string{"/a", "/b", "/c"}}, "403:/a,/b,/c:Too many subscriptions"},
		{"unknown meta", msg{"channel": "/meta/foo"}, "404:/meta/foo:Unknown channel"},
		{"publish wildcard", msg{"channel": "/a/*", "data": 1}, "405:/a/*:Invalid channel"},
		{"publish no data", msg{"channel": "/a"}, "402:data:Missing required parameter"},
		{"publish unknown client", msg{"channel": "/a", "data": 1, "clientId": "nope"}, "401:nope:Unknown client"},
		{"no channel", msg{"data": 1}, "402:channel:Missing required parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in["id"] = "x1"
			_, rs := p.post(tt.in)
			if len(rs) != 1 {
				t.Fatalf("replies %v", rs)
			}
			r := rs[0]
			if r["successful"] != false || r["error"] != tt.want {
				t.Fatalf("reply %v, want error %q", r, tt.want)
			}
			if r["id"] != "x1" {
				t.Fatalf("id not echoed: %v", r)
			}
		})
	}
	// unknown client on connect carries advice to handshake again
	_, rs := p.post(msg{"channel": "/meta/connect", "clientId": "nope", "connectionType": "long-polling"})
	if adv, _ := rs[0]["advice"].(map[string]any); adv["reconnect"] != "handshake" {
		t.Fatalf("advice %v", rs[0]["advice"])
	}
}

func TestBadInput(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxMessageBytes = 1024; c.MaxBatch = 3 })
	post := func(ct, body string) int {
		resp, err := http.Post(n.url+"/bayeux", ct, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name, ct, body string
		want           int
	}{
		{"malformed json", "application/json", `[{"channel":`, 400},
		{"wrong type", "application/json", `{"channel":5}`, 400},
		{"scalar", "application/json", `"x"`, 400},
		{"empty", "application/json", ``, 400},
		{"too big", "application/json", `[{"channel":"/a","data":"` + strings.Repeat("x", 2000) + `"}]`, 413},
		{"too many", "application/json", `[{},{},{},{}]`, 400},
		{"form without message", "application/x-www-form-urlencoded", `foo=bar`, 400},
		{"ping", "application/json", `[]`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(tt.ct, tt.body); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}

	// websocket: a malformed frame gets a Bayeux error; an oversized one
	// closes the socket with 1009.
	p := dialWS(t, n)
	p.sendRaw([]byte(`{nope`))
	if r := p.next(func(msg) bool { return true }); r["successful"] != false || !strings.HasPrefix(r["error"].(string), "400:") {
		t.Fatalf("reply %v", r)
	}
	p.sendRaw([]byte(`[{"channel":"/a"},{"channel":"/a"},{"channel":"/a"},{"channel":"/a"}]`))
	if r := p.next(func(msg) bool { return true }); r["successful"] != false || !strings.Contains(r["error"].(string), "Too many") {
		t.Fatalf("reply %v", r)
	}
	p.sendRaw([]byte(`[{"channel":"/a","data":"` + strings.Repeat("x", 2000) + `"}]`))
	select {
	case <-p.closed:
		if websocket.CloseStatus(p.closeErr) != websocket.StatusMessageTooBig {
			t.Fatalf("closed with %v", p.closeErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("oversized frame did not close the socket")
	}
	if s := scrape(t, n, `wsfleet_errors_total{code="400"}`); s < 3 {
		t.Fatalf("400 errors counted %v", s)
	}
}

func TestServiceChannelsAreNotBroadcast(t *testing.T) {
	n := startNode(t, nil)
	p := dialWS(t, n)
	p.handshake(nil)
	p.subscribe("/**", nil)
	p.send(msg{"channel": "/service/echo", "data": 1})
	if r := p.next(onChannel("/service/echo")); r["successful"] != true {
		t.Fatalf("reply %v", r)
	}
	p.noData(200 * time.Millisecond)
}

func TestSessionTimeout(t *testing.T) {
	n := startNode(t, func(c *Config) { c.SessionTimeout = 200 * time.Millisecond })
	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	deadline := time.Now().Add(5 * time.Second)
	for n.srv.Status().Sessions != 0 {
		if time.Now().After(deadline) {
			t.Fatal("session without connect was not removed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	reply, _ := p.connect()
	if reply["error"] != "401:"+p.clientID+":Unknown client" {
		t.Fatalf("connect after expiry: %v", reply)
	}
}

func TestSlowConsumerIsDisconnected(t *testing.T) {
	n := startNode(t, func(c *Config) { c.QueueLimit = 5 })
	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/x"})
	for i := range 10 {
		n.publish(fmt.Sprintf(`{"channel":"/x","data":%d}`, i))
	}
	if got := n.srv.Status().Sessions; got != 0 {
		t.Fatalf("sessions %d after overflow", got)
	}
	if v := scrape(t, n, "wsfleet_slow_consumers_total"); v != 1 {
		t.Fatalf("slow consumers counted %v", v)
	}
	reply, _ := p.connect()
	if reply["successful"] != false {
		t.Fatalf("dropped session still connects: %v", reply)
	}
}

func TestReplaySince(t *testing.T) {
	n := startNode(t, nil)
	var seqs []uint64
	for i := range 3 {
		_, res := n.publish(fmt.Sprintf(`{"channel":"/r/a","data":%d}`, i))
		seqs = append(seqs, res[0].Seq)
	}
	p := dialWS(t, n)
	p.handshake(nil)
	r := p.subscribe("/r/*", msg{"since": seqs[0]})
	if ext, _ := r["ext"].(map[string]any); r["successful"] != true || ext["replay"] != "ok" {
		t.Fatalf("subscribe %v", r)
	}
	n.publish(`{"channel":"/r/b","data":3}`)
	got := p.dataN(3)
	for i, m := range got {
		if m["data"] != float64(i+1) {
			t.Fatalf("message %d is %v, want data %d (replay, then live, in order)", i, m, i+1)
		}
	}
	p.noData(100 * time.Millisecond)
}

func TestReplayGone(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Broker = broker.NewMemory(broker.MemoryOptions{HistoryMsgs: 2}) })
	for i := range 5 {
		n.publish(fmt.Sprintf(`{"channel":"/g","data":%d}`, i))
	}
	p := dialWS(t, n)
	p.handshake(nil)
	r := p.subscribe("/g", msg{"since": 1})
	if ext, _ := r["ext"].(map[string]any); r["successful"] != true || ext["replay"] != "gone" {
		t.Fatalf("subscribe %v", r)
	}
	n.publish(`{"channel":"/g","data":"live"}`)
	if m := p.next(isData); m["data"] != "live" {
		t.Fatalf("got %v", m)
	}
}

func TestAuth(t *testing.T) {
	secret := []byte("s3cret")
	rules, err := ParseRules([]byte("subscribe /user/{sub}/**\nboth /rooms/{sub}\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, func(c *Config) { c.AuthSecret = secret; c.Rules = rules })
	now := time.Now()
	good, _ := MintToken(secret, "alice", time.Hour, []string{"/team/42/**"}, now)
	expired, _ := MintToken(secret, "alice", -time.Minute, nil, now)
	forged, _ := MintToken([]byte("other"), "alice", time.Hour, nil, now)

	for name, ext := range map[string]msg{"no token": nil, "expired": {"token": expired}, "forged": {"token": forged}, "garbage": {"token": "a.b.c"}} {
		t.Run(name, func(t *testing.T) {
			p := &lpPeer{t: t, n: n}
			h := p.handshake(ext)
			if h["successful"] != false || !strings.HasPrefix(h["error"].(string), "403:") {
				t.Fatalf("handshake %v", h)
			}
		})
	}

	p := dialWS(t, n)
	if h := p.handshake(msg{"token": good}); h["successful"] != true {
		t.Fatalf("handshake %v", h)
	}
	subs := []struct {
		pattern string
		ok      bool
	}{
		{"/user/alice/**", true},
		{"/user/alice/inbox", true},
		{"/user/bob/inbox", false},
		{"/user/*", false},
		{"/user/**", false},
		{"/**", false},
		{"/team/42/chat", true},
		{"/team/42/**", true},
		{"/team/43/chat", false},
		{"/rooms/alice", true},
	}
	for _, s := range subs {
		r := p.subscribe(s.pattern, nil)
		if (r["successful"] == true) != s.ok {
			t.Errorf("subscribe %s: %v, want ok=%v", s.pattern, r, s.ok)
		}
		if !s.ok && r["error"] != "403:"+s.pattern+":Subscription denied" {
			t.Errorf("subscribe %s: error %v", s.pattern, r["error"])
		}
	}
	for ch, ok := range map[string]bool{"/rooms/alice": true, "/user/alice/inbox": false, "/team/42/chat": false} {
		p.send(msg{"channel": ch, "data": 1})
		r := p.next(func(m msg) bool { return m["channel"] == ch && m["successful"] != nil })
		if (r["successful"] == true) != ok {
			t.Errorf("publish %s: %v, want ok=%v", ch, r, ok)
		}
	}
	// what others publish reaches alice only on her channels
	n.publish(`[{"channel":"/user/bob/inbox","data":"bob"},{"channel":"/user/alice/inbox","data":"alice"}]`)
	for {
		m := p.next(isData)
		if m["data"] == "bob" {
			t.Fatal("alice received bob's message")
		}
		if m["data"] == "alice" {
			break
		}
	}
}

func TestAdminEndpoints(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Image = "ami-123" })
	get := func(path, tok string) (int, string) {
		req, _ := http.NewRequest("GET", n.url+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, _ := get("/admin/status", ""); c != 401 {
		t.Fatalf("status without token: %d", c)
	}
	if c, _ := get("/admin/status", "wrong"); c != 401 {
		t.Fatalf("status with a wrong token: %d", c)
	}
	p := dialWS(t, n)
	p.handshake(nil)
	p.subscribe("/a", nil)
	c, body := get("/admin/status", testAdmin)
	var st map[string]any
	json.Unmarshal([]byte(body), &st)
	if c != 200 || st["node"] != "n1" || st["image"] != "ami-123" || st["state"] != "ready" || st["connections"] != float64(1) || st["sessions"] != float64(1) || st["subscriptions"] != float64(1) {
		t.Fatalf("status %d %s", c, body)
	}
	if st["api_version"] != float64(nodeapi.Version) {
		t.Fatalf("status reports api_version %v, want %d: %s", st["api_version"], nodeapi.Version, body)
	}
	if c, _ := get("/healthz", ""); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, _ := get("/readyz", ""); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	c, m := get("/metrics", "")
	for _, want := range []string{`wsfleet_connections{transport="websocket"} 1`, "wsfleet_sessions 1", "wsfleet_subscriptions 1", "wsfleet_publish_deliver_seconds_bucket"} {
		if !strings.Contains(m, want) && !(want == "wsfleet_publish_deliver_seconds_bucket" && strings.Contains(m, "wsfleet_publish_deliver_seconds")) {
			t.Errorf("metrics lack %q (status %d)", want, c)
		}
	}
	// publish requires the admin token
	req, _ := http.NewRequest("POST", n.url+"/publish", strings.NewReader(`{"channel":"/a","data":1}`))
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("publish without token: %d", resp.StatusCode)
	}
	if code, res := n.publish(`{"channel":"/a/*","data":1}`); code != 400 || res[0].Successful {
		t.Fatalf("publish to a wildcard: %d %+v", code, res)
	}
	// drain: 202, readiness fails at once, handshakes are refused
	req, _ = http.NewRequest("POST", n.url+"/admin/drain", strings.NewReader(`{"window":"0s","max_rate":1000,"deadline":"5s"}`))
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("drain: %d", resp.StatusCode)
	}
	if c, _ := get("/readyz", ""); c != 503 {
		t.Fatalf("readyz while draining %d", c)
	}
	lp := &lpPeer{t: t, n: n}
	if h := lp.handshake(nil); h["successful"] != false {
		t.Fatalf("draining node took a handshake: %v", h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.srv.Drain(ctx, DrainOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := n.srv.Status(); st.State != StateDrained || st.Connections != 0 || st.Drain.Released != 1 {
		t.Fatalf("after drain %+v", st)
	}
	if c, _ := get("/admin/status", ""); c != 401 {
		t.Fatal(c)
	}
}

// TestAdminDrainRefusesMalformedRequests checks that a drain request the
// node does not fully understand is a 400 that starts nothing: a typo or a
// newer engine's field must not drain the node with defaults.
func TestAdminDrainRefusesMalformedRequests(t *testing.T) {
	n := startNode(t, nil)
	for _, tc := range []struct{ name, body, want string }{
		{"trailing garbage", `{"window":"1s"} x`, "data after the JSON value"},
		{"two values", `{"window":"1s"}{"window":"2s"}`, "data after the JSON value"},
		{"unknown field", `{"window":"1s","share":0.5}`, `unknown field "share"`},
		{"negative", `{"deadline":"-5s"}`, "deadline -5s"},
		{"number duration", `{"window":30}`, `want a string such as "30s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", n.url+nodeapi.PathDrain, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+testAdmin)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(b), tc.want) {
				t.Fatalf("drain %s: %d %q, want 400 naming %q", tc.body, resp.StatusCode, b, tc.want)
			}
			if st := n.srv.Status(); st.State != StateReady || st.Drain.StartedAt != nil {
				t.Fatalf("a refused drain request started a drain: %+v", st)
			}
		})
	}
}

func TestDrainOptionsOverDefaults(t *testing.T) {
	def := DrainOptions{Window: 30 * time.Second, MaxRate: 200, Deadline: 5 * time.Minute}
	for _, tc := range []struct {
		name, body string
		want       DrainOptions
	}{
		{"empty body takes the defaults", ``, def},
		{"empty object takes the defaults", `{}`, def},
		{"all given", `{"window":"2s","max_rate":100,"deadline":"20s"}`, DrainOptions{Window: 2 * time.Second, MaxRate: 100, Deadline: 20 * time.Second}},
		{"0s is zero, not the default", `{"window":"0s"}`, DrainOptions{Window: 0, MaxRate: 200, Deadline: 5 * time.Minute}},
		{"max_rate 0 is the default", `{"max_rate":0,"deadline":"1m"}`, DrainOptions{Window: 30 * time.Second, MaxRate: 200, Deadline: time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := nodeapi.DecodeDrainRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := drainOptions(r, def); got != tc.want {
				t.Fatalf("%s over %+v = %+v, want %+v", tc.body, def, got, tc.want)
			}
		})
	}
}

// scrape returns the value of one metric line from /metrics.
func scrape(t *testing.T, n *node, series string) float64 {
	t.Helper()
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// TestLostLongPollAnswerIsResentOnOneNode: the single-node variant of
// TestLostLongPollAnswerIsResent.
func TestLostLongPollAnswerIsResentOnOneNode(t *testing.T) {
	n := startNode(t, nil)
	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/l"})
	n.publish(`[{"channel":"/l","data":1},{"channel":"/l","data":2}]`)
	connect := func(id string) []msg {
		_, rs := p.post(msg{"channel": bayeux.ChannelConnect, "connectionType": "long-polling", "id": id})
		var data []msg
		for _, m := range rs {
			if isData(m) {
				data = append(data, m)
			}
		}
		return data
	}
	if got := connect("c1"); len(got) != 2 {
		t.Fatalf("first answer %v", got)
	}
	if got := connect("c1"); len(got) != 2 || got[0]["data"] != float64(1) {
		t.Fatalf("repeated connect got %v, want the lost answer again", got)
	}
	n.publish(`{"channel":"/l","data":3}`)
	if got := connect("c2"); len(got) != 1 || got[0]["data"] != float64(3) {
		t.Fatalf("next connect got %v, want only the new message", got)
	}
}
