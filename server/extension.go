package server

import (
	"encoding/json"
	"net/http"

	"wsfleet/bayeux"
)

// Call is one message passing through the extension pipeline, with what an
// extension may need to decide about it.
type Call struct {
	Message   *bayeux.Message
	Transport string        // "websocket", "long-polling", or "" for deliveries
	Request   *http.Request // the upgrade or POST request; nil for deliveries

	// Identity is set by the authentication extension on a handshake and
	// is the session's identity afterwards.
	Identity *Identity
}

// Extension sees every message a client sends before the server handles it,
// as Faye's extensions do. It may change the message, or reject it by
// setting Message.Error (a Bayeux error string); the server then answers
// with that error and does nothing else.
type Extension interface {
	Incoming(c *Call)
}

// OutgoingExtension is an Extension that also sees every reply, and every
// delivered message once per node (not once per subscriber: deliveries are
// encoded once and shared).
type OutgoingExtension interface {
	Extension
	Outgoing(c *Call)
}

func (s *Server) incoming(c *Call) {
	for _, e := range s.exts {
		if c.Message.Error != "" {
			return
		}
		e.Incoming(c)
	}
}

func (s *Server) hasOutgoing() bool {
	for _, e := range s.exts {
		if _, ok := e.(OutgoingExtension); ok {
			return true
		}
	}
	return false
}

// outgoing runs the outgoing extensions in reverse order, so that the first
// extension is the outermost, as in Faye.
func (s *Server) outgoing(c *Call, m *bayeux.Message) {
	if c == nil {
		c = &Call{}
	}
	c.Message = m
	for i := len(s.exts) - 1; i >= 0; i-- {
		if o, ok := s.exts[i].(OutgoingExtension); ok {
			o.Outgoing(c)
		}
	}
}

// authExtension verifies the token of a handshake (ext.token) when the node
// has an auth secret, and records the identity on the call.
type authExtension struct{ s *Server }

func (a authExtension) Incoming(c *Call) {
	m := c.Message
	if m.Channel != bayeux.ChannelHandshake {
		return
	}
	if len(a.s.cfg.AuthSecret) == 0 {
		c.Identity = &Identity{Anonymous: true}
		return
	}
	var ext struct {
		Token string `json:"token"`
	}
	if len(m.Ext) > 0 {
		_ = json.Unmarshal(m.Ext, &ext)
	}
	if ext.Token == "" {
		m.Error = bayeux.NewError(403, "Authentication required").Error()
		return
	}
	id, err := verifyToken(a.s.cfg.AuthSecret, ext.Token, a.s.cfg.Now)
	if err != nil {
		// the reason is logged, never the token
		a.s.log.Info("handshake refused", "reason", err.Error())
		m.Error = bayeux.NewError(403, "Authentication failed").Error()
		return
	}
	c.Identity = &id
}

// marshalMessage encodes one message.
func marshalMessage(m *bayeux.Message) ([]byte, error) { return json.Marshal(m) }
