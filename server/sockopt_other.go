//go:build !unix

package server

// setSockSndBuf leaves the send buffer alone where SO_SNDBUF is not set
// through the unix socket calls.
func setSockSndBuf(fd uintptr, size int) error { return nil }
