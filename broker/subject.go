package broker

import (
	"fmt"
	"sort"
	"strings"

	"wsfleet/bayeux"
)

// Subject mapping between Bayeux channels and NATS subjects.
//
// A channel /a/b/c becomes <prefix>.a.b.c, and the patterns /a/* and /a/**
// become <prefix>.a.* and <prefix>.a.>. No escaping is needed: every byte a
// Bayeux segment may hold (alphanumerics and - _ ! ~ ( ) $ @, see
// bayeux.ValidChannel) is also legal inside a NATS token, and the bytes NATS
// gives a meaning to ('.', '*', '>', whitespace) are all excluded from
// segments. A segment is never the single byte '*' or '>' on its own either,
// so a concrete channel always maps to a literal subject. FuzzSubjectRoundTrip
// holds the mapping to that claim with nats-server's own validators.

// validPrefix reports whether p can head every subject: one or more
// dot-separated tokens of letters, digits, '-' and '_', not starting with
// '$' (reserved for the system and JetStream APIs).
func validPrefix(p string) bool {
	if p == "" {
		return false
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// channelSubject maps a concrete Bayeux channel to its NATS subject.
func channelSubject(prefix, channel string) (string, error) {
	if !bayeux.ValidChannel(channel) {
		return "", fmt.Errorf("channel %q: not a valid concrete Bayeux channel", channel)
	}
	return prefix + strings.ReplaceAll(channel, "/", "."), nil
}

// patternSubject maps a Bayeux channel or pattern to a NATS filter subject:
// a trailing * stays *, a trailing ** becomes >.
func patternSubject(prefix, pattern string) (string, error) {
	if !bayeux.ValidPattern(pattern) {
		return "", fmt.Errorf("pattern %q: not a valid Bayeux channel pattern", pattern)
	}
	if base, ok := strings.CutSuffix(pattern, "/**"); ok {
		return prefix + strings.ReplaceAll(base, "/", ".") + ".>", nil
	}
	return prefix + strings.ReplaceAll(pattern, "/", "."), nil
}

// subjectChannel maps a NATS subject under prefix back to its Bayeux channel.
func subjectChannel(prefix, subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", fmt.Errorf("subject %q: not under prefix %q", subject, prefix)
	}
	ch := "/" + strings.ReplaceAll(rest, ".", "/")
	if !bayeux.ValidChannel(ch) {
		return "", fmt.Errorf("subject %q: not a Bayeux channel", subject)
	}
	return ch, nil
}

// covers reports whether every channel matching q also matches p. Bayeux
// wildcards only ever end a pattern, so two patterns overlap exactly when
// one covers the other.
func covers(p, q string) bool {
	if p == q {
		return true
	}
	switch {
	case p == "/**":
		return true
	case strings.HasSuffix(p, "/**"):
		prefix := strings.TrimSuffix(p, "**")
		return strings.HasPrefix(q, prefix) && len(q) > len(prefix)
	case strings.HasSuffix(p, "/*"):
		// Only concrete one-segment children are covered; q="/a/*" is
		// not covered by itself here (handled by p == q above).
		return !bayeux.IsWildcard(q) && bayeux.Match(p, q)
	}
	return false
}

// reducePatterns drops duplicates and patterns covered by another one, so
// that the remaining filter subjects never overlap (JetStream refuses
// overlapping filter subjects on one consumer). The result is sorted.
func reducePatterns(patterns []string) []string {
	set := newInterestSet(false, patterns)
	out := make([]string, 0, len(set.patterns))
	for p := range set.patterns {
		if !set.above(p) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
