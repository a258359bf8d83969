#!/usr/bin/env bash
# Builds nats-server from the Go module go.mod pins
# (github.com/nats-io/nats-server/v2) into .cache/nats-server/<version>/,
# once per version, and prints the binary's path. The three-server cluster
# tests (broker, server, compat) and `wsfleet cloud --nats-cluster` run it.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
ver=$($GO list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
out=.cache/nats-server/$ver/nats-server
if [ ! -x "$out" ]; then
  mkdir -p "$(dirname "$out")"
  $GO build -o "$out.tmp" github.com/nats-io/nats-server/v2
  mv "$out.tmp" "$out"
fi
echo "$PWD/$out"
