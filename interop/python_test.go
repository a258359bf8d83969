package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"wsfleet/internal/nodetest"
	"wsfleet/nodeapi"
)

// The Python tests drive bayeux_ws.py, a Bayeux client written with
// Python's websockets library (Debian's python3-websockets), a strict
// RFC 6455 implementation with no Bayeux in it: it fragments messages
// when asked, checks every pong against its ping, offers
// permessage-deflate (which the node must decline) and checks the
// closing handshake.

// pyEvent is one line bayeux_ws.py prints (its docstring lists them).
type pyEvent struct {
	Event      string          `json:"event"`
	Channel    string          `json:"channel"`
	Successful *bool           `json:"successful"`
	Fragmented bool            `json:"fragmented"`
	Data       json.RawMessage `json:"data"`
	Advice     map[string]any  `json:"advice"`
	Size       int             `json:"size"`
	Code       int             `json:"code"`
	Reason     string          `json:"reason"`
	Error      any             `json:"error"`
}

// python finds, once, an interpreter that imports websockets: Debian's,
// where scripts/test-deps.sh has apt install the module, or else the first
// python3 on PATH (a pyenv one, say, with the module installed by hand).
var python = sync.OnceValue(func() string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import websockets").Run() == nil {
			return py
		}
	}
	return ""
})

// needPython fails the test when no python3 has the websockets module:
// scripts/test-deps.sh installs it, so its absence is a broken setup.
// With -short it skips, as the suite's node tests do.
func needPython(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("the Python websockets client is an external process; skipped with -short")
	}
	py := python()
	if py == "" {
		t.Fatal("no python3 imports websockets: run scripts/test-deps.sh (it apt-installs python3-websockets)")
	}
	return py
}

// pyClient is one run of bayeux_ws.py; events carries its lines until it
// exits, then is closed and err holds its exit status.
type pyClient struct {
	t      *testing.T
	args   string
	events chan pyEvent
	stderr nodetest.SyncBuffer
	lines  nodetest.SyncBuffer
	seen   []pyEvent // what came before "ready"
	err    error
}

// startPython runs bayeux_ws.py scenario against n's /bayeux for at most
// 30s.
func startPython(t *testing.T, n *nodetest.Node, scenario string, args ...string) *pyClient {
	t.Helper()
	py := needPython(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	argv := append([]string{"bayeux_ws.py", "ws://" + n.Addr + "/bayeux", scenario}, args...)
	cmd := exec.CommandContext(ctx, py, argv...)
	p := &pyClient{t: t, args: strings.Join(argv, " "), events: make(chan pyEvent, 1024)}
	cmd.Stderr = &p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.args, err)
	}
	go func() {
		defer cancel()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(&p.lines, sc.Text())
			var e pyEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = pyEvent{Event: "error", Error: fmt.Sprintf("not JSON: %q", sc.Text())}
			}
			p.events <- e
		}
		p.err = cmd.Wait()
		close(p.events)
	}()
	t.Cleanup(func() {
		cancel()
		for range p.events {
		}
	})
	return p
}

// fail ends the test with what the script and the node said.
func (p *pyClient) fail(n *nodetest.Node, format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("%s: %s\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s", p.args, fmt.Sprintf(format, args...), p.lines.String(), p.stderr.String(), n.Log())
}

// ready waits up to 10s for the script's "ready", keeping the events
// before it for finish.
func (p *pyClient) ready(n *nodetest.Node) {
	p.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-p.events:
			if !ok || e.Event == "error" {
				p.fail(n, "exited before ready: %v %v", e.Error, p.err)
			}
			if e.Event == "ready" {
				return
			}
			p.seen = append(p.seen, e)
		case <-timeout:
			p.fail(n, "not ready after 10s")
		}
	}
}

// finish waits for the script to exit and returns its events; it fails
// the test if the script exits non-zero or reports an error.
func (p *pyClient) finish(n *nodetest.Node) []pyEvent {
	p.t.Helper()
	evs := p.seen
	for e := range p.events {
		if e.Event == "error" {
			p.fail(n, "error: %v", e.Error)
		}
		evs = append(evs, e)
	}
	if p.err != nil {
		p.fail(n, "exit: %v", p.err)
	}
	p.t.Logf("%s:\n%s", p.args, p.lines.String())
	return evs
}

// closed is the code of the script's "closed" event, -1 without one.
func closed(evs []pyEvent) int {
	for _, e := range evs {
		if e.Event == "closed" {
			return e.Code
		}
	}
	return -1
}

// TestPythonWebsockets runs the scenarios that end with the client's own
// disconnect and close (1000, which the node must echo), one after the
// other on one node.
func TestPythonWebsockets(t *testing.T) {
	needPython(t)
	n := suite.Start(t)

	t.Run("basic", func(t *testing.T) {
		// published back to back, delivered to a client subscribed to
		// both /py/basic and /py/*: once each, in order.
		const total = 50
		p := startPython(t, n, "basic", fmt.Sprint(total))
		p.ready(n)
		for i := range total {
			if err := nodetest.Publish(n.URL(), adminToken, "/py/basic", map[string]int{"n": i}); err != nil {
				t.Fatal(err)
			}
		}
		evs := p.finish(n)
		var got []int
		for _, e := range evs {
			if e.Event != "data" {
				continue
			}
			var d struct{ N int }
			if err := json.Unmarshal(e.Data, &d); err != nil || e.Channel != "/py/basic" {
				p.fail(n, "delivery %s on %s", e.Data, e.Channel)
			}
			got = append(got, d.N)
		}
		if missing, dups, reordered := nodetest.ExactlyOnce(got, total); missing+dups+reordered > 0 || len(got) != total {
			p.fail(n, "got %v: %d missing %v, %d twice, %d out of order", got, missing, nodetest.MissingOf(got, total), dups, reordered)
		}
		if c := closed(evs); c != 1000 {
			p.fail(n, "close code %d, want the node to echo 1000", c)
		}
	})

	t.Run("fragmented", func(t *testing.T) {
		p := startPython(t, n, "fragmented")
		evs := p.finish(n)
		var replies, pongs, data int
		for _, e := range evs {
			switch e.Event {
			case "reply":
				if e.Successful == nil || !*e.Successful {
					t.Errorf("%s reply not successful: %+v", e.Channel, e)
				}
				if e.Fragmented {
					replies++
				}
			case "pong":
				pongs++
			case "data":
				data++
			}
		}
		// the subscribe and two publishes were fragmented; the ping
		// went between the subscribe's fragments.
		if replies != 3 || pongs != 1 || data != 2 {
			p.fail(n, "%d fragmented replies (want 3), %d pongs (want 1), %d deliveries (want 2): %+v", replies, pongs, data, evs)
		}
		if c := closed(evs); c != 1000 {
			t.Errorf("close code %d, want 1000", c)
		}
	})

	t.Run("ping", func(t *testing.T) {
		evs := startPython(t, n, "ping").finish(n)
		var sizes []int
		for _, e := range evs {
			if e.Event == "pong" {
				sizes = append(sizes, e.Size)
			}
		}
		if fmt.Sprint(sizes) != "[0 7 125]" {
			t.Errorf("pongs for pings of %v bytes, want [0 7 125]", sizes)
		}
		if c := closed(evs); c != 1000 {
			t.Errorf("close code %d, want 1000", c)
		}
	})
}

// TestPythonDrain holds a websocket session on a node that drains, by
// SIGTERM and by POST /admin/drain: as docs/server.md says, the held
// connect is answered, the next is answered with reconnect: retry,
// interval: 250, and the node closes the socket with 1001 (going away),
// in a close frame (websockets reports 1006 without one).
func TestPythonDrain(t *testing.T) {
	needPython(t)
	for _, how := range []string{"sigterm", "admin"} {
		t.Run(how, func(t *testing.T) {
			n := suite.Start(t)
			p := startPython(t, n, "drain")
			p.ready(n)
			if how == "sigterm" {
				n.Stop() // returns once the node has exited
			} else if err := n.Drain(nodeapi.DrainRequest{Window: nodeapi.Dur(0)}); err != nil {
				t.Fatal(err)
			}
			evs := p.finish(n)
			if c := closed(evs); c != 1001 {
				p.fail(n, "close code %d, want 1001", c)
			}
			// every connect reply advises retry; the last, which
			// answers the connect sent after the held one was released,
			// also asks for a pause before the next socket.
			var last pyEvent
			for _, e := range evs {
				if e.Event == "connect" {
					last = e
				}
			}
			if last.Advice["reconnect"] != "retry" || last.Advice["interval"] != 250.0 {
				p.fail(n, "last connect reply's advice %v, want reconnect: retry, interval: 250", last.Advice)
			}
			if how == "admin" {
				if exited, err := n.WaitExit(10 * time.Second); !exited || err != nil {
					t.Errorf("drained node: exited %v, %v", exited, err)
				}
			}
		})
	}
}
