package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator is deliberately not the client package: it must not be
// the bottleneck of the server it measures. It speaks Bayeux over raw
// websocket frames (rawws.go), finds what it needs with byte searches
// instead of decoding messages into structs, and counts with atomics: no
// lock and no allocation per delivery.

var (
	tokClientID  = []byte(`"clientId":"`)
	tokConnect   = []byte(`"/meta/connect"`)
	tokSubscribe = []byte(`"/meta/subscribe"`)
	tokSuccess   = []byte(`"successful":true`)
	tokT         = []byte(`"t":`)
)

// genStats are what the generator's readers count.
type genStats struct {
	deliveries atomic.Int64
	frames     atomic.Int64
	errors     atomic.Int64
	closed     atomic.Int64
	lat        atomic.Pointer[latHist]
}

// latHist is a lock-free latency histogram swapped per measurement step.
type latHist struct{ h histogramNs }

// histogramNs counts latencies in log-linear buckets of microseconds.
type histogramNs struct {
	counts [64 + 58*32]atomic.Uint64
	max    atomic.Int64
}

func bucketUs(us uint64) int {
	if us < 64 {
		return int(us)
	}
	e := bits.Len64(us) - 6 // us>>e is in [32, 64)
	return e*32 + int(us>>e)
}

func bucketMidUs(b int) float64 {
	if b < 64 {
		return float64(b)
	}
	e := b/32 - 1
	m := uint64(b%32 + 32)
	return float64(m<<e) + float64(uint64(1)<<e)/2
}

func (h *histogramNs) add(ns int64) {
	if ns < 0 {
		ns = 0
	}
	b := bucketUs(uint64(ns / 1000))
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b].Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// quantiles returns p50, p99 and max in milliseconds, and the count.
func (h *histogramNs) quantiles() (p50, p99, maxMs float64, n uint64) {
	var counts [len(h.counts)]uint64
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		n += counts[i]
	}
	maxMs = float64(h.max.Load()) / 1e6
	if n == 0 {
		return 0, 0, maxMs, 0
	}
	q := func(f float64) float64 {
		rank := uint64(f*float64(n-1)) + 1
		var seen uint64
		for b, c := range counts {
			seen += c
			if seen >= rank {
				return min(bucketMidUs(b)/1000, maxMs)
			}
		}
		return maxMs
	}
	return q(0.5), q(0.99), maxMs, n
}

// dialers spreads connections over loopback source addresses so that tens
// of thousands of connections and churn do not exhaust one address's
// ephemeral ports.
type dialers struct {
	ds   []*net.Dialer
	next atomic.Uint64
}

func newDialers(n int) *dialers {
	d := &dialers{}
	for i := range n {
		d.ds = append(d.ds, &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1))}})
	}
	return d
}

func (d *dialers) pick() *net.Dialer { return d.ds[d.next.Add(1)%uint64(len(d.ds))] }

// genConn is one generator session.
type genConn struct {
	c   *rawConn
	w   wire
	id  []byte
	buf []byte
}

// read reads the next message into the session's buffer.
func (g *genConn) read() ([]byte, error) {
	b, err := g.c.readMessage(g.buf)
	g.buf = b[:0]
	return b, err
}

// handshake opens a websocket to addr and performs w's handshake on it.
func handshake(ctx context.Context, w wire, d *net.Dialer, addr string) (*genConn, error) {
	c, err := rawDial(ctx, d, addr, w.path())
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	g := &genConn{c: c, w: w}
	if err := withDeadline(ctx, g, func() error { return w.hello(g) }); err != nil {
		c.close()
		return nil, err
	}
	return g, nil
}

// subscribe subscribes the session to channel.
func (g *genConn) subscribe(ctx context.Context, channel string) error {
	return withDeadline(ctx, g, func() error { return g.w.subscribe(g, channel) })
}

// readLoop counts deliveries and their latency, and sends what the
// protocol asks in return (a renewed connect, a pong), until the
// connection is closed; ctx only tells a failure from the end of the run
// (closeSessions ends the loop by closing the socket).
func (g *genConn) readLoop(ctx context.Context, st *genStats) {
	for {
		b, err := g.read()
		if err != nil {
			if ctx.Err() == nil {
				st.closed.Add(1)
			}
			return
		}
		st.frames.Add(1)
		if r := g.w.reply(g, b); r != nil {
			if err := g.c.writeText(r); err != nil {
				if ctx.Err() == nil {
					st.closed.Add(1)
				}
				return
			}
		}
		if n := scanDeliveries(b, time.Now().UnixNano(), st.lat.Load()); n > 0 {
			st.deliveries.Add(n)
		}
	}
}

// scanDeliveries counts the deliveries in a frame by their "t": fields
// (the send time the publisher put in each message's data) and records
// each one's latency in h when h is not nil.
func scanDeliveries(b []byte, now int64, h *latHist) int64 {
	var n int64
	for {
		i := bytes.Index(b, tokT)
		if i < 0 {
			return n
		}
		b = b[i+len(tokT):]
		// At most 19 digits (a time in unix nanoseconds has 19), which a
		// uint64 holds without overflow.
		var t uint64
		j := 0
		for j < len(b) && j < 19 && b[j] >= '0' && b[j] <= '9' {
			t = t*10 + uint64(b[j]-'0')
			j++
		}
		if j > 0 {
			if h != nil && t <= math.MaxInt64 {
				h.h.add(now - int64(t))
			}
			n++
		}
	}
}

// openSessions opens n subscribed sessions over channels, concurrency at a
// time; startReaders then reads them all.
func openSessions(ctx context.Context, w wire, d *dialers, addr string, n int, channels []string, concurrency int, st *genStats) ([]*genConn, error) {
	conns := make([]*genConn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	var firstErr atomic.Pointer[error]
	var failed atomic.Int64
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			octx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			g, err := handshake(octx, w, d.pick(), addr)
			if err == nil {
				if err = g.subscribe(octx, channels[i%len(channels)]); err != nil {
					g.c.close()
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			conns[i] = g
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return conns, fmt.Errorf("open sessions: %d of %d failed, first: %w", f, n, *firstErr.Load())
	}
	return conns, ctx.Err()
}

func closeSessions(conns []*genConn) {
	for _, g := range conns {
		if g != nil {
			g.c.close()
		}
	}
}

// publisher posts messages to a server's publish API at a set rate, in
// batches of at most 100 per request, round robin over channels. Each
// message carries its send time in nanoseconds and a chat-sized text.
type publisher struct {
	w          wire
	url, token string
	channels   []string
	hc         *http.Client
	sent       atomic.Int64
	failed     atomic.Int64
}

const chatText = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua."

// run publishes rate messages per second until ctx ends.
func (p *publisher) run(ctx context.Context, rate float64) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	begin := time.Now()
	var issued int64
	rr := 0
	var body bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int64(rate*time.Since(begin).Seconds()) - issued
		// A publisher far behind skips rather than bursting.
		if due > int64(rate) {
			issued += due - int64(rate)/10
			due = int64(rate) / 10
		}
		for due > 0 {
			k := min(due, 100)
			due -= k
			issued += k
			body.Reset()
			p.w.beginBatch(&body)
			data := `{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"text":"` + chatText + `"}`
			for i := int64(0); i < k; i++ {
				if i > 0 {
					body.WriteByte(',')
				}
				p.w.item(&body, p.channels[rr%len(p.channels)], data)
				rr++
			}
			p.w.endBatch(&body)
			if err := p.post(ctx, body.Bytes()); err != nil {
				p.failed.Add(k)
			} else {
				p.sent.Add(k)
			}
		}
	}
}

func (p *publisher) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	p.w.authorize(req, p.token)
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	reply, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publish: status %d: %.200s", resp.StatusCode, reply)
	}
	if rerr != nil {
		return fmt.Errorf("publish: read reply: %w", rerr)
	}
	return p.w.checkReply(reply)
}

// churn runs workers that each open a websocket, handshake, disconnect and
// close, over and over, until ctx ends; it returns the handshakes done.
func churn(ctx context.Context, w wire, d *dialers, addr string, workers int) (done, failed int64) {
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				g, err := handshake(hctx, w, d.pick(), addr)
				cancel()
				if err != nil {
					// A handshake cut by the end of the run is not a failure
					// (the socket's deadline may fire just before ctx's).
					if dl, ok := ctx.Deadline(); ctx.Err() == nil && (!ok || time.Now().Before(dl)) {
						bad.Add(1)
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				ok.Add(1)
				if b := w.bye(g); b != nil {
					_ = g.c.writeText(b)
				}
				g.c.close()
			}
		}()
	}
	wg.Wait()
	return ok.Load(), bad.Load()
}
