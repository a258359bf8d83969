package server

import "time"

// DrainOptions pace a drain: the node leaves the load balancer at once (its
// readiness fails), then releases its clients spread over Window with
// jitter, never faster than MaxRate per second, and closes whatever is
// left when Deadline passes.
type DrainOptions struct {
	Window   time.Duration `json:"window"`
	MaxRate  float64       `json:"max_rate"`
	Deadline time.Duration `json:"deadline"`
}
