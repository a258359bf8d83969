package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// wire is what the generator speaks to one kind of server: how a session
// opens and subscribes, what it must answer to keep its connection, and how
// the publisher's requests look. Everything else (the websocket client, the
// epoll reader, the latency scan of "t": fields, the publisher's pacing)
// is shared, so every server is measured by the same code.
type wire interface {
	// path is the websocket endpoint.
	path() string
	// hello performs the protocol's handshake on a new websocket.
	hello(g *genConn) error
	// subscribe subscribes g to channel and waits for the server's yes.
	subscribe(g *genConn, channel string) error
	// reply returns what the session must send after receiving payload
	// (a renewed Bayeux connect, a Centrifugo pong), or nil.
	reply(g *genConn, payload []byte) []byte
	// bye is sent before a churn session closes (nil: none).
	bye(g *genConn) []byte
	// publishPath is the HTTP path of the publish API.
	publishPath() string
	// authorize sets the publish request's credentials.
	authorize(req *http.Request, token string)
	// Requests carry a batch of messages: begin, then item for each,
	// separated by commas, then end.
	beginBatch(b *bytes.Buffer)
	item(b *bytes.Buffer, channel, data string)
	endBatch(b *bytes.Buffer)
	// checkReply reports an error a 2xx answer carries in its body.
	checkReply(body []byte) error
}

// wireFor returns the protocol the generator speaks to a server kind.
func wireFor(kind string) wire {
	if kind == "centrifugo" {
		return centrifugoWire{}
	}
	return bayeuxWire{}
}

// bayeuxWire is Bayeux over websocket, for the ws node, Faye and the bare
// writer, published through their POST /publish (an array of messages,
// admin token as a bearer token).
type bayeuxWire struct{}

func (bayeuxWire) path() string { return "/bayeux" }

func (bayeuxWire) hello(g *genConn) error {
	if err := g.c.writeText([]byte(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"],"id":"1"}]`)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	for {
		b, err := g.read()
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		if i := bytes.Index(b, tokClientID); i >= 0 {
			rest := b[i+len(tokClientID):]
			j := bytes.IndexByte(rest, '"')
			if j < 0 {
				return errors.New("handshake: bad clientId")
			}
			g.id = append([]byte(nil), rest[:j]...)
			return nil
		}
	}
}

// subscribe subscribes and waits for the acknowledgement, then sends the
// first connect. They go in separate frames: Faye answers a batch only when
// every message in it is answered, and a connect is held for the timeout.
func (bayeuxWire) subscribe(g *genConn, channel string) error {
	msg := `[{"channel":"/meta/subscribe","clientId":"` + string(g.id) + `","subscription":"` + channel + `","id":"2"}]`
	if err := g.c.writeText([]byte(msg)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for {
		b, err := g.read()
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		if bytes.Contains(b, tokSubscribe) {
			if !bytes.Contains(b, tokSuccess) {
				return fmt.Errorf("subscribe refused: %.200s", b)
			}
			break
		}
	}
	if err := g.c.writeText(bayeuxConnect(g.id)); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return nil
}

// reply renews the connect whenever the server answers one.
func (bayeuxWire) reply(g *genConn, payload []byte) []byte {
	if bytes.Contains(payload, tokConnect) {
		return bayeuxConnect(g.id)
	}
	return nil
}

func (bayeuxWire) bye(g *genConn) []byte {
	return []byte(`[{"channel":"/meta/disconnect","clientId":"` + string(g.id) + `"}]`)
}

func bayeuxConnect(id []byte) []byte {
	return []byte(`[{"channel":"/meta/connect","clientId":"` + string(id) + `","connectionType":"websocket"}]`)
}

func (bayeuxWire) publishPath() string { return "/publish" }

func (bayeuxWire) authorize(req *http.Request, token string) {
	req.Header.Set("Authorization", "Bearer "+token)
}

func (bayeuxWire) beginBatch(b *bytes.Buffer) { b.WriteByte('[') }

func (bayeuxWire) item(b *bytes.Buffer, channel, data string) {
	b.WriteString(`{"channel":"`)
	b.WriteString(channel)
	b.WriteString(`","data":`)
	b.WriteString(data)
	b.WriteByte('}')
}

func (bayeuxWire) endBatch(b *bytes.Buffer) { b.WriteByte(']') }

func (bayeuxWire) checkReply([]byte) error { return nil }

// centrifugoWire is Centrifugo's client protocol (v2, JSON) over
// websocket: one command per frame, replies and pushes as JSON objects,
// several in a frame separated by newlines. The server pings with an empty
// object and expects one back. Publishing goes through its server HTTP
// API's /api/batch, up to 100 publish commands in one request with the API
// key: the same shape as the other servers' POST /publish (one request per
// hundred messages, each server's own server-side API).
type centrifugoWire struct{}

var (
	tokCfConnect = []byte(`"connect":{`)
	tokCfError   = []byte(`"error":`)
	tokCfID2     = []byte(`"id":2`)
)

func (centrifugoWire) path() string { return "/connection/websocket" }

func (centrifugoWire) hello(g *genConn) error {
	if err := g.c.writeText([]byte(`{"id":1,"connect":{"name":"wsfleet-bench"}}`)); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	for {
		b, err := g.read()
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		if bytes.Contains(b, tokCfError) {
			return fmt.Errorf("connect refused: %.200s", b)
		}
		if bytes.Contains(b, tokCfConnect) {
			return nil
		}
	}
}

func (centrifugoWire) subscribe(g *genConn, channel string) error {
	if err := g.c.writeText([]byte(`{"id":2,"subscribe":{"channel":"` + channel + `"}}`)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for {
		b, err := g.read()
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		if bytes.Contains(b, tokCfID2) {
			if bytes.Contains(b, tokCfError) {
				return fmt.Errorf("subscribe refused: %.200s", b)
			}
			return nil
		}
	}
}

// reply answers a ping (an empty object, alone or as one line of a
// batch) with a pong.
func (centrifugoWire) reply(_ *genConn, payload []byte) []byte {
	if isCentrifugoPing(payload) {
		return []byte(`{}`)
	}
	return nil
}

// isCentrifugoPing reports whether a frame holds the server's ping: a line
// that is just "{}".
func isCentrifugoPing(b []byte) bool {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if string(bytes.TrimSpace(line)) == "{}" {
			return true
		}
	}
	return false
}

func (centrifugoWire) bye(*genConn) []byte { return nil }

func (centrifugoWire) publishPath() string { return "/api/batch" }

func (centrifugoWire) authorize(req *http.Request, token string) {
	req.Header.Set("X-API-Key", token)
}

func (centrifugoWire) beginBatch(b *bytes.Buffer) { b.WriteString(`{"commands":[`) }

func (centrifugoWire) item(b *bytes.Buffer, channel, data string) {
	b.WriteString(`{"publish":{"channel":"`)
	b.WriteString(channel)
	b.WriteString(`","data":`)
	b.WriteString(data)
	b.WriteString(`}}`)
}

func (centrifugoWire) endBatch(b *bytes.Buffer) { b.WriteString(`]}`) }

// checkReply finds a failed command in a batch's replies: Centrifugo
// answers 200 and puts each command's error in its reply.
func (centrifugoWire) checkReply(body []byte) error {
	if bytes.Contains(body, tokCfError) {
		return fmt.Errorf("publish: %.200s", body)
	}
	return nil
}

// withDeadline runs f with ctx's deadline (if any) on g's socket.
func withDeadline(ctx context.Context, g *genConn, f func() error) error {
	if dl, ok := ctx.Deadline(); ok {
		g.c.setDeadline(dl)
		defer g.c.setDeadline(time.Time{})
	}
	return f()
}
