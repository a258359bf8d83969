package main

import (
	"errors"
	"slices"
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
