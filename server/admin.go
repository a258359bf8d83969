package server

import (
	"encoding/json"
	"io"
	"net/http"
	"unicode/utf8"

	"wsfleet/bayeux"
	"wsfleet/nodeapi"
)

// admin guards h with the admin token (nodeapi.Authorize). Without a
// configured token the admin endpoints are off: an open drain endpoint
// would let anyone empty the node.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if nodeapi.Authorize(w, r, s.cfg.AdminToken) {
			h(w, r)
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Status())
}

// adminBody reads an admin request's body, 4 KiB at most; when it cannot,
// it answers the request and returns false.
func (s *Server) adminBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil {
		if !s.refuseBody(w, err) {
			s.badRequest(w, http.StatusBadRequest, "request body could not be read")
		}
		return nil, false
	}
	return b, true
}

// drainOptions applies a drain request over the node's defaults: a field
// the request leaves out takes the default, a duration given as "0s" is
// zero, and a max_rate of 0 is the default.
func drainOptions(r nodeapi.DrainRequest, def DrainOptions) DrainOptions {
	o := def
	if r.Window != nil {
		o.Window = r.Window.D()
	}
	if r.Deadline != nil {
		o.Deadline = r.Deadline.D()
	}
	if r.MaxRate > 0 {
		o.MaxRate = r.MaxRate
	}
	return o
}

// serveDrain decodes the request strictly (unknown fields, trailing data
// and out-of-range values are 400, so a typo never drains the node with
// defaults) and starts the drain.
func (s *Server) serveDrain(w http.ResponseWriter, r *http.Request) {
	b, ok := s.adminBody(w, r)
	if !ok {
		return
	}
	req, err := nodeapi.DecodeDrainRequest(b)
	if err != nil {
		s.badRequest(w, http.StatusBadRequest, "drain request: "+err.Error())
		return
	}
	s.StartDrain(drainOptions(req, s.cfg.DrainDefaults))
	writeJSON(w, http.StatusAccepted, s.Status())
}

// publishResult is one entry of a POST /publish response.
type publishResult struct {
	Channel    string `json:"channel"`
	ID         string `json:"id,omitempty"`
	Successful bool   `json:"successful"`
	Error      string `json:"error,omitempty"`
	Seq        uint64 `json:"seq,omitempty"`
}

// servePublish is how the application backend publishes: a Bayeux message
// or an array of them, answered with one result each.
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxMessageBytes)))
	if err != nil {
		if !s.refuseBody(w, err) {
			s.badRequest(w, http.StatusBadRequest, "request body could not be read")
		}
		return
	}
	if !utf8.Valid(body) {
		// a lone surrogate escape in a message's data is that
		// message's error (checkData)
		s.met.invalidText.Inc()
		s.badRequest(w, http.StatusBadRequest, "request body: "+errNotText.Error())
		return
	}
	msgs, err := bayeux.DecodeMessages(body)
	if err != nil {
		s.badRequest(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(msgs) > s.cfg.MaxBatch {
		s.badRequest(w, http.StatusBadRequest, "too many messages in one batch")
		return
	}
	out := make([]publishResult, 0, len(msgs))
	failed, unavailable := false, false
	for _, m := range msgs {
		s.met.messagesIn.Inc()
		res := publishResult{Channel: m.Channel, ID: string(m.ID)}
		var e *bayeux.Error
		switch {
		case !bayeux.ValidChannel(m.Channel) || bayeux.IsMeta(m.Channel):
			e = bayeux.ErrChannelInvalid(m.Channel)
		default:
			e = s.refuseData(m.Data)
		}
		if e == nil {
			seq, err := s.publishData(r.Context(), m.Channel, m.Data)
			if err != nil {
				s.log.Warn("publish failed", "channel", m.Channel, "err", err)
				e = bayeux.ErrServer("Publish failed")
				unavailable = true
			}
			res.Seq = seq
		}
		if e != nil {
			s.met.errorCode(e.Code)
			res.Error = e.Error()
			failed = true
		} else {
			res.Successful = true
		}
		out = append(out, res)
	}
	// one message: the status says what happened to it (the backend
	// retries on 503); a batch: 200 and a result for each.
	code := http.StatusOK
	switch {
	case failed && len(msgs) == 1 && unavailable:
		code = http.StatusServiceUnavailable
	case failed && len(msgs) == 1:
		code = http.StatusBadRequest
	}
	writeJSON(w, code, out)
}
