package nodetest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// FreeAddr picks a free loopback port below Linux's ephemeral range
// (32768+), so that no outgoing connection takes it between this check and
// a restart of a node on it (the restart scenarios stop a node and start it
// again on the same address).
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port in 20000-32000")
	return ""
}

// FreePort is FreeAddr's port, for what takes a port number.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
