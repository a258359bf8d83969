package localcloud

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestProxyUpgrade drives the load balancer node's own websocket path
// (serveUpgrade) with a real websocket client and server: the target's
// first frame sent with its 101 arrives, messages larger than a pooled
// buffer cross both ways intact and in order, the target sees the
// X-Forwarded-* headers, a refused upgrade comes back as the target
// answered it, OnProxied hears both, and cutting the target ends the
// client's websocket.
func TestProxyUpgrade(t *testing.T) {
	var xff, xfh atomic.Value
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "503 draining", http.StatusServiceUnavailable)
			return
		}
		xff.Store(r.Header.Get("X-Forwarded-For"))
		xfh.Store(r.Header.Get("X-Forwarded-Host"))
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := context.Background()
		if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			return
		}
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, b); err != nil {
				return
			}
		}
	}))
	defer back.Close()
	target := strings.TrimPrefix(back.URL, "http://")
	var heard atomic.Int32
	var refused atomic.Int32
	px, err := startProxy("127.0.0.1:0", "", func() string { return target }, func(addr string, r *http.Request, status int) {
		if addr == target {
			heard.Add(1)
		}
		if status == http.StatusServiceUnavailable {
			refused.Add(1)
		}
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer px.close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	c, _, err := websocket.Dial(ctx, "ws://"+px.addr+"/bayeux", &websocket.DialOptions{Host: "chat.example"})
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if _, b, err := c.Read(ctx); err != nil || string(b) != "hello" {
		t.Fatalf("first frame %q, %v: want the target's hello", b, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 10_000) // 160 KB, ten pooled buffers
	msgs := [][]byte{big, []byte("a"), []byte(strings.Repeat("b", copyBufBytes+1)), []byte("c")}
	for i := range 50 {
		msgs = append(msgs, []byte(strings.Repeat("x", i)+"!"))
	}
	go func() {
		for _, m := range msgs {
			if err := c.Write(ctx, websocket.MessageBinary, m); err != nil {
				return
			}
		}
	}()
	for i, m := range msgs {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if !bytes.Equal(b, m) {
			t.Fatalf("echo %d: %d bytes, want %d", i, len(b), len(m))
		}
	}
	if got, _ := xff.Load().(string); net.ParseIP(got) == nil || !net.ParseIP(got).IsLoopback() {
		t.Errorf("X-Forwarded-For %q: want the client's address", got)
	}
	if got, _ := xfh.Load().(string); got != "chat.example" {
		t.Errorf("X-Forwarded-Host %q: want the requested host", got)
	}

	// a refused upgrade comes back as the target answered
	_, res, err := websocket.Dial(ctx, "ws://"+px.addr+"/refuse", nil)
	if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("refused upgrade: %v, %+v: want the target's 503", err, res)
	}
	if heard.Load() < 2 || refused.Load() != 1 {
		t.Errorf("OnProxied heard %d answers (%d refusals): want both", heard.Load(), refused.Load())
	}
	if n := px.connections()[target]; n < 1 {
		t.Errorf("tracked connections to the target: %d, want the websocket's", n)
	}

	// cutting the target ends the client's websocket
	px.cut(target)
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("read after the target was cut: want the websocket ended")
	}
	deadline := time.Now().Add(5 * time.Second)
	for px.connections()[target] > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := px.connections()[target]; n != 0 {
		t.Errorf("tracked connections after the cut: %d", n)
	}
}

func TestIsUpgrade(t *testing.T) {
	cases := []struct {
		upgrade, connection string
		want                bool
	}{
		{"websocket", "Upgrade", true},
		{"WebSocket", "keep-alive, upgrade", true},
		{"websocket", "keep-alive", false},
		{"h2c", "Upgrade", false},
		{"", "Upgrade", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/bayeux", nil)
		if tc.upgrade != "" {
			r.Header.Set("Upgrade", tc.upgrade)
		}
		r.Header.Set("Connection", tc.connection)
		if got := isUpgrade(r); got != tc.want {
			t.Errorf("Upgrade %q Connection %q: %v, want %v", tc.upgrade, tc.connection, got, tc.want)
		}
	}
}
