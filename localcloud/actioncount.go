package localcloud

import (
	"maps"
	"sync"
)

// actionCounter counts the API calls the cloud received, by
// "service:Action", whatever their answer (a throttled or failed call
// counts: it is load all the same). The rollout benchmark reads it to
// report calls per instance by action as the cloud saw them.
type actionCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *actionCounter) add(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[key]++
}

// ActionCalls returns how many calls of each action the API received,
// by "service:Action" (service as the request signed it: ec2,
// autoscaling, elasticloadbalancing), answered or not.
func (c *Cloud) ActionCalls() map[string]int {
	c.actionCalls.mu.Lock()
	defer c.actionCalls.mu.Unlock()
	return maps.Clone(c.actionCalls.n)
}
