package localcloud

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// listener is a load balancer listener: the API's record of it, and the
// load balancer nodes that serve it. By default one node, a reverse proxy
// in the cloud's process on 127.0.0.1:port; with Config.LBNodes, that many
// nodes, each its own process on its own address (lbnode.go), as an ALB
// runs several nodes behind one DNS name.
type listener struct {
	arn   string
	lb    *loadBalancer
	port  int
	tgARN string
	addr  string // the first node's address

	px    *proxy    // the in-process node; nil with remote nodes
	nodes []*lbNode // the remote nodes (lbnode.go)
	rr    int       // round-robin position of px, under the cloud's mutex
}

func (c *Cloud) startListener(lb *loadBalancer, port int, tgARN string) (*listener, error) {
	l := &listener{
		arn: "arn:aws:elasticloadbalancing:" + c.cfg.Region + ":" + accountID + ":listener/app/" + lb.name + "/" + lb.arn[len(lb.arn)-16:] + "/" + randHex(16),
		lb:  lb, port: port, tgARN: tgARN,
	}
	if c.cfg.LBNodes > 0 {
		if err := c.startLBNodes(l); err != nil {
			return nil, err
		}
		return l, nil
	}
	var onProxied func(string, *http.Request, int)
	if f := c.cfg.OnProxied; f != nil {
		onProxied = func(target string, req *http.Request, status int) { f(c.now(), target, req, status) }
	}
	px, err := startProxy(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "", func() string { return c.pickTarget(l) }, onProxied, c.log)
	if err != nil {
		return nil, err
	}
	l.px, l.addr = px, px.addr
	c.log.Info("load balancer listening", "lb", lb.name, "addr", l.addr)
	return l, nil
}

// addrs are the addresses of the listener's nodes.
func (l *listener) addrs() []string {
	if l.px != nil {
		return []string{l.px.addr}
	}
	out := make([]string, len(l.nodes))
	for i, n := range l.nodes {
		out[i] = n.addr
	}
	return out
}

// cut closes every connection to a target on every node of the listener.
func (l *listener) cut(addr string) {
	if l.px != nil {
		l.px.cut(addr)
	}
	for _, n := range l.nodes {
		n.cut(addr)
	}
}

func (l *listener) close() {
	if l.px != nil {
		l.px.close()
	}
	for _, n := range l.nodes {
		n.close()
	}
}

// proxy is one load balancer node: a reverse proxy for HTTP and websocket
// traffic to the target pick chooses for each request. Connections to each
// target are tracked so that they can be cut when the target's
// deregistration delay ends, as an ALB does. The cloud runs one in its own
// process per listener, or each of Config.LBNodes runs one (RunLBNode).
type proxy struct {
	addr string
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger

	connMu sync.Mutex
	conns  map[string]map[net.Conn]struct{} // by target address

	// dial connects to a target, tracked (cut closes it).
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

// startProxy listens on listen and proxies to pick's targets, dialling
// them from the address dialFrom ("" for the system's choice). onProxied,
// when set, hears each target response (Config.OnProxied).
func startProxy(listen, dialFrom string, pick func() string, onProxied func(string, *http.Request, int), log *slog.Logger) (*proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &proxy{addr: ln.Addr().String(), ln: ln, log: log, conns: map[string]map[net.Conn]struct{}{}}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if dialFrom != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(dialFrom)}
	}
	p.dial = func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return p.track(addr, conn), nil
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return p.dial(ctx, addr)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     60 * time.Second,
	}
	type targetKey struct{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			u := r.In.Context().Value(targetKey{}).(*url.URL)
			r.SetURL(u)
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport:     transport,
		FlushInterval: -1,
		ModifyResponse: func(res *http.Response) error {
			if onProxied != nil {
				onProxied(res.Request.URL.Host, res.Request, res.StatusCode)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { p.badGateway(w, err) },
	}
	p.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			addr := pick()
			if addr == "" {
				http.Error(w, "503 Service Temporarily Unavailable", http.StatusServiceUnavailable)
				return
			}
			if isUpgrade(r) {
				p.serveUpgrade(w, r, addr, onProxied)
				return
			}
			u := &url.URL{Scheme: "http", Host: addr}
			rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, u)))
		}),
	}
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("load balancer listener stopped", "addr", p.addr, "err", err)
		}
	}()
	return p, nil
}

// pickTarget chooses the next target of l's group round-robin (targetPool
// says which may have it).
func (c *Cloud) pickTarget(l *listener) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	healthy, open := c.targetPool(l.tgARN)
	return choose(healthy, open, &l.rr)
}

// targetPool lists the addresses of a target group's targets that may get
// new requests. Unhealthy and draining targets get no new requests (their
// open connections, websockets included, are left alone: only the end of a
// deregistration delay cuts them). When no target is healthy, the listener
// fails open to every registered target that is not draining, as an ALB
// does ("Health checks for Application Load Balancer target groups"):
// open lists those. Every routing algorithm
// (load_balancing.algorithm.type) routes round robin here: with the
// connection counts of the local cloud's tests and demo, least outstanding
// requests (which counts requests, not open websockets) and weighted
// random would spread new connections the same way. The caller holds the
// cloud's mutex.
func (c *Cloud) targetPool(tgARN string) (healthy, open []string) {
	tg := c.targetGrps[tgARN]
	if tg == nil {
		return nil, nil
	}
	for _, t := range tg.sortedTargets() {
		in := c.instances[t.id]
		if in == nil || in.state != stateRunning || t.state == "draining" {
			continue
		}
		addr := net.JoinHostPort(in.ip, strconv.Itoa(t.port))
		open = append(open, addr)
		if t.state == "healthy" {
			healthy = append(healthy, addr)
		}
	}
	return healthy, open
}

// choose picks round-robin from healthy, or from open when none is
// healthy; "" when both are empty. rr is the node's position.
func choose(healthy, open []string, rr *int) string {
	pool := healthy
	if len(pool) == 0 {
		pool = open
	}
	if len(pool) == 0 {
		return ""
	}
	*rr++
	return pool[*rr%len(pool)]
}

// badGateway answers a request whose target failed (an ALB's 502).
func (p *proxy) badGateway(w http.ResponseWriter, err error) {
	p.log.Debug("load balancer: target error", "listener", p.addr, "err", err)
	http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
}

// trackedConn removes itself from its proxy's set when closed.
type trackedConn struct {
	net.Conn
	p    *proxy
	addr string
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.p.connMu.Lock()
		delete(t.p.conns[t.addr], t)
		t.p.connMu.Unlock()
	})
	return t.Conn.Close()
}

func (p *proxy) track(addr string, conn net.Conn) net.Conn {
	tc := &trackedConn{Conn: conn, p: p, addr: addr}
	p.connMu.Lock()
	if p.conns[addr] == nil {
		p.conns[addr] = map[net.Conn]struct{}{}
	}
	p.conns[addr][tc] = struct{}{}
	p.connMu.Unlock()
	return tc
}

// cut closes every connection to a target; the proxied client connections
// (websockets included) end with them.
func (p *proxy) cut(addr string) {
	p.connMu.Lock()
	conns := p.conns[addr]
	delete(p.conns, addr)
	p.connMu.Unlock()
	for conn := range conns {
		conn.(*trackedConn).Conn.Close()
	}
}

// connections reports the open proxied connections per target address.
func (p *proxy) connections() map[string]int {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	out := map[string]int{}
	for a, cs := range p.conns {
		out[a] = len(cs)
	}
	return out
}

func (p *proxy) close() {
	p.srv.Close()
	p.connMu.Lock()
	all := p.conns
	p.conns = map[string]map[net.Conn]struct{}{}
	p.connMu.Unlock()
	for _, cs := range all {
		for conn := range cs {
			conn.(*trackedConn).Conn.Close()
		}
	}
}
