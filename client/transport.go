package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"wsfleet/bayeux"
)

// transport carries batches of Bayeux messages to the server. Whatever the
// server sends back (responses and deliveries alike) goes to the receive
// function given when the transport was opened, so the client handles both
// transports with one dispatcher.
type transport interface {
	// send writes msgs. For long-polling it returns once the server has
	// answered the request and the answer has been received; for a
	// websocket it returns once the frame is written.
	send(ctx context.Context, msgs []bayeux.Message) error
	// done is closed when the transport can carry nothing more.
	done() <-chan struct{}
	// err says why done was closed.
	err() error
	close()
}

// wsTransport is one websocket connection; a reader goroutine hands every
// frame to receive.
type wsTransport struct {
	conn    *websocket.Conn
	receive func([]bayeux.Message)
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	cause   error
}

// wsURL turns an http(s) Bayeux endpoint into its ws(s) form.
func wsURL(u string) string {
	switch {
	case strings.HasPrefix(u, "http://"):
		return "ws://" + strings.TrimPrefix(u, "http://")
	case strings.HasPrefix(u, "https://"):
		return "wss://" + strings.TrimPrefix(u, "https://")
	}
	return u
}

func dialWebSocket(ctx context.Context, url string, hc *http.Client, readLimit int64, receive func([]bayeux.Message)) (*wsTransport, error) {
	conn, resp, err := websocket.Dial(ctx, wsURL(url), &websocket.DialOptions{
		HTTPClient:      hc,
		CompressionMode: websocket.CompressionDisabled,
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dial websocket %s: %w", url, err)
	}
	conn.SetReadLimit(readLimit)
	t := &wsTransport{conn: conn, receive: receive, closed: make(chan struct{})}
	go t.readLoop()
	return t, nil
}

func (t *wsTransport) readLoop() {
	for {
		_, data, err := t.conn.Read(context.Background())
		if err != nil {
			t.fail(fmt.Errorf("read websocket: %w", err))
			return
		}
		msgs, err := bayeux.DecodeMessages(data)
		if err != nil {
			if errors.Is(err, bayeux.ErrEmptyBatch) {
				continue
			}
			t.fail(err)
			return
		}
		if len(msgs) > 0 {
			t.receive(msgs)
		}
	}
}

func (t *wsTransport) fail(err error) {
	t.once.Do(func() {
		t.mu.Lock()
		t.cause = err
		t.mu.Unlock()
		close(t.closed)
		t.conn.CloseNow()
	})
}

func (t *wsTransport) send(ctx context.Context, msgs []bayeux.Message) error {
	b, err := json.Marshal(msgs)
	if err != nil {
		return fmt.Errorf("encode bayeux messages: %w", err)
	}
	if err := t.conn.Write(ctx, websocket.MessageText, b); err != nil {
		err = fmt.Errorf("write websocket: %w", err)
		if ctx.Err() == nil {
			t.fail(err)
		}
		return err
	}
	return nil
}

func (t *wsTransport) done() <-chan struct{} { return t.closed }

func (t *wsTransport) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cause
}

func (t *wsTransport) close() { t.fail(errClosed) }

// lpTransport is long-polling: every send is one POST whose response body
// carries the answers. It has no connection of its own to lose; a failed
// request is reported to the caller, and the connect loop decides.
type lpTransport struct {
	url     string
	hc      *http.Client
	receive func([]bayeux.Message)
	closed  chan struct{}
	once    sync.Once
}

func newLongPolling(url string, hc *http.Client, receive func([]bayeux.Message)) *lpTransport {
	return &lpTransport{url: url, hc: hc, receive: receive, closed: make(chan struct{})}
}

func (t *lpTransport) send(ctx context.Context, msgs []bayeux.Message) error {
	b, err := json.Marshal(msgs)
	if err != nil {
		return fmt.Errorf("encode bayeux messages: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("long-polling request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.hc.Do(req)
	if err != nil {
		return fmt.Errorf("long-polling post: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("long-polling read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("long-polling post: status %d", resp.StatusCode)
	}
	out, err := bayeux.DecodeMessages(body)
	if err != nil && !errors.Is(err, bayeux.ErrEmptyBatch) {
		return fmt.Errorf("long-polling response: %w", err)
	}
	if len(out) > 0 {
		t.receive(out)
	}
	return nil
}

func (t *lpTransport) done() <-chan struct{} { return t.closed }
func (t *lpTransport) err() error            { return errClosed }
func (t *lpTransport) close()                { t.once.Do(func() { close(t.closed) }) }
