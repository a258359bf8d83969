package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"wsfleet/nodeapi"
	"wsfleet/rollout"
)

// probePoint is the chat clients' counters at one moment.
type probePoint struct {
	At         time.Duration
	Reconnects int64
	Sent       int64
	Lost       int64
	Connected  int
}

// seenInstance is what the sampler learnt about one instance.
type seenInstance struct {
	ID, Name, Image string
	IP              string // private address: the load balancer's target
	First, Last     time.Duration
	Gone            bool
}

// sampler reads the group and every node's /admin/status (admin token)
// every SampleEvery, with the chat clients' counters, for the chart, the
// peak reconnect rate and the live progress line.
type sampler struct {
	d *run

	mu      sync.Mutex
	samples []Sample
	points  []probePoint
	seen    map[string]*seenInstance
	order   []string // instance ids in the order first seen

	lastLine  time.Time
	lastPhase string
	stopOnce  sync.Once
	done      chan struct{}
	finished  chan struct{}
}

func newSampler(d *run) *sampler {
	return &sampler{d: d, seen: map[string]*seenInstance{}, done: make(chan struct{}), finished: make(chan struct{})}
}

func (s *sampler) stop() {
	s.stopOnce.Do(func() { close(s.done) })
	<-s.finished
}

func (s *sampler) loop(ctx context.Context) {
	defer close(s.finished)
	t := time.NewTicker(s.d.cfg.SampleEvery)
	defer t.Stop()
	for {
		s.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sampleOnce(ctx context.Context) {
	d := s.d
	ctx, cancel := context.WithTimeout(ctx, max(d.cfg.SampleEvery*2, time.Second))
	defer cancel()
	at := d.since()
	g, err := d.prov.Group(ctx, groupName)
	if err != nil {
		d.log.Debug("sample: group", "err", err)
		return
	}
	type res struct {
		in   rollout.Instance
		st   nodeapi.Status
		err  error
		gone bool
	}
	out := make([]res, len(g.Instances))
	var wg sync.WaitGroup
	for i, in := range g.Instances {
		out[i].in = in
		// A terminating instance still holds connections until its
		// drain or the deregistration delay ends: keep reading it.
		if in.Lifecycle == "Terminated" || in.PrivateIP == "" {
			out[i].gone = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].st, out[i].err = d.nodes.Status(ctx, in)
		}()
	}
	wg.Wait()

	smp := Sample{At: at}
	s.mu.Lock()
	present := map[string]bool{}
	for _, r := range out {
		id := r.in.ID
		present[id] = true
		si := s.seen[id]
		if si == nil {
			if r.gone || r.err != nil {
				continue // never seen up: nothing to draw
			}
			si = &seenInstance{ID: id, First: at}
			s.seen[id] = si
			s.order = append(s.order, id)
		}
		if si.Gone {
			continue
		}
		if r.in.Name != "" {
			si.Name = r.in.Name
		}
		if r.in.PrivateIP != "" {
			si.IP = r.in.PrivateIP
		}
		si.Image = r.in.Image
		if r.err == nil && r.st.Image != "" {
			si.Image = r.st.Image
		}
		si.Last = at
		conns := 0
		if r.err == nil {
			conns = r.st.Connections
		}
		if r.gone {
			si.Gone = true
		}
		smp.Instances = append(smp.Instances, InstanceSample{ID: id, Name: orDash(si.Name), Image: si.Image, Connections: conns, Gone: si.Gone, Unread: r.err != nil})
	}
	// Instances the group no longer lists end at zero, once.
	for id, si := range s.seen {
		if !present[id] && !si.Gone {
			si.Gone = true
			smp.Instances = append(smp.Instances, InstanceSample{ID: id, Name: orDash(si.Name), Image: si.Image, Gone: true})
		}
	}
	s.samples = append(s.samples, smp)
	var pp probePoint
	if p := d.probe; p != nil {
		r := p.Snapshot()
		// The point's own time: reading the nodes took a while.
		pp = probePoint{At: d.since(), Reconnects: r.Reconnects, Sent: r.Sent, Lost: r.Lost, Connected: r.ClientsConnected}
		s.points = append(s.points, pp)
	}
	s.mu.Unlock()
	s.progress(smp, pp)
}

// progress shows one line: redrawn in place on a terminal, printed every
// ProgressEvery (and at each phase change) otherwise.
func (s *sampler) progress(smp Sample, pp probePoint) {
	d := s.d
	w := d.cfg.Progress
	if w == nil {
		return
	}
	phase, waiting := d.phase.get()
	var oldN, newN, oldC, newC int
	for _, in := range smp.Instances {
		if in.Image == newImage {
			newN++
			newC += in.Connections
		} else {
			oldN++
			oldC += in.Connections
		}
	}
	what := phase
	if waiting != "" {
		what += ": " + waiting
	}
	if r := []rune(what); len(r) > 38 {
		what = string(r[:37]) + "…"
	}
	line := fmt.Sprintf("%5.0fs  %-38s  clients on old %d (%d nodes), new %d (%d)  sent %d lost %d  reconnects %d",
		smp.At.Seconds(), what, oldC, oldN, newC, newN, pp.Sent, pp.Lost, pp.Reconnects)
	d.lineMu.Lock()
	defer d.lineMu.Unlock()
	if d.cfg.TTY {
		io.WriteString(w, "\r\x1b[K"+line)
		d.lineOpen = true
		return
	}
	now := d.cfg.Now()
	if phase != s.lastPhase || now.Sub(s.lastLine) >= d.cfg.ProgressEvery {
		s.lastPhase, s.lastLine = phase, now
		io.WriteString(w, line+"\n")
	}
}

// result returns the samples and the derived figures once sampling ended.
func (s *sampler) result() ([]Sample, []Replacement, float64, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rate, at := peakRate(s.points, time.Second)
	return s.samples, s.replacements(), rate, at
}

// instances returns every instance sampled, in the order first seen.
func (s *sampler) instances() []knownInstance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]knownInstance, 0, len(s.order))
	for _, id := range s.order {
		si := s.seen[id]
		out = append(out, knownInstance{ID: si.ID, Name: si.Name, Image: si.Image, IP: si.IP, First: si.First})
	}
	return out
}

// rename gives the samples' unnamed instances ("-") the names given.
func (s *sampler) rename(names map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.samples {
		ins := s.samples[i].Instances
		for j := range ins {
			if n, ok := names[ins[j].ID]; ok && (ins[j].Name == "" || ins[j].Name == "-") {
				ins[j].Name = n
			}
		}
	}
}

// replacements pairs, per name, the old-image instances that carried it
// with the new-image ones that carry it now.
func (s *sampler) replacements() []Replacement {
	byName := map[string]*Replacement{}
	var names []string
	for _, id := range s.order {
		si := s.seen[id]
		if si.Name == "" {
			continue
		}
		r := byName[si.Name]
		if r == nil {
			r = &Replacement{Name: si.Name}
			byName[si.Name] = r
			names = append(names, si.Name)
		}
		if si.Image == newImage {
			r.New = append(r.New, id)
		} else {
			r.Old = append(r.Old, id)
		}
	}
	sort.Strings(names)
	out := make([]Replacement, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out
}

// peakRate is the highest rate of reconnects over any window of about w
// between two points, and when it was.
func peakRate(points []probePoint, w time.Duration) (float64, time.Duration) {
	var best float64
	var at time.Duration
	j := 0
	for i := range points {
		for j < i && points[i].At-points[j+1].At >= w {
			j++
		}
		dt := points[i].At - points[j].At
		if dt < w*3/4 {
			continue
		}
		r := float64(points[i].Reconnects-points[j].Reconnects) / dt.Seconds()
		if r > best {
			best, at = r, points[j].At
		}
	}
	return best, at
}

// Replacement is one instance name and the instances that carried it.
type Replacement struct {
	Name string   `json:"name"`
	Old  []string `json:"old,omitempty"`
	New  []string `json:"new,omitempty"`
}

func (r Replacement) String() string {
	return fmt.Sprintf("%s: %s -> %s", r.Name, orDash(strings.Join(r.Old, ",")), orDash(strings.Join(r.New, ",")))
}
