package server

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// onlyWS waits for the node's only websocket and returns it.
func onlyWS(t testing.TB, s *Server) *wsConn {
	t.Helper()
	var wc *wsConn
	waitUntil(t, "the websocket", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		for c := range s.wsConns {
			wc = c
		}
		return len(s.wsConns) == 1
	})
	return wc
}

// sockConn is a net.Conn on wc's socket, for tests that write to it or
// read its options directly: the socket's own net.Conn, or one on a
// duplicate of the node's descriptor (closed at the test's end) when the
// socket is on raw I/O.
func sockConn(tb testing.TB, wc *wsConn) net.Conn {
	tb.Helper()
	if nc := wc.sock.nc; nc != nil {
		return nc.conn
	}
	fd, err := syscall.Dup(int(wc.fd))
	if err != nil {
		tb.Fatalf("dup websocket descriptor: %v", err)
	}
	f := os.NewFile(uintptr(fd), "websocket")
	// FileConn leaves the socket non-blocking, as the node needs it (the
	// flag is shared by every descriptor of the socket)
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		tb.Fatalf("websocket descriptor as net.Conn: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
