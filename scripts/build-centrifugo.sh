#!/usr/bin/env bash
# Builds Centrifugo from its Go module (github.com/centrifugal/centrifugo/v6
# at the version pinned below) into .cache/centrifugo/<version>/, once per
# version, and prints the binary's path. `wsfleet bench` runs it as the
# third server (bench/centrifugo.go). The build happens in a throw-away
# module in a temporary directory, so wsfleet's own go.mod and go.sum never
# see Centrifugo's dependencies. The first build downloads its modules and
# compiles them (a few minutes on two cores); later calls only print the
# path. Set CENTRIFUGO_VERSION to build another release.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
ver=${CENTRIFUGO_VERSION:-v6.9.1}
out=.cache/centrifugo/$ver/centrifugo
if [ ! -x "$out" ]; then
  mkdir -p "$(dirname "$out")"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (
    cd "$tmp"
    # GOFLAGS from the caller (say -mod=vendor) is about wsfleet, not this
    # module.
    export GOFLAGS=-buildvcs=false GOWORK=off
    $GO mod init centrifugo-build >/dev/null 2>&1
    $GO get "github.com/centrifugal/centrifugo/v6@$ver" >/dev/null 2>&1 ||
      $GO get "github.com/centrifugal/centrifugo/v6@$ver"
    # The version string its release builds carry (`centrifugo version`).
    $GO build -trimpath -ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=${ver#v}" \
      -o "$OLDPWD/$out.tmp" github.com/centrifugal/centrifugo/v6
  )
  mv "$out.tmp" "$out"
fi
echo "$PWD/$out"
