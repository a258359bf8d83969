package demo

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"wsfleet/localcloud"
)

// TestPrometheusBesideTheDemo starts the demo's Prometheus against a local
// cloud: it is ready, its loaded config discovers the cloud's nodes
// through the cloud's service discovery list, and stop ends it.
func TestPrometheusBesideTheDemo(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("prometheus is missing: run scripts/test-deps.sh (Debian's package prometheus)")
	}
	c, err := localcloud.Start(context.Background(), localcloud.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := startPrometheus(context.Background(), t.TempDir(), c.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(p.url + "/api/v1/status/config")
	if err != nil {
		p.stop()
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), c.Endpoint()+localcloud.PrometheusSDPath) {
		t.Errorf("config %s", body)
	}
	if err := p.stop(); err != nil {
		t.Error(err)
	}
	select {
	case <-p.done:
	default:
		t.Error("prometheus still runs after stop")
	}
}
