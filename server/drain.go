package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"wsfleet/broker"
)

// DrainOptions pace a drain: the node leaves the load balancer at once (its
// readiness fails), then releases its clients spread over Window with
// jitter, never faster than MaxRate per second, and closes whatever is
// left when Deadline passes.
type DrainOptions struct {
	Window   time.Duration `json:"window"`
	MaxRate  float64       `json:"max_rate"`
	Deadline time.Duration `json:"deadline"`
}

// DefaultDrainOptions are used for what a drain request leaves out.
var DefaultDrainOptions = DrainOptions{Window: 30 * time.Second, MaxRate: 200, Deadline: 5 * time.Minute}

// drainState is a drain's progress; one drain per node lifetime.
type drainState struct {
	mu        sync.Mutex
	started   bool
	startedAt time.Time
	released  int
	done      chan struct{}
}

// StartDrain starts the drain in the background, once; later calls only
// return.
func (s *Server) StartDrain(o DrainOptions) {
	s.drain.mu.Lock()
	if s.drain.started {
		s.drain.mu.Unlock()
		return
	}
	s.drain.started = true
	s.drain.startedAt = s.cfg.Now()
	s.drain.done = make(chan struct{})
	s.drain.mu.Unlock()

	s.mu.Lock()
	s.state = StateDraining
	s.mu.Unlock()
	// a drain releases everyone: a shed that runs has nothing left to do
	s.stopShed()
	if o.Window < 0 {
		o.Window = 0
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDrainOptions.Deadline
	}
	s.log.Info("drain started", "window", o.Window, "max_rate", o.MaxRate, "deadline", o.Deadline)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runDrain(o)
	}()
}

// Drained returns a channel closed when a drain has finished: the node
// has no connection left (or its deadline passed) and its process may
// exit.
func (s *Server) Drained() <-chan struct{} { return s.drained }

// Drain starts the drain (or joins the one running) and returns when no
// connection is left or the deadline passed, or ctx ends.
func (s *Server) Drain(ctx context.Context, o DrainOptions) error {
	s.StartDrain(o)
	s.drain.mu.Lock()
	done := s.drain.done
	s.drain.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) drainStatus(conns int) DrainStatus {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	d := DrainStatus{Released: s.drain.released}
	if s.drain.started {
		t := s.drain.startedAt
		d.StartedAt = &t
		d.Remaining = conns
	}
	return d
}

// errDrainDeadline ends a drain's waits when its deadline passes.
var errDrainDeadline = errors.New("drain deadline passed")

// runDrain releases every session, paced by releaseSchedule, then waits
// for the connections to go until the deadline.
func (s *Server) runDrain(o DrainOptions) {
	defer close(s.drain.done)
	s.drain.mu.Lock()
	start := s.drain.startedAt
	s.drain.mu.Unlock()
	// ctx ends when the node closes, or with errDrainDeadline
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	deadline := s.cfg.AfterFunc(o.Deadline, func() { cancel(errDrainDeadline) })
	defer deadline.Stop()

	// Sessions whose client is connected are paced; the others (a client
	// between two long-polls, a websocket that dropped, a copy of a shared
	// session) are handed over at once: releasing them moves no one.
	s.mu.RLock()
	list := make([]*session, 0, len(s.sessions))
	var idle []*session
	for _, ss := range s.sessions {
		ss.mu.Lock()
		connected := ss.ws != nil || ss.wakeLocked() != nil
		ss.mu.Unlock()
		if connected {
			list = append(list, ss)
		} else {
			idle = append(idle, ss)
		}
	}
	s.mu.RUnlock()
	for _, ss := range idle {
		s.release(ss)
	}
	// the schedule is drawn from Rand first, then the order
	s.randMu.Lock()
	schedule := releaseSchedule(len(list), o.Window, o.MaxRate, s.cfg.Rand, start)
	s.cfg.Rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	s.randMu.Unlock()

	// A release that ran late (a timer that fired late) does not bring
	// the next one closer than the schedule's gap: the rate stays at or
	// below MaxRate, over any second, whatever the timers do.
	gap := releaseGap(o.MaxRate)
	var last time.Time
	timedOut := false
	for i, ss := range list {
		at := schedule[i]
		if !last.IsZero() && at.Sub(last) < gap {
			at = last.Add(gap)
		}
		if err := s.sleep(ctx, at.Sub(s.cfg.Now())); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			timedOut = true
			break
		}
		last = s.cfg.Now()
		s.release(ss)
	}
	// wait for the released clients' sockets to close
	for !timedOut && s.Status().Connections > 0 {
		if err := s.sleep(ctx, 20*time.Millisecond); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			timedOut = true
		}
	}
	if timedOut {
		s.log.Warn("drain deadline passed: closing what is left")
		s.mu.RLock()
		left := make([]*session, 0, len(s.sessions))
		for _, ss := range s.sessions {
			left = append(left, ss)
		}
		conns := make([]*wsConn, 0, len(s.wsConns))
		for c := range s.wsConns {
			conns = append(conns, c)
		}
		s.mu.RUnlock()
		for _, ss := range left {
			s.release(ss)
		}
		for _, c := range conns {
			c.close(wsStatusGoingAway, "node drained")
		}
	}
	s.mu.Lock()
	s.state = StateDrained
	s.mu.Unlock()
	s.log.Info("drain finished", "released", s.Status().Drain.Released, "took", s.cfg.Now().Sub(start).Round(time.Millisecond))
	close(s.drained)
}

// releaseSchedule returns the instants, from start, at which a drain
// releases its n connected clients: the window is cut into n equal slots
// and each client released at a random point of its own slot (the jitter,
// drawn from rng, n draws at most), so that the clients reconnect spread
// over the window rather than in a stampede. Two releases are never closer
// than 1/maxRate (releaseGap): a slot is at least that long, and a release
// that jitter puts at the end of its slot pushes the next one on. All
// instants lie before start + window, or start + n/maxRate when the window
// is too short for n releases at that rate. It is a pure function of its
// inputs (rng's state among them: a generator seeded alike gives the same
// schedule), and the drain's timing is what it returns.
func releaseSchedule(n int, window time.Duration, maxRate float64, rng jitterSource, start time.Time) []time.Time {
	step := releaseStep(n, window, maxRate)
	gap := releaseGap(maxRate)
	at := make([]time.Time, n)
	for i := range at {
		t := start.Add(time.Duration(i) * step)
		if step > 0 {
			t = t.Add(time.Duration(rng.Int64N(int64(step))))
		}
		if i > 0 && t.Sub(at[i-1]) < gap {
			t = at[i-1].Add(gap)
		}
		at[i] = t
	}
	return at
}

// jitterSource draws a release's place in its slot: Config.Rand, or a
// test's script.
type jitterSource interface {
	// Int64N returns a number in [0, n).
	Int64N(n int64) int64
}

// releaseStep is the slot of one release: the window spread over the n
// sessions, but never shorter than releaseGap.
func releaseStep(n int, window time.Duration, maxRate float64) time.Duration {
	var step time.Duration
	if n > 0 {
		step = window / time.Duration(n)
	}
	return max(step, releaseGap(maxRate))
}

// releaseGap is the least time between two releases: 1/maxRate, none when
// maxRate is not positive (no limit).
func releaseGap(maxRate float64) time.Duration {
	if maxRate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / maxRate)
}

// release is a drain's hand-over of one session (handOver), counted as
// the drain's.
func (s *Server) release(ss *session) {
	if !s.handOver(ss, time.Time{}, "node draining") {
		return
	}
	s.met.released.Inc()
	s.drain.mu.Lock()
	s.drain.released++
	s.drain.mu.Unlock()
}

// handOver hands a session over: no more deliveries here, what was not yet
// given to the client is dropped (the next node replays it from the
// cursor), the session is saved for any node to restore, and the client is
// told to go: its websocket is closed (faye and halley both reconnect and
// send /meta/connect with the same clientId) or its held long-poll is
// answered (the next poll goes through the load balancer elsewhere). A
// drain and a shed hand over alike; until refuseUntil (zero: for good, a
// drain's) a connect of the session that reaches this node again is sent
// on (goAway) rather than taken back. reason is the websocket close's. It
// reports whether this call handed the session over (false: it was gone
// or handed over already).
func (s *Server) handOver(ss *session, refuseUntil time.Time, reason string) bool {
	ss.mu.Lock()
	if ss.closed || ss.released {
		ss.mu.Unlock()
		return false
	}
	ss.released = true
	if !ss.live {
		// a copy of a session the store holds: nothing to hand over
		ss.mu.Unlock()
		s.removeSession(ss, "released copy")
		return false
	}
	// wait briefly for a write in flight: its messages count as given.
	// (A real socket's write, so on the wall clock, not the node's.)
	for i := 0; ss.writing && i < 100; i++ {
		ss.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		ss.mu.Lock()
	}
	ss.queue = nil
	ss.dropPendingLocked()
	snap := ss.snapshotLocked(s.cfg.NodeID, s.cfg.Now())
	snap.Held = true
	ws := ss.ws
	var held []byte
	if ss.held != nil {
		held = ss.held.bytes(ss.id)
		s.holds.remove(ss.held)
		ss.held = nil
	}
	ss.mu.Unlock()
	s.storeReleased(snap, ws != nil)
	s.mu.Lock()
	if until, ok := s.releasedIDs[ss.id]; !ok || !until.IsZero() {
		s.releasedIDs[ss.id] = refuseUntil
	}
	s.mu.Unlock()
	s.removeSession(ss, "released")
	switch {
	case ws != nil && held != nil:
		// Answer the held connect first and let the client's next
		// connect come back on this socket, where it is answered and the
		// socket closed (see connect): a socket closed under a pending
		// request makes faye wait its retry interval (5 s by default)
		// before sending it again; one closed after an answer costs it
		// nothing.
		// close is idempotent: a socket already closed by then stays so.
		go func() {
			if ws.write(frame([]outMsg{{b: held}})) != nil {
				ws.close(wsStatusGoingAway, reason)
				return
			}
			s.cfg.AfterFunc(s.cfg.ReleaseGrace, func() { ws.close(wsStatusGoingAway, reason) })
		}()
	case ws != nil:
		ws.close(wsStatusGoingAway, reason)
	}
	return true
}

// storeReleased saves a released session. Without shared sessions, or
// with a websocket attached, this node's copy is the truth and replaces the
// record. A long-poll answered here with shared sessions leaves the record
// in the store, where other nodes may have changed its subscriptions: the
// record keeps them and takes this node's progress, unless it has a
// subscription this copy lacks, whose messages since the record's cursor
// no node has given: then it keeps its cursor too (a replay of some
// messages given here rather than a loss of the others).
func (s *Server) storeReleased(snap broker.Session, ws bool) {
	if !s.cfg.SharedSessions || ws {
		if err := s.broker.Sessions().Save(s.ctx, snap); err != nil {
			s.met.brokerErrors.Inc()
			s.log.Warn("save session failed", "client", snap.ClientID, "err", err)
		}
		return
	}
	_, _ = s.updateRecord(snap.ClientID, broker.Session{}, 0, false, func(st *broker.Session, exists bool) bool {
		if !exists {
			*st = snap
			return true
		}
		if added, _ := diffSubs(snap.Subscriptions, st.Subscriptions); len(added) == 0 {
			st.Cursor, st.Given, st.LastConnect = snap.Cursor, snap.Given, snap.LastConnect
		}
		return true
	})
}

// restore takes over a session another node saved, when a client arrives
// with a clientId this node does not hold. The session comes back with its
// subscriptions and replays everything after its cursor before going live.
func (s *Server) restore(b *batch, id, connectID string, got clientCursor) *session {
	if !s.Ready() {
		return nil
	}
	st, err := s.broker.Sessions().Load(s.ctx, id)
	if err != nil {
		if !errors.Is(err, broker.ErrNoSession) {
			s.met.brokerErrors.Inc()
			s.log.Warn("load session failed", "client", id, "err", err)
		}
		s.met.restored.WithLabelValues("unknown").Inc()
		return nil
	}
	ident, ok := s.identityOf(st)
	if !ok {
		s.met.restored.WithLabelValues("refused").Inc()
		return nil
	}
	subs := s.allowedSubs(ident, st.Subscriptions)
	from := resumeFrom(st, connectID, got)
	// live and replaying before it is indexed: what the broker delivers
	// from then on waits for the replay.
	ss := &session{id: id, srv: s, subs: subs, cursor: from, given: from,
		lastConnect: s.since(), arrived: s.since(), rare: &sessionRare{replaying: 1}, live: true}
	ss.setIdentity(ident)
	if have := s.addSessionOnce(ss); have != ss {
		return have
	}
	s.indexAddAll(ss, subs)
	n := s.replayStored(b, ss, subs, from, "restored")
	if n < 0 {
		s.endTakeOver(ss, n)
		return nil
	}
	if err := s.broker.Sessions().Delete(s.ctx, id); err != nil {
		// the session is live here anyway: a stale record is what the
		// failure leaves behind.
		s.met.brokerErrors.Inc()
		s.log.Warn("delete session failed", "client", id, "err", err)
	}
	s.countReceived(ss, st, true)
	s.log.Debug("session restored", "client", id, "from", st.Node, "cursor", st.Cursor, "replayed", n)
	return ss
}

// wasReleased reports whether this node handed the session id over and
// sends its connects on: for good after a drain's release, for a short
// while after a shed's (see shedRefuse).
func (s *Server) wasReleased(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	until, ok := s.releasedIDs[id]
	return ok && (until.IsZero() || s.cfg.Now().Before(until))
}

// forgetReleased drops the shed releases whose refusal has passed, so the
// set does not grow with every client a node ever shed.
func (s *Server) forgetReleased(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, until := range s.releasedIDs {
		if !until.IsZero() && !now.Before(until) {
			delete(s.releasedIDs, id)
		}
	}
}
