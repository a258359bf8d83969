package server

import (
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"wsfleet/bayeux"
)

// The node's limits against clients that are hostile or broken (the table
// in docs/server.md, "Limits and abuse"). Each is a Config field, a flag
// of `wsfleet serve`, a value in wsfleet_limit{limit} and, where the node
// itself enforces it, a count in wsfleet_limited_total{limit}.

// Limit names, as the metrics label them.
const (
	limitMaxConnections    = "max_connections"
	limitHandshakeTimeout  = "handshake_timeout"
	limitReadTimeout       = "read_timeout"
	limitHandshakesPerIP   = "handshakes_per_ip"
	maxRateLimitedAddrs    = 65536 // client addresses the handshake limiter remembers
	defaultMaxConnections  = 50_000
	defaultReadTimeout     = 10 * time.Second
	defaultReadHeader      = 10 * time.Second
	defaultIdleTimeout     = 120 * time.Second
	defaultWSSendBuffer    = 256 << 10
	defaultHandshakeBurst  = 20
	handshakeRetryInterval = time.Second // least advice.interval of a refused handshake
)

// admit counts a new connection (a websocket, or a long-polling request in
// flight: what /admin/status counts) and reports false, counting nothing,
// when the node already has MaxConnections.
func (s *Server) admit() bool {
	if s.cfg.MaxConnections < 0 {
		s.admitted.Add(1)
		return true
	}
	if s.admitted.Add(1) > int64(s.cfg.MaxConnections) {
		s.admitted.Add(-1)
		s.met.limited.WithLabelValues(limitMaxConnections).Inc()
		return false
	}
	return true
}

// unadmit gives back what admit counted.
func (s *Server) unadmit() { s.admitted.Add(-1) }

// refuseFull answers a request the connection cap refuses: 503 before any
// upgrade, so that the client (or the load balancer) tries again later.
func (s *Server) refuseFull(w http.ResponseWriter, r *http.Request) {
	s.log.Debug("connection refused: node full", "max_connections", s.cfg.MaxConnections, "remote", r.RemoteAddr)
	s.cors(w, r)
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Connection", "close")
	s.met.errorCode(http.StatusServiceUnavailable)
	http.Error(w, "node full: too many connections", http.StatusServiceUnavailable)
}

// limitBodies bounds how long a request body may take to arrive (ReadTimeout),
// through the connection's read deadline: http.Server's own ReadTimeout
// would also cut a long-polling connect held past it (its background read
// fails and cancels the request) and would stay on hijacked websockets.
// Upgrades and bodiless requests are left alone.
func (s *Server) limitBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && !isUpgrade(r) {
			setReadDeadline(w, time.Now().Add(s.cfg.ReadTimeout))
		}
		h.ServeHTTP(w, r)
	})
}

// setReadDeadline moves the request connection's read deadline; a writer
// without a connection (a test's recorder) has none to move.
func setReadDeadline(w http.ResponseWriter, t time.Time) {
	_ = http.NewResponseController(w).SetReadDeadline(t)
}

// refuseBody answers a request whose body could not be read for one of the
// limits and reports true: 408, counted, with the connection closed, when
// it did not arrive within the read timeout (the deadline stays passed, so
// net/http does not wait for the rest of it either); 413 when it is larger
// than the message size limit. Another error is the caller's to answer.
func (s *Server) refuseBody(w http.ResponseWriter, err error) bool {
	var mb *http.MaxBytesError
	switch {
	case isTimeout(err):
		s.met.limited.WithLabelValues(limitReadTimeout).Inc()
		w.Header().Set("Connection", "close")
		s.badRequest(w, http.StatusRequestTimeout, "request body not received in time")
	case errors.As(err, &mb):
		s.badRequest(w, http.StatusRequestEntityTooLarge, "request larger than the message size limit")
	default:
		return false
	}
	return true
}

func isUpgrade(r *http.Request) bool { return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") }

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// armHandshakeDeadline closes wc unless a /meta/connect binds it within
// HandshakeTimeout: a socket that upgrades and then stays silent (or only
// ever handshakes) would otherwise hold its descriptor and buffers for
// good. One timer on the node's clock, stopped by the first connect; no
// goroutine waits on it.
func (s *Server) armHandshakeDeadline(wc *wsConn) {
	wc.closeMu.Lock()
	defer wc.closeMu.Unlock()
	s.armHandshakeDeadlineLocked(wc)
}

func (s *Server) armHandshakeDeadlineLocked(wc *wsConn) {
	wc.deadline = s.cfg.AfterFunc(s.cfg.HandshakeTimeout, func() {
		if wc.spoke.Load() {
			return
		}
		s.met.limited.WithLabelValues(limitHandshakeTimeout).Inc()
		s.log.Debug("websocket closed: no /meta/connect in time", "handshake_timeout", s.cfg.HandshakeTimeout)
		wc.close(wsStatusPolicyViolation, "no Bayeux connect in time")
	})
}

// rearmHandshakeDeadline puts the deadline back on a socket whose session
// ended while the socket stays open (a /meta/disconnect the client does
// not follow by closing, an expired token, a replay over the limit): with
// no session left to time out, the socket must carry a new connect within
// the deadline, as a new socket must, or it would stay open for good.
func (s *Server) rearmHandshakeDeadline(wc *wsConn) {
	wc.closeMu.Lock()
	defer wc.closeMu.Unlock()
	if wc.closing || !wc.spoke.Load() {
		return
	}
	wc.spoke.Store(false)
	s.armHandshakeDeadlineLocked(wc)
}

// spokeOnce records that a /meta/connect bound wc: the deadline is off. Only
// wc's owner calls it; the deadline itself is under closeMu, since a session
// that ends puts it back from elsewhere (rearmHandshakeDeadline).
func (wc *wsConn) spokeOnce() {
	if wc.spoke.Load() {
		return
	}
	wc.closeMu.Lock()
	defer wc.closeMu.Unlock()
	wc.spoke.Store(true)
	if wc.deadline != nil {
		wc.deadline.Stop()
		wc.deadline = nil // an idle socket keeps no timer
	}
}

// setSendBuffer bounds the kernel's send buffer of a websocket (SO_SNDBUF):
// without it Linux grows the buffer of a socket whose peer reads slowly to
// net.ipv4.tcp_wmem's maximum (4 MiB), all of it pinned kernel memory.
// Linux doubles the value asked for (its bookkeeping) and caps it at
// net.core.wmem_max. A non-positive size leaves the kernel's autotuning.
func setSendBuffer(conn net.Conn, size int) error {
	if size <= 0 {
		return nil
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return errors.New("set send buffer: connection has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setSockSndBuf(fd, size) }); err != nil {
		return err
	}
	return serr
}

// clientKey is the address a client's handshakes are counted under: the
// peer's, or with TrustForwardedFor the last X-Forwarded-For entry, which
// the proxy in front (an AWS ALB, the local cloud's load balancer) appends
// and a client cannot forge. IPv6 clients are keyed by their /64, which one
// host commonly has all of.
func (s *Server) clientKey(r *http.Request) string {
	addr := ""
	if s.cfg.TrustForwardedFor {
		if vs := r.Header.Values("X-Forwarded-For"); len(vs) > 0 {
			last := vs[len(vs)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			addr = strings.TrimSpace(last)
		}
	}
	if addr == "" {
		addr = r.RemoteAddr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			addr = h
		}
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// handshakeKey is the clientKey of the client whose handshake b carries:
// its websocket's, taken at the upgrade, or its long-polling request's,
// worked out only when a handshake needs it.
func (s *Server) handshakeKey(b *batch) string {
	if b.ws != nil {
		return b.ws.addr
	}
	return s.clientKey(b.req)
}

// rateLimited answers a handshake over the per-address limit: a 429-style
// Bayeux error advising the client to handshake again after a pause.
func (s *Server) rateLimited(r *bayeux.Message, wait time.Duration) *bayeux.Message {
	s.met.limited.WithLabelValues(limitHandshakesPerIP).Inc()
	wait = max(wait, handshakeRetryInterval)
	r.Error = bayeux.NewError(429, "Too many handshakes").Error()
	r.Advice = &bayeux.Advice{Reconnect: bayeux.ReconnectHandshake, Interval: bayeux.Millis(wait.Milliseconds())}
	return r
}

// handshakeLimiter is a token bucket per client address: rate handshakes a
// second, up to burst at once. It remembers at most max addresses; when it
// is full it forgets those whose bucket has filled up again (they lose
// nothing), and if that frees too little, arbitrary ones (which then start
// with a full bucket), so its memory stays bounded whatever the number of
// addresses.
type handshakeLimiter struct {
	rate  float64 // tokens a second
	burst float64
	max   int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]bucket
}

type bucket struct {
	tokens float64
	at     int64 // unix nanos of the last update
}

func newHandshakeLimiter(rate float64, burst, maxAddrs int, now func() time.Time) *handshakeLimiter {
	return &handshakeLimiter{rate: rate, burst: float64(max(burst, 1)), max: maxAddrs, now: now, buckets: map[string]bucket{}}
}

// allow takes a token for key; when there is none it reports false and how
// long until there is one.
func (l *handshakeLimiter) allow(key string) (bool, time.Duration) {
	now := l.now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.pruneLocked(now)
		}
		b = bucket{tokens: l.burst, at: now}
	}
	b.tokens = math.Min(l.burst, b.tokens+float64(now-b.at)/1e9*l.rate)
	b.at = now
	if b.tokens < 1 {
		l.buckets[key] = b
		return false, time.Duration((1 - b.tokens) / l.rate * 1e9)
	}
	b.tokens--
	l.buckets[key] = b
	return true, 0
}

// pruneLocked makes room: full buckets first, then arbitrary ones, until
// an eighth of the table is free.
func (l *handshakeLimiter) pruneLocked(now int64) {
	for k, b := range l.buckets {
		if b.tokens+float64(now-b.at)/1e9*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) <= l.max-l.max/8-1 {
			break
		}
		delete(l.buckets, k)
	}
}

// size is how many addresses the limiter remembers.
func (l *handshakeLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// allowedOrigin reports whether a CORS request from origin is answered.
// The answer carries credentials, because Faye's and CometD's cross-origin
// transports send their requests withCredentials and a browser drops a
// credentialed response without them; so without CORSOrigins any page may
// drive the node with its visitors' cookies. The node itself never
// authenticates by cookie (clients send a token in ext), but whatever is in
// front of it may (a load balancer's OIDC cookie): list the application's
// origins in CORSOrigins then.
func (s *Server) allowedOrigin(origin string) bool {
	if len(s.cfg.CORSOrigins) == 0 {
		return true
	}
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// websocketOrigin reports whether a websocket upgrade may proceed. A
// browser sends its page's Origin with every websocket and, unlike a
// cross-origin POST, does not ask the server first: a page on any site
// could open a websocket to the node with the user's cookies (cross-site
// websocket hijacking, for a node behind a load balancer that
// authenticates by cookie). So with CORSOrigins set, an upgrade whose
// Origin is neither listed nor the node's own host (same origin) is
// refused with 403, as Centrifugo's allowed_origins and gorilla's
// CheckOrigin do. A request without Origin is not a browser's (faye's
// and halley's Node.js clients, CometD's Java client) and proceeds, and so
// does every upgrade when CORSOrigins is empty (Faye's behaviour).
func (s *Server) websocketOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || s.allowedOrigin(origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// NewHTTPServer returns the http.Server that serves the node's Handler,
// with the header and idle timeouts. It has no ReadTimeout or WriteTimeout:
// a long-polling connect is held for Timeout and a websocket lives for
// hours; bodies are bounded by ReadTimeout through the handler instead.
func (s *Server) NewHTTPServer() *http.Server {
	return &http.Server{Handler: s.Handler(), ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, IdleTimeout: s.cfg.IdleTimeout}
}
