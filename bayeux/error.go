package bayeux

import (
	"fmt"
	"strconv"
	"strings"
)

// Error codes as Faye defines them (src/protocol/error.js); clients show the
// code and message, and some branch on 401.
const (
	CodeVersionMismatch  = 300
	CodeConntypeMismatch = 301
	CodeExtMismatch      = 302
	CodeBadRequest       = 400
	CodeClientUnknown    = 401
	CodeParameterMissing = 402
	CodeChannelForbidden = 403
	CodeChannelUnknown   = 404
	CodeChannelInvalid   = 405
	CodeExtUnknown       = 406
	CodePublishFailed    = 407
	CodeServerError      = 500
)

// Error is a Bayeux error as carried in a message's error field:
// "code:arg1,arg2:message", e.g. "403:/foo/bar:Subscription denied".
type Error struct {
	Code    int
	Args    []string
	Message string
}

// NewError builds an Error.
func NewError(code int, message string, args ...string) *Error {
	return &Error{Code: code, Args: args, Message: message}
}

// Error renders the wire form.
func (e *Error) Error() string {
	return fmt.Sprintf("%d:%s:%s", e.Code, strings.Join(e.Args, ","), e.Message)
}

// ParseError parses the wire form back. It returns false when s is not of
// the form "code:args:message".
func ParseError(s string) (*Error, bool) {
	code, rest, ok := strings.Cut(s, ":")
	if !ok {
		return nil, false
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		return nil, false
	}
	args, msg, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, false
	}
	e := &Error{Code: n, Message: msg}
	if args != "" {
		e.Args = strings.Split(args, ",")
	}
	return e, true
}

// Common errors, worded as Faye words them.
func ErrClientUnknown(clientID string) *Error {
	return NewError(CodeClientUnknown, "Unknown client", clientID)
}
func ErrParameterMissing(names ...string) *Error {
	return NewError(CodeParameterMissing, "Missing required parameter", names...)
}
func ErrChannelForbidden(ch string) *Error {
	return NewError(CodeChannelForbidden, "Forbidden channel", ch)
}
func ErrChannelInvalid(ch string) *Error {
	return NewError(CodeChannelInvalid, "Invalid channel", ch)
}
func ErrChannelUnknown(ch string) *Error {
	return NewError(CodeChannelUnknown, "Unknown channel", ch)
}
func ErrConntypeMismatch(types ...string) *Error {
	return NewError(CodeConntypeMismatch, "Connection types not supported", types...)
}
func ErrVersionMismatch(v string) *Error {
	return NewError(CodeVersionMismatch, "Version mismatch", v)
}
func ErrBadRequest(why string) *Error { return NewError(CodeBadRequest, why) }
func ErrServer(why string) *Error     { return NewError(CodeServerError, why) }
