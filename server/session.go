package server

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"slices"
	"strconv"
	"strings"
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
// by mu; it is kept small because a node holds tens of thousands of them:
// what only some sessions need (a token's identity, long-polling's state,
// a replay under way, the count of connects answered at once) is out of
// line, allocated when first needed. An idle websocket session of an
// anonymous client holds none of it (160 bytes where it was 400 with all
// of it in line).
type session struct {
	id  string
	srv *Server
	// ident is who the client is, nil for an anonymous one (identity
	// returns the value either way).
	ident *Identity

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

	ws   *wsConn      // attached websocket, nil when none
	held *heldConnect // the /meta/connect this node is holding
	// claim is the websocket whose /meta/connect was accepted for this
	// session and is about to be attached (shared sessions): a socket of
	// the session that closes meanwhile must not give the session back to
	// the store, or the connect attaches to a copy that is no longer live.
	claim *wsConn
	// rare is the state few sessions need (sessionRare), nil until some
	// of it is set (more).
	rare *sessionRare

	lastConnect time.Duration // last /meta/connect received or answered (Server.since)
	// arrived is when this node got the session: its handshake, or its
	// take-over from the store. received is set when the take-over was
	// from another node (countReceived). A shed releases the sessions
	// that never moved first, then the newest.
	arrived time.Duration // (Server.since)

	writing  bool // a writer has the websocket: a goroutine, or the flusher
	ready    bool // listed for the flusher (flush.go)
	received bool
	// arriving: a long-poll answered here took the session from another
	// node's record; a websocket that keeps it here next makes it
	// received (countReceived).
	arriving bool
	// live is set while this node holds the session: always without
	// shared sessions; with them, while a websocket is attached or a
	// long-poll is being answered (see shared.go). A copy that is not live
	// queues nothing.
	live     bool
	closed   bool // removed from the node
	released bool // handed off by a drain; deliver nothing more
}

// sessionRare is the part of a session that only some sessions need, out
// of line so that an idle websocket session does not carry it. Guarded by
// the session's mu.
type sessionRare struct {
	// acked and pollID (long-polling with shared sessions): where the
	// client was before the answer to the connect with id pollID, whose
	// answer may still be lost (see broker.Session.LastConnect).
	acked  uint64
	pollID string
	// connectID is the id of the long-polling /meta/connect being
	// answered.
	connectID string
	// lastAnswer is what the answer to the long-polling connect pollID
	// delivered, kept (without shared sessions) until the client's next
	// connect shows whether the answer arrived.
	lastAnswer []outMsg
	wake       chan struct{} // long-polling: signalled when the queue fills

	// replaying > 0 while a replay is being fetched; live messages wait in
	// pending meanwhile so that they come after the replay.
	replaying int
	pending   []outMsg

	// connects counts the /meta/connects answered at once since
	// connectsFrom, which bounds how fast a client may cycle them.
	connects     int
	connectsFrom time.Time
}

// more returns the session's rare state, allocating it on first use.
// Callers hold mu.
func (s *session) more() *sessionRare {
	if s.rare == nil {
		s.rare = &sessionRare{}
	}
	return s.rare
}

// tidyLocked lets the rare state go when nothing in it is set any more
// (acked means nothing without pollID): a session taken over from another
// node, which came with a replay, ends up as small as a new one.
func (s *session) tidyLocked() {
	r := s.rare
	if r != nil && r.pollID == "" && r.connectID == "" && r.lastAnswer == nil && r.wake == nil &&
		r.replaying == 0 && r.pending == nil && r.connects == 0 && r.connectsFrom.IsZero() {
		s.rare = nil
	}
}

// wakeLocked is the waiting long-poll's channel, nil when none.
func (s *session) wakeLocked() chan struct{} {
	if s.rare == nil {
		return nil
	}
	return s.rare.wake
}

// replayingLocked reports whether a replay is being fetched.
func (s *session) replayingLocked() bool { return s.rare != nil && s.rare.replaying > 0 }

// pollIDLocked is the long-polling connect whose answer may be lost.
func (s *session) pollIDLocked() string {
	if s.rare == nil {
		return ""
	}
	return s.rare.pollID
}

// dropPendingLocked forgets the live messages held back for a replay.
func (s *session) dropPendingLocked() {
	if s.rare != nil {
		s.rare.pending = nil
	}
}

// setCursorLocked moves the session to cursor c: queued from there,
// handed over up to there, and (long-polling) acknowledged up to there,
// with the poll id whose answer may be lost.
func (s *session) setCursorLocked(c uint64, pollID string) {
	s.cursor, s.given = c, c
	if s.rare != nil || pollID != "" {
		r := s.more()
		r.acked, r.pollID = c, pollID
	}
}

// anonymous is the identity of a client without a token.
var anonymous = Identity{Anonymous: true}

// identity returns who the client is.
func (s *session) identity() Identity {
	if s.ident == nil {
		return anonymous
	}
	return *s.ident
}

// lockedIdentity is identity for a caller that does not hold mu.
func (s *session) lockedIdentity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity()
}

// setIdentity records who the client is; an anonymous client's takes no
// memory.
func (s *session) setIdentity(id Identity) {
	if id.Anonymous && id.Subject == "" && id.Grants == nil && id.Expires.IsZero() {
		s.ident = nil
		return
	}
	s.ident = &id
}

// callIdentity is the identity an extension's Call carries for the
// session: the session's own, or a fresh anonymous one (an extension that
// changes it changes no other session's).
func (s *session) callIdentity() *Identity {
	if s.ident == nil {
		id := anonymous
		return &id
	}
	return s.ident
}

// heldConnect is a /meta/connect reply waiting to be sent on a websocket
// when its hold ends. The replies of idle sessions mostly differ only in
// their clientId, so what is held is the reply with the session's id cut
// out, shared with every other session whose reply is the same
// (replyTemplates): about 150 bytes a session less.
type heldConnect struct {
	// reply is the reply, or with at > 0 the reply without the session's
	// client id, which goes back in at at-1 (bytes).
	reply []byte
	at    int32
	idx   int32 // its place in holdQueue's heap, -1 once out; under holdQueue.mu
}

// bytes returns the reply of the session with client id id.
func (h *heldConnect) bytes(id string) []byte {
	if h.at == 0 {
		return h.reply
	}
	at := int(h.at - 1)
	b := make([]byte, 0, len(h.reply)+len(id))
	b = append(b, h.reply[:at]...)
	b = append(b, id...)
	return append(b, h.reply[at:]...)
}

// internTable keeps one copy of each channel pattern sessions subscribe
// to, so that a session's subscriptions point to it rather than each
// holding the copy its subscribe message was decoded into (with whatever
// shares that allocation). It forgets them all when it holds maxInterned:
// a session keeps the copy it has.
type internTable struct {
	mu sync.Mutex
	m  map[string]string
}

const maxInterned = 1 << 14

// intern returns the table's copy of s, which it adds when it has none.
func (t *internTable) intern(s string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.m[s]; ok {
		return c
	}
	if t.m == nil || len(t.m) >= maxInterned {
		t.m = make(map[string]string)
	}
	s = strings.Clone(s)
	t.m[s] = s
	return s
}

// replyTemplates interns held connect replies with the client id cut out.
// It forgets them all when it holds maxReplyTemplates (a client that
// numbers its messages by a counter of its own makes one template per
// number): a forgotten template lives on in the connects that hold it.
type replyTemplates struct {
	mu sync.Mutex
	m  map[string][]byte
}

const maxReplyTemplates = 1024

// hold returns the held form of reply b for the session with client id
// id.
func (t *replyTemplates) hold(b []byte, id string) *heldConnect {
	i := bytes.Index(b, []byte(id))
	if id == "" || i < 0 || bytes.LastIndex(b, []byte(id)) != i || len(b) > 1<<30 {
		return &heldConnect{reply: b}
	}
	tmpl := append(b[:i:i], b[i+len(id):]...)
	t.mu.Lock()
	if shared, ok := t.m[string(tmpl)]; ok {
		tmpl = shared
	} else {
		if t.m == nil || len(t.m) >= maxReplyTemplates {
			t.m = make(map[string][]byte)
		}
		tmpl = slices.Clip(tmpl)
		t.m[string(tmpl)] = tmpl
	}
	t.mu.Unlock()
	return &heldConnect{reply: tmpl, at: int32(i + 1)}
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
	if s.replayingLocked() {
		s.rare.pending = append(s.rare.pending, m)
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
	if w := s.wakeLocked(); w != nil {
		select {
		case w <- struct{}{}:
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
	pollID := s.pollIDLocked()
	if pollID != "" && s.rare.acked < s.given {
		cursor, given = s.rare.acked, s.given
	}
	ident := s.identity()
	return broker.Session{
		ClientID:      s.id,
		Subscriptions: slices.Clone(s.subs),
		Cursor:        cursor,
		Given:         given,
		LastConnect:   pollID,
		Subject:       ident.Subject,
		Grants:        ident.Grants,
		AuthExpires:   ident.Expires,
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
	r := ss.more()
	r.pollID, r.lastAnswer, r.acked = r.connectID, nil, ss.given
	for _, m := range q {
		if m.seq != 0 {
			r.lastAnswer = append(r.lastAnswer, m)
			// where the client was before this answer
			r.acked = min(r.acked, m.seq-1)
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
	r := ss.rare
	if r == nil {
		return
	}
	switch {
	case r.pollID == "" || len(r.lastAnswer) == 0:
	case connectID == r.pollID:
		ss.queue = append(slices.Clone(r.lastAnswer), ss.queue...)
	case hasSince:
		var lost []outMsg
		for _, m := range r.lastAnswer {
			if m.seq > since {
				lost = append(lost, m)
			}
		}
		ss.queue = append(lost, ss.queue...)
	}
	r.pollID, r.lastAnswer = "", nil
}
