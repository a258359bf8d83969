// Package bayeux holds the Bayeux 1.0 protocol as data: messages, channel
// names, wildcard matching, advice and error strings. It does no I/O, so the
// server, the client and the probe all agree on one definition of the wire.
package bayeux

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the Bayeux protocol version this project speaks.
const Version = "1.0"

// Meta channels.
const (
	ChannelHandshake   = "/meta/handshake"
	ChannelConnect     = "/meta/connect"
	ChannelSubscribe   = "/meta/subscribe"
	ChannelUnsubscribe = "/meta/unsubscribe"
	ChannelDisconnect  = "/meta/disconnect"
)

// Connection types as advertised in a handshake.
const (
	ConnTypeWebSocket   = "websocket"
	ConnTypeLongPolling = "long-polling"
	ConnTypeCallback    = "callback-polling"
)

// Reconnect advice values.
const (
	ReconnectRetry     = "retry"
	ReconnectHandshake = "handshake"
	ReconnectNone      = "none"
)

// Advice tells a client how to behave after a response. Interval and Timeout
// are milliseconds, as on the wire.
type Advice struct {
	Reconnect string `json:"reconnect,omitempty"`
	Interval  *int64 `json:"interval,omitempty"`
	Timeout   *int64 `json:"timeout,omitempty"`
}

// Message is one Bayeux message. Fields that a message type does not use are
// left zero and omitted on the wire. Data and Ext stay raw so that a server
// can forward a published message without decoding its payload.
type Message struct {
	Channel                  string          `json:"channel"`
	ID                       ID              `json:"id,omitempty"`
	ClientID                 string          `json:"clientId,omitempty"`
	Data                     json.RawMessage `json:"data,omitempty"`
	Successful               *bool           `json:"successful,omitempty"`
	Error                    string          `json:"error,omitempty"`
	Advice                   *Advice         `json:"advice,omitempty"`
	Ext                      json.RawMessage `json:"ext,omitempty"`
	Version                  string          `json:"version,omitempty"`
	MinimumVersion           string          `json:"minimumVersion,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	ConnectionType           string          `json:"connectionType,omitempty"`
	Subscription             Subscription    `json:"subscription,omitempty"`
	Timestamp                string          `json:"timestamp,omitempty"`
}

// ID is a message id. The specification makes it a string and faye, halley
// and CometD send strings, but Faye's server echoes whatever JSON it got, so
// a client that numbers its messages with JSON numbers must not have its
// whole request refused: a number is taken as its decimal text (and echoed
// as a string).
type ID string

// UnmarshalJSON accepts a JSON string or number.
func (id *ID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*id = ID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("id must be a string or a number")
	}
	*id = ID(n.String())
	return nil
}

// IsMeta reports whether m is on a /meta/ channel.
func (m *Message) IsMeta() bool { return IsMeta(m.Channel) }

// Subscription is the subscription field, which clients send either as one
// channel name or as an array of them. It marshals back in the shape of its
// length: one name as a string, several as an array.
type Subscription []string

// UnmarshalJSON accepts a string or an array of strings.
func (s *Subscription) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = Subscription{one}
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*s = nil
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("subscription must be a channel name or an array of channel names")
	}
	*s = many
	return nil
}

// MarshalJSON writes one name as a string and several as an array.
func (s Subscription) MarshalJSON() ([]byte, error) {
	if len(s) == 1 {
		return json.Marshal(s[0])
	}
	return json.Marshal([]string(s))
}

// ErrEmptyBatch is returned for a request that holds no message at all.
var ErrEmptyBatch = errors.New("no bayeux message in request")

// DecodeMessages decodes a request body: one message object or a JSON array
// of them. It rejects anything else with an error that says what was wrong,
// and never panics on any input (see FuzzDecodeMessages). An empty array is
// valid and yields no messages (halley and faye ping with `[]`).
func DecodeMessages(b []byte) ([]Message, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, ErrEmptyBatch
	}
	switch b[0] {
	case '{':
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("decode bayeux message: %w", err)
		}
		return []Message{m}, nil
	case '[':
		var ms []Message
		if err := json.Unmarshal(b, &ms); err != nil {
			return nil, fmt.Errorf("decode bayeux message batch: %w", err)
		}
		return ms, nil
	default:
		return nil, errors.New("decode bayeux messages: body must be a JSON object or array")
	}
}

// True and False are addresses for Message.Successful.
var (
	trueVal  = true
	falseVal = false
	True     = &trueVal
	False    = &falseVal
)

// Millis returns a pointer to ms, for Advice fields.
func Millis(ms int64) *int64 { return &ms }
