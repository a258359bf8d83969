package bayeux

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, channel string
		want             bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b", "/a/c", false},
		{"/a/*", "/a/b", true},
		{"/a/*", "/a/b/c", false},
		{"/a/*", "/a", false},
		{"/a/**", "/a/b", true},
		{"/a/**", "/a/b/c", true},
		{"/a/**", "/a", false},
		{"/a/**", "/ab/c", false},
		{"/**", "/x", true},
		{"/*", "/x", true},
		{"/*", "/x/y", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.channel, func(t *testing.T) {
			if got := Match(tt.pattern, tt.channel); got != tt.want {
				t.Fatalf("Match(%q, %q) = %v, want %v", tt.pattern, tt.channel, got, tt.want)
			}
		})
	}
}

func TestExpandAgreesWithMatch(t *testing.T) {
	for _, ch := range []string{"/a", "/a/b", "/a/b/c", "/api/v1/rooms/42/chatMessages"} {
		got := Expand(ch)
		for _, p := range got {
			if !Match(p, ch) {
				t.Errorf("Expand(%q) gave %q, which does not match", ch, p)
			}
		}
		for _, p := range []string{"/x/**", "/a/b/c/d", "/a/*/c"} {
			if slices.Contains(got, p) {
				t.Errorf("Expand(%q) gave %q", ch, p)
			}
		}
	}
	want := []string{"/a/b/c", "/**", "/a/**", "/a/b/**", "/a/b/*"}
	if got := Expand("/a/b/c"); !slices.Equal(got, want) {
		t.Fatalf("Expand = %v, want %v", got, want)
	}
}

func TestValidChannelAndPattern(t *testing.T) {
	tests := []struct {
		name           string
		channel, patrn bool
	}{
		{"/foo", true, true},
		{"/foo/bar-baz_1/(x)$@!~", true, true},
		{"/", false, false},
		{"", false, false},
		{"foo", false, false},
		{"/foo//bar", false, false},
		{"/foo/", false, false},
		{"/foo.bar", false, false},
		{"/foo/*", false, true},
		{"/foo/**", false, true},
		{"/**", false, true},
		{"/foo/*/bar", false, false},
		{"/foo/***", false, false},
		{"/fo o", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidChannel(tt.name); got != tt.channel {
				t.Errorf("ValidChannel = %v, want %v", got, tt.channel)
			}
			if got := ValidPattern(tt.name); got != tt.patrn {
				t.Errorf("ValidPattern = %v, want %v", got, tt.patrn)
			}
		})
	}
}

func TestDecodeMessages(t *testing.T) {
	tests := []struct {
		in      string
		n       int
		wantErr bool
	}{
		{`{"channel":"/meta/handshake"}`, 1, false},
		{`[{"channel":"/a","data":{"x":1}},{"channel":"/b","subscription":["/x","/y"]}]`, 2, false},
		{`[]`, 0, false},
		{``, 0, true},
		{`"x"`, 0, true},
		{`{"channel":5}`, 0, true},
		{`[{"channel":"/a"`, 0, true},
		{`{"channel":"/meta/subscribe","subscription":7}`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ms, err := DecodeMessages([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(ms) != tt.n {
				t.Fatalf("got %d messages, want %d", len(ms), tt.n)
			}
		})
	}
}

func TestSubscriptionRoundTrip(t *testing.T) {
	var m Message
	if err := json.Unmarshal([]byte(`{"channel":"/meta/subscribe","subscription":"/a"}`), &m); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	if string(b) != `{"channel":"/meta/subscribe","subscription":"/a"}` {
		t.Fatalf("round trip gave %s", b)
	}
}

func TestErrorRoundTrip(t *testing.T) {
	e := NewError(CodeChannelForbidden, "Subscription denied", "/foo/bar")
	if e.Error() != "403:/foo/bar:Subscription denied" {
		t.Fatalf("got %q", e.Error())
	}
	back, ok := ParseError(e.Error())
	if !ok || back.Code != 403 || back.Args[0] != "/foo/bar" || back.Message != "Subscription denied" {
		t.Fatalf("parse gave %+v %v", back, ok)
	}
	if got := ErrClientUnknown("").Error(); got != "401::Unknown client" {
		t.Fatalf("got %q", got)
	}
}

func FuzzDecodeMessages(f *testing.F) {
	for _, s := range []string{`{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"]}`,
		`[{"channel":"/a","data":1,"ext":{"token":"x"}}]`, `[]`, `{"subscription":["/a"]}`, `[1,2]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		defer failSlow(t, time.Now())
		ms, err := DecodeMessages(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if _, err := json.Marshal(m); err != nil {
				t.Fatalf("decoded message does not encode: %v", err)
			}
			_ = ValidPattern(m.Channel)
			for _, p := range m.Subscription {
				if ValidChannel(m.Channel) && ValidPattern(p) {
					_ = Match(p, m.Channel)
				}
			}
		}
	})
}

func TestIDAcceptsStringsAndNumbers(t *testing.T) {
	tests := []struct {
		in      string
		want    ID
		wantErr bool
	}{
		{`{"channel":"/a","id":"7"}`, "7", false},
		{`{"channel":"/a","id":7}`, "7", false},
		{`{"channel":"/a","id":1.5}`, "1.5", false},
		{`{"channel":"/a"}`, "", false},
		{`{"channel":"/a","id":{"x":1}}`, "", true},
		{`{"channel":"/a","id":true}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ms, err := DecodeMessages([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && ms[0].ID != tt.want {
				t.Fatalf("id = %q, want %q", ms[0].ID, tt.want)
			}
		})
	}
}

// failSlow fails a fuzz input that took longer than a second: a hang or
// a blow-up (make fuzz-long relies on it). Deferred with the start time.
func failSlow(t *testing.T, start time.Time) {
	t.Helper()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("input took %s, over the 1s bound", d)
	}
}
