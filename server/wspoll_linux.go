//go:build linux

package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"
)

// wsPoller watches parked websockets with an epoll set of its own, so
// that an idle socket needs no goroutine. Each socket is registered
// one-shot and level-triggered: an event disarms it until its owner parks
// it again, and re-arming a socket that already has bytes waiting fires at
// once, so no arrival between the owner's last read and its parking is
// missed.
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

// pollEvents are what wakes a parked socket: bytes, or the peer gone.
const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// arm registers (first time) or re-arms wc. Only wc's owner calls it.
func (p *wsPoller) arm(wc *wsConn) error {
	if wc.armed {
		ev := syscall.EpollEvent{Events: pollEvents, Fd: wc.fd, Pad: int32(wc.gen)}
		if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(wc.fd), &ev); err != nil {
			return fmt.Errorf("websocket poller: re-arm: %w", err)
		}
		return nil
	}
	sc, ok := wc.conn().(syscall.Conn)
	if !ok {
		return errors.New("websocket poller: connection has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("websocket poller: %w", err)
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return fmt.Errorf("websocket poller: descriptor: %v", err)
	}
	// the entry is in place before the socket can fire, and the map's
	// lock orders these writes before the poller's reads.
	p.mu.Lock()
	p.gen++
	wc.fd, wc.gen, wc.armed = int32(fd), p.gen, true
	if fd >= len(p.conns) {
		p.conns = slices.Grow(p.conns, fd+1-len(p.conns))[:fd+1]
	}
	p.conns[fd] = wc
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: pollEvents, Fd: wc.fd, Pad: int32(wc.gen)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		p.conns[wc.fd] = nil
		wc.armed = false
		p.mu.Unlock()
		return fmt.Errorf("websocket poller: register: %w", err)
	}
	return nil
}

// forget removes wc before its socket is closed. Only wc's owner calls it.
func (p *wsPoller) forget(wc *wsConn) {
	if !wc.armed {
		return
	}
	syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(wc.fd), nil)
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
			return // closed
		}
		if werr != nil {
			p.log.Error("websocket poller stopped: parked sockets are served no more", "err", werr)
			return
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			var wc *wsConn
			if ev.Fd >= 0 && int(ev.Fd) < len(p.conns) {
				wc = p.conns[ev.Fd]
			}
			if wc != nil && wc.gen != uint32(ev.Pad) {
				wc = nil // a stale event for a descriptor now reused
			}
			p.mu.Unlock()
			if wc != nil {
				wc.wake()
			}
		}
	}
}

// close stops the poller; sockets still registered are the server's to
// close.
func (p *wsPoller) close() { p.file.Close() }
