package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestIsCentrifugoPing(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  bool
	}{
		{"ping alone", `{}`, true},
		{"ping after a push", `{"push":{"channel":"/a","pub":{"data":{"t":1}}}}` + "\n{}", true},
		{"ping before a push", "{}\n" + `{"push":{"channel":"/a","pub":{"data":{}}}}`, true},
		{"push with empty data", `{"push":{"channel":"/a","pub":{"data":{}}}}`, false},
		{"connect reply", `{"id":1,"connect":{"client":"x","ping":25,"pong":true}}`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isCentrifugoPing([]byte(tt.frame)); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			r := centrifugoWire{}.reply(nil, []byte(tt.frame))
			if (r != nil) != tt.want || (r != nil && string(r) != "{}") {
				t.Fatalf("reply %q", r)
			}
		})
	}
}

// TestPublishBodies checks that each wire's publish request is valid JSON
// of the shape its server's API takes, and that the generator finds every
// message's send time in what the server pushes back.
func TestPublishBodies(t *testing.T) {
	data := `{"t":1700000000000000000,"text":"hi"}`
	tests := []struct {
		name string
		w    wire
		path string
		want string
	}{
		{"bayeux", bayeuxWire{}, "/publish", `[{"channel":"/a","data":{"t":1700000000000000000,"text":"hi"}},{"channel":"/b","data":{"t":1700000000000000000,"text":"hi"}}]`},
		{"centrifugo", centrifugoWire{}, "/api/batch", `{"commands":[{"publish":{"channel":"/a","data":{"t":1700000000000000000,"text":"hi"}}},{"publish":{"channel":"/b","data":{"t":1700000000000000000,"text":"hi"}}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			tt.w.beginBatch(&b)
			tt.w.item(&b, "/a", data)
			b.WriteByte(',')
			tt.w.item(&b, "/b", data)
			tt.w.endBatch(&b)
			if b.String() != tt.want {
				t.Fatalf("body\n%s\nwant\n%s", b.String(), tt.want)
			}
			if !json.Valid(b.Bytes()) {
				t.Fatal("not JSON")
			}
			if tt.w.publishPath() != tt.path {
				t.Fatalf("path %s", tt.w.publishPath())
			}
		})
	}
	// Centrifugo's push of such a publication.
	push := `{"push":{"channel":"/a","pub":{"data":` + data + `,"offset":3}}}` + "\n" + `{"push":{"channel":"/a","pub":{"data":` + data + `}}}`
	if n := scanDeliveries([]byte(push), 1700000000001000000, &latHist{}); n != 2 {
		t.Fatalf("found %d deliveries in a two-push frame", n)
	}
}

func TestCentrifugoCheckReply(t *testing.T) {
	if err := (centrifugoWire{}).checkReply([]byte(`{"replies":[{"publish":{}},{"publish":{}}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := (centrifugoWire{}).checkReply([]byte(`{"replies":[{"publish":{}},{"error":{"code":102,"message":"unknown channel"}}]}`)); err == nil {
		t.Fatal("a failed command in a batch passed")
	}
}

func TestCentrifugoConfig(t *testing.T) {
	b, err := centrifugoConfig(8123, "key")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		HTTPServer struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"http_server"`
		Client struct {
			Anonymous bool `json:"allow_anonymous_connect_without_token"`
		} `json:"client"`
		Channel struct {
			WithoutNamespace map[string]any `json:"without_namespace"`
		} `json:"channel"`
		HTTPAPI struct {
			Key string `json:"key"`
		} `json:"http_api"`
		UsageStats struct {
			Disabled bool `json:"disabled"`
		} `json:"usage_stats"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	// Anonymous access is only acceptable because it listens on loopback.
	if cfg.HTTPServer.Address != "127.0.0.1" || cfg.HTTPServer.Port != 8123 || !cfg.Client.Anonymous ||
		cfg.HTTPAPI.Key != "key" || !cfg.UsageStats.Disabled {
		t.Fatalf("config %s", b)
	}
	for k := range cfg.Channel.WithoutNamespace {
		if strings.Contains(k, "history") || strings.Contains(k, "presence") || strings.Contains(k, "recover") {
			t.Fatalf("config turns on %s: %s", k, b)
		}
	}
}

// deliverAll opens n sessions of w on addr subscribed to channel, publishes
// one message through pub and waits until each session has it.
func deliverAll(t *testing.T, w wire, addr string, n int, pub *publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var st genStats
	conns, err := openSessions(ctx, w, newDialers(1), addr, n, []string{"/x"}, n, &st)
	defer closeSessions(conns)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := startReaders(conns, &st)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	h := &latHist{}
	st.lat.Store(h)
	var body bytes.Buffer
	w.beginBatch(&body)
	w.item(&body, "/x", fmt.Sprintf(`{"t":%d,"text":"hi"}`, time.Now().UnixNano()))
	w.endBatch(&body)
	if err := pub.post(ctx, body.Bytes()); err != nil {
		t.Fatal(err)
	}
	for st.deliveries.Load() < int64(n) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if got := st.deliveries.Load(); got != int64(n) {
		t.Fatalf("%d deliveries, want %d", got, n)
	}
	if _, _, max, c := h.h.quantiles(); c != uint64(n) || max <= 0 || max > 5000 {
		t.Fatalf("latency max %vms over %d, want %d", max, c, n)
	}
	if c := st.closed.Load(); c != 0 {
		t.Fatalf("%d sessions closed by the server", c)
	}
}

// TestCentrifugoDriver is a smoke test of the generator against a real
// Centrifugo: connect, subscribe, a publication through the server API's
// batch, pushed to every session; a publish with a wrong key fails; churn
// completes handshakes. It needs scripts/build-centrifugo.sh to have run
// (a cold build takes minutes, so scripts/test-deps.sh does not).
func TestCentrifugoDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts centrifugo")
	}
	bin, err := centrifugoBinary()
	if errors.Is(err, errNoCentrifugo) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := startCentrifugo(context.Background(), centrifugoOptions{Binary: bin, APIKey: "key", CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	w := centrifugoWire{}
	pub := &publisher{w: w, url: "http://" + p.Addr + w.publishPath(), token: "key", channels: []string{"/x"}, hc: http.DefaultClient}
	deliverAll(t, w, p.Addr, 3, pub)

	bad := &publisher{w: w, url: pub.url, token: "wrong", hc: http.DefaultClient}
	if err := bad.post(context.Background(), []byte(`{"commands":[{"publish":{"channel":"/x","data":{}}}]}`)); err == nil {
		t.Fatal("a publish with a wrong API key passed")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if ok, failed := churn(ctx, w, newDialers(1), p.Addr, 2); ok == 0 || failed != 0 {
		t.Fatalf("churn: %d handshakes, %d failed", ok, failed)
	}
}

// TestBareWriter checks the bare-write server with the generator: the
// same Bayeux sessions, one frame per delivery shaped as the ws node's.
func TestBareWriter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeBare(ctx, "127.0.0.1:0", "tok", pw) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	line, err := readLine(pr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	addr, ok := parseFayeListening(line)
	if !ok {
		t.Fatalf("no address in %q", line)
	}
	w := bayeuxWire{}
	pub := &publisher{w: w, url: "http://" + addr + "/publish", token: "tok", channels: []string{"/x"}, hc: http.DefaultClient}
	deliverAll(t, w, addr, 3, pub)
	bad := &publisher{w: w, url: pub.url, token: "wrong", hc: http.DefaultClient}
	if err := bad.post(context.Background(), []byte(`[]`)); err == nil {
		t.Fatal("a publish with a wrong token passed")
	}
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := r.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

func TestAppendServerFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte("x"), n)
		payload, op, fin, size, ok := parseFrame(appendServerFrame(nil, p))
		if !ok || size < 0 || !fin || op != 1 || !bytes.Equal(payload, p) {
			t.Fatalf("%d bytes: op %d fin %v size %d ok %v", n, op, fin, size, ok)
		}
	}
	if got := wsAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept key %s", got)
	}
}
