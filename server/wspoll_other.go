//go:build !linux

package server

import (
	"errors"
	"log/slog"
)

// wsPoller is Linux's epoll; elsewhere every websocket keeps a goroutine
// that waits for its bytes.
type wsPoller struct{}

func newWSPoller(*slog.Logger) (*wsPoller, error) { return nil, nil }

func (*wsPoller) arm(*wsConn) error { return errors.New("websocket poller: not on this platform") }
func (*wsPoller) forget(*wsConn)    {}
func (*wsPoller) close()            {}
