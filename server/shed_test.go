package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
	"wsfleet/broker"
	"wsfleet/nodeapi"
)

// adminPost posts body to the node's admin path with the admin token and
// returns the status code and body.
func adminPost(t *testing.T, n *node, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", n.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readyBody returns the node's /readyz status code and body.
func readyBody(t *testing.T, n *node) (int, string) {
	t.Helper()
	resp, err := http.Get(n.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// sessionIDs are the client ids a node holds.
func sessionIDs(s *Server) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []string
	for id := range s.sessions {
		ids = append(ids, id)
	}
	return ids
}

// longNodes returns two nodes, a and b, on one memory broker, that hold a
// connect 24 s: a client released in a test's few seconds has its connect
// held. shared sets Config.SharedSessions.
func longNodes(t *testing.T, shared bool) (a, b *node) {
	br := broker.NewMemory(broker.MemoryOptions{})
	cfg := func(id string) func(*Config) {
		return func(c *Config) { c.NodeID = id; c.Broker = br; c.Timeout = 30 * time.Second; c.SharedSessions = shared }
	}
	return startNode(t, cfg("a")), startNode(t, cfg("b"))
}

// followRelease plays a released websocket client as faye and halley do:
// its held connect is answered, it sends the next one on the same socket,
// which is answered with advice to retry and the socket closed (going
// away); it then reconnects, to node to, and sends /meta/connect with the
// same client id. Data seen on the old socket is appended to got; the new
// peer is returned.
func followRelease(t *testing.T, p *wsPeer, to *node, got *[]msg) *wsPeer {
	t.Helper()
	untilConnect := func() msg {
		return p.next(func(m msg) bool {
			if isData(m) {
				*got = append(*got, m)
			}
			return m["channel"] == bayeux.ChannelConnect
		})
	}
	if c := untilConnect(); c["successful"] != true {
		t.Fatalf("released connect: %v", c)
	}
	p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	c := untilConnect()
	if adv, _ := c["advice"].(map[string]any); c["successful"] != true || adv["reconnect"] != "retry" {
		t.Fatalf("connect after release: %v", c)
	}
	select {
	case <-p.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("released socket not closed")
	}
	if websocket.CloseStatus(p.closeErr) != websocket.StatusGoingAway {
		t.Fatalf("released socket closed with %v", p.closeErr)
	}
	for len(p.in) > 0 {
		if m := <-p.in; isData(m) {
			*got = append(*got, m)
		}
	}
	q := dialWS(t, to)
	q.clientID = p.clientID
	q.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	return q
}

// TestShedHandsKOfNOver: a node with five subscribed websocket clients
// sheds two while messages flow. Exactly two leave, with a drain's
// hand-over (their next node replays what they missed: every message once,
// in order), the newest two; the other three stay connected and receive
// everything; the node stays ready, counts the shed and not a drain, and
// the node that takes them over counts them received.
func TestShedHandsKOfNOver(t *testing.T) {
	a, b := longNodes(t, false)
	const n, k, total = 5, 2, 80
	var peers []*wsPeer
	for range n {
		p := dialWS(t, a)
		p.handshake(nil)
		p.subscribe("/h", nil)
		peers = append(peers, p)
		time.Sleep(2 * time.Millisecond) // distinct arrivals: newest is well defined
	}
	waitFor(t, func() bool { return heldConnects(a.srv) == n }, "connects not held")
	done := publishing(t, b, total, 3*time.Millisecond)
	got := make([][]msg, n)
	for len(got[0]) < 10 {
		got[0] = append(got[0], peers[0].next(isData))
	}
	code, body := adminPost(t, a, nodeapi.PathShed, fmt.Sprintf(`{"id":"s1","count":%d,"window":"0s","max_rate":1000}`, k))
	var res nodeapi.ShedResult
	if err := json.Unmarshal([]byte(body), &res); code != http.StatusAccepted || err != nil ||
		res != (nodeapi.ShedResult{ID: "s1", Count: k, Releasing: k, Window: 0, MaxRate: 1000}) {
		t.Fatalf("shed: %d %s", code, body)
	}
	waitFor(t, func() bool { st := a.srv.Status().Shed; return st.Released == k && !st.Running }, "shed not done")
	left := sessionIDs(a.srv)
	for i, p := range peers {
		if kept := slices.Contains(left, p.clientID); kept != (i < n-k) {
			t.Fatalf("client %d (arrived %d of %d) kept on the node: %v; the newest %d go", i, i+1, n, kept, k)
		}
	}
	for i := n - k; i < n; i++ {
		peers[i] = followRelease(t, peers[i], b, &got[i])
	}
	<-done
	for i, p := range peers {
		for len(got[i]) < total {
			got[i] = append(got[i], p.next(isData))
		}
		p.noData(50 * time.Millisecond)
		t.Run(fmt.Sprintf("client %d", i), func(t *testing.T) { checkExactlyOnce(t, got[i], total) })
	}
	for i := range n - k {
		select {
		case <-peers[i].closed:
			t.Fatalf("kept client %d's socket closed: %v", i, peers[i].closeErr)
		default:
		}
	}
	st := a.srv.Status()
	if st.State != StateReady || st.Sessions != n-k || st.Shed != (nodeapi.ShedStatus{Requested: k, Released: k}) || st.Drain.Released != 0 {
		t.Fatalf("shedding node's status %+v", st)
	}
	if c, _ := readyBody(t, a); c != http.StatusOK {
		t.Fatalf("shedding node's readiness %d", c)
	}
	if got := scrape(t, a, "wsfleet_clients_shed_total"); got != k {
		t.Fatalf("wsfleet_clients_shed_total %v, want %d", got, k)
	}
	if got := scrape(t, a, "wsfleet_drain_released_total"); got != 0 {
		t.Fatalf("wsfleet_drain_released_total %v after a shed", got)
	}
	if st := b.srv.Status(); st.Received != k || st.Sessions != k {
		t.Fatalf("receiving node's status %+v", st)
	}
	if got := scrape(t, b, "wsfleet_sessions_received_total"); got != k {
		t.Fatalf("wsfleet_sessions_received_total %v, want %d", got, k)
	}
	if got := scrape(t, a, "wsfleet_sessions_received_total"); got != 0 {
		t.Fatalf("the shedding node counted %v received", got)
	}
}

// TestShedMovesFreshSessionsFirst: a node holding sessions it took over
// from another node and sessions that handshook on it sheds the fresh
// ones first, even the older of them, and the received ones only then.
func TestShedMovesFreshSessionsFirst(t *testing.T) {
	a, b := longNodes(t, false)
	fresh := dialWS(t, a)
	fresh.handshake(nil)
	// two clients of b come to a: b sheds them, they reconnect to a
	var moved []*wsPeer
	for range 2 {
		p := dialWS(t, b)
		p.handshake(nil)
		moved = append(moved, p)
	}
	waitFor(t, func() bool { return heldConnects(b.srv) == 2 }, "b's connects not held")
	if _, err := b.srv.Shed(nodeapi.ShedRequest{Count: 2, Window: nodeapi.Dur(0), MaxRate: 1000}); err != nil {
		t.Fatal(err)
	}
	var sink []msg
	for i, p := range moved {
		moved[i] = followRelease(t, p, a, &sink)
		// one after the other: moved[1] arrives last
		waitFor(t, func() bool { return a.srv.Status().Received == i+1 }, "a did not receive b's client %d", i)
	}
	// a newer fresh client than the received ones
	fresh2 := dialWS(t, a)
	fresh2.handshake(nil)
	waitFor(t, func() bool { return heldConnects(a.srv) == 4 }, "a's connects not held")

	// the fresh ones, newest first, then the newest received one
	for _, want := range [][]string{
		{fresh.clientID, moved[0].clientID, moved[1].clientID},
		{moved[0].clientID, moved[1].clientID},
		{moved[0].clientID},
	} {
		if _, err := a.srv.Shed(nodeapi.ShedRequest{Count: 1, Window: nodeapi.Dur(0), MaxRate: 1000}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return !a.srv.Status().Shed.Running && len(sessionIDs(a.srv)) == len(want) }, "shed not done")
		got := sessionIDs(a.srv)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("left after a shed of one: %v, want %v (fresh %s, %s; moved %s, %s)", got, want,
				fresh.clientID, fresh2.clientID, moved[0].clientID, moved[1].clientID)
		}
	}
}

// TestShedPacing checks that a shed releases at the instants
// releaseSchedule gives for its own window and rate, one by one, that a
// second shed asked for meanwhile (a new ID) is added after it with its
// own pacing, and that the clients not shed stay.
func TestShedPacing(t *testing.T) {
	clk := newFakeClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	n, _ := startHeldNode(t, clk, 7)
	rng := drainRand()
	first := releaseSchedule(3, 0, 10, rng, clk.Now())
	second := releaseSchedule(2, 10*time.Second, 100, rng, first[2])
	schedule := append(first, second...)
	if res, err := n.srv.Shed(nodeapi.ShedRequest{ID: "one", Count: 3, Window: nodeapi.Dur(0), MaxRate: 10}); err != nil || res.Releasing != 3 {
		t.Fatalf("shed: %+v, %v", res, err)
	}
	if res, err := n.srv.Shed(nodeapi.ShedRequest{ID: "two", Count: 2, Window: nodeapi.Dur(10 * time.Second), MaxRate: 100}); err != nil || res.Releasing != 2 {
		t.Fatalf("second shed: %+v, %v", res, err)
	}
	if st := n.srv.Status().Shed; st != (nodeapi.ShedStatus{Requested: 5, Running: true}) {
		t.Fatalf("shed status %+v", st)
	}
	var last time.Time
	for i, at := range schedule {
		// never closer than the gap of the release's own rate
		gap := releaseGap(10)
		if i >= len(first) {
			gap = releaseGap(100)
		}
		if i > 0 && at.Sub(last) < gap {
			at = last.Add(gap)
		}
		last = at
		clk.waitArmed(t, at, fmt.Sprintf("release %d", i))
		if r := n.srv.Status().Shed.Released; r != i {
			t.Fatalf("%d released before %v, want %d", r, at, i)
		}
		clk.advanceTo(at.Add(-time.Nanosecond))
		if r := n.srv.Status().Shed.Released; r != i {
			t.Fatalf("%d released a nanosecond before %v, want %d", r, at, i)
		}
		clk.advanceTo(at)
		waitFor(t, func() bool { return n.srv.Status().Shed.Released == i+1 }, "release %d not done at %v", i, at)
	}
	waitFor(t, func() bool { return !n.srv.Status().Shed.Running }, "shed still running")
	if st := n.srv.Status(); st.Sessions != 2 || st.State != StateReady || st.Shed != (nodeapi.ShedStatus{Requested: 5, Released: 5}) {
		t.Fatalf("status %+v", st)
	}
}

// TestShedIDIsIdempotent: the repeat of a shed's ID, running or finished,
// changes nothing and gets the same answer; a new ID adds to it.
func TestShedIDIsIdempotent(t *testing.T) {
	clk := newFakeClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	n, _ := startHeldNode(t, clk, 5)
	post := func(body string) nodeapi.ShedResult {
		t.Helper()
		code, b := adminPost(t, n, nodeapi.PathShed, body)
		var res nodeapi.ShedResult
		if err := json.Unmarshal([]byte(b), &res); code != http.StatusAccepted || err != nil {
			t.Fatalf("shed %s: %d %s", body, code, b)
		}
		return res
	}
	want := nodeapi.ShedResult{ID: "x", Count: 2, Releasing: 2, Window: nodeapi.Duration(time.Minute), MaxRate: 1}
	if got := post(`{"id":"x","count":2,"window":"1m","max_rate":1}`); got != want {
		t.Fatalf("first: %+v, want %+v", got, want)
	}
	// running: a resend, even with other values, is the same shed
	if got := post(`{"id":"x","count":2,"window":"1m","max_rate":1}`); got != want {
		t.Fatalf("repeat: %+v, want %+v", got, want)
	}
	if got := post(`{"id":"x","count":4}`); got != want {
		t.Fatalf("repeat with other values: %+v, want %+v", got, want)
	}
	if st := n.srv.Status().Shed; st.Requested != 2 {
		t.Fatalf("repeats added: %+v", st)
	}
	// a new id adds, clamped to the clients no shed releases yet
	if got := post(`{"id":"y","count":10,"window":"0s","max_rate":100}`); got.Releasing != 3 || got.Count != 10 {
		t.Fatalf("new id while one runs: %+v, want 3 of 10", got)
	}
	for n.srv.Status().Shed.Running {
		clk.advance(time.Second)
		time.Sleep(time.Millisecond)
	}
	if st := n.srv.Status(); st.Shed != (nodeapi.ShedStatus{Requested: 5, Released: 5}) || st.Sessions != 0 {
		t.Fatalf("status %+v", st)
	}
	// finished: the same answer, nothing released
	if got := post(`{"id":"x","count":2,"window":"1m","max_rate":1}`); got != want {
		t.Fatalf("repeat after the end: %+v, want %+v", got, want)
	}
	if got := post(`{"count":3}`); got.Releasing != 0 {
		t.Fatalf("shed of an empty node: %+v", got)
	}
	if st := n.srv.Status().Shed; st != (nodeapi.ShedStatus{Requested: 5, Released: 5}) {
		t.Fatalf("status after the repeats %+v", st)
	}
}

// TestShedRefusesBadRequests: every out-of-range field is a 400 that names
// it and its range, and starts nothing.
func TestShedRefusesBadRequests(t *testing.T) {
	n := startNode(t, nil)
	dialWS(t, n).handshake(nil)
	for _, tc := range []struct{ name, body, want string }{
		{"empty body", ``, "count is required: want 0 to 1000000"},
		{"no count", `{"window":"1s"}`, "count is required: want 0 to 1000000"},
		{"negative count", `{"count":-1}`, "count -1: want 0 to 1000000"},
		{"count too big", `{"count":1000001}`, "count 1000001: want 0 to 1000000"},
		{"negative window", `{"count":1,"window":"-1s"}`, "window -1s: want 0 to 1h0m0s"},
		{"window too long", `{"count":1,"window":"61m"}`, "window 1h1m0s: want 0 to 1h0m0s"},
		{"negative rate", `{"count":1,"max_rate":-1}`, "max_rate -1: want 0 to 100000 per second"},
		{"rate too high", `{"count":1,"max_rate":100001}`, "max_rate 100001: want 0 to 100000 per second"},
		{"id too long", `{"count":1,"id":"` + strings.Repeat("x", 129) + `"}`, "id of 129 bytes: want at most 128"},
		{"unknown field", `{"count":1,"share":0.5}`, `unknown field "share"`},
		{"count as a string", `{"count":"1"}`, "count"},
		{"fractional count", `{"count":1.5}`, "count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := adminPost(t, n, nodeapi.PathShed, tc.body)
			if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
				t.Fatalf("shed %s: %d %q, want 400 naming %q", tc.body, code, body, tc.want)
			}
			if st := n.srv.Status(); st.Shed != (nodeapi.ShedStatus{}) || st.Sessions != 1 {
				t.Fatalf("a refused shed did something: %+v", st)
			}
		})
	}
}

// TestCordon: a cordoned node fails its readiness with a body that says
// so, and meanwhile serves its clients, takes new ones and takes sessions
// over; uncordoned, it is ready again. Draining wins over both.
func TestCordon(t *testing.T) {
	a, b := longNodes(t, false)
	p := dialWS(t, a)
	p.handshake(nil)
	p.subscribe("/h", nil)
	cordon := func(body string) nodeapi.Status {
		t.Helper()
		code, res := adminPost(t, a, nodeapi.PathCordon, body)
		var st nodeapi.Status
		if err := json.Unmarshal([]byte(res), &st); code != http.StatusOK || err != nil {
			t.Fatalf("cordon %s: %d %s", body, code, res)
		}
		return st
	}
	if st := cordon(`{"cordoned":true}`); !st.Cordoned || st.State != StateReady {
		t.Fatalf("cordoned status %+v", st)
	}
	if c, body := readyBody(t, a); c != http.StatusServiceUnavailable || body != "not ready: cordoned" {
		t.Fatalf("cordoned readiness %d %q", c, body)
	}
	if got := scrape(t, a, "wsfleet_node_cordoned"); got != 1 {
		t.Fatalf("wsfleet_node_cordoned %v while cordoned", got)
	}
	// its client still receives; a new client still handshakes
	b.publish(`{"channel":"/h","data":0}`)
	if d := p.dataN(1); d[0]["data"] != float64(0) {
		t.Fatalf("delivery on a cordoned node: %v", d)
	}
	q := dialWS(t, a)
	if h := q.handshake(nil); h["successful"] != true {
		t.Fatalf("a cordoned node refused a handshake: %v", h)
	}
	q.subscribe("/h", nil)
	// a client b sheds reconnects here and is taken over
	r := dialWS(t, b)
	r.handshake(nil)
	r.subscribe("/h", nil)
	waitFor(t, func() bool { return heldConnects(b.srv) == 1 }, "b's connect not held")
	if _, err := b.srv.Shed(nodeapi.ShedRequest{Count: 1, Window: nodeapi.Dur(0)}); err != nil {
		t.Fatal(err)
	}
	var sink []msg
	r = followRelease(t, r, a, &sink)
	b.publish(`{"channel":"/h","data":1}`)
	for i, c := range []*wsPeer{p, q, r} {
		if d := c.next(isData); d["data"] != float64(1) {
			t.Fatalf("client %d on the cordoned node got %v", i, d)
		}
	}
	if st := a.srv.Status(); st.Received != 1 || st.Sessions != 3 {
		t.Fatalf("cordoned node's status %+v", st)
	}

	if st := cordon(`{"cordoned":false}`); st.Cordoned {
		t.Fatalf("uncordoned status %+v", st)
	}
	if c, body := readyBody(t, a); c != http.StatusOK {
		t.Fatalf("uncordoned readiness %d %q", c, body)
	}
	if got := scrape(t, a, "wsfleet_node_cordoned"); got != 0 {
		t.Fatalf("wsfleet_node_cordoned %v after uncordon", got)
	}

	// draining wins: cordoned or not, a draining node is not ready, and a
	// shed is refused
	cordon(`{"cordoned":true}`)
	a.srv.StartDrain(DrainOptions{Window: time.Minute, MaxRate: 1, Deadline: time.Minute})
	if c, body := readyBody(t, a); c != http.StatusServiceUnavailable || body != "not ready: draining" {
		t.Fatalf("cordoned draining readiness %d %q", c, body)
	}
	cordon(`{"cordoned":false}`)
	if c, body := readyBody(t, a); c != http.StatusServiceUnavailable || body != "not ready: draining" {
		t.Fatalf("uncordoned draining readiness %d %q", c, body)
	}
	if code, body := adminPost(t, a, nodeapi.PathShed, `{"count":1}`); code != http.StatusConflict || !strings.Contains(body, "draining") {
		t.Fatalf("shed on a draining node: %d %q", code, body)
	}
	for _, body := range []string{``, `{}`, `{"cordoned":1}`, `{"cordoned":true,"x":1}`} {
		if code, res := adminPost(t, a, nodeapi.PathCordon, body); code != http.StatusBadRequest || !strings.Contains(res, "cordon") {
			t.Fatalf("cordon %q: %d %q, want 400", body, code, res)
		}
	}
}

// TestDrainSupersedesShed: a drain started while a shed runs stops it and
// releases everyone, counted as the drain's.
func TestDrainSupersedesShed(t *testing.T) {
	clk := newFakeClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	n, _ := startHeldNode(t, clk, 4)
	if _, err := n.srv.Shed(nodeapi.ShedRequest{Count: 3, Window: nodeapi.Dur(time.Hour), MaxRate: 1}); err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() {
		drained <- n.srv.Drain(context.Background(), DrainOptions{Window: 0, MaxRate: 0, Deadline: 5 * time.Second})
	}()
	awaitDrain(t, clk, drained, 100*time.Millisecond, "drain not finished")
	st := n.srv.Status()
	if st.State != StateDrained || st.Drain.Released+st.Shed.Released != 4 || st.Shed.Running || st.Shed.Requested != 3 {
		t.Fatalf("status %+v", st)
	}
	if _, err := n.srv.Shed(nodeapi.ShedRequest{Count: 1}); err == nil {
		t.Fatal("a drained node took a shed")
	}
}

// TestAdminClientOnNode: the engine's client (nodeapi.Client) against a
// real node: the node speaks version 2, so shed and cordon go out, and
// the status shows them.
func TestAdminClientOnNode(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Timeout = 30 * time.Second })
	for range 3 {
		dialWS(t, n).handshake(nil)
	}
	waitFor(t, func() bool { return heldConnects(n.srv) == 3 }, "connects not held")
	c := &nodeapi.Client{Token: testAdmin}
	ctx := context.Background()
	if err := c.Cordon(ctx, n.url, true); err != nil {
		t.Fatal(err)
	}
	res, err := c.Shed(ctx, n.url, nodeapi.ShedRequest{ID: "e1", Count: 5, Window: nodeapi.Dur(0), MaxRate: 1000})
	if want := (nodeapi.ShedResult{ID: "e1", Count: 5, Releasing: 3, MaxRate: 1000}); err != nil || res != want {
		t.Fatalf("shed: %+v, %v; want %+v", res, err, want)
	}
	waitFor(t, func() bool { return !n.srv.Status().Shed.Running }, "shed still running")
	st, err := c.Status(ctx, n.url)
	if err != nil || st.APIVersion != 2 || !st.Cordoned || st.State != nodeapi.StateReady || st.Shed != (nodeapi.ShedStatus{Requested: 3, Released: 3}) {
		t.Fatalf("status %+v, %v", st, err)
	}
	if again, err := c.Shed(ctx, n.url, nodeapi.ShedRequest{ID: "e1", Count: 5}); err != nil || again != res {
		t.Fatalf("resent shed: %+v, %v; want %+v", again, err, res)
	}
}

// TestShedLateReleaseKeepsTheRate: a release whose timer fired late does
// not bring the next one closer than 1/max_rate: the rate bound holds over
// any second, whatever the timers do.
func TestShedLateReleaseKeepsTheRate(t *testing.T) {
	clk := newFakeClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	n, _ := startHeldNode(t, clk, 3)
	schedule := releaseSchedule(2, 0, 1, drainRand(), clk.Now())
	if _, err := n.srv.Shed(nodeapi.ShedRequest{Count: 2, Window: nodeapi.Dur(0), MaxRate: 1}); err != nil {
		t.Fatal(err)
	}
	clk.waitArmed(t, schedule[0], "first release")
	// the first fires 1.5 s late: the schedule's second instant (at most
	// 2 s from the start) is now less than a second away
	late := schedule[0].Add(1500 * time.Millisecond)
	clk.fireLateAt(late)
	waitFor(t, func() bool { return n.srv.Status().Shed.Released == 1 }, "first release not done")
	next := late.Add(time.Second)
	if !next.After(schedule[1]) {
		t.Fatalf("schedule %v: the late release does not test the bound", schedule)
	}
	clk.waitArmed(t, next, "second release, a second after the late first")
	clk.advanceTo(next.Add(-time.Nanosecond))
	if r := n.srv.Status().Shed.Released; r != 1 {
		t.Fatalf("%d released less than a second after the late first", r)
	}
	clk.advanceTo(next)
	waitFor(t, func() bool { return n.srv.Status().Shed.Released == 2 }, "second release not done")
}

// TestReceivedAfterALongPollHop: with shared sessions, a released client
// that comes back over long-polling first and over a websocket then (as
// halley does) is received once, by the websocket's take-over, although
// the long-poll's answer saved the record under the receiving node.
func TestReceivedAfterALongPollHop(t *testing.T) {
	a, b := longNodes(t, true)
	p := dialWS(t, a)
	p.handshake(nil)
	p.subscribe("/h", nil)
	waitFor(t, func() bool { return heldConnects(a.srv) == 1 }, "connect not held")
	if _, err := a.srv.Shed(nodeapi.ShedRequest{Count: 1, Window: nodeapi.Dur(0)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return a.srv.Status().Shed.Released == 1 }, "not shed")
	b.publish(`{"channel":"/h","data":0}`)
	lp := &lpPeer{t: t, n: b, clientID: p.clientID}
	reply, data := lp.connect()
	if reply["successful"] != true || len(data) != 1 || data[0]["data"] != float64(0) {
		t.Fatalf("long-poll on b: %v %v", reply, data)
	}
	if st := b.srv.Status(); st.Received != 0 {
		t.Fatalf("a long-poll answered counted as received: %+v", st)
	}
	q := dialWS(t, b)
	q.clientID = p.clientID
	q.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	b.publish(`{"channel":"/h","data":1}`)
	if d := q.next(isData); d["data"] != float64(1) {
		t.Fatalf("websocket on b got %v", d)
	}
	if st := b.srv.Status(); st.Received != 1 || st.Sessions != 1 {
		t.Fatalf("after the websocket's take-over: %+v", st)
	}
}

// TestShedHandsLongPollSessionOver: a long-polling client shed from one
// node goes on at the other with every message once, in order, as after
// a drain; the node that shed it stays ready and serves its other client.
func TestShedHandsLongPollSessionOver(t *testing.T) {
	a, b := twoNodes(t)
	stay := dialWS(t, a)
	stay.handshake(nil)
	stay.subscribe("/h", nil)
	waitFor(t, func() bool { return heldConnects(a.srv) == 1 }, "websocket connect not held")
	time.Sleep(2 * time.Millisecond) // the long-polling client is the newer
	p := &lpPeer{t: t, n: a}
	p.handshake(nil)
	p.post(msg{"channel": bayeux.ChannelSubscribe, "subscription": "/h"})

	const total = 60
	done := publishing(t, a, total, 5*time.Millisecond)
	var got []msg
	// the long-polling client arrived last: it is the one shed
	shed := make(chan struct{})
	go func() {
		defer close(shed)
		time.Sleep(100 * time.Millisecond)
		a.srv.Shed(nodeapi.ShedRequest{Count: 1, Window: nodeapi.Dur(0), MaxRate: 1000})
	}()
	// the client polls node a until the shed, then (through the load
	// balancer) node b.
	for {
		reply, data := p.connect()
		got = append(got, data...)
		if reply["successful"] != true {
			t.Fatalf("connect on a: %v", reply)
		}
		select {
		case <-shed:
		default:
			continue
		}
		break
	}
	waitFor(t, func() bool { return a.srv.Status().Shed.Released == 1 }, "not shed")
	if slices.Contains(sessionIDs(a.srv), p.clientID) || !slices.Contains(sessionIDs(a.srv), stay.clientID) {
		t.Fatalf("a holds %v after the shed: the long-polling %s should have gone, the websocket %s stayed", sessionIDs(a.srv), p.clientID, stay.clientID)
	}
	p.n = b
	<-done
	checkExactlyOnce(t, p.pollUntil(got, total, "b"), total)
	checkExactlyOnce(t, stay.dataN(total), total)
	if st := b.srv.Status(); st.Received != 1 {
		t.Fatalf("b's status %+v", st)
	}
}

// TestHandshakeElsewhereIsNotReceived: with shared sessions, a client that
// handshakes over HTTP on one node and opens its websocket on another (as
// faye does behind a balancer without stickiness) never moved: the second
// node does not count it received, and a shed there treats it as fresh.
func TestHandshakeElsewhereIsNotReceived(t *testing.T) {
	a, b := longNodes(t, true)
	lp := &lpPeer{t: t, n: b}
	if h := lp.handshake(nil); h["successful"] != true {
		t.Fatalf("handshake on b: %v", h)
	}
	p := dialWS(t, a)
	p.clientID = lp.clientID
	p.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	p.subscribe("/h", nil)
	b.publish(`{"channel":"/h","data":0}`)
	if d := p.next(isData); d["data"] != float64(0) {
		t.Fatalf("websocket on a got %v", d)
	}
	if st := a.srv.Status(); st.Received != 0 || st.Sessions != 1 {
		t.Fatalf("a counted a handshake on b as a move: %+v", st)
	}
	if got := scrape(t, a, "wsfleet_sessions_received_total"); got != 0 {
		t.Fatalf("wsfleet_sessions_received_total %v", got)
	}
}

// TestDroppedWebsocketIsReceived: with shared sessions, a client whose
// websocket to one node dropped and that reconnects to another moved: the
// other node counts it received.
func TestDroppedWebsocketIsReceived(t *testing.T) {
	a, b := longNodes(t, true)
	p := dialWS(t, a)
	p.handshake(nil)
	p.subscribe("/h", nil)
	p.c.CloseNow()
	waitFor(t, func() bool { return a.srv.Status().Connections == 0 }, "a still counts the dropped websocket")
	q := dialWS(t, b)
	q.clientID = p.clientID
	q.send(msg{"channel": bayeux.ChannelConnect, "connectionType": "websocket"})
	a.publish(`{"channel":"/h","data":0}`)
	if d := q.next(isData); d["data"] != float64(0) {
		t.Fatalf("websocket on b got %v", d)
	}
	if st := b.srv.Status(); st.Received != 1 {
		t.Fatalf("b's status %+v", st)
	}
}
