//go:build linux

package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSteerReceive sets the mask to every core but the servers' and puts
// the old one back, on a file of the test's own (never the machine's).
func TestSteerReceive(t *testing.T) {
	old := loRPS
	t.Cleanup(func() { loRPS = old })
	loRPS = filepath.Join(t.TempDir(), "rps_cpus")
	read := func() string {
		b, err := os.ReadFile(loRPS)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	tests := []struct {
		name            string
		server, cpus    int
		before, steered string
		bad             bool
	}{
		{"two cores, servers on 0", 0, 2, "0", "2", false},
		{"two cores, servers on 1", 1, 2, "0", "1", false},
		{"four cores, servers on 1", 1, 4, "00000000,00000000", "d", false},
		{"servers not pinned", -1, 2, "0", "", true},
		{"one core", 0, 1, "0", "", true},
		{"more cores than the mask holds", 0, 65, "0", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(loRPS, []byte(tt.before+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			restore, err := steerReceive(tt.server, tt.cpus)
			if tt.bad {
				if err == nil {
					t.Fatal("no error")
				}
				if got := read(); got != tt.before {
					t.Fatalf("mask %q after a refusal, want %q untouched", got, tt.before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := read(); got != tt.steered {
				t.Fatalf("steered mask %q, want %q", got, tt.steered)
			}
			if err := restore(); err != nil {
				t.Fatal(err)
			}
			if got := read(); got != tt.before {
				t.Fatalf("mask %q after restore, want %q", got, tt.before)
			}
		})
	}
	// A mask that cannot be written is an error naming the file.
	loRPS = filepath.Join(t.TempDir(), "missing", "rps_cpus")
	if _, err := steerReceive(0, 2); err == nil || !strings.Contains(err.Error(), "rps_cpus") {
		t.Fatalf("missing file: %v", err)
	}
}
