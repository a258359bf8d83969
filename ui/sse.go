package ui

import (
	"encoding/json"
	"net/http"
	"time"
)

// client is one open stream. Its updates wait in a bounded channel: a
// client that falls ClientBuffer updates behind is dropped rather than
// buffered for, and its browser reconnects and starts from a snapshot.
type client struct {
	ch      chan []byte
	dropped chan struct{}
}

// writeTimeout bounds one write to a client: a peer that stops reading
// is cut off rather than holding its goroutine.
const writeTimeout = 10 * time.Second

// snapshot is everything a new client needs, as SSE frames: the view,
// every instance, the events kept and the chart's points. Called with
// s.mu held.
func (s *Server) snapshot() [][]byte {
	view := s.viewRaw
	if view == nil {
		view, _ = json.Marshal(View{ReadFailed: "no change to show yet", Controls: s.cfg.Token != "", Phases: []PhaseView{}, Checks: []CheckView{}})
	}
	nodes, _ := json.Marshal(nodesDiff{Full: true, Set: append([]NodeView{}, s.order...), Del: []string{}})
	events, _ := json.Marshal(append([]json.RawMessage{}, s.events...))
	points, _ := json.Marshal(append([]Point{}, s.points...))
	return [][]byte{sse("view", view), sse("nodes", nodes), sse("events", events), sse("points", points)}
}

// broadcast queues msgs for every client, dropping those whose queue is
// full. Called with s.mu held.
func (s *Server) broadcast(msgs [][]byte) {
	if len(msgs) == 0 {
		return
	}
	var frame []byte
	for _, m := range msgs {
		frame = append(frame, m...)
	}
	s.updates++
	s.bytes += int64(len(frame))
	for c := range s.clients {
		select {
		case c.ch <- frame:
		default:
			delete(s.clients, c)
			close(c.dropped)
			s.drops++
			s.log.Warn("slow dashboard client dropped", "behind", cap(c.ch))
		}
	}
}

// Stats are what the server sent: updates (each one frame to every
// client), their bytes, and the clients dropped for falling behind.
type Stats struct {
	Updates int
	Bytes   int64
	Dropped int
}

// Stats returns the server's figures so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Updates: s.updates, Bytes: s.bytes, Dropped: s.drops}
}

// stream serves the server-sent events: a snapshot, then every update.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	c := &client{ch: make(chan []byte, s.cfg.ClientBuffer), dropped: make(chan struct{})}
	s.mu.Lock()
	if len(s.clients) >= s.cfg.MaxClients {
		s.mu.Unlock()
		http.Error(w, "too many dashboard streams", http.StatusServiceUnavailable)
		return
	}
	first := s.snapshot()
	s.clients[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.clients, c)
		s.mu.Unlock()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The browser waits this long before it reconnects after a drop.
	if !write([]byte("retry: 1000\n\n")) {
		return
	}
	for _, m := range first {
		if !write(m) {
			return
		}
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.dropped:
			return
		case m := <-c.ch:
			if !write(m) {
				return
			}
		case <-keep.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		}
	}
}
