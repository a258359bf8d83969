package compat

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"wsfleet/probe"
)

// TestClusterBenchmark is issue 4's measurement: 3 nodes, 3,000 probe
// clients, 200 messages/s; one node is drained with a 10 s window (or
// killed), and the probe reports loss and gaps while the surviving nodes'
// reconnect rate is sampled. It takes about a minute and most of two cores,
// so it runs only with WSFLEET_BENCH=1:
//
//	WSFLEET_BENCH=1 go test ./compat -run TestClusterBenchmark -v -timeout 10m
func TestClusterBenchmark(t *testing.T) {
	if os.Getenv("WSFLEET_BENCH") == "" {
		t.Skip("set WSFLEET_BENCH=1 to run the cluster benchmark")
	}
	for _, mode := range []string{"drain", "kill"} {
		t.Run(mode, func(t *testing.T) { benchCluster(t, mode) })
	}
}

// counter reads one counter from a node's /metrics (0 when unreachable).
func counter(addr, series string) float64 {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

func benchCluster(t *testing.T, mode string) {
	clients, rate := 3000, 200.0
	if v := os.Getenv("WSFLEET_BENCH_CLIENTS"); v != "" {
		fmt.Sscan(v, &clients)
	}
	natsAddr := freeAddr(t)
	common := []string{"--timeout", "30s", "--log-level", "warn"}
	n1 := startServe(t, append([]string{"--node-id", "ws-01", "--embedded-nats", natsAddr}, common...)...)
	n2 := startServe(t, append([]string{"--node-id", "ws-02", "--nats", "nats://" + natsAddr}, common...)...)
	n3 := startServe(t, append([]string{"--node-id", "ws-03", "--nats", "nats://" + natsAddr}, common...)...)
	proxy := newProxy(t, []string{n1.addr, n2.addr, n3.addr})

	ctx := context.Background()
	p, err := probe.Start(ctx, probe.Config{URL: proxy.URL + "/bayeux", AdminToken: adminToken,
		Clients: clients, Channels: 100, Rate: rate, Grace: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("connections before: ws-01 %v, ws-02 %v, ws-03 %v",
		status(t, n1.addr)["connections"], status(t, n2.addr)["connections"], status(t, n3.addr)["connections"])

	// sample the surviving nodes' accepted websockets every 100 ms
	var mu sync.Mutex
	var samples []struct {
		at time.Time
		n  float64
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tk.C:
				v := counter(n1.addr, `wsfleet_connects_total{transport="websocket"}`) + counter(n3.addr, `wsfleet_connects_total{transport="websocket"}`)
				mu.Lock()
				samples = append(samples, struct {
					at time.Time
					n  float64
				}{now, v})
				mu.Unlock()
			}
		}
	}()

	time.Sleep(5 * time.Second)
	start := time.Now()
	switch mode {
	case "drain":
		req, _ := http.NewRequest("POST", "http://"+n2.addr+"/admin/drain", strings.NewReader(`{"window":"10s","max_rate":200,"deadline":"60s"}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("drain: %v %v", err, resp)
		}
		resp.Body.Close()
		done := make(chan error, 1)
		go func() { done <- n2.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ws-02 exit: %v", err)
			}
		case <-time.After(70 * time.Second):
			t.Errorf("ws-02 did not exit after its drain")
		}
		n2.cmd = nil
	case "kill":
		n2.cmd.Process.Signal(syscall.SIGKILL)
		n2.cmd.Wait()
		n2.cmd = nil
	}
	t.Logf("ws-02 gone %v after the %s started", time.Since(start).Round(time.Millisecond), mode)
	time.Sleep(10 * time.Second)
	close(stop)
	wg.Wait()
	r := p.Stop(ctx)

	// peak reconnects per second: the largest increase over any 1 s
	peak := 0.0
	for i := range samples {
		for j := i; j < len(samples) && samples[j].at.Sub(samples[i].at) <= time.Second; j++ {
			if d := samples[j].n - samples[i].n; d > peak {
				peak = d
			}
		}
	}
	t.Logf("%s: clients %d, sent %d, expected %d, delivered %d, lost %d, duplicated %d, out of order %d",
		mode, r.Clients, r.Sent, r.Expected, r.Delivered, r.Lost, r.Duplicated, r.OutOfOrder)
	t.Logf("%s: gap ms %+v; reconnects %d; peak reconnects/s on surviving nodes %.0f; latency ms %+v",
		mode, r.Gap, r.Reconnects, peak, r.Latency)
	if mode == "drain" && r.Lost > 0 {
		t.Errorf("drain lost %d (message, client) pairs", r.Lost)
	}
}
