//go:build linux

package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// A websocket on Linux leaves Go's net.Conn once it is upgraded: the node
// takes a descriptor of its own for the socket (takeFD) and closes the
// net.Conn, which frees the netFD, its addresses and the runtime's poll
// descriptor: about 1 KB of RSS a socket, measured (docs/bench.md, "Idle
// memory"). Reads and writes are then non-blocking system calls on that
// descriptor; when one would block, the reader or writer waits for the
// node's poller (wsPoller), which watches the socket only while someone
// waits or while it is parked. The descriptor is closed once, by the
// socket's owner, after the poller has forgotten it (sockWriter.close).

// takeFD moves conn's socket onto a descriptor of the node's own: a
// duplicate (close-on-exec, non-blocking, as the runtime's was), and conn
// is closed. fd is -1 when conn is left as it was (not TCP, or the
// duplicate failed, e.g. out of descriptors); err with fd >= 0 is closing
// conn's failure, after which the descriptor is still the node's.
func takeFD(conn net.Conn) (fd int, err error) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return -1, errors.New("take descriptor: not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("take descriptor: %w", err)
	}
	fd = -1
	var derr error
	if err := rc.Control(func(f uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			derr = errno
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, fmt.Errorf("take descriptor: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("take descriptor: dup: %w", derr)
	}
	// the flag is the open file's, shared with conn's descriptor, and
	// set already; set here only should the runtime ever not have.
	if fl, err := fcntlGetFlags(fd); err != nil || fl&syscall.O_NONBLOCK == 0 {
		if err := syscall.SetNonblock(fd, true); err != nil {
			syscall.Close(fd)
			return -1, fmt.Errorf("take descriptor: set non-blocking: %w", err)
		}
	}
	if err := conn.Close(); err != nil {
		return fd, fmt.Errorf("take descriptor: close net.Conn: %w", err)
	}
	return fd, nil
}

// fcntlGetFlags is fcntl(fd, F_GETFL).
func fcntlGetFlags(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// closeRaw closes a descriptor takeFD gave.
func closeRaw(fd int32) error {
	if err := syscall.Close(int(fd)); err != nil {
		return fmt.Errorf("close websocket: %w", err)
	}
	return nil
}

// readNoBlock reads from the non-blocking socket fd with a raw system
// call (see writeNoBlock). p is not empty.
func readNoBlock(fd int32, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// errPollerStopped: the poller is gone, so a socket that would block
// cannot wait.
var errPollerStopped = errors.New("websocket poller stopped")

// Read reads the owner's bytes from the socket, waiting for the poller
// when there are none (until the read deadline, setReadDeadline), or
// failing with errWouldBlock when wc.noWait is set. Only the owner reads.
func (r *rawReader) Read(p []byte) (int, error) {
	wc := (*wsConn)(r)
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := readNoBlock(wc.fd, p)
		switch {
		case err == nil && n == 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if wc.noWait {
				return 0, errWouldBlock
			}
			if err := wc.await(false, 0); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("read websocket: %w", err)
		}
	}
}

// writeRaw writes b whole to wc's descriptor, waiting for room until
// deadline (unix nanos) when the socket's buffer is full. The caller holds
// wc.sock.mu: one writer at a time.
func (wc *wsConn) writeRaw(b []byte, deadline int64) error {
	for len(b) > 0 {
		n, err := writeNoBlock(uintptr(wc.fd), b)
		switch {
		case err == nil && n > 0:
			b = b[n:]
		case err == syscall.EINTR:
		case err == nil || err == syscall.EAGAIN:
			if err := wc.await(true, deadline); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return nil
}

// rawWait is what waits on a raw socket: its owner for bytes (r), a
// writer for room (w), each on a channel the poller signals once, and the
// owner's read deadline. A socket has one only while it is needed: an
// idle socket has none.
type rawWait struct {
	r, w chan struct{}
	rdl  int64 // read deadline, unix nanos; 0: none
}

// waitLocked is wc's rawWait, made when missing. wc.closeMu is held.
func (wc *wsConn) waitLocked() *rawWait {
	if wc.wait == nil {
		wc.wait = new(rawWait)
	}
	return wc.wait
}

// tidyWaitLocked drops wc's rawWait once nothing is in it.
func (wc *wsConn) tidyWaitLocked() {
	if wt := wc.wait; wt != nil && wt.r == nil && wt.w == nil && wt.rdl == 0 {
		wc.wait = nil
	}
}

// await waits until the poller reports the socket readable (write false:
// the owner, until its read deadline) or writable (a writer, until
// deadline), or the deadline passes. It fails with os.ErrDeadlineExceeded
// once the deadline has passed; otherwise the caller tries again, since a
// report may be stale.
func (wc *wsConn) await(write bool, deadline int64) error {
	p := wc.srv.poller
	wc.closeMu.Lock()
	wt := wc.waitLocked()
	if !write {
		deadline = wt.rdl
	}
	now := time.Now().UnixNano()
	if deadline != 0 && now >= deadline {
		wc.tidyWaitLocked()
		wc.closeMu.Unlock()
		return os.ErrDeadlineExceeded
	}
	ch := make(chan struct{}, 1)
	if write {
		wt.w = ch
	} else {
		wt.r = ch
	}
	err := p.ctlLocked(wc)
	if err == nil && p.stopped.Load() {
		err = errPollerStopped
	}
	if err != nil {
		if write {
			wt.w = nil
		} else {
			wt.r = nil
		}
		wc.tidyWaitLocked()
		wc.closeMu.Unlock()
		return err
	}
	wc.closeMu.Unlock()
	if deadline == 0 {
		<-ch
	} else {
		t := time.NewTimer(time.Duration(deadline - now))
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	wc.closeMu.Lock()
	if write && wt.w == ch {
		wt.w = nil
	} else if !write && wt.r == ch {
		wt.r = nil
	}
	wc.tidyWaitLocked()
	wc.closeMu.Unlock()
	return nil
}

// setReadDeadline bounds the owner's reads; a time passed wakes an owner
// waiting for bytes (close asks for the socket that way).
func (wc *wsConn) setReadDeadline(t time.Time) {
	if wc.sock.nc != nil {
		wc.sock.nc.conn.SetReadDeadline(t)
		return
	}
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
	}
	wc.closeMu.Lock()
	defer wc.closeMu.Unlock()
	if d == 0 && wc.wait == nil {
		return
	}
	wt := wc.waitLocked()
	wt.rdl = d
	if wt.r != nil {
		wt.r <- struct{}{}
		wt.r = nil
	}
	wc.tidyWaitLocked()
}

// pollReady is the poller's report of events on wc: it signals the owner
// or writer waiting for them, or gives the parked socket an owner, and
// re-arms the socket for what is still awaited (the events are one-shot).
func (wc *wsConn) pollReady(p *wsPoller, ev uint32) {
	in := ev&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	out := ev&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	wc.closeMu.Lock()
	if !wc.armed {
		wc.closeMu.Unlock()
		return // forgotten meanwhile
	}
	if wt := wc.wait; wt != nil {
		if in && wt.r != nil {
			wt.r <- struct{}{}
			wt.r, in = nil, false
		}
		if out && wt.w != nil {
			wt.w <- struct{}{}
			wt.w = nil
		}
	}
	// moving the socket out of wsParked makes this report its new owner
	wake := in && wc.state.CompareAndSwap(wsParked, wsReading)
	if err := p.ctlLocked(wc); err != nil {
		p.log.Error("websocket poller: re-arm failed: waking what waits", "err", err)
		wc.wakeWaitersLocked()
	}
	wc.closeMu.Unlock()
	if wake {
		go wc.srv.readWS(wc, true)
	}
}

// wakeWaitersLocked signals whoever waits on wc (they try again, and see
// why they cannot wait).
func (wc *wsConn) wakeWaitersLocked() {
	if wt := wc.wait; wt != nil {
		if wt.r != nil {
			wt.r <- struct{}{}
			wt.r = nil
		}
		if wt.w != nil {
			wt.w <- struct{}{}
			wt.w = nil
		}
	}
}

// awaitedLocked is the events wc waits for: bytes (or the peer gone)
// while parked or while its owner waits, room while a writer does.
func (wc *wsConn) awaitedLocked() uint32 {
	var ev uint32
	wt := wc.wait
	if wc.state.Load() == wsParked || (wt != nil && wt.r != nil) {
		ev |= syscall.EPOLLIN | syscall.EPOLLRDHUP
	}
	if wt != nil && wt.w != nil {
		ev |= syscall.EPOLLOUT
	}
	return ev
}
