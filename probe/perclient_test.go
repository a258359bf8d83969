package probe

import (
	"testing"
	"time"

	"wsfleet/client"
)

func TestClientURL(t *testing.T) {
	tests := []struct {
		name, url, param string
		i                int
		want             string
	}{
		{"no parameter", "http://127.0.0.1:8000/bayeux", "", 7, "http://127.0.0.1:8000/bayeux"},
		{"added", "http://127.0.0.1:8000/bayeux", "demo_client", 7, "http://127.0.0.1:8000/bayeux?demo_client=7"},
		{"beside a query", "http://h/bayeux?x=1", "demo_client", 0, "http://h/bayeux?x=1&demo_client=0"},
		{"escaped", "http://h/bayeux", "a b", 12, "http://h/bayeux?a+b=12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Probe{cfg: Config{URL: tt.url, ClientParam: tt.param}}
			if got := p.clientURL(tt.i); got != tt.want {
				t.Errorf("clientURL(%d) = %q, want %q", tt.i, got, tt.want)
			}
		})
	}
}

func TestClientUps(t *testing.T) {
	p := &Probe{errors: map[string]int64{}}
	t0 := time.Unix(1000, 0)
	a, b := &member{p: p, maxN: -1}, &member{p: p, maxN: -1}
	p.members = []*member{a, b}
	a.onState(client.State{Up: true, At: t0})
	a.subAt = t0
	a.onState(client.State{Up: false, At: t0.Add(time.Second)})
	a.onState(client.State{Up: true, At: t0.Add(2 * time.Second)})
	a.closing = true
	a.onState(client.State{Up: true, At: t0.Add(3 * time.Second)}) // closing: not counted
	got := p.ClientUps()
	if len(got) != 2 || len(got[0]) != 2 || !got[0][0].Equal(t0) || !got[0][1].Equal(t0.Add(2*time.Second)) || len(got[1]) != 0 {
		t.Errorf("ClientUps = %v, want [[t0 t0+2s] []]", got)
	}
	if a.reconn != 1 {
		t.Errorf("reconnects = %d, want 1", a.reconn)
	}
}
