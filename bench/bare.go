package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The bare writer is the benchmark's measure of the limit: a server that
// does nothing per delivery but write the frame to the socket. It speaks
// just enough Bayeux for the generator (handshake, subscribe; connects are
// held and never answered, so no renewals), takes the same POST /publish
// batches, and for each published message builds the frame a ws node
// would send once, then writes it to each subscriber of the channel in a
// plain loop: one write system call per delivery through Go's net.Conn,
// no queue, no goroutine hand-off, no lock besides the one the standard
// library's fd write takes. Its CPU per delivery at a given rate is the
// kernel's loopback TCP plus the websocket framing, which is what a node
// writing one frame per delivery cannot go below.

// ServeBare runs the bare writer on addr until ctx ends, printing
// {"listening":"host:port"} on out once it listens. token guards /publish
// as the ws node's admin token does.
func ServeBare(ctx context.Context, addr, token string, out io.Writer) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bare writer: listen: %w", err)
	}
	b := &bareServer{token: token, subs: map[string][]net.Conn{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/bayeux", b.websocket)
	mux.HandleFunc("/publish", b.publish)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "{\"listening\":%q}\n", l.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		_ = srv.Close()
		b.closeAll()
		return nil
	case err := <-errc:
		b.closeAll()
		return fmt.Errorf("bare writer: serve: %w", err)
	}
}

type bareServer struct {
	token  string
	mu     sync.RWMutex
	subs   map[string][]net.Conn
	conns  []net.Conn
	nextID atomic.Uint64
	// pubMu makes publish requests take turns (the generator sends one
	// at a time anyway); it guards seq.
	pubMu sync.Mutex
	seq   uint64
}

func (b *bareServer) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
}

// wsAcceptKey is RFC 6455's Sec-WebSocket-Accept for a client's key.
func wsAcceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// websocket upgrades the request and answers the session's handshake and
// subscribe; after that it only reads (and drops) what the client sends.
func (b *bareServer) websocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	_, err = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAcceptKey(key) + "\r\n\r\n"))
	if err != nil {
		c.Close()
		return
	}
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
	go b.session(c, brw.Reader)
}

var (
	tokHandshake = []byte(`"/meta/handshake"`)
	tokDisconn   = []byte(`"/meta/disconnect"`)
)

func (b *bareServer) session(c net.Conn, br *bufio.Reader) {
	defer c.Close()
	rc := &rawConn{c: c, br: br}
	var buf []byte
	for {
		msg, err := rc.readMessage(buf)
		if err != nil {
			return
		}
		buf = msg[:0]
		var reply []byte
		switch {
		case bytes.Contains(msg, tokHandshake):
			id := strconv.FormatUint(b.nextID.Add(1), 36)
			reply = []byte(`[{"channel":"/meta/handshake","successful":true,"version":"1.0","supportedConnectionTypes":["websocket"],"clientId":"` + id + `","id":"1"}]`)
		case bytes.Contains(msg, tokSubscribe):
			var m []struct {
				Subscription string `json:"subscription"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(msg, &m); err != nil || len(m) == 0 {
				return
			}
			sub, _ := json.Marshal(m[0].Subscription)
			reply = []byte(`[{"channel":"/meta/subscribe","successful":true,"subscription":` + string(sub) + `}]`)
			// The reply goes out before the socket joins the channel: the
			// publish loop then is the only writer.
			if err := writeServerFrame(c, reply); err != nil {
				return
			}
			reply = nil
			b.mu.Lock()
			b.subs[m[0].Subscription] = append(b.subs[m[0].Subscription], c)
			b.mu.Unlock()
		case bytes.Contains(msg, tokDisconn):
			return
		}
		// A /meta/connect is held forever: no reply, no renewal.
		if reply != nil {
			if err := writeServerFrame(c, reply); err != nil {
				return
			}
		}
	}
}

// appendServerFrame appends an unmasked, final text frame holding p.
func appendServerFrame(dst, p []byte) []byte {
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x81, byte(n))
	case n < 1<<16:
		dst = append(dst, 0x81, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, p...)
}

func writeServerFrame(c net.Conn, p []byte) error {
	_, err := c.Write(appendServerFrame(nil, p))
	return err
}

// publish takes a batch of messages and writes each one's frame to every
// subscriber of its channel, one write per subscriber.
func (b *bareServer) publish(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+b.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var msgs []struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&msgs); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	var payload, frame []byte
	for _, m := range msgs {
		b.seq++
		// The frame a ws node sends for one delivery: the message as an
		// array of one, with its sequence number in ext.
		ch, _ := json.Marshal(m.Channel)
		payload = append(payload[:0], `[{"channel":`...)
		payload = append(payload, ch...)
		payload = append(payload, `,"data":`...)
		payload = append(payload, m.Data...)
		payload = append(payload, `,"ext":{"seq":`...)
		payload = strconv.AppendUint(payload, b.seq, 10)
		payload = append(payload, `}}]`...)
		frame = appendServerFrame(frame[:0], payload)
		b.mu.RLock()
		subs := b.subs[m.Channel]
		b.mu.RUnlock()
		for _, c := range subs {
			// A subscriber that cannot take the frame is the generator's
			// problem to report (it counts what arrives); the loop goes on.
			_, _ = c.Write(frame)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "[]")
}

// errNoBare is returned when the bench has no binary to run the bare
// writer from.
var errNoBare = errors.New("bench: no binary for the bare writer")
