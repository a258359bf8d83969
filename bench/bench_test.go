package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"wsfleet/internal/nodetest"
)

// suite builds the wsfleet binary that TestRunTiny benchmarks.
var suite = &nodetest.Suite{Name: "bench"}

func TestMain(m *testing.M) { suite.Main(m) }

func TestParseListening(t *testing.T) {
	tests := []struct {
		name, line string
		parse      func(string) (string, bool)
		want       string
		ok         bool
	}{
		{"wsfleet", `time=2026-11-28T14:35:27Z level=INFO msg=listening addr=127.0.0.1:41234 mount=/bayeux node=vm`, parseWsfleetListening, "127.0.0.1:41234", true},
		{"wsfleet other line", `time=… level=INFO msg="no NATS: running alone"`, parseWsfleetListening, "", false},
		{"faye", `{"listening":"127.0.0.1:5000"}`, parseFayeListening, "127.0.0.1:5000", true},
		{"faye noise", `Faye debug`, parseFayeListening, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.parse(tt.line)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("got %q %v, want %q %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestProcReaders(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	// Burn a little CPU so that the counters move.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	_ = x
	if rss := rssKiB(os.Getpid()); rss <= 0 {
		t.Fatalf("rss %d", rss)
	}
	if anon, rss := statusKiB(os.Getpid(), "RssAnon:"), rssKiB(os.Getpid()); anon <= 0 || anon > rss {
		t.Fatalf("anonymous rss %d of %d", anon, rss)
	}
	if c := procCPU(os.Getpid()); c <= 0 {
		t.Fatalf("proc cpu %v", c)
	}
	if c := selfCPU(); c <= 0 {
		t.Fatalf("self cpu %v", c)
	}
}

func TestHistogramNs(t *testing.T) {
	var h histogramNs
	for i := 1; i <= 1000; i++ {
		h.add(int64(i) * int64(time.Millisecond) / 10) // 0.1ms … 100ms
	}
	p50, p99, max, n := h.quantiles()
	if n != 1000 || p50 < 48 || p50 > 52 || p99 < 97 || p99 > 101 || max != 100 {
		t.Fatalf("p50 %v p99 %v max %v n %d", p50, p99, max, n)
	}
}

// TestRunTiny runs every scenario on both servers at a size CI affords,
// unpinned: it checks the harness (both real servers, the generator, the
// table), not performance.
func TestRunTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	if _, err := fayeNodePath(); errors.Is(err, errNoFaye) {
		t.Skip(err)
	}
	bin := suite.Binary(t)
	servers := []string{"wsfleet", "faye", "bare"}
	// Centrifugo when it is built (a cold build takes minutes: its own
	// smoke test, TestCentrifugoDriver, says how to build it).
	cf, cfErr := centrifugoBinary()
	if cfErr == nil {
		servers = append(servers, "centrifugo")
	}
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Binary: bin, ServerCPU: -1, Quick: true, Servers: servers, Centrifugo: cf, FixedRates: []float64{400},
		IdleSessions: 50, Subscribers: 40, Channels: 4, Rates: []float64{400, 800},
		Step: 700 * time.Millisecond, Warmup: 300 * time.Millisecond, ChurnTime: 700 * time.Millisecond, ChurnWorkers: 4,
		Settle:   300 * time.Millisecond,
		Progress: &progress,
	})
	t.Log("\n" + progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) > 0 {
		t.Errorf("skipped: %v", res.Skipped)
	}
	if c := res.Fanout["bare"]; c == nil || len(c.Steps) != 1 || c.Steps[0].DeliveredPerSec <= 0 || res.Idle["bare"] != nil || res.Churn["bare"] != nil {
		t.Errorf("bare writer: fan-out %+v idle %+v churn %+v", c, res.Idle["bare"], res.Churn["bare"])
	}
	for _, kind := range servers {
		if kind == "bare" {
			continue
		}
		if r := res.Idle[kind]; r == nil || r.Opened != 50 || r.RSSAfterKiB <= 0 {
			t.Errorf("idle %s: %+v", kind, r)
		} else if gc := r.GC; (kind == "wsfleet") != strings.HasPrefix(gc, "GOGC ") {
			// the node's collector setting is part of its idle figure
			t.Errorf("idle %s: collector setting %q", kind, gc)
		}
		if c := res.Fanout[kind]; c == nil || len(c.Steps) == 0 || c.Steps[0].DeliveredPerSec <= 0 || c.Steps[0].P99Ms <= 0 {
			t.Errorf("fanout %s: %+v", kind, c)
		}
		if c := res.Churn[kind]; c == nil || c.Handshakes == 0 {
			t.Errorf("churn %s: %+v", kind, c)
		}
	}
	var out bytes.Buffer
	WriteTable(&out, res)
	for _, want := range []string{"figure", "idle: RSS per session", "fan-out: highest sustained", "churn: handshakes/s", "latency curve, faye",
		"latency curve, bare", "µs per delivery at 400/s", "targets (issue 22):", "wsfleet's collector in the idle run"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	// idle, four fan-out rows, two at the one fixed rate, three of churn
	if len(res.Table) != 10 {
		t.Errorf("table has %d rows, want 10", len(res.Table))
	}
	out.Reset()
	if err := WriteJSON(&out, res); err != nil || !strings.Contains(out.String(), `"max_sustained_deliveries_per_s"`) {
		t.Errorf("json: %v\n%s", err, out.String())
	}
}

func TestScanDeliveries(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  int64
	}{
		{"faye batch", `[{"channel":"/a","data":{"t":1000,"text":"x"}},{"channel":"/a","data":{"t":2000}}]`, 2},
		{"wsfleet with seq", `[{"channel":"/a","data":{"t":1000},"ext":{"seq":7}}]`, 1},
		{"connect reply", `[{"channel":"/meta/connect","successful":true,"advice":{"timeout":30000}}]`, 0},
		{"t without digits", `{"t":"x"}`, 0},
	}
	// A real send time has 19 digits: the latency must come out right.
	h := &latHist{}
	now := time.Now().UnixNano()
	frame := fmt.Sprintf(`[{"channel":"/a","data":{"t":%d}}]`, now-int64(5*time.Millisecond))
	if n := scanDeliveries([]byte(frame), now, h); n != 1 {
		t.Fatalf("counted %d", n)
	}
	if p50, _, max, _ := h.h.quantiles(); p50 < 4.9 || p50 > 5.1 || max != 5 {
		t.Fatalf("latency p50 %v max %v, want 5ms", p50, max)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &latHist{}
			if got := scanDeliveries([]byte(tt.frame), 3000, h); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
			if _, _, _, n := h.h.quantiles(); int64(n) != tt.want {
				t.Fatalf("histogram has %d samples, want %d", n, tt.want)
			}
		})
	}
}

// FuzzScanDeliveries feeds the generator's frame scanner whatever a
// server could send: it must not panic, and never count more deliveries
// than there are "t": fields.
func FuzzScanDeliveries(f *testing.F) {
	f.Add([]byte(`[{"channel":"/a","data":{"t":1000}}]`))
	f.Add([]byte(`"t":99999999999999999999999999`))
	f.Add([]byte(`"t":-5"t":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := &latHist{}
		n := scanDeliveries(b, time.Now().UnixNano(), h)
		if max := int64(bytes.Count(b, tokT)); n > max || n < 0 {
			t.Fatalf("counted %d deliveries in a frame with %d t fields", n, max)
		}
	})
}

func TestParseFrame(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	tests := []struct {
		name    string
		in      []byte
		payload string
		size    int
		ok      bool
	}{
		{"short text", []byte{0x81, 0x02, 'h', 'i', 0x81}, "hi", 4, true},
		{"incomplete header", []byte{0x81}, "", 0, false},
		{"incomplete payload", []byte{0x81, 0x05, 'h'}, "", 0, false},
		{"16-bit length", append([]byte{0x81, 126, 0x01, 0x2c}, long...), string(long), 304, true},
		{"masked by a server", []byte{0x81, 0x81, 0, 0, 0, 0, 'x'}, "", -1, true},
		{"over the cap", []byte{0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0}, "", -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, _, _, size, ok := parseFrame(tt.in)
			if string(payload) != tt.payload || size != tt.size || ok != tt.ok {
				t.Fatalf("got %q size %d ok %v", payload, size, ok)
			}
		})
	}
}

// FuzzParseFrame feeds the epoll reader's frame parser arbitrary bytes.
func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{0x81, 0x02, 'h', 'i'})
	f.Add([]byte{0x81, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, _, _, size, ok := parseFrame(b)
		if ok && size > len(b) || len(payload) > len(b) {
			t.Fatalf("frame of %d bytes (payload %d) from %d", size, len(payload), len(b))
		}
	})
}

// FuzzReadMessage feeds the generator's websocket frame reader whatever
// a server could send: it must not panic, must not return more than it
// was given, and must stop at the size cap.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0x81, 0x03, 'a', 'b', 'c'})
	f.Add([]byte{0x01, 0x01, 'a', 0x89, 0x00, 0x80, 0x01, 'b'}) // fragment, ping, continuation
	f.Add([]byte{0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0x83, 1, 2, 3, 4, 'a' ^ 1, 'b' ^ 2, 'c' ^ 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		local, remote := net.Pipe()
		defer local.Close()
		go func() { _, _ = io.Copy(io.Discard, remote) }()
		r := &rawConn{c: local, br: bufio.NewReader(bytes.NewReader(data))}
		var buf []byte
		for range 8 {
			msg, err := r.readMessage(buf)
			if len(msg) > len(data) {
				t.Fatalf("message of %d bytes from %d bytes of input", len(msg), len(data))
			}
			if err != nil {
				return
			}
			buf = msg[:0]
		}
	})
}

// TestRawConnAgainstServers checks the generator's websocket client
// against both real servers: handshake, subscribe, a delivery.
func TestRawConnAgainstServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	p, err := startFaye(context.Background(), fayeOptions{CPU: -1, AdminToken: "tok"})
	if errors.Is(err, errNoFaye) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	pub := &publisher{w: bayeuxWire{}, url: "http://" + p.Addr + "/publish", token: "tok", channels: []string{"/x"}, hc: http.DefaultClient}
	deliverAll(t, bayeuxWire{}, p.Addr, 3, pub)
}
