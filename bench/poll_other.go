//go:build !linux

package bench

import "context"

// startReaders reads each session from its own goroutine where epoll is
// not available.
func startReaders(conns []*genConn, st *genStats) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	for _, g := range conns {
		if g != nil {
			go g.readLoop(ctx, st)
		}
	}
	return cancel, nil
}
