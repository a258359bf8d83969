package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestAppendTextHeader(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{0xffff, []byte{0x81, 126, 0xff, 0xff}},
		{0x10000, binary.BigEndian.AppendUint64([]byte{0x81, 127}, 0x10000)},
	} {
		if got := appendHeader(nil, ws.OpText, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("header for %d bytes: % x, want % x", tc.n, got, tc.want)
		}
	}
}

// TestDeliveryFrameSizes delivers messages whose frames need each length
// encoding (7-bit, 16-bit and 64-bit) to a real websocket client: the
// node writes those frames itself, not through the library.
func TestDeliveryFrameSizes(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxMessageBytes = 1 << 20 })
	p := dialWS(t, n)
	p.handshake(nil)
	p.subscribe("/big", nil)
	for _, size := range []int{1, 90, 200, 70_000, 300_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := strings.Repeat("x", size)
			if code, res := n.publish(fmt.Sprintf(`{"channel":"/big","data":%q}`, data)); code != 200 || !res[0].Successful {
				t.Fatalf("publish: %d %+v", code, res)
			}
			got := p.dataN(1)
			if got[0]["data"] != data {
				t.Fatalf("received %d bytes of data, want %d", len(fmt.Sprint(got[0]["data"])), size)
			}
		})
	}
	// the socket still works after the large frames
	p.sendRaw([]byte("[]"))
	p.next(func(m msg) bool { return m["pong"] == true })
	p.noData(50 * time.Millisecond)
}

func TestFrameLen(t *testing.T) {
	for _, q := range [][]outMsg{nil, {{b: []byte(`{"a":1}`)}}, {{b: []byte(`{}`)}, {b: []byte(`{"b":[2]}`)}, {b: []byte(`{"c":"3"}`)}}} {
		f := frame(q)
		if n := frameLen(q); n != len(f) {
			t.Errorf("frameLen %d, frame %q is %d bytes", n, f, len(f))
		}
	}
}

// TestDeliveryHotPath: a delivery to a websocket whose socket is free is
// queued and written by the flusher with nothing allocated (no goroutine
// started, no queue array, no frame buffer), and every delivery arrives,
// in order, one Bayeux message each: built into a pooled buffer, or
// written from the frame onBroker built once for all subscribers
// (outMsg.alone).
func TestDeliveryHotPath(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.Timeout = time.Hour })
			c, ss := rawSubscriber(t, n, "/a")
			m := outMsg{published: 1, b: stampSeq([]byte(`{"channel":"/a","data":"x"}`), 1)}
			if shared {
				m.b, m.alone = framedDelivery(m.b)
			}
			seq := uint64(0)
			written := func() bool {
				ss.mu.Lock()
				defer ss.mu.Unlock()
				return !ss.writing && !ss.ready && len(ss.queue) == 0
			}
			deliver := func() {
				seq++
				m.seq = seq
				ss.deliver(m)
				for end := time.Now().Add(10 * time.Second); !written(); runtime.Gosched() {
					if time.Now().After(end) {
						t.Fatalf("delivery %d not written", seq)
					}
				}
			}
			deliver() // warm the pools
			if allocs := testing.AllocsPerRun(100, deliver); allocs != 0 && !raceOn {
				t.Errorf("%v allocations per delivery, want none", allocs)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for got := uint64(0); got < seq; {
				b, err := wsutil.ReadServerText(c)
				if err != nil {
					t.Fatalf("after %d deliveries: %v", got, err)
				}
				var ms []msg
				if err := json.Unmarshal(b, &ms); err != nil || len(ms) == 0 {
					t.Fatalf("frame %.200s: %v", b, err)
				}
				for _, m := range ms {
					got++
					if m["channel"] != "/a" || m["data"] != "x" {
						t.Fatalf("delivery %d: %v", got, m)
					}
				}
			}
		})
	}
}

// TestFramedDelivery: the frame built once per message is the text frame
// a websocket writer builds for that message alone, for each length
// encoding, and the message it returns is the one given.
func TestFramedDelivery(t *testing.T) {
	for _, size := range []int{0, 100, 200, 70_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			b := []byte(`{"data":"` + strings.Repeat("x", size) + `"}`)
			got, alone := framedDelivery(bytes.Clone(b))
			if !bytes.Equal(got, b) {
				t.Fatalf("message %.40q, want %.40q", got, b)
			}
			q := []outMsg{{b: b}}
			want := append(appendHeader(nil, ws.OpText, frameLen(q)), frame(q)...)
			if !bytes.Equal(*alone, want) {
				t.Fatalf("frame %.40q..., want %.40q...", *alone, want)
			}
			if cap(got) != len(got) {
				t.Errorf("message capacity %d beyond its %d bytes: an append would write into the frame", cap(got), len(got))
			}
		})
	}
}

// TestInlineWriteAfterDeadline: writes that never block set no deadline of
// their own, yet the socket's write deadline, set by an earlier blocking
// write, must not fail them once it has passed.
func TestInlineWriteAfterDeadline(t *testing.T) {
	n := startNode(t, func(c *Config) { c.WriteTimeout = 100 * time.Millisecond })
	p := dialWS(t, n)
	p.handshake(nil)
	p.subscribe("/a", nil)
	for i := range 3 {
		if code, res := n.publish(fmt.Sprintf(`{"channel":"/a","data":%d}`, i)); code != 200 || !res[0].Successful {
			t.Fatalf("publish: %d %+v", code, res)
		}
		if got := p.dataN(1); got[0]["data"] != float64(i) {
			t.Fatalf("received %v, want data %d", got, i)
		}
		time.Sleep(250 * time.Millisecond) // past the deadline
	}
}

// TestDeliveryBackpressure: deliveries to a client that stops reading fill
// its socket; the frame the socket took in part is finished by a writer
// goroutine before anything else, and once the client reads again every
// message arrives, whole and in order.
func TestDeliveryBackpressure(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			n := startNode(t, func(c *Config) {
				c.Timeout = time.Hour
				c.QueueLimit = 10_000
				c.WSSendBuffer = 4096
			})
			c, ss := rawSubscriber(t, n, "/a")
			const total = 2000
			text := strings.Repeat("y", 1000)
			for seq := uint64(1); seq <= total; seq++ {
				m := outMsg{seq: seq, published: 1, b: stampSeq([]byte(fmt.Sprintf(`{"channel":"/a","data":%q}`, text)), seq)}
				if shared {
					m.b, m.alone = framedDelivery(m.b)
				}
				ss.deliver(m)
			}
			readDeliveries(t, c, total, text)
		})
	}
}

// TestDeliverySharedFrameRest: when a socket takes only part of a frame
// shared by all of a message's subscribers, the rest is kept as this
// socket's own copy and goes out first once the socket drains: the client
// reads every delivery whole and in order.
func TestDeliverySharedFrameRest(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.Timeout = time.Hour
		c.QueueLimit = 10_000
		c.WSSendBuffer = 4096
	})
	c, ss := rawSubscriber(t, n, "/a")
	if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("z", 999)
	stuck := false // a frame did not go out at once: the socket was full
	var seq uint64
	for seq = 1; seq <= 20_000 && !stuck; seq++ {
		m := outMsg{seq: seq, published: 1, b: stampSeq([]byte(fmt.Sprintf(`{"channel":"/a","data":%q}`, text)), seq)}
		m.b, m.alone = framedDelivery(m.b)
		ss.deliver(m) // alone in the queue: written from the shared frame
		for end := time.Now().Add(200 * time.Millisecond); ; runtime.Gosched() {
			ss.mu.Lock()
			done := !ss.writing && !ss.ready && len(ss.queue) == 0
			ss.mu.Unlock()
			if done {
				break
			}
			if time.Now().After(end) {
				stuck = true
				break
			}
		}
	}
	if !stuck {
		t.Fatalf("%d deliveries went out at once: the socket never filled", seq-1)
	}
	total := seq - 1
	readDeliveries(t, c, total, text)
}

// readDeliveries reads deliveries 1..total from c, each whole and in
// order, with data text.
func readDeliveries(t *testing.T, c net.Conn, total uint64, text string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for next := uint64(1); next <= total; {
		b, err := wsutil.ReadServerText(c)
		if err != nil {
			t.Fatalf("reading delivery %d of %d: %v", next, total, err)
		}
		var ms []msg
		if err := json.Unmarshal(b, &ms); err != nil {
			t.Fatalf("frame %.200s: %v", b, err)
		}
		for _, m := range ms {
			if seqOf(m) != next || m["data"] != text {
				t.Fatalf("delivery %d: seq %d, %d bytes of data", next, seqOf(m), len(fmt.Sprint(m["data"])))
			}
			next++
		}
	}
}

// rawSubscriber opens the node's only session, subscribed to channel with
// its connect held, on a socket the test reads itself (sinkSession), and
// returns the socket and the node's session.
func rawSubscriber(t *testing.T, n *node, channel string) (net.Conn, *session) {
	t.Helper()
	c, err := sinkSession("ws"+strings.TrimPrefix(n.url, "http")+"/bayeux", channel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n.srv.mu.RLock()
	defer n.srv.mu.RUnlock()
	if len(n.srv.sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(n.srv.sessions))
	}
	for _, ss := range n.srv.sessions {
		return c, ss
	}
	return c, nil
}
