package probe

import "testing"

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
