# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go
BIN := bin/wsfleet

.PHONY: build test vet fuzz demo clean

build:
	$(GO) build -o $(BIN) ./cmd/wsfleet

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# test installs what the tests need, then runs every test with the race
# detector (the slow end-to-end ones included).
test: build
	./scripts/test-deps.sh
	$(MAKE) vet
	$(GO) test -race -timeout 15m ./...

# fuzz runs each fuzz target briefly; CI runs their seed corpora in `test`.
fuzz:
	$(GO) test ./bayeux -run '^$$' -fuzz FuzzDecodeMessages -fuzztime 30s
	$(GO) test ./localcloud -run '^$$' -fuzz FuzzParseQuery -fuzztime 30s
	$(GO) test ./localcloud -run '^$$' -fuzz FuzzAPI -fuzztime 30s
	$(GO) test ./nodeaws -run '^$$' -fuzz FuzzParseUserData -fuzztime 30s
	$(GO) test ./rollout -run '^$$' -fuzz FuzzParsePlan -fuzztime 30s
	$(GO) test ./rollout -run '^$$' -fuzz FuzzSumMetric -fuzztime 10s

demo: build
	./$(BIN) demo

clean:
	rm -rf bin wsfleet-demo
