package ui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wsfleet/rollout"
)

const token = "the-admin-token-4f1c"

// fixture stores a running change with n instances and returns its store.
func fixture(t *testing.T, nodes map[string]rollout.Node) *rollout.Store {
	t.Helper()
	store := &rollout.Store{Dir: t.TempDir(), NoSync: true}
	plan := "change: c1\ngroup: g\nimage: ami-new\nphases:\n  - {name: one, replace: 1, bake: 1s, deadline: 5m}\n  - {name: two, replace: rest}\nchecks:\n  - {name: errors, metric: {name: wsfleet_errors_total, max_increase: 0}}\n"
	_, err := store.Update("c1", func(*rollout.State) (*rollout.State, error) {
		return &rollout.State{Change: "c1", Group: "g", PlanYAML: []byte(plan), Status: rollout.StatusRunning, Started: time.Now(),
			OldImage: "ami-old", Nodes: nodes,
			Steps:  []rollout.Step{{Kind: rollout.StepBatch, Phase: 0, Note: "replace i-1"}, {Kind: rollout.StepBake, Phase: 0}, {Kind: rollout.StepBatch, Phase: 1}},
			Phases: []rollout.PhaseRecord{{Name: "one", Status: "running", Started: time.Now()}, {Name: "two", Status: "pending"}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func node(id, name, image string, conns int) rollout.Node {
	return rollout.Node{ID: id, Name: name, Image: image, Lifecycle: "InService", Health: "Healthy", State: "ready", Connections: conns}
}

func setNodes(t *testing.T, store *rollout.Store, fn func(map[string]rollout.Node)) {
	t.Helper()
	if _, err := store.Update("c1", func(st *rollout.State) (*rollout.State, error) { fn(st.Nodes); return st, nil }); err != nil {
		t.Fatal(err)
	}
}

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8090", true}, {"[::1]:8090", true}, {"localhost:8090", true}, {"127.9.9.9:1", true},
		{":8090", false}, {"0.0.0.0:8090", false}, {"192.168.1.4:8090", false}, {"example.internal:8090", false}, {"nonsense", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := Loopback(tc.addr); got != tc.want {
				t.Errorf("Loopback(%q) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
	if _, err := Listen("0.0.0.0:0", ""); !errors.Is(err, ErrOpenAddr) {
		t.Errorf("listen on every interface without a token: %v, want ErrOpenAddr", err)
	}
	ln, err := Listen("0.0.0.0:0", token)
	if err != nil {
		t.Fatalf("listen on every interface with a token: %v", err)
	}
	ln.Close()
}

// TestControl: a command needs the admin token and reaches the change
// as the CLI's pause, resume, abort and rollback leave it.
func TestControl(t *testing.T) {
	for _, tc := range []struct {
		name, configured, auth, body string
		code                         int
		control                      string
	}{
		{"no token configured", "", "Bearer " + token, `{"action":"pause"}`, http.StatusForbidden, ""},
		{"no header", token, "", `{"action":"pause"}`, http.StatusUnauthorized, ""},
		{"wrong token", token, "Bearer wrong", `{"action":"pause"}`, http.StatusUnauthorized, ""},
		{"basic scheme", token, "Basic " + token, `{"action":"pause"}`, http.StatusUnauthorized, ""},
		{"unknown action", token, "Bearer " + token, `{"action":"delete"}`, http.StatusBadRequest, ""},
		{"pause", token, "Bearer " + token, `{"action":"pause"}`, http.StatusOK, "pause"},
		{"resume", token, "bearer " + token, `{"action":"resume"}`, http.StatusOK, "run"},
		{"abort", token, "Bearer " + token, `{"action":"abort"}`, http.StatusOK, "abort"},
		{"rollback", token, "Bearer " + token, `{"action":"rollback"}`, http.StatusOK, "rollback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := fixture(t, nil)
			s := New(Config{Store: store, Token: tc.configured})
			s.Poll()
			req := httptest.NewRequest("POST", "/api/control", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			if w.Code != tc.code {
				t.Errorf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			st, err := store.Load("c1")
			if err != nil {
				t.Fatal(err)
			}
			if st.Control != tc.control {
				t.Errorf("control left %q, want %q", st.Control, tc.control)
			}
		})
	}
}

// TestTokenNeverServed: the token is in no page, asset or answer.
func TestTokenNeverServed(t *testing.T) {
	s := New(Config{Store: fixture(t, map[string]rollout.Node{"i-1": node("i-1", "ws-1", "ami-old", 3)}), Token: token})
	s.Poll()
	for _, path := range []string{"/", "/app.js", "/app.css", "/api/view"} {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d", path, w.Code)
		}
		if strings.Contains(w.Body.String(), token) {
			t.Errorf("GET %s serves the admin token", path)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
}

// readEvent reads one server-sent event.
func readEvent(t *testing.T, r *bufio.Reader) (string, []byte) {
	t.Helper()
	var name string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: ") && name != "":
			return name, []byte(line[6:])
		}
	}
}

// TestStreamSendsDifferences: a page gets a snapshot, then only the
// instances that changed or left.
func TestStreamSendsDifferences(t *testing.T) {
	store := fixture(t, map[string]rollout.Node{
		"i-1": node("i-1", "ws-1", "ami-old", 10), "i-2": node("i-2", "ws-2", "ami-old", 20), "i-3": node("i-3", "ws-3", "ami-old", 30)})
	s := New(Config{Store: store, Token: token})
	s.Poll()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	next := func(want string) []byte {
		t.Helper()
		for {
			name, data := readEvent(t, r)
			if name == want {
				return data
			}
		}
	}
	var v View
	if err := json.Unmarshal(next("view"), &v); err != nil {
		t.Fatal(err)
	}
	if v.Change != "c1" || v.Status != "running" || len(v.Phases) != 2 || !v.Phases[0].Current || v.Phases[0].Deadline != "5m0s" || v.Phases[0].DeadlineAt.IsZero() {
		t.Errorf("view: %+v", v)
	}
	if len(v.Checks) != 1 || v.Checks[0].Name != "errors" || v.Checks[0].Last != nil {
		t.Errorf("checks: %+v", v.Checks)
	}
	var d nodesDiff
	json.Unmarshal(next("nodes"), &d)
	if !d.Full || len(d.Set) != 3 {
		t.Fatalf("first nodes: %+v", d)
	}

	setNodes(t, store, func(n map[string]rollout.Node) {
		n["i-2"] = node("i-2", "ws-2", "ami-old", 21)
		delete(n, "i-3")
	})
	s.Poll()
	d = nodesDiff{}
	json.Unmarshal(next("nodes"), &d)
	if d.Full || len(d.Set) != 1 || d.Set[0].ID != "i-2" || d.Set[0].Connections != 21 || len(d.Del) != 1 || d.Del[0] != "i-3" {
		t.Errorf("difference: %+v, want i-2 set to 21 connections and i-3 removed", d)
	}
	next("points") // the rest of that update
	// Nothing changed: no nodes message, but the chart's point.
	s.Poll()
	if name, _ := readEvent(t, r); name != "points" {
		t.Errorf("after an unchanged poll got %q, want only points", name)
	}
}

// TestSlowClientDropped: a client that stops reading is dropped once
// ClientBuffer updates wait for it, never buffered for without bound.
func TestSlowClientDropped(t *testing.T) {
	store := fixture(t, map[string]rollout.Node{"i-1": node("i-1", "ws-1", "ami-old", 0)})
	s := New(Config{Store: store, ClientBuffer: 3})
	slow := &client{ch: make(chan []byte, 3), dropped: make(chan struct{})}
	fast := &client{ch: make(chan []byte, 3), dropped: make(chan struct{})}
	s.clients[slow], s.clients[fast] = true, true
	for i := range 5 {
		setNodes(t, store, func(n map[string]rollout.Node) { n["i-1"] = node("i-1", "ws-1", "ami-old", i+1) })
		s.Poll()
		<-fast.ch
	}
	select {
	case <-slow.dropped:
	default:
		t.Fatal("a client 5 updates behind with room for 3 was kept")
	}
	select {
	case <-fast.dropped:
		t.Fatal("a client that keeps up was dropped")
	default:
	}
	if got := s.Stats().Dropped; got != 1 {
		t.Errorf("dropped %d, want 1", got)
	}
	if len(slow.ch) != 3 {
		t.Errorf("the slow client holds %d updates, want its 3", len(slow.ch))
	}
}

// TestEventsFollowTheLog: only whole new lines of the event log are sent.
func TestEventsFollowTheLog(t *testing.T) {
	store := fixture(t, nil)
	path := rollout.EventLogPath(store.Dir, "c1")
	if err := os.WriteFile(path, []byte(`{"type":"phase","msg":"phase started"}`+"\n"+`{"type":"wait","ms`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: store})
	if got := s.readEvents("c1"); len(got) != 1 {
		t.Fatalf("first read: %d events, want the 1 whole line", len(got))
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`g":"waiting"}` + "\n")
	f.Close()
	got := s.readEvents("c1")
	if len(got) != 1 || !bytes.Contains(got[0], []byte(`"waiting"`)) {
		t.Fatalf("second read: %s", got)
	}
}

// TestDistUpToDate builds the page from ui/web into a temporary
// directory and compares it with the committed ui/dist: run `go generate
// ./ui` after changing ui/web/src.
func TestDistUpToDate(t *testing.T) {
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join("web", "node_modules", "esbuild", "package.json")); err != nil || serr != nil {
		t.Fatal("building the dashboard needs node and ui/web/node_modules: run scripts/test-deps.sh")
	}
	out := t.TempDir()
	cmd := exec.Command(node, "build.mjs")
	cmd.Dir = "web"
	cmd.Env = append(os.Environ(), "DASHBOARD_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, f := range []string{"index.html", "app.js", "app.css"} {
		built, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("dist", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(built, committed) {
			t.Errorf("ui/dist/%s is not what ui/web builds: run `go generate ./ui` and commit ui/dist", f)
		}
	}
	entries, _ := os.ReadDir("dist")
	if len(entries) != 3 {
		t.Errorf("ui/dist holds %d files, want the 3 the build writes", len(entries))
	}
}

// TestLoopbackHost: a loopback-only dashboard answers only requests
// naming a loopback host, so that a page rebound to 127.0.0.1 (DNS
// rebinding) cannot read the fleet; a dashboard beyond loopback, which
// anyone reaching the port may read, answers any name.
func TestLoopbackHost(t *testing.T) {
	store := fixture(t, map[string]rollout.Node{"i-1": node("i-1", "ws-1", "ami-old", 3)})
	for _, tc := range []struct {
		host     string
		loopback bool
		code     int
	}{
		{"127.0.0.1:8090", true, http.StatusOK},
		{"localhost:8090", true, http.StatusOK},
		{"LocalHost", true, http.StatusOK},
		{"[::1]:8090", true, http.StatusOK},
		{"[::1]", true, http.StatusOK},
		{"127.0.0.2", true, http.StatusOK},
		{"evil.example:8090", true, http.StatusForbidden},
		{"evil.example", true, http.StatusForbidden},
		{"192.168.1.4:8090", true, http.StatusForbidden},
		{"evil.example:8090", false, http.StatusOK},
	} {
		t.Run(fmt.Sprintf("%s loopback=%v", tc.host, tc.loopback), func(t *testing.T) {
			s := New(Config{Store: store, Token: token, LoopbackOnly: tc.loopback})
			s.Poll()
			for _, path := range []string{"/", "/api/view"} {
				req := httptest.NewRequest("GET", path, nil)
				req.Host = tc.host
				w := httptest.NewRecorder()
				s.Handler().ServeHTTP(w, req)
				if w.Code != tc.code {
					t.Errorf("GET %s with Host %s: status %d, want %d", path, tc.host, w.Code, tc.code)
				}
			}
		})
	}
}

// TestControlMethod: a GET of the control is 405 naming POST, not the
// file server's 404.
func TestControlMethod(t *testing.T) {
	s := New(Config{Store: fixture(t, nil), Token: token})
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/control", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET /api/control: status %d, Allow %q; want 405, POST", w.Code, w.Header().Get("Allow"))
	}
}

// TestPageSymbolsNoEmoji: the symbols that say a state beside its word
// are in DejaVu Sans, Debian's default font: an emoji or a symbol of
// Unicode's Miscellaneous Technical block (⏸, ⏳, 🔒) is drawn as an empty
// box by a browser without an emoji font.
func TestPageSymbolsNoEmoji(t *testing.T) {
	for _, path := range []string{"web/src/main.js", "web/src/index.html", "dist/app.js", "dist/index.html"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, r := range line {
				if r >= 0x1F000 || (r >= 0x2300 && r <= 0x23FF) {
					t.Errorf("%s:%d: %q (U+%04X) needs an emoji font", path, i+1, r, r)
				}
			}
		}
	}
}
