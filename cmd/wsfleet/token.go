package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"wsfleet/server"
)

func init() {
	register("token", "mint a client token (HS256 JWT) for a ws node's --auth-secret",
		"wsfleet token --secret S --sub alice --ttl 1h --channel '/api/v1/rooms/42/**'", runToken)
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

var _ flag.Value = (*stringList)(nil)

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	secret := fs.String("secret", os.Getenv("WSFLEET_AUTH_SECRET"), "HS256 secret, the node's --auth-secret (default $WSFLEET_AUTH_SECRET)")
	sub := fs.String("sub", "", "user the token is for (JWT sub); fills {sub} in the node's rules")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	var channels stringList
	fs.Var(&channels, "channel", "channel pattern the token lets its holder subscribe to (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *secret == "" || *sub == "" {
		return fmt.Errorf("%w: --secret and --sub are required", errUsage)
	}
	if !server.ValidSegment(*sub) {
		return fmt.Errorf("%w: --sub %q cannot stand in a channel name", errUsage, *sub)
	}
	if *ttl <= 0 {
		return fmt.Errorf("%w: --ttl must be positive", errUsage)
	}
	tok, err := server.MintToken([]byte(*secret), *sub, *ttl, channels, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
