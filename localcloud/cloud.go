// Package localcloud is a local stand-in for the parts of AWS that a
// rollout touches: EC2 instances, images and launch templates, Auto Scaling
// groups with lifecycle hooks, and ELBv2 target groups and load balancers.
// It speaks the AWS Query API on one endpoint, so the same aws-sdk-go-v2
// code (and the AWS CLI) that drives AWS drives it, and it runs each
// instance as a local process (a ws node) on its own loopback address, with
// its own instance metadata service, behind a load balancer that is a real
// reverse proxy.
//
// It behaves as AWS documents rather than as a convenient toy: asynchronous
// launches, termination policies that respect scale-in protection,
// deregistration delays, lifecycle hooks with heartbeats and timeouts,
// health-check replacement, the AWS error codes. Every shortcut here would
// become a bug that only shows in production.
package localcloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"
)

// Image says what an AMI runs.
type Image struct {
	// Command is the executable an instance of this image runs as
	// `Command serve --aws --aws-lifecycle`. Empty means simulated.
	Command string
	// Simulated instances run nothing: they boot in BootTime, fail to boot
	// with probability FailureRate and pass health checks otherwise.
	Simulated bool
	// Name is the image's name in DescribeImages; default the AMI id.
	Name string
	// Args follow `serve --aws --aws-lifecycle` on the command line: a
	// bad image for tests is the same command with the node's test-only
	// fault flags (--fault-handshake-fail-rate, --fault-delay).
	Args []string
}

// Config configures a local cloud. Zero values take the defaults noted;
// every interval is a field so that tests run in milliseconds what AWS runs
// in minutes.
type Config struct {
	// Listen is the API endpoint's address; default 127.0.0.1:4566, and
	// port 0 picks a free one (see Endpoint).
	Listen string
	// Region is reported in ARNs and IMDS; default us-east-1.
	Region string
	// Images maps an AMI id to what it runs.
	Images map[string]Image

	// Tick is how often groups are reconciled; default 250ms.
	Tick time.Duration
	// BootTime is how long an instance stays pending before its process
	// starts (giving a launcher time to tag it, as EC2's boot does);
	// default 1s. SimulatedBootTime is the same for simulated images;
	// default 2s.
	BootTime          time.Duration
	SimulatedBootTime time.Duration
	// SimulatedFailureRate is the probability that a simulated instance
	// never passes its health checks.
	SimulatedFailureRate float64
	// SimulatedConnections is how many connections each simulated node
	// holds once ready (what its status and metrics report, and what a
	// drain releases); default DefaultSimulatedConnections, negative
	// means none. SetSimulatedConnections changes one node's.
	SimulatedConnections int
	// SimulatedAdminToken is the admin bearer token simulated nodes
	// accept when their user data sets no --admin-token (process nodes
	// read that line too); empty, with none in the user data, turns
	// their admin API off, as on a node started without a token.
	SimulatedAdminToken string
	// HealthCheckInterval, when set, replaces every target group's
	// HealthCheckIntervalSeconds (AWS's minimum is 5 s); the timeout is
	// then the smaller of the group's and this interval.
	HealthCheckInterval time.Duration
	// DeregistrationDelayMax, when set, shortens every target group's
	// deregistration_delay.timeout_seconds (AWS's default is 300 s) to at
	// most this.
	DeregistrationDelayMax time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL when an instance
	// is terminated; default 10s.
	// A negative KillGrace sends SIGKILL at once, so that nothing the
	// instance would do on shutdown runs: the demo's naive mode uses it to
	// stand in for servers (the seed's Faye) that hand nothing over.
	KillGrace time.Duration
	// NodePort is the port every process instance listens on, on its own
	// private IP; default 8080.
	NodePort int
	// LogDir receives each process instance's output as <instance-id>.log;
	// default a temporary directory removed on Close.
	LogDir string
	// Env is added to each process instance's environment.
	Env []string
	// S3Dir is the folder S3's buckets and objects are kept in, so that a
	// cloud started again on the same folder still has them; default a
	// temporary directory removed on Close.
	S3Dir string
	// S3MaxObjectSize bounds a PutObject body; larger uploads fail with
	// EntityTooLarge. Default DefaultS3MaxObjectSize (64 MiB).
	S3MaxObjectSize int64
	// MaxInstances is the account's instance quota: launches beyond this
	// many live instances fail with InstanceLimitExceeded; default 2000.
	MaxInstances int

	// Now is the clock; default time.Now. Tests move it to expire
	// lifecycle hooks and cooldowns without sleeping.
	Now func() time.Time
	// Logger receives the cloud's log; nil discards it.
	Logger *slog.Logger

	// OnProxied, when set, is called with each response a load balancer
	// listener received from a target (when it did, the target's
	// host:port and the request as sent to it, query included), before it
	// is passed on; the demo learns from the 101s which node each of its
	// chat clients' websockets landed on. It runs on the request's
	// goroutine (with LBNodes, on the goroutine reading the node's
	// reports) and must not block.
	OnProxied func(at time.Time, target string, req *http.Request, status int)

	// LBNodes, above 0, runs each load balancer listener as that many
	// nodes, each its own process on 127.0.0.(20+k) at the listener's
	// port (lbnode.go), as an ALB's DNS name resolves to several nodes;
	// 0 runs it in this process on 127.0.0.1. At most MaxLBNodes.
	// LBNodeCommand is the node's command line (`wsfleet cloud lb-node`,
	// whose code is RunLBNode); LBNodeEnv is added to its environment.
	LBNodes       int
	LBNodeCommand []string
	LBNodeEnv     []string

	// Faults are the faults the API injects from the start (faults.go);
	// SetFaults and the admin path FaultsPath change them at run time.
	Faults Faults

	// actions replaces the action table (actions.go) for this cloud;
	// nil keeps it. Only this package's tests set it, to add actions
	// that misbehave on purpose.
	actions map[string]map[string]handler
}

// Cloud is a running local cloud.
type Cloud struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	actions map[string]map[string]handler

	ln     net.Listener
	srv    *http.Server
	simLn  net.Listener // the simulated nodes' listener (simnode.go)
	simSrv *http.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	tmpDir string
	s3Tmp  string   // S3Dir when the cloud made it, removed on Close
	s3     *s3Store // S3's buckets and objects (s3store.go), with their own lock

	mu         sync.Mutex
	images     map[string]*imageRec
	templates  map[string]*launchTemplate // by id
	instances  map[string]*instance
	instOrder  []*instance
	groups     map[string]*group
	targetGrps map[string]*targetGroup // by ARN
	lbs        map[string]*loadBalancer
	listeners  map[string]*listener
	ipNext     int
	alive      int // pending or running instances, against MaxInstances
	ipInUse    map[string]bool
	accessKeys map[string]int
	tokens     map[string]*tokenRecord // by action and ClientToken, kept for the cloud's life
	staleTags  map[string]staleTag     // tag writes reads see late, by resource and key (faults.go)
	alarms     map[string]*alarm       // CloudWatch metric alarms by name (cloudwatch.go)

	faults *injector

	launchConfigs map[string]*launchConfig // by name (launchconfig.go), made on first use

	actionCalls actionCounter // every call received, by action (actioncount.go)
}

// Start starts the API endpoint and the reconcilers. Close stops them and
// every instance.
func Start(ctx context.Context, cfg Config) (*Cloud, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:4566"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	if cfg.BootTime <= 0 {
		cfg.BootTime = time.Second
	}
	if cfg.SimulatedBootTime <= 0 {
		cfg.SimulatedBootTime = 2 * time.Second
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 10 * time.Second
	}
	if cfg.SimulatedConnections == 0 {
		cfg.SimulatedConnections = DefaultSimulatedConnections
	} else if cfg.SimulatedConnections < 0 {
		cfg.SimulatedConnections = 0
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = 2000
	}
	if cfg.NodePort == 0 {
		cfg.NodePort = 8080
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.S3MaxObjectSize <= 0 {
		cfg.S3MaxObjectSize = DefaultS3MaxObjectSize
	}
	if cfg.LBNodes < 0 || cfg.LBNodes > MaxLBNodes {
		return nil, fmt.Errorf("localcloud: LBNodes %d, want 0 to %d", cfg.LBNodes, MaxLBNodes)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.actions == nil {
		cfg.actions = actions
	}
	c := &Cloud{
		cfg:        cfg,
		log:        log,
		now:        cfg.Now,
		actions:    cfg.actions,
		images:     map[string]*imageRec{},
		templates:  map[string]*launchTemplate{},
		instances:  map[string]*instance{},
		groups:     map[string]*group{},
		targetGrps: map[string]*targetGroup{},
		lbs:        map[string]*loadBalancer{},
		listeners:  map[string]*listener{},
		ipInUse:    map[string]bool{},
		accessKeys: map[string]int{},
		tokens:     map[string]*tokenRecord{},
		staleTags:  map[string]staleTag{},
		faults:     newInjector(cfg.Faults),
	}
	if err := cfg.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	ids := make([]string, 0, len(cfg.Images))
	for id := range cfg.Images {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		im := cfg.Images[id]
		if !strings.HasPrefix(id, "ami-") {
			return nil, fmt.Errorf("localcloud: image %q: id must start with ami-", id)
		}
		if im.Command == "" {
			im.Simulated = true
		}
		if im.Name == "" {
			im.Name = id
		}
		c.images[id] = &imageRec{id: id, Image: im, created: c.now()}
	}
	if c.cfg.LogDir == "" {
		dir, err := os.MkdirTemp("", "wsfleet-cloud-")
		if err != nil {
			return nil, fmt.Errorf("localcloud: log dir: %w", err)
		}
		c.cfg.LogDir, c.tmpDir = dir, dir
	}
	if c.cfg.S3Dir == "" {
		dir, err := os.MkdirTemp("", "wsfleet-s3-")
		if err != nil {
			c.removeTmp()
			return nil, fmt.Errorf("localcloud: s3 dir: %w", err)
		}
		c.cfg.S3Dir, c.s3Tmp = dir, dir
	}
	s3, err := openS3Store(c.cfg.S3Dir)
	if err != nil {
		c.removeTmp()
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	c.s3 = s3
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		c.s3.close()
		c.removeTmp()
		return nil, fmt.Errorf("localcloud: listen %s: %w", cfg.Listen, err)
	}
	c.ln = ln
	if err := c.startSimListener(); err != nil {
		ln.Close()
		c.s3.close()
		c.removeTmp()
		return nil, fmt.Errorf("localcloud: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serveAPI), ReadHeaderTimeout: 10 * time.Second}
	c.wg.Add(4)
	go func() {
		defer c.wg.Done()
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("api server stopped", "err", err)
		}
	}()
	go func() {
		defer c.wg.Done()
		if err := c.simSrv.Serve(c.simLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("simulated nodes' server stopped", "err", err)
		}
	}()
	go func() {
		defer c.wg.Done()
		c.loop(c.cfg.Tick, c.reconcile)
	}()
	go func() {
		defer c.wg.Done()
		c.healthLoop()
	}()
	c.log.Info("local cloud started", "endpoint", c.Endpoint(), "images", len(c.images))
	return c, nil
}

// Endpoint is the API's base URL, for an SDK's BaseEndpoint or the CLI's
// --endpoint-url.
func (c *Cloud) Endpoint() string { return "http://" + c.ln.Addr().String() }

// LoadBalancerURL is the base URL of the first listener of the named load
// balancer, "" when there is none.
func (c *Cloud) LoadBalancerURL(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.firstListener(name); l != nil {
		return "http://" + l.addr
	}
	return ""
}

// LoadBalancerURLs are the base URLs of every node of the first listener
// of the named load balancer (one without Config.LBNodes), as its DNS name
// resolves to all of them; nil when there is none.
func (c *Cloud) LoadBalancerURLs(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.firstListener(name)
	if l == nil {
		return nil
	}
	var out []string
	for _, a := range l.addrs() {
		out = append(out, "http://"+a)
	}
	return out
}

// firstListener is the named load balancer's listener on the lowest port,
// nil when there is none; the caller holds the cloud's mutex.
func (c *Cloud) firstListener(name string) *listener {
	for _, lb := range c.lbs {
		if lb.name != name {
			continue
		}
		var best *listener
		for _, l := range c.listeners {
			if l.lb == lb && (best == nil || l.port < best.port) {
				best = l
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// Close stops the API, the load balancers and every instance (SIGTERM, then
// SIGKILL after KillGrace).
func (c *Cloud) Close() error {
	c.cancel()
	c.srv.Close()
	c.simSrv.Close()
	c.mu.Lock()
	var procs []*proc
	for _, in := range c.instOrder {
		if in.proc != nil {
			procs = append(procs, in.proc)
		}
		if in.imds != nil {
			in.imds.close()
			in.imds = nil
		}
		in.releaseHold()
	}
	var lbNodes []*lbNode
	for _, l := range c.listeners {
		l.close()
		lbNodes = append(lbNodes, l.nodes...)
	}
	c.mu.Unlock()
	for _, n := range lbNodes {
		<-n.done // close kills a node that has not exited after 5 s
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(c.cfg.KillGrace)
		}()
	}
	wg.Wait()
	c.wg.Wait()
	c.s3.close()
	c.removeTmp()
	return nil
}

func (c *Cloud) removeTmp() {
	if c.tmpDir != "" {
		os.RemoveAll(c.tmpDir)
	}
	if c.s3Tmp != "" {
		os.RemoveAll(c.s3Tmp)
	}
}

// S3Dir is the folder S3's buckets and objects are kept in.
func (c *Cloud) S3Dir() string { return c.cfg.S3Dir }

// LogDir is where process instances write their output.
func (c *Cloud) LogDir() string { return c.cfg.LogDir }

// loop calls f every d until the cloud closes.
func (c *Cloud) loop(d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// serveAPI answers one API call; no input may crash it. A handler that
// panics gets an InternalFailure answer, and the cloud goes on serving.
// S3's REST requests (s3route.go) go to serveS3.
func (c *Cloud) serveAPI(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == PrometheusSDPath {
		// before S3's routing: an unsigned GET looks like one of S3's,
		// and "_wsfleet" can be no bucket's name
		c.servePrometheusSD(w, r)
		return
	}
	if isS3Request(r.Method, r.Host, r.URL.RawQuery, r.Header.Get("Authorization")) {
		c.serveS3(w, r)
		return
	}
	if r.URL.Path == FaultsPath {
		c.serveFaults(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/service/") {
		c.serveRPC(w, r) // RPC v2 CBOR: CloudWatch
		return
	}
	if t := r.Header.Get("X-Amz-Target"); strings.HasPrefix(t, cwService+".") {
		c.serveJSON(w, r, t) // CloudWatch's JSON protocol
		return
	}
	rid := newUUID()
	svc, action := svcASG, ""
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("api handler panicked", "service", svc, "action", action, "panic", v, "stack", string(debug.Stack()))
			writeError(w, svc, rid, &apiError{Status: 500, Code: "InternalFailure", Message: "internal error"})
		}
	}()
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		writeError(w, svc, rid, &apiError{Status: http.StatusMethodNotAllowed, Code: "InvalidAction", Message: "only GET and POST are supported"})
		return
	}
	req, ae := parseRequest(r)
	if req != nil {
		svc = req.Service
	} else if _, s := parseCredential(r.Header.Get("Authorization")); s == svcEC2 || s == svcELB {
		svc = s
	}
	if ae != nil {
		writeError(w, svc, rid, ae)
		return
	}
	action = req.Action
	h, ok := c.actions[req.Service][req.Action]
	if !ok {
		writeError(w, svc, rid, errf("InvalidAction", "the action %s is not valid for this web service", req.Action))
		return
	}
	c.actionCalls.add(req.Service + ":" + req.Action)
	fp := c.faults.plan(req, c.now())
	if fp.delay > 0 {
		select {
		case <-time.After(fp.delay):
		case <-r.Context().Done():
			return
		}
	}
	if fp.err != nil {
		c.log.Debug("api call fault", "service", svc, "action", req.Action, "code", fp.err.Code)
		writeError(w, svc, rid, fp.err)
		return
	}
	if fp.drop == dropBefore {
		dropConnection(w)
		return
	}
	var x xmlw
	ae = c.call(h, req, &x)
	if fp.drop == dropAfter {
		dropConnection(w) // the call had its effect; its answer is lost
		return
	}
	if ae != nil {
		c.log.Debug("api call failed", "service", svc, "action", req.Action, "code", ae.Code)
		writeError(w, svc, rid, ae)
		return
	}
	c.log.Debug("api call", "service", svc, "action", req.Action)
	writeResponse(w, svc, req.Action, rid, &x)
}

// call runs h with c.mu held, and releases the lock however h ends: a
// handler that panics must not leave every later call waiting on it.
func (c *Cloud) call(h handler, req *request, x *xmlw) *apiError {
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.AccessKey != "" {
		c.accessKeys[req.AccessKey]++
	}
	return h(c, req, x)
}

// AccessKeys returns how many calls each access key made, the only use the
// local cloud has for credentials.
func (c *Cloud) AccessKeys() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.accessKeys))
	for k, v := range c.accessKeys {
		out[k] = v
	}
	return out
}

// randHex returns n random hex digits.
func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func newUUID() string {
	h := randHex(32)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

const accountID = "000000000000"

// MetadataEndpoint is the base URL of an instance's metadata service, ""
// when the instance is unknown or terminated. Process instances find it in
// AWS_EC2_METADATA_SERVICE_ENDPOINT; tests and simulated nodes use this.
func (c *Cloud) MetadataEndpoint(instanceID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := c.instances[instanceID]
	if in == nil || in.imds == nil {
		return ""
	}
	return in.imds.url()
}
