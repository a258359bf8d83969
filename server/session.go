package server

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"slices"
	"strconv"
	"sync"
	"time"

	"wsfleet/bayeux"
	"wsfleet/broker"
)

// newClientID returns 160 random bits: a client id is the only credential
// of an anonymous session, so it must not be guessable.
func newClientID() string {
	var b [20]byte
	rand.Read(b[:])
	return base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// outMsg is one frame element waiting for a client: an encoded Bayeux
// message, with the broker sequence number (0 for replies) and when the
// broker accepted it (for the latency histogram).
type outMsg struct {
	seq       uint64
	published int64 // unix nanos; 0 for replies
	b         []byte
	// alone, when set, is the websocket frame of this message sent by
	// itself (the array [b]), built once per broker message and shared by
	// all its subscribers: a socket that has just this message waiting is
	// written from it, with nothing built or copied per delivery.
	alone *[]byte
}

// session is one Bayeux client held by this node. Its fields are guarded
// by mu; it is kept small because a node holds tens of thousands of them.
type session struct {
	id    string
	srv   *Server
	ident Identity

	mu   sync.Mutex
	subs []string // patterns, a handful per client
	// queue holds messages not yet handed to the client; it is bounded by
	// Config.QueueLimit (a slow consumer is disconnected).
	queue []outMsg
	// cursor is the highest sequence number put in the queue (or buffered
	// during a replay); live messages at or below it are duplicates.
	cursor uint64
	// given is the highest sequence number handed to the transport: what a
	// saved session resumes from.
	given uint64
	// acked and pollID (long-polling with shared sessions): where the
	// client was before the answer to the connect with id pollID, whose
	// answer may still be lost (see broker.Session.LastConnect).
	acked  uint64
	pollID string
	// connectID is the id of the /meta/connect being answered.
	connectID string
	// lastAnswer is what the answer to the long-polling connect pollID
	// delivered, kept (without shared sessions) until the client's next
	// connect shows whether the answer arrived.
	lastAnswer []outMsg
	// replaying > 0 while a replay is being fetched; live messages wait in
	// pending meanwhile so that they come after the replay.
	replaying int
	pending   []outMsg

	ws      *wsConn      // attached websocket, nil when none
	writing bool         // a writer has the websocket: a goroutine, or the flusher
	ready   bool         // listed for the flusher (flush.go)
	held    *heldConnect // the /meta/connect this node is holding
	// claim is the websocket whose /meta/connect was accepted for this
	// session and is about to be attached (shared sessions): a socket of
	// the session that closes meanwhile must not give the session back to
	// the store, or the connect attaches to a copy that is no longer live.
	claim *wsConn
	// connects counts the /meta/connects answered at once since
	// connectsFrom, which bounds how fast a client may cycle them.
	connects     int
	connectsFrom time.Time
	wake         chan struct{} // long-polling: signalled when the queue fills

	// live is set while this node holds the session: always without
	// shared sessions; with them, while a websocket is attached or a
	// long-poll is being answered (see shared.go). A copy that is not live
	// queues nothing.
	live bool

	lastConnect time.Time // last /meta/connect received or answered
	// arrived is when this node got the session: its handshake, or its
	// take-over from the store. received is set when the take-over was
	// from another node (countReceived). A shed releases the sessions
	// that never moved first, then the newest.
	arrived  time.Time
	received bool
	// arriving: a long-poll answered here took the session from another
	// node's record; a websocket that keeps it here next makes it
	// received (countReceived).
	arriving bool
	closed   bool // removed from the node
	released bool // handed off by a drain; deliver nothing more
}

// heldConnect is a /meta/connect reply waiting to be sent on a websocket
// when its hold ends.
type heldConnect struct {
	reply []byte
	idx   int // its place in holdQueue's heap, -1 once out; under holdQueue.mu
}

// stampSeq returns payload (a JSON object without ext) with "ext":{"seq":N}
// added, which is how a client learns its cursor.
func stampSeq(payload []byte, seq uint64) []byte {
	p := bytes.TrimSpace(payload)
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return payload
	}
	out := make([]byte, 0, len(p)+32)
	out = append(out, p[:len(p)-1]...)
	if len(bytes.TrimSpace(p[1:len(p)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"ext":{"seq":`...)
	out = strconv.AppendUint(out, seq, 10)
	out = append(out, "}}"...)
	return out
}

// deliver queues a live broker message. It runs on the broker's delivery
// goroutine and never blocks.
func (s *session) deliver(m outMsg) {
	s.mu.Lock()
	if s.closed || s.released || !s.live {
		s.mu.Unlock()
		return
	}
	// at or below the cursor: given already, or (after a handoff) by the
	// node that held the session before; brokers deliver to each node at
	// its own pace, so a message can reach this node after the session.
	if m.seq <= s.cursor {
		s.mu.Unlock()
		return
	}
	if s.replaying > 0 {
		s.pending = append(s.pending, m)
		s.mu.Unlock()
		return
	}
	s.cursor = m.seq
	if s.ws != nil && !s.writing && s.srv.cfg.Faults.Delay == 0 && len(s.queue) < s.srv.cfg.QueueLimit {
		// the socket is free: queue, and list the session (once) for
		// the flusher, which writes without blocking, rather than start
		// a writer
		s.queue = append(s.queue, m)
		list := !s.ready
		s.ready = true
		s.mu.Unlock()
		if list {
			s.srv.flusher.add(s.srv, s)
		}
		return
	}
	overflow := s.pushLocked(m)
	s.mu.Unlock()
	if overflow {
		s.srv.slowConsumer(s)
	}
}

// pushLocked appends to the queue and wakes the transport. It reports an
// overflow, which the caller turns into a disconnect outside the lock.
func (s *session) pushLocked(m outMsg) bool {
	if m.seq != 0 && len(s.queue) >= s.srv.cfg.QueueLimit {
		return true
	}
	s.queue = append(s.queue, m)
	s.kickLocked()
	return false
}

// kickLocked makes the transport send what is queued: it starts the
// websocket writer when none runs, or wakes a waiting long-poll.
func (s *session) kickLocked() {
	if s.ws != nil {
		if !s.writing {
			s.writing = true
			go s.writeLoop(nil, nil, 0)
		}
		return
	}
	if s.wake != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// takeLocked removes and returns what is queued, advancing given.
func (s *session) takeLocked() []outMsg {
	q := s.queue
	s.queue = nil
	for _, m := range q {
		if m.seq > s.given {
			s.given = m.seq
		}
	}
	return q
}

// snapshot is the session as another node needs it to take over.
func (s *session) snapshotLocked(node string, now time.Time) broker.Session {
	cursor := s.given
	var given uint64
	if s.pollID != "" && s.acked < s.given {
		cursor, given = s.acked, s.given
	}
	return broker.Session{
		ClientID:      s.id,
		Subscriptions: slices.Clone(s.subs),
		Cursor:        cursor,
		Given:         given,
		LastConnect:   s.pollID,
		Subject:       s.ident.Subject,
		Grants:        s.ident.Grants,
		AuthExpires:   s.ident.Expires,
		Node:          node,
		SavedAt:       now,
	}
}

// hasSubLocked reports whether the session subscribed to pattern.
func (s *session) hasSubLocked(p string) bool { return slices.Contains(s.subs, p) }

// matchesAny reports whether channel matches one of the patterns.
func matchesAny(subs []string, channel string) bool {
	for _, p := range subs {
		if bayeux.Match(p, channel) {
			return true
		}
	}
	return false
}

// keepAnswer remembers a long-polling answer until the next connect: a
// client that gave up on it repeats the same connect (faye and halley
// resend the message, id included), and gets it again.
func (ss *session) keepAnswer(q []outMsg) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.pollID, ss.lastAnswer, ss.acked = ss.connectID, nil, ss.given
	for _, m := range q {
		if m.seq != 0 {
			ss.lastAnswer = append(ss.lastAnswer, m)
			// where the client was before this answer
			ss.acked = min(ss.acked, m.seq-1)
		}
	}
}

// resendLostAnswerLocked queues the last long-polling answer again when
// connectID repeats the connect it answered, or, for a client that says
// how far it got (ext.since, as the Go client does on the first connect
// after an error; it numbers every request anew), the part of that answer
// it does not have. It forgets the answer either way: a new connect
// acknowledges it.
func (ss *session) resendLostAnswerLocked(connectID string, since uint64, hasSince bool) {
	switch {
	case ss.pollID == "" || len(ss.lastAnswer) == 0:
	case connectID == ss.pollID:
		ss.queue = append(slices.Clone(ss.lastAnswer), ss.queue...)
	case hasSince:
		var lost []outMsg
		for _, m := range ss.lastAnswer {
			if m.seq > since {
				lost = append(lost, m)
			}
		}
		ss.queue = append(lost, ss.queue...)
	}
	ss.pollID, ss.lastAnswer = "", nil
}
