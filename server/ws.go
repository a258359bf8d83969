package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
)

var errBinary = errors.New("binary websocket frame")

const (
	wsStatusGoingAway       = websocket.StatusGoingAway
	wsStatusPolicyViolation = websocket.StatusPolicyViolation
	wsStatusTryAgainLater   = websocket.StatusTryAgainLater
)

// wsConn is one websocket. Its reader is the HTTP handler's goroutine; a
// writer goroutine runs only while its session has something queued, so an
// idle connection costs one goroutine.
type wsConn struct {
	c         *websocket.Conn
	br        *bufio.Reader // c's read buffer, to wait for data shallowly
	srv       *Server
	conn      net.Conn
	sock      *sockWriter // nil when the library did not hijack through smallBuffers
	closeOnce sync.Once
	closed    chan struct{}
	// closeCode and closeReason are what the reader closes the socket
	// with; set once, by close.
	closeCode   websocket.StatusCode
	closeReason string
}

// wsBufferSize is the size of a websocket's read buffer, which every
// connection holds for as long as it is open. Bayeux frames from clients
// are small (a /meta/connect is about 100 bytes), and at tens of thousands
// of idle connections the 4 KiB buffer net/http hands over on hijack would
// be most of a session's cost. A larger frame takes one more read call:
// the library reads a payload longer than the buffer straight into its
// own slice.
const wsBufferSize = 128

// smallBuffers is a ResponseWriter whose Hijack swaps net/http's 4 KiB
// buffers for small ones, keeping any bytes already read. The writer it
// hands the library writes through sock, which the node's own frames share.
type smallBuffers struct {
	http.ResponseWriter
	br   *bufio.Reader // the reader handed to the websocket library
	conn net.Conn
	sock *sockWriter
	// timeout bounds each write on the socket.
	timeout time.Duration
}

func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	w.conn = conn
	w.sock = &sockWriter{conn: conn, timeout: w.timeout}
	// the library writes only control frames (pong, close) itself, none
	// longer than controlFrameMax: each reaches sock whole, in one Write.
	bw := bufio.NewWriterSize(w.sock, controlFrameMax)
	n := brw.Reader.Buffered()
	if n == 0 {
		w.br = bufio.NewReaderSize(conn, wsBufferSize)
		return conn, bufio.NewReadWriter(w.br, bw), nil
	}
	// bytes the client sent right after its upgrade request are already
	// read: they must sit in the new reader's buffer (the websocket
	// library takes over what is Buffered and resets the reader).
	b, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn), max(wsBufferSize, n))
	if _, err := br.Peek(n); err != nil {
		conn.Close()
		return nil, nil, err
	}
	w.br = br
	return conn, bufio.NewReadWriter(br, bw), nil
}

// controlFrameMax is the longest websocket control frame a server sends:
// a 2-byte header and at most 125 bytes of payload.
const controlFrameMax = 2 + 125

// sockWriter is the single way onto a websocket's socket. The node writes
// its text frames here directly, header and payload in one write system
// call, rather than through the library's Write: that path costs two
// channel-based locks, a context watch and a buffer copy per frame, which
// at fan-out rates was a third of the node's CPU. The library's own
// frames (pongs, the close frame) come through Write whole, so frames
// from both never interleave.
type sockWriter struct {
	mu        sync.Mutex
	conn      net.Conn
	timeout   time.Duration
	closeSent bool      // a close frame went out: no more data frames
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

// Write takes the library's frames.
func (w *sockWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 0; i+2 <= len(p); {
		if p[i]&0x0f == 0x8 { // opcode close
			w.closeSent = true
		}
		l := int(p[i+1] & 0x7f)
		if l > 125 {
			break
		}
		i += 2 + l
	}
	w.extendDeadlineLocked()
	return w.conn.Write(p)
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
	b := appendTextHeader((*bp)[:0], n)
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

// framePool holds frame buffers shared by all connections, so that an
// idle connection holds none.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const framePoolMax = 16 << 10

// appendTextHeader appends the header of a final, unmasked text frame
// with an n-byte payload (RFC 6455 section 5.2).
func appendTextHeader(b []byte, n int) []byte {
	const finText = 0x80 | 0x1
	switch {
	case n <= 125:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return append(b, finText, 126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, finText, 127), uint64(n))
	}
}

// serveWS upgrades the request and hands the socket to a reader goroutine
// of its own: the handler's goroutine, whose stack grew while serving
// HTTP, ends, and the reader's stays small.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	sb := &smallBuffers{ResponseWriter: w, timeout: s.cfg.WriteTimeout}
	c, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		// Faye accepts any origin; clients authenticate with a token.
		InsecureSkipVerify: true,
		// compression state costs tens of KiB per connection.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		s.met.errorCode(400)
		return
	}
	c.SetReadLimit(int64(s.cfg.MaxMessageBytes))
	wc := &wsConn{c: c, br: sb.br, conn: sb.conn, sock: sb.sock, srv: s, closed: make(chan struct{})}
	s.mu.Lock()
	closing := s.ctx.Err() != nil
	if !closing {
		s.wsConns[wc] = struct{}{}
	}
	s.mu.Unlock()
	if closing {
		c.Close(wsStatusGoingAway, "server shutting down")
		return
	}
	s.met.connections.WithLabelValues(bayeux.ConnTypeWebSocket).Inc()
	s.met.accepted.WithLabelValues(bayeux.ConnTypeWebSocket).Inc()
	go s.readWS(wc)
}

// readWS reads frames until the socket closes.
func (s *Server) readWS(wc *wsConn) {
	c := wc.c
	var bound *session
	defer func() {
		s.mu.Lock()
		delete(s.wsConns, wc)
		s.mu.Unlock()
		s.met.connections.WithLabelValues(bayeux.ConnTypeWebSocket).Dec()
		if bound != nil {
			bound.detach(wc)
		}
		// the close handshake reads from the socket, so it is done here,
		// where nothing else reads any more.
		wc.close(websocket.StatusNormalClosure, "")
		if wc.conn != nil {
			wc.conn.SetReadDeadline(time.Time{})
		}
		c.Close(wc.closeCode, wc.closeReason)
	}()
	type frame struct {
		ss  *session
		err error
	}
	done := make(chan frame, 1)
	for {
		// Idle connections wait here, in a shallow call that keeps this
		// goroutine's stack at its minimum; reading the frame and handling
		// it (JSON, the handlers, metrics) need a deep stack, so they run
		// on a short-lived goroutine, waited for so that frames are
		// handled one at a time and in order.
		if wc.br != nil {
			if _, err := wc.br.Peek(1); err != nil {
				return
			}
		}
		go func() {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				done <- frame{err: err}
				return
			}
			if typ != websocket.MessageText {
				wc.close(websocket.StatusUnsupportedData, "text frames only")
				done <- frame{err: errBinary}
				return
			}
			done <- frame{ss: s.handleFrame(wc, data)}
		}()
		f := <-done
		if f.err != nil {
			return
		}
		if ss := f.ss; ss != nil {
			if bound != nil && bound != ss {
				bound.detach(wc)
			}
			bound = ss
		}
	}
}

// handleFrame processes one websocket frame and returns the session whose
// /meta/connect it carried, which is then bound to the socket.
func (s *Server) handleFrame(wc *wsConn, data []byte) *session {
	msgs, err := bayeux.DecodeMessages(data)
	if err != nil {
		s.met.errorCode(bayeux.CodeBadRequest)
		wc.writeReplies([]*bayeux.Message{{Successful: bayeux.False, Error: bayeux.ErrBadRequest(err.Error()).Error()}})
		return nil
	}
	if len(msgs) == 0 {
		// halley's ping
		wc.write([]byte("[]"))
		return nil
	}
	if len(msgs) > s.cfg.MaxBatch {
		wc.writeReplies(tooMany(s, msgs))
		return nil
	}
	b := &batch{transport: bayeux.ConnTypeWebSocket, ws: wc}
	s.process(b, msgs)
	replies := b.replies
	var ss *session
	if b.connect != nil && b.connectAt >= 0 {
		ss = b.connect
		reply := replies[b.connectAt]
		replies = append(replies[:b.connectAt:b.connectAt], replies[b.connectAt+1:]...)
		ss.attach(wc, reply, b.hold)
	}
	if len(replies) > 0 {
		wc.writeReplies(replies)
	}
	for _, f := range b.after {
		f()
	}
	if b.goAway {
		wc.close(wsStatusGoingAway, "node draining")
	}
	return ss
}

// tooMany answers every message of an oversized batch with an error,
// handling none of them.
func tooMany(s *Server, msgs []bayeux.Message) []*bayeux.Message {
	out := make([]*bayeux.Message, 0, len(msgs))
	for i := range msgs {
		r := newReply(&msgs[i])
		r.Successful = bayeux.False
		r.Error = bayeux.ErrBadRequest("Too many messages in one batch").Error()
		s.met.errorCode(bayeux.CodeBadRequest)
		out = append(out, r)
	}
	return out
}

// attach binds the session to wc and holds the connect reply there until
// hold passes: Faye answers a websocket /meta/connect after its timeout and
// pushes messages in between, and the clients send the next connect as
// soon as the reply arrives.
func (ss *session) attach(wc *wsConn, reply *bayeux.Message, hold time.Duration) {
	b, err := json.Marshal(reply)
	if err != nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return
	}
	ss.ws = wc
	ss.lastConnect = ss.srv.cfg.Now()
	if h := ss.held; h != nil {
		ss.held = nil
		ss.queue = append(ss.queue, outMsg{b: h.reply})
	}
	if hold <= 0 || ss.released {
		ss.queue = append(ss.queue, outMsg{b: b})
	} else {
		h := &heldConnect{reply: b}
		ss.srv.holds.add(hold, ss, h)
		ss.held = h
	}
	if len(ss.queue) > 0 {
		ss.kickLocked()
	}
}

// releaseHeld sends a held connect reply whose hold has passed.
func (ss *session) releaseHeld(h *heldConnect) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.held != h {
		return
	}
	ss.held = nil
	ss.lastConnect = ss.srv.cfg.Now()
	ss.queue = append(ss.queue, outMsg{b: h.reply})
	ss.kickLocked()
}

// detach unbinds wc from the session when the socket closes; the session
// lives on until its timeout so that the client can come back.
func (ss *session) detach(wc *wsConn) {
	ss.mu.Lock()
	if ss.ws != wc {
		ss.mu.Unlock()
		return
	}
	ss.ws = nil
	ss.lastConnect = ss.srv.cfg.Now()
	ss.held = nil
	shared := ss.srv.cfg.SharedSessions && ss.live && !ss.closed && !ss.released
	if shared {
		// the client may come back anywhere: the store takes the
		// session, from what was written to the socket.
		ss.live = false
		ss.queue, ss.pending = nil, nil
	}
	ss.mu.Unlock()
	if shared {
		ss.srv.saveRecord(ss)
	}
}

// writeLoop writes what the session has queued, one frame per round, and
// ends when the queue is empty. A failed write puts the messages back, so
// that a later connection (or a saved session) starts from them.
func (ss *session) writeLoop() {
	for {
		ss.mu.Lock()
		wc := ss.ws
		if wc == nil || ss.closed || len(ss.queue) == 0 {
			ss.writing = false
			ss.mu.Unlock()
			return
		}
		given := ss.given
		q := ss.takeLocked()
		ss.mu.Unlock()

		if err := wc.writeQueue(q); err != nil {
			ss.mu.Lock()
			ss.queue = append(q, ss.queue...)
			ss.given = given
			ss.writing = false
			ss.mu.Unlock()
			wc.close(websocket.StatusGoingAway, "write failed")
			return
		}
		ss.srv.countOut(q)
	}
}

// countOut records deliveries in the metrics.
func (s *Server) countOut(q []outMsg) {
	now := s.cfg.Now().UnixNano()
	for _, m := range q {
		if m.seq == 0 {
			continue
		}
		s.met.messagesOut.Inc()
		s.met.latency.Observe(float64(now-m.published) / 1e9)
	}
}

// frame joins encoded messages into one JSON array.
func frame(q []outMsg) []byte { return appendFrame(nil, q) }

// frameLen is the length of frame(q).
func frameLen(q []outMsg) int {
	n := 1 + len(q)
	if len(q) == 0 {
		n++
	}
	for _, m := range q {
		n += len(m.b)
	}
	return n
}

// appendFrame appends the JSON array of q's messages to b.
func appendFrame(b []byte, q []outMsg) []byte {
	b = append(b, '[')
	for i, m := range q {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.b...)
	}
	return append(b, ']')
}

// writeQueue sends q as one frame, built straight into the socket
// writer's pooled buffer: no frame is allocated per delivery.
func (wc *wsConn) writeQueue(q []outMsg) error {
	if wc.sock == nil {
		return wc.write(frame(q))
	}
	return wc.sock.writeTextFunc(frameLen(q), func(b []byte) []byte { return appendFrame(b, q) })
}

func (wc *wsConn) writeReplies(rs []*bayeux.Message) {
	b, err := json.Marshal(rs)
	if err != nil {
		return
	}
	wc.write(b)
}

// write sends one text frame, through sock when there is one.
func (wc *wsConn) write(b []byte) error {
	if wc.sock != nil {
		return wc.sock.writeText(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wc.srv.cfg.WriteTimeout)
	defer cancel()
	return wc.c.Write(ctx, websocket.MessageText, b)
}

// close asks for the socket to be closed with a status, once, without
// waiting: it wakes the reader (an expired read deadline), which performs
// the close handshake.
func (wc *wsConn) close(code websocket.StatusCode, reason string) {
	wc.closeOnce.Do(func() {
		wc.closeCode, wc.closeReason = code, reason
		close(wc.closed)
		if wc.conn != nil {
			wc.conn.SetReadDeadline(time.Unix(1, 0))
		} else {
			go wc.c.Close(code, reason)
		}
	})
}
