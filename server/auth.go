package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"wsfleet/bayeux"
)

// Claims are what a client token carries: the user (sub), when it stops
// being valid (exp), and channel patterns the token itself grants for
// subscribing (rooms the application let this user into).
type Claims struct {
	Channels []string `json:"channels,omitempty"`
	jwt.RegisteredClaims
}

// Identity is who a session belongs to and what it may do. The zero value
// with Anonymous set is the identity of every client of a node run without
// --auth-secret.
type Identity struct {
	Anonymous bool
	Subject   string
	Grants    []string // subscribe patterns carried in the token
	Expires   time.Time
}

// MintToken signs a client token with HS256. It is what `wsfleet token`
// and tests use; the application backend would do the same with any JWT
// library.
func MintToken(secret []byte, sub string, ttl time.Duration, channels []string, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("mint token: empty secret")
	}
	if sub == "" {
		return "", errors.New("mint token: empty subject")
	}
	c := Claims{Channels: channels, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// verifyToken checks signature (HS256 only: accepting the token's own alg
// header would let "none" or an RSA public key through), expiry (required)
// and subject, and returns the identity.
func verifyToken(secret []byte, token string, now func() time.Time) (Identity, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(now))
	if err != nil {
		return Identity{}, fmt.Errorf("verify token: %w", err)
	}
	if c.Subject == "" || !ValidSegment(c.Subject) {
		return Identity{}, errors.New("verify token: subject missing or not usable in a channel name")
	}
	var grants []string
	for _, p := range c.Channels {
		if bayeux.ValidPattern(p) && !bayeux.IsMeta(p) {
			grants = append(grants, p)
		}
	}
	return Identity{Subject: c.Subject, Grants: grants, Expires: c.ExpiresAt.Time}, nil
}

// ValidSegment reports whether s can stand as one channel segment, which
// is what a subject must be to fill a {sub} placeholder: a subject with a
// slash or a star would widen the rule it is substituted into.
func ValidSegment(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/*") && bayeux.ValidChannel("/"+s)
}

// Rule allows subscribing and/or publishing on channels matching Pattern,
// in which {sub} stands for the session's subject.
type Rule struct {
	Subscribe bool
	Publish   bool
	Pattern   string
}

// Rules is the node's authorisation policy.
type Rules []Rule

// ParseRules reads a rules file: one rule a line, `subscribe PATTERN`,
// `publish PATTERN` or `both PATTERN`; blank lines and lines starting with
// # are ignored. Patterns are Bayeux channel patterns that may hold {sub}.
func ParseRules(b []byte) (Rules, error) {
	var rs Rules
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("rules line %d: want `subscribe|publish|both PATTERN`, got %q", n, line)
		}
		var r Rule
		switch f[0] {
		case "subscribe":
			r.Subscribe = true
		case "publish":
			r.Publish = true
		case "both":
			r.Subscribe, r.Publish = true, true
		default:
			return nil, fmt.Errorf("rules line %d: unknown action %q (subscribe, publish or both)", n, f[0])
		}
		r.Pattern = f[1]
		if test := strings.ReplaceAll(r.Pattern, "{sub}", "x"); !bayeux.ValidPattern(test) || bayeux.IsMeta(test) {
			return nil, fmt.Errorf("rules line %d: %q is not a valid channel pattern", n, r.Pattern)
		}
		rs = append(rs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return rs, nil
}

// LoadRules reads and parses a rules file.
func LoadRules(path string) (Rules, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	rs, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("load rules %s: %w", path, err)
	}
	return rs, nil
}

// canSubscribe reports whether id may subscribe to pattern: some rule or
// token grant must cover every channel the pattern can match, so that a
// wildcard never reaches into another user's channels.
func (rs Rules) canSubscribe(id Identity, pattern string) bool {
	if id.Anonymous {
		return true
	}
	for _, g := range id.Grants {
		if covers(g, pattern) {
			return true
		}
	}
	for _, r := range rs {
		if r.Subscribe && covers(strings.ReplaceAll(r.Pattern, "{sub}", id.Subject), pattern) {
			return true
		}
	}
	return false
}

// canPublish reports whether id may publish on channel. Token grants are
// for receiving only: the ws tier is push-only unless a rule says so.
func (rs Rules) canPublish(id Identity, channel string) bool {
	if id.Anonymous {
		return true
	}
	for _, r := range rs {
		if r.Publish && bayeux.Match(strings.ReplaceAll(r.Pattern, "{sub}", id.Subject), channel) {
			return true
		}
	}
	return false
}

// covers reports whether every channel matched by pattern p is also matched
// by grant g.
func covers(g, p string) bool {
	if g == p {
		return true
	}
	if !bayeux.IsWildcard(p) {
		return bayeux.Match(g, p)
	}
	// p is base/* or base/**; g must be a ** whose base is p's base or an
	// ancestor of it (base/* under g=base/* was the equal case above).
	gbase, ok := strings.CutSuffix(g, "/**")
	if !ok {
		if g == "/**" {
			return true
		}
		return false
	}
	if g == "/**" {
		return true
	}
	pbase := strings.TrimSuffix(strings.TrimSuffix(p, "*"), "*")
	pbase = strings.TrimSuffix(pbase, "/")
	return pbase == gbase || strings.HasPrefix(pbase, gbase+"/")
}
