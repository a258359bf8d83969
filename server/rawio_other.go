//go:build !linux

package server

import (
	"errors"
	"net"
	"time"
)

// Off Linux every websocket stays a net.Conn: there is no poller to wait
// with, so none of these is called.

var errNoRawIO = errors.New("websocket: no raw descriptor I/O on this platform")

func takeFD(net.Conn) (int, error)             { return -1, errNoRawIO }
func closeRaw(int32) error                     { return errNoRawIO }
func (*rawReader) Read([]byte) (int, error)    { return 0, errNoRawIO }
func (*wsConn) writeRaw([]byte, int64) error   { return errNoRawIO }
func (wc *wsConn) setReadDeadline(t time.Time) { wc.sock.nc.conn.SetReadDeadline(t) }

// rawWait is Linux's (rawio_linux.go); a websocket here never has one.
type rawWait struct{}
