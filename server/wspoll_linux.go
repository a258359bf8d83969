//go:build linux

package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// wsPoller watches websockets with an epoll set of its own: parked ones,
// so that an idle socket needs no goroutine, and, for a socket on the
// node's own descriptor (rawio_linux.go), its owner waiting for bytes and
// a writer waiting for room. Each socket is registered one-shot and
// level-triggered, for what is awaited at the time (awaitedLocked): an
// event disarms it until it is re-armed (by the report's handler for
// what is still awaited, by its owner when it parks, by a reader or
// writer when it waits), and re-arming a socket that is already ready
// fires at once, so no arrival between a last read and the arming is
// missed. A report can be stale (a descriptor closed and reused: gen tells
// them apart; or an event for what was awaited before): the handler only
// signals, and whoever it wakes tries again.
//
// The poller's goroutine does not block in epoll_wait: the epoll
// descriptor is itself pollable, so it waits in Go's own netpoller like
// any socket, and closing the poller wakes it.
type wsPoller struct {
	epfd int
	file *os.File
	log  *slog.Logger

	mu sync.Mutex
	// conns are the parked or once-parked sockets, indexed by descriptor:
	// descriptors are small and dense, and a slice costs a socket 8
	// bytes where a map cost about 30.
	conns []*wsConn
	gen   uint32

	stopped atomic.Bool // run has ended
}

// newWSPoller starts a poller; a nil poller (with a nil error) means the
// platform has none.
func newWSPoller(log *slog.Logger) (*wsPoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("websocket poller: epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("websocket poller: set non-blocking: %w", err)
	}
	p := &wsPoller{epfd: epfd, file: os.NewFile(uintptr(epfd), "websocket-poller"), log: log}
	rc, err := p.file.SyscallConn()
	if err != nil {
		p.file.Close()
		return nil, fmt.Errorf("websocket poller: %w", err)
	}
	go p.run(rc)
	return p, nil
}

// ctlLocked registers (first time) or re-arms wc for the events it
// awaits now (awaitedLocked), one-shot: nothing when it awaits none.
// wc.closeMu is held: the events awaited and the arming agree.
func (p *wsPoller) ctlLocked(wc *wsConn) error {
	if wc.unpolled {
		return net.ErrClosed
	}
	events := wc.awaitedLocked()
	if events == 0 {
		return nil
	}
	events |= syscall.EPOLLONESHOT
	if wc.armed {
		ev := syscall.EpollEvent{Events: events, Fd: wc.fd, Pad: int32(wc.gen)}
		if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(wc.fd), &ev); err != nil {
			return fmt.Errorf("websocket poller: re-arm: %w", err)
		}
		return nil
	}
	fd := int(wc.fd)
	if nc := wc.sock.nc; nc != nil {
		// a net.Conn: its descriptor, the runtime's
		sc, ok := nc.conn.(syscall.Conn)
		if !ok {
			return errors.New("websocket poller: connection has no descriptor")
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return fmt.Errorf("websocket poller: %w", err)
		}
		fd = -1
		if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
			return fmt.Errorf("websocket poller: descriptor: %v", err)
		}
	}
	// the entry is in place before the socket can fire, and the table's
	// lock orders these writes before the poller's reads.
	p.mu.Lock()
	p.gen++
	if wc.sock.nc != nil {
		// a raw socket's fd is set once, before it is shared: writers
		// read it without this lock
		wc.fd = int32(fd)
	}
	wc.gen, wc.armed = p.gen, true
	if fd >= len(p.conns) {
		p.conns = slices.Grow(p.conns, fd+1-len(p.conns))[:fd+1]
	}
	p.conns[fd] = wc
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: events, Fd: wc.fd, Pad: int32(wc.gen)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		p.conns[wc.fd] = nil
		wc.armed = false
		p.mu.Unlock()
		return fmt.Errorf("websocket poller: register: %w", err)
	}
	return nil
}

// arm hands the parked wc to the poller. Only wc's owner calls it, with
// wc.closeMu held.
func (p *wsPoller) arm(wc *wsConn) error { return p.ctlLocked(wc) }

// forget removes wc before its socket is closed; it is never armed
// again. Only wc's owner calls it, when no writer waits (its close frame
// is out).
func (p *wsPoller) forget(wc *wsConn) {
	wc.closeMu.Lock()
	defer wc.closeMu.Unlock()
	wc.unpolled = true
	wc.wakeWaitersLocked()
	if !wc.armed {
		return
	}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(wc.fd), nil); err != nil {
		p.log.Debug("websocket poller: unregister", "err", err)
	}
	p.mu.Lock()
	if p.conns[wc.fd] == wc {
		p.conns[wc.fd] = nil
	}
	wc.armed = false
	p.mu.Unlock()
}

// run hands every ready socket to an owner until the poller is closed.
func (p *wsPoller) run(rc syscall.RawConn) {
	events := make([]syscall.EpollEvent, 256)
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr == syscall.EINTR {
				n, werr = 0, nil
			}
			return werr != nil || n > 0 // false: wait until the set is readable
		})
		if err != nil {
			p.stop()
			return // closed
		}
		if werr != nil {
			p.log.Error("websocket poller stopped: parked sockets are served no more", "err", werr)
			p.stop()
			return
		}
		for _, ev := range events[:n] {
			if wc := p.lookup(ev); wc != nil {
				wc.pollReady(p, ev.Events)
			}
		}
	}
}

// lookup is the socket an event is for: none when the event is stale,
// for a socket forgotten since, or for one whose descriptor is now
// another socket's (its generation differs).
func (p *wsPoller) lookup(ev syscall.EpollEvent) *wsConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var wc *wsConn
	if ev.Fd >= 0 && int(ev.Fd) < len(p.conns) {
		wc = p.conns[ev.Fd]
	}
	if wc != nil && wc.gen != uint32(ev.Pad) {
		wc = nil
	}
	return wc
}

// stop marks the poller stopped and wakes whatever waits on a socket, so
// that nothing waits for events that will not come.
func (p *wsPoller) stop() {
	p.stopped.Store(true)
	p.mu.Lock()
	conns := slices.Clone(p.conns)
	p.mu.Unlock()
	for _, wc := range conns {
		if wc != nil {
			wc.closeMu.Lock()
			wc.wakeWaitersLocked()
			wc.closeMu.Unlock()
		}
	}
}

// close stops the poller; sockets still registered are the server's to
// close.
func (p *wsPoller) close() { p.file.Close() }
