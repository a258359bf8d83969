package server

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// sockWriter is the single way onto a websocket's socket: every frame the
// node sends, data or control, goes out here whole, header and payload in
// one write system call, so frames written by the session's writer and by
// the socket's reader (pongs, the close frame) never interleave. Writing
// frames here rather than through a library's writer matters at fan-out
// rates: the library path cost two channel-based locks, a context watch
// and a buffer copy per frame, a third of the node's CPU.
type sockWriter struct {
	mu        sync.Mutex
	conn      net.Conn
	timeout   time.Duration
	closeSent bool      // a close frame went out: no more frames
	deadline  time.Time // the socket's write deadline
}

// extendDeadlineLocked makes sure a write may block for at least half the
// timeout and at most the whole of it. The deadline is moved only when
// less than half is left: setting it costs a runtime timer update, 7% of
// the CPU at fan-out rates when done for every frame.
func (w *sockWriter) extendDeadlineLocked() {
	now := time.Now()
	if w.deadline.Sub(now) >= w.timeout/2 {
		return
	}
	w.deadline = now.Add(w.timeout)
	w.conn.SetWriteDeadline(w.deadline)
}

// writeText writes payload as one unmasked, unfragmented text frame.
func (w *sockWriter) writeText(payload []byte) error {
	return w.writeTextFunc(len(payload), func(b []byte) []byte { return append(b, payload...) })
}

// writeTextFunc writes a text frame whose n-byte payload fill appends.
func (w *sockWriter) writeTextFunc(n int, fill func([]byte) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return net.ErrClosed
	}
	bp := framePool.Get().(*[]byte)
	b := appendHeader((*bp)[:0], ws.OpText, n)
	h := len(b)
	b = fill(b)
	if len(b)-h != n {
		return fmt.Errorf("write websocket frame: %d payload bytes announced, %d built", n, len(b)-h)
	}
	w.extendDeadlineLocked()
	_, err := w.conn.Write(b)
	// pool buffers of the usual size only
	if cap(b) <= framePoolMax {
		*bp = b[:0]
		framePool.Put(bp)
	}
	if err != nil {
		return fmt.Errorf("write websocket frame: %w", err)
	}
	return nil
}

// writeControl writes a control frame (ping, pong or close) with a payload
// of at most 125 bytes. After a close frame nothing more is written.
func (w *sockWriter) writeControl(op ws.OpCode, payload []byte) error {
	if len(payload) > ws.MaxControlFramePayloadSize {
		payload = payload[:ws.MaxControlFramePayloadSize]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return net.ErrClosed
	}
	if op == ws.OpClose {
		w.closeSent = true
	}
	var buf [2 + ws.MaxControlFramePayloadSize]byte
	b := append(appendHeader(buf[:0], op, len(payload)), payload...)
	w.extendDeadlineLocked()
	if _, err := w.conn.Write(b); err != nil {
		return fmt.Errorf("write websocket %v frame: %w", op, err)
	}
	return nil
}

// writeClose sends the close frame with code and reason (RFC 6455 section
// 5.5.1); a zero code sends an empty body, as for a peer that gave none.
func (w *sockWriter) writeClose(code ws.StatusCode, reason string) error {
	if code == 0 {
		return w.writeControl(ws.OpClose, nil)
	}
	if len(reason) > ws.MaxControlFramePayloadSize-2 {
		reason = reason[:ws.MaxControlFramePayloadSize-2]
	}
	return w.writeControl(ws.OpClose, ws.NewCloseFrameBody(code, reason))
}

// framePool holds frame buffers shared by all connections, so that an
// idle connection holds none.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const framePoolMax = 16 << 10

// appendHeader appends the header of a final, unmasked frame with an
// n-byte payload (RFC 6455 section 5.2).
func appendHeader(b []byte, op ws.OpCode, n int) []byte {
	first := 0x80 | byte(op)
	switch {
	case n <= 125:
		return append(b, first, byte(n))
	case n <= 0xffff:
		return append(b, first, 126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, first, 127), uint64(n))
	}
}
