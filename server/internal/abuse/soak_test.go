package abuse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"wsfleet/internal/nodetest"
)

var suite = &nodetest.Suite{Name: "abuse", AdminToken: "abuse-admin"}

func TestMain(m *testing.M) { suite.Main(m) }

// rssBytes reads VmRSS of process pid from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to read the node's memory from: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// post sends one long-polling request and decodes the replies.
func post(c *http.Client, url string, body any) ([]map[string]any, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	resp, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var out []map[string]any
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// The node's memory stays bounded while 1,000 sessions each ask to replay
// a full history three times as long as the queue limit: what one session
// may have queued is at most queue-limit messages, so the node's growth is
// bounded by sessions × queue-limit × message size (plus what a session
// costs without a queue). Before the limit applied to replays, each
// session queued the whole history, three times that bound.
//
// The sessions are long-polling ones that never poll: what they queue
// stays queued until they time out, as a client that subscribes and goes
// away leaves it.
func TestRSSBoundedUnderMassReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: starts a node and 1,000 sessions")
	}
	const (
		sessions   = 1000
		queueLimit = 100
		history    = 3 * queueLimit
		dataBytes  = 400
		perSession = 16 << 10 // a session, its subscription and their share of the maps, generously
		workers    = 8
	)
	node := suite.Start(t, "--queue-limit", strconv.Itoa(queueLimit), "--history-max-msgs", strconv.Itoa(history),
		"--timeout", "60s", "--drain-window", "0s")
	data := strings.Repeat("x", dataBytes)
	for sent := 0; sent < history; sent += 50 {
		batch := make([]map[string]any, 50)
		for i := range batch {
			batch[i] = map[string]any{"channel": "/room", "data": data}
		}
		b, _ := json.Marshal(batch)
		req, _ := http.NewRequest(http.MethodPost, node.URL()+"/publish", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+suite.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish: %s", resp.Status)
		}
	}
	// a delivered message as queued: the payload with its channel and ext.seq
	msgBytes := int64(dataBytes + len(`{"channel":"/room","data":"","ext":{"seq":18446744073709551615}}`))
	before := rssBytes(t, node.PID())

	bayeux := node.URL() + "/bayeux"
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		gone   int
		errs   []error
		starts = make(chan struct{}, sessions)
	)
	for range sessions {
		starts <- struct{}{}
	}
	close(starts)
	began := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for range starts {
				hs, err := post(c, bayeux, []map[string]any{{"channel": "/meta/handshake", "version": "1.0",
					"supportedConnectionTypes": []string{"long-polling"}}})
				if err == nil && (len(hs) != 1 || hs[0]["successful"] != true) {
					err = fmt.Errorf("handshake %v", hs)
				}
				var sub []map[string]any
				if err == nil {
					sub, err = post(c, bayeux, []map[string]any{{"channel": "/meta/subscribe", "clientId": hs[0]["clientId"],
						"subscription": "/room", "ext": map[string]any{"since": 0}}})
				}
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case len(sub) == 1 && sub[0]["successful"] == true:
					if ext, _ := sub[0]["ext"].(map[string]any); ext["replay"] == "gone" {
						gone++
					}
				default:
					errs = append(errs, fmt.Errorf("subscribe %v", sub))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d sessions failed, the first: %v", len(errs), sessions, errs[0])
	}
	after := rssBytes(t, node.PID())
	bound := sessions * (queueLimit*msgBytes + perSession)
	growth := after - before
	t.Logf("%d sessions replaying %d messages of %d bytes (queue limit %d) in %v: RSS %d MiB -> %d MiB, growth %d MiB, bound %d MiB; %d answered replay gone",
		sessions, history, msgBytes, queueLimit, time.Since(began).Round(time.Millisecond), before>>20, after>>20, growth>>20, bound>>20, gone)
	if growth > bound {
		t.Fatalf("RSS grew %d MiB with %d sessions replaying, over the bound of %d MiB (sessions × queue limit × message size): replays queue beyond the limit",
			growth>>20, sessions, bound>>20)
	}
	if gone != sessions {
		t.Fatalf("%d of %d replays over the queue limit answered gone", gone, sessions)
	}
	if v, err := nodetest.Metric(http.DefaultClient, node.URL(), `wsfleet_replays_over_limit_total{answer="gone"}`); err != nil || v != sessions {
		t.Fatalf("replays over the limit counted %v (%v), want %d", v, err, sessions)
	}
}
