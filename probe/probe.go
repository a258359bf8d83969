// Package probe measures what chat clients experience: it holds N
// subscriber clients over M channels, publishes sequence-numbered messages
// at a steady rate through the node's POST /publish, and counts, for every
// (message, subscriber) pair that should have met, whether and when it
// arrived. The rollout runs it as a gate for the length of a phase; the
// demo shows its report; `wsfleet probe` runs it from the command line.
//
// Loss is counted honestly: a message is expected by a client when the
// server acknowledged its publish and the publish was sent after the
// client's first subscription was acknowledged. It is lost when it has not
// arrived by the end (after the grace period), whatever happened in
// between: a reconnect, a re-handshake, a replay that came back "gone".
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"wsfleet/bayeux"
)

// Config configures a probe. URL is required.
type Config struct {
	// URL is the Bayeux endpoint, e.g. http://127.0.0.1:8000/bayeux.
	URL string
	// PublishURL is where messages are published; default the URL's
	// origin + /publish.
	PublishURL string
	// AdminToken authorizes POST /publish (sent as a Bearer token).
	AdminToken string
	// TokenSecret, when set, mints each client an HS256 JWT (sub
	// "probe-<i>", exp, channels = its channel) sent as ext.token.
	TokenSecret string
	// TokenTTL is the minted tokens' lifetime; default 1h.
	TokenTTL time.Duration
	// Clients is the number of subscribers (default 10), Channels the
	// number of channels they spread over (default 1); client i
	// subscribes to channel i mod Channels.
	Clients  int
	Channels int
	// ChannelPrefix names the channels: "{id}" in it is replaced by the
	// channel number (the demo uses /api/v1/rooms/{id}/chatMessages);
	// without it the number is appended as a segment. Default /probe.
	ChannelPrefix string
	// Rate is the number of messages published per second over all
	// channels, round robin (default 10; 0 publishes nothing).
	Rate float64
	// Transport is client.WebSocket (default) or client.LongPolling.
	Transport string
	// SourceAddrs are local IP addresses the clients' connections are
	// spread over, so that 10,000 clients do not exhaust one address's
	// ephemeral ports. Default: for a loopback URL, 127.0.0.1 up to
	// 127.0.0.k with one address per 4,000 clients; otherwise the
	// system's choice.
	SourceAddrs []string
	// Grace is how long Stop waits for deliveries still in flight, and how
	// old a missing message must be before a Snapshot counts it as lost.
	// Default 2s.
	Grace time.Duration
	// ConnectConcurrency bounds handshakes in flight while clients are
	// opened, so the probe does not storm the server it measures. Default
	// 200.
	ConnectConcurrency int
	// RetryMin and RetryMax bound each client's reconnect backoff (client
	// defaults when zero); Rand draws its jitter (tests fix it).
	RetryMin, RetryMax time.Duration
	Rand               func() float64
	// PublishInterval is how often the publisher sends the messages due
	// (in one batch). Default 10ms.
	PublishInterval time.Duration
	// ClientParam, when set, adds the query parameter ClientParam=<i> to
	// client i's URL, so that a load balancer in the same process can
	// tell which client each connection belongs to (the demo counts how
	// often each client moved to another node). Servers ignore it.
	ClientParam string
	// URLs, when set, are further addresses of the Bayeux endpoint, as a
	// load balancer's DNS name resolves to several nodes: client i
	// connects to URLs[i mod len(URLs)] instead of URL (which still
	// derives PublishURL).
	URLs []string
	// ClientOffset and ChannelOffset number this probe's clients and
	// channels from there (client i is ClientOffset+i in its ClientParam
	// and token, channel j is named with ChannelOffset+j), so that several
	// probes, each its own process, hold one population of clients and
	// rooms between them (the demo's generator processes).
	ClientOffset  int
	ChannelOffset int
	// NoReplay makes every client behave like faye and halley, which never
	// ask the server for what they missed (client.Config.NoReplay): the
	// loss then measured is what unmodified chat clients would see.
	NoReplay bool
	// TailGaps is how many of the run's longest disconnection gaps are
	// kept with when they happened and why (Probe.TailGaps): 0 keeps
	// none. Memory is bounded by it, whatever the run's length.
	TailGaps int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Probe is a running probe.
type Probe struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	runID    string
	started  time.Time
	channels []*channelLog
	members  []*member
	hc       []*http.Client
	pubHC    *http.Client

	latency histogram
	tail    *tailGaps // Config.TailGaps longest gaps

	errMu  sync.Mutex
	errors map[string]int64

	cancel     context.CancelFunc // stops members' retries and the publisher
	pubCancel  context.CancelFunc
	pubDone    chan struct{}
	membersWG  sync.WaitGroup
	stopOnce   sync.Once
	final      Report
	finalGaps  []time.Duration
	stoppedAt  atomic.Pointer[time.Time]
	dataPrefix string
}

// Start opens the clients, waits until each has subscribed or failed its
// first attempt (those that failed keep retrying), then starts publishing.
func Start(ctx context.Context, cfg Config) (*Probe, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	p := &Probe{
		cfg:    cfg,
		log:    cfg.Logger.With("probe_url", cfg.URL),
		now:    cfg.Now,
		runID:  strconv.FormatUint(rand.Uint64(), 36),
		errors: map[string]int64{},
		tail:   &tailGaps{n: cfg.TailGaps},
	}
	p.dataPrefix = `{"probe":"` + p.runID + `"`
	p.started = p.now()
	for i := range cfg.Channels {
		p.channels = append(p.channels, &channelLog{name: channelName(cfg.ChannelPrefix, cfg.ChannelOffset+i)})
	}
	hcs, err := httpClients(cfg.SourceAddrs, cfg.Clients)
	if err != nil {
		return nil, err
	}
	p.hc = hcs
	p.pubHC = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	sem := make(chan struct{}, cfg.ConnectConcurrency)
	firstTry := make(chan struct{}, cfg.Clients)
	for i := range cfg.Clients {
		m := &member{p: p, idx: i, ch: i % cfg.Channels, maxN: -1}
		p.members = append(p.members, m)
		p.membersWG.Add(1)
		go func() {
			defer p.membersWG.Done()
			m.run(runCtx, sem, firstTry)
		}()
	}
	for range cfg.Clients {
		select {
		case <-firstTry:
		case <-ctx.Done():
			p.shutdownClients(context.Background())
			return nil, fmt.Errorf("start probe: %w", ctx.Err())
		}
	}
	p.log.Info("probe clients opened", "clients", cfg.Clients, "connected", p.connected(), "channels", cfg.Channels)

	pubCtx, pubCancel := context.WithCancel(runCtx)
	p.pubCancel = pubCancel
	p.pubDone = make(chan struct{})
	go func() {
		defer close(p.pubDone)
		p.publishLoop(pubCtx)
	}()
	return p, nil
}

func (cfg *Config) defaults() error {
	if cfg.URL == "" {
		return errors.New("probe: URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("probe: bad URL %q", cfg.URL)
	}
	if cfg.PublishURL == "" {
		cfg.PublishURL = u.Scheme + "://" + u.Host + "/publish"
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 10
	}
	if cfg.Channels <= 0 {
		cfg.Channels = 1
	}
	if cfg.ChannelPrefix == "" {
		cfg.ChannelPrefix = "/probe"
	}
	if cfg.Rate < 0 {
		return errors.New("probe: negative rate")
	}
	if cfg.TailGaps < 0 {
		return errors.New("probe: negative TailGaps")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * time.Second
	}
	if cfg.ConnectConcurrency <= 0 {
		cfg.ConnectConcurrency = 200
	}
	if cfg.PublishInterval <= 0 {
		cfg.PublishInterval = 10 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SourceAddrs == nil {
		cfg.SourceAddrs = defaultSourceAddrs(u.Hostname(), cfg.Clients)
	}
	for i := range cfg.Channels {
		if name := channelName(cfg.ChannelPrefix, cfg.ChannelOffset+i); !bayeux.ValidChannel(name) {
			return fmt.Errorf("probe: channel prefix %q gives invalid channel %q", cfg.ChannelPrefix, name)
		}
	}
	return nil
}

// channelName is channel i's name.
func channelName(prefix string, i int) string {
	id := strconv.Itoa(i)
	if strings.Contains(prefix, "{id}") {
		return strings.ReplaceAll(prefix, "{id}", id)
	}
	return strings.TrimSuffix(prefix, "/") + "/" + id
}

// defaultSourceAddrs spreads a loopback target's clients over 127.0.0.x.
func defaultSourceAddrs(host string, clients int) []string {
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil
	}
	n := 1 + clients/4000
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	return out
}

// httpClients returns one HTTP client per source address (or one with the
// system's choice when there is none).
func httpClients(addrs []string, clients int) ([]*http.Client, error) {
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	var out []*http.Client
	for _, a := range addrs {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		if a != "" {
			ip := net.ParseIP(a)
			if ip == nil {
				return nil, fmt.Errorf("probe: bad source address %q", a)
			}
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		out = append(out, &http.Client{Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: 2*clients/len(addrs) + 2,
			IdleConnTimeout:     90 * time.Second,
		}})
	}
	return out, nil
}

// token mints client i's JWT; the claim names are the ws node's (sub, exp,
// channels).
func (p *Probe) token(i int, channel string) func() string {
	return func() string {
		now := p.now()
		claims := jwt.MapClaims{
			"sub":      "probe-" + strconv.Itoa(p.cfg.ClientOffset+i),
			"iat":      now.Unix(),
			"exp":      now.Add(p.cfg.TokenTTL).Unix(),
			"channels": []string{channel},
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(p.cfg.TokenSecret))
		if err != nil {
			p.countError("token")
			return ""
		}
		return s
	}
}

func (p *Probe) countError(kind string) {
	p.errMu.Lock()
	p.errors[kind]++
	p.errMu.Unlock()
}

func (p *Probe) connected() int {
	n := 0
	for _, m := range p.members {
		m.mu.Lock()
		if m.up {
			n++
		}
		m.mu.Unlock()
	}
	return n
}

// Snapshot returns the figures so far. A missing message counts as lost
// only once it is older than the grace period; younger ones are pending.
func (p *Probe) Snapshot() Report {
	if t := p.stoppedAt.Load(); t != nil {
		return p.final
	}
	return p.report(p.now(), false)
}

// ClientUps returns, per client (by index), each time it came up: its
// first handshake and every reconnect since. With ClientParam, a caller
// that saw the clients' websockets at the load balancer tells from them
// which of those websockets a client really worked on (a node may accept
// a websocket and then refuse its handshake).
func (p *Probe) ClientUps() [][]time.Time {
	out := make([][]time.Time, len(p.members))
	for i, m := range p.members {
		m.mu.Lock()
		out[i] = append([]time.Time(nil), m.ups...)
		m.mu.Unlock()
	}
	return out
}

// Stop stops publishing, waits up to the grace period for deliveries in
// flight (less when everything expected has arrived), closes the clients
// and returns the final report. Calling it again returns the same report.
func (p *Probe) Stop(ctx context.Context) Report {
	p.stopOnce.Do(func() {
		p.pubCancel()
		<-p.pubDone
		end := p.now()
		deadline := time.NewTimer(p.cfg.Grace)
		tick := time.NewTicker(50 * time.Millisecond)
	wait:
		for {
			if r := p.report(p.now(), false); r.Pending == 0 {
				break
			}
			select {
			case <-deadline.C:
				break wait
			case <-ctx.Done():
				break wait
			case <-tick.C:
			}
		}
		deadline.Stop()
		tick.Stop()
		// The report is taken before the clients close, so that closing
		// them does not count as a disconnect gap.
		p.final, p.finalGaps = p.reportGaps(p.now(), true)
		p.final.ElapsedMs = ms(end.Sub(p.started))
		p.shutdownClients(ctx)
		t := p.now()
		p.stoppedAt.Store(&t)
	})
	return p.final
}

// shutdownClients ends retries and disconnects every client, a bounded
// number at a time.
func (p *Probe) shutdownClients(ctx context.Context) {
	p.cancel()
	p.membersWG.Wait()
	sem := make(chan struct{}, 200)
	var wg sync.WaitGroup
	for _, m := range p.members {
		m.mu.Lock()
		c := m.c
		m.closing = true
		m.mu.Unlock()
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_ = c.Disconnect(dctx)
		}()
	}
	wg.Wait()
}

func sortDurations(ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
}
