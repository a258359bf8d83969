package server

import (
	"strings"
	"testing"
	"time"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		grant, pattern string
		want           bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/*", "/a/b", true},
		{"/a/*", "/a/*", true},
		{"/a/*", "/a/**", false},
		{"/a/*", "/a/b/c", false},
		{"/a/**", "/a/*", true},
		{"/a/**", "/a/**", true},
		{"/a/**", "/a/b/**", true},
		{"/a/**", "/a/b/*", true},
		{"/a/**", "/ab/*", false},
		{"/a/**", "/**", false},
		{"/a/b/**", "/a/**", false},
		{"/**", "/**", true},
		{"/**", "/*", true},
		{"/*", "/**", false},
		{"/*", "/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.grant+" "+tt.pattern, func(t *testing.T) {
			if got := covers(tt.grant, tt.pattern); got != tt.want {
				t.Fatalf("covers(%q, %q) = %v, want %v", tt.grant, tt.pattern, got, tt.want)
			}
		})
	}
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		in      string
		n       int
		wantErr string
	}{
		{"subscribe /user/{sub}/**\n# comment\n\npublish /rooms/{sub}\nboth /lobby", 3, ""},
		{"allow /x", 0, "unknown action"},
		{"subscribe", 0, "want"},
		{"subscribe /meta/**", 0, "not a valid"},
		{"subscribe /a//b", 0, "not a valid"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			rs, err := ParseRules([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(rs) != tt.n {
				t.Fatalf("got %d rules, %v", len(rs), err)
			}
		})
	}
}

func TestVerifyToken(t *testing.T) {
	secret := []byte("k")
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	good, _ := MintToken(secret, "alice", time.Hour, []string{"/rooms/1", "/meta/**", "bad pattern"}, now)
	id, err := verifyToken(secret, good, clock)
	if err != nil || id.Subject != "alice" || len(id.Grants) != 1 || id.Grants[0] != "/rooms/1" {
		t.Fatalf("verify: %+v %v", id, err)
	}
	later := func() time.Time { return now.Add(2 * time.Hour) }
	if _, err := verifyToken(secret, good, later); err == nil {
		t.Fatal("expired token accepted")
	}
	slash, _ := MintToken(secret, "a/b", time.Hour, nil, now)
	if _, err := verifyToken(secret, slash, clock); err == nil {
		t.Fatal("subject with a slash accepted: it would widen {sub} rules")
	}
	// alg none and a different key are refused
	parts := strings.Split(good, ".")
	if _, err := verifyToken(secret, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."+parts[1]+".", clock); err == nil {
		t.Fatal("alg none accepted")
	}
	if _, err := verifyToken([]byte("other"), good, clock); err == nil {
		t.Fatal("token signed with another key accepted")
	}
}
