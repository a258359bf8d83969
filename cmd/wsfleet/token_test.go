package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"wsfleet/server"
)

func TestTokenCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runToken(context.Background(), []string{"--secret", "k", "--sub", "alice", "--ttl", "1h", "--channel", "/rooms/1/**", "--channel", "/rooms/2"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	var c server.Claims
	tok, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), &c, func(*jwt.Token) (any, error) { return []byte("k"), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || !tok.Valid {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if c.Subject != "alice" || len(c.Channels) != 2 || c.ExpiresAt.Sub(time.Now()) > time.Hour+time.Minute {
		t.Fatalf("claims %+v", c)
	}
	for _, args := range [][]string{{"--sub", "alice", "--secret", ""}, {"--secret", "k"}, {"--secret", "k", "--sub", "a/b"}, {"--secret", "k", "--sub", "a", "--ttl", "-1h"}} {
		if err := runToken(context.Background(), args, &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}
