package localcloud

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Instances as processes: each gets a private IP of its own on loopback
// (127.0.1.1 upwards; Linux routes all of 127/8 to lo), so every node
// listens on the same port as on EC2, and its own metadata service on that
// IP, so the node's IMDS client needs no way to say who it is.

// imdsPort is where every instance's metadata service listens on its
// private IP. It is fixed, and outside Linux's ephemeral range (32768–60999)
// so that no outgoing connection holds it, because it is also the address's
// lease: a local cloud takes an IP only if it can bind this port on it, and
// the metadata service holds it until the instance is terminated. Another
// local cloud on this machine (tests run packages in parallel) therefore
// never picks an address in use, even after the instance's own process
// exited and freed the node port (a crashing image), which once let a
// second cloud's healthy node answer the first cloud's health checks.
const imdsPort = 65431

// allocIP returns a free private IP and its lease (the metadata service's
// listener). For process instances it also binds the node port on it and
// returns that listener, held until the process starts, so that nothing
// else takes the port meanwhile.
func (c *Cloud) allocIP(probe bool) (ip string, lease, hold net.Listener, _ *apiError) {
	const first, last = 1<<8 + 1, 255<<8 + 254 // 127.0.1.1 … 127.0.255.254
	for tries := 0; tries < last-first; tries++ {
		n := first + (c.ipNext+tries)%(last-first)
		if n&0xff == 0 || n&0xff == 255 {
			continue
		}
		ip := fmt.Sprintf("127.0.%d.%d", n>>8, n&0xff)
		if c.ipInUse[ip] {
			continue
		}
		lease, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(imdsPort)))
		if err != nil {
			continue
		}
		var hold net.Listener
		if probe {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(c.cfg.NodePort)))
			if err != nil {
				lease.Close()
				continue
			}
			hold = ln
		}
		c.ipNext = n - first + 1
		c.ipInUse[ip] = true
		return ip, lease, hold, nil
	}
	return "", nil, nil, &apiError{Status: 500, Code: "InsufficientInstanceCapacity", Message: "no free private IP address"}
}

// launch creates a pending instance; it boots on a later reconcile.
func (c *Cloud) launch(spec launchSpec, reservation string) (*instance, *apiError) {
	im := c.images[spec.imageID]
	if im == nil {
		return nil, errf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", spec.imageID)
	}
	if c.alive >= c.cfg.MaxInstances {
		return nil, errf("InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of %d allows", c.alive+1, c.cfg.MaxInstances)
	}
	ip, lease, hold, e := c.allocIP(!im.Simulated)
	if e != nil {
		return nil, e
	}
	now := c.now()
	boot := c.cfg.BootTime
	if im.Simulated {
		boot = c.cfg.SimulatedBootTime
	}
	az := spec.az
	if az == "" {
		az = c.cfg.Region + "a"
	}
	it := spec.instanceType
	if it == "" {
		it = "t3.micro"
	}
	in := &instance{
		id: newInstanceID(), imageID: spec.imageID, instanceType: it, ip: ip, az: az,
		reservation: reservation, keyName: spec.keyName, launched: now, bootDone: now.Add(boot),
		state: statePending, tags: map[string]string{}, userData: spec.userData,
		simulated: im.Simulated, hold: hold,
		hiddenUntil: c.faults.staleUntil("instance", now),
	}
	for k, v := range spec.tags {
		in.tags[k] = v
	}
	in.lcName = spec.lcName
	if spec.lt != nil {
		in.ltID, in.ltVersion = spec.lt.id, spec.ltVersion
		in.tags["aws:ec2launchtemplate:id"] = spec.lt.id
		in.tags["aws:ec2launchtemplate:version"] = strconv.Itoa(spec.ltVersion)
	}
	if im.Simulated && c.cfg.SimulatedFailureRate > 0 && rand.Float64() < c.cfg.SimulatedFailureRate {
		in.simFail = true
	}
	if im.Simulated {
		// Its node is served by the cloud itself; the tag says where
		// (unless the launch set one of its own).
		in.sim = c.newSimNode(in.id, spec.userData)
		if _, ok := in.tags[AdminTag]; !ok {
			in.tags[AdminTag] = c.simURL(in.id)
		}
	}
	in.imds = c.startIMDS(in, lease)
	c.instances[in.id] = in
	c.instOrder = append(c.instOrder, in)
	c.alive++
	c.log.Info("instance launched", "instance", in.id, "image", in.imageID, "ip", ip)
	return in, nil
}

// tickInstances moves instances through EC2's states: pending instances
// whose boot time has passed start running (and their process starts).
func (c *Cloud) tickInstances(now time.Time) {
	for _, in := range c.instOrder {
		switch in.state {
		case statePending:
			if now.Before(in.bootDone) {
				continue
			}
			in.state = stateRunning
			if !in.simulated {
				if err := c.startProcess(in); err != nil {
					// The instance runs but its software does not: health
					// checks fail, as on EC2 when a node's service dies.
					c.log.Error("instance process failed to start", "instance", in.id, "err", err)
				}
			}
		case stateShuttingDown:
			if in.proc == nil {
				c.finishTerminate(in)
			}
		}
	}
	// Terminated instances stay visible for an hour, as on EC2.
	if len(c.instOrder) > 0 && c.instOrder[0].state == stateTerminated && now.Sub(c.instOrder[0].terminatedAt) > time.Hour {
		kept := c.instOrder[:0]
		for _, in := range c.instOrder {
			if in.state == stateTerminated && now.Sub(in.terminatedAt) > time.Hour {
				delete(c.instances, in.id)
				continue
			}
			kept = append(kept, in)
		}
		c.instOrder = kept
	}
}

// terminate starts shutting an instance down: its process gets SIGTERM,
// then SIGKILL after KillGrace. Idempotent.
func (c *Cloud) terminate(in *instance, reason string) {
	if !in.alive() {
		return
	}
	in.state = stateShuttingDown
	in.stateReason = reason
	c.alive--
	if p := in.proc; p != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			p.stop(c.cfg.KillGrace)
			c.mu.Lock()
			in.proc = nil
			c.finishTerminate(in)
			c.mu.Unlock()
		}()
	}
	c.log.Info("instance shutting down", "instance", in.id, "reason", reason)
}

func (c *Cloud) finishTerminate(in *instance) {
	if in.state == stateTerminated {
		return
	}
	in.state = stateTerminated
	in.terminatedAt = c.now()
	in.releaseHold()
	if in.imds != nil {
		in.imds.close()
		in.imds = nil
	}
	delete(c.ipInUse, in.ip)
	c.log.Info("instance terminated", "instance", in.id)
}

// proc is an instance's process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startProcess runs the image's command as a ws node configured from this
// instance's metadata.
func (c *Cloud) startProcess(in *instance) error {
	im := c.images[in.imageID]
	f, err := os.Create(filepath.Join(c.cfg.LogDir, in.id+".log"))
	if err != nil {
		return fmt.Errorf("start %s: log: %w", in.id, err)
	}
	cmd := exec.Command(im.Command, append([]string{"serve", "--aws", "--aws-lifecycle"}, im.Args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(),
		"AWS_EC2_METADATA_SERVICE_ENDPOINT="+in.imds.url(),
		"AWS_EC2_METADATA_DISABLED=false",
		"AWS_ENDPOINT_URL="+c.Endpoint(),
		"AWS_REGION="+c.cfg.Region,
		"AWS_ACCESS_KEY_ID=local-"+in.id,
		"AWS_SECRET_ACCESS_KEY=local",
	)
	cmd.Env = append(cmd.Env, c.cfg.Env...)
	setProcAttr(cmd)
	in.releaseHold() // the node binds it now
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", in.id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: f}
	go func() {
		err := cmd.Wait()
		f.Close()
		close(p.done)
		c.log.Info("instance process exited", "instance", in.id, "err", err)
	}()
	in.proc = p
	c.log.Info("instance process started", "instance", in.id, "pid", cmd.Process.Pid)
	return nil
}

// stop sends SIGTERM, waits up to grace, then SIGKILL, and waits for exit.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	if grace < 0 {
		p.cmd.Process.Kill()
		<-p.done
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// imdsServer is one instance's metadata service.
type imdsServer struct {
	ln  net.Listener
	srv *http.Server

	mu     sync.Mutex
	tokens map[string]time.Time
}

func (s *imdsServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *imdsServer) close() { s.srv.Close() }

// startIMDS serves in's metadata on its private IP, on ln: the address's
// lease from allocIP, held until the server is closed.
func (c *Cloud) startIMDS(in *instance, ln net.Listener) *imdsServer {
	s := &imdsServer{ln: ln, tokens: map[string]time.Time{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serveIMDS(s, in, w, r) }), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
	return s
}

// serveIMDS answers the instance metadata paths a ws node reads, with the
// IMDSv2 token flow (a PUT for a session token, then GETs carrying it). As
// with HttpTokens=optional, a GET without a token is answered; one with an
// unknown or expired token gets 401.
func (c *Cloud) serveIMDS(s *imdsServer, in *instance, w http.ResponseWriter, r *http.Request) {
	now := c.now()
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "invalid X-aws-ec2-metadata-token-ttl-seconds", http.StatusBadRequest)
			return
		}
		tok := base64.RawURLEncoding.EncodeToString([]byte(randHex(40)))
		s.mu.Lock()
		for t, exp := range s.tokens {
			if now.After(exp) {
				delete(s.tokens, t)
			}
		}
		s.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
		s.mu.Unlock()
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(tok))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if tok := r.Header.Get("X-aws-ec2-metadata-token"); tok != "" {
		s.mu.Lock()
		exp, ok := s.tokens[tok]
		s.mu.Unlock()
		if !ok || now.After(exp) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	body, ok := c.metadata(in, r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(body))
}

// metadata returns the value at an IMDS path.
func (c *Cloud) metadata(in *instance, path string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch path {
	case "/latest/user-data", "/latest/user-data/":
		if in.userData == "" {
			return "", false
		}
		b, err := base64.StdEncoding.DecodeString(in.userData)
		if err != nil {
			return "", false
		}
		return string(b), true
	case "/latest/dynamic/instance-identity/document":
		doc, _ := json.MarshalIndent(map[string]any{
			"accountId": accountID, "architecture": "x86_64", "availabilityZone": in.az,
			"imageId": in.imageID, "instanceId": in.id, "instanceType": in.instanceType,
			"pendingTime": in.launched.UTC().Format(time.RFC3339), "privateIp": in.ip,
			"region": c.cfg.Region, "version": "2017-09-30",
		}, "", "  ")
		return string(doc), true
	}
	rest, ok := strings.CutPrefix(path, "/latest/meta-data")
	if !ok {
		return "", false
	}
	rest = strings.TrimPrefix(rest, "/")
	switch rest {
	case "":
		items := []string{"ami-id", "hostname", "instance-id", "instance-type", "local-hostname", "local-ipv4", "placement/", "tags/"}
		if in.asg != nil {
			items = append(items, "autoscaling/")
		}
		return strings.Join(items, "\n"), true
	case "ami-id":
		return in.imageID, true
	case "instance-id":
		return in.id, true
	case "instance-type":
		return in.instanceType, true
	case "local-ipv4":
		return in.ip, true
	case "hostname", "local-hostname":
		return privateDNS(in.ip), true
	case "placement/", "placement":
		return "availability-zone\nregion", true
	case "placement/availability-zone":
		return in.az, true
	case "placement/region":
		return c.cfg.Region, true
	case "autoscaling/", "autoscaling":
		if in.asg == nil {
			return "", false
		}
		return "target-lifecycle-state", true
	case "autoscaling/target-lifecycle-state":
		if in.asg == nil {
			return "", false
		}
		return targetLifecycleState(in.asg.lifecycle), true
	case "tags/", "tags":
		return "instance", true
	case "tags/instance", "tags/instance/":
		return strings.Join(sortedKeys(in.tags), "\n"), true
	}
	if k, ok := strings.CutPrefix(rest, "tags/instance/"); ok {
		v, ok := in.tags[k]
		return v, ok
	}
	return "", false
}

// targetLifecycleState is what IMDS reports: the state an instance is
// moving to, not the one it is in. AWS documents the values Detached,
// InService, Standby, Terminated and Warmed:*; an instance being
// terminated reports Terminated from the moment it starts Terminating.
func targetLifecycleState(lifecycle string) string {
	switch {
	case strings.HasPrefix(lifecycle, "Terminat"):
		return "Terminated"
	case lifecycle == lcStandby || lifecycle == lcEnteringStandby:
		return "Standby"
	case strings.HasPrefix(lifecycle, "Detach"):
		return "Detached"
	}
	return "InService"
}

// releaseHold closes the node-port reservation of a process instance.
func (in *instance) releaseHold() {
	if in.hold != nil {
		in.hold.Close()
		in.hold = nil
	}
}
