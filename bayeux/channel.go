package bayeux

import "strings"

// segmentChar reports whether c may appear in a channel segment. The set is
// Faye's grammar (alphanumerics and - _ ! ~ ( ) $ @), which real clients
// validate against too; notably '.', '*' and '>' are excluded, which keeps
// channel names safe to map onto NATS subjects.
func segmentChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '!', '~', '(', ')', '$', '@':
		return true
	}
	return false
}

// Segments splits a channel name into its segments; "/a/b" gives [a b].
func Segments(name string) []string {
	return strings.Split(strings.TrimPrefix(name, "/"), "/")
}

// ValidChannel reports whether name is a concrete channel name (no
// wildcards): "/" followed by one or more non-empty segments.
func ValidChannel(name string) bool {
	if len(name) < 2 || name[0] != '/' {
		return false
	}
	for _, seg := range Segments(name) {
		if seg == "" {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if !segmentChar(seg[i]) {
				return false
			}
		}
	}
	return true
}

// ValidPattern reports whether name is a valid channel name or a pattern
// whose last segment is "*" (one segment) or "**" (any depth).
func ValidPattern(name string) bool {
	if ValidChannel(name) {
		return true
	}
	var base string
	switch {
	case name == "/*" || name == "/**":
		return true
	case strings.HasSuffix(name, "/**"):
		base = strings.TrimSuffix(name, "/**")
	case strings.HasSuffix(name, "/*"):
		base = strings.TrimSuffix(name, "/*")
	default:
		return false
	}
	return ValidChannel(base)
}

// IsWildcard reports whether name ends in a wildcard segment.
func IsWildcard(name string) bool {
	return strings.HasSuffix(name, "/*") || strings.HasSuffix(name, "/**") || name == "/*" || name == "/**"
}

// IsMeta reports whether name is on /meta/.
func IsMeta(name string) bool { return name == "/meta" || strings.HasPrefix(name, "/meta/") }

// IsService reports whether name is on /service/, whose messages go to the
// server only and are never broadcast.
func IsService(name string) bool { return name == "/service" || strings.HasPrefix(name, "/service/") }

// Match reports whether channel (a concrete name) matches pattern, which may
// be a concrete name or end in "*" or "**".
func Match(pattern, channel string) bool {
	if pattern == channel {
		return true
	}
	switch {
	case strings.HasSuffix(pattern, "/**"):
		prefix := strings.TrimSuffix(pattern, "**")
		return strings.HasPrefix(channel, prefix) && len(channel) > len(prefix)
	case strings.HasSuffix(pattern, "/*"):
		prefix := strings.TrimSuffix(pattern, "*")
		rest, ok := strings.CutPrefix(channel, prefix)
		return ok && rest != "" && !strings.Contains(rest, "/")
	}
	return false
}

// Expand returns every pattern that matches channel, the channel itself
// included: "/a/b/c" gives /a/b/c, /**, /a/**, /a/b/** and /a/b/*, as Faye's
// Channel.expand does, so a
// server can look subscribers up in a map instead of testing each pattern.
func Expand(channel string) []string {
	segs := Segments(channel)
	out := make([]string, 0, len(segs)+3)
	out = append(out, channel, "/**")
	prefix := ""
	for i, seg := range segs {
		if i == len(segs)-1 {
			out = append(out, prefix+"/*")
		} else {
			out = append(out, prefix+"/"+seg+"/**")
		}
		prefix += "/" + seg
	}
	return out
}
