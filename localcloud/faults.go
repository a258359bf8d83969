package localcloud

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults is what the cloud does wrong on purpose, as AWS does it now and
// then: it throttles, answers 5xx, answers slowly, drops connections, and
// reads lag behind writes. Each fault has a rate (a probability per API
// call, 0 to 1); Seed seeds the one random source every fault draws from,
// so that a run with the same calls in the same order meets the same
// faults. The zero value injects nothing. docs/cloud.md "Faults" lists
// each fault, its error document and its source in AWS's documentation.
type Faults struct {
	// Seed seeds the faults' random source.
	Seed uint64
	// Buckets turns on AWS's request token buckets (bucketFor): a call
	// that finds its bucket empty is throttled, whatever the rates.
	Buckets bool
	// Throttle is the rate of calls throttled at random besides the
	// buckets: RequestLimitExceeded (EC2, HTTP 503) or Throttling
	// (Auto Scaling and ELBv2, HTTP 400).
	Throttle float64
	// Errors is the rate of 5xx answers: InternalError (500) or
	// ServiceUnavailable (503) on EC2, InternalFailure (500) or
	// ServiceUnavailable (503) on Auto Scaling and ELBv2. The call has no
	// effect.
	Errors float64
	// Slow is the rate of calls answered after SlowDelay.
	Slow      float64
	SlowDelay time.Duration
	// Drop is the rate of calls whose connection is closed without an
	// answer: half of them before the call has its effect, half after
	// (the effect happened; the caller cannot know).
	Drop float64
	// Stale is the rate of writes that reads see late, by up to
	// StaleDelay: a launched instance is absent from DescribeInstances
	// (InvalidInstanceID.NotFound when named), DescribeAutoScalingGroups
	// and DescribeAutoScalingInstances; a tag written with CreateTags,
	// DeleteTags, CreateOrUpdateTags or DeleteTags (Auto Scaling) reads
	// back with its old value.
	Stale      float64
	StaleDelay time.Duration
}

// faultsJSON is Faults on the admin call's wire: durations as Go
// duration strings ("2s").
type faultsJSON struct {
	Seed       uint64  `json:"seed"`
	Buckets    bool    `json:"buckets"`
	Throttle   float64 `json:"throttle"`
	Errors     float64 `json:"errors"`
	Slow       float64 `json:"slow"`
	SlowDelay  string  `json:"slow_delay,omitempty"`
	Drop       float64 `json:"drop"`
	Stale      float64 `json:"stale"`
	StaleDelay string  `json:"stale_delay,omitempty"`
}

// MarshalJSON writes the admin call's form.
func (f Faults) MarshalJSON() ([]byte, error) {
	j := faultsJSON{Seed: f.Seed, Buckets: f.Buckets, Throttle: f.Throttle, Errors: f.Errors, Slow: f.Slow, Drop: f.Drop, Stale: f.Stale}
	if f.SlowDelay > 0 {
		j.SlowDelay = f.SlowDelay.String()
	}
	if f.StaleDelay > 0 {
		j.StaleDelay = f.StaleDelay.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the admin call's form; unknown keys are refused so
// that a misspelt fault is not silently ignored.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	out := Faults{Seed: j.Seed, Buckets: j.Buckets, Throttle: j.Throttle, Errors: j.Errors, Slow: j.Slow, Drop: j.Drop, Stale: j.Stale}
	for _, d := range []struct {
		s   string
		dst *time.Duration
		key string
	}{{j.SlowDelay, &out.SlowDelay, "slow_delay"}, {j.StaleDelay, &out.StaleDelay, "stale_delay"}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("%s: %w", d.key, err)
		}
		*d.dst = v
	}
	*f = out
	return nil
}

// Validate reports a rate outside [0, 1] or a negative or huge delay.
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"throttle (--fault-throttle)", f.Throttle}, {"errors (--fault-5xx)", f.Errors}, {"slow (--fault-slow)", f.Slow}, {"drop (--fault-drop)", f.Drop}, {"stale (--fault-stale)", f.Stale}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("fault rate %s = %v: must be between 0 and 1", r.name, r.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"slow_delay (--fault-slow-delay)", f.SlowDelay}, {"stale_delay (--fault-stale-delay)", f.StaleDelay}} {
		if d.v < 0 || d.v > 10*time.Minute {
			return fmt.Errorf("fault delay %s = %s: must be between 0 and 10m", d.name, d.v)
		}
	}
	return nil
}

// bucketSpec is a token bucket's size and refill rate per second.
type bucketSpec struct {
	Size   float64
	Refill float64
}

// The request token buckets AWS documents. EC2 ("Request throttling for
// the Amazon EC2 API", EC2 Developer Guide: its tables "Request token
// bucket sizes and refill rates" and "Resource token bucket sizes and
// refill rates") gives each API its own bucket, sized by its category or,
// for the uncategorized actions, by its own row; RunInstances and
// TerminateInstances also draw one token per instance from a resource
// bucket. ELBv2 ("Request throttling for the Elastic Load Balancing API")
// shares one bucket among its non-mutating actions. Auto Scaling
// publishes no sizes; the local cloud gives it ELBv2's, and ELBv2's
// mutating actions a bucket of 20 refilled at 5 a second (see
// docs/cloud.md: these two are not AWS's published figures).
var (
	ec2NonMutating = bucketSpec{100, 20}
	ec2Unfiltered  = bucketSpec{50, 10} // ec2UnfilteredActions with no ids, filters or page size
	ec2Mutating    = bucketSpec{50, 5}
	// ec2Uncategorized are the actions the local cloud answers that
	// EC2's "Uncategorized actions" table sizes by themselves.
	ec2Uncategorized = map[string]bucketSpec{
		"CreateTags":                  {100, 10},
		"DeleteTags":                  {100, 10},
		"CreateLaunchTemplateVersion": {100, 5},
		"ModifyLaunchTemplate":        {100, 5},
		"RunInstances":                {5, 2},
		"TerminateInstances":          {100, 5},
	}
	// ec2Resource are the resource token buckets: one token per
	// instance the call launches or terminates.
	ec2Resource = map[string]bucketSpec{
		"RunInstances":       {1000, 2},
		"TerminateInstances": {1000, 20},
	}
	// ec2UnfilteredActions are the Describe actions the table puts in
	// the smaller bucket when called unfiltered and unpaginated (of its
	// list, the ones the local cloud answers).
	ec2UnfilteredActions = map[string]bool{"DescribeInstances": true}
	queryReads           = bucketSpec{40, 10}
	queryWrites          = bucketSpec{20, 5}
)

// bucketFor names the bucket a call draws from and its size.
func bucketFor(req *request) (string, bucketSpec) {
	read := strings.HasPrefix(req.Action, "Describe")
	switch req.Service {
	case svcEC2:
		if spec, ok := ec2Uncategorized[req.Action]; ok {
			return "ec2:" + req.Action, spec
		}
		switch {
		case read && ec2UnfilteredActions[req.Action] && unfiltered(req.Params):
			return "ec2:" + req.Action + ":unfiltered", ec2Unfiltered
		case read:
			return "ec2:" + req.Action, ec2NonMutating
		}
		return "ec2:" + req.Action, ec2Mutating
	}
	if read {
		return req.Service + ":non-mutating", queryReads
	}
	return req.Service + ":mutating", queryWrites
}

// resourceCost is the resource bucket a call also draws from, and how
// many tokens (instances) it takes: RunInstances its MaxCount,
// TerminateInstances its instance ids. ok is false for other calls.
func resourceCost(req *request) (name string, spec bucketSpec, cost float64, ok bool) {
	if req.Service != svcEC2 {
		return "", bucketSpec{}, 0, false
	}
	spec, ok = ec2Resource[req.Action]
	if !ok {
		return "", bucketSpec{}, 0, false
	}
	switch req.Action {
	case "RunInstances":
		n, err := strconv.Atoi(req.Params["MaxCount"])
		cost = float64(max(n, 1))
		if err != nil {
			cost = 1
		}
	case "TerminateInstances":
		cost = float64(max(len(req.Params.list("InstanceId")), 1))
	}
	return "ec2:" + req.Action + ":resource", spec, cost, true
}

// unfiltered reports an EC2 Describe call that names nothing and asks for
// no page size: AWS's "unfiltered and unpaginated" category.
func unfiltered(p params) bool {
	for k := range p {
		if k == "MaxResults" || strings.HasPrefix(k, "Filter.") || strings.Contains(k, "Id.") || strings.HasSuffix(k, "Id") || strings.Contains(k, "Name.") {
			return false
		}
	}
	return true
}

type bucket struct {
	tokens float64
	at     time.Time
}

// take takes one token, refilled for the time since the last take.
func (b *bucket) take(s bucketSpec, now time.Time) bool {
	return b.takeN(s, 1, now)
}

// takeN takes n tokens, or none when fewer are left.
func (b *bucket) takeN(s bucketSpec, n float64, now time.Time) bool {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(s.Size, b.tokens+d.Seconds()*s.Refill)
	}
	b.at = now
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// dropWhen is when a dropped call loses its connection.
type dropWhen int

const (
	noDrop dropWhen = iota
	dropBefore
	dropAfter
)

// faultPlan is what happens to one call.
type faultPlan struct {
	delay time.Duration
	err   *apiError
	drop  dropWhen
}

// injector draws the faults. It has its own lock: a slow answer must not
// hold the cloud's.
type injector struct {
	mu      sync.Mutex
	cfg     Faults
	rng     *rand.Rand
	buckets map[string]*bucket
	counts  map[string]int // by "kind service"
}

func newInjector(f Faults) *injector {
	return &injector{cfg: f, rng: rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15)), buckets: map[string]*bucket{}, counts: map[string]int{}}
}

// set replaces the faults and reseeds; the buckets start full again.
func (f *injector) set(cfg Faults) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	f.rng = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	f.buckets = map[string]*bucket{}
}

func (f *injector) get() (Faults, map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	counts := make(map[string]int, len(f.counts))
	for k, v := range f.counts {
		counts[k] = v
	}
	return f.cfg, counts
}

// hit draws true with probability rate. It always draws, so that one
// fault's rate does not shift the sequence the others see.
func (f *injector) hit(rate float64) bool {
	return f.rng.Float64() < rate
}

// plan decides the faults of one call.
func (f *injector) plan(req *request, now time.Time) faultPlan {
	f.mu.Lock()
	defer f.mu.Unlock()
	var p faultPlan
	c := f.cfg
	throttled, failed, slow, drop, after := f.hit(c.Throttle), f.hit(c.Errors), f.hit(c.Slow), f.hit(c.Drop), f.hit(0.5)
	if c.Buckets {
		name, spec := bucketFor(req)
		b := f.buckets[name]
		if b == nil {
			b = &bucket{tokens: spec.Size, at: now}
			f.buckets[name] = b
		}
		if !b.take(spec, now) {
			throttled = true
		}
		// The resource bucket is drawn only by a call its request
		// bucket let through.
		if rname, rspec, cost, ok := resourceCost(req); ok && !throttled {
			rb := f.buckets[rname]
			if rb == nil {
				rb = &bucket{tokens: rspec.Size, at: now}
				f.buckets[rname] = rb
			}
			if !rb.takeN(rspec, cost, now) {
				throttled = true
			}
		}
	}
	if slow && c.SlowDelay > 0 {
		p.delay = c.SlowDelay
		f.counts["slow "+req.Service]++
	}
	switch {
	case throttled:
		p.err = throttleError(req.Service)
		f.counts["throttle "+req.Service]++
	case failed:
		p.err = serverError(req.Service, f.rng.IntN(2) == 0)
		f.counts["5xx "+req.Service]++
	case drop:
		p.drop = dropBefore
		if after {
			p.drop = dropAfter
		}
		f.counts["drop "+req.Service]++
	}
	return p
}

// staleUntil is when a write made now becomes visible to reads: now for
// most writes, up to StaleDelay later for the Stale share of them.
func (f *injector) staleUntil(kind string, now time.Time) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg.Stale <= 0 || f.cfg.StaleDelay <= 0 || !f.hit(f.cfg.Stale) {
		return time.Time{}
	}
	f.counts["stale "+kind]++
	return now.Add(time.Duration(f.rng.Int64N(int64(f.cfg.StaleDelay)) + 1))
}

// throttleError is the service's answer to a throttled call, as AWS
// sends it: EC2's RequestLimitExceeded with 503, the Query services'
// Throttling with 400.
func throttleError(svc string) *apiError {
	if svc == svcEC2 {
		return &apiError{Status: http.StatusServiceUnavailable, Code: "RequestLimitExceeded", Message: "Request limit exceeded."}
	}
	return &apiError{Status: http.StatusBadRequest, Code: "Throttling", Message: "Rate exceeded"}
}

// serverError is one of the service's 5xx answers.
func serverError(svc string, internal bool) *apiError {
	switch {
	case internal && svc == svcEC2:
		return &apiError{Status: http.StatusInternalServerError, Code: "InternalError", Message: "An internal error has occurred"}
	case internal:
		return &apiError{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: "The request processing has failed because of an unknown error, exception or failure."}
	}
	return &apiError{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Message: "The request has failed due to a temporary failure of the server."}
}

// dropConnection closes the call's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset, as a dead load balancer gives
			}
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http closes the connection
}

// FaultsPath is the admin path of the API endpoint that reads (GET) and
// sets (POST, a JSON Faults) the faults at run time. It answers loopback
// callers only.
const FaultsPath = "/_wsfleet/faults"

// faultsStatus is the admin call's answer.
type faultsStatus struct {
	Faults Faults         `json:"faults"`
	Counts map[string]int `json:"counts"`
}

// serveFaults answers the admin path.
func (c *Cloud) serveFaults(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		http.Error(w, "the faults admin path answers loopback callers only", http.StatusForbidden)
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var f Faults
		if err := json.Unmarshal(body, &f); err != nil {
			http.Error(w, "faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := f.Validate(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.SetFaults(f)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		return
	}
	f, counts := c.faults.get()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(faultsStatus{Faults: f, Counts: counts})
}

// SetFaults replaces the faults at run time (the admin call does the
// same). Reads already made late by an earlier setting stay late.
func (c *Cloud) SetFaults(f Faults) {
	c.faults.set(f)
	c.log.Info("faults set", "throttle", f.Throttle, "errors", f.Errors, "slow", f.Slow, "drop", f.Drop, "stale", f.Stale, "stale_delay", f.StaleDelay, "buckets", f.Buckets, "seed", f.Seed)
}

// FaultCounts reports the faults injected so far, by "kind service"
// (throttle, 5xx, slow, drop; stale by what was written late).
func (c *Cloud) FaultCounts() map[string]int {
	_, counts := c.faults.get()
	return counts
}

// staleTag is the value readers still see of a tag written late.
type staleTag struct {
	value     string
	propagate bool
	had       bool
	until     time.Time
}

// noteTagWrite records, before a tag of resource id is written, the
// value readers keep seeing until the write becomes visible. A tag
// already pending keeps its first old value.
func (c *Cloud) noteTagWrite(id, key string, old staleTag) {
	c.expireStale()
	k := id + "\x00" + key
	if p, ok := c.staleTags[k]; ok && c.now().Before(p.until) {
		return
	}
	until := c.faults.staleUntil("tag", c.now())
	if until.IsZero() {
		delete(c.staleTags, k)
		return
	}
	old.until = until
	c.staleTags[k] = old
}

// visibleTags is an instance's (or launch template's) tags as reads see
// them now.
func (c *Cloud) visibleTags(id string, tags map[string]string) map[string]string {
	if len(c.staleTags) == 0 {
		return tags
	}
	var out map[string]string
	now := c.now()
	for k, st := range c.staleTags {
		res, key, _ := strings.Cut(k, "\x00")
		if res != id || !now.Before(st.until) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(tags))
			for tk, tv := range tags {
				out[tk] = tv
			}
		}
		if st.had {
			out[key] = st.value
		} else {
			delete(out, key)
		}
	}
	if out == nil {
		return tags
	}
	return out
}

// visibleASGTags is a group's tags as reads see them now.
func (c *Cloud) visibleASGTags(g *group) map[string]asgTag {
	if len(c.staleTags) == 0 {
		return g.tags
	}
	var out map[string]asgTag
	now := c.now()
	for k, st := range c.staleTags {
		res, key, _ := strings.Cut(k, "\x00")
		if res != "asg:"+g.name || !now.Before(st.until) {
			continue
		}
		if out == nil {
			out = make(map[string]asgTag, len(g.tags))
			for tk, tv := range g.tags {
				out[tk] = tv
			}
		}
		if st.had {
			out[key] = asgTag{value: st.value, propagate: st.propagate}
		} else {
			delete(out, key)
		}
	}
	if out == nil {
		return g.tags
	}
	return out
}

// visible reports whether reads see the instance yet.
func (c *Cloud) visible(in *instance) bool {
	return in.hiddenUntil.IsZero() || !c.now().Before(in.hiddenUntil)
}

// visibleInstances is ins without those reads do not see yet.
func (c *Cloud) visibleInstances(ins []*instance) []*instance {
	for i, in := range ins {
		if !c.visible(in) {
			out := append([]*instance(nil), ins[:i]...)
			for _, in := range ins[i+1:] {
				if c.visible(in) {
					out = append(out, in)
				}
			}
			return out
		}
	}
	return ins
}

// expireStale forgets tag writes that every read now sees.
func (c *Cloud) expireStale() {
	now := c.now()
	for k, st := range c.staleTags {
		if !now.Before(st.until) {
			delete(c.staleTags, k)
		}
	}
}
