package demo

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"wsfleet/probe"
)

// defaultTailGaps is how many of the longest client gaps a demo keeps
// (the probe's Config.TailGaps) when Config.TailGaps is zero: more than the
// 1 % above the p99 of 2,000 clients' gaps.
const defaultTailGaps = 50

// TailGap is one of the run's longest client gaps, put next to what the
// change was doing when it began: which node the client left and which it
// reached, the phase and the engine's wait, and what moved it (Cause).
type TailGap struct {
	Client int `json:"client"`
	// At is when the gap began on the demo's clock, InChange since the
	// change began (negative before it).
	At       time.Duration `json:"at"`
	InChange time.Duration `json:"in_change"`
	Len      time.Duration `json:"len"`
	// Reconnect is which of the client's reconnects ended it (1: its
	// first); Moves how many of its websockets so far, this one included,
	// changed instance.
	Reconnect int `json:"reconnect"`
	Moves     int `json:"moves"`
	// From and To are the instances the client left and reached (names,
	// "?" when the load balancer's routes do not tell); Tries counts the
	// websockets the load balancer gave it during the gap (more than one:
	// a node took the websocket, then refused the client).
	From  string `json:"from"`
	To    string `json:"to"`
	Tries int    `json:"tries"`
	// Reached is when, in the gap, the load balancer gave the client the
	// websocket it came up on (0 when the routes do not tell): before it,
	// the client's backoff and dial; after it, its connect and the node's
	// take-over of its session.
	Reached time.Duration `json:"reached,omitempty"`
	// Phase and Waiting are the change's phase and the engine's wait when
	// the gap began.
	Phase   string `json:"phase"`
	Waiting string `json:"waiting,omitempty"`
	// Cause is what released the client: "canary share", "drain <phase>",
	// "canary retired", "shed (new node)", "same node", or the phase when
	// the routes do not tell.
	Cause       string `json:"cause"`
	Rehandshake bool   `json:"rehandshake,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// gapNodes is what the demo knows of the clients' nodes, to place a gap:
// each client's worked websockets (hops on the instance it came up on),
// every websocket the load balancer gave it (raw), and the instances'
// names and images.
type gapNodes struct {
	worked   map[int][]hop
	raw      map[int][]hop
	names    map[string]string // id -> name
	images   map[string]string // id -> image
	canaries map[string]bool
}

// tailGaps places the probe's longest gaps (times on the wall clock,
// turned to the demo's by start). changeStart is the change's start on
// the demo's clock, steps the change's timeline, nodes what the routes
// tell (nil: nothing).
func tailGaps(gaps []probe.Gap, start time.Time, changeStart time.Duration, steps []phaseStep, nodes *gapNodes) []TailGap {
	out := make([]TailGap, 0, len(gaps))
	for _, g := range gaps {
		at, up := g.Down.Sub(start), g.Up.Sub(start)
		tg := TailGap{Client: g.Client, At: at, InChange: at - changeStart, Len: g.Len, Reconnect: g.Reconnect,
			From: "?", To: "?", Rehandshake: g.Rehandshake, Reason: g.Reason}
		if i := sort.Search(len(steps), func(i int) bool { return steps[i].At > at }); i > 0 {
			tg.Phase, tg.Waiting = steps[i-1].Phase, steps[i-1].Waiting
		} else if at < changeStart {
			tg.Phase = "before the change"
		}
		from, to := "", ""
		if nodes != nil {
			var toAt time.Duration
			from, to, toAt, tg.Moves = gapHops(nodes.worked[g.Client], at, up)
			if to != "" {
				tg.Reached = toAt - at
			}
			for _, h := range nodes.raw[g.Client] {
				if h.At >= at && h.At <= up {
					tg.Tries++
				}
			}
			if from != "" {
				tg.From = nodes.name(from)
			}
			if to != "" {
				tg.To = nodes.name(to)
			}
		}
		tg.Cause = gapCause(from, to, tg.Phase, tg.Waiting, nodes)
		out = append(out, tg)
	}
	return out
}

// gapHops is the instance a client worked on before a gap that began at
// down (its last worked websocket before), the one whose websocket ended
// the gap (its last worked websocket opened between down and up, and
// when; "" when the routes show none), and how many of its worked websockets up to that
// one changed instance.
func gapHops(hs []hop, down, up time.Duration) (from, to string, toAt time.Duration, moves int) {
	for i, h := range hs {
		if h.At > up {
			break
		}
		if h.At < down {
			from = h.Instance
		} else {
			to, toAt = h.Instance, h.At
		}
		if i > 0 && h.Instance != hs[i-1].Instance {
			moves++
		}
	}
	return from, to, toAt, moves
}

// newGapNodes gathers what places a gap: names are the sampled ones, or
// given ones (replacements and canaries the group's tags left unnamed).
func newGapNodes(worked, raw map[int][]hop, known []knownInstance, given map[string]string, canaries map[string]bool) *gapNodes {
	n := &gapNodes{worked: worked, raw: raw, names: map[string]string{}, images: map[string]string{}, canaries: canaries}
	for _, k := range known {
		n.names[k.ID] = k.Name
		if g := given[k.ID]; g != "" && (k.Name == "" || k.Name == "-") {
			n.names[k.ID] = g
		}
		n.images[k.ID] = k.Image
	}
	return n
}

// name is an instance's name with its kind, since a replacement takes
// over the name of the instance it replaces: "ws-03 (old)", "ws-01 (new)",
// "ws-09 (canary)".
func (n *gapNodes) name(id string) string {
	nm := n.names[id]
	if nm == "" || nm == "-" {
		nm = id
	}
	switch {
	case n.canaries[id]:
		return nm + " (canary)"
	case n.images[id] == oldImage:
		return nm + " (old)"
	case n.images[id] == newImage:
		return nm + " (new)"
	}
	return nm
}

// gapCause names what released a client from the node it left: the
// canary share (an old node during a canary phase), a batch's drain (an
// old node later), the canary's retirement, a shed of a new node (the
// steering or the end balance), a reconnect to the same node; without the
// nodes, the phase and the engine's wait.
func gapCause(from, to, phase, waiting string, nodes *gapNodes) string {
	if nodes == nil || from == "" {
		if waiting != "" {
			return phase + ": " + waitKind(waiting)
		}
		return phase
	}
	switch {
	case from == to:
		return "same node"
	case nodes.canaries[from]:
		return "canary retired"
	case nodes.images[from] == oldImage && strings.HasPrefix(waiting, "canary share"):
		return "canary share"
	case nodes.images[from] == oldImage:
		return "drain " + phase
	case nodes.images[from] == newImage:
		return "shed (new node)"
	}
	return phase
}

// waitKind is a wait's text without its changing counts and names: the
// part before a colon ("canary share: the canary takes its share (24 of
// 228 clients)" -> "canary share"), or its first two words ("draining
// ws-01, ws-02" -> "draining ws-01,").
func waitKind(w string) string {
	if k, _, ok := strings.Cut(w, ":"); ok {
		return k
	}
	f := strings.Fields(w)
	if len(f) > 2 {
		f = f[:2]
	}
	return strings.Join(f, " ")
}

// tailCauses counts the gaps at or above p99 by cause, most first.
func tailCauses(gaps []TailGap, p99 time.Duration) (n int, causes []string) {
	count := map[string]int{}
	for _, g := range gaps {
		if g.Len >= p99 {
			n++
			count[g.Cause]++
		}
	}
	for c := range count {
		causes = append(causes, c)
	}
	sort.Slice(causes, func(i, j int) bool {
		if count[causes[i]] != count[causes[j]] {
			return count[causes[i]] > count[causes[j]]
		}
		return causes[i] < causes[j]
	})
	for i, c := range causes {
		causes[i] = fmt.Sprintf("%s %d", c, count[c])
	}
	return n, causes
}

// writeTailText writes the line of the tail's causes, and the list
// longest gaps.
func (s *Summary) writeTailText(w io.Writer, list int) {
	if len(s.TailGaps) == 0 {
		return
	}
	n, causes := tailCauses(s.TailGaps, s.GapP99)
	if n > 0 {
		fmt.Fprintf(w, "  tail:      %d gaps at or above p99 %s: %s\n", n, rd(s.GapP99), strings.Join(causes, ", "))
	}
	for _, g := range s.TailGaps[:min(list, len(s.TailGaps))] {
		fmt.Fprintf(w, "  gap %-6s client %-5d change %+7.2fs  %s -> %s at +%s  tries %d reconnect %d moves %d  %s  [%s: %s]%s\n",
			rd(g.Len), g.Client, g.InChange.Seconds(), g.From, g.To, rd(g.Reached), g.Tries, g.Reconnect, g.Moves, g.Cause,
			orDash(g.Phase), orDash(g.Waiting), rehandshake(g))
	}
}

func rehandshake(g TailGap) string {
	if g.Rehandshake {
		return " rehandshake"
	}
	return ""
}

// writeTailMarkdown writes the report's table of the longest gaps.
func (s *Summary) writeTailMarkdown(w io.Writer) {
	if len(s.TailGaps) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## The longest gaps\n\nThe %d longest client gaps, with what the change was doing when each began (the phase, the engine's wait) and what moved the client.\n\n", len(s.TailGaps))
	if n, causes := tailCauses(s.TailGaps, s.GapP99); n > 0 {
		fmt.Fprintf(w, "At or above p99 (%s): %s.\n\n", rd(s.GapP99), strings.Join(causes, ", "))
	}
	fmt.Fprintf(w, "| gap | client | began (in change) | from | to | tries | cause | phase: wait |\n|---|---|---|---|---|---|---|---|\n")
	for _, g := range s.TailGaps {
		fmt.Fprintf(w, "| %s | %d | %s (%s) | %s | %s | %d | %s | %s: %s |\n", rd(g.Len), g.Client, rd(g.At), rd(g.InChange),
			g.From, g.To, g.Tries, g.Cause, orDash(g.Phase), orDash(g.Waiting))
	}
}
