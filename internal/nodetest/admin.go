package nodetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wsfleet/nodeapi"
	"wsfleet/server"
)

// Publish posts data to channel through baseURL's /publish with the admin
// token. It tries 50 times, 20ms apart, because the cluster tests publish
// through a proxy while a node drains or dies, and a request the proxy sent
// to that node may fail: what they check is delivery to the clients.
func Publish(baseURL, token, channel string, data any) error {
	body, err := json.Marshal(struct {
		Channel string `json:"channel"`
		Data    any    `json:"data"`
	}{channel, data})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", channel, err)
	}
	var last string
	for range 50 {
		req, _ := http.NewRequest(http.MethodPost, baseURL+"/publish", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("publish %s to %s: 50 tries, the last: %s", body, channel, last)
}

// Drain asks the node to drain with r through its admin API.
func (n *Node) Drain(r nodeapi.DrainRequest) error {
	return n.admin().Drain(context.Background(), n.URL(), r)
}

// Status reads the node's /admin/status; it is an error when the node does
// not answer (a killed node).
func (n *Node) Status() (nodeapi.Status, error) {
	return n.admin().Status(context.Background(), n.URL())
}

// Connections is the node's connection count as its /admin/status reports
// it, or why it could not be read, for a log line.
func (n *Node) Connections() string {
	st, err := n.Status()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strconv.Itoa(st.Connections)
}

func (n *Node) admin() *nodeapi.Client { return &nodeapi.Client{Token: n.token} }

// Metric reads one series (name and labels, as /metrics prints them) from
// the /metrics of the node at baseURL with c; it is 0 when the node does
// not print the series.
func Metric(c *http.Client, baseURL, series string) (float64, error) {
	resp, err := c.Get(baseURL + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metric %s: %w", series, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("metric %s: %w", series, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v, nil
		}
	}
	return 0, nil
}

// Auth is the auth scenarios' setup, the same in every suite: a rules file
// that lets users subscribe to their own channels only, and two tokens for
// the subject alice, one signed with secret and one with another key.
func Auth(t testing.TB, secret string) (rules, good, bad string) {
	t.Helper()
	rules = filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("# users read their own channels\nsubscribe /user/{sub}/**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good, err := server.MintToken([]byte(secret), "alice", time.Hour, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad, err = server.MintToken([]byte("not-the-secret"), "alice", time.Hour, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rules, good, bad
}
