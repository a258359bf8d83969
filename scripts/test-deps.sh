#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine of this kind, and
# nothing when it is already there: the JavaScript clients (faye, halley;
# CometD for interop/) from the committed package-lock.json files, and the
# AWS CLI, python3-websockets (interop/bayeux_ws.py), chromium, firefox-esr
# (the dashboard's browser tests, ui/) and Prometheus from Debian.
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

# the dashboard's browser tests (ui/): playwright-core driving Debian's
# chromium, puppeteer-core driving Debian's firefox-esr (both below), and
# the page's build tools
if [ -f ui/web/package-lock.json ]; then
  if [ ! -d ui/web/node_modules ] || [ ui/web/package-lock.json -nt ui/web/node_modules/.package-lock.json ]; then
    (cd ui/web && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# From Debian: the AWS CLI, and Python's websockets library, the interop
# suite's asyncio Bayeux client (interop/bayeux_ws.py). One apt-get update
# serves both when both are missing.
apt_pkgs=()
if ! command -v aws >/dev/null 2>&1; then
  apt_pkgs+=(awscli)
fi
# Debian's interpreter, not whichever python3 is first on PATH (pyenv's
# here), because that is where apt installs the module.
if ! /usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 </dev/null; then
  apt_pkgs+=(python3-websockets)
fi
# Prometheus, which the canary tests start beside the local cloud's nodes
# (rollout/canary_e2e_test.go) and `wsfleet demo --prometheus` runs.
if ! command -v prometheus >/dev/null 2>&1; then
  apt_pkgs+=(prometheus)
fi
# headless Chromium for the dashboard's browser test
if ! command -v chromium >/dev/null 2>&1; then
  apt_pkgs+=(chromium)
fi
# headless Firefox (ESR, over WebDriver BiDi) for the same page
if ! command -v firefox-esr >/dev/null 2>&1; then
  apt_pkgs+=(firefox-esr)
fi
# zsh and fish: the shell completion tests (cmd/wsfleet/completion_test.go)
# parse their scripts and ask fish's completion engine.
for sh in zsh fish; do
  command -v "$sh" >/dev/null 2>&1 || apt_pkgs+=("$sh")
done
# nats-server 2.9.10: the broker's oldest supported version
# (broker/natstest.Oldest, TestNATSServerVersions, TestDrainOnOldestNATS)
[ -x /usr/sbin/nats-server ] || apt_pkgs+=(nats-server)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" </dev/null >/dev/null
fi

# nats-server: the newest is built from the Go module go.mod pins
# (scripts/build-nats-server.sh, cached under .cache/); Debian's package,
# installed above, is the oldest version the broker supports (2.9.10).
./scripts/build-nats-server.sh >/dev/null

# Centrifugo, the benchmark's third server, is not built here: from cold
# (its modules downloaded and compiled) scripts/build-centrifugo.sh took
# 3.5 minutes, too long for every fresh machine's test run. `wsfleet bench`
# builds it when it runs; TestCentrifugoDriver skips, naming the script,
# until then.

# The stand-in hashicorp/aws provider the Terraform tests build
# (terraform/testdata/provider-aws, a module of its own): its modules.
# Terraform itself (v1.11.4, /usr/local/bin/terraform) is part of this kind
# of machine; without it the Terraform tests fail, saying to install it.
(cd terraform/testdata/provider-aws && go mod download)
