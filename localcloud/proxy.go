package localcloud

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// listener is a load balancer listener: a reverse proxy on 127.0.0.1:port
// for HTTP and websocket traffic to the healthy targets of one target
// group. Connections to each target are tracked so that they can be cut
// when the target's deregistration delay ends, as an ALB does.
type listener struct {
	arn   string
	lb    *loadBalancer
	port  int
	tgARN string
	addr  string

	ln  net.Listener
	srv *http.Server
	rr  int // round-robin position, under the cloud's mutex

	connMu sync.Mutex
	conns  map[string]map[net.Conn]struct{} // by target address
}

func (c *Cloud) startListener(lb *loadBalancer, port int, tgARN string) (*listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	l := &listener{
		arn: "arn:aws:elasticloadbalancing:" + c.cfg.Region + ":" + accountID + ":listener/app/" + lb.name + "/" + lb.arn[len(lb.arn)-16:] + "/" + randHex(16),
		lb:  lb, port: port, tgARN: tgARN, addr: ln.Addr().String(), ln: ln,
		conns: map[string]map[net.Conn]struct{}{},
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return l.track(addr, conn), nil
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
			if f := c.cfg.OnProxied; f != nil {
				f(res.Request.URL.Host, res.Request, res.StatusCode)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			c.log.Debug("load balancer: target error", "listener", l.addr, "err", err)
			http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
		},
	}
	l.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			addr := c.pickTarget(l)
			if addr == "" {
				http.Error(w, "503 Service Temporarily Unavailable", http.StatusServiceUnavailable)
				return
			}
			u := &url.URL{Scheme: "http", Host: addr}
			rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, u)))
		}),
	}
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("load balancer listener stopped", "addr", l.addr, "err", err)
		}
	}()
	c.log.Info("load balancer listening", "lb", lb.name, "addr", l.addr)
	return l, nil
}

// pickTarget chooses the next healthy target round-robin. Unhealthy and
// draining targets get no new requests (their open connections, websockets
// included, are left alone: only the end of a deregistration delay cuts
// them). When no target is healthy, the listener fails open to every
// registered target that is not draining, as an ALB does ("Health checks
// for Application Load Balancer target groups"). Every routing algorithm
// (load_balancing.algorithm.type) routes round robin here: with the
// connection counts of the local cloud's tests and demo, least outstanding
// requests (which counts requests, not open websockets) and weighted
// random would spread new connections the same way.
func (c *Cloud) pickTarget(l *listener) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	tg := c.targetGrps[l.tgARN]
	if tg == nil {
		return ""
	}
	var healthyAddrs, open []string
	for _, t := range tg.sortedTargets() {
		in := c.instances[t.id]
		if in == nil || in.state != stateRunning || t.state == "draining" {
			continue
		}
		addr := net.JoinHostPort(in.ip, strconv.Itoa(t.port))
		open = append(open, addr)
		if t.state == "healthy" {
			healthyAddrs = append(healthyAddrs, addr)
		}
	}
	pool := healthyAddrs
	if len(pool) == 0 {
		pool = open
	}
	if len(pool) == 0 {
		return ""
	}
	l.rr++
	return pool[l.rr%len(pool)]
}

// trackedConn removes itself from its listener's set when closed.
type trackedConn struct {
	net.Conn
	l    *listener
	addr string
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.l.connMu.Lock()
		delete(t.l.conns[t.addr], t)
		t.l.connMu.Unlock()
	})
	return t.Conn.Close()
}

func (l *listener) track(addr string, conn net.Conn) net.Conn {
	tc := &trackedConn{Conn: conn, l: l, addr: addr}
	l.connMu.Lock()
	if l.conns[addr] == nil {
		l.conns[addr] = map[net.Conn]struct{}{}
	}
	l.conns[addr][tc] = struct{}{}
	l.connMu.Unlock()
	return tc
}

// cut closes every connection to a target; the proxied client connections
// (websockets included) end with them.
func (l *listener) cut(addr string) {
	l.connMu.Lock()
	conns := l.conns[addr]
	delete(l.conns, addr)
	l.connMu.Unlock()
	for conn := range conns {
		conn.(*trackedConn).Conn.Close()
	}
}

// Connections reports the open proxied connections per target address.
func (l *listener) connections() map[string]int {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	out := map[string]int{}
	for a, cs := range l.conns {
		out[a] = len(cs)
	}
	return out
}

func (l *listener) close() {
	l.srv.Close()
	l.connMu.Lock()
	all := l.conns
	l.conns = map[string]map[net.Conn]struct{}{}
	l.connMu.Unlock()
	for _, cs := range all {
		for conn := range cs {
			conn.(*trackedConn).Conn.Close()
		}
	}
}
