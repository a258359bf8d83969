package interop

import (
	"bufio"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCometDClusterDrain is issue 4's promise put to CometD: two nodes
// sharing an embedded NATS behind a round-robin proxy without stickiness,
// CometD clients on all three of its transports, one node drained while
// messages flow; every client must receive every message once, in order.

// rrProxy sends each request or websocket to the next ready backend, as a
// load balancer without stickiness does.
type rrProxy struct {
	backends []*url.URL
	ready    []atomic.Bool
	next     atomic.Uint64
}

func newProxy(t *testing.T, addrs ...string) *httptest.Server {
	t.Helper()
	p := &rrProxy{ready: make([]atomic.Bool, len(addrs))}
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

// check polls every backend's /readyz, as a load balancer's health check.
func (p *rrProxy) check() {
	c := http.Client{Timeout: time.Second}
	for i, b := range p.backends {
		resp, err := c.Get(b.String() + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		p.ready[i].Store(err == nil && resp.StatusCode == http.StatusOK)
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

// listener is a listen.mjs process holding some CometD clients.
type listener struct {
	in    io.WriteCloser
	lines chan string
}

type clientRecord struct {
	Kind       string `json:"kind"`
	Got        []int  `json:"got"`
	Handshakes int    `json:"handshakes"`
	MaxGapMs   int    `json:"maxGapMs"`
}

func startListener(t *testing.T, proxyURL, transport string, count int) *listener {
	t.Helper()
	cmd := exec.Command("node", "listen.mjs", transport, fmt.Sprint(count), "/cluster/feed")
	cmd.Env = append(os.Environ(), "WSFLEET_URL="+proxyURL)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &listener{in: in, lines: make(chan string, 16)}
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
			t.Fatalf("cometd/%s listener: %s", transport, line)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("cometd/%s listener not ready", transport)
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

// exactlyOnce reports how got differs from 0..n-1.
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
	return missing, dups, reordered
}

func connections(t *testing.T, n *wsnode) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.url()+"/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		Connections float64 `json:"connections"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	return st.Connections
}

// wsConnections reads a node's open websocket count from its metrics.
func wsConnections(t *testing.T, n *wsnode) float64 {
	t.Helper()
	resp, err := http.Get(n.url() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, `wsfleet_connections{transport="websocket"} `); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

func TestCometDClusterDrain(t *testing.T) {
	needNode(t)
	for _, mode := range []string{"drain", "kill"} {
		t.Run(mode, func(t *testing.T) { runCluster(t, mode) })
	}
}

// runCluster drains (or kill -9s) ws-02 a quarter into the messages. The
// kill shows the loss a drain exists to prevent, which proves the test
// can see loss.
func runCluster(t *testing.T, mode string) {
	natsAddr := freeAddr(t)
	common := []string{"--drain-window", "2s", "--drain-max-rate", "100", "--drain-deadline", "20s"}
	n1 := startServe(t, append([]string{"--node-id", "ws-01", "--embedded-nats", natsAddr}, common...)...)
	n2 := startServe(t, append([]string{"--node-id", "ws-02", "--nats", "nats://" + natsAddr}, common...)...)
	proxy := newProxy(t, n1.addr, n2.addr)

	listeners := []*listener{
		startListener(t, proxy.URL, "websocket", 3),
		startListener(t, proxy.URL, "long-polling", 2),
		startListener(t, proxy.URL, "callback-polling", 2),
	}
	// the websocket clients dial first, alternately to each node
	if ws := wsConnections(t, n2); ws == 0 {
		t.Fatal("no websocket client on ws-02: the test could not see a drain or a kill")
	}
	t.Logf("connections: ws-01 %v, ws-02 %v", connections(t, n1), connections(t, n2))

	const total = 200
	publish := func(i int) {
		body := fmt.Sprintf(`{"channel":"/cluster/feed","data":{"n":%d}}`, i)
		for range 50 {
			req, _ := http.NewRequest(http.MethodPost, proxy.URL+"/publish", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("publish %d failed", i)
	}
	for i := range total {
		if i == 50 && mode == "drain" {
			req, _ := http.NewRequest(http.MethodPost, n2.url()+"/admin/drain", strings.NewReader(`{"window":"2s","max_rate":100,"deadline":"20s"}`))
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusAccepted {
				t.Fatalf("drain: %v %v", err, resp)
			}
			resp.Body.Close()
		}
		if i == 50 && mode == "kill" {
			n2.cmd.Process.Signal(syscall.SIGKILL)
			n2.cmd.Wait()
			n2.cmd = nil
		}
		publish(i)
		time.Sleep(20 * time.Millisecond)
	}

	var recs []clientRecord
	wait := 20 * time.Second
	if mode == "kill" {
		wait = 8 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		recs = nil
		for _, l := range listeners {
			recs = append(recs, l.report(t)...)
		}
		complete := true
		for _, r := range recs {
			if m, _, _ := exactlyOnce(r.Got, total); m > 0 {
				complete = false
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	lossy := 0
	for i, r := range recs {
		m, d, o := exactlyOnce(r.Got, total)
		t.Logf("client %d %s: received %d, missing %d, duplicates %d, reordered %d, handshakes %d, longest gap %dms",
			i, r.Kind, len(r.Got), m, d, o, r.Handshakes, r.MaxGapMs)
		if m > 0 {
			lossy++
		}
		if (mode == "drain" && m > 0) || d > 0 || o > 0 {
			t.Errorf("client %d %s across the %s: %d missing, %d duplicates, %d out of order", i, r.Kind, mode, m, d, o)
		}
	}
	if mode == "kill" && lossy == 0 {
		t.Errorf("kill -9 showed no loss: the test cannot see loss")
	}
}
