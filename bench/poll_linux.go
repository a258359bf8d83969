//go:build linux

package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// poller reads every session from one goroutine with an edge-triggered
// epoll set. With a goroutine per connection each delivery costs a
// goroutine wake-up and a scheduler pass besides its read; here a batch of
// ready sockets costs one epoll_wait, and each socket one read per wake,
// which keeps the generator well below the server it measures.
type poller struct {
	epfd  int
	conns []*pconn // by file descriptor
	st    *genStats
	stop  atomic.Bool
	done  chan struct{}
}

// pconn is one session's read state.
type pconn struct {
	g       *genConn
	fd      int
	pending []byte // bytes read but not yet a whole frame
	msg     []byte // a fragmented message being assembled
	dead    bool
}

// startReaders starts reading conns (nil entries are skipped) until the
// returned stop function is called.
func startReaders(conns []*genConn, st *genStats) (stop func(), err error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &poller{epfd: epfd, st: st, done: make(chan struct{})}
	for _, g := range conns {
		if g == nil {
			continue
		}
		tc, ok := g.c.c.(*net.TCPConn)
		if !ok {
			syscall.Close(epfd)
			return nil, errors.New("epoll: not a TCP connection")
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			syscall.Close(epfd)
			return nil, fmt.Errorf("epoll: %w", err)
		}
		fd := -1
		_ = rc.Control(func(f uintptr) { fd = int(f) })
		pc := &pconn{g: g, fd: fd}
		// Bytes the handshake's buffered reader already holds.
		if n := g.c.br.Buffered(); n > 0 {
			b, _ := g.c.br.Peek(n)
			pc.pending = append(pc.pending, b...)
		}
		for len(p.conns) <= fd {
			p.conns = append(p.conns, nil)
		}
		p.conns[fd] = pc
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | (syscall.EPOLLET & 0xffffffff), Fd: int32(fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			syscall.Close(epfd)
			return nil, fmt.Errorf("epoll add: %w", err)
		}
	}
	go p.loop()
	return func() {
		p.stop.Store(true)
		<-p.done
		syscall.Close(p.epfd)
	}, nil
}

func (p *poller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 512)
	rbuf := make([]byte, 64<<10)
	for _, pc := range p.conns {
		if pc != nil && len(pc.pending) > 0 {
			p.consume(pc, nil)
		}
	}
	for !p.stop.Load() {
		n, err := syscall.EpollWait(p.epfd, events, 100)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for i := range n {
			fd := int(events[i].Fd)
			if fd >= len(p.conns) || p.conns[fd] == nil || p.conns[fd].dead {
				continue
			}
			pc := p.conns[fd]
			// Edge-triggered: read until the socket is empty. A short read
			// means it was empty just now; data arriving later raises a
			// new edge, so the read that would only say EAGAIN is saved.
			for {
				m, err := syscall.Read(fd, rbuf)
				if m > 0 {
					p.consume(pc, rbuf[:m])
					if m < len(rbuf) || pc.dead {
						break
					}
					continue
				}
				if err == syscall.EINTR {
					continue
				}
				if err != syscall.EAGAIN {
					p.kill(pc) // EOF or a socket error
				}
				break
			}
		}
	}
}

func (p *poller) kill(pc *pconn) {
	if pc.dead {
		return
	}
	pc.dead = true
	if !p.stop.Load() {
		p.st.closed.Add(1)
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, pc.fd, nil)
}

// consume appends b to what is pending for pc and handles every whole
// frame in it.
func (p *poller) consume(pc *pconn, b []byte) {
	buf := b
	if len(pc.pending) > 0 {
		pc.pending = append(pc.pending, b...)
		buf = pc.pending
	}
	for {
		payload, op, fin, size, ok := parseFrame(buf)
		if !ok {
			break
		}
		if size < 0 {
			p.kill(pc)
			return
		}
		p.frame(pc, op, fin, payload)
		buf = buf[size:]
		if pc.dead {
			return
		}
	}
	// Keep the tail (copied: b is the shared read buffer).
	if len(buf) == 0 {
		pc.pending = pc.pending[:0]
	} else {
		pc.pending = append(pc.pending[:0], buf...)
	}
}

// parseFrame reads one frame from the start of b. ok is false when b does
// not hold a whole frame yet; size < 0 means a frame the generator refuses
// (masked by the server, or larger than maxFrame).
func parseFrame(b []byte) (payload []byte, op byte, fin bool, size int, ok bool) {
	if len(b) < 2 {
		return nil, 0, false, 0, false
	}
	fin, op = b[0]&0x80 != 0, b[0]&0x0f
	if b[1]&0x80 != 0 {
		return nil, 0, false, -1, true
	}
	n := uint64(b[1] & 0x7f)
	h := 2
	switch n {
	case 126:
		if len(b) < 4 {
			return nil, 0, false, 0, false
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return nil, 0, false, 0, false
		}
		n, h = binary.BigEndian.Uint64(b[2:10]), 10
	}
	if n > maxFrame {
		return nil, 0, false, -1, true
	}
	if uint64(len(b)-h) < n {
		return nil, 0, false, 0, false
	}
	return b[h : h+int(n)], op, fin, h + int(n), true
}

// frame handles one frame of pc.
func (p *poller) frame(pc *pconn, op byte, fin bool, payload []byte) {
	switch op {
	case 0x8:
		p.kill(pc)
		return
	case 0x9:
		if err := pc.g.c.writeFrame(0xA, payload); err != nil {
			p.kill(pc)
		}
		return
	case 0xA:
		return
	}
	if !fin || len(pc.msg) > 0 {
		pc.msg = append(pc.msg, payload...)
		if !fin {
			return
		}
		payload = pc.msg
		defer func() { pc.msg = pc.msg[:0] }()
	}
	p.st.frames.Add(1)
	if r := pc.g.w.reply(pc.g, payload); r != nil {
		pc.g.c.setDeadline(time.Now().Add(10 * time.Second))
		err := pc.g.c.writeText(r)
		pc.g.c.setDeadline(time.Time{})
		if err != nil {
			p.kill(pc)
			return
		}
	}
	if n := scanDeliveries(payload, time.Now().UnixNano(), p.st.lat.Load()); n > 0 {
		p.st.deliveries.Add(n)
	}
}
