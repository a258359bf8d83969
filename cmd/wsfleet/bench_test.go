package main

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseRates(t *testing.T) {
	tests := []struct {
		in   string
		want []float64
		bad  bool
	}{
		{"", nil, false},
		{"20000,40000", []float64{20000, 40000}, false},
		{" 1e4 , 5000 ,", []float64{10000, 5000}, false},
		{"20000,0", nil, true},
		{"-5", nil, true},
		{"fast", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseRates("--fixed-rates", tt.in)
			if tt.bad {
				if !errors.Is(err, errUsage) {
					t.Fatalf("got %v, %v; want a usage error", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestBenchDemoUsage: numbers and addresses from the command line that are
// out of range are usage errors naming the flag, before anything runs.
func TestBenchDemoUsage(t *testing.T) {
	tests := []struct {
		name string
		run  func(args []string) error
		args []string
		want string
	}{
		{"bench rounds above 20", func(a []string) error { return runBench(context.Background(), a, io.Discard, io.Discard) }, []string{"--fixed-rounds", "21"}, "--fixed-rounds"},
		{"bench rounds negative", func(a []string) error { return runBench(context.Background(), a, io.Discard, io.Discard) }, []string{"--fixed-rounds", "-1"}, "--fixed-rounds"},
		{"demo nats not a URL", func(a []string) error { return runDemo(context.Background(), a, io.Discard, io.Discard) }, []string{"--nats", "127.0.0.1:4222"}, "--nats"},
		{"demo nats http", func(a []string) error { return runDemo(context.Background(), a, io.Discard, io.Discard) }, []string{"--nats", "http://127.0.0.1:4222"}, "--nats"},
		{"demo nats and a cluster", func(a []string) error { return runDemo(context.Background(), a, io.Discard, io.Discard) }, []string{"--nats", "nats://127.0.0.1:4222", "--nats-cluster", "3"}, "--nats-cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(tt.args)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want a usage error naming %s", err, tt.want)
			}
		})
	}
}
