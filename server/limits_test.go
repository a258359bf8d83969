package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"wsfleet/bayeux"
)

// These tests drive the limits of "Limits and abuse" (docs/server.md) as a
// hostile or broken client would, over real sockets.

// startHTTPNode is startNode served by the node's own http.Server
// (NewHTTPServer), with its header and idle timeouts.
func startHTTPNode(t testing.TB, mod func(*Config)) *node {
	t.Helper()
	return newNode(t, mod, true)
}

// waitUntil polls cond until it holds or 5 s pass.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deliversAfter connects a websocket client, subscribes it, waits d and
// checks that the socket is still open and delivering.
func deliversAfter(t testing.TB, n *node, d time.Duration) {
	t.Helper()
	p := dialWS(t, n)
	p.handshake(nil)
	p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket", "advice": msg{"timeout": 0}})
	p.next(onChannel(bayeux.ChannelConnect))
	p.subscribe("/room", nil)
	time.Sleep(d)
	if code, _ := n.publish(`{"channel":"/room","data":"still here"}`); code != 200 {
		t.Fatalf("publish %d", code)
	}
	if m := p.next(isData); m["data"] != "still here" {
		t.Fatalf("delivery after %v: %v", d, m)
	}
}

const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

// TestMaxConnections: beyond the cap an upgrade and a long-polling request
// are refused with 503 before anything else; websockets and held
// long-polling connects both count, as /admin/status counts them; a closed
// connection frees its place.
func TestMaxConnections(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxConnections = 2 })
	addr := n.hs.Listener.Addr().String()
	upgrade := func() (*rawWS, int) {
		r, resp := rawUpgrade(t, n, upgradeRequest("GET", addr, wsKey, "13"), nil)
		return r, resp.StatusCode
	}
	a, code := upgrade()
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("first upgrade: %d", code)
	}
	// a long-polling connect held by the node is the second connection
	lp := &lpPeer{t: t, n: n}
	lp.handshake(nil)
	held := make(chan struct{})
	go func() {
		defer close(held)
		lp.post(msg{"channel": bayeux.ChannelConnect, "connectionType": "long-polling"})
	}()
	waitUntil(t, "the connect to be held", func() bool { return n.srv.Status().Connections == 2 })

	if _, code := upgrade(); code != http.StatusServiceUnavailable {
		t.Fatalf("upgrade beyond the cap: %d, want 503", code)
	}
	if code, _ := (&lpPeer{t: t, n: n}).post(msg{"channel": bayeux.ChannelHandshake, "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}}); code != http.StatusServiceUnavailable {
		t.Fatalf("long-polling request beyond the cap: %d, want 503", code)
	}
	if v := scrape(t, n, `wsfleet_limited_total{limit="max_connections"}`); v != 2 {
		t.Fatalf("wsfleet_limited_total{max_connections} = %v, want 2", v)
	}
	if v := scrape(t, n, `wsfleet_limit{limit="max_connections"}`); v != 2 {
		t.Fatalf("wsfleet_limit{max_connections} = %v, want 2", v)
	}

	// the websocket goes: its place is free again
	a.c.Close()
	waitUntil(t, "the websocket's place", func() bool { return n.srv.admitted.Load() == 1 })
	b, code := upgrade()
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade after a close: %d", code)
	}
	b.c.Close()
	<-held
}

// TestMaxConnectionsDefault: the default cap leaves room for a Gitter-like
// crowd (2,000 and more clients) and a negative cap is none.
func TestMaxConnectionsDefault(t *testing.T) {
	for _, tc := range []struct {
		set, want int
	}{{0, 50_000}, {-1, -1}, {7, 7}} {
		c := Config{MaxConnections: tc.set}
		c.setDefaults()
		if c.MaxConnections != tc.want {
			t.Errorf("MaxConnections %d: %d after defaults, want %d", tc.set, c.MaxConnections, tc.want)
		}
	}
}

// TestHandshakeDeadline: a websocket that upgrades and never sends a
// Bayeux message, or only handshakes, is closed with 1008 once the connect
// timeout passes; one whose socket carries a /meta/connect is not.
func TestHandshakeDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	n := startNode(t, func(c *Config) { c.Timeout = timeout })

	silent := dialRaw(t, n, nil)
	start := time.Now()
	silent.expectClose(wsStatusPolicyViolation)
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Fatalf("silent socket closed after %v", d)
	}
	silent.send(clientFrame(0x80|op(ws.OpClose), closeBody(1000, "")))
	silent.expectTCPClose(5 * time.Second)

	handshakeOnly := dialRaw(t, n, nil)
	handshakeOnly.send(clientFrame(0x80|op(ws.OpText), []byte(rawHandshake)))
	checkHandshakeReply(t, handshakeOnly.expectJSON())
	handshakeOnly.expectClose(wsStatusPolicyViolation)

	deliversAfter(t, n, 3*timeout)
	if v := scrape(t, n, `wsfleet_limited_total{limit="handshake_timeout"}`); v != 2 {
		t.Fatalf("wsfleet_limited_total{handshake_timeout} = %v, want 2", v)
	}
}

// TestHandshakeDeadlineAfterTheSessionEnds: a websocket whose session
// ended while the socket stays open (a /meta/disconnect the client does
// not follow by closing, an expired token) must carry a new connect within
// the handshake deadline again, or it is closed: the first connect lifted
// the deadline, and no session is left to time out. A client that
// handshakes again on the socket and connects keeps it.
func TestHandshakeDeadlineAfterTheSessionEnds(t *testing.T) {
	const timeout = 300 * time.Millisecond
	n := startNode(t, func(c *Config) { c.Timeout = timeout })
	end := func(p *wsPeer) {
		t.Helper()
		p.handshake(nil)
		p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket", "advice": msg{"timeout": 0}})
		p.next(onChannel(bayeux.ChannelConnect))
		p.send(msg{"channel": bayeux.ChannelDisconnect})
		if r := p.next(onChannel(bayeux.ChannelDisconnect)); r["successful"] != true {
			t.Fatalf("disconnect %v", r)
		}
	}

	silent := dialWS(t, n)
	end(silent)
	select {
	case <-silent.closed:
	case <-time.After(timeout + 3*time.Second):
		t.Fatalf("socket still open after its session ended; connections %d", n.srv.Status().Connections)
	}

	again := dialWS(t, n)
	end(again)
	again.handshake(nil) // and a connect, on the same socket
	again.subscribe("/room", nil)
	time.Sleep(3 * timeout)
	n.publish(`{"channel":"/room","data":"still here"}`)
	if m := again.next(isData); m["data"] != "still here" {
		t.Fatalf("after a new session on the socket: %v", m)
	}
}

// TestHandshakeDeadlineOnTheNodeClock: the deadline runs on Config's
// clock (one timer, no goroutine waiting per socket).
func TestHandshakeDeadlineOnTheNodeClock(t *testing.T) {
	var mu sync.Mutex
	var fire []func()
	n := startNode(t, func(c *Config) {
		c.Timeout = time.Hour
		c.AfterFunc = func(d time.Duration, f func()) Timer {
			mu.Lock()
			defer mu.Unlock()
			if d == time.Hour {
				fire = append(fire, f)
			}
			return time.AfterFunc(24*time.Hour, func() {})
		}
	})
	r := dialRaw(t, n, nil)
	waitUntil(t, "the deadline", func() bool { mu.Lock(); defer mu.Unlock(); return len(fire) == 1 })
	mu.Lock()
	f := fire[0]
	mu.Unlock()
	f()
	r.expectClose(wsStatusPolicyViolation)
}

// TestRequestBodyDeadline: a long-polling request whose body never comes
// is answered 408 and closed within the handshake deadline; a held
// connect outlives the read timeout (the deadline is lifted once the body
// is read).
func TestRequestBodyDeadline(t *testing.T) {
	n := startHTTPNode(t, func(c *Config) { c.Timeout = 1500 * time.Millisecond; c.ReadTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", n.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /bayeux HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a request whose body never came: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 3*time.Second {
		t.Fatalf("answer %d after %v, want 408 within the read timeout", resp.StatusCode, time.Since(start))
	}
	if v := scrape(t, n, `wsfleet_limited_total{limit="read_timeout"}`); v != 1 {
		t.Fatalf("wsfleet_limited_total{read_timeout} = %v", v)
	}

	p := &lpPeer{t: t, n: n}
	p.handshake(nil)
	p.connect() // the first connect is answered at once
	start = time.Now()
	r, _ := p.connect()
	if r["successful"] != true || time.Since(start) < time.Second {
		t.Fatalf("held connect cut after %v: %v", time.Since(start), r)
	}
}

// TestRequestBodyNeverArrives: on every path that reads a body, a request
// whose body stops after one byte is answered 408 within the read timeout
// and its connection closed: it must not stay open with the deadline
// lifted (net/http reads the rest of a small body after the handler to
// reuse the connection, and would wait for it for good), nor be answered
// as too large or as malformed.
func TestRequestBodyNeverArrives(t *testing.T) {
	const d = 200 * time.Millisecond
	n := startHTTPNode(t, func(c *Config) { c.Timeout = 5 * time.Second; c.ReadTimeout = d })
	for _, path := range []string{"/bayeux", "/publish", "/admin/drain"} {
		for _, length := range []int{100, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", path, length), func(t *testing.T) {
				c, err := net.Dial("tcp", n.hs.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n[",
					path, testAdmin, length)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				start := time.Now()
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no answer to a request whose body never came: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 3*time.Second {
					t.Fatalf("answer %d %q after %v, want 408 within the read timeout", resp.StatusCode, body, time.Since(start))
				}
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := io.ReadAll(br); err != nil {
					t.Fatalf("connection still open after the 408: %v", err)
				}
			})
		}
	}
	if v := scrape(t, n, `wsfleet_limited_total{limit="read_timeout"}`); v != 6 {
		t.Fatalf("wsfleet_limited_total{read_timeout} = %v, want 6", v)
	}
}

// TestSilentAfterConnect: a websocket whose client connects once and then
// never speaks again loses its session after the session timeout, and its
// socket with it: the first connect lifted the handshake deadline, so
// nothing else would ever close it, and it would hold its place under
// --max-connections for good.
func TestSilentAfterConnect(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Timeout = 200 * time.Millisecond; c.SessionTimeout = 300 * time.Millisecond })
	p := dialWS(t, n)
	p.handshake(nil) // and its first connect
	if r := p.next(onChannel(bayeux.ChannelConnect)); r["successful"] != true {
		t.Fatalf("connect %v", r)
	}
	select {
	case <-p.closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("socket still open %v after its session's timeout; sessions %d, connections %d",
			5*time.Second, n.srv.Status().Sessions, n.srv.Status().Connections)
	}
	waitUntil(t, "no connection", func() bool { st := n.srv.Status(); return st.Connections == 0 && st.Sessions == 0 })
}

// TestHeaderAndIdleTimeouts: the node's http.Server closes a connection
// whose request headers do not come, and a keep-alive connection left idle,
// but neither timeout touches an open websocket.
func TestHeaderAndIdleTimeouts(t *testing.T) {
	const d = 200 * time.Millisecond
	n := startHTTPNode(t, func(c *Config) { c.ReadHeaderTimeout = d; c.IdleTimeout = d; c.ReadTimeout = d })
	addr := n.hs.Listener.Addr().String()
	closedWithin := func(c net.Conn, within time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(within))
		_, err := io.ReadAll(c)
		return err == nil
	}

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	if !closedWithin(slow, 3*time.Second) {
		t.Fatal("a request whose headers never end was not closed")
	}

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("an idle keep-alive connection was not closed: %v", err)
	}

	deliversAfter(t, n, 5*d)
	for _, l := range []string{"read_header_timeout_seconds", "idle_timeout_seconds", "read_timeout_seconds"} {
		if v := scrape(t, n, `wsfleet_limit{limit="`+l+`"}`); v != d.Seconds() {
			t.Errorf("wsfleet_limit{%s} = %v", l, v)
		}
	}
}

// serverSndBuf is SO_SNDBUF of the node's side of its only websocket.
func serverSndBuf(t *testing.T, s *Server) int {
	t.Helper()
	rc, err := sockConn(t, onlyWS(t, s)).(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var size int
	var serr error
	rc.Control(func(fd uintptr) { size, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF) })
	if serr != nil {
		t.Fatal(serr)
	}
	return size
}

// TestWebsocketSendBuffer: a subscriber that reads nothing pins at most
// the configured send buffer in the node's kernel (Linux reports twice what
// was set), not the megabytes autotuning grows it to.
func TestWebsocketSendBuffer(t *testing.T) {
	n := startNode(t, func(c *Config) { c.WSSendBuffer = 64 << 10; c.QueueLimit = 100_000; c.MaxMessageBytes = 1 << 20 })
	r := dialRaw(t, n, nil)
	r.send(clientFrame(0x80|op(ws.OpText), []byte(rawHandshake)))
	id := r.expectJSON()[0]["clientId"].(string)
	r.send(clientFrame(0x80|op(ws.OpText), []byte(`[{"channel":"/meta/connect","clientId":"`+id+`","connectionType":"websocket","advice":{"timeout":0}},{"channel":"/meta/subscribe","clientId":"`+id+`","subscription":"/room"}]`)))
	r.expectJSON()
	// the client now stops reading; 8 MiB go its way
	data := strings.Repeat("x", 64<<10)
	for range 128 {
		if code, _ := n.publish(`{"channel":"/room","data":"` + data + `"}`); code != 200 {
			t.Fatalf("publish %d", code)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if got := serverSndBuf(t, n.srv); got > 2*(64<<10) {
		t.Fatalf("send buffer of a slow reader's socket: %d bytes, want at most %d", got, 2*(64<<10))
	}
	if v := scrape(t, n, `wsfleet_limit{limit="ws_send_buffer_bytes"}`); v != 64<<10 {
		t.Fatalf("wsfleet_limit{ws_send_buffer_bytes} = %v", v)
	}
}

// TestHandshakesPerIP: with a rate, one address gets its burst and then
// 429 advice to handshake later; other addresses are not affected; with
// TrustForwardedFor the key is the last X-Forwarded-For entry, whatever a
// client puts before it.
func TestHandshakesPerIP(t *testing.T) {
	n := startNode(t, func(c *Config) { c.HandshakeRate = 0.01; c.HandshakeBurst = 2; c.TrustForwardedFor = true })
	hs := func(xff ...string) msg {
		t.Helper()
		req, _ := http.NewRequest("POST", n.url+"/bayeux", strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
		req.Header.Set("Content-Type", "application/json")
		for _, v := range xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return decodeAll(t, b)[0]
	}
	for i := range 2 {
		if r := hs("203.0.113.7"); r["successful"] != true {
			t.Fatalf("handshake %d within the burst: %v", i, r)
		}
	}
	r := hs("198.51.100.1, 203.0.113.7") // a forged first entry changes nothing
	adv, _ := r["advice"].(map[string]any)
	if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "429:") || adv["reconnect"] != "handshake" || adv["interval"].(float64) < 1000 {
		t.Fatalf("handshake over the limit: %v", r)
	}
	if r := hs("203.0.113.8"); r["successful"] != true {
		t.Fatalf("another address: %v", r)
	}
	// a websocket keys on the same address
	p := dialWS(t, n)
	p.send(msg{"channel": bayeux.ChannelHandshake, "version": "1.0", "supportedConnectionTypes": []string{"websocket"}})
	if r := p.next(onChannel(bayeux.ChannelHandshake)); r["successful"] != true {
		t.Fatalf("websocket handshake from the peer address: %v", r)
	}
	if v := scrape(t, n, `wsfleet_limited_total{limit="handshakes_per_ip"}`); v != 1 {
		t.Fatalf("wsfleet_limited_total{handshakes_per_ip} = %v", v)
	}
}

// TestHandshakesPerIPOffByDefault: 2,000 clients behind one load balancer
// share its address: by default none of them is refused.
func TestHandshakesPerIPOffByDefault(t *testing.T) {
	n := startNode(t, nil)
	for i := range 2000 {
		rr := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/bayeux", strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
		req.Header.Set("Content-Type", "application/json")
		n.srv.Handler().ServeHTTP(rr, req)
		if rs := decodeAll(t, rr.Body.Bytes()); rs[0]["successful"] != true {
			t.Fatalf("handshake %d: %v", i, rs)
		}
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		name, remote string
		xff          []string
		trust        bool
		want         string
	}{
		{"peer", "192.0.2.1:5000", nil, false, "192.0.2.1"},
		{"forwarded untrusted", "192.0.2.1:5000", []string{"203.0.113.7"}, false, "192.0.2.1"},
		{"forwarded trusted", "192.0.2.1:5000", []string{"203.0.113.7"}, true, "203.0.113.7"},
		{"last entry", "192.0.2.1:5000", []string{"1.1.1.1, 203.0.113.7"}, true, "203.0.113.7"},
		{"last header", "192.0.2.1:5000", []string{"1.1.1.1", "203.0.113.9"}, true, "203.0.113.9"},
		{"none forwarded", "192.0.2.1:5000", nil, true, "192.0.2.1"},
		{"ipv6 /64", "[2001:db8:1:2:3:4:5:6]:5000", nil, false, "2001:db8:1:2::/64"},
		{"mapped v4", "[::ffff:192.0.2.3]:5000", nil, false, "192.0.2.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: Config{TrustForwardedFor: tc.trust}}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.clientKey(r); got != tc.want {
				t.Fatalf("clientKey = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHandshakeLimiter: tokens come back at the rate, and the table of
// addresses stays within its bound however many addresses come.
func TestHandshakeLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newHandshakeLimiter(2, 3, 100, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("handshake %d within the burst refused", i)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: %v, wait %v; want refused, 500ms", ok, wait)
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("a token did not come back at the rate")
	}
	for i := range 10_000 {
		l.allow(fmt.Sprint("addr-", i))
		if l.size() > 100 {
			t.Fatalf("%d addresses remembered, bound 100", l.size())
		}
	}
}

// TestCORS: without an allow-list any origin is answered (with the
// credentials browser Faye and CometD ask for); with one, only its
// origins.
func TestCORS(t *testing.T) {
	for _, tc := range []struct {
		name         string
		origins      []string
		origin       string
		allow, creds string
	}{
		{"default", nil, "http://app.example", "http://app.example", "true"},
		{"listed", []string{"http://app.example"}, "http://app.example", "http://app.example", "true"},
		{"not listed", []string{"http://app.example"}, "http://evil.example", "", ""},
		{"listed, other case", []string{"http://app.example"}, "http://APP.example", "http://APP.example", "true"},
		{"second of two", []string{"http://a.example", "http://app.example"}, "http://app.example", "http://app.example", "true"},
		{"any with credentials", []string{"*"}, "http://app.example", "http://app.example", "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.CORSOrigins = tc.origins })
			for _, method := range []string{"OPTIONS", "POST"} {
				req, _ := http.NewRequest(method, n.url+"/bayeux", strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
				req.Header.Set("Origin", tc.origin)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.allow {
					t.Errorf("%s: Allow-Origin %q, want %q", method, got, tc.allow)
				}
				if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != tc.creds {
					t.Errorf("%s: Allow-Credentials %q, want %q", method, got, tc.creds)
				}
			}
		})
	}
}

// TestBearerSchemeCaseInsensitive: RFC 6750 takes the scheme name in any
// case; the token itself is compared exactly.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	n := startNode(t, nil)
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer " + testAdmin, 200},
		{"bearer " + testAdmin, 200},
		{"BEARER " + testAdmin, 200},
		{"Bearer  " + testAdmin, 200},
		{"Bearer " + strings.ToUpper(testAdmin), 401},
		{"Bearer" + testAdmin, 401},
		{"Basic " + testAdmin, 401},
		{"Bearer ", 401},
	} {
		t.Run(tc.header, func(t *testing.T) {
			req, _ := http.NewRequest("GET", n.url+"/admin/status", nil)
			req.Header.Set("Authorization", tc.header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%q: %d, want %d", tc.header, resp.StatusCode, tc.want)
			}
		})
	}
}

// TestMetricsOnTheirOwn: with NoMetrics the client port has no /metrics,
// and MetricsHandler serves them.
func TestMetricsOnTheirOwn(t *testing.T) {
	n := startNode(t, func(c *Config) { c.NoMetrics = true })
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on the client port: %d, want 404", resp.StatusCode)
	}
	ms := httptest.NewServer(n.srv.MetricsHandler())
	defer ms.Close()
	resp, err = http.Get(ms.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "wsfleet_sessions ") {
		t.Fatalf("metrics listener: %d %.200s", resp.StatusCode, b)
	}
	// by default they stay where the rollout's gate and the demo read them
	d := startNode(t, nil)
	if v := scrape(t, d, `wsfleet_limit{limit="max_connections"}`); v != 50_000 {
		t.Fatalf("default /metrics: wsfleet_limit{max_connections} = %v", v)
	}
}

// TestWebsocketOrigin: with an allow-list, a browser's websocket (it
// carries Origin) from an origin not listed, nor the node's own, is
// refused before the upgrade; clients without Origin and the default
// (no list) are not.
func TestWebsocketOrigin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		origins []string
		origin  string // "self": the node's own host
		want    int
	}{
		{"default, any origin", nil, "http://evil.example", http.StatusSwitchingProtocols},
		{"listed", []string{"http://app.example"}, "http://app.example", http.StatusSwitchingProtocols},
		{"listed, other case", []string{"http://app.example"}, "http://APP.example", http.StatusSwitchingProtocols},
		{"not listed", []string{"http://app.example"}, "http://evil.example", http.StatusForbidden},
		{"not listed, a null origin", []string{"http://app.example"}, "null", http.StatusForbidden},
		{"same origin", []string{"http://app.example"}, "self", http.StatusSwitchingProtocols},
		{"no Origin: not a browser", []string{"http://app.example"}, "", http.StatusSwitchingProtocols},
		{"any", []string{"*"}, "http://evil.example", http.StatusSwitchingProtocols},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.CORSOrigins = tc.origins })
			req, _ := http.NewRequest("GET", n.url+"/bayeux", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			switch tc.origin {
			case "":
			case "self":
				req.Header.Set("Origin", "http://"+req.URL.Host)
			default:
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
