package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSOptions configure a NATS broker. Zero values take the defaults named
// on each field.
type NATSOptions struct {
	// URLs is a comma-separated list of nats:// URLs (required).
	URLs string
	// Name identifies this node's connection in the server's monitoring;
	// default "wsfleet".
	Name string
	// Stream is the JetStream stream holding the history; default "WSFLEET".
	Stream string
	// SubjectPrefix heads every subject (<prefix>.a.b for /a/b); default
	// "wsfleet". Dot-separated tokens of [A-Za-z0-9_-].
	SubjectPrefix string
	// HistoryAge is how long messages stay in the stream; default 5m.
	HistoryAge time.Duration
	// HistoryMsgs caps the stream's message count; default 100,000.
	HistoryMsgs int64
	// MemoryStorage keeps the stream and the session bucket in the NATS
	// servers' memory instead of on disk (file storage, the default,
	// survives a NATS restart).
	MemoryStorage bool
	// Replicas is the stream's and bucket's replica count in a clustered
	// JetStream; default 1.
	Replicas int
	// SessionBucket is the JetStream key-value bucket for saved sessions;
	// default "wsfleet_sessions".
	SessionBucket string
	// SessionTTL is how long a saved session is kept after its last save,
	// so that sessions of clients that never came back expire; default 1h.
	SessionTTL time.Duration
	// PublishTimeout bounds one Publish when ctx has a later deadline;
	// default 5s.
	PublishTimeout time.Duration
	// ConnectTimeout bounds the first connection; default 5s.
	ConnectTimeout time.Duration
	// ReconnectWait is the first delay between reconnect attempts; it
	// doubles per failed attempt up to ReconnectMaxWait, plus jitter.
	// Defaults 250ms and 5s. Reconnection never gives up.
	ReconnectWait    time.Duration
	ReconnectMaxWait time.Duration
	// PingInterval is how often the client pings the server, which is how a
	// silently dead server is noticed; default 10s (two missed pings
	// disconnect).
	PingInterval time.Duration
	// Logger receives connection state changes; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o *NATSOptions) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Name == "" {
		o.Name = "wsfleet"
	}
	if o.Stream == "" {
		o.Stream = "WSFLEET"
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = "wsfleet"
	}
	def(&o.HistoryAge, 5*time.Minute)
	if o.HistoryMsgs <= 0 {
		o.HistoryMsgs = 100_000
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.SessionBucket == "" {
		o.SessionBucket = "wsfleet_sessions"
	}
	def(&o.SessionTTL, time.Hour)
	def(&o.PublishTimeout, 5*time.Second)
	def(&o.ConnectTimeout, 5*time.Second)
	def(&o.ReconnectWait, 250*time.Millisecond)
	def(&o.ReconnectMaxWait, 5*time.Second)
	def(&o.PingInterval, 10*time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// NATS is the broker of a clustered fleet: history is a JetStream stream
// whose sequence numbers are the cluster-wide Seq, every node reads the
// whole stream live through an ordered consumer, and sessions live in a
// JetStream key-value bucket.
//
// Every node receives every message and filters locally, as the Broker
// contract asks. That is one stream read per node: fine for a fleet of ~10
// nodes; beyond some tens of nodes or a high message rate the per-node
// read would have to be replaced by per-channel interest.
type NATS struct {
	opts     NATSOptions
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream
	sessions *natsSessions

	mu             sync.Mutex
	closed         bool
	disconnectedAt time.Time // zero while connected
	subs           map[*natsSub]struct{}

	maxSeq atomic.Uint64 // highest stream sequence this node has seen
}

var (
	_ Broker        = (*NATS)(nil)
	_ HealthChecker = (*NATS)(nil)
)

// NewNATS connects to NATS, creates or updates the stream and the session
// bucket (idempotent: nodes starting together all do it, and the last
// writer's limits win), and returns the broker. ctx bounds the setup only.
func NewNATS(ctx context.Context, o NATSOptions) (*NATS, error) {
	o.setDefaults()
	if strings.TrimSpace(o.URLs) == "" {
		return nil, errors.New("nats broker: no URLs")
	}
	if !validPrefix(o.SubjectPrefix) {
		return nil, fmt.Errorf("nats broker: subject prefix %q: want dot-separated tokens of [A-Za-z0-9_-]", o.SubjectPrefix)
	}
	b := &NATS{opts: o, log: o.Logger.With("component", "broker", "stream", o.Stream), subs: map[*natsSub]struct{}{}}
	urls := strings.Join(strings.Fields(strings.ReplaceAll(o.URLs, ",", " ")), ",")
	nc, err := nats.Connect(urls,
		nats.Name(o.Name),
		nats.Timeout(o.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(b.reconnectDelay),
		// No client-side buffering while disconnected: Publish must fail
		// fast rather than report success for a message that may be lost.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(o.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(b.onDisconnect),
		nats.ReconnectHandler(b.onReconnect),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("nats async error", "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats broker: connect %s: %w", urls, err)
	}
	b.nc = nc
	if err := b.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	b.log.Info("nats broker ready", "url", nc.ConnectedUrlRedacted(), "prefix", o.SubjectPrefix,
		"history_age", o.HistoryAge, "history_msgs", o.HistoryMsgs)
	return b, nil
}

func (b *NATS) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("nats broker: jetstream: %w", err)
	}
	b.js = js
	if err := b.ensure(ctx); err != nil {
		return err
	}
	// Handles address the stream and bucket by name, so they stay valid
	// when ensure recreates them after a reconnect.
	if b.stream, err = js.Stream(ctx, b.opts.Stream); err != nil {
		return fmt.Errorf("nats broker: stream %s: %w", b.opts.Stream, err)
	}
	kv, err := js.KeyValue(ctx, b.opts.SessionBucket)
	if err != nil {
		return fmt.Errorf("nats broker: bucket %s: %w", b.opts.SessionBucket, err)
	}
	b.sessions = &natsSessions{kv: kv}
	return nil
}

// ensure creates the stream and the session bucket, or updates them to
// this node's settings. A stream that has to be created while this node
// has already seen sequence numbers (NATS lost its store: a restart
// without its directory) starts after the highest one seen, so sequence
// numbers never go back and the cursors held by sessions keep their
// meaning; History reports the lost messages as gone.
func (b *NATS) ensure(ctx context.Context) error {
	storage := jetstream.FileStorage
	if b.opts.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	scfg := jetstream.StreamConfig{
		Name:        b.opts.Stream,
		Description: "wsfleet: published Bayeux messages, the cluster's history window",
		Subjects:    []string{b.opts.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      b.opts.HistoryAge,
		MaxMsgs:     b.opts.HistoryMsgs,
		Storage:     storage,
		Replicas:    b.opts.Replicas,
	}
	err := retryCreate(ctx, func() error {
		s, err := b.js.Stream(ctx, scfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			cfg := scfg
			if seen := b.maxSeq.Load(); seen > 0 {
				cfg.FirstSeq = seen + 1
				b.log.Error("stream missing after reconnect, NATS lost its store: recreating it after the last seen sequence",
					"first_seq", cfg.FirstSeq)
			}
			_, err = b.js.CreateStream(ctx, cfg)
			return err // "already in use" when another node won the race: retried as an update
		case err != nil:
			return err
		}
		cfg := scfg
		cfg.FirstSeq = s.CachedInfo().Config.FirstSeq // fixed at creation
		_, err = b.js.UpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("nats broker: create stream %s: %w", scfg.Name, err)
	}
	kcfg := jetstream.KeyValueConfig{
		Bucket:      b.opts.SessionBucket,
		Description: "wsfleet: saved sessions for handoff between nodes",
		History:     1,
		TTL:         b.opts.SessionTTL,
		Storage:     storage,
		Replicas:    b.opts.Replicas,
	}
	err = retryCreate(ctx, func() error {
		_, err := b.js.CreateOrUpdateKeyValue(ctx, kcfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("nats broker: create bucket %s: %w", kcfg.Bucket, err)
	}
	return nil
}

// seen records a sequence number this node has observed.
func (b *NATS) seen(seq uint64) {
	for {
		cur := b.maxSeq.Load()
		if seq <= cur || b.maxSeq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// retryCreate retries f a few times: when several nodes create the same
// stream at once, JetStream can answer one of them with a transient
// "already in use" or "in progress" error although the end state is fine.
func retryCreate(ctx context.Context, f func() error) error {
	var err error
	for attempt := range 5 {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	return err
}

// reconnectDelay backs off exponentially from ReconnectWait to
// ReconnectMaxWait, with up to 50% jitter so that a fleet whose NATS
// restarted does not reconnect in lockstep.
func (b *NATS) reconnectDelay(attempts int) time.Duration {
	d := b.opts.ReconnectWait
	for i := 1; i < attempts && d < b.opts.ReconnectMaxWait; i++ {
		d *= 2
	}
	d = min(d, b.opts.ReconnectMaxWait)
	return d + rand.N(d/2+1)
}

func (b *NATS) onDisconnect(_ *nats.Conn, err error) {
	b.mu.Lock()
	if b.disconnectedAt.IsZero() {
		b.disconnectedAt = b.opts.Now()
	}
	closed := b.closed
	b.mu.Unlock()
	if !closed {
		b.log.Warn("nats disconnected", "err", err)
	}
}

func (b *NATS) onReconnect(nc *nats.Conn) {
	b.mu.Lock()
	since := b.disconnectedAt
	b.disconnectedAt = time.Time{}
	b.mu.Unlock()
	b.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted(), "down_for", b.opts.Now().Sub(since))
	// The server may have come back without its store; put the stream and
	// bucket back before the ordered consumers look for them.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.ensure(ctx); err != nil && b.Healthy() == nil {
			b.log.Error("after reconnect", "err", err)
		}
	}()
}

// Healthy implements HealthChecker: nil while connected to NATS, an error
// wrapping ErrUnavailable while the client is reconnecting.
func (b *NATS) Healthy() error {
	b.mu.Lock()
	closed, since := b.closed, b.disconnectedAt
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		if since.IsZero() {
			return fmt.Errorf("%w: nats connection %s", ErrUnavailable, st)
		}
		return fmt.Errorf("%w: nats connection %s for %s", ErrUnavailable, st, b.opts.Now().Sub(since).Round(time.Millisecond))
	}
	return nil
}

// Publish implements Broker. While NATS is unreachable it fails at once
// with ErrUnavailable. A timeout after the request was sent leaves the
// outcome unknown (the stream may hold the message); callers treat it as a
// failed publish.
func (b *NATS) Publish(ctx context.Context, channel string, payload []byte) (uint64, error) {
	subj, err := channelSubject(b.opts.SubjectPrefix, channel)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if err := b.Healthy(); err != nil {
		return 0, fmt.Errorf("publish %s: %w", channel, err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	ack, err := b.js.Publish(ctx, subj, payload, jetstream.WithExpectStream(b.opts.Stream))
	if err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
			errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return 0, fmt.Errorf("publish %s: %w", channel, err)
	}
	b.seen(ack.Sequence)
	return ack.Sequence, nil
}

// Subscribe implements Broker with a JetStream ordered consumer over the
// whole stream, starting after the stream's last sequence at call time.
// The ordered consumer is what survives faults: after a reconnect or a
// missed heartbeat it recreates itself from the last sequence it
// delivered, so nothing still in the stream is skipped or repeated. The
// handler additionally drops any sequence at or below the last one it
// delivered, and logs a gap (messages that left the stream before this node
// could read them, i.e. an outage longer than the history window). stop
// must not be called from h. ctx bounds the setup only.
func (b *NATS) Subscribe(ctx context.Context, h func(Message)) (func(), error) {
	if err := b.Healthy(); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	info, err := b.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe: stream info: %w", err)
	}
	start := info.State.LastSeq
	b.seen(start)
	cons, err := b.js.OrderedConsumer(ctx, b.opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.opts.SubjectPrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe: ordered consumer: %w", err)
	}
	s := &natsSub{b: b, h: h, last: start}
	cc, err := cons.Consume(s.deliver, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Heartbeats go missing during every outage, which Healthy
		// already reports; anything else is worth a line.
		if errors.Is(err, jetstream.ErrNoHeartbeat) || b.Healthy() != nil {
			b.log.Debug("subscribe: consumer error, the ordered consumer recovers", "err", err)
			return
		}
		b.log.Warn("subscribe: consumer error, the ordered consumer recovers", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("subscribe: consume: %w", err)
	}
	s.cc = cc
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cc.Stop()
		return nil, ErrClosed
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		s.stop()
	}, nil
}

type natsSub struct {
	b       *NATS
	h       func(Message)
	cc      jetstream.ConsumeContext
	mu      sync.Mutex // serialises deliver with stop
	last    uint64     // stream seq of the last message given to h
	stopped atomic.Bool
}

func (s *natsSub) deliver(m jetstream.Msg) {
	if s.stopped.Load() {
		return
	}
	md, err := m.Metadata()
	if err != nil {
		s.b.log.Warn("subscribe: message without metadata", "subject", m.Subject(), "err", err)
		return
	}
	seq := md.Sequence.Stream
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped.Load() {
		return
	}
	if seq <= s.last {
		s.b.log.Debug("subscribe: duplicate dropped", "seq", seq, "last", s.last)
		return
	}
	if seq > s.last+1 {
		s.b.log.Warn("subscribe: gap, messages left the stream before delivery", "from", s.last+1, "to", seq-1)
	}
	s.last = seq
	s.b.seen(seq)
	ch, err := subjectChannel(s.b.opts.SubjectPrefix, m.Subject())
	if err != nil {
		s.b.log.Warn("subscribe: skipping message", "seq", seq, "err", err)
		return
	}
	s.h(Message{Seq: seq, Channel: ch, Payload: m.Data(), Published: md.Timestamp})
}

// stop ends delivery; when it returns, h is not running and will not run.
func (s *natsSub) stop() {
	s.stopped.Store(true)
	s.cc.Stop()
	s.mu.Lock()
	//nolint:staticcheck // empty critical section: waits for a running h
	s.mu.Unlock()
}

// historyBatch is how many messages History pulls per request: it bounds
// the memory of one request, not of the answer (which the stream's limits
// bound).
const historyBatch = 512

// History implements Broker with a short-lived pull consumer filtered on
// the patterns' subjects, starting at after+1 and stopping at the stream's
// last sequence as of the call.
func (b *NATS) History(ctx context.Context, patterns []string, after uint64) ([]Message, error) {
	if err := b.Healthy(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var filters []string
	for _, p := range reducePatterns(patterns) {
		f, err := patternSubject(b.opts.SubjectPrefix, p)
		if err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		filters = append(filters, f)
	}
	info, err := b.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("history: stream info: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	b.seen(last)
	if gone(after, first, last) {
		return nil, ErrHistoryGone
	}
	if len(filters) == 0 || last <= after {
		return nil, nil
	}
	cons, err := b.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:       "wsfleet history read",
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, // reaped even if the delete below is lost
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, fmt.Errorf("history: create consumer: %w", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := b.stream.DeleteConsumer(dctx, name); err != nil {
			b.log.Debug("history: delete consumer", "consumer", name, "err", err)
		}
	}()
	pending := cons.CachedInfo().NumPending
	var out []Message
	for pending > 0 {
		wait := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return nil, fmt.Errorf("history: %w", context.DeadlineExceeded)
		}
		batch, err := cons.Fetch(int(min(pending, historyBatch)), jetstream.FetchMaxWait(wait))
		if err != nil {
			return nil, fmt.Errorf("history: fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("history: metadata: %w", err)
			}
			pending = md.NumPending
			if md.Sequence.Stream > last {
				pending = 0
				continue
			}
			ch, err := subjectChannel(b.opts.SubjectPrefix, m.Subject())
			if err != nil {
				return nil, fmt.Errorf("history: %w", err)
			}
			out = append(out, Message{Seq: md.Sequence.Stream, Channel: ch, Payload: m.Data(), Published: md.Timestamp})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("history: fetch: %w", err)
		}
		if got == 0 {
			break // retention removed what was pending; the check below decides
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
	}
	// Retention only ever removes the oldest messages: if the stream still
	// starts at or before after+1, nothing we needed left during the read.
	info, err = b.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("history: stream info: %w", err)
	}
	if gone(after, info.State.FirstSeq, info.State.LastSeq) {
		return nil, ErrHistoryGone
	}
	return out, nil
}

// gone reports whether the messages after `after` cannot all be read from
// a stream that now holds first..last (first = last+1 when it is empty):
// some have left the window, or the cursor is ahead of the stream, which
// happens only when the stream was deleted and recreated (its sequence
// numbers started again, so the cursor belongs to another history).
func gone(after, first, last uint64) bool {
	return after > last || after < last && first > after+1
}

// LastSeq implements Broker.
func (b *NATS) LastSeq(ctx context.Context) (uint64, error) {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("last seq: stream info: %w", err)
	}
	b.seen(info.State.LastSeq)
	return info.State.LastSeq, nil
}

// Sessions implements Broker.
func (b *NATS) Sessions() SessionStore { return b.sessions }

// Close implements Broker: it stops every subscription and closes the
// connection.
func (b *NATS) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	for s := range subs {
		s.stop()
	}
	b.nc.Close()
	return nil
}

// natsSessions keeps sessions in a JetStream key-value bucket, whose TTL
// expires the sessions of clients that never came back.
type natsSessions struct{ kv jetstream.KeyValue }

// sessionKey maps a client ID onto a key-value key. IDs made only of
// [A-Za-z0-9_-] are used as they are; anything else (client IDs arrive from
// outside) is base64url-encoded behind a '=', a byte the plain form never
// holds, so two IDs never share a key.
func sessionKey(clientID string) (string, error) {
	if clientID == "" || len(clientID) > 512 {
		return "", fmt.Errorf("client id: want 1..512 bytes, got %d", len(clientID))
	}
	for i := 0; i < len(clientID); i++ {
		c := clientID[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "=" + base64.RawURLEncoding.EncodeToString([]byte(clientID)), nil
		}
	}
	return clientID, nil
}

func (s *natsSessions) Save(ctx context.Context, sess Session) error {
	key, err := sessionKey(sess.ClientID)
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	data, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	if _, err := s.kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

func (s *natsSessions) Load(ctx context.Context, clientID string) (Session, error) {
	sess, _, err := s.LoadRev(ctx, clientID)
	return sess, err
}

func (s *natsSessions) LoadRev(ctx context.Context, clientID string) (Session, uint64, error) {
	key, err := sessionKey(clientID)
	if err != nil {
		return Session{}, 0, ErrNoSession // an ID we could never have saved
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Session{}, 0, ErrNoSession
	}
	if err != nil {
		return Session{}, 0, fmt.Errorf("load session: %w", err)
	}
	var sess Session
	if err := json.Unmarshal(e.Value(), &sess); err != nil {
		return Session{}, 0, fmt.Errorf("load session: %w", err)
	}
	return sess, e.Revision(), nil
}

// Update implements SessionStore with the bucket's own compare-and-set:
// the write carries the subject's expected last sequence.
func (s *natsSessions) Update(ctx context.Context, sess Session, rev uint64) (uint64, error) {
	key, err := sessionKey(sess.ClientID)
	if err != nil {
		return 0, fmt.Errorf("update session: %w", err)
	}
	data, err := json.Marshal(sess)
	if err != nil {
		return 0, fmt.Errorf("update session: %w", err)
	}
	var n uint64
	if rev == 0 {
		n, err = s.kv.Create(ctx, key, data)
	} else {
		n, err = s.kv.Update(ctx, key, data, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("update session: %w", casError(err))
	}
	return n, nil
}

func (s *natsSessions) DeleteRev(ctx context.Context, clientID string, rev uint64) error {
	key, err := sessionKey(clientID)
	if err != nil {
		return ErrSessionChanged // an ID we could never have saved
	}
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("delete session: %w", casError(err))
	}
	return nil
}

// casError maps a lost compare-and-set (JetStream's "wrong last sequence",
// 10164 on replicated streams) onto ErrSessionChanged.
func casError(err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)) {
		return fmt.Errorf("%w (%w)", ErrSessionChanged, err)
	}
	return err
}

func (s *natsSessions) Delete(ctx context.Context, clientID string) error {
	key, err := sessionKey(clientID)
	if err != nil {
		return nil
	}
	if err := s.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
