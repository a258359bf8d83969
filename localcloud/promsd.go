package localcloud

import (
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strconv"
)

// PrometheusSDPath serves the running process instances as a Prometheus
// HTTP service discovery list (http_sd_configs): one target group per
// instance, its node's address and labels naming the instance, its image,
// its Name tag and its group. A Prometheus started beside the local cloud
// (the canary tests, `wsfleet demo --prometheus`) scrapes every node
// through it as instances come and go.
const PrometheusSDPath = "/_wsfleet/prometheus-targets"

// SDTargetGroup is one entry of Prometheus's HTTP SD answer.
type SDTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// PrometheusTargets lists what PrometheusSDPath serves.
func (c *Cloud) PrometheusTargets() []SDTargetGroup {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []SDTargetGroup{} // never null: Prometheus wants a list
	for _, in := range c.instOrder {
		if in.state != stateRunning || in.simulated || in.proc == nil {
			continue
		}
		labels := map[string]string{"instance_id": in.id, "image": in.imageID, "private_ip": in.ip}
		if n := in.tags["Name"]; n != "" {
			labels["name"] = n
		}
		if in.asg != nil {
			labels["group"] = in.asg.g.name
		}
		out = append(out, SDTargetGroup{Targets: []string{net.JoinHostPort(in.ip, strconv.Itoa(c.cfg.NodePort))}, Labels: labels})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Labels["instance_id"] < out[j].Labels["instance_id"] })
	return out
}

// servePrometheusSD answers PrometheusSDPath, to loopback callers only as
// the faults path does.
func (c *Cloud) servePrometheusSD(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		http.Error(w, "the service discovery path answers loopback callers only", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c.PrometheusTargets())
}
