package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"wsfleet/broker/natstest"
)

func TestGapQuantiles(t *testing.T) {
	msN := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		// 100 … 1 ms, reversed: the function sorts
		hundred[i] = time.Duration(100-i) * time.Millisecond
	}
	tests := []struct {
		name string
		gaps []time.Duration
		want gapStats
	}{
		{"none", nil, gapStats{}},
		{"one", msN(7), gapStats{P50: 7, P99: 7, Max: 7, N: 1}},
		{"two", msN(9, 3), gapStats{P50: 3, P99: 9, Max: 9, N: 2}},
		{"1..100", hundred, gapStats{P50: 50, P99: 99, Max: 100, N: 100}},
		{"one slow of 200", append(msN(make([]int, 199)...), 2*time.Second), gapStats{P50: 0, P99: 0, Max: 2000, N: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gapQuantiles(tt.gaps); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCPUPerOp(t *testing.T) {
	tests := []struct {
		name string
		w    cpuWindow
		want float64
	}{
		{"no ops", cpuWindow{CPU: 1, Seconds: 1}, 0},
		{"raw", cpuWindow{CPU: 0.5, Seconds: 2, Ops: 1000}, 500},
		// 10 s at a 2% baseline is 0.2 s of the 0.7 s
		{"baseline", cpuWindow{CPU: 0.7, Seconds: 10, Base: 0.02, Ops: 1000}, 500},
		// 1000 clients arriving evenly over 10 s spend 5,000 client-seconds
		// on the node; at 20 µs/s each that is 0.1 s
		{"deliveries", cpuWindow{CPU: 0.8, Seconds: 10, Base: 0.02, PerClient: 20e-6, ClientSeconds: 5000, Ops: 1000}, 500},
		{"never negative", cpuWindow{CPU: 0.1, Seconds: 10, Base: 0.05, Ops: 10}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuPerOp(tt.w); math.Abs(got-tt.want) > 1e-6 {
				t.Fatalf("got %v µs, want %v", got, tt.want)
			}
		})
	}
	if got := perCore(500); got != 2000 {
		t.Errorf("perCore(500) = %v, want 2000", got)
	}
	if got := perCore(0); got != 0 {
		t.Errorf("perCore(0) = %v, want 0", got)
	}
}

func TestSeqSet(t *testing.T) {
	tests := []struct {
		name   string
		add    []uint64
		except []uint64
		upTo   uint64
		want   []uint64
		added  int
	}{
		{"empty", nil, nil, 5, []uint64{1, 2, 3, 4, 5}, 0},
		{"all", []uint64{1, 2, 3}, nil, 3, nil, 3},
		{"hole", []uint64{1, 3}, nil, 3, []uint64{2}, 2},
		{"holes", []uint64{2, 5}, nil, 6, []uint64{1, 3, 4, 6}, 2},
		{"duplicates and zero", []uint64{2, 2, 0, 1}, nil, 2, nil, 2},
		{"beyond upTo ignored", []uint64{1, 200}, nil, 2, []uint64{2}, 2},
		{"across words", []uint64{63, 64, 65, 127, 128}, []uint64{1}, 3, []uint64{2, 3}, 5},
		{"nothing expected", []uint64{4}, nil, 0, nil, 1},
		// a failed publish's numbers are not lost when missing
		{"failed publishes left out", []uint64{1, 4}, []uint64{2, 3}, 5, []uint64{5}, 2},
		{"failed but received", []uint64{1, 2, 3}, []uint64{2}, 3, nil, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s, except seqSet
			added := 0
			for _, n := range tt.add {
				if s.add(n) {
					added++
				}
			}
			for _, n := range tt.except {
				except.add(n)
			}
			if added != tt.added {
				t.Errorf("added %d new, want %d", added, tt.added)
			}
			if got := s.missing(tt.upTo, &except); got != len(tt.want) {
				t.Errorf("missing(%d) = %d, want %d", tt.upTo, got, len(tt.want))
			}
			if got := s.missingList(tt.upTo, &except, -1); !slices.Equal(got, tt.want) {
				t.Errorf("missingList(%d) = %v, want %v", tt.upTo, got, tt.want)
			}
			if got := s.missingList(tt.upTo, &except, 1); len(tt.want) > 0 && !slices.Equal(got, tt.want[:1]) {
				t.Errorf("missingList(%d, limit 1) = %v, want %v", tt.upTo, got, tt.want[:1])
			}
		})
	}
	var s seqSet
	s.add(3)
	if s.missing(4, nil) != 3 {
		t.Errorf("missing with no exceptions = %d, want 3", s.missing(4, nil))
	}
}

func TestReconnectBudget(t *testing.T) {
	tests := []struct {
		name           string
		perCore, cores float64
		nodes          int
		share, want    float64
	}{
		{"one core", 1000, 1, 1, 0.25, 250},
		{"rounded down to tens", 1039, 1, 1, 0.25, 250},
		{"fleet", 1000, 2, 4, 0.25, 2000},
		{"half", 800, 4, 3, 0.5, 4800},
		{"no measurement", 0, 1, 1, 0.25, 0},
		{"no receiving node", 1000, 1, 0, 0.25, 0},
		{"no share", 1000, 1, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReconnectBudget(tt.perCore, tt.cores, tt.nodes, tt.share); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTakeoverSummarize(t *testing.T) {
	good := func(mode string, us float64) TakeoverStep {
		s := TakeoverStep{Mode: mode, Clients: 10, Done: 10, CPUUs: us}
		if mode == "takeover" {
			s.Restored = 10
		}
		return s
	}
	lost := good("takeover", 100)
	lost.Lost = 1
	short := good("takeover", 100)
	short.Done = 9
	rehand := good("takeover", 100)
	rehand.Rehandshakes = 1
	notRestored := good("takeover", 100)
	notRestored.Restored = 0
	r := &TakeoverResult{Steps: []TakeoverStep{
		good("fresh", 2000), good("takeover", 1000),
		good("fresh", 4000), good("takeover", 2000),
		good("takeover", 500), lost, short, rehand, notRestored,
	}}
	r.summarize()
	if r.TakeoverUs != 1000 || r.PerCore != 1000 {
		t.Errorf("take-over %v µs, %v/s per core; want the median of the good steps, 1000 µs and 1000/s", r.TakeoverUs, r.PerCore)
	}
	if r.FreshUs != 3000 {
		t.Errorf("fresh %v µs, want 3000", r.FreshUs)
	}
	if r.Budget != 250 {
		t.Errorf("budget %v, want 250", r.Budget)
	}
}

// TestTakeoverSmoke runs the take-over benchmark at a size CI affords,
// unpinned, one step, all at once: two real nodes on a real nats-server,
// the clients moved by node A's drain. It checks the harness (every client
// taken over by B, replayed, nothing lost), not performance. 50 messages
// a second per channel put a few in every client's gap: with the node's
// replay on a take-over switched off, this test saw 67 of 208 lost.
func TestTakeoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server and two nodes")
	}
	bin := suite.Binary(t)
	ns := natstest.Oldest(t)
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunTakeover(ctx, TakeoverOptions{
		Binary: bin, NATSServer: ns, ServerCPU: -1,
		Clients: 20, Channels: 4, MsgRate: 200, Rates: []float64{0},
		Settle: 300 * time.Millisecond, MoveTimeout: 20 * time.Second, Progress: &progress,
	})
	t.Log("\n" + progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Steps[0].Mode != "fresh" || res.Steps[1].Mode != "takeover" {
		t.Fatalf("steps %+v, want fresh then takeover", res.Steps)
	}
	if f := res.Steps[0]; f.Done != 20 || f.Error != "" {
		t.Errorf("fresh: %+v", f)
	}
	tk := res.Steps[1]
	if tk.Done != 20 || tk.Rehandshakes != 0 || tk.Restored != 20 || tk.Error != "" {
		t.Errorf("take-over: %d of 20 came back, %d re-handshook, B restored %v: %+v", tk.Done, tk.Rehandshakes, tk.Restored, tk)
	}
	if tk.Published == 0 || tk.Lost != 0 || tk.PublishFailed != 0 {
		t.Errorf("take-over: %d published, %d lost, %d publishes failed", tk.Published, tk.Lost, tk.PublishFailed)
	}
	if tk.GapMaxMs <= 0 {
		t.Errorf("take-over: no gap measured: %+v", tk)
	}
	var out bytes.Buffer
	WriteTakeoverTable(&out, res)
	for _, want := range []string{"take-overs/s per core", "reconnect budget", "takeover  all at once"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestNumberedPublisherBatches checks that the publisher never sends more
// than the node's --max-batch in one request (a node refuses a longer
// batch with 400: a publisher catching up after a stall sent such batches
// and counted them as failed) and numbers each channel's messages 1, 2, …
func TestNumberedPublisherBatches(t *testing.T) {
	var (
		mu      sync.Mutex
		largest int
		seen    = map[string][]uint64{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msgs []struct {
			Channel string `json:"channel"`
			Data    struct {
				N uint64 `json:"n"`
			} `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&msgs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		largest = max(largest, len(msgs))
		if len(msgs) > maxBatch {
			http.Error(w, "too many messages", http.StatusBadRequest)
			return
		}
		for _, m := range msgs {
			seen[m.Channel] = append(seen[m.Channel], m.Data.N)
		}
		w.Write([]byte("[]"))
	}))
	defer srv.Close()
	pub := &publisher{w: wireFor("wsfleet"), url: srv.URL + "/publish", token: "t", hc: srv.Client()}
	// 20,000 a second owe 400 at each 20 ms tick
	p := &numberedPublisher{pub: pub, channels: []string{"/a", "/b"}, rate: 20000, counts: make([]uint64, 2), unsent: make([]seqSet, 2)}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	p.run(ctx)
	counts, _ := p.published()
	mu.Lock()
	defer mu.Unlock()
	if largest == 0 || largest > maxBatch {
		t.Errorf("largest request held %d messages, want 1 to %d", largest, maxBatch)
	}
	if f := p.failed.Load(); f != 0 {
		t.Errorf("%d messages failed: %s", f, p.lastError())
	}
	for i, ch := range p.channels {
		want := make([]uint64, counts[i])
		for j := range want {
			want[j] = uint64(j + 1)
		}
		if !slices.Equal(seen[ch], want) {
			t.Errorf("channel %s got %d numbers (%v…), want 1..%d in order", ch, len(seen[ch]), seen[ch][:min(5, len(seen[ch]))], counts[i])
		}
	}
}
