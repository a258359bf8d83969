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
		t.Run(tc.name, func(t *testing.T) { checkDecode(t, DecodeDrainRequest, tc.body, tc.want, tc.err) })
	}
}

// checkDecode checks one case of a decoder's table: err empty, that body
// decodes to want; otherwise that it is refused with an error containing
// err and wrapping ErrBadRequest.
func checkDecode[T any](t *testing.T, decode func([]byte) (T, error), body string, want T, err string) {
	t.Helper()
	got, gotErr := decode([]byte(body))
	if err != "" {
		if gotErr == nil || !strings.Contains(gotErr.Error(), err) || !errors.Is(gotErr, ErrBadRequest) {
			t.Fatalf("err = %v, want one containing %q wrapping ErrBadRequest", gotErr, err)
		}
		return
	}
	if gotErr != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, gotErr, want)
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

func TestDecodeShedRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       ShedRequest
		err        string
	}{
		{name: "all", body: `{"id":"r1/ws-01","count":25,"window":"30s","max_rate":20}`,
			want: ShedRequest{ID: "r1/ws-01", Count: 25, Window: Dur(30 * time.Second), MaxRate: 20}},
		{name: "count only", body: `{"count":3}`, want: ShedRequest{Count: 3}},
		{name: "count zero", body: `{"count":0}`, want: ShedRequest{}},
		{name: "zero window is not default", body: `{"count":1,"window":"0s"}`, want: ShedRequest{Count: 1, Window: Dur(0)}},
		{name: "bounds", body: `{"count":1000000,"window":"1h","max_rate":100000}`,
			want: ShedRequest{Count: MaxShedCount, Window: Dur(time.Hour), MaxRate: MaxShedRate}},
		{name: "empty", body: ``, err: "count is required: want 0 to 1000000"},
		{name: "empty object", body: `{}`, err: "count is required: want 0 to 1000000"},
		{name: "null", body: `null`, err: "want a JSON object"},
		{name: "negative count", body: `{"count":-1}`, err: "count -1: want 0 to 1000000"},
		{name: "count too big", body: `{"count":1000001}`, err: "count 1000001: want 0 to 1000000"},
		{name: "fractional count", body: `{"count":2.5}`, err: "count"},
		{name: "window too long", body: `{"count":1,"window":"1h0m1s"}`, err: "window 1h0m1s: want 0 to 1h0m0s"},
		{name: "negative window", body: `{"count":1,"window":"-2s"}`, err: "window -2s: want 0 to 1h0m0s"},
		{name: "rate too high", body: `{"count":1,"max_rate":100000.5}`, err: "max_rate 100000.5: want 0 to 100000 per second"},
		{name: "negative rate", body: `{"count":1,"max_rate":-3}`, err: "max_rate -3: want 0 to 100000 per second"},
		{name: "long id", body: `{"count":1,"id":"` + strings.Repeat("a", 129) + `"}`, err: "id of 129 bytes: want at most 128"},
		{name: "unknown field", body: `{"count":1,"share":0.1}`, err: `unknown field "share"`},
		{name: "case", body: `{"Count":1}`, err: `unknown field "Count"`},
		{name: "twice", body: `{"count":1,"count":900}`, err: `field "count" given twice`},
		{name: "trailing", body: `{"count":1} {}`, err: "data after the JSON value"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkDecode(t, DecodeShedRequest, tc.body, tc.want, tc.err) })
	}
}

func TestDecodeCordonRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       CordonRequest
		err        string
	}{
		{name: "cordon", body: `{"cordoned":true}`, want: CordonRequest{Cordoned: true}},
		{name: "uncordon", body: `{"cordoned":false}`, want: CordonRequest{}},
		{name: "empty", body: ``, err: "cordoned is required"},
		{name: "empty object", body: `{}`, err: "cordoned is required"},
		{name: "null", body: `null`, err: "want a JSON object"},
		{name: "not a bool", body: `{"cordoned":"yes"}`, err: "cordoned"},
		{name: "unknown field", body: `{"cordoned":true,"drain":true}`, err: `unknown field "drain"`},
		{name: "twice", body: `{"cordoned":true,"cordoned":false}`, err: `field "cordoned" given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkDecode(t, DecodeCordonRequest, tc.body, tc.want, tc.err) })
	}
}

// TestShedWireForm pins the wire forms of version 2: count always sent
// (0 is a request too), the optional fields left out when unset.
func TestShedWireForm(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{ShedRequest{Count: 0}, `{"count":0}`},
		{ShedRequest{ID: "a", Count: 5, Window: Dur(90 * time.Second), MaxRate: 2.5}, `{"id":"a","count":5,"window":"1m30s","max_rate":2.5}`},
		{CordonRequest{}, `{"cordoned":false}`},
		{ShedResult{ID: "a", Count: 5, Releasing: 3, Window: Duration(time.Second), MaxRate: 200}, `{"id":"a","count":5,"releasing":3,"window":"1s","max_rate":200}`},
		{ShedStatus{Requested: 4, Released: 1, Running: true}, `{"requested":4,"released":1,"running":true}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%T %+v: %s, %v; want %s", tc.v, tc.v, b, err, tc.want)
		}
	}
	if (ShedRequest{}).Since() != 2 || (CordonRequest{}).Since() != 2 || Version != 2 {
		t.Fatalf("shed and cordon came in version 2, which this build speaks")
	}
}

func FuzzDecodeShedRequest(f *testing.F) {
	f.Add([]byte(`{"id":"r1","count":25,"window":"30s","max_rate":20}`))
	f.Add([]byte(`{"count":-1}`))
	f.Add([]byte(`{"window":"1s"}`))
	f.Add([]byte(`{"count":1,"count":2}`))
	f.Add([]byte(`{"\u0063ount":7,"id":"\u00e9"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeShedRequest(b)
		if err != nil {
			return
		}
		if r.Count < 0 || r.Count > MaxShedCount || (r.Window != nil && (r.Window.D() < 0 || r.Window.D() > MaxShedWindow)) ||
			r.MaxRate < 0 || r.MaxRate > MaxShedRate || len(r.ID) > MaxShedIDLength {
			t.Fatalf("accepted out of range: %q -> %+v", b, r)
		}
		// what was accepted says what it means: re-encoded, it decodes to
		// the same request
		if again, err := DecodeShedRequest(must(json.Marshal(r))); err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("%q accepted as %+v, which reads back as %+v, %v", b, r, again, err)
		}
	})
}

func FuzzDecodeCordonRequest(f *testing.F) {
	f.Add([]byte(`{"cordoned":true}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"cordoned":false} x`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeCordonRequest(b)
		if err != nil {
			return
		}
		// what was accepted says what it means: re-encoded, it decodes to
		// the same request
		again, err := DecodeCordonRequest(must(json.Marshal(r)))
		if err != nil || again != r {
			t.Fatalf("%q accepted as %+v: %+v, %v", b, r, again, err)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
