//go:build linux

package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// fcntlGet is fcntl(fd, cmd) for a getter.
func fcntlGet(fd int, cmd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// rawClosed reports whether the node closed wc's descriptor and forgot it
// in the poller, and no longer counts it open.
func rawClosed(s *Server, wc *wsConn) bool {
	wc.sock.mu.Lock()
	closed := wc.sock.closed
	wc.sock.mu.Unlock()
	wc.closeMu.Lock()
	forgotten := wc.unpolled && !wc.armed
	wc.closeMu.Unlock()
	s.mu.RLock()
	open := s.wsOpen
	s.mu.RUnlock()
	return closed && forgotten && open == 0
}

// waitLong polls cond for up to 30 s: for what takes a write timeout or
// two on a loaded machine. It bounds a hang; it times nothing.
func waitLong(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// rawConnected opens a websocket by hand whose session is connected (no
// handshake deadline left on it) and parked.
func rawConnected(t *testing.T, n *node) (*rawWS, *wsConn) {
	t.Helper()
	r := dialRaw(t, n, nil)
	r.send(clientFrame(finBit|op(ws.OpText), []byte(rawHandshake)))
	id := r.expectJSON()[0]["clientId"].(string)
	r.send(clientFrame(finBit|op(ws.OpText), []byte(`[{"channel":"/meta/connect","clientId":"`+id+`","connectionType":"websocket","advice":{"timeout":0}}]`)))
	if rs := r.expectJSON(); rs[0]["successful"] != true {
		t.Fatalf("connect: %v", rs)
	}
	wc := onlyWS(t, n.srv)
	waitParked(t, n.srv, 1)
	return r, wc
}

// TestRawSocket: on Linux an upgraded websocket is the node's own
// descriptor, not a net.Conn: non-blocking, close-on-exec, the client's
// socket; frames go both ways on it, and the closing handshake ends with
// the descriptor closed (the client sees the TCP close, so no duplicate
// is left open) and forgotten by the poller.
func TestRawSocket(t *testing.T) {
	n := startNode(t, nil)
	if n.srv.poller == nil {
		t.Fatal("no websocket poller on Linux")
	}
	r, wc := rawConnected(t, n)
	if !wc.rawIO() || wc.sock.nc != nil {
		t.Fatal("the websocket is still a net.Conn")
	}
	fd := int(wc.fd)
	if fl, err := fcntlGet(fd, syscall.F_GETFL); err != nil || fl&syscall.O_NONBLOCK == 0 {
		t.Fatalf("descriptor flags %#x (%v), want O_NONBLOCK", fl, err)
	}
	if fl, err := fcntlGet(fd, syscall.F_GETFD); err != nil || fl&syscall.FD_CLOEXEC == 0 {
		t.Fatalf("descriptor flags %#x (%v), want FD_CLOEXEC", fl, err)
	}
	sa, err := syscall.Getpeername(fd)
	if err != nil {
		t.Fatal(err)
	}
	if in4, ok := sa.(*syscall.SockaddrInet4); !ok || in4.Port != r.c.LocalAddr().(*net.TCPAddr).Port {
		t.Fatalf("descriptor's peer %+v, want the client at %v", sa, r.c.LocalAddr())
	}
	// a ping wakes the parked socket; the pong goes out on the descriptor
	r.send(clientFrame(finBit|op(ws.OpPing), []byte("raw")))
	if p := r.expect(ws.OpPong); string(p) != "raw" {
		t.Fatalf("pong %q", p)
	}
	waitParked(t, n.srv, 1)
	r.send(clientFrame(finBit|op(ws.OpClose), closeBody(1000, "")))
	r.expectClose(ws.StatusNormalClosure)
	r.expectTCPClose(closeWait / 2)
	waitUntil(t, "the descriptor closed", func() bool { return rawClosed(n.srv, wc) })
}

// TestRawPeerGoneWhileParked: a client that vanishes while its socket is
// parked (a FIN, or a reset) is seen by the poller (EPOLLRDHUP, EPOLLHUP)
// and the node closes the socket; nothing else would (the session is
// connected, so no handshake deadline is left).
func TestRawPeerGoneWhileParked(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.Timeout = time.Hour })
			r, wc := rawConnected(t, n)
			if reset {
				if err := r.c.(*net.TCPConn).SetLinger(0); err != nil {
					t.Fatal(err)
				}
			}
			r.c.Close()
			waitUntil(t, "the node to close the socket", func() bool { return rawClosed(n.srv, wc) })
			if got := n.srv.Status().Connections; got != 0 {
				t.Fatalf("%d connections after the peer left", got)
			}
		})
	}
}

// TestRawCloseWhileReadingMidFrame: a close asked for while the owner
// waits in the poller for the rest of a frame (a client that stalls part
// way) wakes the owner, which closes the socket: the client gets the
// close frame and the TCP close, and the descriptor is closed.
func TestRawCloseWhileReadingMidFrame(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Timeout = time.Hour })
	r, wc := rawConnected(t, n)
	r.send(clientFrame(finBit|op(ws.OpText), []byte(rawHandshake))[:3])
	waitUntil(t, "the owner waiting for the rest of the frame", func() bool {
		wc.closeMu.Lock()
		defer wc.closeMu.Unlock()
		return wc.wait != nil && wc.wait.r != nil
	})
	wc.close(wsStatusGoingAway, "test")
	r.expectClose(wsStatusGoingAway)
	r.expectTCPClose(closeWait)
	waitUntil(t, "the descriptor closed", func() bool { return rawClosed(n.srv, wc) })
}

// fillable configures a node for fullSubscriber: sessions that live, a
// queue that takes what it sends, and a small send buffer.
func fillable(c *Config) {
	c.Timeout, c.QueueLimit, c.WSSendBuffer = time.Hour, 10_000, 4096
}

// fullSubscriber opens a subscriber that reads nothing and fills its
// socket until a writer waits for room in the poller; it returns the
// socket, its websocket, and how many deliveries were sent.
func fullSubscriber(t *testing.T, n *node, text string) (net.Conn, *wsConn, uint64) {
	t.Helper()
	c, ss := rawSubscriber(t, n, "/a")
	// small enough to fill with what follows (a 4 KiB one makes a slow
	// reader of the client: its window opens in steps of 0.6 s)
	if err := c.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	wc := onlyWS(t, n.srv)
	const total = 400
	for seq := uint64(1); seq <= total; seq++ {
		ss.deliver(outMsg{seq: seq, published: 1, b: stampSeq([]byte(fmt.Sprintf(`{"channel":"/a","data":%q}`, text)), seq)})
	}
	waitUntil(t, "a writer waiting for room", func() bool {
		wc.closeMu.Lock()
		defer wc.closeMu.Unlock()
		return wc.wait != nil && wc.wait.w != nil
	})
	return c, wc, total
}

// TestRawWriteWaitsForRoom: a write the socket cannot take waits for
// EPOLLOUT in the poller, and goes on once the client reads: every
// delivery arrives whole and in order. Meanwhile the owner waits for the
// rest of a frame on the same descriptor (both events armed at once), and
// gets it.
func TestRawWriteWaitsForRoom(t *testing.T) {
	n := startNode(t, fillable)
	text := strings.Repeat("w", 1000)
	c, wc, total := fullSubscriber(t, n, text)
	pong := clientFrame(finBit|op(ws.OpPong), []byte("half"))
	if _, err := c.Write(pong[:3]); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the owner waiting for the rest of a frame", func() bool {
		wc.closeMu.Lock()
		defer wc.closeMu.Unlock()
		return wc.wait != nil && wc.wait.r != nil && wc.wait.w != nil
	})
	if _, err := c.Write(pong[3:]); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the owner to read the frame and park", func() bool {
		wc.closeMu.Lock()
		defer wc.closeMu.Unlock()
		return (wc.wait == nil || wc.wait.r == nil) && wc.state.Load() == wsParked
	})
	readDeliveries(t, c, total, text)
}

// TestRawCloseDuringBlockedWrite: closing a socket whose writer waits for
// room (the node shutting down) waits for that writer's deadline, sends
// what it can, and closes the descriptor once; the client sees the TCP
// connection end, and the poller stops after the last socket.
func TestRawCloseDuringBlockedWrite(t *testing.T) {
	n := startNode(t, func(c *Config) {
		fillable(c)
		c.WriteTimeout = 500 * time.Millisecond
	})
	c, wc, _ := fullSubscriber(t, n, strings.Repeat("c", 1000))
	n.srv.Close()
	waitLong(t, "the descriptor closed", func() bool { return rawClosed(n.srv, wc) })
	waitLong(t, "the poller stopped", n.srv.poller.stopped.Load)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the client's socket did not end: %v", err)
	}
}

// TestRawCloseOnce: the descriptor is closed once; a second close, and
// writes after it, leave a descriptor that reuses its number alone.
func TestRawCloseOnce(t *testing.T) {
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(sp[1])
	wc := &wsConn{fd: int32(sp[0])}
	wc.sock.initRaw(wc, time.Second)
	if err := wc.sock.close(); err != nil {
		t.Fatal(err)
	}
	// the lowest free number: the one just closed, unless another test's
	// goroutine took it
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := wc.sock.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := wc.sock.writeText([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if _, ok, err := wc.sock.tryWriteFrame([]byte("late"), time.Now()); !ok || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("non-blocking write after close: ok %v, %v; want net.ErrClosed", ok, err)
	}
	if _, err := fcntlGet(int(f.Fd()), syscall.F_GETFD); err != nil {
		t.Fatalf("a descriptor opened after the close was closed too (number %d, the socket's %d): %v", f.Fd(), sp[0], err)
	}
}

// TestPollerStaleEvents: an event for a socket the poller forgot, or for
// the descriptor's number now another socket's, finds nothing and gives
// no socket an owner.
func TestPollerStaleEvents(t *testing.T) {
	p, err := newWSPoller(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	pair := func() [2]int {
		sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return [2]int{sp[0], sp[1]}
	}
	// park registers a parked wc on fd; no bytes ever arrive on it, so
	// the poller reports nothing of its own.
	park := func(fd int) *wsConn {
		wc := &wsConn{fd: int32(fd)}
		wc.sock.initRaw(wc, time.Second)
		wc.state.Store(wsParked)
		wc.closeMu.Lock()
		err := p.arm(wc)
		wc.closeMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		return wc
	}
	a := pair()
	defer syscall.Close(a[1])
	wa := park(a[0])
	evA := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(a[0]), Pad: int32(wa.gen)}
	if got := p.lookup(evA); got != wa {
		t.Fatalf("event for a registered socket found %p, want %p", got, wa)
	}
	p.forget(wa)
	if err := wa.sock.close(); err != nil {
		t.Fatal(err)
	}
	if got := p.lookup(evA); got != nil {
		t.Fatal("event for a forgotten socket found it")
	}
	// a report looked up before the forget, handled after it: wa gets
	// no owner (its server is nil: an owner would crash the test)
	wa.pollReady(p, syscall.EPOLLIN)
	if wa.state.Load() != wsParked {
		t.Fatal("a forgotten socket was given an owner")
	}
	// another socket on the same number (the lowest free one: often
	// there already)
	b := pair()
	defer syscall.Close(b[1])
	if b[0] != a[0] {
		if err := syscall.Dup3(b[0], a[0], syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		syscall.Close(b[0])
	}
	wb := park(a[0])
	defer p.forget(wb)
	if wb.gen == wa.gen {
		t.Fatalf("generation %d reused", wb.gen)
	}
	if got := p.lookup(evA); got != nil {
		t.Fatal("a stale event found the socket that reuses its descriptor")
	}
	if got := p.lookup(syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(a[0]), Pad: int32(wb.gen)}); got != wb {
		t.Fatalf("event for the new socket found %p, want %p", got, wb)
	}
}
