package broker

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckVersion is the version rule a node applies to the server it
// connects to: older than MinNATSServer (or unreadable) is refused with an
// error naming the version needed; 2.10 and later take several filter
// subjects in one consumer.
func TestCheckVersion(t *testing.T) {
	tests := []struct {
		raw         string
		ok          bool
		multiFilter bool
	}{
		{"2.8.4", false, false},
		{"2.2.0", false, false},
		{"1.4.1", false, false},
		{"garbage", false, false},
		{"2.9", false, false},
		{"2.9.0", true, false},
		{"2.9.10", true, false},
		{"v2.9.25", true, false},
		{"2.10.0-RC.1", true, true},
		{"2.10.0", true, true},
		{"2.15.2", true, true},
		{"3.0.0", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			v, err := checkVersion(tc.raw, "nats://x:4222")
			if !tc.ok {
				if !errors.Is(err, ErrNATSTooOld) || !strings.Contains(err.Error(), "needs nats-server "+MinNATSServer) {
					t.Fatalf("checkVersion(%q) = %v; want ErrNATSTooOld naming %s", tc.raw, err, MinNATSServer)
				}
				return
			}
			if err != nil {
				t.Fatalf("checkVersion(%q): %v", tc.raw, err)
			}
			if got := v.atLeast(multiFilterVersion); got != tc.multiFilter {
				t.Fatalf("%q multi-filter = %v, want %v", tc.raw, got, tc.multiFilter)
			}
		})
	}
}
