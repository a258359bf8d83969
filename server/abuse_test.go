package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
	"wsfleet/broker"
	"wsfleet/client"
)

// publishN publishes data 0..n-1 on channel through /publish.
func publishN(t *testing.T, n *node, channel string, count int) {
	t.Helper()
	for i := range count {
		if code, _ := n.publish(fmt.Sprintf(`{"channel":%q,"data":%d}`, channel, i)); code != http.StatusOK {
			t.Fatalf("publish %d: status %d", i, code)
		}
	}
}

// A subscribe's replay is bounded by the queue limit: up to the limit it
// is replayed whole; beyond it the answer is replay gone, nothing of the
// history is queued, and the subscription is live.
func TestReplayOverQueueLimitIsGone(t *testing.T) {
	const limit = 20
	for _, tc := range []struct {
		name     string
		history  int
		wantGone bool
	}{
		{"at the limit", limit, false},
		{"over the limit", limit + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.QueueLimit = limit })
			publishN(t, n, "/q", tc.history)
			p := dialWS(t, n)
			p.handshake(nil)
			r := p.subscribe("/q", msg{"since": 0})
			ext, _ := r["ext"].(map[string]any)
			want := "ok"
			if tc.wantGone {
				want = "gone"
			}
			if r["successful"] != true || ext["replay"] != want {
				t.Fatalf("subscribe %v, want successful with ext.replay %s", r, want)
			}
			if !tc.wantGone {
				got := p.dataN(tc.history)
				for i, m := range got {
					if m["data"] != float64(i) {
						t.Fatalf("replayed message %d is %v", i, m)
					}
				}
			}
			n.publish(`{"channel":"/q","data":"live"}`)
			if m := p.next(isData); m["data"] != "live" {
				t.Fatalf("after the replay got %v, want the live message", m)
			}
			gone := 0.0
			if tc.wantGone {
				gone = 1
			}
			if v := scrape(t, n, `wsfleet_replays_over_limit_total{answer="gone"}`); v != gone {
				t.Fatalf("replays over limit counted %v, want %v", v, gone)
			}
			if got := n.srv.Status().Sessions; got != 1 {
				t.Fatalf("sessions %d, want the subscriber's", got)
			}
		})
	}
}

// A session taken over after a drain replays what it missed: all of it
// within the queue limit (the hand-over loses nothing), and beyond it the
// session ends as a slow consumer's, answered 401 with advice to
// handshake, and is not left in the store to be taken over again.
func TestTakeOverReplayOverQueueLimit(t *testing.T) {
	const limit = 15
	for _, tc := range []struct {
		name   string
		missed int
		over   bool
	}{
		{"at the limit", limit, false},
		{"over the limit", limit + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := broker.NewMemory(broker.MemoryOptions{})
			a := startNode(t, func(c *Config) { c.NodeID = "a"; c.Broker = br; c.QueueLimit = limit })
			b := startNode(t, func(c *Config) { c.NodeID = "b"; c.Broker = br; c.QueueLimit = limit })
			p := &lpPeer{t: t, n: a}
			p.handshake(nil)
			p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/h"})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// the client is between polls: released and saved at once
			a.srv.Drain(ctx, DrainOptions{Window: 0, MaxRate: 1000, Deadline: 2 * time.Second})
			if _, err := br.Sessions().Load(ctx, p.clientID); err != nil {
				t.Fatalf("drain saved no session: %v", err)
			}
			publishN(t, b, "/h", tc.missed)
			p.n = b
			reply, data := p.connect()
			if !tc.over {
				if reply["successful"] != true {
					t.Fatalf("connect on b: %v", reply)
				}
				checkExactlyOnce(t, data, tc.missed)
				return
			}
			adv, _ := reply["advice"].(map[string]any)
			if reply["successful"] != false || !strings.HasPrefix(fmt.Sprint(reply["error"]), "401:") || adv["reconnect"] != "handshake" {
				t.Fatalf("connect on b: %v, want 401 with advice to handshake", reply)
			}
			if len(data) != 0 {
				t.Fatalf("%d messages queued beyond the limit", len(data))
			}
			if v := scrape(t, b, `wsfleet_replays_over_limit_total{answer="slow_consumer"}`); v != 1 {
				t.Fatalf("replays over limit counted %v", v)
			}
			if v := scrape(t, b, "wsfleet_slow_consumers_total"); v != 1 {
				t.Fatalf("slow consumers counted %v", v)
			}
			if _, err := br.Sessions().Load(ctx, p.clientID); !errors.Is(err, broker.ErrNoSession) {
				t.Fatalf("the session is still stored: %v", err)
			}
			if got := b.srv.Status().Sessions; got != 0 {
				t.Fatalf("b holds %d sessions", got)
			}
		})
	}
}

// Two replays that each fit the queue limit but together do not: the
// queue never holds more than the limit; the client is a slow consumer.
func TestReplaysTogetherOverQueueLimit(t *testing.T) {
	const limit = 10
	n := startNode(t, func(c *Config) { c.QueueLimit = limit })
	publishN(t, n, "/a", 6)
	publishN(t, n, "/b", 6)
	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	_, rs := p.post(
		msg{"channel": bayeux.ChannelSubscribe, "subscription": "/a", "ext": msg{"since": 0}},
		msg{"channel": bayeux.ChannelSubscribe, "subscription": "/b", "ext": msg{"since": 0}},
	)
	for _, r := range rs {
		if ext, _ := r["ext"].(map[string]any); r["successful"] != true || ext["replay"] != "ok" {
			t.Fatalf("subscribe %v: each replay fits the limit", r)
		}
	}
	if got := n.srv.Status().Sessions; got != 0 {
		t.Fatalf("sessions %d: 12 messages queued with a limit of 10", got)
	}
	if v := scrape(t, n, "wsfleet_slow_consumers_total"); v != 1 {
		t.Fatalf("slow consumers counted %v", v)
	}
}

// A websocket connect with ext.since (the Go client's, after a lost
// connection) gets again what the node wrote after the client's cursor; a
// client could name any cursor, and the history holds far more than the
// session was ever given. Up to the queue limit the resend is whole;
// beyond it the session ends as a slow consumer's (401 with advice to
// handshake), rather than queue the channel's history at every connect.
func TestResumedWebsocketOverQueueLimit(t *testing.T) {
	const limit = 10
	for _, tc := range []struct {
		name   string
		resend int // messages after the connect's ext.since, the live one included
		over   bool
	}{
		{"at the limit", limit, false},
		{"over the limit", limit + 1, true},
		{"from the start", 2*limit + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.QueueLimit = limit })
			// history from before the subscription: the client was never given it
			seqs := []uint64{0}
			for i := range 2 * limit {
				_, res := n.publish(fmt.Sprintf(`{"channel":"/q","data":%d}`, i))
				seqs = append(seqs, res[0].Seq)
			}
			p := dialWS(t, n)
			p.handshake(nil)
			if r := p.subscribe("/q", nil); r["successful"] != true {
				t.Fatalf("subscribe %v", r)
			}
			n.publish(`{"channel":"/q","data":"live"}`)
			if m := p.next(isData); m["data"] != "live" {
				t.Fatalf("got %v, want the live message", m)
			}
			since := seqs[len(seqs)-tc.resend]
			p2 := dialWS(t, n)
			p2.clientID = p.clientID
			p2.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket", "advice": msg{"timeout": 0}, "ext": msg{"since": since}})
			if !tc.over {
				got := p2.dataN(tc.resend)
				if got[0]["data"] != float64(2*limit-tc.resend+1) || got[len(got)-1]["data"] != "live" {
					t.Fatalf("resent %v ... %v", got[0], got[len(got)-1])
				}
				if r := p2.next(onChannel(bayeux.ChannelConnect)); r["successful"] != true {
					t.Fatalf("connect %v", r)
				}
				return
			}
			r := p2.next(onChannel(bayeux.ChannelConnect))
			adv, _ := r["advice"].(map[string]any)
			if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "401:") || adv["reconnect"] != "handshake" {
				t.Fatalf("connect %v, want 401 with advice to handshake", r)
			}
			p2.noData(100 * time.Millisecond)
			if got := n.srv.Status().Sessions; got != 0 {
				t.Fatalf("sessions %d, want the session ended", got)
			}
			if v := scrape(t, n, `wsfleet_replays_over_limit_total{answer="slow_consumer"}`); v != 1 {
				t.Fatalf("replays over limit counted %v", v)
			}
		})
	}
}

func TestCheckText(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`"plain"`, true},
		{`"é ✓ 😀"`, true},
		{`"\ud83d\ude00"`, true},
		{`"\uD83D\uDE00"`, true},
		{`"\u00e9\n\"\\"`, true},
		{`"\\ud800"`, true}, // an escaped backslash, then text
		{`{"a":"\\\\","b":"\u0041"}`, true},
		{`"\ud800"`, false},
		{`"\uDBFF"`, false},
		{`"\udc00"`, false},
		{`"\ud83d x"`, false},
		{`"\ud83d\u0041"`, false},
		{`"\ude00\ud83d"`, false},
		{`"\\\ud800"`, false},
		{"\"\xff\"", false},
		{"\"\xed\xa0\x80\"", false}, // a surrogate encoded as UTF-8
		{"\"\xc3\"", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if err := checkText([]byte(tc.in)); (err == nil) != tc.ok {
				t.Fatalf("checkText(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
}

// Data that is not valid UTF-8 text is refused wherever it enters, and
// nothing of it reaches a subscriber.
func TestInvalidTextIsRefused(t *testing.T) {
	n := startNode(t, nil)
	sub := dialWS(t, n)
	sub.handshake(nil)
	if r := sub.subscribe("/t", nil); r["successful"] != true {
		t.Fatalf("subscribe %v", r)
	}
	const lone = `"\ud800"`
	bad := "\"\xff\xfe\""
	refusedBayeux := func(t *testing.T, r msg) {
		t.Helper()
		if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "400:data:") {
			t.Fatalf("publish %v, want a 400 Bayeux error", r)
		}
	}
	t.Run("websocket lone surrogate", func(t *testing.T) {
		p := dialWS(t, n)
		p.handshake(nil)
		p.sendRaw([]byte(`[{"channel":"/t","clientId":"` + p.clientID + `","id":"p1","data":{"x":` + lone + `}}]`))
		refusedBayeux(t, p.next(func(m msg) bool { return m["id"] == "p1" }))
	})
	t.Run("websocket invalid bytes", func(t *testing.T) {
		p := dialWS(t, n)
		p.handshake(nil)
		p.sendRaw([]byte(`[{"channel":"/t","clientId":"` + p.clientID + `","id":"p1","data":` + bad + `}]`))
		select {
		case <-p.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("socket still open after a text frame that is not UTF-8")
		}
		if websocket.CloseStatus(p.closeErr) != websocket.StatusInvalidFramePayloadData {
			t.Fatalf("closed with %v, want status 1007", p.closeErr)
		}
	})
	for _, form := range []bool{false, true} {
		t.Run(fmt.Sprintf("long-polling form=%v", form), func(t *testing.T) {
			p := &lpPeer{t: t, n: n, form: form}
			p.handshake(nil)
			_, rs := p.postRaw([]byte(`[{"channel":"/t","clientId":"` + p.clientID + `","data":` + lone + `}]`))
			if len(rs) != 1 {
				t.Fatalf("replies %v", rs)
			}
			refusedBayeux(t, rs[0])
			if code, _ := p.postRaw([]byte(`[{"channel":"/t","clientId":"` + p.clientID + `","data":` + bad + `}]`)); code != http.StatusBadRequest {
				t.Fatalf("invalid bytes: status %d, want 400", code)
			}
		})
	}
	t.Run("callback-polling", func(t *testing.T) {
		p := &lpPeer{t: t, n: n}
		p.handshake(nil)
		for name, body := range map[string]string{"invalid bytes": bad, "lone surrogate": lone} {
			q := url.Values{"message": {`[{"channel":"/t","clientId":"` + p.clientID + `","data":` + body + `}]`}, "jsonp": {"cb"}}
			resp, err := http.Get(n.url + "/bayeux?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			var buf strings.Builder
			_, _ = fmt.Fprint(&buf, readAll(t, resp))
			switch name {
			case "invalid bytes":
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("%s: status %d, want 400", name, resp.StatusCode)
				}
			default:
				if resp.StatusCode != http.StatusOK || !strings.Contains(buf.String(), `"error":"400:data:`) {
					t.Fatalf("%s: status %d %s, want a 400 Bayeux error", name, resp.StatusCode, buf.String())
				}
			}
		}
	})
	t.Run("publish endpoint", func(t *testing.T) {
		if code, _ := n.publish(`{"channel":"/t","data":` + bad + `}`); code != http.StatusBadRequest {
			t.Fatalf("invalid bytes: status %d, want 400", code)
		}
		code, res := n.publish(`{"channel":"/t","data":` + lone + `}`)
		if code != http.StatusBadRequest || len(res) != 1 || !strings.HasPrefix(res[0].Error, "400:data:") {
			t.Fatalf("lone surrogate: status %d %v, want 400", code, res)
		}
		// a valid pair is text
		if code, _ := n.publish(`{"channel":"/t","data":"\ud83d\ude00"}`); code != http.StatusOK {
			t.Fatalf("surrogate pair: status %d, want 200", code)
		}
	})
	if m := sub.next(isData); m["data"] != "😀" {
		t.Fatalf("subscriber got %v, want only the valid message", m)
	}
	sub.noData(100 * time.Millisecond)
	if v := scrape(t, n, "wsfleet_invalid_text_total"); v < 6 {
		t.Fatalf("invalid text counted %v", v)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		if err != nil {
			return b.String()
		}
	}
}

// A publish carries data: missing or null is refused on every path.
func TestDataRequired(t *testing.T) {
	n := startNode(t, nil)
	sub := dialWS(t, n)
	sub.handshake(nil)
	sub.subscribe("/d", nil)
	const missing = "402:data:Missing required parameter"
	for name, data := range map[string]string{"missing": "", "null": `,"data":null`, "spaced null": `,"data": null `} {
		t.Run(name, func(t *testing.T) {
			ws := dialWS(t, n)
			ws.handshake(nil)
			ws.sendRaw([]byte(`{"channel":"/d","id":"p","clientId":"` + ws.clientID + `"` + data + `}`))
			if r := ws.next(func(m msg) bool { return m["id"] == "p" }); r["error"] != missing {
				t.Fatalf("websocket: %v", r)
			}
			lp := &lpPeer{t: t, n: n}
			lp.handshake(nil)
			if _, rs := lp.postRaw([]byte(`{"channel":"/d","clientId":"` + lp.clientID + `"` + data + `}`)); len(rs) != 1 || rs[0]["error"] != missing {
				t.Fatalf("long-polling: %v", rs)
			}
			if code, res := n.publish(`{"channel":"/d"` + data + `}`); code != http.StatusBadRequest || len(res) != 1 || res[0].Error != missing {
				t.Fatalf("publish endpoint: %d %v", code, res)
			}
		})
	}
	sub.noData(100 * time.Millisecond)
}

// A token's expiry ends the session at the next connect or publish: 401
// with advice to handshake, the session gone; a fresh token then works.
func TestTokenExpiryEndsTheSession(t *testing.T) {
	secret := []byte("s3cret")
	rules, err := ParseRules([]byte("both /rooms/{sub}\n"))
	if err != nil {
		t.Fatal(err)
	}
	// the node's clock only: its timers (the connect holds) run on the wall clock
	clk := newFakeClock(time.Unix(1_800_000_000, 0))
	n := startNode(t, func(c *Config) { c.AuthSecret = secret; c.Rules = rules; c.Now = clk.Now })
	token := func(ttl time.Duration) string {
		tok, err := MintToken(secret, "alice", ttl, nil, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expiredReply := func(t *testing.T, r msg) {
		t.Helper()
		adv, _ := r["advice"].(map[string]any)
		if r["successful"] != false || r["error"] != "401::Token expired" || adv["reconnect"] != "handshake" {
			t.Fatalf("reply %v, want 401::Token expired with advice to handshake", r)
		}
	}
	for _, tc := range []struct {
		name    string
		message msg
	}{
		{"publish", msg{"channel": "/rooms/alice", "data": 1}},
		{"connect", msg{"channel": bayeux.ChannelConnect, "connectionType": "long-polling"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &lpPeer{t: t, n: n}
			if h := p.handshake(msg{"token": token(2 * time.Second)}); h["successful"] != true {
				t.Fatalf("handshake %v", h)
			}
			_, rs := p.post(msg{"channel": "/rooms/alice", "data": "before"})
			if len(rs) != 1 || rs[0]["successful"] != true {
				t.Fatalf("publish before expiry: %v", rs)
			}
			clk.advance(3500 * time.Millisecond)
			_, rs = p.post(tc.message)
			if len(rs) != 1 {
				t.Fatalf("replies %v", rs)
			}
			expiredReply(t, rs[0])
			if n.srv.lookup(p.clientID) != nil {
				t.Fatal("the session is still held after expiry")
			}
			// the session is gone: the next connect is an unknown client
			if reply, _ := p.connect(); reply["successful"] != false {
				t.Fatalf("connect after expiry: %v", reply)
			}
			if h := p.handshake(msg{"token": token(time.Hour)}); h["successful"] != true {
				t.Fatalf("handshake with a fresh token %v", h)
			}
			if _, rs := p.post(msg{"channel": "/rooms/alice", "data": "after"}); len(rs) != 1 || rs[0]["successful"] != true {
				t.Fatalf("publish with a fresh token: %v", rs)
			}
		})
	}
	t.Run("websocket connect", func(t *testing.T) {
		p := dialWS(t, n)
		if h := p.handshake(msg{"token": token(2 * time.Second)}); h["successful"] != true {
			t.Fatalf("handshake %v", h)
		}
		// answered after the first connect, sent on the same socket
		if r := p.subscribe("/rooms/alice", nil); r["successful"] != true {
			t.Fatalf("subscribe %v", r)
		}
		clk.advance(3500 * time.Millisecond)
		p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket", "id": "c2"})
		expiredReply(t, p.next(func(m msg) bool { return m["id"] == "c2" }))
	})
	if v := scrape(t, n, "wsfleet_tokens_expired_total"); v != 3 {
		t.Fatalf("expired tokens counted %v", v)
	}
}

// The Go client whose token expires handshakes again with the token its
// callback gives now and carries on.
func TestGoClientRenewsAnExpiredToken(t *testing.T) {
	secret := []byte("s3cret")
	rules, err := ParseRules([]byte("both /rooms/{sub}\n"))
	if err != nil {
		t.Fatal(err)
	}
	// the node's clock only: its timers (the connect holds) run on the wall clock
	clk := newFakeClock(time.Unix(1_800_000_000, 0))
	n := startNode(t, func(c *Config) {
		c.AuthSecret = secret
		c.Rules = rules
		c.Now = clk.Now
		c.Timeout = 500 * time.Millisecond
	})
	for _, transport := range []string{client.WebSocket, client.LongPolling} {
		t.Run(transport, func(t *testing.T) {
			var mu sync.Mutex
			minted := 0
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, client.Config{URL: n.url + "/bayeux", Transport: transport, Logger: testLog(t),
				Token: func() string {
					mu.Lock()
					minted++
					mu.Unlock()
					tok, err := MintToken(secret, "alice", 2*time.Second, nil, clk.Now())
					if err != nil {
						t.Error(err)
					}
					return tok
				}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := make(chan string, 16)
			if err := c.Subscribe(ctx, "/rooms/alice", func(d client.Delivery) { got <- string(d.Data) }); err != nil {
				t.Fatal(err)
			}
			first := c.ID()
			clk.advance(3 * time.Second)
			// the next connect is refused; the client handshakes again
			deadline := time.Now().Add(10 * time.Second)
			for c.ID() == first && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if c.ID() == first {
				t.Fatal("the client kept its session after its token expired")
			}
			if err := c.Publish(ctx, "/rooms/alice", "renewed"); err != nil {
				t.Fatalf("publish with the renewed token: %v", err)
			}
			select {
			case d := <-got:
				if d != `"renewed"` {
					t.Fatalf("got %s", d)
				}
			case <-ctx.Done():
				t.Fatal("no delivery on the renewed session")
			}
			mu.Lock()
			defer mu.Unlock()
			if minted < 2 {
				t.Fatalf("token minted %d times, want a fresh one at the new handshake", minted)
			}
		})
	}
}
