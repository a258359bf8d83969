package server

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"

	"wsfleet/bayeux"
)

// This file tests the node's own RFC 6455 frame reader (readMessage and
// the close handshake in finishWS) with a client written here byte by
// byte, so that nothing between the test and the node's parser fixes or
// hides a malformed frame.

// wsModes are the ways the node waits for an idle socket's bytes: parked
// in its poller, on its own descriptor (Linux) or a net.Conn (the
// fallback when the descriptor cannot be taken), or with a goroutine.
var wsModes = []struct {
	name     string
	noPoller bool
	noRawIO  bool
}{{"poller", false, false}, {"poller-netconn", false, true}, {"no-poller", true, false}}

// testMask is the masking key of every client frame (RFC 6455's own
// example key), non-zero so that a node that forgot to unmask reads
// garbage.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

const (
	finBit  = 0x80
	rsv1Bit = 0x40
)

// op is the first byte of a frame with opcode o and no FIN bit.
func op(o ws.OpCode) byte { return byte(o) }

// clientHeader appends a client frame header announcing an n-byte
// payload, masked (with testMask) or not.
func clientHeader(b []byte, first byte, n uint64, masked bool) []byte {
	var m byte
	if masked {
		m = 0x80
	}
	switch {
	case n <= 125:
		b = append(b, first, m|byte(n))
	case n <= 0xffff:
		b = append(b, first, m|126, byte(n>>8), byte(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, first, m|127), n)
	}
	if masked {
		b = append(b, testMask[:]...)
	}
	return b
}

// clientFrame builds a masked client frame.
func clientFrame(first byte, payload []byte) []byte {
	b := clientHeader(nil, first, uint64(len(payload)), true)
	for i, c := range payload {
		b = append(b, c^testMask[i%4])
	}
	return b
}

func closeBody(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// wireFrame is a frame as the node sent it.
type wireFrame struct {
	fin     bool
	op      ws.OpCode
	payload []byte
}

// readServerFrame parses one server frame, which RFC 6455 wants unmasked
// and, with no extension negotiated, with the RSV bits clear.
func readServerFrame(r io.Reader) (wireFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return wireFrame{}, err
	}
	if h[0]&0x70 != 0 || h[1]&0x80 != 0 {
		return wireFrame{}, fmt.Errorf("server frame header % x: RSV bits or mask set", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return wireFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return wireFrame{}, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if n > 1<<24 {
		return wireFrame{}, fmt.Errorf("server frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return wireFrame{}, err
	}
	return wireFrame{fin: h[0]&finBit != 0, op: ws.OpCode(h[0] & 0x0f), payload: p}, nil
}

// rawWS is a websocket client over a plain TCP connection.
type rawWS struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// upgradeRequest is a hand-written opening handshake (RFC 6455 section
// 4.1); an empty key or version leaves that header out.
func upgradeRequest(method, host, key, version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s /bayeux HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", method, host)
	if key != "" {
		fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\n", key)
	}
	if version != "" {
		fmt.Fprintf(&b, "Sec-WebSocket-Version: %s\r\n", version)
	}
	b.WriteString("\r\n")
	return b.String()
}

// rawUpgrade sends req (and early, bytes that follow it in the same
// write) and reads the response head.
func rawUpgrade(t testing.TB, n *node, req string, early []byte) (*rawWS, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", n.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawWS{t: t, c: c, br: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		t.Fatalf("upgrade response: %v", err)
	}
	c.SetDeadline(time.Time{})
	return r, resp
}

// dialRaw opens a websocket by hand and checks the node's 101 answer.
func dialRaw(t testing.TB, n *node, early []byte) *rawWS {
	t.Helper()
	const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's example
	r, resp := rawUpgrade(t, n, upgradeRequest("GET", n.hs.Listener.Addr().String(), key, "13"), early)
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("Upgrade header %q", resp.Header.Get("Upgrade"))
	}
	return r
}

func (r *rawWS) send(frames ...[]byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write(bytes.Join(frames, nil)); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// next reads the node's next frame, failing after 5 s.
func (r *rawWS) next() wireFrame {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readServerFrame(r.br)
	if err != nil {
		r.t.Fatalf("read frame: %v", err)
	}
	return f
}

// expect reads the next frame and checks its opcode.
func (r *rawWS) expect(o ws.OpCode) []byte {
	r.t.Helper()
	f := r.next()
	if f.op != o || !f.fin {
		r.t.Fatalf("got frame op %v fin %v payload %q, want a final %v", f.op, f.fin, f.payload, o)
	}
	return f.payload
}

// expectClose reads a close frame with code, or an empty one for code 0.
func (r *rawWS) expectClose(code ws.StatusCode) {
	r.t.Helper()
	p := r.expect(ws.OpClose)
	if code == 0 {
		if len(p) != 0 {
			r.t.Fatalf("close body %q, want none", p)
		}
		return
	}
	if len(p) < 2 {
		r.t.Fatalf("close body %q, want code %d", p, code)
	}
	if got := ws.StatusCode(binary.BigEndian.Uint16(p)); got != code || !utf8.Valid(p[2:]) {
		r.t.Fatalf("close %d %q, want %d", got, p[2:], code)
	}
}

// expectTCPClose waits for the node to close the connection, sending
// nothing more, and returns how long that took.
func (r *rawWS) expectTCPClose(within time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	r.c.SetReadDeadline(start.Add(within))
	b, err := io.ReadAll(r.br)
	if len(b) > 0 {
		r.t.Fatalf("%d bytes after the close frame: %q", len(b), b)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		r.t.Fatalf("TCP connection not closed within %v: %v", within, err)
	}
	return time.Since(start)
}

// expectJSON reads a text frame holding a Bayeux reply array.
func (r *rawWS) expectJSON() []msg {
	r.t.Helper()
	return decodeAll(r.t, r.expect(ws.OpText))
}

// rawHandshake is a handshake message whose id holds a two-byte rune, so
// that a split can fall inside it.
const rawHandshake = `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"],"id":"é1"}]`

func checkHandshakeReply(t testing.TB, rs []msg) {
	t.Helper()
	if len(rs) != 1 || rs[0]["channel"] != bayeux.ChannelHandshake || rs[0]["successful"] != true || rs[0]["id"] != "é1" {
		t.Fatalf("handshake reply %v", rs)
	}
}

// frameFailure is a client frame sequence the node must refuse by failing
// the connection with code.
type frameFailure struct {
	name   string
	frames [][]byte
	code   ws.StatusCode
}

// frameFailures send, where the node refuses a frame by its header, the
// header only (with an empty payload or none at all): the client's close
// frame is then the next thing the node reads, and the test sees the
// node finish the closing handshake.
func frameFailures(limit int) []frameFailure {
	var (
		empty  = func(first byte) []byte { return clientFrame(first, nil) }
		text   = finBit | op(ws.OpText)
		closeF = func(body []byte) []byte { return clientFrame(finBit|op(ws.OpClose), body) }
	)
	return []frameFailure{
		{"unmasked", [][]byte{clientHeader(nil, text, 0, false)}, ws.StatusProtocolError},
		{"binary", [][]byte{empty(finBit | op(ws.OpBinary))}, ws.StatusUnsupportedData},
		{"reserved opcode", [][]byte{empty(finBit | 0x3)}, ws.StatusProtocolError},
		{"reserved control opcode", [][]byte{empty(finBit | 0xb)}, ws.StatusProtocolError},
		{"RSV1", [][]byte{empty(text | rsv1Bit)}, ws.StatusProtocolError},
		{"fragmented ping", [][]byte{empty(op(ws.OpPing))}, ws.StatusProtocolError},
		{"continuation without start", [][]byte{empty(finBit | op(ws.OpContinuation))}, ws.StatusProtocolError},
		{"text inside a fragmented message", [][]byte{clientFrame(op(ws.OpText), []byte("[")), empty(text)}, ws.StatusProtocolError},
		{"control payload of 126 bytes", [][]byte{clientHeader(nil, finBit|op(ws.OpPing), 126, true)}, ws.StatusProtocolError},
		{"close of one byte", [][]byte{closeF([]byte{0x03})}, ws.StatusProtocolError},
		{"close code 1005", [][]byte{closeF(closeBody(1005, ""))}, ws.StatusProtocolError},
		{"close code 999", [][]byte{closeF(closeBody(999, "x"))}, ws.StatusProtocolError},
		{"close code 1016", [][]byte{closeF(closeBody(1016, ""))}, ws.StatusProtocolError},
		{"close reason not UTF-8", [][]byte{closeF(closeBody(1000, "\xff"))}, ws.StatusInvalidFramePayloadData},
		{"text not UTF-8", [][]byte{clientFrame(text, []byte("[\"\xc3\x28\"]"))}, ws.StatusInvalidFramePayloadData},
		{"fragments not UTF-8", [][]byte{clientFrame(op(ws.OpText), []byte("[\"\xc3")), clientFrame(finBit|op(ws.OpContinuation), []byte("\"]"))}, ws.StatusInvalidFramePayloadData},
		{"frame over the limit", [][]byte{clientHeader(nil, text, uint64(limit+1), true)}, ws.StatusMessageTooBig},
		{"64-bit length over the limit", [][]byte{clientHeader(nil, text, 1<<40, true)}, ws.StatusMessageTooBig},
		{"length with the top bit set", [][]byte{clientHeader(nil, text, 1<<63, true)}, ws.StatusProtocolError},
		{"fragments over the limit", [][]byte{
			clientFrame(op(ws.OpText), bytes.Repeat([]byte("x"), limit-10)),
			clientHeader(nil, finBit|op(ws.OpContinuation), 11, true),
		}, ws.StatusMessageTooBig},
	}
}

// TestFrameRFC6455 speaks raw RFC 6455 to the node, in both ways of
// waiting for bytes.
func TestFrameRFC6455(t *testing.T) {
	const limit = 256
	for _, mode := range wsModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, func(c *Config) { c.MaxMessageBytes = limit; c.noPoller, c.noRawIO = mode.noPoller, mode.noRawIO })

			t.Run("fragmented handshake with a ping between", func(t *testing.T) {
				t.Parallel()
				r := dialRaw(t, n, nil)
				m := []byte(rawHandshake)
				split := bytes.IndexRune(m, 'é') + 1 // inside the rune
				r.send(clientFrame(op(ws.OpText), m[:20]))
				r.send(clientFrame(finBit|op(ws.OpPing), []byte("between")))
				r.send(clientFrame(op(ws.OpContinuation), m[20:split]), clientFrame(finBit|op(ws.OpContinuation), m[split:]))
				if p := r.expect(ws.OpPong); string(p) != "between" {
					t.Fatalf("pong %q, want %q", p, "between")
				}
				checkHandshakeReply(t, r.expectJSON())
			})

			t.Run("ping between fragments near the limit", func(t *testing.T) {
				// a control frame's payload does not count against the
				// message limit (it once did, and this ping failed the
				// socket with 1009).
				t.Parallel()
				r := dialRaw(t, n, nil)
				r.send(clientFrame(op(ws.OpText), bytes.Repeat([]byte(" "), limit-6)), clientFrame(finBit|op(ws.OpPing), []byte("0123456789")))
				if p := r.expect(ws.OpPong); string(p) != "0123456789" {
					t.Fatalf("pong %q", p)
				}
				r.send(clientFrame(finBit|op(ws.OpContinuation), []byte("[]")))
				if got := r.expect(ws.OpText); string(got) != "[]" {
					t.Fatalf("reply %q, want []", got)
				}
			})

			t.Run("frames in the upgrade's packet", func(t *testing.T) {
				t.Parallel()
				r := dialRaw(t, n, append(clientFrame(finBit|op(ws.OpText), []byte(rawHandshake)), clientFrame(finBit|op(ws.OpPing), []byte("early"))...))
				checkHandshakeReply(t, r.expectJSON())
				if p := r.expect(ws.OpPong); string(p) != "early" {
					t.Fatalf("pong %q", p)
				}
			})

			t.Run("ping and pong", func(t *testing.T) {
				t.Parallel()
				r := dialRaw(t, n, nil)
				long := bytes.Repeat([]byte("p"), ws.MaxControlFramePayloadSize)
				for _, p := range [][]byte{[]byte("hello"), nil, long} {
					r.send(clientFrame(finBit|op(ws.OpPing), p))
					if got := r.expect(ws.OpPong); !bytes.Equal(got, p) {
						t.Fatalf("pong %q, want %q", got, p)
					}
				}
				// an unsolicited pong is not answered: the next frame is the
				// reply to the halley ping after it.
				r.send(clientFrame(finBit|op(ws.OpPong), []byte("unsolicited")), clientFrame(finBit|op(ws.OpText), []byte("[]")))
				if got := r.expect(ws.OpText); string(got) != "[]" {
					t.Fatalf("reply %q, want []", got)
				}
				r.send(clientFrame(finBit|op(ws.OpClose), closeBody(1000, "bye")))
				r.expectClose(ws.StatusNormalClosure)
				r.expectTCPClose(closeWait / 2)
			})

			t.Run("close without a body", func(t *testing.T) {
				t.Parallel()
				r := dialRaw(t, n, nil)
				r.send(clientFrame(finBit|op(ws.OpClose), nil))
				r.expectClose(0)
				r.expectTCPClose(closeWait / 2)
			})

			t.Run("close mid-message", func(t *testing.T) {
				t.Parallel()
				r := dialRaw(t, n, nil)
				r.send(clientFrame(op(ws.OpText), []byte("[")), clientFrame(finBit|op(ws.OpClose), closeBody(4000, "app")))
				r.expectClose(4000)
				r.expectTCPClose(closeWait / 2)
			})

			for _, tc := range frameFailures(limit) {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					r := dialRaw(t, n, nil)
					r.send(tc.frames...)
					r.expectClose(tc.code)
					r.send(clientFrame(finBit|op(ws.OpClose), closeBody(uint16(tc.code), "")))
					// the node must not wait out closeWait once answered
					r.expectTCPClose(closeWait / 2)
				})
			}

			t.Run("error close never answered", func(t *testing.T) {
				t.Parallel()
				r := dialRaw(t, n, nil)
				r.send(clientFrame(finBit|op(ws.OpText), []byte{0xff}))
				r.expectClose(ws.StatusInvalidFramePayloadData)
				took := r.expectTCPClose(closeWait + 2*time.Second)
				t.Logf("TCP closed %v after the close frame (closeWait %v)", took.Round(time.Millisecond), closeWait)
			})
		})
	}
}

// TestFrameUpgradeRefused sends opening handshakes RFC 6455 section 4.2.1
// refuses: each gets a 4xx, never a 101.
func TestFrameUpgradeRefused(t *testing.T) {
	n := startNode(t, nil)
	host := n.hs.Listener.Addr().String()
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	for _, tc := range []struct{ name, req string }{
		{"no key", upgradeRequest("GET", host, "", "13")},
		{"version 12", upgradeRequest("GET", host, key, "12")},
		{"no version", upgradeRequest("GET", host, key, "")},
		{"POST", upgradeRequest("POST", host, key, "13")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp := rawUpgrade(t, n, tc.req, nil)
			if resp.StatusCode < 400 || resp.StatusCode > 499 {
				t.Fatalf("status %s, want a 4xx", resp.Status)
			}
		})
	}
}

// TestParkMany parks many idle sockets, wakes every one with a delivery,
// and checks that closing the node sends each a 1001 close frame.
func TestParkMany(t *testing.T) {
	const clients = 200
	for _, mode := range wsModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, func(c *Config) { c.noPoller, c.noRawIO = mode.noPoller, mode.noRawIO })
			peers := make([]*wsPeer, clients)
			for i := range peers {
				p := dialWS(t, n)
				p.handshake(nil)
				if r := p.subscribe("/park", nil); r["successful"] != true {
					t.Fatalf("subscribe: %v", r)
				}
				peers[i] = p
			}
			want := clients
			if mode.noPoller || n.srv.poller == nil {
				want = 0
			}
			waitParked(t, n.srv, want)
			n.srv.mu.RLock()
			for wc := range n.srv.wsConns {
				if raw := n.srv.poller != nil && !mode.noPoller && !mode.noRawIO; wc.rawIO() != raw {
					t.Errorf("socket on its own descriptor: %v, want %v", wc.rawIO(), raw)
				}
			}
			n.srv.mu.RUnlock()
			if code, res := n.publish(`{"channel":"/park","data":"wake"}`); code != 200 || !res[0].Successful {
				t.Fatalf("publish: %d %+v", code, res)
			}
			for i, p := range peers {
				if got := p.dataN(1)[0]; got["data"] != "wake" {
					t.Fatalf("peer %d got %v", i, got)
				}
			}
			n.srv.Close()
			timeout := time.After(closeWait)
			for i, p := range peers {
				select {
				case <-p.closed:
				case <-timeout:
					t.Fatalf("peer %d: socket still open after the node closed", i)
				}
				if code := websocket.CloseStatus(p.closeErr); code != websocket.StatusGoingAway {
					t.Fatalf("peer %d closed with %v (%v), want 1001", i, code, p.closeErr)
				}
			}
		})
	}
}

// waitParked waits until want of the node's websockets are parked (and
// checks that no more are).
func waitParked(t testing.TB, s *Server, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := 0
		s.mu.RLock()
		for wc := range s.wsConns {
			if wc.state.Load() == wsParked {
				got++
			}
		}
		s.mu.RUnlock()
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%d sockets parked, want %d", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestParkByteAtATime sends frames one byte at a time: a parked socket is
// woken by a partial frame, and its owner must wait for the rest.
func TestParkByteAtATime(t *testing.T) {
	for _, mode := range wsModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, func(c *Config) { c.noPoller, c.noRawIO = mode.noPoller, mode.noRawIO })
			r := dialRaw(t, n, nil)
			in := append(clientFrame(finBit|op(ws.OpPing), []byte("slow")), clientFrame(finBit|op(ws.OpText), []byte(rawHandshake))...)
			for _, b := range in {
				r.send([]byte{b})
				time.Sleep(time.Millisecond)
			}
			if p := r.expect(ws.OpPong); string(p) != "slow" {
				t.Fatalf("pong %q", p)
			}
			checkHandshakeReply(t, r.expectJSON())
			r.send(clientFrame(finBit|op(ws.OpClose), closeBody(1000, "")))
			r.expectClose(ws.StatusNormalClosure)
			r.expectTCPClose(closeWait / 2)
		})
	}
}

// captureConn is the fuzz target's socket: it keeps what is written, and
// anything else a net.Conn does is not called.
type captureConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *captureConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReadMessage feeds arbitrary bytes to readMessage until it fails:
// it must not panic, return a message over the limit or text that is not
// UTF-8, fail in a way other than a close code or the input's end, or
// write anything but pongs.
func FuzzReadMessage(f *testing.F) {
	text, cont, ping := finBit|op(ws.OpText), finBit|op(ws.OpContinuation), finBit|op(ws.OpPing)
	for _, seed := range [][]byte{
		clientFrame(text, []byte(rawHandshake)),
		bytes.Join([][]byte{clientFrame(op(ws.OpText), []byte("[{")), clientFrame(ping, []byte("p")), clientFrame(cont, []byte("}]"))}, nil),
		clientFrame(finBit|op(ws.OpClose), closeBody(1000, "bye")),
		clientFrame(finBit|op(ws.OpPong), nil),
		clientFrame(text, bytes.Repeat([]byte("é"), 100)),
		clientHeader(nil, text, 0, false),
		clientHeader(nil, text, 1<<40, true),
	} {
		f.Add(seed, uint16(64))
	}
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		lim := int(limit%1024) + 1
		sink := &captureConn{}
		wc := &wsConn{br: bufio.NewReaderSize(bytes.NewReader(in), wsBufferSize), fd: -1}
		wc.sock.init(sink, time.Minute)
		for i := 0; ; i++ {
			if i > len(in) {
				t.Fatalf("%d frames from %d bytes", i, len(in))
			}
			m, err := wc.readMessage(lim)
			if err != nil {
				var ce closeError
				switch {
				case errors.As(err, &ce):
					switch ce.code {
					case ws.StatusProtocolError, ws.StatusUnsupportedData, ws.StatusInvalidFramePayloadData, ws.StatusMessageTooBig:
					default:
						t.Fatalf("close code %d: %v", ce.code, err)
					}
				case errors.Is(err, errPeerClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				default:
					t.Fatalf("error %v", err)
				}
				break
			}
			if len(m) > lim {
				t.Fatalf("message of %d bytes, limit %d", len(m), lim)
			}
			if !utf8.Valid(m) {
				t.Fatalf("message %q is not UTF-8", m)
			}
		}
		for sink.out.Len() > 0 {
			fr, err := readServerFrame(&sink.out)
			if err != nil || fr.op != ws.OpPong || !fr.fin || len(fr.payload) > ws.MaxControlFramePayloadSize {
				t.Fatalf("wrote frame %v %v %q (%v), want only pongs", fr.op, fr.fin, fr.payload, err)
			}
		}
	})
}
