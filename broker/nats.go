package broker

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
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
	// JetStream, 1..5. Zero picks it from the cluster: 3 when the client
	// knows three or more servers (the URLs given plus those the servers
	// announce), else 1. An existing stream or bucket is updated to it.
	Replicas int
	// SessionBucket is the JetStream key-value bucket for saved sessions;
	// default "wsfleet_sessions".
	SessionBucket string
	// SessionTTL is how long a saved session is kept after its last save,
	// so that sessions of clients that never came back expire; default 1h.
	SessionTTL time.Duration
	// PublishTimeout bounds one Publish, retries included, when ctx has a
	// later deadline; default 15s, longer than a JetStream leader election
	// after a server dies (4 to 9 s). A Publish retries with the same
	// message id, so the stream stores a retried message once. It bounds
	// the retries of History, LastSeq and the session store the same way.
	PublishTimeout time.Duration
	// ProbeInterval is how often the broker checks that the stream
	// answers (a stream info request bounded by ProbeTimeout); the node is
	// not ready while it does not. Defaults 2s and 3s.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// UnreadyAfter is how long the connection may be down, or the stream
	// not answer, before Healthy reports it (the node turns not-ready);
	// default PublishTimeout, so that a node is ready exactly while a
	// publish can still succeed within its retries. A failed publish is
	// reported at once.
	UnreadyAfter time.Duration
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
	// WholeStream turns interest-based delivery off: SubscribeInterest
	// reads the whole stream, as Subscribe does, and ignores the node's
	// interest (the behaviour before it existed; for comparison).
	WholeStream bool
	// SwitchInterval is the least time between two switches of an
	// interest subscription's consumer: interest changes made meanwhile
	// are coalesced into the next switch; default 20ms.
	SwitchInterval time.Duration
	// MaxFilterSubjects is the most patterns an interest subscription's
	// consumer filters on; with more it reads the whole stream and
	// filters locally, as on a server without multi-subject consumers.
	// nats-server checks a consumer's filter subjects pairwise
	// (checkConsumerCfg) on every create, so a switch costs the square of
	// the filters: at 1,000 rooms a node the demo's embedded server spent
	// its core there and clients were opened at 40/s. Default 256.
	MaxFilterSubjects int
	// InterestSettle is how long an interest subscription whose patterns
	// are growing fast reads the whole stream before it filters again.
	// A node taking many sessions on channels new to it (a fresh instance
	// receiving a drain's clients) would otherwise switch its consumer
	// for nearly every take-over, and each take-over would wait for a
	// switch. Once growthWants subscribes within InterestSettle asked for
	// patterns the consumer did not read, the next switch reads the whole
	// stream and filters it here; from then on a subscribe's Want adds
	// its patterns to that local filter and returns at once. When no new
	// pattern came for InterestSettle, one switch goes back to a filtered
	// consumer (from the last sequence taken: nothing is lost or
	// delivered twice). Default 2s; negative turns it off (every new
	// pattern switches the consumer).
	InterestSettle time.Duration
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
	if o.SessionBucket == "" {
		o.SessionBucket = "wsfleet_sessions"
	}
	def(&o.SessionTTL, time.Hour)
	def(&o.PublishTimeout, 15*time.Second)
	def(&o.ProbeInterval, 2*time.Second)
	def(&o.ProbeTimeout, 3*time.Second)
	def(&o.UnreadyAfter, o.PublishTimeout)
	def(&o.ConnectTimeout, 5*time.Second)
	def(&o.ReconnectWait, 250*time.Millisecond)
	def(&o.ReconnectMaxWait, 5*time.Second)
	def(&o.PingInterval, 10*time.Second)
	def(&o.SwitchInterval, 20*time.Millisecond)
	if o.MaxFilterSubjects <= 0 {
		o.MaxFilterSubjects = 256
	}
	if o.InterestSettle == 0 {
		o.InterestSettle = 2 * time.Second
	}
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
// With Subscribe a node receives every message and filters locally; with
// SubscribeInterest (what the server uses) its consumer reads only the
// channels its sessions subscribe to, so that its cost follows its own
// traffic rather than the fleet's (see nats_interest.go).
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
	subs           map[stopper]struct{}
	probeErr       error     // the last probe's failure, nil once one succeeds
	probeFailSince time.Time // first of the probes failing in a row; zero when the last succeeded
	pubFailedAt    time.Time // a Publish failed after its retries; zero once one succeeds

	maxSeq      atomic.Uint64 // highest stream sequence this node has seen
	multiFilter atomic.Bool   // the connected server's consumers take several filter subjects
	msgIDs      atomic.Uint64 // numbers the message ids of this node's publishes
	idPrefix    string        // makes those ids unique across nodes and restarts
	stopProbe   chan struct{}
	probeDone   chan struct{}
}

var (
	_ Broker        = (*NATS)(nil)
	_ HealthChecker = (*NATS)(nil)
)

// NewNATS connects to NATS, checks the server (nats-server MinNATSServer
// or newer, with JetStream: otherwise an error wrapping ErrNATSTooOld that
// names the version needed), picks the replica count when Replicas is 0,
// creates or updates the stream and the session bucket (idempotent: nodes
// starting together all do it, and the last writer's limits win), and
// returns the broker. ctx bounds the setup only.
func NewNATS(ctx context.Context, o NATSOptions) (*NATS, error) {
	o.setDefaults()
	if strings.TrimSpace(o.URLs) == "" {
		return nil, errors.New("nats broker: no URLs")
	}
	if !validPrefix(o.SubjectPrefix) {
		return nil, fmt.Errorf("nats broker: subject prefix %q: want dot-separated tokens of [A-Za-z0-9_-]", o.SubjectPrefix)
	}
	b := &NATS{opts: o, log: o.Logger.With("component", "broker", "stream", o.Stream), subs: map[stopper]struct{}{},
		idPrefix: fmt.Sprintf("%s-%x", o.Name, rand.Uint64())}
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
	b.stopProbe, b.probeDone = make(chan struct{}), make(chan struct{})
	go b.probeLoop()
	b.log.Info("nats broker ready", "url", nc.ConnectedUrlRedacted(), "prefix", o.SubjectPrefix,
		"history_age", o.HistoryAge, "history_msgs", o.HistoryMsgs, "replicas", b.opts.Replicas)
	return b, nil
}

// MaxReplicas is the largest replica count JetStream allows.
const MaxReplicas = 5

// autoReplicas is the replica count for Replicas 0: 3 when the client
// knows three or more servers of the cluster, else 1.
func autoReplicas(known int) int {
	if known >= 3 {
		return 3
	}
	return 1
}

// ConnectedURL is the URL of the NATS server the client is connected to
// now ("" while disconnected).
func (b *NATS) ConnectedURL() string { return b.nc.ConnectedUrlRedacted() }

// Replicas is the replica count the broker gave the stream and the
// session bucket (NATSOptions.Replicas, or the one it picked).
func (b *NATS) Replicas() int { return b.opts.Replicas }

func (b *NATS) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("nats broker: jetstream: %w", err)
	}
	b.js = js
	feat, err := b.checkServer(ctx)
	if err != nil {
		return fmt.Errorf("nats broker: %w", err)
	}
	b.multiFilter.Store(feat.multiFilter)
	b.log.Info("nats server", "version", feat.version.String(), "jetstream_api_level", feat.apiLevel,
		"multi_filter_consumers", feat.multiFilter, "cluster", b.nc.ConnectedClusterName())
	if b.opts.Replicas == 0 {
		b.opts.Replicas = autoReplicas(len(b.nc.Servers()))
	}
	if b.opts.Replicas < 1 || b.opts.Replicas > MaxReplicas {
		return fmt.Errorf("nats broker: replicas %d: want 1..%d", b.opts.Replicas, MaxReplicas)
	}
	if err := b.ensure(ctx); err != nil {
		return err
	}
	// Handles address the stream and bucket by name, so they stay valid
	// when ensure recreates them after a reconnect.
	err = b.retry(ctx, b.opts.ProbeTimeout, func(ctx context.Context) error {
		var err error
		b.stream, err = js.Stream(ctx, b.opts.Stream)
		return err
	})
	if err != nil {
		return fmt.Errorf("nats broker: stream %s: %w", b.opts.Stream, err)
	}
	var kv jetstream.KeyValue
	err = b.retry(ctx, b.opts.ProbeTimeout, func(ctx context.Context) error {
		var err error
		kv, err = js.KeyValue(ctx, b.opts.SessionBucket)
		return err
	})
	if err != nil {
		return fmt.Errorf("nats broker: bucket %s: %w", b.opts.SessionBucket, err)
	}
	b.sessions = &natsSessions{kv: kv, b: b}
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
	// retryCreate for the race between nodes, in b.retry for a leader
	// election (a request to a dead leader is never answered)
	err := b.retry(ctx, 5*time.Second, func(ctx context.Context) error {
		return retryCreate(ctx, func() error {
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
	err = b.retry(ctx, 5*time.Second, func(ctx context.Context) error {
		return retryCreate(ctx, func() error { return b.ensureBucket(ctx, kcfg) })
	})
	if err != nil {
		return fmt.Errorf("nats broker: create bucket %s: %w", kcfg.Bucket, err)
	}
	return nil
}

// ensureBucket creates the session bucket, or updates the stream under an
// existing one to this node's TTL and replicas, and with replicas turns
// off its "direct get", which the client library turns on for every bucket
// it creates or updates: a direct get is answered by any replica, and one
// catching up (a server just restarted) answered with a session already
// changed or deleted (the cluster conformance suite caught it). Without it
// a read goes to the stream's leader, which has every acknowledged write.
// An existing bucket is updated through its stream, never through the
// library's bucket update, which would turn direct gets back on for a
// moment and a node binding the bucket then would read from replicas for
// its lifetime.
func (b *NATS) ensureBucket(ctx context.Context, kcfg jetstream.KeyValueConfig) error {
	s, err := b.js.Stream(ctx, "KV_"+kcfg.Bucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := b.js.CreateKeyValue(ctx, kcfg); err != nil {
			return err // ErrBucketExists when another node won the race: retried as an update
		}
		if s, err = b.js.Stream(ctx, "KV_"+kcfg.Bucket); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	old := s.CachedInfo().Config
	cfg := old
	cfg.Description, cfg.MaxAge, cfg.Replicas = kcfg.Description, kcfg.TTL, kcfg.Replicas
	if cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge // JetStream wants the duplicate window within the age limit
	}
	if kcfg.Replicas > 1 {
		cfg.AllowDirect = false
	}
	if reflect.DeepEqual(cfg, old) {
		return nil
	}
	_, err = b.js.UpdateStream(ctx, cfg)
	return err
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
	// bucket back before the ordered consumers look for them. The server
	// may also be another one, of another version (a cluster being
	// upgraded): History adapts to it.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if feat, err := b.checkServer(ctx); err != nil {
			b.log.Error("after reconnect: server check", "err", err)
		} else {
			b.multiFilter.Store(feat.multiFilter)
			if !feat.multiFilter {
				b.refilter()
			}
		}
		if err := b.ensure(ctx); err != nil && b.Healthy() == nil {
			b.log.Error("after reconnect", "err", err)
		}
	}()
}

// probeLoop asks for the stream's info every ProbeInterval: a connected
// client whose stream has no leader (a JetStream cluster that lost its
// quorum, a leader being elected) cannot publish or read, and the node
// reports not-ready until the stream answers again.
func (b *NATS) probeLoop() {
	defer close(b.probeDone)
	t := time.NewTicker(b.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stopProbe:
			return
		case <-t.C:
		}
		b.probe()
	}
}

// probe checks the stream once and records the outcome for Healthy.
func (b *NATS) probe() {
	if b.nc.Status() != nats.CONNECTED {
		return // Healthy reports the connection
	}
	start := b.opts.Now()
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.ProbeTimeout)
	info, err := b.stream.Info(ctx)
	cancel()
	if err == nil && info.Cluster != nil && info.Cluster.Leader == "" {
		// A stream without a leader (a cluster without a quorum) is
		// answered for by its members from what they have: it takes
		// no publish.
		err = errors.New("stream has no leader")
	}
	b.mu.Lock()
	was := b.probeErr
	if err != nil {
		b.probeErr = err
		if b.probeFailSince.IsZero() {
			b.probeFailSince = start
		}
	} else {
		b.probeErr, b.probeFailSince = nil, time.Time{}
		if b.pubFailedAt.Before(start) {
			b.pubFailedAt = time.Time{}
		}
	}
	b.mu.Unlock()
	switch {
	case err != nil && was == nil:
		b.log.Warn("stream probe failed", "err", err, "unready_after", b.opts.UnreadyAfter)
	case err == nil && was != nil:
		b.log.Info("stream probe answered again")
	}
}

// Healthy implements HealthChecker: an error wrapping ErrUnavailable when
// a publish started now would fail: the client has been disconnected, or
// the stream has not answered the probe, for UnreadyAfter or longer, or a
// publish failed after its retries and nothing answered since. A shorter
// outage (a reconnect to another server, a leader election) is one that
// Publish rides out by retrying, and the node stays ready through it, so
// that a load balancer does not take the whole fleet out at once.
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
		if down := b.opts.Now().Sub(since); down >= b.opts.UnreadyAfter {
			return fmt.Errorf("%w: nats connection %s for %s", ErrUnavailable, st, down.Round(time.Millisecond))
		}
		return nil
	}
	return b.streamHealthy()
}

// streamHealthy reports the last probe's failure, or a publish that
// failed after its retries with no probe answered since.
func (b *NATS) streamHealthy() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probeErr != nil && b.opts.Now().Sub(b.probeFailSince) >= b.opts.UnreadyAfter {
		return fmt.Errorf("%w: stream %s does not answer: %w", ErrUnavailable, b.opts.Stream, b.probeErr)
	}
	if !b.pubFailedAt.IsZero() {
		return fmt.Errorf("%w: stream %s: a publish failed at %s", ErrUnavailable, b.opts.Stream, b.pubFailedAt.Format(time.RFC3339Nano))
	}
	return nil
}

// connected is nil while the client is connected, an error wrapping
// ErrUnavailable while it is not; with the time the outage began.
func (b *NATS) connected() (time.Time, error) {
	b.mu.Lock()
	closed, since := b.closed, b.disconnectedAt
	b.mu.Unlock()
	if closed {
		return since, ErrClosed
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		return since, fmt.Errorf("%w: nats connection %s", ErrUnavailable, st)
	}
	return since, nil
}

// retryable reports whether an operation that failed with err may succeed
// when repeated: anything but a closed broker, a cancelled caller, and the
// answers that are results (history gone, no session, a lost
// compare-and-set, a bad subject).
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, ErrClosed), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, context.Canceled),
		errors.Is(err, ErrHistoryGone), errors.Is(err, ErrNoSession), errors.Is(err, ErrSessionChanged),
		errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, nats.ErrBadSubject), errors.Is(err, jetstream.ErrInvalidSubject),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return false
	case errors.As(err, &apiErr):
		// 503 (no leader, cluster not available) and 500 (a leader
		// change in progress) are transient; 4xx are answers.
		return apiErr.Code >= 500
	}
	return true
}

// retry runs f until it succeeds, fails with an error retryable rejects,
// or PublishTimeout (or ctx) runs out: a JetStream leader change or a
// client reconnecting to another server of the cluster takes seconds,
// which a caller should not see as a failure. While the connection has
// been down for longer than PublishTimeout it fails at once: that is an
// outage, not a blip. f gets a context bounded by perTry.
func (b *NATS) retry(ctx context.Context, perTry time.Duration, f func(ctx context.Context) error) error {
	start := b.opts.Now()
	deadline := start.Add(b.opts.PublishTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		since, err := b.connected()
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err != nil && !since.IsZero() && b.opts.Now().Sub(since) >= b.opts.PublishTimeout {
			return err // a long outage: fail fast
		}
		if err == nil {
			tctx, cancel := context.WithTimeout(ctx, min(perTry, deadline.Sub(b.opts.Now())))
			err = f(tctx)
			cancel()
			if err == nil || !retryable(err) {
				return err
			}
		}
		left := deadline.Sub(b.opts.Now())
		if left <= 0 || ctx.Err() != nil {
			if ctx.Err() != nil {
				return errors.Join(err, ctx.Err())
			}
			return err
		}
		if attempt == 0 {
			b.log.Debug("nats operation failed, retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(min(wait+rand.N(wait/2+1), left)):
		}
		wait = min(wait*2, time.Second)
	}
}

// Publish implements Broker. It retries within PublishTimeout (see
// retry), every attempt with the same message id, so that the stream
// stores the message once even when an attempt's answer was lost; once the
// connection has been down for PublishTimeout it fails at once with
// ErrUnavailable. A failure after the retries leaves the outcome unknown
// (the stream may hold the message); callers treat it as a failed publish,
// and Healthy reports it until a publish or a probe succeeds.
func (b *NATS) Publish(ctx context.Context, channel string, payload []byte) (uint64, error) {
	subj, err := channelSubject(b.opts.SubjectPrefix, channel)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	// One id for every attempt: the stream's duplicate window stores a
	// message whose first attempt's answer was lost only once.
	id := fmt.Sprintf("%s-%d", b.idPrefix, b.msgIDs.Add(1))
	var ack *jetstream.PubAck
	err = b.retry(ctx, 2*time.Second, func(ctx context.Context) error {
		var err error
		ack, err = b.js.Publish(ctx, subj, payload, jetstream.WithExpectStream(b.opts.Stream),
			jetstream.WithMsgID(id), jetstream.WithRetryAttempts(0))
		return err
	})
	if err != nil {
		if !errors.Is(err, ErrClosed) && retryable(err) {
			b.mu.Lock()
			b.pubFailedAt = b.opts.Now()
			b.mu.Unlock()
			if !errors.Is(err, ErrUnavailable) {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		}
		return 0, fmt.Errorf("publish %s: %w", channel, err)
	}
	b.mu.Lock()
	b.pubFailedAt = time.Time{}
	b.mu.Unlock()
	b.seen(ack.Sequence)
	return ack.Sequence, nil
}

// Subscribe implements Broker with a JetStream ordered consumer over the
// whole stream, starting after the stream's last sequence at call time
// (an interest subscription that reads everything and never switches).
// The ordered consumer is what survives faults: after a reconnect or a
// missed heartbeat it recreates itself from the last sequence it
// delivered, so nothing still in the stream is skipped or repeated; the
// handler additionally drops any sequence at or below the last one it
// delivered. stop must not be called from h. ctx bounds the setup only.
func (b *NATS) Subscribe(ctx context.Context, h func(Message)) (func(), error) {
	s, err := b.subscribe(ctx, h, nil, true)
	if err != nil {
		return nil, err
	}
	return s.Stop, nil
}

// historyBatch is how many messages History pulls per request: it bounds
// the memory of one request, not of the answer (which the stream's limits
// bound).
const historyBatch = 512

// History implements Broker with short-lived pull consumers filtered on
// the patterns' subjects, starting at after+1 and stopping at the stream's
// last sequence as of the call: one consumer for every pattern where the
// server takes several filter subjects (nats-server 2.10+), one per pattern
// otherwise, merged by sequence. A transient failure (a leader change) is
// retried within PublishTimeout; ErrHistoryGone is an answer.
func (b *NATS) History(ctx context.Context, patterns []string, after uint64) ([]Message, error) {
	if _, err := b.connected(); err != nil {
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
	var out []Message
	err := b.retry(ctx, b.opts.PublishTimeout, func(ctx context.Context) error {
		var err error
		out, err = b.history(ctx, filters, after)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrHistoryGone) {
			return nil, ErrHistoryGone
		}
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// history is one attempt of History on already converted filters.
func (b *NATS) history(ctx context.Context, filters []string, after uint64) ([]Message, error) {
	info, err := b.streamInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	b.seen(last)
	if gone(after, first, last) {
		return nil, ErrHistoryGone
	}
	if len(filters) == 0 || last <= after {
		return nil, nil
	}
	var out []Message
	if len(filters) == 1 || b.multiFilter.Load() {
		out, err = b.readFiltered(ctx, filters, after, last)
		if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
			// a server older than the one we checked (a reconnect to
			// another server of a cluster being upgraded)
			b.multiFilter.Store(false)
			b.log.Warn("history: nats-server takes one filter subject per consumer; reading one consumer per pattern", "err", err)
			out, err = b.readEach(ctx, filters, after, last)
		}
	} else {
		out, err = b.readEach(ctx, filters, after, last)
	}
	if err != nil {
		return nil, err
	}
	// Retention only ever removes the oldest messages: if the stream still
	// starts at or before after+1, nothing we needed left during the read.
	info, err = b.streamInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	if gone(after, info.State.FirstSeq, info.State.LastSeq) {
		return nil, ErrHistoryGone
	}
	return out, nil
}

// streamInfo is one stream info request bounded by ProbeTimeout: a request
// to a leader that just died is never answered, and the caller's retry
// should ask again (another server leads by then) rather than wait out its
// whole deadline.
func (b *NATS) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.ProbeTimeout)
	defer cancel()
	return b.stream.Info(ctx)
}

// readEach reads every filter with its own consumer (for servers without
// multi-subject consumers) and merges them in sequence order. The filters
// come from reducePatterns, so none covers another and no message is
// read twice; a sequence seen twice is dropped all the same.
func (b *NATS) readEach(ctx context.Context, filters []string, after, last uint64) ([]Message, error) {
	var out []Message
	for _, f := range filters {
		msgs, err := b.readFiltered(ctx, []string{f}, after, last)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	slices.SortFunc(out, func(x, y Message) int { return cmp.Compare(x.Seq, y.Seq) })
	return slices.CompactFunc(out, func(x, y Message) bool { return x.Seq == y.Seq }), nil
}

// readFiltered reads the messages on filters from after+1 up to last with
// one short-lived pull consumer. One filter goes in FilterSubject, which
// every supported server knows; several in FilterSubjects (2.10+).
func (b *NATS) readFiltered(ctx context.Context, filters []string, after, last uint64) ([]Message, error) {
	cfg := jetstream.ConsumerConfig{
		Description:       "wsfleet history read",
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, // reaped even if the delete below is lost
		MemoryStorage:     true,
		Replicas:          1,
	}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	cctx, cancel := context.WithTimeout(ctx, b.opts.ProbeTimeout)
	cons, err := b.stream.CreateConsumer(cctx, cfg)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
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
			return nil, context.DeadlineExceeded
		}
		batch, err := cons.Fetch(int(min(pending, historyBatch)), jetstream.FetchMaxWait(wait))
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("metadata: %w", err)
			}
			pending = md.NumPending
			if md.Sequence.Stream > last {
				pending = 0
				continue
			}
			ch, err := subjectChannel(b.opts.SubjectPrefix, m.Subject())
			if err != nil {
				return nil, err
			}
			out = append(out, Message{Seq: md.Sequence.Stream, Channel: ch, Payload: m.Data(), Published: md.Timestamp})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		if got == 0 {
			// Retention removed what was pending (the history is
			// gone), or the server holding the consumer died: never
			// a short answer.
			info, err := b.streamInfo(ctx)
			if err != nil {
				return nil, fmt.Errorf("stream info: %w", err)
			}
			if gone(after, info.State.FirstSeq, info.State.LastSeq) {
				return nil, ErrHistoryGone
			}
			return nil, fmt.Errorf("fetch: nothing delivered with %d messages pending", pending)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return b.readTail(ctx, filters, after, last, out)
}

// readTail completes a consumer's read with what it may lack at the end.
// In a cluster an ephemeral consumer lives on any one of the stream's
// replicas, and a replica applies the stream's messages a little after
// the leader (seconds after a restart): its consumer ends its read where
// its copy of the stream ends, possibly before last. Messages are applied
// in order, so only a tail can be missing: for every filter, the leader
// (a stream message get, which only the leader answers) is asked for the
// next matching message after the read; any up to last are read one by
// one and merged.
func (b *NATS) readTail(ctx context.Context, filters []string, after, last uint64, out []Message) ([]Message, error) {
	if b.opts.Replicas <= 1 {
		return out, nil // one server: the consumer reads the only copy
	}
	top := after
	if len(out) > 0 {
		top = max(top, out[len(out)-1].Seq)
	}
	if top >= last {
		return out, nil
	}
	extra := 0
	for _, f := range filters {
		for seq := top + 1; seq <= last; {
			m, err := b.getNext(ctx, seq, f)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("tail: %w", err)
			}
			if m.Sequence > last {
				break
			}
			ch, err := subjectChannel(b.opts.SubjectPrefix, m.Subject)
			if err != nil {
				return nil, err
			}
			out = append(out, Message{Seq: m.Sequence, Channel: ch, Payload: m.Data, Published: m.Time})
			extra++
			seq = m.Sequence + 1
		}
	}
	if extra == 0 {
		return out, nil
	}
	b.log.Debug("history: read the tail a replica lacked from the leader", "messages", extra, "after", top, "last", last)
	slices.SortFunc(out, func(x, y Message) int { return cmp.Compare(x.Seq, y.Seq) })
	return slices.CompactFunc(out, func(x, y Message) bool { return x.Seq == y.Seq }), nil
}

// getNext asks the stream's leader for the first message at or after seq
// on subject filter f, bounded by ProbeTimeout.
func (b *NATS) getNext(ctx context.Context, seq uint64, f string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.ProbeTimeout)
	defer cancel()
	return b.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
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
	var info *jetstream.StreamInfo
	err := b.retry(ctx, b.opts.ProbeTimeout, func(ctx context.Context) error {
		var err error
		info, err = b.stream.Info(ctx)
		return err
	})
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
	close(b.stopProbe)
	<-b.probeDone
	b.nc.Close()
	return nil
}

// natsSessions keeps sessions in a JetStream key-value bucket, whose TTL
// expires the sessions of clients that never came back.
type natsSessions struct {
	kv jetstream.KeyValue
	b  *NATS // retries transient failures (a leader change)
}

// do runs one key-value operation with the broker's retries.
func (s *natsSessions) do(ctx context.Context, f func(ctx context.Context) error) error {
	return s.b.retry(ctx, s.b.opts.ProbeTimeout, f)
}

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
	if err := s.do(ctx, func(ctx context.Context) error { _, err := s.kv.Put(ctx, key, data); return err }); err != nil {
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
	var e jetstream.KeyValueEntry
	err = s.do(ctx, func(ctx context.Context) error {
		var err error
		e, err = s.kv.Get(ctx, key)
		return err
	})
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
	err = s.do(ctx, func(ctx context.Context) error {
		var err error
		if rev == 0 {
			n, err = s.kv.Create(ctx, key, data)
		} else {
			n, err = s.kv.Update(ctx, key, data, rev)
		}
		return casError(err)
	})
	if err != nil {
		return 0, fmt.Errorf("update session: %w", err)
	}
	return n, nil
}

func (s *natsSessions) DeleteRev(ctx context.Context, clientID string, rev uint64) error {
	key, err := sessionKey(clientID)
	if err != nil {
		return ErrSessionChanged // an ID we could never have saved
	}
	if err := s.do(ctx, func(ctx context.Context) error {
		return casError(s.kv.Delete(ctx, key, jetstream.LastRevision(rev)))
	}); err != nil {
		return fmt.Errorf("delete session: %w", err)
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
	err = s.do(ctx, func(ctx context.Context) error { return s.kv.Delete(ctx, key) })
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
