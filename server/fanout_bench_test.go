package server

// Benchmarks of the node's websocket hot path against the limit it works
// against, and of what an idle session costs. The clients run in a child
// process (this test binary, started with sinkEnv set), so that the CPU
// and memory this process uses are the node's alone:
//
//	go test -run x -bench Fanout -benchtime 30x -fanout.msgs 10 ./server/
//	go test -run x -bench Fanout -benchtime 20x -fanout.msgs 25 -fanout.rate 100 ./server/
//	go test -run x -bench IdleSession -benchtime 1x ./server/
//
// BenchmarkFanout runs rounds of two phases over the same sockets: the
// node delivering published messages, then a bare loop writing the same
// frames to the same sockets with one net.Conn.Write each. Both publish
// at the same fixed rate, so the idle overheads match, and each phase's
// CPU (getrusage) is divided by the deliveries the clients counted;
// node/bare is the median of the rounds' ratios (the machine's other load
// comes and goes). node-writes/delivery below 1 is frames carrying several
// messages.
//
// Last results (2 shared cores, 1,000 subscribers, GOMAXPROCS 2 so two
// flushers; before = the node on main today, built with these
// benchmarks; each pair run one after the other):
//
//	40 messages/s (40,000 deliveries/s): node/bare 1.18-1.28 before,
//	  0.99-1.10 after; writes per delivery 0.93-0.99 before, 0.85-0.95
//	  after; allocations per delivery 2.0 before, 0.03-0.05 after
//	100 messages/s (100,000 deliveries/s): node/bare 0.89-0.90 before,
//	  0.89-1.06 after (0.75-0.81 with a single flusher, as GOMAXPROCS 1
//	  gives); writes per delivery 0.69-0.70 before, 0.71-0.84 after
//	idle, 5,000 sessions: RSS 3.10-3.11 KiB per session before, 2.71-2.78
//	  after; live heap 1,573-1,579 bytes before, 1,331-1,344 after; no
//	  goroutine either way

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

var (
	fanoutSubs   = flag.Int("fanout.subs", 1000, "BenchmarkFanout: websocket subscribers")
	fanoutRate   = flag.Float64("fanout.rate", 40, "BenchmarkFanout: messages published per second (each to every subscriber)")
	fanoutMsgs   = flag.Int("fanout.msgs", 120, "BenchmarkFanout: messages per phase")
	idleSessions = flag.Int("idle.sessions", 5000, "BenchmarkIdleSession: idle websocket sessions")
	idleHeap     = flag.String("idle.heapprofile", "", "BenchmarkIdleSession: write the heap profile with the sessions open to this file")
)

// sinkEnv makes this test binary a client process (runSink) instead of
// running tests.
const sinkEnv = "WSFLEET_TEST_SINK"

func TestMain(m *testing.M) {
	if spec := os.Getenv(sinkEnv); spec != "" {
		if err := runSink(spec, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sinkTok is what every delivery carries once (the sequence stamp).
var sinkTok = []byte(`"seq":`)

// runSink opens the websocket sessions spec asks for ("url n channels"),
// each subscribed to one of the channels and with its connect held, says
// "ready", then counts deliveries on all of them. Every line on in is
// answered with the count so far; in's end ends the sink.
func runSink(spec string, in io.Reader, out io.Writer) error {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return fmt.Errorf("spec %q: want url, sessions, channels", spec)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return fmt.Errorf("spec %q: %w", spec, err)
	}
	channels, err := strconv.Atoi(f[2])
	if err != nil {
		return fmt.Errorf("spec %q: %w", spec, err)
	}
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := sinkSession(f[0], fmt.Sprintf("/bench/%d", i%channels))
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var count atomic.Int64
	for _, c := range conns {
		go func() {
			// count sinkTok in the raw stream; a token split between two
			// reads is found through the carried tail.
			buf := make([]byte, len(sinkTok)-1+16<<10)
			carry := 0
			for {
				k, err := c.Read(buf[carry:])
				if err != nil {
					return
				}
				count.Add(int64(bytes.Count(buf[:carry+k], sinkTok)))
				end := carry + k
				carry = min(len(sinkTok)-1, end)
				copy(buf, buf[end-carry:end])
			}
		}()
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		fmt.Fprintln(out, count.Load())
	}
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// sinkSession opens one session: handshake, subscribe, a connect the node
// holds, and halley's ping, whose answer says the connect was handled.
func sinkSession(url, channel string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if br != nil {
		c.Close()
		return nil, fmt.Errorf("dial: the node wrote before the handshake")
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	read := func(want string) ([]byte, error) {
		for {
			b, err := wsutil.ReadServerText(c)
			if err != nil {
				return nil, err
			}
			if bytes.Contains(b, []byte(want)) {
				return b, nil
			}
		}
	}
	if err := wsutil.WriteClientText(c, []byte(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"],"id":"1"}]`)); err != nil {
		c.Close()
		return nil, err
	}
	b, err := read(`"clientId"`)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	var hs []struct{ ClientID string }
	if err := json.Unmarshal(b, &hs); err != nil || len(hs) != 1 || hs[0].ClientID == "" {
		c.Close()
		return nil, fmt.Errorf("handshake reply %s: %v", b, err)
	}
	id := hs[0].ClientID
	msgs := `[{"channel":"/meta/subscribe","clientId":"` + id + `","subscription":"` + channel + `","id":"2"}]`
	if err := wsutil.WriteClientText(c, []byte(msgs)); err != nil {
		c.Close()
		return nil, err
	}
	if b, err := read(`/meta/subscribe`); err != nil || !bytes.Contains(b, []byte(`"successful":true`)) {
		c.Close()
		return nil, fmt.Errorf("subscribe: %s %v", b, err)
	}
	connect := `[{"channel":"/meta/connect","clientId":"` + id + `","connectionType":"websocket","id":"3"}]`
	if err := wsutil.WriteClientText(c, []byte(connect)); err != nil {
		c.Close()
		return nil, err
	}
	if err := wsutil.WriteClientText(c, []byte(`[]`)); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := read(`[]`); err != nil {
		c.Close()
		return nil, fmt.Errorf("ping: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// sink is the client process, seen from the benchmark.
type sink struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startSink starts n sessions on the node, subscribed round robin to
// channels /bench/0 …, and returns once all are ready.
func startSink(tb testing.TB, nd *node, n, channels int) *sink {
	tb.Helper()
	url := "ws" + strings.TrimPrefix(nd.url, "http") + "/bayeux"
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", sinkEnv, url, n, channels), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &sink{cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	tb.Cleanup(func() {
		s.in.Close()
		s.cmd.Wait()
	})
	if !s.out.Scan() || s.out.Text() != "ready" {
		tb.Fatalf("sink did not get ready: %q %v", s.out.Text(), s.out.Err())
	}
	return s
}

// count is how many deliveries the sink has read.
func (s *sink) count(tb testing.TB) int64 {
	tb.Helper()
	fmt.Fprintln(s.in)
	if !s.out.Scan() {
		tb.Fatalf("sink gone: %v", s.out.Err())
	}
	n, err := strconv.ParseInt(s.out.Text(), 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// waitCount waits until the sink has read want deliveries.
func (s *sink) waitCount(tb testing.TB, want int64) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.count(tb)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			tb.Fatalf("sink read %d deliveries, want %d", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cpuNow is this process's user plus system CPU time.
func cpuNow(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssKiB is this process's resident set.
func rssKiB(tb testing.TB) int64 { return procField(tb, "/proc/self/status", "VmRSS:") }

// procField reads the number after key in a /proc file of this process
// (a unit after it, as "kB", is left out).
func procField(tb testing.TB, file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in %s", key, file)
	return 0
}

// benchNode is a node as the wsfleet binary runs it (GC target 50), with
// connects held far longer than a benchmark runs.
func benchNode(b *testing.B) *node {
	old := debug.SetGCPercent(50)
	b.Cleanup(func() { debug.SetGCPercent(old) })
	return startNode(b, func(c *Config) {
		c.Timeout = time.Hour
		c.QueueLimit = 1 << 20
		c.MaxConnections = -1
	})
}

func BenchmarkFanout(b *testing.B) {
	subs, rate, msgs := *fanoutSubs, *fanoutRate, *fanoutMsgs
	nd := benchNode(b)
	sk := startSink(b, nd, subs, 1)
	nd.srv.mu.RLock()
	conns := make([]net.Conn, 0, len(nd.srv.wsConns))
	for wc := range nd.srv.wsConns {
		conns = append(conns, sockConn(b, wc))
	}
	nd.srv.mu.RUnlock()
	if len(conns) != subs {
		b.Fatalf("%d sockets, want %d", len(conns), subs)
	}
	payload := []byte(`{"channel":"/bench/0","data":{"text":"` + strings.Repeat("x", 100) + `"}}`)
	ctx := context.Background()
	interval := time.Duration(float64(time.Second) / rate)
	var delivered int64
	// pace runs send once per interval, msgs times, then waits for the
	// sink to have everything, and returns the CPU used.
	pace := func(send func(i int)) time.Duration {
		start := cpuNow(b)
		t := time.NewTicker(interval)
		for i := range msgs {
			send(i)
			<-t.C
		}
		t.Stop()
		delivered += int64(msgs * subs)
		sk.waitCount(b, delivered)
		return cpuNow(b) - start
	}
	var nodeCPU, bareCPU time.Duration
	var mallocs, nodeWrites, bareWrites int64
	var ratios []float64
	var ms runtime.MemStats
	b.ResetTimer()
	for range b.N {
		runtime.ReadMemStats(&ms)
		m0, w0 := ms.Mallocs, writeCalls(b)
		nc := pace(func(int) {
			if _, err := nd.srv.broker.Publish(ctx, "/bench/0", payload); err != nil {
				b.Fatal(err)
			}
		})
		nodeWrites += writeCalls(b) - w0
		runtime.ReadMemStats(&ms)
		mallocs += int64(ms.Mallocs - m0)
		// the frames the node sends: its own encoding, one message each
		frames := make([][]byte, msgs)
		for i := range frames {
			p := stampSeq(payload, uint64(1_000_000+i))
			frames[i] = append(appendHeader(nil, ws.OpText, len(p)+2), '[')
			frames[i] = append(append(frames[i], p...), ']')
		}
		// the node's write deadline is the node's business
		for _, c := range conns {
			c.SetWriteDeadline(time.Time{})
		}
		w0 = writeCalls(b)
		bc := pace(func(i int) {
			for _, c := range conns {
				if _, err := c.Write(frames[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
		bareWrites += writeCalls(b) - w0
		nodeCPU, bareCPU = nodeCPU+nc, bareCPU+bc
		ratios = append(ratios, float64(nc)/float64(bc))
	}
	b.StopTimer()
	perPhase := float64(b.N * msgs * subs)
	slices.Sort(ratios)
	b.ReportMetric(float64(nodeCPU.Nanoseconds())/perPhase, "node-cpu-ns/delivery")
	b.ReportMetric(float64(bareCPU.Nanoseconds())/perPhase, "bare-cpu-ns/delivery")
	// the machine's other load comes and goes: the median of the rounds'
	// ratios (each from two phases next to each other) is the steadier
	// figure
	b.ReportMetric(ratios[len(ratios)/2], "node/bare")
	b.ReportMetric(float64(mallocs)/perPhase, "node-allocs/delivery")
	b.ReportMetric(float64(nodeWrites)/perPhase, "node-writes/delivery")
	b.ReportMetric(float64(bareWrites)/perPhase, "bare-writes/delivery")
}

// writeCalls is how many write system calls this process made.
func writeCalls(tb testing.TB) int64 { return procField(tb, "/proc/self/io", "syscw:") }

func BenchmarkIdleSession(b *testing.B) {
	n := *idleSessions
	for range b.N {
		b.StopTimer()
		nd := benchNode(b)
		time.Sleep(500 * time.Millisecond)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss0, heap0 := rssKiB(b), ms.HeapAlloc
		g0 := runtime.NumGoroutine()
		b.StartTimer()
		sk := startSink(b, nd, n, 50)
		b.StopTimer()
		// settle as the bench does, then what is resident
		time.Sleep(time.Second)
		rss1 := rssKiB(b)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-KiB/session")
		b.ReportMetric(float64(int64(ms.HeapAlloc)-int64(heap0))/float64(n), "live-heap-B/session")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(n), "goroutines/session")
		if *idleHeap != "" {
			f, err := os.Create(*idleHeap)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		sk.in.Close()
		sk.cmd.Wait()
	}
}
