//go:build linux

package server

import (
	"syscall"
	"unsafe"
)

// writeNoBlock writes p to the non-blocking socket fd with a raw system
// call. The socket never makes it wait, so the runtime need not know the
// thread is in the kernel: syscall.Write's entersyscall/exitsyscall let
// the runtime's monitor hand the processor to another thread (waking
// one) whenever a write runs long, which on a node pinned to one core is
// a thread switch the next write pays for. p is not empty.
func writeNoBlock(fd uintptr, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}
