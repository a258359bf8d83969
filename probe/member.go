package probe

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"wsfleet/client"
)

// member is one subscriber and what it received.
type member struct {
	p   *Probe
	idx int
	ch  int

	mu      sync.Mutex
	c       *client.Client
	subAt   time.Time // first subscribe acknowledged; zero until then
	got     []uint64  // bit n: message n of its channel arrived
	maxN    int
	dup     int64
	ooo     int64
	up      bool
	downAt  time.Time
	downWhy string // why it went down (the client's error), for the tail gaps
	gaps    []time.Duration
	reconn  int64
	ups     []time.Time // each time the client came up (Probe.ClientUps)
	closing bool
}

// probeData is the payload the probe publishes.
type probeData struct {
	Probe string `json:"probe"`
	C     int    `json:"c"`
	N     int    `json:"n"`
	T     int64  `json:"t"` // unix nanoseconds when the publish was sent
}

// run opens the member's client and subscribes, retrying with backoff
// until it succeeds or ctx ends; firstTry hears once, after the first
// attempt.
func (m *member) run(ctx context.Context, sem chan struct{}, firstTry chan<- struct{}) {
	p := m.p
	signalled := false
	signal := func() {
		if !signalled {
			signalled = true
			firstTry <- struct{}{}
		}
	}
	defer signal()
	channel := p.channels[m.ch].name
	cfg := client.Config{
		URL:        p.clientURL(m.idx),
		Transport:  p.cfg.Transport,
		HTTPClient: p.hc[m.idx%len(p.hc)],
		Logger:     p.log.With("client", m.idx),
		Now:        p.now,
		RetryMin:   p.cfg.RetryMin,
		RetryMax:   p.cfg.RetryMax,
		Rand:       p.cfg.Rand,
		OnState:    m.onState,
		NoReplay:   p.cfg.NoReplay,
	}
	if p.cfg.TokenSecret != "" {
		cfg.Token = p.token(m.idx, channel)
	}
	delay := 250 * time.Millisecond
	for ctx.Err() == nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		c, kind, err := m.open(ctx, cfg, channel)
		<-sem
		if err == nil {
			m.mu.Lock()
			m.c = c
			if m.subAt.IsZero() {
				m.subAt = p.now()
			}
			m.mu.Unlock()
			return
		}
		p.countError(kind)
		p.log.Debug("probe client failed to start", "client", m.idx, "kind", kind, "err", err)
		signal()
		t := time.NewTimer(time.Duration(rand.Float64() * float64(delay)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// open dials and subscribes once.
func (m *member) open(ctx context.Context, cfg client.Config, channel string) (*client.Client, string, error) {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, cfg)
	if err != nil {
		return nil, "dial", err
	}
	if err := c.Subscribe(dctx, channel, m.onDelivery); err != nil {
		c.Close()
		m.mu.Lock()
		m.up = false
		m.mu.Unlock()
		return nil, "subscribe", err
	}
	return c, "", nil
}

// onState turns the client's up and down events into disconnect gaps. A
// gap counts only once the member has subscribed: before that it was never
// receiving, and its absence shows as a client not subscribed.
func (m *member) onState(s client.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return
	}
	if s.Up {
		m.ups = append(m.ups, s.At)
		if !m.up && !m.subAt.IsZero() {
			g := s.At.Sub(m.downAt)
			m.gaps = append(m.gaps, g)
			m.reconn++
			m.p.tail.add(Gap{Client: m.idx, Down: m.downAt, Up: s.At, Len: g, Reconnect: int(m.reconn),
				Rehandshake: s.Rehandshake, Reason: m.downWhy})
		}
		m.up = true
		if s.ReplayGone {
			m.p.countError("replay_gone")
		}
		return
	}
	if m.up {
		m.up = false
		m.downAt = s.At
		m.downWhy = ""
		if s.Err != nil {
			m.downWhy = s.Err.Error()
		}
		m.p.countError("connection_lost")
	}
}

// onDelivery records one message. It runs on the client's receive
// goroutine; the member's lock is only contended by a Snapshot.
func (m *member) onDelivery(d client.Delivery) {
	var v probeData
	if err := json.Unmarshal(d.Data, &v); err != nil || v.Probe != m.p.runID || v.C != m.ch ||
		v.N < 0 || int64(v.N) >= m.p.channels[m.ch].count.Load() {
		return // someone else's traffic on the channel, or forged
	}
	m.mu.Lock()
	w := v.N / 64
	for len(m.got) <= w {
		m.got = append(m.got, 0)
	}
	bit := uint64(1) << (v.N % 64)
	if m.got[w]&bit != 0 {
		m.dup++
		m.mu.Unlock()
		return
	}
	m.got[w] |= bit
	if v.N < m.maxN {
		m.ooo++
	} else {
		m.maxN = v.N
	}
	m.mu.Unlock()
	m.p.latency.add(d.Received.Sub(time.Unix(0, v.T)))
}

func (m *member) has(n int) bool {
	w := n / 64
	return w < len(m.got) && m.got[w]&(1<<(n%64)) != 0
}

// clientURL is client i's URL: the probe's, with ClientParam=i when set.
func (p *Probe) clientURL(i int) string {
	u := p.cfg.URL
	if n := len(p.cfg.URLs); n > 0 {
		u = p.cfg.URLs[i%n]
	}
	if p.cfg.ClientParam == "" {
		return u
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + url.QueryEscape(p.cfg.ClientParam) + "=" + strconv.Itoa(p.cfg.ClientOffset+i)
}
