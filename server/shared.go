package server

import (
	"cmp"
	"errors"
	"slices"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// Shared sessions (Config.SharedSessions, on in a NATS cluster) let a load
// balancer send any request of a client to any node. The rule: the session
// store is where a session lives whenever no node holds it live, and a
// node holds a session live only while a websocket of the client is
// attached to it or while it is answering the client's long-polling
// /meta/connect.
//
//   - A handshake saves the new session (no subscription, cursor = the
//     broker's last sequence number).
//   - A node that gets a /meta/connect for a session it does not hold live
//     adopts it from the store: subscriptions and cursor, a replay of
//     everything after the cursor, then live delivery. A websocket keeps
//     the session on that node (the record is deleted: the node's copy is
//     the truth until the socket closes, when it is saved again); a
//     long-poll gives it back to the store, with the new cursor, before
//     its answer is written.
//   - Subscribe, unsubscribe and publish for a session not held live here
//     work on the stored record.
//   - A copy not held live queues nothing: whoever serves the next connect
//     replays from the stored cursor.
//
// Faye needs this even over websocket: it handshakes over HTTP and opens
// its websocket afterwards, which a load balancer without stickiness may
// send to another node.

// isLive reports whether this node holds the session live.
func (ss *session) isLive() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.live
}

// loadRecord returns the stored session, counting store failures.
func (s *Server) loadRecord(id string) (broker.Session, bool) {
	st, err := s.broker.Sessions().Load(s.ctx, id)
	if err != nil {
		if !errors.Is(err, broker.ErrNoSession) {
			s.met.brokerErrors.Inc()
			s.log.Warn("load session failed", "client", id, "err", err)
		}
		return broker.Session{}, false
	}
	return st, true
}

// saveRecord stores the session as this node has it.
func (s *Server) saveRecord(ss *session) {
	ss.mu.Lock()
	if ss.closed || ss.released {
		ss.mu.Unlock()
		return
	}
	snap := ss.snapshotLocked(s.cfg.NodeID, s.cfg.Now())
	ss.loaded = snap.SavedAt
	ss.mu.Unlock()
	if err := s.broker.Sessions().Save(s.ctx, snap); err != nil {
		s.met.brokerErrors.Inc()
		s.log.Warn("save session failed", "client", ss.id, "err", err)
	}
}

// identityOf rebuilds a stored session's identity, or refuses it when this
// node would not have accepted it (an anonymous session on a node that
// requires tokens, or an expired token).
func (s *Server) identityOf(st broker.Session) (Identity, bool) {
	ident := Identity{Anonymous: len(s.cfg.AuthSecret) == 0, Subject: st.Subject, Grants: st.Grants, Expires: st.AuthExpires}
	if !ident.Anonymous && (st.Subject == "" || (!st.AuthExpires.IsZero() && s.cfg.Now().After(st.AuthExpires))) {
		return ident, false
	}
	return ident, true
}

// copyFromRecord makes this node's copy of the session match st: its
// identity, subscriptions (the index follows) and cursor. It creates the
// copy when there is none. What the copy had queued is dropped: st's
// cursor is where the client is.
func (s *Server) copyFromRecord(st broker.Session, ss *session) *session {
	ident, ok := s.identityOf(st)
	if !ok {
		s.met.restored.WithLabelValues("refused").Inc()
		return nil
	}
	var subs []string
	for _, p := range st.Subscriptions {
		if s.cfg.Rules.canSubscribe(ident, p) && !slices.Contains(subs, p) {
			subs = append(subs, p)
		}
	}
	if ss == nil {
		ss = &session{id: st.ClientID, srv: s, ident: ident, lastConnect: s.cfg.Now()}
		s.mu.Lock()
		if have := s.sessions[st.ClientID]; have != nil {
			ss = have
		} else {
			s.sessions[st.ClientID] = ss
		}
		n := len(s.sessions)
		s.mu.Unlock()
		s.met.sessions.Set(float64(n))
	}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return nil
	}
	old := ss.subs
	ss.ident = ident
	ss.subs = subs
	ss.cursor, ss.given, ss.acked, ss.pollID = st.Cursor, st.Cursor, st.Cursor, st.LastConnect
	if st.Given > st.Cursor {
		ss.cursor, ss.given = st.Given, st.Given
	}
	ss.queue, ss.pending = nil, nil
	ss.loaded = st.SavedAt
	ss.mu.Unlock()
	for _, p := range old {
		if !slices.Contains(subs, p) {
			s.indexRemove(ss, p)
		}
	}
	for _, p := range subs {
		if !slices.Contains(old, p) {
			s.indexAdd(ss, p)
		}
	}
	return ss
}

// sharedCopy returns this node's up-to-date copy of a session it does not
// hold live, for a subscribe, unsubscribe or publish; nil when the store
// has no such session.
func (s *Server) sharedCopy(id string, ss *session) *session {
	st, ok := s.loadRecord(id)
	if !ok {
		return nil
	}
	return s.copyFromRecord(st, ss)
}

// adopt takes a session over from the store to serve a /meta/connect: the
// copy is brought up to date, goes live, and replays everything after the
// stored cursor before live messages. A websocket keeps the session here,
// so its record is deleted.
func (s *Server) adopt(b *batch, id, connectID string, ss *session) *session {
	st, ok := s.loadRecord(id)
	if !ok {
		if ss != nil && ss.isLive() {
			return ss
		}
		s.met.restored.WithLabelValues("unknown").Inc()
		return nil
	}
	ss = s.copyFromRecord(st, ss)
	if ss == nil {
		return nil
	}
	ss.mu.Lock()
	if ss.pollID != "" && connectID == ss.pollID {
		// the client repeats the connect whose answer it never got
		ss.cursor, ss.given = ss.acked, ss.acked
	}
	from := ss.given
	ss.acked, ss.pollID = from, ""
	ss.live = true
	ss.replaying++
	subs := slices.Clone(ss.subs)
	ss.mu.Unlock()
	var replay []outMsg
	if len(subs) > 0 {
		hist, err := s.broker.History(s.ctx, subs, from)
		switch {
		case err != nil:
			if !errors.Is(err, broker.ErrHistoryGone) {
				s.met.brokerErrors.Inc()
			}
			s.met.restored.WithLabelValues("gone").Inc()
			s.log.Warn("adopted session without replay", "client", id, "cursor", from, "err", err)
		default:
			s.met.restored.WithLabelValues("ok").Inc()
			for _, h := range hist {
				replay = append(replay, outMsg{seq: h.Seq, published: h.Published.UnixNano(), b: s.encodeDelivery(h)})
			}
		}
	}
	if b.transport == bayeux.ConnTypeWebSocket {
		if err := s.broker.Sessions().Delete(s.ctx, id); err != nil {
			s.met.brokerErrors.Inc()
		}
	}
	b.after = append(b.after, func() { ss.finishReplay(replay) })
	return ss
}

// finishPoll gives a long-polling session back to the store once its
// connect's answer is taken, before the answer is written: the client's
// next request may reach any node. Subscriptions another node changed
// meanwhile are merged in, and what they matched while this node held the
// session is added to the answer.
func (s *Server) finishPoll(ss *session, out []outMsg) []outMsg {
	mu := s.shareLock(ss.id)
	mu.Lock()
	defer mu.Unlock()
	ss.mu.Lock()
	if ss.closed || ss.released || ss.ws != nil {
		ss.mu.Unlock()
		return out
	}
	ss.live = false
	ss.queue, ss.pending = nil, nil
	ss.pollID = ss.connectID
	loaded := ss.loaded
	mine := slices.Clone(ss.subs)
	ss.mu.Unlock()

	if st, ok := s.loadRecord(ss.id); ok && !st.SavedAt.Equal(loaded) {
		var added []string
		for _, p := range st.Subscriptions {
			if !slices.Contains(mine, p) {
				added = append(added, p)
			}
		}
		if len(added) > 0 {
			if hist, err := s.broker.History(s.ctx, added, st.Cursor); err == nil {
				for _, h := range hist {
					if !matchesAny(mine, h.Channel) {
						out = append(out, outMsg{seq: h.Seq, published: h.Published.UnixNano(), b: s.encodeDelivery(h)})
					}
				}
				slices.SortStableFunc(out, func(a, b outMsg) int { return cmp.Compare(a.seq, b.seq) })
			}
		}
		ss.mu.Lock()
		for _, m := range out {
			if m.seq > ss.given {
				ss.given = m.seq
			}
		}
		ss.mu.Unlock()
		s.copySubs(ss, st.Subscriptions)
	}
	s.saveRecord(ss)
	return out
}

// copySubs sets the session's subscriptions to subs, index included.
func (s *Server) copySubs(ss *session, subs []string) {
	ss.mu.Lock()
	old := ss.subs
	ss.subs = slices.Clone(subs)
	ss.mu.Unlock()
	for _, p := range old {
		if !slices.Contains(subs, p) {
			s.indexRemove(ss, p)
		}
	}
	for _, p := range subs {
		if !slices.Contains(old, p) {
			s.indexAdd(ss, p)
		}
	}
}
