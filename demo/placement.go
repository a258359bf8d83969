package demo

import (
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"wsfleet/examples"
	"wsfleet/rollout"
)

// clientParam is the query parameter the demo's chat clients carry in
// their URL (probe.Config.ClientParam): the load balancer's responses
// tell, per client, which node each of its websockets landed on.
const clientParam = "demo_client"

// Placement is where the chat clients' connections went during the
// change, the figures issue 16's "Done when" judges: the canary's share
// through its bake, moves per client, the end balance and the reconnect
// rate against the plan's budget.
type Placement struct {
	CanaryShare *CanaryShare `json:"canary_share,omitempty"`
	Moves       MoveFigures  `json:"moves"`
	EndBalance  *Balance     `json:"end_balance,omitempty"`
	// ReconnectBudget is the plan's drain.max_rate (reconnects per
	// second across the fleet), to read the summary's peak against; 0
	// when the plan leaves it to the nodes.
	ReconnectBudget float64 `json:"reconnect_budget"`
	// ReconnectsPerClient is the clients' own reconnects over the clients
	// (the issue: at most 1.15, about 1.25 before it); a reconnect to the
	// same node counts here, not in Moves.
	ReconnectsPerClient float64 `json:"reconnects_per_client"`
}

// CanaryShare is how much of its fair share of the fleet's clients the
// canary held, sampled through its bake: at each sample, the canary's
// connections over (the fleet's connections / the live instances, old and
// canaries), 1 meaning exactly its fair share. With several canaries the
// emptiest one counts.
type CanaryShare struct {
	Canaries []string      `json:"canaries"` // names (ids)
	Window   string        `json:"window"`   // "bake", or "canary phase" when no bake was seen
	From     time.Duration `json:"from"`
	To       time.Duration `json:"to"`
	Samples  int           `json:"samples"`
	Min      float64       `json:"min"`
	Mean     float64       `json:"mean"`
	// Points are the samples over the whole canary phase (share.svg).
	Points    []SharePoint `json:"-"`
	canaryIDs []string
}

// SharePoint is the canary's share at one sample.
type SharePoint struct {
	At     time.Duration
	Share  float64 // canary connections / fair share
	Canary int     // the emptiest canary's connections
	Fair   float64 // fleet connections / live instances
}

// MoveFigures count, per chat client, how often it moved: a move is a
// websocket that landed on another node than the client's previous one
// (a reconnect to the same node is no move).
type MoveFigures struct {
	// Clients is how many chat clients got a websocket through the load
	// balancer (Unrouted never did, or the demo could not tell where).
	Clients  int `json:"clients"`
	Unrouted int `json:"unrouted,omitempty"`
	// Histogram counts clients by moves: 0, 1, 2, 3 or more.
	Histogram [4]int `json:"histogram"`
	// CanaryHistogram is the same over the canary share's clients only.
	CanaryHistogram [4]int  `json:"canary_histogram"`
	Total           int     `json:"total"`
	PerClient       float64 `json:"per_client"`
	// CanaryShareClients were moved by the canary share: their first
	// move landed on a canary instance during the canary phase. Each
	// may move once more (when the canary is retired).
	CanaryShareClients int `json:"canary_share_clients"`
	// Outside counts moves outside the canary share: every move but the
	// canary share's own (one per canary share client); OutsidePerClient
	// is it over Clients (the issue wants at most 1.0).
	Outside          int     `json:"outside"`
	OutsidePerClient float64 `json:"outside_per_client"`
	// OverAllowance are clients that moved more than allowed: once, twice
	// for the canary share's clients.
	OverAllowance int `json:"over_allowance"`
	// Connections are the websockets counted; UnknownTargets those that
	// landed on an address no sampled instance had.
	Connections    int `json:"connections"`
	UnknownTargets int `json:"unknown_targets,omitempty"`
}

// Balance is the connections per new instance at the end against their
// mean; MaxDeviation is the largest |connections - mean| / mean in %.
type Balance struct {
	At           time.Duration   `json:"at"`
	Instances    []InstanceCount `json:"instances"`
	Mean         float64         `json:"mean"`
	MaxDeviation float64         `json:"max_deviation_pct"`
}

// InstanceCount is one instance's connections.
type InstanceCount struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	Connections int    `json:"connections"`
}

// routeHop is one of a client's websockets as the load balancer routed
// it: when, and to which target address.
type routeHop struct {
	At     time.Duration
	Target string
}

// routeLog records the demo's chat clients' websockets from the load
// balancer's responses (localcloud.Config.OnProxied).
type routeLog struct {
	clock func(at time.Time) time.Duration // the demo's time of at

	mu   sync.Mutex
	hops map[int][]routeHop // by client index
}

func newRouteLog(clock func(at time.Time) time.Duration) *routeLog {
	return &routeLog{clock: clock, hops: map[int][]routeHop{}}
}

// record keeps a websocket that a target accepted (101) for a request that
// names a demo client; everything else (publishes, the checks' own probe
// clients, refused upgrades) is not a client's connection.
func (l *routeLog) record(at time.Time, target string, req *http.Request, status int) {
	if status != http.StatusSwitchingProtocols || req == nil || req.URL == nil {
		return
	}
	c, err := strconv.Atoi(req.URL.Query().Get(clientParam))
	if err != nil || c < 0 {
		return
	}
	t := l.clock(at)
	l.mu.Lock()
	l.hops[c] = append(l.hops[c], routeHop{At: t, Target: target})
	l.mu.Unlock()
}

// snapshot copies the routes.
func (l *routeLog) snapshot() map[int][]routeHop {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int][]routeHop, len(l.hops))
	for c, hs := range l.hops {
		out[c] = append([]routeHop(nil), hs...)
	}
	return out
}

// knownInstance is an instance the sampler saw, with its private address.
type knownInstance struct {
	ID, Name, Image, IP string
	First               time.Duration
}

// hop is one of a client's websockets, on the instance it landed on.
type hop struct {
	At       time.Duration
	Instance string
}

// resolveHops turns target addresses into instance ids. An address a
// later instance took over belongs, at a given time, to the instance
// first seen last before it (with slack: a node can take connections a
// moment before the sampler first reads it). Hops to an unknown address
// are dropped and counted.
func resolveHops(routes map[int][]routeHop, known []knownInstance) (map[int][]hop, int) {
	const slack = 3 * time.Second
	byIP := map[string][]knownInstance{}
	for _, k := range known {
		if k.IP != "" {
			byIP[k.IP] = append(byIP[k.IP], k)
		}
	}
	for _, ks := range byIP {
		sort.Slice(ks, func(i, j int) bool { return ks[i].First < ks[j].First })
	}
	unknown := 0
	out := make(map[int][]hop, len(routes))
	for c, hs := range routes {
		for _, h := range hs {
			host, _, err := net.SplitHostPort(h.Target)
			if err != nil {
				host = h.Target
			}
			ks := byIP[host]
			if len(ks) == 0 {
				unknown++
				continue
			}
			id := ks[0].ID
			for _, k := range ks {
				if k.First <= h.At+slack {
					id = k.ID
				}
			}
			out[c] = append(out[c], hop{At: h.At, Instance: id})
		}
	}
	return out, unknown
}

// workedRoutes keeps the websockets a client came up on (ups: when it did,
// from the client itself): a node may accept a websocket and then refuse
// its handshake (a draining or cordoned node), and the client, which
// then tries again elsewhere, never was its client. A websocket worked
// when the client came up after it and before its next one.
func workedRoutes(hs []routeHop, ups []time.Duration) []routeHop {
	var out []routeHop
	for i, h := range hs {
		end := time.Duration(math.MaxInt64)
		if i+1 < len(hs) {
			end = hs[i+1].At
		}
		j := sort.Search(len(ups), func(k int) bool { return ups[k] >= h.At })
		if j < len(ups) && ups[j] < end {
			out = append(out, h)
		}
	}
	return out
}

// countMoves is how often a client's websockets changed instance.
func countMoves(hs []hop) int {
	n := 0
	for i := 1; i < len(hs); i++ {
		if hs[i].Instance != hs[i-1].Instance {
			n++
		}
	}
	return n
}

// firstMove is the websocket of a client's first move.
func firstMove(hs []hop) (hop, bool) {
	for i := 1; i < len(hs); i++ {
		if hs[i].Instance != hs[i-1].Instance {
			return hs[i], true
		}
	}
	return hop{}, false
}

// window is a span of the demo's clock, ends included.
type window struct{ From, To time.Duration }

func (w window) has(t time.Duration) bool { return t >= w.From && t <= w.To }

// moveFigures counts moves over the clients' paths. clients is how many
// chat clients the demo ran; canary tells the canary instances; canaryPhase
// are the canary phases' windows: a client whose first move landed on a
// canary inside one was moved by the canary share.
func moveFigures(paths map[int][]hop, clients int, canary func(id string) bool, canaryPhase []window) MoveFigures {
	var f MoveFigures
	for _, hs := range paths {
		if len(hs) == 0 {
			continue
		}
		f.Clients++
		f.Connections += len(hs)
		n := countMoves(hs)
		f.Total += n
		b := min(n, 3)
		f.Histogram[b]++
		allowed := 1
		share := false
		if h, ok := firstMove(hs); ok && canary(h.Instance) {
			for _, w := range canaryPhase {
				if w.has(h.At) {
					share = true
				}
			}
		}
		if share {
			f.CanaryShareClients++
			f.CanaryHistogram[b]++
			allowed = 2
			f.Outside += n - 1
		} else {
			f.Outside += n
		}
		if n > allowed {
			f.OverAllowance++
		}
	}
	f.Unrouted = max(clients-f.Clients, 0)
	if f.Clients > 0 {
		f.PerClient = float64(f.Total) / float64(f.Clients)
		f.OutsidePerClient = float64(f.Outside) / float64(f.Clients)
	}
	return f
}

// canaryShare measures the canaries' share of the fleet's clients over the
// samples: Points over all of span, Min and Mean over measure (the bake).
// Nil when no canary was ever sampled in span.
func canaryShare(samples []Sample, canaries map[string]bool, span, measure window, measureName string) *CanaryShare {
	if len(canaries) == 0 {
		return nil
	}
	cs := &CanaryShare{Window: measureName, From: measure.From, To: measure.To, Min: math.Inf(1)}
	names := map[string]string{}
	sum := 0.0
	for _, s := range samples {
		if !span.has(s.At) {
			continue
		}
		total, live := 0, 0
		emptiest, seen := math.MaxInt, 0
		unread := false
		for _, in := range s.Instances {
			if in.Gone {
				continue
			}
			unread = unread || in.Unread
			total += in.Connections
			live++
			if canaries[in.ID] {
				seen++
				emptiest = min(emptiest, in.Connections)
				names[in.ID] = in.Name
			}
		}
		if seen == 0 || total == 0 || unread {
			continue // a node that did not answer makes the sample's figures unknown
		}
		if seen < len(canaries) {
			emptiest = 0 // a canary not sampled here holds nothing
		}
		fair := float64(total) / float64(live)
		p := SharePoint{At: s.At, Share: float64(emptiest) / fair, Canary: emptiest, Fair: fair}
		cs.Points = append(cs.Points, p)
		if measure.has(s.At) {
			cs.Samples++
			sum += p.Share
			cs.Min = min(cs.Min, p.Share)
		}
	}
	if len(cs.Points) == 0 {
		return nil
	}
	if cs.Samples == 0 {
		cs.Min = 0
	} else {
		cs.Mean = sum / float64(cs.Samples)
	}
	ids := make([]string, 0, len(canaries))
	for id := range canaries {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	cs.canaryIDs = ids
	for _, id := range ids {
		cs.Canaries = append(cs.Canaries, orDash(names[id])+" ("+id+")")
	}
	return cs
}

// endBalance is the balance of the new-image instances in the last sample
// where every one of them answered.
func endBalance(samples []Sample, image string) *Balance {
	i := len(samples) - 1
	for ; i >= 0; i-- {
		read := true
		for _, in := range samples[i].Instances {
			if in.Image == image && !in.Gone && in.Unread {
				read = false
			}
		}
		if read {
			break
		}
	}
	if i < 0 {
		return nil
	}
	last := samples[i]
	b := &Balance{At: last.At}
	sum := 0
	for _, in := range last.Instances {
		if in.Gone || in.Image != image {
			continue
		}
		b.Instances = append(b.Instances, InstanceCount{Name: in.Name, ID: in.ID, Connections: in.Connections})
		sum += in.Connections
	}
	if len(b.Instances) == 0 {
		return nil
	}
	sort.Slice(b.Instances, func(i, j int) bool {
		if b.Instances[i].Name != b.Instances[j].Name {
			return b.Instances[i].Name < b.Instances[j].Name
		}
		return b.Instances[i].ID < b.Instances[j].ID
	})
	b.Mean = float64(sum) / float64(len(b.Instances))
	if b.Mean == 0 {
		return b // nobody left to balance
	}
	for _, in := range b.Instances {
		b.MaxDeviation = max(b.MaxDeviation, math.Abs(float64(in.Connections)-b.Mean)/b.Mean*100)
	}
	return b
}

// placement measures the run's placement figures from the sampler's
// samples, the load balancer's routes and the plan: its canary phases
// (those with canary instances) and its drain.max_rate.
func (d *run) placement(phases []PhaseSummary, replaced []Replacement) Placement {
	var pl Placement
	canaryPhase := map[string]bool{}
	if plan, err := rollout.ParsePlan(examples.NewAMIPlan); err == nil {
		pl.ReconnectBudget = plan.Drain.MaxRate
		for _, ph := range plan.Phases {
			if ph.Canary > 0 {
				canaryPhase[ph.Name] = true
			}
		}
	}
	var wins []window
	for _, ph := range phases {
		if canaryPhase[ph.Name] {
			wins = append(wins, window{From: ph.Start, To: ph.End})
		}
	}
	if d.samp == nil {
		return pl
	}
	known := d.samp.instances()
	canaries := canaryInstances(known, wins)
	d.samp.rename(instanceNames(replaced, canaries))
	samples, _, _, _ := d.samp.result()
	routes := d.routes.snapshot()
	raw, _ := resolveHops(routes, known)
	for c, hs := range routes {
		var ups []time.Duration
		if c < len(d.ups) {
			ups = d.ups[c]
		}
		routes[c] = workedRoutes(hs, ups)
	}
	paths, unknown := resolveHops(routes, known)
	pl.Moves = moveFigures(paths, d.cfg.Clients, func(id string) bool { return canaries[id] }, wins)
	pl.Moves.UnknownTargets = unknown
	d.gapAt = newGapNodes(paths, raw, known, instanceNames(replaced, canaries), canaries)
	if len(wins) > 0 {
		measure, name := bakeSpan(d.phase.bakeWindows(), canaryPhase, wins[0])
		pl.CanaryShare = canaryShare(samples, canaries, wins[0], measure, name)
	}
	pl.EndBalance = endBalance(samples, newImage)
	return pl
}

// bakeSpan is the window the canary's share is measured over: from the
// start of the first canary phase's bake to the end of its last (the
// engine's waiting text may change in between), or the whole canary phase
// when no bake was seen.
func bakeSpan(bakes []bakeWindow, canaryPhase map[string]bool, phase window) (window, string) {
	var span window
	found := false
	for _, b := range bakes {
		if !canaryPhase[b.Phase] || !phase.has(b.Start) {
			continue
		}
		if !found {
			span.From = b.Start
			found = true
		}
		span.To = max(span.To, b.End)
	}
	if !found {
		return phase, "canary phase"
	}
	return span, "bake"
}

// instanceNames names the instances the group's Name tags left unnamed:
// a replacement by the name it took over (the engine's record), a canary
// "canary".
func instanceNames(replaced []Replacement, canaries map[string]bool) map[string]string {
	out := map[string]string{}
	for id := range canaries {
		out[id] = "canary"
	}
	for _, r := range replaced {
		for _, id := range r.New {
			out[id] = r.Name
		}
	}
	return out
}

// canaryInstances are the new-image instances first seen during a canary
// phase.
func canaryInstances(known []knownInstance, canaryPhase []window) map[string]bool {
	out := map[string]bool{}
	for _, k := range known {
		if k.Image != newImage {
			continue
		}
		for _, w := range canaryPhase {
			if w.has(k.First) {
				out[k.ID] = true
			}
		}
	}
	return out
}
