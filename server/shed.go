package server

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"wsfleet/broker"
	"wsfleet/nodeapi"
)

// A shed is a partial drain (POST /admin/shed): the node releases some of
// its clients, paced as a drain paces them and each with a drain's
// hand-over (handOver: its session saved, what it missed replayed by the
// node it reconnects to), and keeps serving the others. Its readiness is
// unchanged: cordon it (POST /admin/cordon) to keep the load balancer from
// sending the released clients straight back.
//
// Which clients go: those that never moved first (they handshook on this
// node, or came to it from the store saved by this node), then those
// received from another node; within each, the one that arrived last
// first. A rollout moves clients onto a new node and sheds from the old
// ones, so this moves each client as few times as it can: the clients a
// node took over are the ones that moved already.
//
// The releases are drawn when they are due, not when the shed is asked
// for: a client that left meanwhile is not counted, and the next one in
// that order goes instead. Requests add up: a shed asked for while one
// runs releases its clients after those, with its own pacing (a new ID),
// or changes nothing (the ID of a shed already asked for, running or
// finished, whose result is answered again: the engine may resend a
// request after a crash). A drain supersedes a running shed.

// shedRefuse is how long after a shed released a session a connect of it
// that reaches this node again is sent on rather than taken back: long
// enough for the connect a websocket client sends on the socket being
// closed (see handOver) and a long-polling client's next poll, short
// enough that a client the balancer sends back later, once the node is no
// longer cordoned, is served here.
func (s *Server) shedRefuse() time.Duration { return 2*s.cfg.ReleaseGrace + s.cfg.GoAwayInterval }

// maxShedIDs bounds how many shed IDs a node remembers for idempotency;
// beyond it the oldest is forgotten.
const maxShedIDs = 1024

// shedState is the node's sheds: their results by ID, their progress, and
// the releases still to come, in order.
type shedState struct {
	mu        sync.Mutex
	results   map[string]nodeapi.ShedResult
	ids       []string // results' keys, oldest first
	requested int
	released  int
	running   bool
	stopped   bool // a drain superseded the sheds: none runs again
	due       []shedSlot
	cancel    context.CancelFunc
}

// shedSlot is one release to come: when, and the least time since the one
// before (its request's 1/max_rate).
type shedSlot struct {
	at  time.Time
	gap time.Duration
}

// errShedDraining refuses a shed on a node that drains: the drain releases
// everyone already.
var errShedDraining = errors.New("node is draining: its drain releases every client")

// Shed releases req.Count of the node's clients (see the comment above),
// paced over req.Window with jitter and never faster than req.MaxRate per
// second (left out: the node's drain defaults), and returns at once with
// how many it will release. The repeat of a known ID returns that shed's
// result and does nothing else. A node that drains refuses
// (errShedDraining).
func (s *Server) Shed(req nodeapi.ShedRequest) (nodeapi.ShedResult, error) {
	if err := req.Validate(); err != nil {
		return nodeapi.ShedResult{}, err
	}
	o := drainOptions(nodeapi.DrainRequest{Window: req.Window, MaxRate: req.MaxRate}, s.cfg.DrainDefaults)
	res := nodeapi.ShedResult{ID: req.ID, Count: req.Count, Window: nodeapi.Duration(o.Window), MaxRate: o.MaxRate}

	s.shed.mu.Lock()
	defer s.shed.mu.Unlock()
	if req.ID != "" {
		if have, ok := s.shed.results[req.ID]; ok {
			return have, nil
		}
	}
	s.mu.RLock()
	state := s.state
	s.mu.RUnlock()
	if state != StateReady || s.shed.stopped {
		return nodeapi.ShedResult{}, errShedDraining
	}
	now := s.cfg.Now()
	res.Releasing = max(0, min(req.Count, len(s.shedCandidates())-len(s.shed.due)))
	start := now
	if n := len(s.shed.due); n > 0 && s.shed.due[n-1].at.After(start) {
		start = s.shed.due[n-1].at
	}
	s.randMu.Lock()
	at := releaseSchedule(res.Releasing, o.Window, o.MaxRate, s.cfg.Rand, start)
	s.randMu.Unlock()
	gap := releaseGap(o.MaxRate)
	for _, t := range at {
		s.shed.due = append(s.shed.due, shedSlot{at: t, gap: gap})
	}
	s.shed.requested += res.Releasing
	if req.ID != "" {
		s.rememberShed(res)
	}
	s.log.Info("shed started", "id", req.ID, "count", req.Count, "releasing", res.Releasing,
		"window", o.Window, "max_rate", o.MaxRate, "queued", len(s.shed.due))
	if !s.shed.running && len(s.shed.due) > 0 {
		s.shed.running = true
		ctx, cancel := context.WithCancel(s.ctx)
		s.shed.cancel = cancel
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer cancel()
			s.runShed(ctx)
		}()
	}
	return res, nil
}

// rememberShed keeps res for the repeats of its ID; shed.mu is held.
func (s *Server) rememberShed(res nodeapi.ShedResult) {
	if s.shed.results == nil {
		s.shed.results = map[string]nodeapi.ShedResult{}
	}
	if len(s.shed.ids) >= maxShedIDs {
		delete(s.shed.results, s.shed.ids[0])
		s.shed.ids = s.shed.ids[1:]
	}
	s.shed.results[res.ID] = res
	s.shed.ids = append(s.shed.ids, res.ID)
}

// runShed makes the releases that are due, one at a time, until none is
// left or ctx ends (a drain, the node's close). As the drain does, it
// never brings a release closer to the one before than its gap, whatever
// the timers do.
func (s *Server) runShed(ctx context.Context) {
	var (
		last  time.Time
		order []*session
	)
	for {
		s.shed.mu.Lock()
		if len(s.shed.due) == 0 || ctx.Err() != nil {
			s.shed.running = false
			s.shed.mu.Unlock()
			s.log.Info("shed finished", "released", s.shedStatus().Released)
			return
		}
		slot := s.shed.due[0]
		s.shed.mu.Unlock()
		at := slot.at
		if !last.IsZero() && at.Sub(last) < slot.gap {
			at = last.Add(slot.gap)
		}
		if err := s.sleep(ctx, at.Sub(s.cfg.Now())); err != nil {
			continue // ends the loop above
		}
		last = s.cfg.Now()
		s.shed.mu.Lock()
		if ctx.Err() != nil || len(s.shed.due) == 0 {
			s.shed.mu.Unlock()
			continue
		}
		s.shed.due = s.shed.due[1:]
		s.shed.mu.Unlock()
		// the next client in the order that is still here; the order is
		// drawn again when it runs out (clients arrive meanwhile)
		for released := false; !released; {
			if len(order) == 0 {
				if order = s.shedCandidates(); len(order) == 0 {
					break
				}
			}
			ss := order[0]
			order = order[1:]
			if s.handOver(ss, s.cfg.Now().Add(s.shedRefuse()), "node shedding") {
				released = true
				s.met.shed.Inc()
				s.shed.mu.Lock()
				s.shed.released++
				s.shed.mu.Unlock()
			}
		}
	}
}

// stopShed ends the running shed and drops the releases to come, for good:
// a drain releases everyone.
func (s *Server) stopShed() {
	s.shed.mu.Lock()
	defer s.shed.mu.Unlock()
	s.shed.stopped = true
	s.shed.due = nil
	if s.shed.cancel != nil {
		s.shed.cancel()
	}
}

// shedCandidates returns the sessions a shed may release, in the order it
// releases them: held live here and not yet handed over; those that never
// moved before those received from another node, then the newest first.
func (s *Server) shedCandidates() []*session {
	type cand struct {
		ss       *session
		received bool
		arrived  time.Duration
	}
	s.mu.RLock()
	list := make([]cand, 0, len(s.sessions))
	for _, ss := range s.sessions {
		ss.mu.Lock()
		if ss.live && !ss.closed && !ss.released {
			list = append(list, cand{ss, ss.received, ss.arrived})
		}
		ss.mu.Unlock()
	}
	s.mu.RUnlock()
	slices.SortFunc(list, func(a, b cand) int {
		if a.received != b.received {
			if a.received {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(b.arrived, a.arrived); c != 0 {
			return c
		}
		return cmp.Compare(a.ss.id, b.ss.id)
	})
	out := make([]*session, len(list))
	for i, c := range list {
		out[i] = c.ss
	}
	return out
}

// shedStatus is the sheds' progress for Status.
func (s *Server) shedStatus() nodeapi.ShedStatus {
	s.shed.mu.Lock()
	defer s.shed.mu.Unlock()
	return nodeapi.ShedStatus{Requested: s.shed.requested, Released: s.shed.released, Running: s.shed.running}
}

// countReceived records a take-over of session ss from the stored
// record st. When st was saved by another node that held the client (a
// release, or a websocket to that node that closed: st.Held), the session
// moved here from it; a record saved at a handshake on another node (faye
// handshakes over HTTP, which a balancer may send elsewhere than its
// websocket) is not a move.
// It is counted, and marked received, once a take-over keeps it here
// (keep: a websocket, or a restore without shared sessions). A long-poll
// answered here keeps nothing (the record goes back to the store, saved by
// this node), so it only notes where the session came from: halley, its
// socket closed, sends its next connect over HTTP before it opens a new
// websocket, and that websocket's take-over is the move.
func (s *Server) countReceived(ss *session, st broker.Session, keep bool) {
	other := st.Held && st.Node != "" && st.Node != s.cfg.NodeID
	ss.mu.Lock()
	if !keep {
		ss.arriving = ss.arriving || other
		ss.mu.Unlock()
		return
	}
	moved := other || ss.arriving
	ss.arriving = false
	// a session received before keeps its mark whatever the record says
	ss.received = ss.received || moved
	ss.mu.Unlock()
	if moved {
		s.received.Add(1)
		s.met.received.Inc()
	}
}

// Cordon fails (true) or restores (false) the node's readiness while it
// keeps serving every client, those that still reach it included.
// Restoring it never makes a draining node ready.
func (s *Server) Cordon(cordoned bool) {
	if s.cordoned.Swap(cordoned) != cordoned {
		s.log.Info("cordon changed", "cordoned", cordoned)
	}
}

// serveShed decodes the request strictly (unknown fields, a missing count
// and out-of-range values are 400 naming the field and its range) and
// starts the shed: 202 with its result, 409 on a node that drains.
func (s *Server) serveShed(w http.ResponseWriter, r *http.Request) {
	b, ok := s.adminBody(w, r)
	if !ok {
		return
	}
	req, err := nodeapi.DecodeShedRequest(b)
	if err != nil {
		s.badRequest(w, http.StatusBadRequest, "shed request: "+err.Error())
		return
	}
	res, err := s.Shed(req)
	switch {
	case errors.Is(err, errShedDraining):
		http.Error(w, "shed: "+err.Error(), http.StatusConflict)
	case err != nil:
		s.badRequest(w, http.StatusBadRequest, "shed request: "+err.Error())
	default:
		writeJSON(w, http.StatusAccepted, res)
	}
}

// serveCordon decodes the request strictly (the cordoned field is
// required) and answers the node's status.
func (s *Server) serveCordon(w http.ResponseWriter, r *http.Request) {
	b, ok := s.adminBody(w, r)
	if !ok {
		return
	}
	req, err := nodeapi.DecodeCordonRequest(b)
	if err != nil {
		s.badRequest(w, http.StatusBadRequest, "cordon request: "+err.Error())
		return
	}
	s.Cordon(req.Cordoned)
	writeJSON(w, http.StatusOK, s.Status())
}
