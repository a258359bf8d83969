# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go
BIN := bin/wsfleet

.PHONY: build test test-nats-cluster test-s3-cli test-s3-crash vet fuzz fuzz-long demo demo-ci clean test-faults test-crash bench-rollout test-ui-scale test-canary bench-interest bench test-placement

build:
	$(GO) build -o $(BIN) ./cmd/wsfleet

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# test installs what the tests need, then runs every test with the race
# detector (the slow end-to-end ones included). Three packages at a time
# on two cores: the end-to-end tests mostly wait (bakes, drains, health
# checks), and the suite kept the machine about a third busy at -p 2.
# ./rollout/ is named first so that go test starts it first (it runs
# packages in the order named): it is the longest package by far, and in
# its alphabetical place, 16th, it started only when the 15 before it had
# run, and ended the run minutes after every other package.
# WSFLEET_S3_CLI=1 runs test-s3-cli's test in the same go test, beside
# the other packages, instead of in a go test of its own after them.
test: build
	./scripts/test-deps.sh
	$(MAKE) vet
	WSFLEET_S3_CLI=1 $(GO) test -race -p 3 -timeout 15m ./rollout/ ./...
	$(MAKE) demo-ci

# test-nats-cluster runs the broker conformance suite on a three-server
# NATS cluster with a server killed in each case (about a minute and a half;
# docs/broker.md has its last result).
test-nats-cluster:
	./scripts/test-deps.sh
	WSFLEET_NATS_CLUSTER=1 $(GO) test -count=1 -timeout 10m -run '^TestNATSClusterConformance$$' -v ./broker/

# test-s3-cli checks the local cloud's S3 with the AWS CLI's s3api (some
# fifteen CLI runs, 20 s or more: kept out of plain `go test`; `make test`
# runs it in its go test, with WSFLEET_S3_CLI=1).
test-s3-cli:
	WSFLEET_S3_CLI=1 $(GO) test -count=1 -run '^TestS3AWSCLI$$' ./localcloud

# demo-ci runs the README's demo at CI size (--fast, 500 clients, under a
# minute): it exits non-zero on any lost message or any instance not on the
# new image, and then prints the run's report. The naive run (the seed's
# way; its losses are the point) fails only if the change does not finish.
demo-ci: build
	@out=$$(mktemp -d); ./$(BIN) demo --fast --clients 500 --out $$out/engine && \
	  ./$(BIN) demo --fast --naive --clients 200 --out $$out/naive; rc=$$?; \
	  if [ $$rc -ne 0 ]; then cat $$out/*/report.md 2>/dev/null; fi; rm -rf $$out; exit $$rc

# test-faults runs the rollout under AWS's faults at full size: the seed's
# three-phase plan on 8 real nodes under 2 % throttling, 1 % 5xx, 1 %
# dropped connections and late reads up to 2 s, then a 60 s outage that
# stops the engine and a resume that finishes (docs/rollout.md "Under
# faults" has its last result).
test-faults:
	WSFLEET_FAULTS_FULL=1 $(GO) test -count=1 -timeout 20m -run TestE2EFaults -v ./rollout/

# test-s3-crash runs the crash-point test with the state in the local
# cloud's S3 at every point (the default suite runs the S3 backend's crash
# points over an in-memory bucket); a few minutes.
test-s3-crash:
	WSFLEET_S3_CRASH=1 $(GO) test -count=1 -timeout 30m -run 'TestS3BackendLocalCloud' ./rollout

# fuzz runs every fuzz target in the repository (scripts/fuzz.sh lists them
# from the code) for FUZZTIME each, default 30s, and fails if any fails; CI
# runs their seed corpora in `test`.
fuzz:
	GO=$(GO) ./scripts/fuzz.sh

# fuzz-long runs the four targets that read outside input (the plan
# parser, the Bayeux decoder, the AWS Query parser, the local cloud's
# API) for FUZZTIME each (default 3m). An input slower than a second fails
# the run. Its last result is in docs/fuzz.md.
FUZZ_LONG := ^(./rollout FuzzParsePlan|./bayeux FuzzDecodeMessages|./localcloud FuzzParseQuery|./localcloud FuzzAPI)$$
fuzz-long:
	GO=$(GO) FUZZTIME=$${FUZZTIME:-3m} FUZZ_ONLY='$(FUZZ_LONG)' ./scripts/fuzz.sh

demo: build
	./$(BIN) demo

clean:
	rm -rf bin wsfleet-demo

# test-crash kills the rollout engine (kill -9) at 50 effects of the seed's
# plan on the local cloud, half of them under injected faults, resumes each
# and checks the outcome; `make test` runs 5 of them. docs/rollout.md keeps
# the last result.
test-crash: build
	WSFLEET_CRASH=full $(GO) test -count=1 -timeout 90m -run TestE2ECrashPoints -v ./rollout/

# bench-rollout replaces a simulated group of 1,000 instances in 10 % batches
# with AWS's token buckets on, and prints wall time, API calls per instance
# by action, throttles, engine RSS and state size (docs/rollout.md keeps the
# last result). WSFLEET_BENCH_N=200 runs a smaller group.
bench-rollout: build
	WSFLEET_BENCH_ROLLOUT=1 $(GO) test -count=1 -timeout 30m -run TestBenchRollout1000 -v ./rollout/

# bench runs `wsfleet bench` at full size (the ws node, Faye, Centrifugo
# and the bare writer; 10 to 13 minutes, plus Centrifugo's first build) and
# writes bench/last-run.json; run it on a quiet machine (docs/bench.md).
bench: build
	./$(BIN) bench --json bench/last-run.json

# soak holds 10,000 Bayeux sessions on a `wsfleet serve` node on
# nats-server for SOAK (default 30m) with churn and fan-out, samples the
# node's RSS, goroutines and errors every 5 s, and fails unless RSS and
# goroutines are flat and nothing failed; it writes docs/soak/soak.json
# and docs/soak/soak.svg (docs/bench.md "Soak"). `make soak SOAK=3m` is a
# short one.
SOAK ?= 30m
.PHONY: soak
soak: build
	./$(BIN) bench soak --duration $(SOAK) --out docs/soak --nats-server $$(./scripts/build-nats-server.sh)

# bench-interest runs 2, 8 and 32 `wsfleet serve` processes on one
# nats-server, each with its own subscribers and a publisher at 5 messages
# a second, with interest-based delivery and with the whole stream, and
# prints each node's CPU per delivered message (docs/broker.md keeps the
# last table; about 8 minutes).
bench-interest: build
	WSFLEET_BENCH_INTEREST=1 $(GO) test -count=1 -timeout 30m -run '^TestInterestScaling$$' -v ./bench/

# bench-takeover measures how many clients moved by a real drain one node
# takes over per second, per core, against fresh handshakes (3,000 clients,
# releases at 100, 200, 400, 800/s and all at once; a few minutes). Its
# figure sets the plan's default drain.max_rate: docs/bench.md keeps the
# last run. BENCH_TAKEOVER_ARGS passes flags (--clients 1000 --rates 200,all).
.PHONY: bench-takeover
bench-takeover: build
	$(BIN) bench takeover $(BENCH_TAKEOVER_ARGS)

# test-ui-scale follows in Chromium the engine replacing a simulated group
# of 1,000 instances (WSFLEET_UI_SCALE_N=200 for a smaller one), without
# -race; docs/dashboard.md keeps the last result.
test-ui-scale:
	WSFLEET_UI_SCALE_ENGINE=1 $(GO) test -count=1 -timeout 30m -run TestDashboardScaleEngine -v ./ui/

# test-placement runs the seed's change three times in a row (old -> new ->
# old -> new) on the local cloud's 8 nodes with 2,000 chat clients connected
# (WSFLEET_PLACEMENT_CLIENTS=N for another number), each checked for issue
# 16's figures: nothing lost, the canary at >= 80 % of its fair share through
# its bake, reconnects <= clients x 1.15, end balance within ±15 %.
# docs/rollout.md keeps the last result.
test-placement: build
	WSFLEET_TEST_PLACEMENT=1 $(GO) test -count=1 -timeout 30m -run TestE2EPlacement -v ./rollout/

# test-canary runs the canary checks for real, five times each: a canary on
# a faulty image (its node fails 30 % of handshakes and answers 200 ms late)
# and on a slow one (200 ms late only), each caught by canary_analysis and a
# prometheus check on a real Prometheus and rolled back, and the same plan
# on a good image passing. `make test` runs the faulty and the good case
# once. docs/checks.md keeps the last result.
test-canary: build
	./scripts/test-deps.sh
	WSFLEET_CANARY_RUNS=5 $(GO) test -count=1 -timeout 30m -run TestE2ECanary -v ./rollout/
