package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// rawConn is the generator's websocket client (RFC 6455, client side, no
// extensions). A general library sets up a reader, a context watch and
// locks for every message; at a hundred thousand frames a second on one
// core that overhead is the benchmark's ceiling. This one reads frames
// straight from a buffered socket, so frames that queue up while the
// generator is busy come in with one system call.
type rawConn struct {
	c   net.Conn
	br  *bufio.Reader
	wmu sync.Mutex
	wb  []byte
}

// errFrameTooLarge guards against a frame length no server would send.
var errFrameTooLarge = errors.New("websocket frame too large")

const maxFrame = 16 << 20

// rawDial opens a TCP connection from d and upgrades it to a websocket on
// path.
func rawDial(ctx context.Context, d *net.Dialer, addr, path string) (*rawConn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	br := bufio.NewReaderSize(c, 16<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("websocket upgrade: status %d", resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
	return &rawConn{c: c, br: br}, nil
}

// setDeadline bounds the next reads and writes (zero: none).
func (r *rawConn) setDeadline(t time.Time) { _ = r.c.SetDeadline(t) }

// readMessage returns the next text or binary message in buf (reused),
// answering pings on the way; a close frame ends it with io.EOF.
func (r *rawConn) readMessage(buf []byte) ([]byte, error) {
	buf = buf[:0]
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r.br, hdr[:2]); err != nil {
			return buf, err
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		masked := hdr[1]&0x80 != 0
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(r.br, hdr[:2]); err != nil {
				return buf, err
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(r.br, hdr[:8]); err != nil {
				return buf, err
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if n > maxFrame || uint64(len(buf))+n > maxFrame {
			return buf, errFrameTooLarge
		}
		var mask [4]byte
		if masked {
			if _, err := io.ReadFull(r.br, mask[:]); err != nil {
				return buf, err
			}
		}
		start := len(buf)
		buf = slices.Grow(buf, int(n))[:start+int(n)]
		if _, err := io.ReadFull(r.br, buf[start:]); err != nil {
			return buf[:start], err
		}
		if masked {
			for i := range buf[start:] {
				buf[start+i] ^= mask[i%4]
			}
		}
		switch op {
		case 0x8: // close
			return buf[:start], io.EOF
		case 0x9: // ping: answer with the same payload
			p := append([]byte(nil), buf[start:]...)
			buf = buf[:start]
			if err := r.writeFrame(0xA, p); err != nil {
				return buf, err
			}
			continue
		case 0xA: // pong
			buf = buf[:start]
			continue
		}
		if fin {
			return buf, nil
		}
	}
}

// writeText sends one text message.
func (r *rawConn) writeText(p []byte) error { return r.writeFrame(0x1, p) }

// writeFrame sends one final frame, masked as a client must.
func (r *rawConn) writeFrame(op byte, p []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	b := r.wb[:0]
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	for i := range b[start:] {
		b[start+i] ^= mask[i%4]
	}
	r.wb = b
	_, err := r.c.Write(b)
	return err
}

func (r *rawConn) close() { r.c.Close() }
