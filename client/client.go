// Package client is a Go Bayeux client for wsfleet and for any Faye-
// compatible server, over websocket or long-polling. It behaves like the
// real chat clients whose experience the probe measures: it follows the
// server's advice, reconnects with exponential backoff and full jitter,
// keeps its clientId across a reconnect when the server still knows it,
// re-handshakes and resubscribes when it does not, asks for a replay of what
// it missed (ext.since, its cursor), and drops duplicates by the broker's
// sequence number (ext.seq).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"wsfleet/bayeux"
)

// Transports.
const (
	WebSocket   = bayeux.ConnTypeWebSocket
	LongPolling = bayeux.ConnTypeLongPolling
)

// Errors.
var (
	// ErrClosed is returned by calls on a client that was closed.
	ErrClosed = errors.New("client: closed")
	// ErrRefused is returned once the server advised reconnect=none.
	ErrRefused = errors.New("client: server advised not to reconnect")
	errClosed  = ErrClosed
)

// Config configures a client. URL is required; every other field has a
// default that suits a chat client.
type Config struct {
	// URL is the Bayeux endpoint, e.g. http://127.0.0.1:8000/bayeux.
	URL string
	// Transport is WebSocket (the default) or LongPolling.
	Transport string
	// Token, when set, is called at every handshake and its result sent as
	// ext.token; a function so that an expiring token can be minted afresh.
	Token func() string
	// HTTPClient dials the server; set its transport's dialer to choose a
	// source address. Default: a client of its own.
	HTTPClient *http.Client
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// RetryMin and RetryMax bound the reconnect backoff (full jitter
	// between 0 and min(RetryMax, RetryMin·2^attempt)). Defaults 250ms, 5s.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds a handshake, subscribe or publish round trip.
	// Default 10s.
	RequestTimeout time.Duration
	// ConnectMargin is how long past the advised timeout the client waits
	// for a /meta/connect answer before it declares the connection dead.
	// Default 10s.
	ConnectMargin time.Duration
	// ReadLimit caps one websocket frame. Default 16 MiB (a replay can be
	// large).
	ReadLimit int64
	// OnState is called, from the client's own goroutine, each time the
	// client comes up or goes down. It must not block.
	OnState func(State)
	// Rand returns a uniform number in [0,1) for jitter. Default math/rand.
	Rand func() float64
	// NoReplay makes the client behave like faye and halley, which never
	// ask for what they missed: no ext.since on a resumed connect or on
	// the resubscriptions after a re-handshake. What the server replays by
	// itself (a session restored on another node after a drain) still
	// arrives. The demo and the probe use it to show what unmodified
	// clients experience.
	NoReplay bool
}

// State is a change of connection state.
type State struct {
	// Up is true when the client can receive again: after a handshake and
	// its resubscriptions, or after the server accepted its old clientId on
	// a new connection.
	Up bool
	At time.Time
	// Err says why the client went down.
	Err error
	// ClientID is the client's id once up.
	ClientID string
	// Rehandshake is set on an Up that needed a new handshake (the server
	// did not keep the session).
	Rehandshake bool
	// ReplayGone is set on an Up when the server said that messages missed
	// while down have left its history: a gap the client cannot fill.
	ReplayGone bool
}

// Delivery is one message received on a subscribed channel.
type Delivery struct {
	Channel string
	Data    json.RawMessage
	// Seq is the broker's sequence number (ext.seq), 0 if the server does
	// not number messages.
	Seq uint64
	// Late is set when a message arrived after one with a higher Seq.
	Late     bool
	Received time.Time
}

// Stats are counters since the client was created.
type Stats struct {
	Handshakes int64 `json:"handshakes"`
	Reconnects int64 `json:"reconnects"`
	// Duplicates were dropped because their ext.seq had been seen.
	Duplicates int64 `json:"duplicates"`
	// Late arrived below the highest ext.seq seen and were delivered.
	Late       int64 `json:"late"`
	ReplayGone int64 `json:"replay_gone"`
}

type subscription struct {
	pattern string
	handler func(Delivery)
	acked   bool
}

// Client is a Bayeux client. Its methods are safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	tr       transport
	clientID string
	advice   bayeux.Advice
	subs     map[string]*subscription
	up       bool
	upCh     chan struct{} // closed while up
	pending  map[string]chan bayeux.Message
	stopErr  error // set when the client will not reconnect
	stopCh   chan struct{}
	nextID   atomic.Uint64
	stats    Stats

	deliverMu sync.Mutex
	window    seqWindow
	cursor    uint64 // seq of the newest in-order delivery

	cancel   context.CancelFunc
	loopDone chan struct{}
}

// Dial opens a transport, handshakes once and starts the connect loop. It
// returns an error when the first handshake fails: the caller decides
// whether to retry. From then on the client reconnects by itself until
// Close or Disconnect.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("client: URL is required")
	}
	switch cfg.Transport {
	case "":
		cfg.Transport = WebSocket
	case WebSocket, LongPolling:
	default:
		return nil, fmt.Errorf("client: unknown transport %q", cfg.Transport)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 250 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.ConnectMargin <= 0 {
		cfg.ConnectMargin = 10 * time.Second
	}
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = 16 << 20
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger.With("url", cfg.URL, "transport", cfg.Transport),
		now:      cfg.Now,
		subs:     map[string]*subscription{},
		upCh:     make(chan struct{}),
		pending:  map[string]chan bayeux.Message{},
		stopCh:   make(chan struct{}),
		loopDone: make(chan struct{}),
		advice:   bayeux.Advice{Reconnect: bayeux.ReconnectRetry, Interval: bayeux.Millis(0), Timeout: bayeux.Millis(60000)},
	}
	if err := c.open(ctx); err != nil {
		return nil, err
	}
	if err := c.handshake(ctx); err != nil {
		c.closeTransport()
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.setUp(State{Up: true, At: c.now(), ClientID: c.ID()})
	go c.loop(loopCtx)
	return c, nil
}

// ID returns the current clientId.
func (c *Client) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// Cursor returns the broker sequence number of the newest message
// received, which is what the client asks to resume from.
func (c *Client) Cursor() uint64 {
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	return c.cursor
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// open replaces the transport with a fresh one.
func (c *Client) open(ctx context.Context) error {
	var tr transport
	if c.cfg.Transport == LongPolling {
		tr = newLongPolling(c.cfg.URL, c.cfg.HTTPClient, c.receive)
	} else {
		ws, err := dialWebSocket(ctx, c.cfg.URL, c.cfg.HTTPClient, c.cfg.ReadLimit, c.receive)
		if err != nil {
			return err
		}
		tr = ws
	}
	c.mu.Lock()
	old := c.tr
	c.tr = tr
	c.mu.Unlock()
	if old != nil {
		old.close()
	}
	return nil
}

func (c *Client) closeTransport() {
	c.mu.Lock()
	tr := c.tr
	c.mu.Unlock()
	if tr != nil {
		tr.close()
	}
}

// request sends one message and waits for the response with its id.
func (c *Client) request(ctx context.Context, m bayeux.Message, timeout time.Duration) (bayeux.Message, error) {
	m.ID = bayeux.ID(strconv.FormatUint(c.nextID.Add(1), 36))
	ch := make(chan bayeux.Message, 1)
	c.mu.Lock()
	tr := c.tr
	c.pending[string(m.ID)] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, string(m.ID))
		c.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tr.send(ctx, []bayeux.Message{m}); err != nil {
		return bayeux.Message{}, fmt.Errorf("%s: %w", m.Channel, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-tr.done():
		return bayeux.Message{}, fmt.Errorf("%s: %w", m.Channel, tr.err())
	case <-ctx.Done():
		return bayeux.Message{}, fmt.Errorf("%s: no response: %w", m.Channel, ctx.Err())
	}
}

// responseError turns an unsuccessful response into an error.
func responseError(r bayeux.Message) error {
	if r.Successful != nil && *r.Successful {
		return nil
	}
	if e, ok := bayeux.ParseError(r.Error); ok {
		return fmt.Errorf("%s: %w", r.Channel, e)
	}
	if r.Error != "" {
		return fmt.Errorf("%s: %s", r.Channel, r.Error)
	}
	return fmt.Errorf("%s: unsuccessful", r.Channel)
}

func (c *Client) handshake(ctx context.Context) error {
	m := bayeux.Message{
		Channel:                  bayeux.ChannelHandshake,
		Version:                  bayeux.Version,
		SupportedConnectionTypes: []string{c.cfg.Transport},
	}
	if c.cfg.Token != nil {
		ext, err := json.Marshal(map[string]string{"token": c.cfg.Token()})
		if err != nil {
			return fmt.Errorf("handshake ext: %w", err)
		}
		m.Ext = ext
	}
	r, err := c.request(ctx, m, c.cfg.RequestTimeout)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	c.takeAdvice(r.Advice)
	if err := responseError(r); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if r.ClientID == "" {
		return errors.New("handshake: response without clientId")
	}
	c.mu.Lock()
	c.clientID = r.ClientID
	c.stats.Handshakes++
	c.mu.Unlock()
	return nil
}

func (c *Client) takeAdvice(a *bayeux.Advice) {
	if a == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.Reconnect != "" {
		c.advice.Reconnect = a.Reconnect
	}
	if a.Interval != nil {
		c.advice.Interval = a.Interval
	}
	if a.Timeout != nil {
		c.advice.Timeout = a.Timeout
	}
}

// receive dispatches whatever the server sent: responses to their waiting
// request, deliveries to the subscriptions whose pattern matches.
func (c *Client) receive(msgs []bayeux.Message) {
	for i := range msgs {
		m := &msgs[i]
		if m.Successful != nil || bayeux.IsMeta(m.Channel) {
			c.mu.Lock()
			ch := c.pending[string(m.ID)]
			c.mu.Unlock()
			if ch != nil {
				select {
				case ch <- *m:
				default:
				}
			}
			continue
		}
		if m.Data != nil {
			c.deliver(m)
		}
	}
}

// seqExt is the part of ext the client reads.
type seqExt struct {
	Seq    uint64 `json:"seq"`
	Replay string `json:"replay"`
}

func (c *Client) deliver(m *bayeux.Message) {
	d := Delivery{Channel: m.Channel, Data: m.Data, Received: c.now()}
	if len(m.Ext) > 0 {
		var e seqExt
		if json.Unmarshal(m.Ext, &e) == nil {
			d.Seq = e.Seq
		}
	}
	// deliverMu is held through the handlers so that one client's
	// deliveries reach them one at a time, in the order received.
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	if d.Seq > 0 {
		switch c.window.add(d.Seq) {
		case seqNew:
			c.cursor = d.Seq
		case seqDuplicate:
			c.mu.Lock()
			c.stats.Duplicates++
			c.mu.Unlock()
			return
		case seqLate:
			d.Late = true
			c.mu.Lock()
			c.stats.Late++
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	var hs []func(Delivery)
	for _, s := range c.subs {
		if bayeux.Match(s.pattern, m.Channel) {
			hs = append(hs, s.handler)
		}
	}
	c.mu.Unlock()
	for _, h := range hs {
		h(d)
	}
}

func (c *Client) setUp(s State) {
	c.mu.Lock()
	if c.up {
		c.mu.Unlock()
		return
	}
	c.up = true
	close(c.upCh)
	c.mu.Unlock()
	c.log.Debug("client up", "client_id", s.ClientID, "rehandshake", s.Rehandshake)
	if c.cfg.OnState != nil {
		c.cfg.OnState(s)
	}
}

func (c *Client) setDown(err error) {
	c.mu.Lock()
	if !c.up {
		c.mu.Unlock()
		return
	}
	c.up = false
	c.upCh = make(chan struct{})
	c.mu.Unlock()
	c.log.Debug("client down", "err", err)
	if c.cfg.OnState != nil {
		c.cfg.OnState(State{Up: false, At: c.now(), Err: err})
	}
}

// waitUp blocks until the client is up.
func (c *Client) waitUp(ctx context.Context) error {
	for {
		c.mu.Lock()
		up, ch, stop := c.up, c.upCh, c.stopErr
		c.mu.Unlock()
		if stop != nil {
			return stop
		}
		if up {
			return nil
		}
		select {
		case <-ch:
		case <-c.stopCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// loop is the connect cycle: one /meta/connect at a time, as advised, and
// recovery when the connection or the session is lost.
func (c *Client) loop(ctx context.Context) {
	defer close(c.loopDone)
	b := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax, rand: c.cfg.Rand}
	// immediate asks the server to answer the next connect at once
	// (advice.timeout 0, as Faye's server honours): after a new transport
	// it is how the client learns promptly whether its session survived.
	immediate := true
	for ctx.Err() == nil {
		c.mu.Lock()
		id, timeout := c.clientID, time.Duration(*c.advice.Timeout)*time.Millisecond
		c.mu.Unlock()
		m := bayeux.Message{Channel: bayeux.ChannelConnect, ClientID: id, ConnectionType: c.cfg.Transport}
		if immediate {
			m.Advice = &bayeux.Advice{Timeout: bayeux.Millis(0)}
			// Resuming the same session on a new connection: say how far
			// this client really got. A server hands messages to a
			// websocket without an acknowledgement, so what it wrote into
			// the dying connection is lost unless it replays from here.
			// Servers that do not know ext.since on a connect ignore it.
			if cur := c.Cursor(); cur > 0 && !c.isUp() && !c.cfg.NoReplay {
				m.Ext = json.RawMessage(`{"since":` + strconv.FormatUint(cur, 10) + `}`)
			}
		}
		r, err := c.request(ctx, m, timeout+c.cfg.ConnectMargin)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.setDown(err)
			if !c.reopen(ctx, &b) {
				return
			}
			immediate = true
			continue
		}
		c.takeAdvice(r.Advice)
		c.mu.Lock()
		reconnect, interval := c.advice.Reconnect, time.Duration(*c.advice.Interval)*time.Millisecond
		c.mu.Unlock()
		if err := responseError(r); err != nil || reconnect != bayeux.ReconnectRetry {
			if err == nil {
				err = fmt.Errorf("connect: advised %s", reconnect)
			}
			if reconnect == bayeux.ReconnectNone {
				c.stop(fmt.Errorf("%w: %v", ErrRefused, err))
				return
			}
			c.setDown(err)
			if !c.rehandshake(ctx, &b) {
				return
			}
			immediate = false
			continue
		}
		wasDown := !c.isUp()
		c.setUp(State{Up: true, At: c.now(), ClientID: id})
		if wasDown {
			c.mu.Lock()
			c.stats.Reconnects++
			c.mu.Unlock()
		}
		b.reset()
		immediate = false
		// Wait the advised interval, but notice at once a websocket that
		// the server closes meanwhile (a draining node answers a connect,
		// then closes): the disconnection starts now, not at the next
		// connect.
		c.mu.Lock()
		tr := c.tr
		c.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-tr.done():
			t.Stop()
			c.setDown(tr.err())
			if !c.reopen(ctx, &b) {
				return
			}
			immediate = true
		}
	}
}

func (c *Client) isUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

func (c *Client) stop(err error) {
	c.mu.Lock()
	if c.stopErr == nil {
		c.stopErr = err
		close(c.stopCh)
	}
	c.mu.Unlock()
	c.setDown(err)
	c.log.Info("client stopped", "err", err)
}

// reopen waits a backoff delay and opens a new websocket, until one opens
// or ctx ends. Long-polling has nothing to reopen: it only waits.
func (c *Client) reopen(ctx context.Context, b *backoff) bool {
	for {
		if !sleep(ctx, b.next()) {
			return false
		}
		if c.cfg.Transport == LongPolling {
			return true
		}
		dctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		err := c.open(dctx)
		cancel()
		if err == nil {
			return true
		}
		c.log.Debug("reconnect failed", "err", err)
	}
}

// rehandshake gets a new clientId and restores every acknowledged
// subscription, asking for replay from the cursor.
func (c *Client) rehandshake(ctx context.Context, b *backoff) bool {
	for {
		err := c.handshake(ctx)
		if err == nil {
			var gone bool
			gone, err = c.resubscribe(ctx)
			if err == nil {
				c.mu.Lock()
				c.stats.Reconnects++
				id := c.clientID
				c.mu.Unlock()
				c.setUp(State{Up: true, At: c.now(), ClientID: id, Rehandshake: true, ReplayGone: gone})
				b.reset()
				return true
			}
		}
		if ctx.Err() != nil {
			return false
		}
		c.log.Debug("rehandshake failed", "err", err)
		if !c.reopen(ctx, b) {
			return false
		}
	}
}

func (c *Client) resubscribe(ctx context.Context) (replayGone bool, err error) {
	c.mu.Lock()
	var patterns []string
	for p, s := range c.subs {
		if s.acked {
			patterns = append(patterns, p)
		}
	}
	c.mu.Unlock()
	// A new session may live in a new sequence space (a restarted node
	// with a memory broker counts from 1 again), so the duplicate window
	// starts afresh; the replay asked for starts after the cursor, so it
	// cannot overlap what was already delivered.
	c.deliverMu.Lock()
	since := c.cursor
	if c.cfg.NoReplay {
		since = 0
	}
	c.window = seqWindow{}
	c.deliverMu.Unlock()
	for _, p := range patterns {
		gone, err := c.subscribeRequest(ctx, p, since)
		if err != nil {
			return false, err
		}
		replayGone = replayGone || gone
	}
	return replayGone, nil
}

// subscribeRequest sends one /meta/subscribe; since > 0 asks for replay of
// the messages after it.
func (c *Client) subscribeRequest(ctx context.Context, pattern string, since uint64) (replayGone bool, err error) {
	c.mu.Lock()
	id := c.clientID
	c.mu.Unlock()
	m := bayeux.Message{Channel: bayeux.ChannelSubscribe, ClientID: id, Subscription: bayeux.Subscription{pattern}}
	if since > 0 {
		m.Ext = json.RawMessage(`{"since":` + strconv.FormatUint(since, 10) + `}`)
	}
	r, err := c.request(ctx, m, c.cfg.RequestTimeout)
	if err != nil {
		return false, fmt.Errorf("subscribe %s: %w", pattern, err)
	}
	if err := responseError(r); err != nil {
		return false, fmt.Errorf("subscribe %s: %w", pattern, err)
	}
	if len(r.Ext) > 0 {
		var e seqExt
		if json.Unmarshal(r.Ext, &e) == nil && e.Replay == "gone" {
			c.mu.Lock()
			c.stats.ReplayGone++
			c.mu.Unlock()
			c.log.Warn("replay gone", "subscription", pattern, "since", since)
			return true, nil
		}
	}
	return false, nil
}

// Subscribe subscribes to pattern (a channel or a wildcard pattern) and
// calls h for each message received on it, one at a time. h must not block.
// It waits until the client is up, and returns once the server has
// acknowledged the subscription; after a re-handshake the client restores
// it by itself.
func (c *Client) Subscribe(ctx context.Context, pattern string, h func(Delivery)) error {
	if !bayeux.ValidPattern(pattern) {
		return fmt.Errorf("subscribe %s: %w", pattern, bayeux.ErrChannelInvalid(pattern))
	}
	c.mu.Lock()
	if _, dup := c.subs[pattern]; dup {
		c.mu.Unlock()
		return fmt.Errorf("subscribe %s: already subscribed", pattern)
	}
	s := &subscription{pattern: pattern, handler: h}
	c.subs[pattern] = s
	c.mu.Unlock()
	var err error
	for {
		if err = c.waitUp(ctx); err != nil {
			break
		}
		id := c.ID()
		if _, err = c.subscribeRequest(ctx, pattern, 0); err != nil {
			break
		}
		c.mu.Lock()
		// A re-handshake that ran meanwhile restored only the
		// subscriptions acknowledged before it; if the clientId changed,
		// this one was made for a session that is gone: make it again.
		if c.clientID == id {
			s.acked = true
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs[pattern] == s {
		delete(c.subs, pattern)
	}
	return err
}

// Unsubscribe removes the subscription to pattern.
func (c *Client) Unsubscribe(ctx context.Context, pattern string) error {
	c.mu.Lock()
	_, ok := c.subs[pattern]
	delete(c.subs, pattern)
	id := c.clientID
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("unsubscribe %s: not subscribed", pattern)
	}
	if err := c.waitUp(ctx); err != nil {
		return fmt.Errorf("unsubscribe %s: %w", pattern, err)
	}
	r, err := c.request(ctx, bayeux.Message{Channel: bayeux.ChannelUnsubscribe, ClientID: id, Subscription: bayeux.Subscription{pattern}}, c.cfg.RequestTimeout)
	if err != nil {
		return fmt.Errorf("unsubscribe %s: %w", pattern, err)
	}
	if err := responseError(r); err != nil {
		return fmt.Errorf("unsubscribe %s: %w", pattern, err)
	}
	return nil
}

// Publish publishes data (any JSON-encodable value, or json.RawMessage) on
// channel and waits for the server's acknowledgement.
func (c *Client) Publish(ctx context.Context, channel string, data any) error {
	if !bayeux.ValidChannel(channel) {
		return fmt.Errorf("publish %s: %w", channel, bayeux.ErrChannelInvalid(channel))
	}
	raw, ok := data.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			return fmt.Errorf("publish %s: encode data: %w", channel, err)
		}
	}
	if err := c.waitUp(ctx); err != nil {
		return fmt.Errorf("publish %s: %w", channel, err)
	}
	r, err := c.request(ctx, bayeux.Message{Channel: channel, ClientID: c.ID(), Data: raw}, c.cfg.RequestTimeout)
	if err != nil {
		return fmt.Errorf("publish %s: %w", channel, err)
	}
	if err := responseError(r); err != nil {
		return fmt.Errorf("publish %s: %w", channel, err)
	}
	return nil
}

// Disconnect tells the server the client is leaving, then closes it.
func (c *Client) Disconnect(ctx context.Context) error {
	var err error
	if c.isUp() {
		var r bayeux.Message
		r, err = c.request(ctx, bayeux.Message{Channel: bayeux.ChannelDisconnect, ClientID: c.ID()}, c.cfg.RequestTimeout)
		if err == nil {
			err = responseError(r)
		}
		if err != nil {
			err = fmt.Errorf("disconnect: %w", err)
		}
	}
	c.Close()
	return err
}

// Close stops the client without telling the server, as a crashed or
// vanished client would.
func (c *Client) Close() {
	c.mu.Lock()
	if c.stopErr == nil {
		c.stopErr = ErrClosed
		close(c.stopCh)
	}
	c.mu.Unlock()
	c.cancel()
	c.closeTransport()
	<-c.loopDone
}
