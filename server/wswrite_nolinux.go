//go:build unix && !linux

package server

import "syscall"

// writeNoBlock writes p to the non-blocking socket fd.
func writeNoBlock(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
