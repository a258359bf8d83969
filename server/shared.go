package server

import (
	"cmp"
	"errors"
	"slices"
	"time"

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
//     work on the stored record. So do subscribe and unsubscribe on a node
//     answering the session's long-poll (the record stays in the store
//     meanwhile), besides changing the node's copy.
//   - A copy not held live queues nothing: whoever serves the next connect
//     replays from the stored cursor.
//
// Several nodes can change one record at once (a client's subscribe on
// one node while its long-poll ends on another), so every change of a
// record that exists is a compare-and-set (updateRecord): read the record
// and its revision, apply this node's change to the record as it is
// (a subscribe adds its patterns, an unsubscribe removes them, the end of
// a long-poll sets the cursor and takes the record's subscriptions), write
// it if the revision is unchanged, and otherwise do it again. A blind save
// is only for a node whose copy is the truth: a handshake, a websocket
// that closes. A change that keeps losing fails the request with an error
// the client sees.
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
	st, rev, err := s.readRecord(id)
	return st, err == nil && rev != 0
}

// readRecord returns the stored session and its revision: revision 0 when
// there is none. Store failures are counted and logged.
func (s *Server) readRecord(id string) (broker.Session, uint64, error) {
	st, rev, err := s.broker.Sessions().LoadRev(s.ctx, id)
	switch {
	case errors.Is(err, broker.ErrNoSession):
		return broker.Session{}, 0, nil
	case err != nil:
		s.met.brokerErrors.Inc()
		s.log.Warn("load session failed", "client", id, "err", err)
		return broker.Session{}, 0, err
	}
	return st, rev, nil
}

// recordTries bounds updateRecord's attempts: each lost one means another
// node changed the record meanwhile, which a client's own requests make
// rare beyond one or two.
const recordTries = 10

// Errors of updateRecord.
var (
	errNoRecord   = errors.New("shared session: no stored record")
	errRecordBusy = errors.New("shared session: stored record kept changing")
)

// updateRecord changes the stored record of session id with
// compare-and-set: change gets the record as it is (exists false and a
// zero record when there is none) and edits it, or returns false to leave
// it alone (updateRecord then returns errNoRecord); when another node wrote
// the record between the read and the write, the record is read again and
// change applied again. The first attempt uses st and rev (rev 0: no
// record) when known is set, saving a read. It returns the record stored.
func (s *Server) updateRecord(id string, st broker.Session, rev uint64, known bool,
	change func(st *broker.Session, exists bool) bool) (broker.Session, error) {
	for range recordTries {
		if !known {
			var err error
			if st, rev, err = s.readRecord(id); err != nil {
				return st, err
			}
		}
		known = false
		if !change(&st, rev != 0) {
			return st, errNoRecord
		}
		st.ClientID, st.Node, st.SavedAt = id, s.cfg.NodeID, s.cfg.Now()
		_, err := s.broker.Sessions().Update(s.ctx, st, rev)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, broker.ErrSessionChanged) {
			s.met.brokerErrors.Inc()
			s.log.Warn("save session failed", "client", id, "err", err)
			return st, err
		}
	}
	s.met.brokerErrors.Inc()
	s.log.Error("save session failed", "client", id, "err", errRecordBusy, "tries", recordTries)
	return st, errRecordBusy
}

// saveRecord stores the session as this node has it, replacing whatever is
// stored: for a node whose copy is the truth (see the header comment).
// held says the node held the client (a websocket that closed), not only
// its handshake (broker.Session.Held).
func (s *Server) saveRecord(ss *session, held bool) {
	ss.mu.Lock()
	if ss.closed || ss.released {
		ss.mu.Unlock()
		return
	}
	snap := ss.snapshotLocked(s.cfg.NodeID, s.cfg.Now())
	snap.Held = held
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

// allowedSubs returns the patterns of a stored session that ident may
// subscribe to on this node, each once.
func (s *Server) allowedSubs(ident Identity, patterns []string) []string {
	var subs []string
	for _, p := range patterns {
		if s.cfg.Rules.canSubscribe(ident, p) && !slices.Contains(subs, p) {
			subs = append(subs, p)
		}
	}
	return subs
}

// addSessionOnce adds ss to the node's sessions unless one with its id is
// there already, and returns the one that is.
func (s *Server) addSessionOnce(ss *session) *session {
	s.mu.Lock()
	if have := s.sessions[ss.id]; have != nil {
		s.mu.Unlock()
		return have
	}
	s.sessions[ss.id] = ss
	n := len(s.sessions)
	s.mu.Unlock()
	s.met.sessions.Set(float64(n))
	return ss
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
	subs := s.allowedSubs(ident, st.Subscriptions)
	if ss == nil {
		ss = s.addSessionOnce(&session{id: st.ClientID, srv: s, lastConnect: s.since()})
	}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return nil
	}
	old := ss.subs
	ss.setIdentity(ident)
	ss.subs = subs
	ss.setCursorLocked(st.Cursor, st.LastConnect)
	if st.Given > st.Cursor {
		ss.cursor, ss.given = st.Given, st.Given
	}
	ss.queue = nil
	ss.dropPendingLocked()
	ss.mu.Unlock()
	s.reindex(ss, old, subs)
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

// takeRecord reads the stored session for adopt; for a websocket, which
// keeps the session here, it also deletes the record, on condition that no
// other node changed it after the read (a subscribe there would be lost
// with the record otherwise).
func (s *Server) takeRecord(id string, remove bool) (broker.Session, bool) {
	for range recordTries {
		st, rev, err := s.readRecord(id)
		if err != nil || rev == 0 {
			return st, false
		}
		if !remove {
			return st, true
		}
		err = s.broker.Sessions().DeleteRev(s.ctx, id, rev)
		if errors.Is(err, broker.ErrSessionChanged) {
			continue
		}
		if err != nil {
			// the copy goes live anyway, as before the store failed: a
			// stale record is what the failure leaves behind.
			s.met.brokerErrors.Inc()
			s.log.Warn("delete session failed", "client", id, "err", err)
		}
		return st, true
	}
	s.met.brokerErrors.Inc()
	s.log.Error("adopt session failed", "client", id, "err", errRecordBusy, "tries", recordTries)
	return broker.Session{}, false
}

// sharedSubscription serves a subscribe or unsubscribe with shared
// sessions: on the node's copy (brought up to date from the store when it
// is not held live here), and on the stored record unless a websocket here
// holds the session (no record then). The record gets only this request's
// change, applied to the record as it is; the copy of a session not held
// live then matches what was stored.
func (s *Server) sharedSubscription(b *batch, m *bayeux.Message, ss *session) *bayeux.Message {
	apply := func(ss *session) *bayeux.Message {
		if m.Channel == bayeux.ChannelSubscribe {
			return s.subscribe(b, m, ss)
		}
		return s.unsubscribe(m, ss)
	}
	var (
		st   broker.Session
		rev  uint64
		live bool
	)
	if ss != nil {
		ss.mu.Lock()
		live = ss.live
		ws := ss.ws != nil
		ss.mu.Unlock()
		if live && ws {
			return apply(ss)
		}
	}
	if !live {
		var err error
		if st, rev, err = s.readRecord(m.ClientID); err != nil {
			return subscriptionFailed(m)
		}
		if rev == 0 {
			return apply(nil) // unknown client
		}
		if ss = s.copyFromRecord(st, ss); ss == nil {
			return apply(nil)
		}
	}
	ss.mu.Lock()
	before := ss.snapshotLocked("", time.Time{})
	ss.mu.Unlock()
	r := apply(ss)
	if r.Error != "" {
		return r
	}
	ss.mu.Lock()
	after := ss.snapshotLocked("", time.Time{})
	ss.mu.Unlock()
	added, removed := diffSubs(before.Subscriptions, after.Subscriptions)
	// a subscribe with ext.since moves a stored session's cursor back
	// (see subscribe)
	moved := !live && (after.Cursor != before.Cursor || after.Given != before.Given || after.LastConnect != before.LastConnect)
	if len(added) == 0 && len(removed) == 0 && !moved {
		return r
	}
	saved, err := s.updateRecord(m.ClientID, st, rev, !live, func(st *broker.Session, exists bool) bool {
		if !exists {
			return false
		}
		st.Subscriptions = slices.DeleteFunc(st.Subscriptions, func(p string) bool { return slices.Contains(removed, p) })
		for _, p := range added {
			if !slices.Contains(st.Subscriptions, p) {
				st.Subscriptions = append(st.Subscriptions, p)
			}
		}
		if moved {
			st.Cursor, st.Given, st.LastConnect = after.Cursor, after.Given, after.LastConnect
		}
		return true
	})
	switch {
	case err == nil && !live:
		s.copyFromRecord(saved, ss)
	case err == nil, live && errors.Is(err, errNoRecord):
		// a long-poll answered here: the copy has the change, and
		// finishPoll stores the rest
	case errors.Is(err, errNoRecord):
		// the client left, or a websocket took the session elsewhere
		s.copySubs(ss, before.Subscriptions)
		return apply(nil)
	default:
		s.copySubs(ss, before.Subscriptions)
		return subscriptionFailed(m)
	}
	return r
}

// subscriptionFailed is the reply to a subscribe or unsubscribe that could
// not be stored: the client sees it failed and may try again.
func subscriptionFailed(m *bayeux.Message) *bayeux.Message {
	r := newReply(m)
	r.Subscription = m.Subscription
	r.Error = bayeux.ErrServer("Session store unavailable").Error()
	return r
}

// diffSubs returns the patterns in after but not before, and those in
// before but not after.
func diffSubs(before, after []string) (added, removed []string) {
	for _, p := range after {
		if !slices.Contains(before, p) {
			added = append(added, p)
		}
	}
	for _, p := range before {
		if !slices.Contains(after, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}

// adopt takes a session over from the store to serve a /meta/connect: the
// copy is brought up to date, goes live, and replays everything after the
// stored cursor before live messages. A websocket keeps the session here,
// so its record is deleted.
//
// missing reports that the store had no record (nor this node a live
// copy): the caller may wait for one on its way (see connect).
func (s *Server) adopt(b *batch, id, connectID string, got clientCursor, ss *session) (_ *session, missing bool) {
	remove := b.transport == bayeux.ConnTypeWebSocket
	st, ok := s.takeRecord(id, remove)
	if !ok {
		if ss != nil && ss.isLive() {
			return ss, false
		}
		s.log.Debug("adopt: no stored session", "client", id, "copy", ss != nil)
		return nil, true
	}
	had := ss != nil
	ss = s.copyFromRecord(st, ss)
	if ss == nil {
		s.log.Debug("adopt: copy refused or closed", "client", id, "copy", had)
		if _, allowed := s.identityOf(st); remove && allowed {
			// a drain released this node's copy while the record was
			// read and deleted: the record goes back, for the node the
			// client is sent to (unless one was stored meanwhile).
			_, _ = s.updateRecord(id, broker.Session{}, 0, true, func(cur *broker.Session, exists bool) bool {
				if exists {
					return false
				}
				*cur = st
				return true
			})
		}
		return nil, false
	}
	from := resumeFrom(st, connectID, got)
	ss.mu.Lock()
	ss.setCursorLocked(from, "")
	ss.live = true
	ss.arrived = s.since()
	ss.more().replaying++
	subs := slices.Clone(ss.subs)
	ss.mu.Unlock()
	if n := s.replayStored(b, ss, subs, from, "adopted"); n < 0 {
		s.endTakeOver(ss, n)
		return nil, false
	}
	// a websocket keeps the session here; a long-poll gives it back to
	// the store at its answer
	s.countReceived(ss, st, remove)
	s.log.Debug("session adopted", "client", id, "from", st.Node, "transport", b.transport, "cursor", from)
	return ss, false
}

// finishPoll gives a long-polling session back to the store once its
// connect's answer is taken, before the answer is written: the client's
// next request may reach any node. The record gets this node's progress
// (cursor, given, the connect's id) and keeps its own subscriptions, which
// hold every change made meanwhile, here or on other nodes; what those
// this copy lacks matched while this node held the session is added to
// the answer. When the record is gone (the client disconnected, or took
// the session over with a websocket elsewhere) nothing is stored.
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
	ss.queue = nil
	ss.dropPendingLocked()
	r := ss.more()
	r.pollID = r.connectID
	given := ss.given
	mine := slices.Clone(ss.subs)
	ss.mu.Unlock()

	answer := out
	saved, err := s.updateRecord(ss.id, broker.Session{}, 0, false, func(st *broker.Session, exists bool) bool {
		if !exists {
			return false
		}
		answer = s.withAdded(out, mine, st.Subscriptions, st.Cursor)
		ss.mu.Lock()
		ss.given = given
		for _, m := range answer {
			ss.given = max(ss.given, m.seq)
		}
		snap := ss.snapshotLocked(s.cfg.NodeID, s.cfg.Now())
		ss.mu.Unlock()
		st.Cursor, st.Given, st.LastConnect = snap.Cursor, snap.Given, snap.LastConnect
		return true
	})
	if err != nil {
		// the answer goes out as it was: the client's next connect is
		// served from what the store has, if anything.
		return out
	}
	s.copySubs(ss, saved.Subscriptions)
	return answer
}

// withAdded returns out with the messages after cursor on the patterns of
// subs that mine lacks (subscriptions made elsewhere while this node held
// the session), in sequence order.
func (s *Server) withAdded(out []outMsg, mine, subs []string, cursor uint64) []outMsg {
	var added []string
	for _, p := range subs {
		if !slices.Contains(mine, p) {
			added = append(added, p)
		}
	}
	if len(added) == 0 {
		return out
	}
	hist, err := s.broker.History(s.ctx, added, cursor)
	if err != nil {
		return out
	}
	out = slices.Clone(out)
	for _, h := range hist {
		if !matchesAny(mine, h.Channel) {
			out = append(out, outMsg{seq: h.Seq, published: h.Published.UnixNano(), b: s.encodeDelivery(h)})
		}
	}
	slices.SortStableFunc(out, func(a, b outMsg) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// copySubs sets the session's subscriptions to subs, index included.
func (s *Server) copySubs(ss *session, subs []string) {
	ss.mu.Lock()
	old := ss.subs
	ss.subs = slices.Clone(subs)
	ss.mu.Unlock()
	s.reindex(ss, old, subs)
}

// reindex moves ss in the index from the patterns old to subs.
func (s *Server) reindex(ss *session, old, subs []string) {
	for _, p := range old {
		if !slices.Contains(subs, p) {
			s.indexRemove(ss, p)
		}
	}
	var added []string
	for _, p := range subs {
		if !slices.Contains(old, p) {
			added = append(added, p)
		}
	}
	s.indexAddAll(ss, added)
}
