package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"wsfleet/bayeux"
)

// serveBayeux is the mount path: a websocket upgrade, or a long-polling
// request.
func (s *Server) serveBayeux(w http.ResponseWriter, r *http.Request) {
	s.faultDelay(r)
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		if !s.websocketOrigin(r) {
			s.met.errorCode(http.StatusForbidden)
			s.log.Debug("websocket upgrade refused", "origin", r.Header.Get("Origin"))
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		s.serveWS(w, r)
		return
	}
	switch r.Method {
	case http.MethodOptions:
		s.cors(w, r)
		w.Header().Set("Access-Control-Allow-Methods", "POST, GET")
		w.Header().Set("Access-Control-Allow-Headers", "Accept, Authorization, Content-Type, Pragma, X-Requested-With")
		w.Header().Set("Access-Control-Max-Age", "86400")
		return
	case http.MethodPost, http.MethodGet:
		if !s.admit() {
			s.refuseFull(w, r)
			return
		}
		defer s.unadmit()
		s.servePoll(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		s.badRequest(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// cors answers a cross-origin request from an allowed origin (see
// allowedOrigin); another origin gets no CORS headers, so a browser keeps
// the response from its page.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin")
	o := r.Header.Get("Origin")
	if o == "" || !s.allowedOrigin(o) {
		return
	}
	h.Set("Access-Control-Allow-Origin", o)
	h.Set("Access-Control-Allow-Credentials", "true")
}

func (s *Server) badRequest(w http.ResponseWriter, code int, msg string) {
	s.met.errorCode(code)
	http.Error(w, msg, code)
}

// readPollBody returns the Bayeux JSON of a long-polling request: the body
// of an application/json POST, the message= field of a form POST (what
// Faye's cross-origin transport sends), or message= in a GET query.
func (s *Server) readPollBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Method == http.MethodGet {
		msg := r.URL.Query().Get("message")
		if msg == "" {
			return nil, errors.New("no message parameter")
		}
		if len(msg) > s.cfg.MaxMessageBytes {
			// the URL is bounded only by the header limit (1 MiB): hold
			// a GET to the limit a POST has.
			return nil, &http.MaxBytesError{Limit: int64(s.cfg.MaxMessageBytes)}
		}
		return []byte(msg), nil
	}
	// the body must come within the handshake deadline as well; the
	// deadline is lifted once it is read, or it would end a held connect
	// (net/http's background read would fail and cancel the request). Not
	// when the read failed: net/http reads what is left of a small body
	// after the handler, and would wait for it with no deadline.
	setReadDeadline(w, time.Now().Add(min(s.cfg.ReadTimeout, s.cfg.HandshakeTimeout)))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxMessageBytes)))
	if err != nil {
		return nil, err
	}
	setReadDeadline(w, time.Time{})
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" || (mt != "application/json" && strings.HasPrefix(string(body), "message=")) {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		msg := v.Get("message")
		if msg == "" {
			return nil, errors.New("no message field in form body")
		}
		return []byte(msg), nil
	}
	return body, nil
}

// jsonpCallback is what a JSONP callback name must look like: a JavaScript
// identifier path, as Faye's server requires. The name is written into a
// script that a page runs, so anything more would let a link choose code
// to run on the page's origin.
var jsonpCallback = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$`)

const (
	// defaultJSONPCallback is Faye's name when a GET names none.
	defaultJSONPCallback = "jsonpcallback"
	maxJSONPCallback     = 128
)

// jsonpName returns the callback a callback-polling GET asks for, or false
// when the name is not acceptable.
func jsonpName(r *http.Request) (string, bool) {
	name := r.URL.Query().Get("jsonp")
	if name == "" {
		name = defaultJSONPCallback
	}
	return name, len(name) <= maxJSONPCallback && jsonpCallback.MatchString(name)
}

// jsonpBody wraps a JSON reply in a call of callback. The comment in front
// keeps a browser from reading the response as anything but script;
// U+2028 and U+2029 are valid in JSON strings but end lines in older
// JavaScript.
func jsonpBody(callback string, reply []byte) []byte {
	reply = bytes.ReplaceAll(reply, []byte("\u2028"), []byte(`\u2028`))
	reply = bytes.ReplaceAll(reply, []byte("\u2029"), []byte(`\u2029`))
	out := make([]byte, 0, len(reply)+len(callback)+8)
	out = append(out, "/**/"...)
	out = append(out, callback...)
	out = append(out, '(')
	out = append(out, reply...)
	return append(out, ");"...)
}

// servePoll handles one long-polling request (a GET is callback-polling:
// JSONP). A /meta/connect in it is held until a message is queued for the
// session or the hold passes.
func (s *Server) servePoll(w http.ResponseWriter, r *http.Request) {
	var callback string
	if r.Method == http.MethodGet {
		name, ok := jsonpName(r)
		if !ok {
			s.badRequest(w, http.StatusBadRequest, "invalid JSONP callback name")
			return
		}
		callback = name
	}
	body, err := s.readPollBody(w, r)
	if err != nil {
		if !s.refuseBody(w, err) {
			s.badRequest(w, http.StatusBadRequest, "bad request: "+err.Error())
		}
		return
	}
	if !utf8.Valid(body) {
		// invalid bytes only: a lone surrogate escape in a message's
		// data is that publish's Bayeux error (checkData), which faye
		// reports to the publisher rather than sending the request again.
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
	s.polls.Add(1)
	s.met.connections.WithLabelValues(bayeux.ConnTypeLongPolling).Inc()
	defer func() {
		s.polls.Add(-1)
		s.met.connections.WithLabelValues(bayeux.ConnTypeLongPolling).Dec()
	}()

	b := &batch{transport: bayeux.ConnTypeLongPolling, req: r}
	s.process(b, msgs)
	for _, f := range b.after {
		f()
	}
	out := make([]json.RawMessage, 0, len(b.replies))
	for _, rep := range b.replies {
		enc, err := json.Marshal(rep)
		if err != nil {
			continue
		}
		out = append(out, enc)
	}
	if ss := b.connect; ss != nil {
		s.met.accepted.WithLabelValues(bayeux.ConnTypeLongPolling).Inc()
		q, superseded := s.waitPoll(r, ss, b.hold)
		// a connect that a newer one of the same client ended leaves the
		// session to that one, which still holds it here.
		if s.cfg.SharedSessions && !superseded {
			q = s.finishPoll(ss, q)
		} else {
			ss.keepAnswer(q)
		}
		for _, m := range q {
			out = append(out, m.b)
		}
		ss.mu.Lock()
		if ss.released {
			b.goAway = true
		}
		ss.mu.Unlock()
	}
	s.cors(w, r)
	h := w.Header()
	if b.goAway {
		h.Set("Connection", "close")
	}
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	enc, _ := json.Marshal(out)
	if callback != "" {
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		// a browser that navigates to the URL downloads it rather than
		// rendering it (reflected file download)
		h.Set("Content-Disposition", "attachment; filename=f.txt")
		enc = jsonpBody(callback, enc)
	} else {
		h.Set("Content-Type", "application/json")
	}
	w.Write(enc)
}

// waitPoll holds a long-polling connect until something is queued for ss,
// the hold passes, the client goes away, the node closes or a newer connect
// of the client arrives, and returns what is queued and whether a newer
// connect now waits in its place.
func (s *Server) waitPoll(r *http.Request, ss *session, hold time.Duration) ([]outMsg, bool) {
	ss.mu.Lock()
	if old := ss.wakeLocked(); old != nil {
		// a new connect answers the one held, as CometD's and Faye's
		// servers do: the client has given up on it (a retried request,
		// a poll its own timer ended), and a browser allowed two
		// connections to the host would stall behind it.
		select {
		case old <- struct{}{}:
		default:
		}
	}
	if len(ss.queue) == 0 && hold > 0 && !ss.closed && !ss.released {
		wake := make(chan struct{}, 1)
		ss.more().wake = wake
		ss.mu.Unlock()
		t := time.NewTimer(hold)
		select {
		case <-wake:
		case <-t.C:
		case <-r.Context().Done():
		case <-s.ctx.Done():
		}
		t.Stop()
		ss.mu.Lock()
		if ss.rare.wake == wake {
			ss.rare.wake = nil
		}
	}
	superseded := ss.wakeLocked() != nil
	q := ss.takeLocked()
	ss.lastConnect = s.since()
	ss.mu.Unlock()
	s.countOut(q)
	return q, superseded
}
