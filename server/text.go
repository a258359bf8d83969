package server

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"wsfleet/bayeux"
)

// errNotText is why a body or a message's data is refused: it is not
// Unicode text, so it cannot be relayed in a websocket text frame (RFC 6455
// makes a client fail the connection, 1007, on invalid UTF-8) nor decoded
// the same way by every client.
var errNotText = errors.New("not valid UTF-8 text")

// checkText reports whether b, a JSON text, is Unicode text throughout:
// valid UTF-8 (RFC 8259 section 8.1), and no \u escape that stands for half
// of a surrogate pair without the other half. Such an escape is valid
// UTF-8 on the wire, but it names no character: Go decodes it to U+FFFD,
// JavaScript to a lone surrogate that its UTF-8 encoders replace, so the
// node would relay bytes that mean different things to different clients.
// The node relays a published `data` as the bytes it received, so both
// are refused where a message enters.
func checkText(b []byte) error {
	if !utf8.Valid(b) {
		return errNotText
	}
	for i := bytes.IndexByte(b, '\\'); i >= 0; {
		// b[i] is a backslash that starts an escape: JSON has none outside
		// strings, and every escape is a backslash and one character
		// (then four hex digits after a u).
		if i+1 >= len(b) {
			return nil
		}
		if b[i+1] != 'u' {
			i = nextEscape(b, i+2)
			continue
		}
		r, ok := hex4(b, i+2)
		if !ok {
			// not JSON; the decoder refuses it
			return nil
		}
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return errNotText // a low half with no high half before it
		case r >= 0xd800 && r <= 0xdbff:
			lo, ok := hex4(b, i+8)
			if i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' || !ok || lo < 0xdc00 || lo > 0xdfff {
				return errNotText // a high half not followed by a low half
			}
			i = nextEscape(b, i+12)
		default:
			i = nextEscape(b, i+6)
		}
	}
	return nil
}

// nextEscape is the index of the first backslash at or after from, or -1.
func nextEscape(b []byte, from int) int {
	if from >= len(b) {
		return -1
	}
	j := bytes.IndexByte(b[from:], '\\')
	if j < 0 {
		return -1
	}
	return from + j
}

// hex4 decodes the four hex digits at b[at:at+4].
func hex4(b []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// checkData is why the data of a publish is refused, or nil: data is
// required and must not be null (a Bayeux publish carries data; null is no
// data, and subscribers would get a message with nothing in it), and it
// must be Unicode text (checkText).
func checkData(data []byte) *bayeux.Error {
	d := bytes.TrimSpace(data)
	if len(d) == 0 || string(d) == "null" {
		return bayeux.ErrParameterMissing("data")
	}
	if checkText(d) != nil {
		return bayeux.NewError(bayeux.CodeBadRequest, "Data is not valid UTF-8 text", "data")
	}
	return nil
}

// refuseData is checkData, counting data refused for not being text.
func (s *Server) refuseData(data []byte) *bayeux.Error {
	e := checkData(data)
	if e != nil && e.Code == bayeux.CodeBadRequest {
		s.met.invalidText.Inc()
	}
	return e
}
