package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// recordWait bounds how long a /meta/connect for a shared session that
// neither this node holds nor the store has waits for the record, polled
// every recordPoll: the node the client left saves the session when it
// sees the socket close, which can be after the client is back (see
// connect). A client that is really unknown gets its 401 that much later.
const (
	recordWait = 500 * time.Millisecond
	recordPoll = 25 * time.Millisecond
)

// connTypeCrossOrigin is long-polling from a page on another origin: CORS
// POSTs of a form body (message=...). Browser Faye clients connect with it.
const connTypeCrossOrigin = "cross-origin-long-polling"

// connTypes are the transports this node offers in a handshake, Faye's
// HTTP ones included: browser clients pick cross-origin-long-polling or
// callback-polling (JSONP, a GET; see longpoll.go) when a websocket cannot
// be had, and a connect naming a type not offered is refused with 301.
var connTypes = []string{bayeux.ConnTypeWebSocket, bayeux.ConnTypeLongPolling, connTypeCrossOrigin, bayeux.ConnTypeCallback}

// batch is one request (a websocket frame or a long-polling POST) being
// processed: the replies in order, the connect to hold, and what must
// happen once the replies are on their way (replays).
type batch struct {
	transport string
	req       *http.Request
	ws        *wsConn

	replies []*bayeux.Message
	after   []func()

	// connect is the session whose successful /meta/connect this batch
	// carries; connectAt is its reply's index in replies.
	connect   *session
	connectAt int
	hold      time.Duration

	// goAway asks the transport to drop the client's connection after the
	// replies, so that its next request goes through the load balancer to
	// another node (a draining node answering a released session).
	goAway bool
}

// process handles every message of a batch in order.
func (s *Server) process(b *batch, msgs []bayeux.Message) {
	for i := range msgs {
		m := &msgs[i]
		s.met.messagesIn.Inc()
		c := &Call{Message: m, Transport: b.transport, Request: b.req}
		var ss *session
		if m.Channel != bayeux.ChannelHandshake && m.ClientID != "" {
			if ss = s.lookup(m.ClientID); ss != nil {
				c.Identity = ss.callIdentity()
			}
		}
		s.incoming(c)
		var reply *bayeux.Message
		if m.Error != "" {
			reply = newReply(m)
			reply.Error = m.Error
		} else {
			reply = s.handle(b, c, ss)
		}
		if reply == nil {
			continue
		}
		if reply.Error != "" {
			reply.Successful = bayeux.False
			if e, ok := bayeux.ParseError(reply.Error); ok {
				s.met.errorCode(e.Code)
			}
		} else if reply.Successful == nil {
			reply.Successful = bayeux.True
		}
		if reply.Channel == bayeux.ChannelHandshake {
			s.met.handshake(reply.Error == "")
		}
		s.advise(reply)
		s.outgoing(&Call{Transport: b.transport, Request: b.req, Identity: c.Identity}, reply)
		if b.connect != nil && b.connectAt < 0 && reply.Channel == bayeux.ChannelConnect && reply.Error == "" {
			b.connectAt = len(b.replies)
		}
		b.replies = append(b.replies, reply)
	}
}

// newReply starts the reply to m as Faye does: id, clientId and channel
// echoed.
func newReply(m *bayeux.Message) *bayeux.Message {
	return &bayeux.Message{ID: m.ID, ClientID: m.ClientID, Channel: m.Channel}
}

// advise adds advice to handshake and connect replies: retry with the
// node's interval and timeout, or handshake after an error.
func (s *Server) advise(r *bayeux.Message) {
	if r.Channel != bayeux.ChannelHandshake && r.Channel != bayeux.ChannelConnect {
		return
	}
	if r.Advice != nil {
		return
	}
	if r.Error != "" {
		r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectHandshake, Interval: bayeux.Millis(s.cfg.Interval.Milliseconds())}
		return
	}
	r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectRetry,
		Interval: bayeux.Millis(s.cfg.Interval.Milliseconds()), Timeout: bayeux.Millis(s.cfg.Timeout.Milliseconds())}
}

func (s *Server) handle(b *batch, c *Call, ss *session) *bayeux.Message {
	m := c.Message
	switch m.Channel {
	case bayeux.ChannelHandshake:
		return s.handshake(b, c)
	case bayeux.ChannelConnect:
		return s.connect(b, m, ss)
	case bayeux.ChannelSubscribe, bayeux.ChannelUnsubscribe:
		if s.cfg.SharedSessions && m.ClientID != "" {
			mu := s.shareLock(m.ClientID)
			mu.Lock()
			defer mu.Unlock()
			return s.sharedSubscription(b, m, ss)
		}
		if m.Channel == bayeux.ChannelSubscribe {
			return s.subscribe(b, m, ss)
		}
		return s.unsubscribe(m, ss)
	case bayeux.ChannelDisconnect:
		if s.cfg.SharedSessions && m.ClientID != "" && ss == nil {
			ss = s.sharedCopy(m.ClientID, nil)
		}
		return s.disconnect(m, ss)
	case "":
		r := newReply(m)
		r.Error = bayeux.ErrParameterMissing("channel").Error()
		return r
	}
	if bayeux.IsMeta(m.Channel) {
		r := newReply(m)
		r.Error = bayeux.ErrChannelUnknown(m.Channel).Error()
		return r
	}
	if s.cfg.SharedSessions && m.ClientID != "" && ss == nil {
		ss = s.sharedCopy(m.ClientID, nil)
	}
	return s.publish(m, ss)
}

func (s *Server) handshake(b *batch, c *Call) *bayeux.Message {
	m := c.Message
	r := newReply(m)
	r.ClientID = ""
	r.Version = bayeux.Version
	r.SupportedConnectionTypes = connTypes
	switch {
	case m.Version == "":
		r.Error = bayeux.ErrParameterMissing("version").Error()
		return r
	case len(m.SupportedConnectionTypes) == 0:
		r.Error = bayeux.ErrParameterMissing("supportedConnectionTypes").Error()
		return r
	}
	common := false
	for _, t := range m.SupportedConnectionTypes {
		if slices.Contains(connTypes, t) {
			common = true
		}
	}
	if !common {
		r.Error = bayeux.ErrConntypeMismatch(m.SupportedConnectionTypes...).Error()
		return r
	}
	if s.hsLimit != nil {
		if ok, wait := s.hsLimit.allow(s.handshakeKey(b)); !ok {
			return s.rateLimited(r, wait)
		}
	}
	if s.failHandshake() {
		return faultHandshakeReply(r)
	}
	if !s.Ready() {
		// a draining node takes no new client; the load balancer sends
		// the retry elsewhere.
		r.Error = bayeux.ErrServer("Node draining").Error()
		r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectHandshake, Interval: bayeux.Millis(500)}
		return r
	}
	ident := Identity{Anonymous: true}
	if c.Identity != nil {
		ident = *c.Identity
	}
	ss := &session{id: newClientID(), srv: s, lastConnect: s.since(), arrived: s.since(), live: !s.cfg.SharedSessions}
	ss.setIdentity(ident)
	if last, err := s.broker.LastSeq(s.ctx); err == nil {
		// a new session starts at the present: replays never reach
		// before it.
		ss.cursor, ss.given = last, last
	}
	s.addSession(ss)
	if s.cfg.SharedSessions {
		s.saveRecord(ss, false)
	}
	c.Identity = ss.callIdentity()
	r.ClientID = ss.id
	return r
}

// goAway answers a connect that this node will not serve (a session it
// released, or a draining node asked to take one over) so that the
// client's next connect goes through the load balancer to another node:
// the reply is a success with reconnect=retry, and the transport drops
// the connection after it. On a websocket the advised interval gives the
// socket time to close before the client's next connect: faye sends a
// request that was pending on a closing socket again only after its retry
// delay (5 s by default).
func (s *Server) goAway(b *batch, r *bayeux.Message) *bayeux.Message {
	b.goAway = true
	interval := int64(0)
	if b.transport == bayeux.ConnTypeWebSocket {
		interval = s.cfg.GoAwayInterval.Milliseconds()
	}
	r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectRetry, Interval: bayeux.Millis(interval),
		Timeout: bayeux.Millis(s.cfg.Timeout.Milliseconds())}
	return r
}

// unknownClient is the reply to a message naming a client this node does
// not hold and cannot restore.
func unknownClient(m *bayeux.Message) *bayeux.Message {
	r := newReply(m)
	// an unsuccessful (un)subscribe reply carries the subscription: the
	// spec requires it, and CometD finds the listener to drop with it.
	r.Subscription = m.Subscription
	r.Error = bayeux.ErrClientUnknown(m.ClientID).Error()
	r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectHandshake, Interval: bayeux.Millis(0)}
	return r
}

func (s *Server) connect(b *batch, m *bayeux.Message, ss *session) *bayeux.Message {
	r := newReply(m)
	switch {
	case m.ClientID == "":
		r.Error = bayeux.ErrParameterMissing("clientId").Error()
		return r
	case m.ConnectionType == "":
		r.Error = bayeux.ErrParameterMissing("connectionType").Error()
		return r
	case !slices.Contains(connTypes, m.ConnectionType):
		r.Error = bayeux.ErrConntypeMismatch(m.ConnectionType).Error()
		return r
	}
	if ss == nil && s.wasReleased(m.ClientID) {
		// this node let the session go during its drain: send the client
		// elsewhere rather than have it handshake again and lose its
		// place.
		return s.goAway(b, r)
	}
	if ss != nil && s.tokenExpired(ss) {
		return s.expired(m, ss)
	}
	var share *sync.Mutex
	if s.cfg.SharedSessions {
		share = s.shareLock(m.ClientID)
		share.Lock()
		defer func() { share.Unlock() }()
	}
	since, hasSince := extSince(m.Ext)
	got := clientCursor{since, hasSince}
	resumed := false // the session came from the store, replaying from got
	switch {
	case s.cfg.SharedSessions && (ss == nil || !ss.isLive()):
		if !s.Ready() {
			// a draining node takes no session over: the client's
			// next request goes elsewhere.
			return s.goAway(b, r)
		}
		var missing bool
		ss, missing = s.adopt(b, m.ClientID, string(m.ID), got, ss)
		// A session whose socket on another node just closed is on its
		// way to the store (letGo): the client came back before the
		// node it left saved it. Wait for the record, a bounded time,
		// without the share lock, rather than refuse a known client.
		for waited := time.Duration(0); ss == nil && missing && waited < recordWait; waited += recordPoll {
			share.Unlock()
			err := s.sleep(s.ctx, recordPoll)
			share.Lock()
			if err != nil {
				break
			}
			ss, missing = s.adopt(b, m.ClientID, string(m.ID), got, s.lookup(m.ClientID))
		}
		if ss == nil {
			if missing {
				s.met.restored.WithLabelValues("unknown").Inc()
			}
			if !s.Ready() {
				// a drain that started after the check above released
				// this node's copy while adopt read the record: the
				// record is in the store, for the node the client's
				// next connect reaches.
				return s.goAway(b, r)
			}
			return unknownClient(m)
		}
		resumed = true
	case ss == nil:
		if ss = s.restore(b, m.ClientID, string(m.ID), got); ss == nil {
			return unknownClient(m)
		}
		resumed = true
	}
	if !resumed && hasSince && b.transport == bayeux.ConnTypeWebSocket && !s.rewriteLost(ss, since) {
		s.overLimit(ss)
		return unknownClient(m)
	}
	// The hold ends well before the clients give up on the answer
	// (halley after timeout + 0.5 s, faye after 1.2 × timeout): an answer
	// that arrives after the client gave up is lost with the messages in
	// it.
	hold := s.cfg.Timeout - min(s.cfg.Timeout/5, 5*time.Second)
	if m.Advice != nil && m.Advice.Timeout != nil {
		if t := time.Duration(*m.Advice.Timeout) * time.Millisecond; t >= 0 && t < hold {
			hold = t
		}
	}
	ss.mu.Lock()
	ss.lastConnect = s.since()
	if b.transport != bayeux.ConnTypeWebSocket {
		// only long-polling answers by connect id (keepAnswer,
		// finishPoll): a websocket session keeps no copy of it
		ss.more().connectID = string(m.ID)
		if !s.cfg.SharedSessions {
			ss.resendLostAnswerLocked(string(m.ID), since, hasSince)
		}
	}
	released := ss.released
	ss.mu.Unlock()
	if released {
		// a drain let this session go while the client was away: it
		// must reconnect through the load balancer to another node.
		return s.goAway(b, r)
	}
	if s.cfg.SharedSessions && b.ws != nil {
		// until attach: a socket of the session that closes meanwhile
		// leaves it live here (see letGo)
		ss.mu.Lock()
		ss.claim = b.ws
		ss.mu.Unlock()
	}
	b.connect, b.connectAt, b.hold = ss, -1, hold
	return r
}

// subscriptionReply starts the reply to a subscribe or unsubscribe; ok is
// false when the request lacks its client or subscription, or the client
// is unknown, and the reply is then the error to send.
func subscriptionReply(m *bayeux.Message, ss *session) (r *bayeux.Message, ok bool) {
	r = newReply(m)
	r.Subscription = m.Subscription
	switch {
	case m.ClientID == "":
		r.Error = bayeux.ErrParameterMissing("clientId").Error()
		return r, false
	case ss == nil:
		return unknownClient(m), false
	case len(m.Subscription) == 0:
		r.Error = bayeux.ErrParameterMissing("subscription").Error()
		return r, false
	}
	return r, true
}

func (s *Server) subscribe(b *batch, m *bayeux.Message, ss *session) *bayeux.Message {
	r, ok := subscriptionReply(m, ss)
	if !ok {
		return r
	}
	if s.tokenExpired(ss) {
		return s.expired(m, ss)
	}
	ident := ss.lockedIdentity()
	for _, p := range m.Subscription {
		switch {
		case !bayeux.ValidPattern(p):
			r.Error = bayeux.ErrChannelInvalid(p).Error()
			return r
		case bayeux.IsMeta(p) || bayeux.IsService(p):
			r.Error = bayeux.ErrChannelForbidden(p).Error()
			return r
		case !s.cfg.Rules.canSubscribe(ident, p):
			r.Error = bayeux.NewError(bayeux.CodeChannelForbidden, "Subscription denied", p).Error()
			return r
		}
	}
	since, wantReplay := extSince(m.Ext)
	ss.mu.Lock()
	var added []string
	for _, p := range m.Subscription {
		if !ss.hasSubLocked(p) && !slices.Contains(added, p) {
			added = append(added, s.names.intern(p))
		}
	}
	if len(ss.subs)+len(added) > s.cfg.MaxSubscriptions {
		ss.mu.Unlock()
		r.Error = bayeux.NewError(bayeux.CodeChannelForbidden, "Too many subscriptions", m.Subscription...).Error()
		return r
	}
	old := slices.Clone(ss.subs)
	cursor := ss.cursor
	ss.subs = append(ss.subs, added...)
	if wantReplay && len(added) > 0 {
		ss.more().replaying++
		if !ss.live && len(old) == 0 && since < ss.cursor {
			// A stored session (shared sessions) replays from its
			// cursor when a node adopts it for a connect. A client
			// that re-handshook and subscribes with ext.since before
			// its first connect (the Go client does) moves that
			// cursor back; with no earlier subscription nothing is
			// delivered twice.
			ss.setCursorLocked(since, "")
		}
	}
	ss.mu.Unlock()
	s.indexAddAll(ss, added)
	if !wantReplay || len(added) == 0 {
		return r
	}
	// Live messages for the session now wait in pending; the history up
	// to now fills the gap before them.
	hist, err := s.broker.History(s.ctx, added, since)
	var gone bool
	switch {
	case errors.Is(err, broker.ErrHistoryGone):
		gone = true
		r.Ext = json.RawMessage(`{"replay":"gone"}`)
	case err != nil:
		s.met.brokerErrors.Inc()
		s.log.Warn("replay failed", "client", ss.id, "err", err)
		r.Ext = json.RawMessage(`{"replay":"gone"}`)
		gone = true
	default:
		r.Ext = json.RawMessage(`{"replay":"ok"}`)
	}
	var replay []outMsg
	if !gone {
		// already delivered live through an older subscription
		dup := func(h broker.Message) bool { return h.Seq <= cursor && matchesAny(old, h.Channel) }
		n := 0
		for _, h := range hist {
			if !dup(h) {
				n++
			}
		}
		if n > s.cfg.QueueLimit {
			// more than the client may have queued: the answer is the
			// one for a history that no longer reaches back to since,
			// and the subscription goes live from now.
			s.met.replayOverLimit.WithLabelValues("gone").Inc()
			s.log.Info("replay refused: over the queue limit", "client", ss.id, "since", since, "messages", n, "queue_limit", s.cfg.QueueLimit)
			r.Ext = json.RawMessage(`{"replay":"gone"}`)
			n = 0
		}
		replay = make([]outMsg, 0, n)
		for _, h := range hist {
			if n > 0 && !dup(h) {
				replay = append(replay, outMsg{seq: h.Seq, published: h.Published.UnixNano(), b: s.encodeDelivery(h)})
			}
		}
	}
	b.after = append(b.after, func() { s.finishReplay(ss, replay) })
	return r
}

// extSince reads ext.since, the cursor a client asks to replay from.
func extSince(ext json.RawMessage) (uint64, bool) {
	if len(ext) == 0 {
		return 0, false
	}
	var e struct {
		Since *uint64 `json:"since"`
	}
	if json.Unmarshal(ext, &e) != nil || e.Since == nil {
		return 0, false
	}
	return *e.Since, true
}

// clientCursor is how far a client says it got: ext.since on a connect
// after it lost its connection (the Go client sends it; faye and halley
// do not). A node writes to a websocket without acknowledgement, and what
// it wrote into a connection that was dying is lost unless it goes by
// this rather than by what it wrote.
type clientCursor struct {
	seq uint64
	ok  bool
}

// lower returns from, or the client's cursor when that is earlier.
func (c clientCursor) lower(from uint64) uint64 {
	if c.ok && c.seq < from {
		return c.seq
	}
	return from
}

// rewriteLost queues again, ahead of what waits, what this node wrote to
// an earlier websocket of the session after since, the client's cursor:
// the client never got it. The client names since, so the history after
// it may hold far more than the session was ever given: it reports false,
// queuing nothing, when that and what waits are more than the queue limit,
// and the caller ends the session as it does a take-over's (overLimit).
func (s *Server) rewriteLost(ss *session, since uint64) bool {
	ss.mu.Lock()
	given, subs := ss.given, slices.Clone(ss.subs)
	ss.mu.Unlock()
	if since >= given || len(subs) == 0 {
		return true
	}
	hist, err := s.broker.History(s.ctx, subs, since)
	if err != nil {
		if !errors.Is(err, broker.ErrHistoryGone) {
			s.met.brokerErrors.Inc()
		}
		s.log.Warn("resumed websocket without replay", "client", ss.id, "since", since, "err", err)
		return true
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for _, h := range hist {
		// above given: still queued here, or on its way live
		if h.Seq > since && h.Seq <= ss.given {
			n++
		}
	}
	if n+len(ss.queue) > s.cfg.QueueLimit {
		s.log.Info("resumed websocket: resend over the queue limit", "client", ss.id, "since", since,
			"messages", n, "queued", len(ss.queue), "queue_limit", s.cfg.QueueLimit)
		return false
	}
	again := make([]outMsg, 0, n)
	for _, h := range hist {
		if h.Seq > since && h.Seq <= ss.given {
			again = append(again, outMsg{seq: h.Seq, published: h.Published.UnixNano(), b: s.encodeDelivery(h)})
		}
	}
	if len(again) > 0 {
		ss.queue = append(again, ss.queue...)
		s.met.rewritten.Add(float64(len(again)))
	}
	return true
}

// resumeFrom is where a session taken from the store (restore, adopt)
// replays from: the stored cursor; what the node that saved it gave on top
// (Given) unless the client's connect is the one that node's last answer
// went to (LastConnect), which the client then never got; and earlier
// still when the client says it got less (ext.since).
func resumeFrom(st broker.Session, connectID string, got clientCursor) uint64 {
	from := st.Cursor
	if st.Given > st.Cursor && (st.LastConnect == "" || connectID != st.LastConnect) {
		from = st.Given
	}
	return got.lower(from)
}

// replayStored is the replay of a session taken from the store (restore,
// adopt; how names which, for the logs), whose caller made it live from
// from and raised its replaying: it fetches what subs matched after from
// and queues it ahead of the live messages that arrive meanwhile, once the
// batch's replies are out. It counts the take-over by outcome and returns
// how many messages it replays, or -1 when they are more than the queue
// limit, replayGone when they cannot be read: it then queues nothing, and
// the caller ends the session (endTakeOver), as it would a slow
// consumer's.
func (s *Server) replayStored(b *batch, ss *session, subs []string, from uint64, how string) int {
	var (
		hist []broker.Message
		err  error
	)
	if len(subs) > 0 {
		hist, err = s.broker.History(s.ctx, subs, from)
	}
	var replay []outMsg
	switch {
	case err != nil:
		// Never a session that goes on with a hole: it is ended as an
		// over-limit one is (401, handshake advice), the answer for a
		// history that no longer reaches back.
		if !errors.Is(err, broker.ErrHistoryGone) {
			s.met.brokerErrors.Inc()
		}
		s.met.restored.WithLabelValues("gone").Inc()
		s.log.Info("session taken over: replay cannot be made, ending the session", "client", ss.id, "how", how, "cursor", from, "err", err)
		return replayGone
	case len(hist) > s.cfg.QueueLimit:
		s.met.restored.WithLabelValues("over_limit").Inc()
		s.log.Info("session taken over: replay over the queue limit", "client", ss.id, "how", how, "cursor", from,
			"messages", len(hist), "queue_limit", s.cfg.QueueLimit)
		return -1
	default:
		s.met.restored.WithLabelValues("ok").Inc()
		replay = make([]outMsg, 0, len(hist))
		for _, h := range hist {
			replay = append(replay, outMsg{seq: h.Seq, published: h.Published.UnixNano(), b: s.encodeDelivery(h)})
		}
	}
	b.after = append(b.after, func() { s.finishReplay(ss, replay) })
	return len(replay)
}

// overLimit ends a session taken from the store whose replay is longer than
// the queue limit, or a resumed websocket's whose resend is (rewriteLost),
// as a slow consumer's: its connect is answered 401 with
// advice to handshake (the caller's unknownClient), and a client that
// replays by itself (the Go client's subscribe with ext.since) learns on
// its new session that the replay is gone.
// replayGone is replayStored's answer for a replay that cannot be made
// (the history no longer reaches back, or the broker failed).
const replayGone = -2

// endTakeOver ends a session taken from the store whose replay
// replayStored refused (n < 0): over the queue limit, or gone.
func (s *Server) endTakeOver(ss *session, n int) {
	if n == replayGone {
		s.endSession(ss, "replay history gone")
		return
	}
	s.overLimit(ss)
}

func (s *Server) overLimit(ss *session) {
	s.met.replayOverLimit.WithLabelValues("slow_consumer").Inc()
	s.met.slowConsumers.Inc()
	s.endSession(ss, "replay over the queue limit")
}

// finishReplay queues the replayed messages merged with the live ones that
// arrived meanwhile, in sequence order and each once. A queue that would
// then hold more than the queue limit is a slow consumer's: the session is
// dropped rather than queue without bound.
func (s *Server) finishReplay(ss *session, replay []outMsg) {
	if ss.mergeReplay(replay) {
		s.slowConsumer(ss)
	}
}

// mergeReplay does finishReplay's merge under the session's lock and
// reports an overflow of the queue limit, which the caller acts on outside
// the lock.
func (ss *session) mergeReplay(replay []outMsg) (overflow bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	r := ss.more()
	r.pending = append(r.pending, replay...)
	r.replaying--
	if r.replaying > 0 {
		return false
	}
	p := r.pending
	r.pending = nil
	ss.tidyLocked()
	sort.SliceStable(p, func(i, j int) bool { return p[i].seq < p[j].seq })
	var last uint64
	for _, m := range p {
		if m.seq == last {
			continue
		}
		last = m.seq
		ss.queue = append(ss.queue, m)
		if m.seq > ss.cursor {
			ss.cursor = m.seq
		}
	}
	if len(ss.queue) > ss.srv.cfg.QueueLimit {
		return true
	}
	ss.kickLocked()
	return false
}

func (s *Server) unsubscribe(m *bayeux.Message, ss *session) *bayeux.Message {
	r, ok := subscriptionReply(m, ss)
	if !ok {
		return r
	}
	for _, p := range m.Subscription {
		if !bayeux.ValidPattern(p) {
			r.Error = bayeux.ErrChannelInvalid(p).Error()
			return r
		}
	}
	ss.mu.Lock()
	var removed []string
	ss.subs = slices.DeleteFunc(ss.subs, func(p string) bool {
		if slices.Contains(m.Subscription, p) {
			removed = append(removed, p)
			return true
		}
		return false
	})
	ss.mu.Unlock()
	for _, p := range removed {
		s.indexRemove(ss, p)
	}
	return r
}

func (s *Server) disconnect(m *bayeux.Message, ss *session) *bayeux.Message {
	r := newReply(m)
	switch {
	case m.ClientID == "":
		r.Error = bayeux.ErrParameterMissing("clientId").Error()
		return r
	case ss == nil:
		return unknownClient(m)
	}
	s.endSession(ss, "disconnect")
	return r
}

// endSession ends a session for good: its held connect answered, removed
// from the node and from the store.
func (s *Server) endSession(ss *session, why string) {
	// "The server SHOULD release any waiting meta message handlers": a
	// connect held on the client's websocket is answered now, before the
	// session and its hold go (CometD waits for it otherwise).
	ss.mu.Lock()
	held, wc := ss.held, ss.ws
	if held != nil {
		ss.held = nil
		s.holds.remove(held)
	}
	ss.mu.Unlock()
	if held != nil && wc != nil {
		_ = wc.write(frame([]outMsg{{b: held.bytes(ss.id)}}))
	}
	s.removeSession(ss, why)
	if wc != nil {
		// the client may handshake again on the socket (after an
		// expired token it does); one that keeps it open silently must
		// not keep it for good.
		s.rearmHandshakeDeadline(wc)
	}
	if err := s.broker.Sessions().Delete(s.ctx, ss.id); err != nil && s.cfg.SharedSessions {
		s.met.brokerErrors.Inc()
		s.log.Warn("delete session failed", "client", ss.id, "why", why, "err", err)
	}
}

// tokenExpired reports whether the token ss was opened with has expired:
// a token is a credential for its lifetime only, so every connect and
// publish checks it, not just the handshake.
func (s *Server) tokenExpired(ss *session) bool {
	ss.mu.Lock()
	exp := ss.identity().Expires // a shared session's copy is refreshed under mu
	ss.mu.Unlock()
	return !exp.IsZero() && s.cfg.Now().After(exp)
}

// expired ends a session whose token has expired and answers m with
// 401::Token expired and advice to handshake: faye, halley and the Go
// client then handshake again, sending the token their ext hook (the Go
// client's Token callback) gives them now, and carry on with a new
// session if it is valid.
func (s *Server) expired(m *bayeux.Message, ss *session) *bayeux.Message {
	s.met.tokensExpired.Inc()
	s.log.Info("session ended: token expired", "client", ss.id, "channel", m.Channel)
	s.endSession(ss, "token expired")
	r := newReply(m)
	r.Subscription = m.Subscription
	r.Error = bayeux.NewError(bayeux.CodeClientUnknown, "Token expired").Error()
	r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectHandshake, Interval: bayeux.Millis(0)}
	return r
}

// publish handles a message a client publishes.
func (s *Server) publish(m *bayeux.Message, ss *session) *bayeux.Message {
	r := newReply(m)
	if !bayeux.ValidChannel(m.Channel) {
		r.Error = bayeux.ErrChannelInvalid(m.Channel).Error()
		return r
	}
	// data is required, not null, and text (see checkData)
	if e := s.refuseData(m.Data); e != nil {
		r.Error = e.Error()
		return r
	}
	switch {
	case m.ClientID == "":
		r.Error = bayeux.ErrParameterMissing("clientId").Error()
		return r
	case ss == nil:
		return unknownClient(m)
	case s.tokenExpired(ss):
		return s.expired(m, ss)
	case !s.cfg.Rules.canPublish(ss.lockedIdentity(), m.Channel):
		r.Error = bayeux.NewError(bayeux.CodeChannelForbidden, "Publish denied", m.Channel).Error()
		return r
	}
	if bayeux.IsService(m.Channel) {
		// service channels reach the server only; there is no service
		// handler here, so the message ends with its acknowledgement.
		return r
	}
	seq, err := s.publishData(s.ctx, m.Channel, m.Data)
	if err != nil {
		s.log.Warn("publish failed", "channel", m.Channel, "err", err)
		r.Error = bayeux.ErrServer("Publish failed").Error()
		return r
	}
	r.Ext = seqExt(seq)
	return r
}

// publishData publishes data on channel through the broker. The payload is
// rebuilt from channel and data only, so that a publisher's ext (its
// token) never reaches subscribers.
func (s *Server) publishData(ctx context.Context, channel string, data json.RawMessage) (uint64, error) {
	payload, err := json.Marshal(struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}{channel, data})
	if err != nil {
		return 0, err
	}
	seq, err := s.broker.Publish(ctx, channel, payload)
	if err != nil {
		s.met.brokerErrors.Inc()
		return 0, err
	}
	s.met.published.Inc()
	return seq, nil
}

func seqExt(seq uint64) json.RawMessage {
	b, _ := json.Marshal(map[string]uint64{"seq": seq})
	return b
}
