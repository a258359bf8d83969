package vendortest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Slack is a stand-in for a Slack incoming webhook: it accepts a JSON
// POST with a text (or blocks) at its secret path, as Slack's incoming
// webhooks documentation describes, and answers "ok"; anything else is a
// test failure. Slack publishes no OpenAPI description of incoming
// webhooks, so the check is by hand.
type Slack struct {
	*httptest.Server
	// Path is the webhook's secret path, e.g. /services/T000/B000/XXXX.
	Path string

	mu        sync.Mutex
	messages  []string
	rateLimit int
}

// RateLimit makes the next n posts answer 429 with Retry-After: 1, as
// Slack does when a webhook posts more than about one message a second.
func (s *Slack) RateLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit = n
}

// NewSlack starts the stand-in at path.
func NewSlack(t testing.TB, path string) *Slack {
	s := &Slack{Path: path}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != s.Path {
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		s.mu.Lock()
		limited := s.rateLimit > 0
		if limited {
			s.rateLimit--
		}
		s.mu.Unlock()
		if limited {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate_limited", http.StatusTooManyRequests)
			return
		}
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Errorf("Slack stand-in: content type %q, want application/json", r.Header.Get("Content-Type"))
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		var msg struct {
			Text   string          `json:"text"`
			Blocks json.RawMessage `json:"blocks"`
		}
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil || (msg.Text == "" && len(msg.Blocks) == 0) {
			t.Errorf("Slack stand-in: payload without text or blocks (%v)", err)
			http.Error(w, "no_text", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.messages = append(s.messages, msg.Text)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s
}

// WebhookURL is the webhook's URL: the secret a plan's env var holds.
func (s *Slack) WebhookURL() string { return s.URL + s.Path }

// Messages returns the texts posted so far.
func (s *Slack) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.messages...)
}
