//go:build unix

package server

import "syscall"

// canWriteRaw: sockets here take non-blocking writes (writeFD).
const canWriteRaw = true

// writeFD writes fb.src from off on, without blocking: it stops when the
// socket's buffer is full (EAGAIN, no error) or a write fails (errno).
// It always reports done, so that the runtime never waits for the socket.
func (fb *frameBuf) writeFD(fd uintptr) bool {
	for fb.off < len(fb.src) {
		n, err := writeNoBlock(fd, fb.src[fb.off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err != syscall.EAGAIN {
				fb.errno = err
			}
			return true
		}
		if n <= 0 {
			return true
		}
		fb.off += n
	}
	return true
}
