package server

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"syscall"
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
	mu sync.Mutex
	// nc is the socket as a net.Conn; nil when the socket is wc's own
	// descriptor (raw I/O, Linux: rawio_linux.go), which frees the
	// runtime's poll descriptor and netFD, a third of what an idle
	// session cost.
	nc        *netConn
	wc        *wsConn // raw: the socket, whose descriptor and poller waits writes use
	timeout   time.Duration
	closeSent bool  // a close frame went out: no more frames
	closed    bool  // raw: the descriptor is closed
	deadline  int64 // the socket's write deadline, unix nanos
	// rest is a frame tryWriteTextFunc began, from rest.off on: it goes
	// out before anything else.
	rest *frameBuf
}

// netConn is a socket served through Go's net.Conn (off Linux, without
// the poller, or when the descriptor could not be taken).
type netConn struct {
	conn net.Conn
	raw  syscall.RawConn // conn's descriptor, for tryWriteTextFunc; nil: none
}

// init makes w the writer of conn, with writes bounded by timeout.
func (w *sockWriter) init(conn net.Conn, timeout time.Duration) {
	w.nc, w.timeout = &netConn{conn: conn}, timeout
	if sc, ok := conn.(syscall.Conn); ok && canWriteRaw {
		if rc, err := sc.SyscallConn(); err == nil {
			w.nc.raw = rc
		}
	}
}

// initRaw makes w the writer of wc's own descriptor (wc.fd), with writes
// bounded by timeout. Only before wc is shared.
func (w *sockWriter) initRaw(wc *wsConn, timeout time.Duration) {
	w.nc, w.wc, w.timeout = nil, wc, timeout
}

// writeLocked writes b whole, waiting for room up to the write deadline.
func (w *sockWriter) writeLocked(b []byte) error {
	if w.nc != nil {
		_, err := w.nc.conn.Write(b)
		return err
	}
	if w.closed {
		return net.ErrClosed
	}
	return w.wc.writeRaw(b, w.deadline)
}

// close closes the socket, once; nothing is written after it. Only the
// socket's owner calls it, after the poller forgot the socket.
func (w *sockWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closeSent = true
	if w.nc != nil {
		return w.nc.conn.Close()
	}
	if w.closed {
		return nil
	}
	w.closed = true
	return closeRaw(w.wc.fd)
}

// extendDeadlineLocked makes sure a write may block for at least half the
// timeout and at most the whole of it. The deadline is moved only when
// less than half is left: setting it costs a runtime timer update, 7% of
// the CPU at fan-out rates when done for every frame. now is the time: the
// flusher reads the clock once for many writes (writeClock), the others
// just before.
func (w *sockWriter) extendDeadlineLocked(now time.Time) {
	if time.Duration(w.deadline-now.UnixNano()) >= w.timeout/2 {
		return
	}
	d := now.Add(w.timeout)
	w.deadline = d.UnixNano()
	if w.nc != nil {
		w.nc.conn.SetWriteDeadline(d)
	}
}

// flushLocked writes what is left of a frame tryWriteTextFunc began,
// blocking up to the write timeout.
func (w *sockWriter) flushLocked() error {
	fb := w.rest
	if fb == nil {
		return nil
	}
	w.rest = nil
	w.extendDeadlineLocked(time.Now())
	err := w.writeLocked(fb.b[fb.off:])
	fb.put()
	if err != nil {
		return fmt.Errorf("write websocket frame: %w", err)
	}
	return nil
}

// flush writes what is left of a frame tryWriteTextFunc began.
func (w *sockWriter) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

// writeText writes payload as one unmasked, unfragmented text frame.
func (w *sockWriter) writeText(payload []byte) error {
	return w.writeTextFunc(len(payload), func(b []byte) []byte { return append(b, payload...) })
}

// buildFrame builds a text frame whose n-byte payload fill appends in a
// pooled buffer.
func buildFrame(n int, fill func([]byte) []byte) (*frameBuf, error) {
	fb := framePool.Get().(*frameBuf)
	b := appendHeader(fb.b[:0], ws.OpText, n)
	h := len(b)
	fb.b = fill(b)
	if len(fb.b)-h != n {
		err := fmt.Errorf("write websocket frame: %d payload bytes announced, %d built", n, len(fb.b)-h)
		fb.put()
		return nil, err
	}
	return fb, nil
}

// writeTextFunc writes a text frame whose n-byte payload fill appends.
func (w *sockWriter) writeTextFunc(n int, fill func([]byte) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return net.ErrClosed
	}
	if err := w.flushLocked(); err != nil {
		return err
	}
	fb, err := buildFrame(n, fill)
	if err != nil {
		return err
	}
	w.extendDeadlineLocked(time.Now())
	err = w.writeLocked(fb.b)
	fb.put()
	if err != nil {
		return fmt.Errorf("write websocket frame: %w", err)
	}
	return nil
}

// tryWriteTextFunc writes a text frame, as writeTextFunc, but never
// blocks, so that the flusher can write to every ready subscriber's
// socket itself, one system call per frame and no goroutine started, as
// long as the sockets take the bytes. now is the time, read by the caller
// for many writes (the deadline is at least half the timeout away from
// it). ok is false when nothing was written because the socket is another
// writer's just now (or has no descriptor): the caller queues the frame
// for a writer that may wait. pending is true when the socket took part
// of the frame: the rest is kept and written first by the next flush or
// write, which the caller must start.
func (w *sockWriter) tryWriteTextFunc(n int, fill func([]byte) []byte, now time.Time) (pending, ok bool, err error) {
	if ok, err := w.tryLock(); !ok || err != nil {
		return false, ok, err
	}
	defer w.mu.Unlock()
	fb, err := buildFrame(n, fill)
	if err != nil {
		return false, true, err
	}
	fb.src = fb.b
	return w.tryWriteLocked(fb, false, now)
}

// tryWriteFrame is tryWriteTextFunc for a frame built already (a
// message's frame shared by its subscribers, outMsg.alone): the socket
// takes it from where it is, with no copy. Only what a socket did not
// take is copied, to be written later.
func (w *sockWriter) tryWriteFrame(frame []byte, now time.Time) (pending, ok bool, err error) {
	if ok, err := w.tryLock(); !ok || err != nil {
		return false, ok, err
	}
	defer w.mu.Unlock()
	fb := framePool.Get().(*frameBuf)
	fb.src = frame
	return w.tryWriteLocked(fb, true, now)
}

// tryLock takes w for a write that must not wait: ok is false when the
// socket is another writer's (or has no descriptor, or a rest to write
// first); err is set, with ok, once a close frame went out. w is locked
// only when ok is true and err nil.
func (w *sockWriter) tryLock() (ok bool, err error) {
	if (w.nc != nil && w.nc.raw == nil) || !w.mu.TryLock() {
		return false, nil
	}
	if w.closeSent {
		w.mu.Unlock()
		return true, net.ErrClosed
	}
	if w.rest != nil {
		w.mu.Unlock()
		return false, nil
	}
	return true, nil
}

// tryWriteLocked writes fb.src without blocking and keeps what the
// socket did not take in w.rest (in fb.b, from fb.off on); fb is put
// back otherwise. shared says fb.src is not fb.b but a frame built
// elsewhere.
func (w *sockWriter) tryWriteLocked(fb *frameBuf, shared bool, now time.Time) (pending, ok bool, err error) {
	fb.off, fb.errno = 0, nil
	// the write cannot block, but the runtime refuses it once the
	// deadline has passed
	w.extendDeadlineLocked(now)
	if w.nc == nil {
		if w.closed {
			fb.put()
			return false, true, net.ErrClosed
		}
		fb.write(uintptr(w.wc.fd))
	} else if err := w.nc.raw.Write(fb.write); err != nil {
		fb.put()
		return false, true, fmt.Errorf("write websocket frame: %w", err)
	}
	if fb.errno != nil {
		err := fb.errno
		fb.put()
		return false, true, fmt.Errorf("write websocket frame: %w", err)
	}
	if fb.off < len(fb.src) {
		if shared {
			// the rest becomes this socket's own copy
			fb.b = append(fb.b[:0], fb.src[fb.off:]...)
			fb.off = 0
		}
		fb.src = nil
		w.rest = fb // flushLocked puts it back
		return true, true, nil
	}
	fb.put()
	return false, true, nil
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
	if err := w.flushLocked(); err != nil {
		return err
	}
	var buf [2 + ws.MaxControlFramePayloadSize]byte
	b := append(appendHeader(buf[:0], op, len(payload)), payload...)
	w.extendDeadlineLocked(time.Now())
	if err := w.writeLocked(b); err != nil {
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

// frameBuf is a frame being built and written: pooled, shared by all
// connections, so that an idle connection holds none. src, off and errno
// are the state of a non-blocking write (writeFD, bound to write once so
// that a write allocates nothing): src is what it writes, b or a frame
// built elsewhere.
type frameBuf struct {
	b     []byte
	src   []byte // what writeFD writes
	off   int    // bytes of src written (of b, once kept as a rest)
	errno error  // the write's failure; a full socket is none
	write func(fd uintptr) bool
}

var framePool = sync.Pool{New: func() any {
	fb := &frameBuf{b: make([]byte, 0, 1024)}
	fb.write = fb.writeFD
	return fb
}}

// put returns fb to the pool; buffers of the usual size only.
func (fb *frameBuf) put() {
	fb.src = nil // keeps no shared frame alive
	if cap(fb.b) <= framePoolMax {
		fb.b = fb.b[:0]
		framePool.Put(fb)
	}
}

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
