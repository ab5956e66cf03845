# podfim's make targets. `make test` is the default test tier (unit and
# Linux integration tests; needs root, as in CI). Heavier tiers have their
# own targets, and .ci/run calls every one of them.

GO      ?= go
BIN     := bin
PODFIM  := $(BIN)/podfim
GOFLAGS := -trimpath
export CGO_ENABLED := 0

.PHONY: all build test lint fuzz bench demo clean

all: build

build:
	$(GO) build $(GOFLAGS) -o $(PODFIM) ./cmd/podfim

## lint: formatting, vet and a tidy go.mod
lint:
	@out=$$(gofmt -l cmd internal test 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

## test: the default tier: lint, then every unit and integration test with the race detector
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

## fuzz: run each fuzz target for FUZZTIME (default 20s)
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzRead$$' -fuzztime=$(FUZZTIME) ./internal/baseline/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/policy/

## bench: podfim against AIDE on the same trees; prints medians and ratios
BENCH_RUNS ?= 5
bench: build
	BENCH_RUNS=$(BENCH_RUNS) ./scripts/bench.sh
	./scripts/bench-sidecar.sh

## demo: the seed's walkthrough with podfim (see README)
demo:
	@echo "make demo: the Pod demo (podman kube play / Minikube) lands with issue 4."
	@echo "What it will do: build the podfim and hello images, run the seed's Pod with the"
	@echo "podfim sidecar, print the URL, the tamper command and what to watch."
	@echo "Today, try the CLI:  make build && bin/podfim baseline --root DIR --out base.pfb && bin/podfim check --root DIR --baseline base.pfb"

clean:
	rm -rf $(BIN)
