package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"wsfleet/localcloud"
)

// promServer is a Prometheus run beside the demo (Config.Prometheus):
// Debian's prometheus, scraping every node each second through the local
// cloud's service discovery list, as the canary tests run it.
type promServer struct {
	cmd  *exec.Cmd
	url  string
	log  *os.File
	done chan struct{}
}

// startPrometheus starts Prometheus with its config and data under dir;
// it fails naming the package when prometheus is not installed.
func startPrometheus(ctx context.Context, dir, cloudEndpoint string) (*promServer, error) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, errors.New("--prometheus: prometheus is not installed (Debian's package prometheus; scripts/test-deps.sh installs it)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("prometheus directory: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ws\n    http_sd_configs:\n      - url: %s%s\n        refresh_interval: 1s\n",
		cloudEndpoint, localcloud.PrometheusSDPath)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("prometheus config: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, fmt.Errorf("prometheus log: %w", err)
	}
	p := &promServer{url: fmt.Sprintf("http://127.0.0.1:%d", port), log: logf, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			logf.Close()
			return nil, fmt.Errorf("prometheus exited at start; see %s", logf.Name())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("prometheus not ready within 30s; see %s", logf.Name())
		}
	}
}

// stop ends Prometheus: SIGTERM, SIGKILL after 10s.
func (p *promServer) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.log.Close()
}
