package server

import (
	"context"
	"time"
)

// Timer is what Config.AfterFunc returns: a *time.Timer, or a test's fake.
type Timer interface {
	// Stop prevents the function from running; false when it already ran
	// or was stopped.
	Stop() bool
	// Reset makes the function run d from now (again); false when it had
	// already run or been stopped.
	Reset(d time.Duration) bool
}

// wallAfterFunc is the default Config.AfterFunc.
func wallAfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// sleep waits d on the node's clock (Config.AfterFunc), or until ctx ends,
// when it returns ctx's error. It returns at once when d is not positive,
// whatever ctx says.
func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	done := make(chan struct{})
	t := s.cfg.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
