//go:build unix

package localcloud

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// copyReady copies from src to dst until src ends. It waits for src to
// be readable holding no buffer (the runtime's poller, through the
// connection's RawConn), then reads what is there into a pooled buffer
// and writes it before returning the buffer: an idle websocket costs the
// load balancer node no buffer at all. A src without a descriptor is
// copied with a pooled buffer held throughout.
func copyReady(dst io.Writer, src net.Conn) error {
	sc, ok := src.(syscall.Conn)
	if !ok {
		return copyPooled(dst, src)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return copyPooled(dst, src)
	}
	for {
		var (
			buf  *[]byte
			n    int
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			b := copyBufs.Get().(*[]byte)
			for {
				n, rerr = syscall.Read(int(fd), *b)
				if !errors.Is(rerr, syscall.EINTR) {
					break
				}
			}
			if errors.Is(rerr, syscall.EAGAIN) {
				copyBufs.Put(b)
				return false // wait for the descriptor, holding nothing
			}
			buf = b
			return true
		})
		if err != nil {
			if buf != nil {
				copyBufs.Put(buf)
			}
			return err
		}
		if rerr != nil || n <= 0 {
			copyBufs.Put(buf)
			if rerr != nil {
				return rerr
			}
			return io.EOF
		}
		_, werr := dst.Write((*buf)[:n])
		copyBufs.Put(buf)
		if werr != nil {
			return werr
		}
	}
}
