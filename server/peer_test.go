package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// This file holds the test side of the wire: a node on an httptest server
// and two raw Bayeux peers (websocket and long-polling) that speak the
// protocol byte for byte, so that tests see exactly what clients see.

const testAdmin = "admin-secret"

// testLog logs to the test output when -v is given.
func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type node struct {
	t   testing.TB
	srv *Server
	hs  *httptest.Server
	url string // http://127.0.0.1:port
}

// startNode runs a node with short timeouts; mod adjusts the config.
func startNode(t testing.TB, mod func(*Config)) *node {
	t.Helper()
	return newNode(t, mod, false)
}

// newNode starts a node on an httptest server: a plain one, or with
// ownServer the node's own http.Server (NewHTTPServer, with its timeouts).
func newNode(t testing.TB, mod func(*Config), ownServer bool) *node {
	t.Helper()
	cfg := Config{NodeID: "n1", AdminToken: testAdmin, Timeout: 2 * time.Second, SweepInterval: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	if ownServer {
		hs.Config = srv.NewHTTPServer()
	}
	hs.Start()
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Run(ctx)
	t.Cleanup(func() {
		cancel()
		srv.Close()
		hs.CloseClientConnections()
		hs.Close()
	})
	return &node{t: t, srv: srv, hs: hs, url: hs.URL}
}

// publish posts through the admin endpoint and returns the results.
func (n *node) publish(body string) (int, []publishResult) {
	n.t.Helper()
	req, _ := http.NewRequest("POST", n.url+"/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []publishResult
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// msg is a decoded message as a generic map, to assert on the exact JSON.
type msg = map[string]any

func decodeAll(t testing.TB, b []byte) []msg {
	t.Helper()
	var out []msg
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("server sent non-array %q: %v", b, err)
	}
	return out
}

// wsPeer is a raw websocket Bayeux peer.
type wsPeer struct {
	t        testing.TB
	c        *websocket.Conn
	in       chan msg
	closed   chan struct{}
	closeErr error
	clientID string
	nextID   int
}

func dialWS(t testing.TB, n *node) *wsPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.url, "http")+"/bayeux", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 22)
	p := &wsPeer{t: t, c: c, in: make(chan msg, 1000), closed: make(chan struct{})}
	go func() {
		defer close(p.closed)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				p.closeErr = err
				return
			}
			if string(b) == "[]" {
				p.in <- msg{"pong": true}
				continue
			}
			var ms []msg
			if err := json.Unmarshal(b, &ms); err != nil {
				p.closeErr = err
				return
			}
			for _, m := range ms {
				p.in <- m
			}
		}
	}()
	t.Cleanup(func() { c.CloseNow() })
	return p
}

func (p *wsPeer) send(ms ...msg) {
	p.t.Helper()
	for _, m := range ms {
		if _, ok := m["id"]; !ok {
			p.nextID++
			m["id"] = strconv.Itoa(p.nextID)
		}
		if _, ok := m["clientId"]; !ok && p.clientID != "" && m["channel"] != bayeux.ChannelHandshake {
			m["clientId"] = p.clientID
		}
	}
	b, _ := json.Marshal(ms)
	p.sendRaw(b)
}

func (p *wsPeer) sendRaw(b []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.c.Write(ctx, websocket.MessageText, b); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message matching pred, failing after 5 s.
func (p *wsPeer) next(pred func(msg) bool) msg {
	p.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-p.in:
			if pred(m) {
				return m
			}
		case <-timeout:
			p.t.Fatalf("no matching message within 5s")
			return nil
		}
	}
}

func onChannel(ch string) func(msg) bool {
	return func(m msg) bool { return m["channel"] == ch }
}

func isData(m msg) bool { _, ok := m["data"]; return ok }

// handshake handshakes and sends the first connect.
func (p *wsPeer) handshake(ext msg) msg {
	p.t.Helper()
	h := msg{"channel": bayeux.ChannelHandshake, "version": "1.0", "supportedConnectionTypes": []string{"websocket", "long-polling"}}
	if ext != nil {
		h["ext"] = ext
	}
	p.send(h)
	r := p.next(onChannel(bayeux.ChannelHandshake))
	if r["successful"] == true {
		p.clientID = r["clientId"].(string)
		p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	}
	return r
}

func (p *wsPeer) subscribe(sub string, ext msg) msg {
	p.t.Helper()
	m := msg{"channel": bayeux.ChannelSubscribe, "subscription": sub}
	if ext != nil {
		m["ext"] = ext
	}
	p.send(m)
	return p.next(onChannel(bayeux.ChannelSubscribe))
}

// dataN collects n published messages.
func (p *wsPeer) dataN(n int) []msg {
	p.t.Helper()
	var out []msg
	for len(out) < n {
		out = append(out, p.next(isData))
	}
	return out
}

// noData asserts that no published message arrives within d.
func (p *wsPeer) noData(d time.Duration) {
	p.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-p.in:
			if isData(m) {
				p.t.Fatalf("unexpected message %v", m)
			}
		case <-timeout:
			return
		}
	}
}

// lpPeer is a raw long-polling Bayeux peer.
type lpPeer struct {
	t        testing.TB
	n        *node
	clientID string
	form     bool
}

func (p *lpPeer) post(ms ...msg) (int, []msg) {
	p.t.Helper()
	for _, m := range ms {
		if _, ok := m["clientId"]; !ok && p.clientID != "" && m["channel"] != bayeux.ChannelHandshake {
			m["clientId"] = p.clientID
		}
	}
	b, _ := json.Marshal(ms)
	return p.postRaw(b)
}

func (p *lpPeer) postRaw(b []byte) (int, []msg) {
	p.t.Helper()
	var resp *http.Response
	var err error
	if p.form {
		resp, err = http.PostForm(p.n.url+"/bayeux", url.Values{"message": {string(b)}})
	} else {
		resp, err = http.Post(p.n.url+"/bayeux", "application/json", bytes.NewReader(b))
	}
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, decodeAll(p.t, body)
}

func (p *lpPeer) handshake(ext msg) msg {
	p.t.Helper()
	h := msg{"channel": bayeux.ChannelHandshake, "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}}
	if ext != nil {
		h["ext"] = ext
	}
	_, rs := p.post(h)
	if len(rs) != 1 {
		p.t.Fatalf("handshake replies %v", rs)
	}
	if rs[0]["successful"] == true {
		p.clientID = rs[0]["clientId"].(string)
	}
	return rs[0]
}

// connect sends /meta/connect and returns the connect reply and the
// delivered messages.
func (p *lpPeer) connect() (msg, []msg) {
	p.t.Helper()
	_, rs := p.post(msg{"channel": bayeux.ChannelConnect, "connectionType": "long-polling"})
	var reply msg
	var data []msg
	for _, m := range rs {
		if m["channel"] == bayeux.ChannelConnect {
			reply = m
		} else {
			data = append(data, m)
		}
	}
	return reply, data
}

func seqOf(m msg) uint64 {
	ext, _ := m["ext"].(map[string]any)
	f, _ := ext["seq"].(float64)
	return uint64(f)
}

var _ = broker.ErrClosed
