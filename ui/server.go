// Package ui is the live web dashboard of a rollout: an HTTP handler that
// serves a page embedded in the binary (built from ui/web into ui/dist by
// `go generate ./ui`) and a stream of server-sent events fed from the
// change's state and event log, read through its Backend as `wsfleet
// status` reads them. The same server follows a change run by this
// process (`wsfleet rollout --ui`, `wsfleet demo --ui`) or by another
// (`wsfleet status --ui`). Its pause, resume, abort and rollback buttons
// act through the Backend's control, as the commands of those names do,
// and only with the admin token.
package ui

//go:generate sh -c "cd web && npm run --silent build"

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"wsfleet/nodeapi"
	"wsfleet/rollout"
)

//go:embed dist
var dist embed.FS

// Metrics are live figures of the clients, when something measures them
// (the demo's chat clients): reconnects since the start, and the current
// delivery delay.
type Metrics struct {
	Reconnects int64
	Delay      time.Duration
}

// Config configures a Server. Store is required.
type Config struct {
	Store rollout.Backend
	// Change is the change to follow; empty follows the newest
	// unfinished change in Store (else the newest), chosen again until
	// one exists.
	Change string
	// EventLog, when set, is the JSON-lines file the events are read
	// from instead of the change's log in Store (the demo writes its
	// engine's events to its own file).
	EventLog string
	// Token is the admin token the buttons need (Authorization: Bearer);
	// empty refuses every command.
	Token string
	// Interval is how often the state is read and the page updated;
	// default 500ms (2 updates a second, whatever the fleet's size).
	Interval time.Duration
	// Metrics, when set, is read at every update for the charts'
	// reconnects per second and delivery delay.
	Metrics func() (Metrics, bool)
	// Control carries a command out; default Store.SetControl, which the
	// change's engine takes at its next poll, as `wsfleet pause` does.
	Control func(ctx context.Context, change, command string) error
	// ClientBuffer is how many updates a client may be behind before it
	// is dropped (its browser reconnects and starts from a snapshot);
	// default 16. MaxClients bounds the streams at once; default 32.
	ClientBuffer int
	MaxClients   int
	// LoopbackOnly says the server listens on loopback only: it then
	// answers only requests whose Host is loopback (localhost, 127.0.0.0/8,
	// ::1), so that a web page whose name was rebound to 127.0.0.1 (DNS
	// rebinding) cannot read the fleet from the operator's browser.
	LoopbackOnly bool
	Log          *slog.Logger
	Now          func() time.Time
}

// Server is the dashboard for one change.
type Server struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	change  string
	view    View
	viewRaw []byte
	nodes   map[string]NodeView
	order   []NodeView // nodes as last sent, sorted
	events  []json.RawMessage
	evOff   int64 // bytes of the event log read
	points  []Point
	lastRec map[string]bool // phases whose probe result was charted
	lastMet *Metrics
	lastMAt time.Time
	clients map[*client]bool
	drops   int
	updates int
	bytes   int64
	// remoteReads counts the polls of a backend without a local log.
	remoteReads int
}

const (
	maxEvents = 5000 // kept for new clients; the page filters these
	maxPoints = 7200 // an hour at 2 a second
)

// New returns a server for cfg; Run feeds it.
func New(cfg Config) *Server {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 16
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 32
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Control == nil {
		cfg.Control = func(_ context.Context, change, command string) error {
			_, err := cfg.Store.SetControl(change, command)
			return err
		}
	}
	return &Server{cfg: cfg, log: cfg.Log.With("part", "ui"), change: cfg.Change,
		nodes: map[string]NodeView{}, lastRec: map[string]bool{}, clients: map[*client]bool{}}
}

// Run reads the change every Interval and sends what changed to every
// client, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.Poll()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll reads the change once and sends the differences. The command
// that runs the engine calls it once more when the engine returns, so
// that the page shows the end.
func (s *Server) Poll() {
	change, err := s.pick()
	if err != nil || change == "" {
		s.readFailed(err)
		return
	}
	st, err := s.cfg.Store.Load(change)
	if err != nil {
		s.readFailed(err)
		return
	}
	plan, _ := rollout.ParsePlan(st.PlanYAML) // stored when it was valid; nil hides the plan's part
	v := viewOf(st, plan)
	v.Controls = s.cfg.Token != ""
	v.Following = change
	nodes := nodesOf(st)
	now := s.cfg.Now()
	newEvents := s.readEvents(change)

	s.mu.Lock()
	defer s.mu.Unlock()
	var msgs [][]byte
	if raw, _ := json.Marshal(v); !bytes.Equal(raw, s.viewRaw) {
		s.view, s.viewRaw = v, raw
		msgs = append(msgs, sse("view", raw))
	}
	if d, changed := s.diffNodes(nodes); changed {
		raw, _ := json.Marshal(d)
		msgs = append(msgs, sse("nodes", raw))
	}
	if len(newEvents) > 0 {
		s.events = append(s.events, newEvents...)
		if over := len(s.events) - maxEvents; over > 0 {
			s.events = append([]json.RawMessage(nil), s.events[over:]...)
		}
		raw, _ := json.Marshal(newEvents)
		msgs = append(msgs, sse("events", raw))
	}
	p := s.point(now, st, nodes)
	s.points = append(s.points, p)
	if over := len(s.points) - maxPoints; over > 0 {
		s.points = append([]Point(nil), s.points[over:]...)
	}
	raw, _ := json.Marshal([]Point{p})
	msgs = append(msgs, sse("points", raw))
	s.broadcast(msgs)
}

// pick is the change to follow: the configured one, else the newest
// unfinished one in the store, else the newest.
func (s *Server) pick() (string, error) {
	s.mu.Lock()
	change := s.change
	s.mu.Unlock()
	if change != "" {
		return change, nil
	}
	all, err := s.cfg.Store.List()
	if err != nil || len(all) == 0 {
		return "", err
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Status.Final() != all[j].Status.Final() {
			return !all[i].Status.Final()
		}
		return all[i].Started.After(all[j].Started)
	})
	s.mu.Lock()
	s.change = all[0].Change
	s.mu.Unlock()
	return all[0].Change, nil
}

func (s *Server) readFailed(err error) {
	msg := "no change to show yet"
	if err != nil && !errors.Is(err, rollout.ErrNoRollout) {
		msg = err.Error()
		s.log.Warn("read the change", "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.view
	v.ReadFailed = msg
	v.Controls = s.cfg.Token != ""
	if v.Phases == nil {
		v.Phases, v.Checks = []PhaseView{}, []CheckView{}
	}
	if raw, _ := json.Marshal(v); !bytes.Equal(raw, s.viewRaw) {
		s.view, s.viewRaw = v, raw
		s.broadcast([][]byte{sse("view", raw)})
	}
}

// readEvents returns the event log's lines written since the last read.
// A local store's log is read from where the last read stopped; another
// backend's is read whole and cut.
func (s *Server) readEvents(change string) []json.RawMessage {
	s.mu.Lock()
	off := s.evOff
	s.mu.Unlock()
	var data []byte
	path := s.cfg.EventLog
	if st, ok := s.cfg.Store.(*rollout.Store); ok && path == "" {
		path = rollout.EventLogPath(st.Dir, change)
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		if _, err := f.Seek(off, 0); err != nil {
			return nil
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(f); err != nil {
			return nil
		}
		data = buf.Bytes()
	} else {
		// Another backend (S3) has no offset to read from: its whole log
		// is read, so only every fourth poll.
		s.mu.Lock()
		s.remoteReads++
		skip := s.remoteReads%4 != 1
		s.mu.Unlock()
		if skip {
			return nil
		}
		all, err := s.cfg.Store.ReadEvents(change)
		if err != nil || int64(len(all)) < off {
			return nil
		}
		data = all[off:]
	}
	// Only whole lines: the last may be half written.
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return nil
	}
	var out []json.RawMessage
	for _, line := range bytes.Split(data[:end], []byte{'\n'}) {
		if json.Valid(line) {
			out = append(out, json.RawMessage(bytes.Clone(line)))
		}
	}
	s.mu.Lock()
	s.evOff = off + int64(end) + 1
	s.mu.Unlock()
	return out
}

// nodesDiff is an update of the instances table: the rows set (added or
// changed) and the ids removed; Full replaces the whole table.
type nodesDiff struct {
	Full bool       `json:"full"`
	Set  []NodeView `json:"set"`
	Del  []string   `json:"del"`
}

// diffNodes records nodes as the table now and returns what changed.
func (s *Server) diffNodes(nodes []NodeView) (nodesDiff, bool) {
	d := nodesDiff{Set: []NodeView{}, Del: []string{}}
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		seen[n.ID] = true
		if old, ok := s.nodes[n.ID]; !ok || old != n {
			d.Set = append(d.Set, n)
			s.nodes[n.ID] = n
		}
	}
	for id := range s.nodes {
		if !seen[id] {
			d.Del = append(d.Del, id)
			delete(s.nodes, id)
		}
	}
	sort.Strings(d.Del)
	s.order = nodes
	return d, len(d.Set) > 0 || len(d.Del) > 0
}

// point is the chart point of now: the connections, and the clients'
// figures from Metrics or, without it, from each phase's probe when the
// phase ends.
func (s *Server) point(now time.Time, st *rollout.State, nodes []NodeView) Point {
	p := pointOf(now, nodes)
	if s.cfg.Metrics != nil {
		if m, ok := s.cfg.Metrics(); ok {
			if s.lastMet != nil && now.After(s.lastMAt) {
				rps := float64(m.Reconnects-s.lastMet.Reconnects) / now.Sub(s.lastMAt).Seconds()
				p.ReconnectsPerS = &rps
			}
			delay := float64(m.Delay) / float64(time.Millisecond)
			p.DelayMS = &delay
			s.lastMet, s.lastMAt = &m, now
		}
		return p
	}
	for _, rec := range st.Phases {
		if s.lastRec[rec.Name] {
			continue
		}
		if rps, delay, ok := probePoint(rec); ok {
			s.lastRec[rec.Name] = true
			p.ReconnectsPerS, p.DelayMS = &rps, &delay
		}
	}
	return p
}

// sse frames one server-sent event; data is one line of JSON.
func sse(event string, data []byte) []byte {
	b := make([]byte, 0, len(event)+len(data)+16)
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// Handler serves the page, its assets, the stream and the commands.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	assets, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(fmt.Sprintf("ui: embedded assets: %v", err)) // the embed pattern guarantees dist
	}
	files := http.FileServerFS(assets)
	mux.Handle("GET /", files)
	mux.HandleFunc("GET /api/stream", s.stream)
	mux.HandleFunc("GET /api/view", s.current)
	mux.HandleFunc("POST /api/control", s.control)
	// Without this, "GET /" would answer a GET of the control with the
	// file server's 404.
	mux.HandleFunc("GET /api/control", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
	})
	h := secure(mux)
	if s.cfg.LoopbackOnly {
		h = loopbackHost(h)
	}
	return h
}

// loopbackHost refuses a request whose Host header names anything but
// loopback: on a loopback listener, any other name is a page that had its
// name resolve to 127.0.0.1 (DNS rebinding) and would read the dashboard
// from the operator's own browser.
func loopbackHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if ip := net.ParseIP(host); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, "the dashboard answers on loopback names only (localhost, 127.0.0.1, [::1])", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// secure sets the headers that keep the page to its own origin: scripts,
// styles and connections from the server only, no framing, no referrer.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// current answers the view, nodes and chart points as one JSON object.
func (s *Server) current(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := map[string]any{"view": json.RawMessage(s.viewRaw), "nodes": s.order, "events": len(s.events), "points": len(s.points)}
	if s.viewRaw == nil {
		out["view"] = nil
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// commands maps the page's buttons to the controls the engine takes, as
// the commands of the same names leave them.
var commands = map[string]string{"pause": "pause", "resume": "run", "abort": "abort", "rollback": "rollback"}

// control carries out one button, with the admin token.
func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	if !nodeapi.Authorize(w, r, s.cfg.Token) {
		s.log.Warn("command refused", "remote", r.RemoteAddr)
		return
	}
	var req struct {
		Action string `json:"action"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&req); err != nil {
		http.Error(w, "want a JSON body {\"action\": \"pause\"}", http.StatusBadRequest)
		return
	}
	ctl, ok := commands[req.Action]
	if !ok {
		http.Error(w, "action: one of pause, resume, abort, rollback", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	change, final, status := s.change, s.view.Final, s.view.Status
	s.mu.Unlock()
	if change == "" {
		http.Error(w, "no change to act on yet", http.StatusConflict)
		return
	}
	if final {
		http.Error(w, fmt.Sprintf("%s has ended (%s)", change, status), http.StatusConflict)
		return
	}
	if err := s.cfg.Control(r.Context(), change, ctl); err != nil {
		s.log.Warn("command failed", "change", change, "action", req.Action, "err", err)
		http.Error(w, fmt.Sprintf("%s %s: %v", req.Action, change, err), http.StatusConflict)
		return
	}
	s.log.Info("command asked", "change", change, "action", req.Action, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"change": change, "asked": req.Action})
}

// Loopback reports whether addr (host:port) listens on loopback only.
// An empty host (every interface) and a host name other than localhost
// are not.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrOpenAddr refuses a dashboard on a non-loopback address without an
// admin token.
var ErrOpenAddr = errors.New("the dashboard listens beyond loopback only with an admin token set")

// Listen checks addr against the token and listens on it.
func Listen(addr, token string) (net.Listener, error) {
	if !Loopback(addr) && token == "" {
		return nil, fmt.Errorf("ui %s: %w", addr, ErrOpenAddr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	return ln, nil
}
