package localcloud

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ELBv2 target health checks.

// healthLoop runs target health checks: each target on its group's
// interval, HealthyThresholdCount passes in a row to become healthy,
// UnhealthyThresholdCount failures to become unhealthy.
func (c *Cloud) healthLoop() {
	tick := time.Second
	if c.cfg.HealthCheckInterval > 0 && c.cfg.HealthCheckInterval/2 < tick {
		tick = max(c.cfg.HealthCheckInterval/2, 10*time.Millisecond)
	}
	sem := make(chan struct{}, 32)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	defer wg.Wait()
	c.loop(tick, func() {
		type job struct {
			tg      *targetGroup
			t       *target
			url     string
			sim     bool
			simCode int // the status a simulated node answers
			timeout time.Duration
			match   func(int) bool
		}
		var jobs []job
		c.mu.Lock()
		now := c.now()
		for _, tg := range c.targetGrps {
			interval := time.Duration(tg.hcInterval) * time.Second
			timeout := time.Duration(tg.hcTimeout) * time.Second
			if c.cfg.HealthCheckInterval > 0 {
				interval = c.cfg.HealthCheckInterval
				timeout = min(timeout, interval)
			}
			match, _ := parseMatcher(tg.matcher)
			for _, t := range tg.targets {
				if t.checking || t.state == "draining" || now.Before(t.nextCheck) {
					continue
				}
				t.nextCheck = now.Add(interval)
				in := c.instances[t.id]
				if in == nil {
					continue
				}
				if !tg.hcEnabled {
					t.state, t.reason = "unavailable", "Target.HealthCheckDisabled"
					continue
				}
				if in.state == statePending {
					continue // still registering
				}
				port := strconv.Itoa(t.port)
				if tg.hcPort != "traffic-port" {
					port = tg.hcPort
				}
				t.checking = true
				jobs = append(jobs, job{tg: tg, t: t, url: "http://" + net.JoinHostPort(in.ip, port) + tg.hcPath,
					sim: in.simulated, simCode: c.simCheck(in, tg.hcPath, now), timeout: timeout, match: match})
			}
		}
		c.mu.Unlock()
		for _, j := range jobs {
			if j.sim {
				// As a probe of a process node: no answer, or an answer
				// the matcher refuses (a draining node's /readyz).
				switch {
				case j.simCode == 0:
					c.recordCheck(j.tg, j.t, false, "Target.FailedHealthChecks")
				case j.match == nil || !j.match(j.simCode):
					c.recordCheck(j.tg, j.t, false, "Target.ResponseCodeMismatch")
				default:
					c.recordCheck(j.tg, j.t, true, "")
				}
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-c.ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ok, reason := probe(c.ctx, client, j.url, j.timeout, j.match)
				c.recordCheck(j.tg, j.t, ok, reason)
			}()
		}
	})
}

// probe runs one HTTP health check.
func probe(ctx context.Context, client *http.Client, url string, timeout time.Duration, match func(int) bool) (ok bool, reason string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "Target.FailedHealthChecks"
	}
	req.Header.Set("User-Agent", "ELB-HealthChecker/2.0")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, "Target.Timeout"
		}
		return false, "Target.FailedHealthChecks"
	}
	resp.Body.Close()
	if match == nil || !match(resp.StatusCode) {
		return false, "Target.ResponseCodeMismatch"
	}
	return true, ""
}

func (c *Cloud) recordCheck(tg *targetGroup, t *target, ok bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t.checking = false
	if t.state == "draining" {
		return
	}
	if ok {
		t.okRun++
		t.failRun = 0
		if t.state != "healthy" && t.okRun >= tg.healthyN {
			t.state, t.reason = "healthy", ""
		} else if t.state == "initial" {
			t.reason = "Elb.InitialHealthChecking"
		}
		return
	}
	t.failRun++
	t.okRun = 0
	if t.state != "unhealthy" && t.failRun >= tg.unhealthyN {
		t.state = "unhealthy"
	}
	if t.state != "initial" {
		t.reason = reason
	} else {
		t.reason = "Elb.InitialHealthChecking"
	}
}
