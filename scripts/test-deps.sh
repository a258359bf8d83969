#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine of this kind, and
# nothing when it is already there: the JavaScript clients (faye, halley;
# CometD for interop/) from the committed package-lock.json files, and the
# AWS CLI from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f compat/package-lock.json ]; then
  if [ ! -d compat/node_modules ] || [ compat/package-lock.json -nt compat/node_modules/.package-lock.json ]; then
    (cd compat && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# the CometD client for the interop suite
if [ -f interop/package-lock.json ]; then
  if [ ! -d interop/node_modules ] || [ interop/package-lock.json -nt interop/node_modules/.package-lock.json ]; then
    (cd interop && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

if ! command -v aws >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends awscli </dev/null >/dev/null
fi
