//go:build !unix

package localcloud

import (
	"io"
	"net"
)

// copyReady copies src to dst with a pooled buffer (no descriptor
// readiness to wait on here).
func copyReady(dst io.Writer, src net.Conn) error { return copyPooled(dst, src) }
