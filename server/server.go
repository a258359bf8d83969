// Package server is the ws node: a Bayeux 1.0 server that unmodified faye
// and halley clients use over websocket and long-polling, fanning messages
// out through a broker.Broker so that a cluster of nodes acts as one, and
// able to drain itself without losing a message.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"wsfleet/bayeux"
	"wsfleet/broker"
	"wsfleet/nodeapi"
)

// Config configures a node. Zero values take the defaults documented on
// each field.
type Config struct {
	NodeID  string // reported in status and saved sessions; default "ws"
	Version string // build version, reported in status
	Image   string // machine image label, reported in status

	Mount string // Bayeux endpoint path; default /bayeux

	// AdminToken guards /admin/* and /publish (Bearer). Empty disables them.
	AdminToken string
	// AuthSecret verifies client tokens (HS256). Empty means anonymous
	// clients may subscribe and publish anywhere.
	AuthSecret []byte
	Rules      Rules

	MaxMessageBytes  int // largest request body or websocket frame; default 64 KiB
	MaxSubscriptions int // per session; default 100
	MaxBatch         int // messages per request; default 100
	QueueLimit       int // queued messages per session before it is dropped as slow; default 1000

	// Timeout is how long a /meta/connect is held (advice.timeout);
	// default 30s. Interval is advice.interval; default 0.
	Timeout  time.Duration
	Interval time.Duration
	// SessionTimeout removes a session that has sent no /meta/connect for
	// this long; default Timeout + 30s.
	SessionTimeout time.Duration
	// WriteTimeout bounds one websocket write; default 10s.
	WriteTimeout time.Duration
	// noPoller keeps a goroutine waiting on every websocket instead of
	// parking idle ones in the poller: the fallback, tested on its own.
	noPoller bool
	// noRawIO keeps every websocket a net.Conn, with the poller (Linux):
	// the fallback when a socket's descriptor cannot be taken, tested on
	// its own.
	noRawIO bool
	// SweepInterval is how often expired sessions are looked for; default 5s.
	SweepInterval time.Duration
	// ReleaseGrace is how long a drain waits for a released websocket
	// client to send its next connect (answered, then the socket closed)
	// before closing the socket anyway; default 2s.
	ReleaseGrace time.Duration
	// GoAwayInterval is the advice.interval sent with the last connect
	// reply on a websocket this node closes in a drain; default 250ms.
	GoAwayInterval time.Duration

	// Broker carries messages between nodes; default a memory broker.
	Broker broker.Broker
	// SharedSessions keeps sessions in the broker's session store so that
	// any node serves any request of a client (a load balancer without
	// stickiness; see shared.go). Set it when nodes share a broker.
	SharedSessions bool

	// Extensions see every incoming message and every outgoing reply, in
	// order (outgoing in reverse), after the built-in authentication.
	Extensions []Extension

	// Limits against hostile or broken clients (docs/server.md, "Limits
	// and abuse"); zero values take the defaults given.
	//
	// MaxConnections caps open websockets plus long-polling requests in
	// flight (what /admin/status counts as connections): beyond it an
	// upgrade or a long-polling request is refused with 503 before
	// anything else; default 50,000, negative for no cap.
	MaxConnections int
	// HandshakeTimeout: a websocket whose socket carries no /meta/connect
	// within it of the upgrade is closed (1008), and a long-polling
	// request's body must arrive within it; default Timeout.
	HandshakeTimeout time.Duration
	// ReadTimeout bounds how long a request body takes to arrive; default
	// 10s. ReadHeaderTimeout and IdleTimeout are NewHTTPServer's, for the
	// request headers and between requests; default 10s and 120s.
	ReadTimeout       time.Duration
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// WSSendBuffer is every websocket's kernel send buffer (SO_SNDBUF),
	// in bytes; default 256 KiB, negative for the kernel's autotuning.
	WSSendBuffer int
	// HandshakeRate limits /meta/handshakes per client address, per
	// second, in bursts of up to HandshakeBurst (default 20); 0 (the
	// default) is no limit. Behind a load balancer every client has the
	// balancer's address unless TrustForwardedFor keys the limit on the
	// last X-Forwarded-For entry, which the balancer appends.
	HandshakeRate     float64
	HandshakeBurst    int
	TrustForwardedFor bool
	// CORSOrigins, when set, are the only origins whose pages may call the
	// node cross-origin ("*": any); empty: any origin. The answer always
	// allows credentials, which Faye's and CometD's cross-origin
	// transports need (see allowedOrigin).
	CORSOrigins []string
	// NoMetrics leaves /metrics out of Handler, for a node that serves
	// MetricsHandler on a listener of its own.
	NoMetrics bool

	// Faults make the node misbehave on purpose, for tests only (fault.go);
	// zero: none.
	Faults Faults

	// DrainDefaults fill what a POST /admin/drain leaves out; zero
	// fields take DefaultDrainOptions.
	DrainDefaults DrainOptions

	// Now, AfterFunc and Rand are the node's clock and randomness, fields
	// so that tests can drive them: Now defaults to time.Now, AfterFunc
	// (run f in its own goroutine once d has passed) to time.AfterFunc,
	// Rand to a randomly seeded generator. Only the drain (its release
	// order and schedule) and the shed (its schedule) draw from Rand,
	// one at a time.
	Now       func() time.Time
	AfterFunc func(d time.Duration, f func()) Timer
	Rand      *rand.Rand
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = "ws"
	}
	if c.Mount == "" {
		c.Mount = "/bayeux"
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 100
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 100
	}
	if c.QueueLimit <= 0 {
		c.QueueLimit = 1000
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = c.Timeout + 30*time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.GoAwayInterval <= 0 {
		c.GoAwayInterval = 250 * time.Millisecond
	}
	if c.ReleaseGrace <= 0 {
		c.ReleaseGrace = 2 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Second
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = defaultMaxConnections
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = c.Timeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = defaultReadHeader
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.WSSendBuffer == 0 {
		c.WSSendBuffer = defaultWSSendBuffer
	}
	if c.HandshakeBurst <= 0 {
		c.HandshakeBurst = defaultHandshakeBurst
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AfterFunc == nil {
		c.AfterFunc = wallAfterFunc
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if c.DrainDefaults.Window <= 0 {
		c.DrainDefaults.Window = DefaultDrainOptions.Window
	}
	if c.DrainDefaults.MaxRate <= 0 {
		c.DrainDefaults.MaxRate = DefaultDrainOptions.MaxRate
	}
	if c.DrainDefaults.Deadline <= 0 {
		c.DrainDefaults.Deadline = DefaultDrainOptions.Deadline
	}
}

// State is where a node is in its life (the admin API's type).
type State = nodeapi.State

// States.
const (
	StateReady    = nodeapi.StateReady
	StateDraining = nodeapi.StateDraining
	StateDrained  = nodeapi.StateDrained
)

// Server is one ws node.
type Server struct {
	// shareLocks serialise, per client, the hand-overs of a shared
	// session between this node and the store (adopt for a connect, a
	// subscribe on a copy not held live, finishPoll giving it back): a
	// long-polling client sends its subscribe while its connect is being
	// adopted or answered, and without this the two could each work on a
	// copy and one of them lose the subscription.
	shareLocks [64]sync.Mutex
	cfg        Config
	dice       faultDice // the faults' random draws (fault.go)
	log        *slog.Logger
	broker     broker.Broker
	met        *metrics
	exts       []Extension
	// epoch is when the node started, on its clock: sessions keep their
	// times as durations since it (since), 8 bytes where a time.Time
	// takes 24.
	epoch   time.Time
	holds   holdQueue      // held websocket connects
	replies replyTemplates // what they answer, interned
	names   internTable    // the patterns sessions subscribe to, interned
	poller  *wsPoller      // parked idle websockets; nil: a goroutine each

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu       sync.RWMutex
	sessions map[string]*session
	index    map[string]map[*session]struct{} // pattern -> subscribers
	nsubs    int
	state    State
	wsConns  map[*wsConn]struct{}
	// wsOpen counts the websockets not closed yet: those in wsConns
	// and those finishing (finishWS), whose closing handshake may still
	// wait in the poller.
	wsOpen int
	// releasedIDs are the sessions this node handed over, each with the
	// instant until which a connect of it is sent on (zero: for good,
	// after a drain; see wasReleased).
	releasedIDs map[string]time.Time

	// cordoned fails readiness while the node serves on (POST
	// /admin/cordon).
	cordoned atomic.Bool
	shed     shedState
	// received counts the sessions taken over from another node
	// (countReceived).
	received atomic.Int64
	// randMu serialises the draws from Config.Rand, which is not safe
	// for concurrent use: a drain's and a shed's.
	randMu sync.Mutex

	drain   drainState
	drained chan struct{} // closed when a drain finished
	polls   atomic.Int64  // long-polling requests in flight
	// admitted counts what MaxConnections caps: websockets from before
	// their upgrade to their close, and long-polling requests.
	admitted atomic.Int64
	// hsLimit limits handshakes per client address; nil: no limit.
	hsLimit *handshakeLimiter

	stopBroker func()
	// interest is the broker subscription that delivers only what the
	// index's patterns match (interest-based delivery); nil when the
	// broker delivers everything.
	interest   broker.InterestSub
	closeOnce  sync.Once
	pollerOnce sync.Once
	flusher    flusher // writes what deliveries queue (flush.go)
	wg         sync.WaitGroup
}

// New returns a node subscribed to its broker. It does not listen: serve
// Handler() with an http.Server and call Run.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Broker == nil {
		cfg.Broker = broker.NewMemory(broker.MemoryOptions{Now: cfg.Now})
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: log.With("node", cfg.NodeID), broker: cfg.Broker, met: newMetrics(),
		epoch: cfg.Now(), ctx: ctx, cancel: cancel, holds: holdQueue{now: cfg.Now, afterFunc: cfg.AfterFunc},
		sessions: map[string]*session{}, index: map[string]map[*session]struct{}{},
		state: StateReady, wsConns: map[*wsConn]struct{}{}, releasedIDs: map[string]time.Time{}, drained: make(chan struct{}),
	}
	s.exts = append([]Extension{authExtension{s}}, cfg.Extensions...)
	// the faults draw from a generator of their own: Rand is the drain's
	s.dice.rnd = cfg.Faults.Rand
	if s.dice.rnd == nil {
		s.dice.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Faults.faulty() {
		s.log.Warn("test-only faults injected", "handshake_fail_rate", cfg.Faults.HandshakeFailRate, "delay", cfg.Faults.Delay)
	}
	if cfg.HandshakeRate > 0 {
		s.hsLimit = newHandshakeLimiter(cfg.HandshakeRate, cfg.HandshakeBurst, maxRateLimitedAddrs, cfg.Now)
	}
	s.met.setLimits(cfg)
	s.met.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsfleet_node_cordoned", Help: "1 while the node is cordoned (its readiness fails on purpose while it serves on), else 0.",
	}, func() float64 {
		if s.cordoned.Load() {
			return 1
		}
		return 0
	}))
	s.met.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsfleet_broker_up", Help: "1 while the broker reaches its backend (NATS), 0 while it does not.",
	}, func() float64 {
		if s.brokerHealthy() != nil {
			return 0
		}
		return 1
	}))
	if len(cfg.AuthSecret) == 0 {
		s.log.Warn("no auth secret: anonymous clients may subscribe and publish on every channel")
	}
	if cfg.AdminToken == "" {
		s.log.Warn("no admin token: /admin and /publish are disabled")
	}
	if !cfg.noPoller {
		p, err := newWSPoller(s.log)
		if err != nil {
			// a goroutine per websocket works too, at a higher idle cost
			s.log.Warn("websocket poller unavailable: every websocket keeps a goroutine", "err", err)
		}
		s.poller = p
	}
	stop, err := s.subscribeBroker(ctx)
	if err != nil {
		cancel()
		if s.poller != nil {
			s.poller.close()
		}
		return nil, fmt.Errorf("subscribe to broker: %w", err)
	}
	s.stopBroker = stop
	return s, nil
}

// Handler serves the Bayeux endpoint (websocket upgrade and long-polling)
// at the mount path, and the operational endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(s.cfg.Mount, s.serveBayeux)
	if !strings.HasSuffix(s.cfg.Mount, "/") {
		// CometD's HTTP transports append the message type to the URL
		// (/bayeux/handshake, /bayeux/connect) unless told not to, and
		// Faye's server answers any path under its mount: so does this.
		mux.HandleFunc(s.cfg.Mount+"/", s.serveBayeux)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", s.serveReady)
	if !s.cfg.NoMetrics {
		mux.Handle("/metrics", s.MetricsHandler())
	}
	mux.HandleFunc("GET /admin/status", s.admin(s.serveStatus))
	mux.HandleFunc("POST /admin/drain", s.admin(s.serveDrain))
	mux.HandleFunc("POST /admin/shed", s.admin(s.serveShed))
	mux.HandleFunc("POST /admin/cordon", s.admin(s.serveCordon))
	mux.HandleFunc("POST /publish", s.admin(s.servePublish))
	return s.limitBodies(mux)
}

// MetricsHandler serves the node's Prometheus metrics: at /metrics of
// Handler, or on a listener of its own (Config.NoMetrics).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{})
}

// Run expires idle sessions until ctx ends or the node closes.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep removes sessions that sent no /meta/connect within SessionTimeout.
func (s *Server) sweep() {
	now := s.cfg.Now()
	s.mu.RLock()
	var dead []*session
	for _, ss := range s.sessions {
		ss.mu.Lock()
		if ss.held == nil && ss.wakeLocked() == nil && now.Sub(s.epoch)-ss.lastConnect > s.cfg.SessionTimeout {
			dead = append(dead, ss)
		}
		ss.mu.Unlock()
	}
	s.mu.RUnlock()
	s.forgetReleased(now)
	for _, ss := range dead {
		s.log.Debug("session expired", "client", ss.id)
		ss.mu.Lock()
		wc := ss.ws
		ss.mu.Unlock()
		s.removeSession(ss, "expired")
		if wc != nil {
			// its client stopped sending connects but kept the socket:
			// its first connect lifted the handshake deadline, so
			// nothing else would close it.
			wc.close(wsStatusPolicyViolation, "session expired")
		}
	}
}

// Close disconnects every client and stops the node. The broker is the
// caller's to close.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		if s.stopBroker != nil {
			s.stopBroker()
		}
		s.mu.Lock()
		conns := make([]*wsConn, 0, len(s.wsConns))
		for c := range s.wsConns {
			conns = append(conns, c)
		}
		open := s.wsOpen
		s.mu.Unlock()
		if open == 0 {
			s.closePoller()
		}
		for _, c := range conns {
			c.close(wsStatusGoingAway, "server shutting down")
		}
	})
	return nil
}

// onBroker fans one broker message out to the local subscribers. It runs
// on the broker's delivery goroutine, so it only queues. The message is
// encoded once, and so is its websocket frame (outMsg.alone), for all of
// its subscribers.
func (s *Server) onBroker(m broker.Message) {
	if bayeux.IsService(m.Channel) || bayeux.IsMeta(m.Channel) {
		return
	}
	tp := targetPool.Get().(*[]*session)
	targets := (*tp)[:0]
	s.mu.RLock()
	for _, p := range bayeux.Expand(m.Channel) {
		for ss := range s.index[p] {
			targets = append(targets, ss)
		}
	}
	s.mu.RUnlock()
	if len(targets) > 0 {
		om := outMsg{seq: m.Seq, published: m.Published.UnixNano()}
		om.b, om.alone = framedDelivery(s.encodeDelivery(m))
		for _, ss := range targets {
			// a session subscribed through two matching patterns gets the
			// message once: deliver drops seq <= cursor.
			ss.deliver(om)
		}
	}
	clear(targets) // the pool keeps no session alive
	if cap(targets) <= maxPooledTargets {
		*tp = targets[:0]
		targetPool.Put(tp)
	}
}

// targetPool holds onBroker's lists of subscribers, so that a message
// allocates none (brokers may deliver on several goroutines).
var targetPool = sync.Pool{New: func() any { return new([]*session) }}

// maxPooledTargets bounds the lists targetPool keeps.
const maxPooledTargets = 1 << 16

// framedDelivery returns a delivery's encoded message, and the websocket
// frame that carries it alone, [b], in one allocation: the message is the
// frame's middle.
func framedDelivery(b []byte) ([]byte, *[]byte) {
	n := len(b) + 2
	f := make([]byte, 0, n+10)
	f = appendHeader(f, ws.OpText, n)
	h := len(f) + 1
	f = append(append(append(f, '['), b...), ']')
	return f[h : h+len(b) : h+len(b)], &f
}

// encodeDelivery turns a broker message into the bytes every subscriber
// receives, through the outgoing extensions.
func (s *Server) encodeDelivery(m broker.Message) []byte {
	b := stampSeq(m.Payload, m.Seq)
	if !s.hasOutgoing() {
		return b
	}
	msgs, err := bayeux.DecodeMessages(b)
	if err != nil || len(msgs) != 1 {
		return b
	}
	msg := &msgs[0]
	s.outgoing(nil, msg)
	out, err := marshalMessage(msg)
	if err != nil {
		return b
	}
	return out
}

// since is the node's clock now as a session keeps it: the time since
// epoch (monotonic when the clock is).
func (s *Server) since() time.Duration { return s.cfg.Now().Sub(s.epoch) }

// addSession registers a new session.
func (s *Server) addSession(ss *session) {
	s.mu.Lock()
	s.sessions[ss.id] = ss
	n := len(s.sessions)
	s.mu.Unlock()
	s.met.sessions.Set(float64(n))
}

func (s *Server) lookup(id string) *session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[id]
}

// subscribeBroker subscribes the node to its broker: by interest (only
// the channels the index's patterns match) when the broker can, else to
// everything.
func (s *Server) subscribeBroker(ctx context.Context) (func(), error) {
	ib, ok := s.broker.(broker.Interest)
	if !ok {
		return s.broker.Subscribe(ctx, s.onBroker)
	}
	sub, err := ib.SubscribeInterest(ctx, s.onBroker, s.indexPatterns)
	if err != nil {
		return nil, err
	}
	s.interest = sub
	s.met.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "wsfleet_broker_received_total",
		Help: "Messages this node took from the broker: with interest-based delivery, only those on channels its sessions subscribe to (all while its channels grow fast: NATSOptions.InterestSettle).",
	}, func() float64 { return float64(sub.Received()) }))
	return sub.Stop, nil
}

// indexPatterns is the node's interest: every pattern some session here
// subscribes to.
func (s *Server) indexPatterns() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Collect(maps.Keys(s.index))
}

// indexAddAll adds ss to the subscribers of patterns, and returns once
// the broker delivers what they match: a message accepted after that
// reaches the session, and a replay read after that (History) meets the
// live messages with no hole (the overlap is dropped by sequence).
func (s *Server) indexAddAll(ss *session, patterns []string) {
	for _, p := range patterns {
		s.indexAdd(ss, p)
	}
	if s.interest == nil || len(patterns) == 0 {
		return
	}
	if err := s.interest.Want(s.ctx, patterns); err != nil && s.ctx.Err() == nil {
		s.met.brokerErrors.Inc()
		s.log.Warn("interest switch failed", "client", ss.id, "patterns", patterns, "err", err)
	}
}

// interestDropped tells the broker that a pattern lost its last
// subscriber here.
func (s *Server) interestDropped() {
	if s.interest != nil {
		s.interest.Changed()
	}
}

// indexAdd adds ss to the subscribers of pattern. Callers wait for the
// broker's interest (indexAddAll) before reading History.
func (s *Server) indexAdd(ss *session, p string) {
	s.mu.Lock()
	set := s.index[p]
	if set == nil {
		set = map[*session]struct{}{}
		s.index[p] = set
	}
	if _, ok := set[ss]; !ok {
		set[ss] = struct{}{}
		s.nsubs++
	}
	n := s.nsubs
	s.mu.Unlock()
	s.met.subscriptions.Set(float64(n))
}

func (s *Server) indexRemove(ss *session, p string) {
	dropped := false
	s.mu.Lock()
	if set := s.index[p]; set != nil {
		if _, ok := set[ss]; ok {
			delete(set, ss)
			s.nsubs--
			if len(set) == 0 {
				delete(s.index, p)
				dropped = true
			}
		}
	}
	n := s.nsubs
	s.mu.Unlock()
	s.met.subscriptions.Set(float64(n))
	if dropped {
		s.interestDropped()
	}
}

// removeSession forgets ss and closes its websocket, if any.
func (s *Server) removeSession(ss *session, why string) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	subs := ss.subs
	ss.subs = nil
	ss.queue = nil
	ss.dropPendingLocked()
	if ss.held != nil {
		s.holds.remove(ss.held)
		ss.held = nil
	}
	if w := ss.wakeLocked(); w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	ss.mu.Unlock()
	dropped := false
	s.mu.Lock()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
	}
	for _, p := range subs {
		if set := s.index[p]; set != nil {
			if _, ok := set[ss]; ok {
				delete(set, ss)
				s.nsubs--
				if len(set) == 0 {
					delete(s.index, p)
					dropped = true
				}
			}
		}
	}
	n, nsubs := len(s.sessions), s.nsubs
	s.mu.Unlock()
	if dropped {
		s.interestDropped()
	}
	s.met.sessions.Set(float64(n))
	s.met.subscriptions.Set(float64(nsubs))
	s.log.Debug("session removed", "client", ss.id, "why", why)
}

// slowConsumer drops a session whose queue overflowed.
func (s *Server) slowConsumer(ss *session) {
	s.met.slowConsumers.Inc()
	s.log.Info("slow consumer disconnected", "client", ss.id, "queue_limit", s.cfg.QueueLimit)
	ss.mu.Lock()
	c := ss.ws
	ss.mu.Unlock()
	s.removeSession(ss, "slow consumer")
	if c != nil {
		c.close(wsStatusPolicyViolation, "slow consumer")
	}
}

// Status is the node's state as /admin/status reports it (the admin API's
// type).
type Status = nodeapi.Status

// DrainStatus is a drain's progress (the admin API's type).
type DrainStatus = nodeapi.DrainStatus

// Status returns the node's state, with the admin API version it speaks.
func (s *Server) Status() Status {
	s.mu.RLock()
	st := Status{
		APIVersion: nodeapi.Version, Node: s.cfg.NodeID, Version: s.cfg.Version, Image: s.cfg.Image, State: s.state,
		Connections: len(s.wsConns) + int(s.polls.Load()), Sessions: len(s.sessions), Subscriptions: s.nsubs,
	}
	s.mu.RUnlock()
	st.Drain = s.drainStatus(st.Connections)
	st.Cordoned = s.cordoned.Load()
	st.Shed = s.shedStatus()
	st.Received = int(s.received.Load())
	return st
}

// Ready reports whether the node takes new clients. A cordoned node does:
// only its readiness check fails (serveReady), so that the load balancer
// stops sending it new connections while whatever still reaches it is
// served.
func (s *Server) Ready() bool {
	s.mu.RLock()
	ready := s.state == StateReady
	s.mu.RUnlock()
	return ready && s.brokerHealthy() == nil
}

// brokerHealthy is the broker's health when it can lose its backend: a node
// whose NATS is away takes no new clients but keeps its own.
func (s *Server) brokerHealthy() error {
	if h, ok := s.broker.(broker.HealthChecker); ok {
		return h.Healthy()
	}
	return nil
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if err := s.brokerHealthy(); err != nil {
		http.Error(w, "not ready: broker: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if !s.Ready() {
		// draining wins over cordoned: uncordoning a draining node never
		// makes it ready
		http.Error(w, "not ready: "+string(s.Status().State), http.StatusServiceUnavailable)
		return
	}
	if s.cordoned.Load() {
		http.Error(w, "not ready: cordoned", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// shareLock returns the lock of client id's shared-session hand-overs.
func (s *Server) shareLock(id string) *sync.Mutex {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return &s.shareLocks[h%uint32(len(s.shareLocks))]
}
