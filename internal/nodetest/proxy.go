package nodetest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// proxy sends each request or websocket to the next ready backend, as a
// load balancer without stickiness does: the cluster tests need the
// clients of one session to land on different nodes, and a drained or
// killed node to get no new requests once its /readyz fails.
type proxy struct {
	backends []*url.URL
	ready    []atomic.Bool
	next     atomic.Uint64
}

// NewProxy starts a round-robin proxy in front of the nodes at addrs
// (host:port). It polls their /readyz every 100ms, as a load balancer's
// health check, and skips those that fail it; with none ready it answers
// 503. The test's cleanup closes it and its client connections.
func NewProxy(t testing.TB, addrs ...string) *httptest.Server {
	t.Helper()
	p := &proxy{ready: make([]atomic.Bool, len(addrs))}
	for _, a := range addrs {
		p.backends = append(p.backends, &url.URL{Scheme: "http", Host: a})
	}
	p.check()
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				p.check()
			}
		}
	}()
	hs := httptest.NewServer(p)
	t.Cleanup(func() { close(stop); hs.CloseClientConnections(); hs.Close() })
	return hs
}

// check polls every backend's /readyz once.
func (p *proxy) check() {
	c := http.Client{Timeout: time.Second}
	for i, b := range p.backends {
		resp, err := c.Get(b.String() + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		p.ready[i].Store(err == nil && resp.StatusCode == http.StatusOK)
	}
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for range len(p.backends) {
		i := int(p.next.Add(1) % uint64(len(p.backends)))
		if !p.ready[i].Load() {
			continue
		}
		target := p.backends[i]
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				http.Error(w, "backend: "+err.Error(), http.StatusBadGateway)
			},
		}
		rp.ServeHTTP(w, r)
		return
	}
	http.Error(w, "no ready backend", http.StatusServiceUnavailable)
}
