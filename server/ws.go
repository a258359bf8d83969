package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"wsfleet/bayeux"
)

const (
	wsStatusGoingAway       = ws.StatusGoingAway
	wsStatusPolicyViolation = ws.StatusPolicyViolation
)

// closeWait bounds how long a closing socket waits for the peer's close
// frame before the TCP connection is closed anyway (RFC 6455 section 7.1.1
// wants the server to close TCP after the closing handshake).
const closeWait = 5 * time.Second

// wsConn is one websocket. At any time at most one goroutine reads it: the
// socket's owner. An idle socket has none: it is parked in the node's
// poller (Linux's epoll), which starts a goroutine when bytes arrive, and
// that goroutine reads and handles frames while there are any, then parks
// the socket again and ends. A goroutine per idle socket (its stack, 2 KiB
// at the least) was the largest part of what an idle session cost. Where
// there is no poller, the owner waits for bytes in a shallow call instead.
// With the poller (Linux) the socket is not a net.Conn either once
// upgraded: it is a descriptor of the node's own (rawio_linux.go), whose
// reads and writes wait in the same poller when they would block, which
// saves the netFD and the runtime's poll descriptor (about 1 KB of RSS).
//
// Writing is the session's business (the flusher, flush.go, or writeLoop)
// and the reader's for control frames; all go through sock.
//
// It is kept small (184 bytes), as the session is: a net.Conn, when the
// socket is one, is out of line (sock.nc), so is a message in fragments
// (frag) and whatever waits on a raw socket (wait), and the small fields
// are packed together.
type wsConn struct {
	srv  *Server
	br   *bufio.Reader // small (wsBufferSize); nil while parked (readerPool)
	sock sockWriter    // in the connection itself: one object less per socket

	// state is wsReading or wsParked; moving a socket out of wsParked
	// (compare-and-swap) makes the mover its owner.
	state atomic.Int32
	// fd is the socket's descriptor: the node's own (raw I/O, sock.nc is
	// nil), or for the poller that of the net.Conn once registered.
	fd  int32
	gen uint32 // tells this socket's poller entries from a reused fd's
	// wait is who waits on a raw socket (rawio_linux.go), under closeMu;
	// nil when nobody does.
	wait *rawWait

	// deadline closes the socket unless spoke is set by its first
	// /meta/connect in time (armHandshakeDeadline); addr is the client's
	// key for the handshake limit.
	spoke    atomic.Bool
	deadline Timer
	addr     string

	// owner's read state
	bound *session // the session whose connect this socket carries
	// frag is a text message arriving in fragments, nil between messages
	frag *[]byte

	// closeMu guards the close request: once closing is set, the owner
	// closes the socket with closeCode and closeReason.
	closeMu     sync.Mutex
	closeReason string
	closeCode   ws.StatusCode
	closing     bool

	armed      bool // registered with the poller (closeMu)
	unpolled   bool // forgotten by the poller for good (closeMu)
	noWait     bool // owner: a read that would wait fails (errWouldBlock)
	peerClosed bool // the peer's close frame arrived (and was answered)
	// desync: reading stopped inside a frame (a refused frame's payload
	// is unread, or a read failed part way), so what follows on the
	// socket is not at a frame boundary.
	desync bool
}

// rawReader reads the owner's bytes from a socket on the node's own
// descriptor (rawio_linux.go).
type rawReader wsConn

// reader is what the owner's read buffer reads from.
func (wc *wsConn) reader() io.Reader {
	if wc.sock.nc != nil {
		return wc.sock.nc.conn
	}
	return (*rawReader)(wc)
}

// errWouldBlock is a raw read that found no bytes while wc.noWait was set.
var errWouldBlock = errors.New("websocket: no bytes waiting")

// rawIO reports whether the socket is on the node's own descriptor.
func (wc *wsConn) rawIO() bool { return wc.sock.nc == nil }

const (
	wsReading int32 = iota // a goroutine owns the socket
	wsParked               // the poller holds the socket
)

// wsBufferSize is the size of a websocket's read buffer, which every
// connection holds for as long as it is open. Bayeux frames from clients
// are small (a /meta/connect is about 100 bytes), and at tens of thousands
// of idle connections the 4 KiB buffer net/http hands over on hijack would
// be most of a session's cost. A larger frame takes one more read call:
// a payload longer than the buffer is read straight into its own slice.
const wsBufferSize = 128

// smallBuffers is a ResponseWriter whose Hijack swaps net/http's 4 KiB
// buffers for a small reader that keeps any bytes already read, and a
// writer for the upgrade response only (frames go through a sockWriter).
type smallBuffers struct {
	http.ResponseWriter
	br   *bufio.Reader
	conn net.Conn
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
	n := brw.Reader.Buffered()
	if n == 0 {
		w.br = bufio.NewReaderSize(conn, wsBufferSize)
	} else {
		// bytes the client sent right after its upgrade request are
		// already read: they must come first.
		b, _ := brw.Reader.Peek(n)
		w.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn), max(wsBufferSize, n))
		if _, err := w.br.Peek(n); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	// the upgrade response is the only thing written through this
	// writer; it is garbage once the handshake is done.
	return conn, bufio.NewReadWriter(w.br, bufio.NewWriterSize(conn, 256)), nil
}

// upgrader performs the RFC 6455 opening handshake. It offers no
// extensions (per-message compression state costs tens of KiB per
// connection) and no subprotocol, and it accepts any origin, as Faye
// does: clients authenticate with a token.
var upgrader = ws.HTTPUpgrader{}

// serveWS upgrades the request and hands the socket to its first owner.
// The handler's goroutine, whose stack grew while serving HTTP, ends.
// A node at MaxConnections refuses the upgrade with 503.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.admit() {
		s.refuseFull(w, r)
		return
	}
	sb := &smallBuffers{ResponseWriter: w}
	upgrader := upgrader
	upgrader.Timeout = s.cfg.WriteTimeout
	conn, _, _, err := upgrader.Upgrade(r, sb)
	if err != nil {
		// the library answered the client (400, 426, ...) on the
		// hijacked connection, or the hijack itself failed.
		if conn != nil {
			conn.Close()
		}
		s.unadmit()
		s.met.errorCode(400)
		s.log.Debug("websocket upgrade refused", "err", err)
		return
	}
	if err := setSendBuffer(conn, s.cfg.WSSendBuffer); err != nil {
		s.log.Debug("websocket send buffer left unbounded", "err", err)
	}
	wc := &wsConn{srv: s, br: sb.br, fd: -1}
	wc.sock.init(conn, s.cfg.WriteTimeout)
	if s.poller != nil && !s.cfg.noRawIO {
		s.takeSocket(wc, conn)
	}
	if s.hsLimit != nil {
		wc.addr = s.clientKey(r)
	}
	s.mu.Lock()
	closing := s.ctx.Err() != nil
	if !closing {
		s.wsConns[wc] = struct{}{}
		s.wsOpen++
	}
	s.mu.Unlock()
	if closing {
		wc.sock.writeClose(wsStatusGoingAway, "server shutting down")
		if s.poller != nil {
			s.poller.forget(wc) // registered if the write had to wait
		}
		if err := wc.sock.close(); err != nil {
			s.log.Debug("websocket close failed", "err", err)
		}
		s.unadmit()
		return
	}
	s.armHandshakeDeadline(wc)
	s.met.connections.WithLabelValues(bayeux.ConnTypeWebSocket).Inc()
	s.met.accepted.WithLabelValues(bayeux.ConnTypeWebSocket).Inc()
	go s.readWS(wc, false)
}

// takeSocket moves the upgraded wc off conn onto a descriptor of the
// node's own (takeFD), where the platform allows: reads and writes are
// then the node's, waiting in its poller, and the net.Conn's memory is
// freed. Before wc is shared.
func (s *Server) takeSocket(wc *wsConn, conn net.Conn) {
	fd, err := takeFD(conn)
	if fd < 0 {
		s.log.Debug("websocket kept on net.Conn", "err", err)
		return
	}
	if err != nil {
		s.log.Debug("websocket moved to its own descriptor", "err", err)
	}
	wc.fd = int32(fd)
	wc.sock.initRaw(wc, s.cfg.WriteTimeout)
	if n := wc.br.Buffered(); n == 0 {
		wc.br.Reset(wc.reader())
	} else {
		// bytes the client sent right after its upgrade request, read
		// already, come first
		b, _ := wc.br.Peek(n)
		br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), wc.reader()), max(wsBufferSize, n))
		br.Peek(n) // from memory: cannot fail
		wc.br = br
	}
}

// readWS is the owner's loop: it reads and handles frames while bytes are
// waiting, parks the socket when there are none, and closes it once a
// close is asked for or the socket fails.
// ready says that bytes are waiting on the socket: the poller saw them.
func (s *Server) readWS(wc *wsConn, ready bool) {
	for {
		wc.takeReader()
		if wc.isClosing() {
			s.finishWS(wc)
			return
		}
		if !ready && wc.br.Buffered() == 0 {
			if s.poller != nil && !s.cfg.noPoller {
				// from here the socket may have another owner at any
				// time: its read buffer goes back to the pool first
				wc.dropReader()
				if wc.park() {
					return
				}
				continue // parking failed or a close came: still the owner
			}
			// no poller: wait here, in a shallow call that keeps this
			// goroutine's stack at its minimum, and handle the frame on a
			// short-lived goroutine, which needs a deep one.
			if _, err := wc.br.Peek(1); err != nil {
				wc.close(ws.StatusNormalClosure, "")
				continue
			}
			done := make(chan struct{})
			go func() { s.readFrame(wc); close(done) }()
			<-done
			continue
		}
		if ready && wc.rawIO() && wc.br.Buffered() == 0 && !wc.peekNoWait() {
			// the report was stale (or the read failed): park again
			ready = false
			continue
		}
		ready = false
		s.readFrame(wc)
	}
}

// peekNoWait reports whether bytes are waiting on a raw socket, reading
// them into the buffer without waiting for more. A report of the poller
// can be stale (rawio_linux.go); a socket woken by one finds nothing and
// parks again, where a read that waited would keep a goroutine. A read
// that fails (the peer gone) asks for the close.
func (wc *wsConn) peekNoWait() bool {
	wc.noWait = true
	_, err := wc.br.Peek(1)
	wc.noWait = false
	if err == nil {
		return true
	}
	if !errors.Is(err, errWouldBlock) {
		wc.close(ws.StatusNormalClosure, "")
	}
	return false
}

// readerPool holds the read buffers of sockets not being read: a parked
// socket holds none (with the bufio.Reader, 224 bytes of an idle
// session's cost).
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, wsBufferSize) }}

// takeReader gives the owner a read buffer, from the pool when the socket
// parked without one.
func (wc *wsConn) takeReader() {
	if wc.br == nil {
		br := readerPool.Get().(*bufio.Reader)
		br.Reset(wc.reader())
		wc.br = br
	}
}

// dropReader returns the owner's read buffer to the pool when nothing is
// buffered in it. Bytes read ahead at the upgrade (smallBuffers) are in
// the buffer too, so an empty buffer means the next bytes are the
// socket's: a pooled reader on the socket reads them.
func (wc *wsConn) dropReader() {
	if wc.br == nil || wc.br.Buffered() > 0 {
		return
	}
	br := wc.br
	wc.br = nil
	if br.Size() == wsBufferSize {
		br.Reset(nil)
		readerPool.Put(br)
	}
}

// park hands the idle socket to the poller. It reports false when the
// caller is still the socket's owner: the poller refused it, or a close
// was asked for before anyone else could take the socket over.
func (wc *wsConn) park() bool {
	wc.state.Store(wsParked)
	wc.closeMu.Lock()
	err := errClosing
	if !wc.closing {
		err = wc.srv.poller.arm(wc)
	}
	wc.closeMu.Unlock()
	if err == nil {
		// from here the poller or close may own the socket; take it back
		// only when a close slipped in unseen by both.
		return !(wc.isClosing() && wc.state.CompareAndSwap(wsParked, wsReading))
	}
	if !wc.state.CompareAndSwap(wsParked, wsReading) {
		return true // close took the socket over
	}
	if !errors.Is(err, errClosing) {
		wc.srv.log.Warn("websocket poller refused a socket: closing it", "err", err)
		wc.close(ws.StatusInternalServerError, "")
	}
	return false
}

var errClosing = errors.New("websocket closing")

// isClosing reports whether a close was asked for.
func (wc *wsConn) isClosing() bool {
	wc.closeMu.Lock()
	defer wc.closeMu.Unlock()
	return wc.closing
}

// close asks for the socket to be closed with a status, once, without
// waiting: the owner performs the close. A parked socket is taken from the
// poller and given an owner; a socket being read gets an expired read
// deadline, which wakes its owner (waiting for bytes, in the runtime or in
// the node's poller).
func (wc *wsConn) close(code ws.StatusCode, reason string) {
	wc.closeMu.Lock()
	if wc.closing {
		wc.closeMu.Unlock()
		return
	}
	wc.closing, wc.closeCode, wc.closeReason = true, code, reason
	wc.closeMu.Unlock()
	if wc.state.CompareAndSwap(wsParked, wsReading) {
		go wc.srv.readWS(wc, false)
		return
	}
	wc.setReadDeadline(time.Unix(1, 0))
}

// readFrame reads one frame and acts on it; a complete text message goes
// to handleFrame. Any error asks for the socket to be closed.
func (s *Server) readFrame(wc *wsConn) {
	data, err := wc.readMessage(s.cfg.MaxMessageBytes)
	if err != nil {
		var ce closeError
		if errors.As(err, &ce) {
			wc.close(ce.code, ce.reason)
		} else {
			wc.close(ws.StatusNormalClosure, "")
		}
		return
	}
	if data == nil {
		return // a control frame, or part of a fragmented message
	}
	if ss := s.handleFrame(wc, data); ss != nil {
		wc.spokeOnce()
		if wc.bound != nil && wc.bound != ss {
			wc.bound.detach(wc)
		}
		wc.bound = ss
	}
}

// closeIdle is how long a socket whose stream is out of step must stay
// silent before it is closed: by then the peer has read the close frame.
const closeIdle = 500 * time.Millisecond

// drainRaw reads and drops bytes until the peer closes, stays silent for
// closeIdle, or end passes. Closing a socket with unread bytes makes the
// kernel send a reset instead of a FIN, and a reset can destroy the close
// frame the peer has not read yet: an oversized frame's payload, unread,
// did just that (the client saw "connection reset", not 1009).
func (wc *wsConn) drainRaw(end time.Time) {
	var buf [512]byte
	for time.Now().Before(end) {
		d := time.Now().Add(closeIdle)
		if d.After(end) {
			d = end
		}
		wc.setReadDeadline(d)
		if _, err := wc.br.Read(buf[:]); err != nil {
			return
		}
	}
}

// closePoller stops the poller once the node is closed and its last
// websocket is closed (the closing handshakes wait in the poller).
func (s *Server) closePoller() {
	if s.poller != nil {
		s.pollerOnce.Do(s.poller.close)
	}
}

// closeError fails the websocket connection with a status (RFC 6455
// section 7.1.7).
type closeError struct {
	code   ws.StatusCode
	reason string
}

func (e closeError) Error() string { return fmt.Sprintf("websocket %d: %s", e.code, e.reason) }

// errPeerClosed ends reading after the peer's close frame was answered.
var errPeerClosed = errors.New("websocket closed by the peer")

// readMessage reads one frame (RFC 6455 section 5). It returns a whole
// text message, nil for a frame that completes none (a control frame, a
// fragment), or an error. Pings are answered here.
func (wc *wsConn) readMessage(limit int) ([]byte, error) {
	var hb [ws.MaxHeaderSize - 2]byte
	h, err := ws.ReadHeaderBuffer(wc.br, hb[:])
	if err != nil {
		// io.EOF: the peer is gone between frames; anything else may
		// have consumed part of a header.
		wc.desync = !errors.Is(err, io.EOF)
		if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
			return nil, closeError{ws.StatusProtocolError, "bad frame header"}
		}
		return nil, err
	}
	// a frame refused below leaves its payload unread
	wc.desync = h.Length > 0
	state := ws.StateServerSide
	var msg []byte // the message so far
	if wc.frag != nil {
		state = state.Set(ws.StateFragmented)
		msg = *wc.frag
	}
	if err := ws.CheckHeader(h, state); err != nil {
		return nil, closeError{ws.StatusProtocolError, err.Error()}
	}
	if h.OpCode == ws.OpBinary {
		return nil, closeError{ws.StatusUnsupportedData, "text frames only"}
	}
	// control frames (at most 125 bytes, checked above) may come between
	// the fragments of a message and do not count towards it.
	if !h.OpCode.IsControl() && h.Length > int64(limit-len(msg)) {
		return nil, closeError{ws.StatusMessageTooBig, fmt.Sprintf("message longer than %d bytes", limit)}
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(wc.br, payload); err != nil {
		return nil, err
	}
	wc.desync = false
	ws.Cipher(payload, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		wc.sock.writeControl(ws.OpPong, payload)
		return nil, nil
	case ws.OpPong:
		return nil, nil
	case ws.OpClose:
		return nil, wc.peerClose(payload)
	case ws.OpContinuation:
		msg = append(msg, payload...)
	default: // text
		msg = payload
	}
	if !h.Fin {
		if wc.frag == nil {
			wc.frag = new([]byte)
		}
		*wc.frag = msg
		return nil, nil
	}
	wc.frag = nil
	if !utf8.Valid(msg) {
		return nil, closeError{ws.StatusInvalidFramePayloadData, "text is not UTF-8"}
	}
	return msg, nil
}

// peerClose answers the peer's close frame, echoing its status (RFC 6455
// section 5.5.1), or fails the connection when the frame is malformed.
func (wc *wsConn) peerClose(payload []byte) error {
	if len(payload) == 1 {
		return closeError{ws.StatusProtocolError, "close frame of one byte"}
	}
	code, reason := ws.ParseCloseFrameData(payload)
	if len(payload) >= 2 {
		if err := ws.CheckCloseFrameData(code, reason); err != nil {
			if errors.Is(err, ws.ErrProtocolInvalidUTF8) {
				return closeError{ws.StatusInvalidFramePayloadData, "close reason is not UTF-8"}
			}
			return closeError{ws.StatusProtocolError, err.Error()}
		}
	}
	wc.peerClosed = true
	wc.closeMu.Lock()
	if !wc.closing {
		wc.closing, wc.closeCode, wc.closeReason = true, code, ""
	}
	wc.closeMu.Unlock()
	return errPeerClosed
}

// finishWS closes the socket: it unbinds the session, sends the close
// frame, waits a little for the peer's, and closes the connection. Only
// the owner calls it, once.
func (s *Server) finishWS(wc *wsConn) {
	s.mu.Lock()
	delete(s.wsConns, wc)
	s.mu.Unlock()
	s.met.connections.WithLabelValues(bayeux.ConnTypeWebSocket).Dec()
	s.unadmit()
	if wc.deadline != nil {
		wc.deadline.Stop()
	}
	if wc.bound != nil {
		wc.bound.detach(wc)
	}
	wc.closeMu.Lock()
	code, reason := wc.closeCode, wc.closeReason
	wc.closeMu.Unlock()
	if err := wc.sock.writeClose(code, reason); err == nil && !wc.peerClosed {
		// the closing handshake: discard what still comes until the
		// peer's close frame, or closeWait.
		end := time.Now().Add(closeWait)
		wc.setReadDeadline(end)
		wc.frag = nil
		for !wc.desync {
			if _, err := wc.readMessage(s.cfg.MaxMessageBytes); err != nil {
				break
			}
		}
		if wc.desync {
			wc.drainRaw(end)
		}
	}
	// the poller forgets the socket before its descriptor can be reused;
	// it waits in the poller until then (the closing handshake)
	if s.poller != nil {
		s.poller.forget(wc)
	}
	if err := wc.sock.close(); err != nil {
		s.log.Debug("websocket close failed", "err", err)
	}
	s.mu.Lock()
	s.wsOpen--
	last := s.wsOpen == 0 && s.ctx.Err() != nil
	s.mu.Unlock()
	if last {
		s.closePoller()
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
	} else if b.connect != nil {
		b.connect.unclaim(wc)
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

// A second /meta/connect that arrives while one is held (a client whose
// socket dropped and came back before the node saw it go, or one that
// resent its connect) is not answered alone: the held connect and the new
// one are answered together, in one frame, and neither is held. Faye's
// client sends its next connect after every connect reply but only while
// none is in flight (_cycleConnection, then connect), so two replies in
// one frame bring it back to one connect, which is then held; answering
// only the older one at once and holding the newer (as before) kept two in
// flight, each answered at once when the other arrived: a ping-pong at
// network speed that never ended. (Faye's own server answers both
// together too, when its hold ends: a second connect joins the held one.)
// A client that still cycles its connects faster than connectBurst per
// connectWindow gets advice.interval connectBackoff in the replies (the
// Bayeux advice a client waits on before its next connect), and one that
// ignores it past connectAbuse has its socket closed as a policy
// violation: one client's connects cost the node a bounded rate.
const (
	connectWindow  = time.Second
	connectBurst   = 8
	connectAbuse   = 4 * connectBurst
	connectBackoff = time.Second
)

// attach binds the session to wc and holds the connect reply there until
// hold passes: Faye answers a websocket /meta/connect after its timeout and
// pushes messages in between, and the clients send the next connect as
// soon as the reply arrives. A connect already held is answered with this
// one, at once (see connectBurst).
func (ss *session) attach(wc *wsConn, reply *bayeux.Message, hold time.Duration) {
	abuse := false
	defer func() {
		if abuse {
			wc.close(wsStatusPolicyViolation, "too many /meta/connect")
		}
	}()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return
	}
	if ss.claim == wc {
		ss.claim = nil
	}
	ss.ws = wc
	now := ss.srv.cfg.Now()
	ss.lastConnect = now.Sub(ss.srv.epoch)
	h := ss.held
	if h != nil || hold <= 0 || ss.released {
		// answered at once: counted against the session's connect rate
		r := ss.more()
		if now.Sub(r.connectsFrom) >= connectWindow || now.Before(r.connectsFrom) {
			r.connectsFrom, r.connects = now, 0
		}
		r.connects++
		if r.connects > connectBurst {
			a := bayeux.Advice{Reconnect: bayeux.ReconnectRetry}
			if reply.Advice != nil {
				a = *reply.Advice
			}
			a.Interval = bayeux.Millis(connectBackoff.Milliseconds())
			reply.Advice = &a
			ss.srv.met.connectsThrottled.Inc()
		}
		abuse = r.connects > connectAbuse
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return
	}
	switch {
	case h != nil:
		ss.held = nil
		ss.srv.holds.remove(h)
		ss.queue = append(ss.queue, outMsg{b: h.bytes(ss.id)}, outMsg{b: b})
	case hold <= 0 || ss.released:
		ss.queue = append(ss.queue, outMsg{b: b})
	default:
		h := ss.srv.replies.hold(b, ss.id)
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
	ss.lastConnect = ss.srv.since()
	ss.queue = append(ss.queue, outMsg{b: h.bytes(ss.id)})
	ss.kickLocked()
}

// detach unbinds wc from the session when the socket closes; the session
// lives on until its timeout so that the client can come back.
func (ss *session) detach(wc *wsConn) { ss.letGo(wc, true) }

// unclaim drops wc's claim on the session when its /meta/connect was
// accepted but not attached (the batch ended in an error).
func (ss *session) unclaim(wc *wsConn) { ss.letGo(wc, false) }

// letGo ends wc's hold on the session: its binding (unbind) and its claim.
// With shared sessions, a session no socket of this node holds or claims
// any more goes back to the store. That hand-off runs under the client's
// share lock, which a /meta/connect for the session takes too (connect):
// a connect sees the session live here, with its claim, which keeps it
// live, or waits for the save and adopts the saved record; there is no
// moment at which the session is neither live here nor stored. (A drain
// orders it the same way: release saves before it closes the socket.)
// The lock is the client's stripe, not a node-wide one: the store's
// latency holds up only the connects that share the stripe.
func (ss *session) letGo(wc *wsConn, unbind bool) {
	s := ss.srv
	if s.cfg.SharedSessions {
		mu := s.shareLock(ss.id)
		mu.Lock()
		defer mu.Unlock()
	}
	ss.mu.Lock()
	if (!unbind || ss.ws != wc) && ss.claim != wc {
		ss.mu.Unlock()
		return
	}
	if ss.claim == wc {
		ss.claim = nil
	}
	if unbind && ss.ws == wc {
		ss.ws = nil
		ss.lastConnect = s.since()
		if h := ss.held; h != nil {
			ss.held = nil
			s.holds.remove(h)
		}
	}
	shared := s.cfg.SharedSessions && ss.ws == nil && ss.claim == nil && ss.live && !ss.closed && !ss.released
	if shared {
		// the client may come back anywhere: the store takes the
		// session, from what was written to the socket.
		ss.live = false
		ss.queue = nil
		ss.dropPendingLocked()
	}
	ss.mu.Unlock()
	if shared {
		s.saveRecord(ss, true)
	}
}

// writeNow writes q, taken from the session (whose given was given
// before) by a caller that set writing, without blocking, then what was
// queued meanwhile. When the socket cannot take a frame at once, it hands
// over to writeLoop, which may wait. clk is the caller's time.
func (ss *session) writeNow(wc *wsConn, q []outMsg, given uint64, clk *writeClock) {
	for {
		pending, ok, err := wc.writeQueueNow(q, clk.wall)
		switch {
		case err != nil:
			ss.writeFailed(wc, q, given)
			return
		case !ok:
			// another writer has the socket: queue again, and wait for it
			// on a goroutine of its own
			ss.mu.Lock()
			ss.queue = append(append([]outMsg(nil), q...), ss.queue...)
			ss.given = given
			ss.mu.Unlock()
			go ss.writeLoop(nil, nil, 0)
			return
		case pending:
			// the socket took part of the frame: the rest, and whatever
			// follows, may have to wait
			go ss.writeLoop(wc, append([]outMsg(nil), q...), given)
			return
		}
		ss.srv.countOutAt(q, clk.now)
		ss.mu.Lock()
		if ss.ws == nil || ss.closed || len(ss.queue) == 0 {
			ss.writing = false
			ss.mu.Unlock()
			return
		}
		wc, given = ss.ws, ss.given
		q = ss.takeLocked()
		ss.mu.Unlock()
	}
}

// writeFailed puts q, which a failed write took, back in front of the
// queue, so that a later connection (or a saved session) starts from it,
// and closes the socket.
func (ss *session) writeFailed(wc *wsConn, q []outMsg, given uint64) {
	ss.mu.Lock()
	ss.queue = append(append([]outMsg(nil), q...), ss.queue...)
	ss.given = given
	ss.writing = false
	ss.mu.Unlock()
	wc.close(ws.StatusGoingAway, "write failed")
}

// writeLoop writes what the session has queued, one frame per round, and
// ends when the queue is empty. A failed write puts the messages back, so
// that a later connection (or a saved session) starts from them. It is
// started when the socket may make a writer wait; when writeNow left part
// of a frame unwritten, sent are its messages and given the session's
// given before them: the rest goes out first.
func (ss *session) writeLoop(wc *wsConn, sent []outMsg, given uint64) {
	if sent != nil {
		if err := wc.sock.flush(); err != nil {
			ss.writeFailed(wc, sent, given)
			return
		}
		ss.srv.countOut(sent)
	}
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

		if d := ss.srv.cfg.Faults.Delay; d > 0 {
			time.Sleep(d) // a test-only fault (fault.go): a slow node
		}
		if err := wc.writeQueue(q); err != nil {
			ss.writeFailed(wc, q, given)
			return
		}
		ss.srv.countOut(q)
	}
}

// countOut records deliveries in the metrics.
func (s *Server) countOut(q []outMsg) { s.countOutAt(q, s.cfg.Now().UnixNano()) }

// countOutAt records deliveries written at now (unix nanos).
func (s *Server) countOutAt(q []outMsg, now int64) {
	n := 0
	for _, m := range q {
		if m.seq == 0 {
			continue
		}
		n++
		s.met.latency.Observe(float64(now-m.published) / 1e9)
	}
	if n > 0 {
		s.met.messagesOut.Add(float64(n))
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
	return wc.sock.writeTextFunc(frameLen(q), func(b []byte) []byte { return appendFrame(b, q) })
}

// writeQueueNow is writeQueue without blocking (sockWriter.tryWriteTextFunc),
// at the time now. A message waiting alone goes out from the frame built
// for all its subscribers (outMsg.alone).
func (wc *wsConn) writeQueueNow(q []outMsg, now time.Time) (pending, ok bool, err error) {
	if len(q) == 1 && q[0].alone != nil {
		return wc.sock.tryWriteFrame(*q[0].alone, now)
	}
	return wc.sock.tryWriteTextFunc(frameLen(q), func(b []byte) []byte { return appendFrame(b, q) }, now)
}

func (wc *wsConn) writeReplies(rs []*bayeux.Message) {
	b, err := json.Marshal(rs)
	if err != nil {
		return
	}
	wc.write(b)
}

// write sends one text frame.
func (wc *wsConn) write(b []byte) error { return wc.sock.writeText(b) }
