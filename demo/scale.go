package demo

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"time"

	"wsfleet/rollout"
)

// The plan's drain at scale. The seed's plan (examples/gitter-ws-new-ami.yaml)
// paces every drain at drain.max_rate reconnects per second over the fleet
// (200, within the 250/s that the take-over benchmark supports for one
// receiving one-core node, docs/bench.md) and gives each drained node
// drain.deadline (30 s, inside the target group's 30 s deregistration
// delay) before the node closes what is left. At 2,000 clients the
// largest drain (the last batch: four old nodes and the retired canary,
// 5/9 of the clients with placement) takes 1,111/200 = 6 s; at 100,000 it
// takes 55,556/200 = 278 s, and a 30 s deadline would close 50,000
// clients at once, the reconnect storm the budget is there to prevent. So
// when the largest drain at max_rate outlasts the deadline, the demo
// raises drain.deadline (and the target group's deregistration delay,
// which must not be shorter) to that drain's time plus a quarter, rounded
// up to 10 s; everything else, max_rate and every wait, stays the plan's.

// largestDrainShare is the part of the clients the seed plan's largest
// drain releases: the second half's four old nodes and the canary retired
// with them, of the nine nodes the clients are on after the canary phase.
const largestDrainShare = 5.0 / 9

// scaledDrainDeadline is the drain deadline for clients under the plan
// (plan's own when it suffices; see above).
func scaledDrainDeadline(plan []byte, clients int) (time.Duration, error) {
	p, err := rollout.ParsePlan(plan)
	if err != nil {
		return 0, fmt.Errorf("plan: %w", err)
	}
	rate := p.Drain.MaxRate
	if rate <= 0 {
		rate = rollout.DefaultDrainMaxRate
	}
	need := time.Duration(float64(clients) * largestDrainShare / rate * float64(time.Second))
	if need <= p.Drain.Deadline.D() {
		return p.Drain.Deadline.D(), nil
	}
	tens := math.Ceil(need.Seconds() * 1.25 / 10)
	return time.Duration(tens*10) * time.Second, nil
}

var drainDeadlineRE = regexp.MustCompile(`(?m)^(drain: \{.*deadline: )([0-9a-z]+)(\}.*)$`)

// withDrainDeadline is the plan with drain.deadline set to d.
func withDrainDeadline(plan []byte, d time.Duration) ([]byte, error) {
	if !drainDeadlineRE.Match(plan) {
		return nil, fmt.Errorf("plan: no \"drain: {…, deadline: …}\" line to set the deadline at scale in")
	}
	return drainDeadlineRE.ReplaceAll(plan, []byte("${1}"+d.String()+"${3}")), nil
}

// scalePlan is planForDemo's output with the drain deadline for clients.
func scalePlan(plan []byte, clients int) ([]byte, error) {
	d, err := scaledDrainDeadline(plan, clients)
	if err != nil {
		return nil, err
	}
	p, _ := rollout.ParsePlan(plan)
	if d == p.Drain.Deadline.D() {
		return plan, nil
	}
	out, err := withDrainDeadline(plan, d)
	if err != nil {
		return nil, err
	}
	if q, err := rollout.ParsePlan(out); err != nil || q.Drain.Deadline.D() != d || !bytes.Contains(out, []byte("max_rate")) {
		return nil, fmt.Errorf("plan: setting drain.deadline %s: %v", d, err)
	}
	return out, nil
}
