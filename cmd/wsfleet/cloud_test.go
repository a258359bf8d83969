package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestImageFlags(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "node")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in      string
		wantErr bool
		sim     bool
		cmd     string
	}{
		{"ami-sim=simulated", false, true, ""},
		{"ami-new=" + exe, false, false, exe},
		{"ami-x=/no/such/binary", true, false, ""},
		{"sim=simulated", true, false, ""},
		{"ami-x", true, false, ""},
		{"ami-x=", true, false, ""},
	} {
		f := imageFlags{}
		err := f.Set(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("Set(%q): err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		for _, im := range f {
			if im.Simulated != tc.sim || im.Command != tc.cmd {
				t.Errorf("Set(%q) = %+v", tc.in, im)
			}
		}
	}
	f := imageFlags{}
	f.Set("ami-a=simulated")
	if err := f.Set("ami-a=simulated"); err == nil {
		t.Error("duplicate image accepted")
	}
}

// TestDefaultS3Dir: one folder per fixed listen address under the state
// directory, none (a temporary one) for a random port.
func TestDefaultS3Dir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/state")
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:4566", "/state/wsfleet/cloud-s3/127.0.0.1_4566"},
		{":4566", "/state/wsfleet/cloud-s3/all_4566"},
		{"[::1]:4567", "/state/wsfleet/cloud-s3/__1_4567"},
		{"127.0.0.1:0", ""},
		{"nonsense", ""},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			if got := defaultS3Dir(tc.listen); got != tc.want {
				t.Errorf("defaultS3Dir(%q) = %q, want %q", tc.listen, got, tc.want)
			}
		})
	}
}
