package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"wsfleet/internal/nodetest"
	"wsfleet/rollout"
)

// TestStatusUI: `status --ui` refuses an address beyond loopback without
// the admin token, and on loopback serves the change's dashboard until
// interrupted, saying where without printing the token.
func TestStatusUI(t *testing.T) {
	dir := t.TempDir()
	store := &rollout.Store{Dir: dir, NoSync: true}
	if _, err := store.Update("c-ui", func(*rollout.State) (*rollout.State, error) {
		return &rollout.State{Change: "c-ui", Group: "g", Status: rollout.StatusRunning, Started: time.Now()}, nil
	}); err != nil {
		t.Fatal(err)
	}
	const secret = "status-ui-secret-token"
	t.Run("beyond loopback without a token", func(t *testing.T) {
		t.Setenv("WSFLEET_ADMIN_TOKEN", "")
		var stderr bytes.Buffer
		if code := run([]string{"status", "--ui", "0.0.0.0:0", "--state-dir", dir}, io.Discard, &stderr); code != 2 {
			t.Errorf("exit %d, want 2: %s", code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "WSFLEET_ADMIN_TOKEN") {
			t.Errorf("the refusal does not name the token's variable: %s", stderr.String())
		}
	})
	t.Run("loopback", func(t *testing.T) {
		t.Setenv("WSFLEET_ADMIN_TOKEN", secret)
		ctx, cancel := context.WithCancel(context.Background())
		var stderr nodetest.SyncBuffer
		done := make(chan error, 1)
		go func() {
			done <- runStatus(ctx, []string{"--ui", "127.0.0.1:0", "--state-dir", dir, "-c", "c-ui"}, io.Discard, &stderr)
		}()
		addr := regexp.MustCompile(`dashboard: (http://[^ ]+/)`)
		var url string
		for deadline := time.Now().Add(10 * time.Second); url == ""; {
			if m := addr.FindStringSubmatch(stderr.String()); m != nil {
				url = m[1]
			} else if time.Now().After(deadline) {
				t.Fatalf("no dashboard address in %q", stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		var view []byte
		for deadline := time.Now().Add(10 * time.Second); !bytes.Contains(view, []byte(`"change":"c-ui"`)); {
			resp, err := http.Get(url + "api/view")
			if err == nil {
				view, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if time.Now().After(deadline) {
				t.Fatalf("the dashboard does not show c-ui: %s %v", view, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("status --ui: %v", err)
		}
		if strings.Contains(stderr.String(), secret) || bytes.Contains(view, []byte(secret)) {
			t.Error("the admin token was printed or served")
		}
	})
}
