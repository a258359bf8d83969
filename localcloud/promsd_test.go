package localcloud

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// TestPrometheusSDPath: the path answers Prometheus's HTTP SD list (a
// JSON list, empty with no process instances), not S3's NoSuchBucket for
// an unsigned GET. The e2e canary test scrapes real nodes through it.
func TestPrometheusSDPath(t *testing.T) {
	c, _ := startCloud(t, fastConfig())
	resp, err := http.Get(c.Endpoint() + PrometheusSDPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var groups []SDTargetGroup
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &groups) != nil || groups == nil {
		t.Errorf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
