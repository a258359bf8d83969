//go:build unix

package server

import (
	"fmt"
	"syscall"
)

// setSockSndBuf sets SO_SNDBUF on a socket descriptor.
func setSockSndBuf(fd uintptr, size int) error {
	if err := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, size); err != nil {
		return fmt.Errorf("setsockopt SO_SNDBUF %d: %w", size, err)
	}
	return nil
}
