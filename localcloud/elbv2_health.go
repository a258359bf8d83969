package localcloud

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ELBv2 target health checks, as "Health checks for Application Load
// Balancer target groups" describes them: each target is checked every
// HealthCheckIntervalSeconds of its group; UnhealthyThresholdCount failed
// checks in a row make it unhealthy, HealthyThresholdCount passed ones in
// a row healthy again. A check that gets a status the matcher refuses (a
// cordoned node's 503 from /readyz) fails with Target.ResponseCodeMismatch.

// healthJob is one health check that is due.
type healthJob struct {
	tg      *targetGroup
	t       *target
	url     string
	sim     bool
	simCode int // the status a simulated node answers
	timeout time.Duration
	match   func(int) bool
}

// healthLoop runs the due target health checks: simulated nodes' at once,
// process nodes' as HTTP GETs, at most 32 at a time.
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
		c.mu.Lock()
		jobs := c.dueChecks(c.now())
		c.mu.Unlock()
		for _, j := range jobs {
			if j.sim {
				// As a probe of a process node: no answer, or an answer
				// the matcher refuses (a draining node's /readyz).
				switch {
				case j.simCode == 0:
					c.recordCheck(j.tg, j.t, false, "Target.FailedHealthChecks", 0)
				case j.match == nil || !j.match(j.simCode):
					c.recordCheck(j.tg, j.t, false, "Target.ResponseCodeMismatch", j.simCode)
				default:
					c.recordCheck(j.tg, j.t, true, "", j.simCode)
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
				ok, reason, code := probe(c.ctx, client, j.url, j.timeout, j.match)
				c.recordCheck(j.tg, j.t, ok, reason, code)
			}()
		}
	})
}

// checkTiming is the interval and timeout of tg's checks: the group's
// HealthCheckIntervalSeconds and HealthCheckTimeoutSeconds, unless
// Config.HealthCheckInterval replaces the interval (the timeout is then
// at most that interval).
func (c *Cloud) checkTiming(tg *targetGroup) (interval, timeout time.Duration) {
	interval = time.Duration(tg.hcInterval) * time.Second
	timeout = time.Duration(tg.hcTimeout) * time.Second
	if c.cfg.HealthCheckInterval > 0 {
		interval = c.cfg.HealthCheckInterval
		timeout = min(timeout, interval)
	}
	return interval, timeout
}

// dueChecks returns the checks due at now and schedules each target's
// next one an interval later; with health checks turned off a target is
// unavailable instead. The caller holds c.mu.
func (c *Cloud) dueChecks(now time.Time) []healthJob {
	var jobs []healthJob
	for _, tg := range c.targetGrps {
		interval, timeout := c.checkTiming(tg)
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
			j := healthJob{tg: tg, t: t, url: "http://" + net.JoinHostPort(in.ip, port) + tg.hcPath,
				sim: in.simulated, timeout: timeout, match: match}
			if in.simulated {
				j.simCode = c.simCheck(in, tg.hcPath, now)
			}
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// probe runs one HTTP health check; code is the status the target
// answered (0 for none).
func probe(ctx context.Context, client *http.Client, url string, timeout time.Duration, match func(int) bool) (ok bool, reason string, code int) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "Target.FailedHealthChecks", 0
	}
	req.Header.Set("User-Agent", "ELB-HealthChecker/2.0")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, "Target.Timeout", 0
		}
		return false, "Target.FailedHealthChecks", 0
	}
	resp.Body.Close()
	if match == nil || !match(resp.StatusCode) {
		return false, "Target.ResponseCodeMismatch", resp.StatusCode
	}
	return true, "", resp.StatusCode
}

// recordCheck counts one check of t: HealthyThresholdCount passes in a row
// make it healthy, UnhealthyThresholdCount failures in a row unhealthy
// (until then it keeps its state); code is the status a refused answer
// had, which DescribeTargetHealth reports.
func (c *Cloud) recordCheck(tg *targetGroup, t *target, ok bool, reason string, code int) {
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
			t.state, t.reason, t.code = "healthy", "", 0
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
		t.reason, t.code = reason, code
	} else {
		t.reason = "Elb.InitialHealthChecking"
	}
}
