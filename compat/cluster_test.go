package compat

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"wsfleet/client"
)

// This file is issue 4's cluster test: three `wsfleet serve` processes (one
// hosting the embedded NATS), a round-robin proxy in front of them that
// skips nodes that are not ready, and faye, halley and Go clients; one node
// is drained (or killed) while messages flow.

// rrProxy sends each request or websocket to the next ready backend.
type rrProxy struct {
	backends []*url.URL
	ready    []atomic.Bool
	next     atomic.Uint64
	stop     chan struct{}
}

func newProxy(t *testing.T, addrs []string) *httptest.Server {
	p := &rrProxy{ready: make([]atomic.Bool, len(addrs)), stop: make(chan struct{})}
	for _, a := range addrs {
		p.backends = append(p.backends, &url.URL{Scheme: "http", Host: a})
	}
	p.check()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.check()
			}
		}
	}()
	hs := httptest.NewServer(p)
	t.Cleanup(func() { close(p.stop); hs.CloseClientConnections(); hs.Close() })
	return hs
}

// check polls every backend's /readyz, as a load balancer's health check.
func (p *rrProxy) check() {
	c := http.Client{Timeout: time.Second}
	for i, b := range p.backends {
		resp, err := c.Get(b.String() + "/readyz")
		ok := err == nil && resp.StatusCode == 200
		if err == nil {
			resp.Body.Close()
		}
		p.ready[i].Store(ok)
	}
}

func (p *rrProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for range len(p.backends) {
		i := int(p.next.Add(1) % uint64(len(p.backends)))
		if !p.ready[i].Load() {
			continue
		}
		target := p.backends[i]
		rp := &httputil.ReverseProxy{
			Rewrite:  func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			ErrorLog: nil,
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				http.Error(w, "backend: "+err.Error(), http.StatusBadGateway)
			},
		}
		rp.ServeHTTP(w, r)
		return
	}
	http.Error(w, "no ready backend", http.StatusServiceUnavailable)
}

// listener is a listen.js process holding some faye or halley clients.
type listener struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

type clientRecord struct {
	Kind       string `json:"kind"`
	Got        []int  `json:"got"`
	Handshakes int    `json:"handshakes"`
	MaxGapMs   int    `json:"maxGapMs"`
}

func startListener(t *testing.T, proxyURL, kind, transport string, count int) *listener {
	t.Helper()
	cmd := exec.Command("node", "listen.js", kind, transport, fmt.Sprint(count), "/cluster/feed")
	cmd.Env = append(os.Environ(), "WSFLEET_URL="+proxyURL)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &listener{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
		for sc.Scan() {
			l.lines <- sc.Text()
		}
		close(l.lines)
	}()
	t.Cleanup(func() {
		io.WriteString(in, "exit\n")
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	select {
	case line := <-l.lines:
		if line != "ready" {
			t.Fatalf("%s/%s listener: %s", kind, transport, line)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s/%s listener not ready", kind, transport)
	}
	return l
}

func (l *listener) report(t *testing.T) []clientRecord {
	t.Helper()
	io.WriteString(l.in, "report\n")
	select {
	case line, ok := <-l.lines:
		if !ok {
			t.Fatal("listener exited")
		}
		var r struct {
			Clients []clientRecord `json:"clients"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("listener report %q: %v", line, err)
		}
		return r.Clients
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not report")
		return nil
	}
}

// goListener holds Go clients and records what they receive.
type goListener struct {
	mu      sync.Mutex
	recs    []*clientRecord
	clients []*client.Client
}

func startGoClients(t *testing.T, proxyURL string, count int) *goListener {
	t.Helper()
	g := &goListener{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range count {
		rec := &clientRecord{Kind: "go/websocket"}
		var last time.Time
		c, err := client.Dial(ctx, client.Config{URL: proxyURL + "/bayeux", RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		err = c.Subscribe(ctx, "/cluster/feed", func(d client.Delivery) {
			var v struct{ N int }
			json.Unmarshal(d.Data, &v)
			g.mu.Lock()
			if now := time.Now(); !last.IsZero() && int(now.Sub(last).Milliseconds()) > rec.MaxGapMs {
				rec.MaxGapMs = int(now.Sub(last).Milliseconds())
			}
			last = time.Now()
			rec.Got = append(rec.Got, v.N)
			g.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		g.recs = append(g.recs, rec)
		g.clients = append(g.clients, c)
	}
	return g
}

func (g *goListener) report() []clientRecord {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []clientRecord
	for i, r := range g.recs {
		cp := *r
		cp.Got = append([]int(nil), r.Got...)
		cp.Handshakes = int(g.clients[i].Stats().Handshakes)
		out = append(out, cp)
	}
	return out
}

// status reads a node's /admin/status.
func status(t *testing.T, addr string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st map[string]any
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// exactlyOnce reports how a client's record differs from 0..n-1.
func exactlyOnce(got []int, n int) (missing, dups, reordered int) {
	seen := map[int]int{}
	last := -1
	for _, v := range got {
		seen[v]++
		if v < last {
			reordered++
		}
		last = v
	}
	for i := range n {
		switch c := seen[i]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	return
}

func TestCluster(t *testing.T) {
	needNode(t)
	for _, mode := range []string{"drain", "kill"} {
		t.Run(mode, func(t *testing.T) { runCluster(t, mode) })
	}
}

func runCluster(t *testing.T, mode string) {
	natsAddr := freeAddr(t)
	common := []string{"--timeout", "5s", "--drain-window", "2s", "--drain-max-rate", "100", "--drain-deadline", "20s"}
	n1 := startServe(t, append([]string{"--node-id", "ws-01", "--embedded-nats", natsAddr}, common...)...)
	n2 := startServe(t, append([]string{"--node-id", "ws-02", "--nats", "nats://" + natsAddr}, common...)...)
	n3 := startServe(t, append([]string{"--node-id", "ws-03", "--nats", "nats://" + natsAddr}, common...)...)
	proxy := newProxy(t, []string{n1.addr, n2.addr, n3.addr})

	listeners := []*listener{
		startListener(t, proxy.URL, "faye", "websocket", 3),
		startListener(t, proxy.URL, "halley", "websocket", 3),
		startListener(t, proxy.URL, "faye", "long-polling", 2),
		startListener(t, proxy.URL, "halley", "long-polling", 2),
	}
	gos := startGoClients(t, proxy.URL, 3)

	on2 := status(t, n2.addr)["connections"].(float64)
	if on2 == 0 {
		t.Fatalf("no client on ws-02: the test could not see a drain")
	}
	t.Logf("connections: ws-01 %v, ws-02 %v, ws-03 %v", status(t, n1.addr)["connections"], on2, status(t, n3.addr)["connections"])

	const total = 300
	pub := func(i int) {
		body := fmt.Sprintf(`{"channel":"/cluster/feed","data":{"n":%d}}`, i)
		for attempt := 0; attempt < 50; attempt++ {
			req, _ := http.NewRequest("POST", proxy.URL+"/publish", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("publish %d failed", i)
	}
	for i := range total {
		if i == 60 {
			switch mode {
			case "drain":
				req, _ := http.NewRequest("POST", "http://"+n2.addr+"/admin/drain", strings.NewReader(`{"window":"2s","max_rate":100,"deadline":"20s"}`))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 202 {
					t.Fatalf("drain: %v %v", err, resp)
				}
				resp.Body.Close()
			case "kill":
				n2.cmd.Process.Signal(syscall.SIGKILL)
				n2.cmd.Wait()
				n2.cmd = nil
			}
		}
		pub(i)
		time.Sleep(20 * time.Millisecond)
	}

	// wait until every client has everything, or long enough to say not
	collect := func() []clientRecord {
		var all []clientRecord
		for _, l := range listeners {
			all = append(all, l.report(t)...)
		}
		return append(all, gos.report()...)
	}
	var recs []clientRecord
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs = collect()
		complete := true
		for _, r := range recs {
			if m, _, _ := exactlyOnce(r.Got, total); m > 0 {
				complete = false
			}
		}
		if complete || time.Now().After(deadline) || (mode == "kill" && time.Now().After(deadline.Add(-12*time.Second))) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	lossy := 0
	for i, r := range recs {
		m, d, o := exactlyOnce(r.Got, total)
		t.Logf("client %d %s: received %d, missing %d, duplicates %d, reordered %d, handshakes %d, longest gap %dms", i, r.Kind, len(r.Got), m, d, o, r.Handshakes, r.MaxGapMs)
		if d > 0 || o > 0 {
			t.Errorf("client %d %s: %d duplicates, %d out of order", i, r.Kind, d, o)
		}
		if m > 0 {
			lossy++
			if mode == "drain" {
				t.Errorf("client %d %s lost %d messages across the drain: %v", i, r.Kind, m, missingOf(r.Got, total))
			}
		}
	}
	if mode == "kill" && lossy == 0 {
		t.Errorf("kill -9 showed no loss: the test cannot see loss")
	}
	if mode == "drain" {
		// a drained node exits by itself, with status 0
		done := make(chan error, 1)
		go func() { done <- n2.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ws-02 exited with %v", err)
			}
			n2.cmd = nil
		case <-time.After(20 * time.Second):
			t.Errorf("ws-02 still runs after its drain")
		}
	}
}

// missingOf lists the numbers below n that got lacks.
func missingOf(got []int, n int) []int {
	seen := map[int]bool{}
	for _, v := range got {
		seen[v] = true
	}
	var out []int
	for i := range n {
		if !seen[i] {
			out = append(out, i)
		}
	}
	return out
}
