// Command wsload holds many idle Bayeux websocket sessions open against a
// ws node, to measure what an idle session costs the node. It runs as its
// own process (so the node's RSS is the node's alone) and spreads its
// connections over several 127.0.0.x source addresses, so that one
// loopback address's ephemeral ports are not the limit.
//
//	go run ./server/internal/wsload -url ws://127.0.0.1:8080/bayeux -n 10000
//
// Each session handshakes, subscribes to one channel, and answers every
// /meta/connect reply with the next /meta/connect, as faye and halley do.
// It prints a line when all are up and keeps them until interrupted.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/bayeux", "Bayeux websocket URL")
	n := flag.Int("n", 10000, "sessions to open")
	sources := flag.Int("sources", 10, "127.0.0.x source addresses to spread over (x = 2..)")
	rate := flag.Int("rate", 1000, "new sessions per second")
	hold := flag.Duration("hold", 0, "exit after this long once all are up (0: until interrupted)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	clients := make([]*http.Client, *sources)
	for i := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}, Timeout: 10 * time.Second}
		clients[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	var up, failed atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	start := time.Now()
	for i := 0; i < *n; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := session(ctx, clients[i%len(clients)], *url, i, &up); err != nil && ctx.Err() == nil {
				if failed.Add(1) <= 5 {
					fmt.Fprintf(os.Stderr, "session %d: %v\n", i, err)
				}
			}
		}(i)
	}
	for up.Load()+failed.Load() < int64(*n) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("sessions up=%d failed=%d in %v\n", up.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	if *hold > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(*hold):
		}
		stop()
	} else {
		<-ctx.Done()
	}
	wg.Wait()
}

type message struct {
	Channel    string `json:"channel"`
	ClientID   string `json:"clientId,omitempty"`
	Successful *bool  `json:"successful,omitempty"`
	Error      string `json:"error,omitempty"`
}

func session(ctx context.Context, hc *http.Client, url string, i int, up *atomic.Int64) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: hc})
	cancel()
	if err != nil {
		return err
	}
	defer c.CloseNow()
	write := func(v any) error {
		b, _ := json.Marshal(v)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.Write(wctx, websocket.MessageText, b)
	}
	if err := write([]map[string]any{{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"websocket"}}}); err != nil {
		return err
	}
	counted := false
	defer func() {
		if counted {
			up.Add(-1)
		}
	}()
	var id string
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var ms []message
		if err := json.Unmarshal(b, &ms); err != nil {
			return err
		}
		for _, m := range ms {
			if m.Successful != nil && !*m.Successful {
				return fmt.Errorf("%s: %s", m.Channel, m.Error)
			}
			switch m.Channel {
			case "/meta/handshake":
				id = m.ClientID
				err = write([]map[string]any{
					{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"},
					{"channel": "/meta/subscribe", "clientId": id, "subscription": fmt.Sprintf("/load/%d", i%100)},
				})
			case "/meta/subscribe":
				if !counted {
					counted = true
					up.Add(1)
				}
			case "/meta/connect":
				err = write([]map[string]any{{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}})
			}
			if err != nil {
				return err
			}
		}
	}
}
