package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchSoakArgs checks that `wsfleet bench soak` reaches the soak,
// with its own flags: a bad flag is a usage error, and a nats-server that
// does not exist fails the run naming it, before any session is opened.
func TestBenchSoakArgs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"bad flag", []string{"soak", "--no-such-flag"}, true, ""},
		{"bench flag", []string{"soak", "--quick"}, true, ""},
		{"no nats-server", []string{"soak", "--duration", "1s", "--out", "", "--nats-server", filepath.Join(t.TempDir(), "nats-server")}, false, "nats-server"},
		{"judge: no such file", []string{"soak", "--judge", filepath.Join(t.TempDir(), "soak.json"), "--out", ""}, false, "soak.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runBench(context.Background(), tc.args, &stdout, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Fatalf("err = %v; usage error: %v, want %v", err, errors.Is(err, errUsage), tc.usage)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
}
