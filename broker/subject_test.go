package broker

import (
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"wsfleet/bayeux"
)

func TestChannelSubject(t *testing.T) {
	tests := []struct {
		channel, subject string
	}{
		{"/a", "wsfleet.a"},
		{"/a/b/c", "wsfleet.a.b.c"},
		{"/chat/room-1", "wsfleet.chat.room-1"},
		{"/$x/@y/(z)/~!_", "wsfleet.$x.@y.(z).~!_"},
	}
	for _, tc := range tests {
		t.Run(tc.channel, func(t *testing.T) {
			got, err := channelSubject("wsfleet", tc.channel)
			if err != nil || got != tc.subject {
				t.Fatalf("channelSubject(%q) = %q, %v; want %q", tc.channel, got, err, tc.subject)
			}
			back, err := subjectChannel("wsfleet", got)
			if err != nil || back != tc.channel {
				t.Fatalf("subjectChannel(%q) = %q, %v; want %q", got, back, err, tc.channel)
			}
		})
	}
	for _, bad := range []string{"", "/", "/a/", "a/b", "/a.b", "/a/*", "/a/**", "/a b", "/a>"} {
		if s, err := channelSubject("wsfleet", bad); err == nil {
			t.Errorf("channelSubject(%q) = %q, want an error", bad, s)
		}
	}
	for _, bad := range []string{"other.a", "wsfleet", "wsfleet.", "wsfleet.a..b", "wsfleet.a.*", "wsfleet.a b"} {
		if c, err := subjectChannel("wsfleet", bad); err == nil {
			t.Errorf("subjectChannel(%q) = %q, want an error", bad, c)
		}
	}
}

func TestPatternSubject(t *testing.T) {
	tests := []struct{ pattern, subject string }{
		{"/*", "p.*"},
		{"/**", "p.>"},
		{"/a/*", "p.a.*"},
		{"/a/b/**", "p.a.b.>"},
		{"/a/b", "p.a.b"},
	}
	for _, tc := range tests {
		got, err := patternSubject("p", tc.pattern)
		if err != nil || got != tc.subject {
			t.Errorf("patternSubject(%q) = %q, %v; want %q", tc.pattern, got, err, tc.subject)
		}
	}
	for _, bad := range []string{"/a/*/b", "/a/***", "/**/a", "*", "/a.b/*"} {
		if s, err := patternSubject("p", bad); err == nil {
			t.Errorf("patternSubject(%q) = %q, want an error", bad, s)
		}
	}
}

func TestValidPrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"wsfleet": true, "prod.chat": true, "a-b_c.d1": true,
		"": false, ".a": false, "a.": false, "a..b": false, "$JS": false, "a.*": false, "a.>": false, "a b": false,
	} {
		if got := validPrefix(p); got != want {
			t.Errorf("validPrefix(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestReducePatterns checks the reduction against nats-server itself: what
// remains never collides (JetStream would refuse the consumer), and a
// channel matches the reduced set exactly when it matched the original.
func TestReducePatterns(t *testing.T) {
	sets := [][]string{
		{"/a/*", "/a/b", "/a/**", "/a/b/*"},
		{"/a/*", "/a/b/**"},
		{"/**", "/x"},
		{"/*", "/a", "/a/b"},
		{"/a/b", "/a/b"},
		{"/a/b/*", "/a/*", "/a/b/c/**"},
	}
	channels := []string{"/a", "/a/b", "/a/c", "/a/b/c", "/a/b/c/d", "/x", "/y/z"}
	for _, set := range sets {
		t.Run(strings.Join(set, ","), func(t *testing.T) {
			red := reducePatterns(set)
			for i, p := range red {
				sp, _ := patternSubject("p", p)
				for _, q := range red[i+1:] {
					sq, _ := patternSubject("p", q)
					if server.SubjectsCollide(sp, sq) {
						t.Errorf("reduced set %v still has colliding %s and %s", red, p, q)
					}
				}
			}
			for _, ch := range channels {
				was := matchAny(set, ch)
				if now := matchAny(red, ch); now != was {
					t.Errorf("%s: matched %v before reduction, %v after (%v)", ch, was, now, red)
				}
			}
		})
	}
}

func matchAny(patterns []string, ch string) bool {
	for _, p := range patterns {
		if bayeux.Match(p, ch) {
			return true
		}
	}
	return false
}

// FuzzSubjectRoundTrip holds the mapping to its claims for any input: a
// valid channel maps to a literal NATS subject (by nats-server's own
// validator) and back to itself; a valid pattern maps to a valid filter
// that matches, by nats-server's matcher, exactly the channels bayeux.Match
// accepts.
func FuzzSubjectRoundTrip(f *testing.F) {
	for _, s := range []string{"/a", "/a/b/c", "/$x/@y/(z)/~!_", "/a/*", "/a/**", "/**", "/*", "/a.b", "/a b", "/", ""} {
		f.Add(s, "/a/b")
	}
	f.Fuzz(func(t *testing.T, name, other string) {
		const prefix = "wsfleet.test"
		if bayeux.ValidChannel(name) {
			subj, err := channelSubject(prefix, name)
			if err != nil {
				t.Fatalf("channelSubject(%q): %v", name, err)
			}
			if !server.IsValidLiteralSubject(subj) {
				t.Fatalf("channel %q maps to %q, not a literal NATS subject", name, subj)
			}
			back, err := subjectChannel(prefix, subj)
			if err != nil || back != name {
				t.Fatalf("round trip %q -> %q -> %q, %v", name, subj, back, err)
			}
		} else if s, err := channelSubject(prefix, name); err == nil {
			t.Fatalf("invalid channel %q mapped to %q", name, s)
		}
		if !bayeux.ValidPattern(name) {
			return
		}
		filter, err := patternSubject(prefix, name)
		if err != nil {
			t.Fatalf("patternSubject(%q): %v", name, err)
		}
		if !server.IsValidSubject(filter) {
			t.Fatalf("pattern %q maps to %q, not a valid NATS subject", name, filter)
		}
		if !bayeux.ValidChannel(other) {
			return
		}
		osubj, _ := channelSubject(prefix, other)
		if got, want := server.SubjectMatchesFilter(osubj, filter), bayeux.Match(name, other); got != want {
			t.Fatalf("pattern %q vs channel %q: NATS match %v, Bayeux match %v", name, other, got, want)
		}
	})
}

// kvKey is the key syntax of JetStream key-value buckets.
var kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// FuzzSessionKey: client IDs come from outside. Every accepted ID must map
// to a valid key-value key, and two different IDs never to the same key.
func FuzzSessionKey(f *testing.F) {
	for _, s := range []string{"abc", "a.b", "=YWJj", "abc=", "*", ">", "ünï", " ", ""} {
		f.Add(s, "abc")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, errA := sessionKey(a)
		kb, errB := sessionKey(b)
		if errA == nil && (!kvKey.MatchString(ka) || strings.HasPrefix(ka, ".") || strings.HasSuffix(ka, ".")) {
			t.Fatalf("client id %q maps to invalid key %q", a, ka)
		}
		if errA == nil && errB == nil && a != b && ka == kb {
			t.Fatalf("client ids %q and %q share key %q", a, b, ka)
		}
	})
}
