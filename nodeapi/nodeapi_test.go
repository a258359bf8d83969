package nodeapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeDrainRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       DrainRequest
		err        string
	}{
		{name: "empty", body: "", want: DrainRequest{}},
		{name: "spaces", body: " \n", want: DrainRequest{}},
		{name: "all", body: `{"window":"30s","max_rate":200,"deadline":"5m"}`,
			want: DrainRequest{Window: Dur(30 * time.Second), MaxRate: 200, Deadline: Dur(5 * time.Minute)}},
		{name: "zero is not default", body: `{"window":"0s"}`, want: DrainRequest{Window: Dur(0)}},
		{name: "unknown field", body: `{"windw":"30s"}`, err: `unknown field "windw"`},
		{name: "trailing garbage", body: `{"window":"1s"} x`, err: "data after the JSON value"},
		{name: "two values", body: `{} {}`, err: "data after the JSON value"},
		{name: "number duration", body: `{"window":30}`, err: `want a string such as "30s"`},
		{name: "bad duration", body: `{"deadline":"5 minutes"}`, err: `duration "5 minutes"`},
		{name: "negative", body: `{"window":"-1s"}`, err: "window -1s: want 0 to 24h0m0s"},
		{name: "too long", body: `{"deadline":"25h"}`, err: "deadline 25h0m0s: want 0 to 24h0m0s"},
		{name: "rate", body: `{"max_rate":-1}`, err: "max_rate -1: want 0 to 1e+06 per second"},
		// a value that is not an object, a field named in another case
		// (encoding/json matches names case-insensitively) and a field
		// given twice (the last would win) are not understood either
		{name: "null", body: `null`, err: "want a JSON object"},
		{name: "array", body: `[]`, err: "want a JSON object"},
		{name: "string", body: `"30s"`, err: "want a JSON object"},
		{name: "case", body: `{"Window":"30s"}`, err: `unknown field "Window"`},
		{name: "upper case", body: `{"MAX_RATE":1}`, err: `unknown field "MAX_RATE"`},
		{name: "twice", body: `{"window":"1s","window":"30m"}`, err: `field "window" given twice`},
		{name: "empty object", body: `{ }`, want: DrainRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeDrainRequest([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadRequest) {
					t.Fatalf("err = %v, want one containing %q wrapping ErrBadRequest", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestDrainRequestRoundTrip pins the wire form older nodes parse: Go
// duration strings, and no field at all for a default.
func TestDrainRequestRoundTrip(t *testing.T) {
	b, err := json.Marshal(DrainRequest{Window: Dur(1500 * time.Millisecond), MaxRate: 50})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"window":"1.5s","max_rate":50}`; got != want {
		t.Fatalf("wire form %s, want %s", got, want)
	}
	r, err := DecodeDrainRequest(b)
	if err != nil || r.Window == nil || r.Window.D() != 1500*time.Millisecond || r.MaxRate != 50 || r.Deadline != nil {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
}

func TestSupports(t *testing.T) {
	for _, tc := range []struct {
		reported, asked int
		want            bool
	}{{0, 1, true}, {0, 2, false}, {1, 1, true}, {2, 1, true}, {2, 3, false}} {
		if got := (Status{APIVersion: tc.reported}).Supports(tc.asked); got != tc.want {
			t.Errorf("node at %d supports %d = %v, want %v", tc.reported, tc.asked, got, tc.want)
		}
	}
}

func FuzzDecodeDrainRequest(f *testing.F) {
	f.Add([]byte(`{"window":"30s","max_rate":200,"deadline":"5m"}`))
	f.Add([]byte(`{"window":"-1s"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeDrainRequest(b)
		if err != nil {
			return
		}
		if (r.Window != nil && r.Window.D() < 0) || (r.Deadline != nil && r.Deadline.D() > MaxDrainDuration) || r.MaxRate < 0 || r.MaxRate > MaxDrainRate {
			t.Fatalf("accepted out of range: %+v", r)
		}
	})
}
