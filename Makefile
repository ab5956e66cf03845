# podfim's make targets. `make test` is the default test tier (unit and
# Linux integration tests; needs root, as in CI). Heavier tiers have their
# own targets, and .ci/run calls every one of them.

GO      ?= go
BIN     := bin
PODFIM  := $(BIN)/podfim
GOFLAGS := -trimpath
export CGO_ENABLED := 0

## The one version (scripts/version.sh, docs/install.md "Versions"): git describe
## --tags --dirty, or v0.0.0-<commit time>-<commit> without a tag. Set VERSION,
## COMMIT and SOURCE_DATE_EPOCH to build outside git. Each is computed once per make.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell scripts/version.sh)
endif
ifeq ($(origin COMMIT),undefined)
COMMIT := $(shell scripts/version.sh commit)
endif
ifeq ($(origin SOURCE_DATE_EPOCH),undefined)
SOURCE_DATE_EPOCH := $(shell scripts/version.sh epoch)
endif
BUILD_DATE := $(shell TZ=UTC date -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
# Passed to the recipes that need them, never exported to all: SOURCE_DATE_EPOCH
# in the environment of the tests would change every baseline's creation time.
VERSION_ENV := VERSION=$(VERSION) COMMIT=$(COMMIT) SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH)
VERSION_PKG := github.com/podfim/podfim/internal/version
LDFLAGS     := -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).commit=$(COMMIT) -X $(VERSION_PKG).date=$(BUILD_DATE)

.PHONY: all build test lint fuzz bench bench-scale images demo demo-down e2e-podman e2e-kube clean
.PHONY: cluster-harness cluster-build cluster-up cluster-down cluster-smoke helm
.PHONY: release release-push release-check cyclonedx

all: build

build:
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(PODFIM) ./cmd/podfim

## lint: formatting, vet and staticcheck (the e2e tests too: ./... leaves out their build tag),
## no function over 100 lines outside tests (scripts/funclen, with its shrinking allowlist)
## and tidy go.mod files. staticcheck is pinned in tools/go.mod (a module of its own, so its
## requirements never reach podfim's) and built from the Go module proxy like everything else.
STATICCHECK := $(BIN)/staticcheck
lint:
	@out=$$(gofmt -l cmd internal scripts test 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	$(GO) vet -tags release ./test/release/
	cd tools && $(GO) build -trimpath -buildvcs=false -o $(CURDIR)/$(STATICCHECK) honnef.co/go/tools/cmd/staticcheck
	$(STATICCHECK) -tags e2e ./...
	$(GO) run ./scripts/funclen
	$(GO) mod tidy -diff
	cd tools && $(GO) mod tidy -diff

## test: the default tier: lint, then every unit and integration test with the race detector
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	# The baseline format's full truncation and attribute sweeps (sampled under -race).
	$(GO) test -count=1 ./internal/baseline/
	# The sidecar's memory bound: 300,000 files in a 128 MiB cgroup (under -race, the behaviour only).
	$(GO) test -count=1 -run '^TestLargeTree$$' ./test/sidecar/

## fuzz: run each fuzz target for FUZZTIME (default 20s)
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzRead$$' -fuzztime=$(FUZZTIME) ./internal/baseline/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeBody$$' -fuzztime=$(FUZZTIME) ./internal/baseline/
	$(GO) test -run='^$$' -fuzz='^FuzzHeaderRecord$$' -fuzztime=$(FUZZTIME) ./internal/baseline/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/policy/
	$(GO) test -run='^$$' -fuzz='^FuzzParseAnnotations$$' -fuzztime=$(FUZZTIME) ./internal/inject/
	$(GO) test -run='^$$' -fuzz='^FuzzHandler$$' -fuzztime=$(FUZZTIME) ./internal/webhook/
	$(GO) test -run='^$$' -fuzz='^FuzzParseMountinfo$$' -fuzztime=$(FUZZTIME) ./internal/origin/
	# Layers are KiBs of tar blocks: minimizing each new input byte by byte
	# would take all of FUZZTIME, hence the bound.
	$(GO) test -run='^$$' -fuzz='^FuzzApply$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s ./internal/image/

## bench: podfim against AIDE on the same trees; prints medians and ratios
BENCH_RUNS ?= 5
bench: build
	BENCH_RUNS=$(BENCH_RUNS) ./scripts/bench.sh
	./scripts/bench-sidecar.sh
	BENCH_RUNS=$(BENCH_RUNS) GO=$(GO) ./scripts/bench-image.sh

## bench-scale: podfim at a million files (scripts/bench-scale.sh: N and N/10 small files,
## BENCH_SCALE_BIG files of 1 MiB, AIDE once at N); about 4.5 GiB of disk at the full size.
## .ci/run uses a small N: the figures then measure start-up more than scale.
BENCH_SCALE_FILES ?= 1000000
BENCH_SCALE_BIG   ?= 10000
BENCH_SCALE_AIDE  ?= 1
bench-scale: build
	BENCH_SCALE_FILES=$(BENCH_SCALE_FILES) BENCH_SCALE_BIG=$(BENCH_SCALE_BIG) BENCH_SCALE_AIDE=$(BENCH_SCALE_AIDE) GO=$(GO) ./scripts/bench-scale.sh

## images: podfim:dev and hello:dev, FROM scratch with static binaries (podman, or docker),
## stamped and labelled with VERSION (org.opencontainers.image.version, revision, created, source)
images:
	GO=$(GO) $(VERSION_ENV) ./scripts/images.sh

## demo: the seed's walkthrough with podfim on podman (see docs/demo.md); RESPOND=restore|kill.
## KUBE=1: on Kubernetes instead (Minikube, or the test cluster when it runs; scripts/demo-kube.sh)
KUBE ?=
demo:
	KUBE=$(KUBE) ./scripts/demo.sh

demo-down:
	KUBE=$(KUBE) ./scripts/demo.sh down

## e2e-podman: kube play the demo Pod, tamper, check findings and responses (needs root)
e2e-podman:
	$(GO) test -tags e2e -count=1 -run Podman -v -timeout 15m ./test/e2e/

## e2e-kube: the demo on a real kubelet: every manifest and chart rendering against the
## apiserver, the walkthrough (tamper, kill, RESTARTS 1, healed), helm install, and every other
## TestKube* test. Uses the test cluster when it is up; otherwise brings it up and, at the end,
## down again, also when the run is interrupted (INT, TERM, HUP) or a test binary dies without
## its cleanups (a -timeout panic). Images are built and imported under PODFIM_E2E_TAG (default e2e).
PODFIM_E2E_TAG ?= e2e
e2e-kube: cluster-harness helm
	@started=; \
	trap 'if [ -n "$$started" ]; then started=; $(CLUSTER) down || exit 1; fi' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP; \
	if ! $(CLUSTER) status >/dev/null 2>&1; then \
		echo "e2e-kube: the test cluster is not up: bringing it up (and down at the end)"; \
		started=1; $(CLUSTER) up || exit 1; \
	fi; \
	eval "$$($(CLUSTER) env)"; \
	PODFIM_E2E_TAG=$(PODFIM_E2E_TAG) $(GO) test -tags e2e -count=1 -run Kube -v -timeout 40m ./test/e2e/

## cluster-*: the local single-node Kubernetes of test/cluster (docs/cluster.md; needs root).
## A cold cluster-build downloads ~0.6 GB of modules and builds 6+ minutes; cached, seconds.
CLUSTER := $(BIN)/cluster
cluster-harness:
	cd test/cluster && $(GO) build $(GOFLAGS) -o $(CURDIR)/$(CLUSTER) ./cmd/cluster

cluster-build: cluster-harness
	$(CLUSTER) build

cluster-up: cluster-harness
	$(CLUSTER) up

cluster-down: cluster-harness
	$(CLUSTER) down

## cluster-smoke: up, a two-container pod (exec, kill -9, restart), down
cluster-smoke: cluster-harness
	$(CLUSTER) smoke

## helm: bin/helm, built from Go modules (test/cluster/helm: its own module, so
## helm's requirements never change the Kubernetes build). The -X flags are
## helm's own Makefile's: its version, and Kubernetes 1.34 as the version
## `helm template` and `helm lint` assume without a cluster.
HELM         := $(BIN)/helm
HELM_VERSION := v3.19.5
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34 \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34
helm:
	cd test/cluster/helm && $(GO) build $(GOFLAGS) -buildvcs=false -ldflags '$(HELM_LDFLAGS)' -o $(CURDIR)/$(HELM) helm.sh/helm/v3/cmd/helm
	$(HELM) version --short

## release: dist/ from the commit checked out (a dirty tree is refused): static podfim
## binaries for linux/amd64 and linux/arm64, their CycloneDX SBOMs, the podfim and hello
## images for both as OCI image layouts (dist/oci/NAME, one index each), the packaged chart,
## the signed baselines of the podfim image (SIGN_KEY), SHA256SUMS. Reproducible: two runs
## give the same bytes (make release-check). docs/install.md.
release: helm cyclonedx
	GO=$(GO) HELM=$(HELM) CYCLONEDX=$(CYCLONEDX) $(VERSION_ENV) ./scripts/release.sh

## release-push REGISTRY=host[:port]/path: dist/'s images (by digest, then the version tag),
## the podfim image's baselines as its referrers, and the chart (oci://REGISTRY/charts/podfim)
REGISTRY ?=
release-push: helm
	GO=$(GO) HELM=$(HELM) REGISTRY=$(REGISTRY) $(VERSION_ENV) ./scripts/release.sh push

## release-check: make release twice into temporary directories and compare them byte for
## byte; check what dist/ holds (test/release, build tag release). With the test cluster's
## registry up (docs/cluster.md), also push it there and install the chart from it.
release-check: helm cyclonedx
	$(GO) test -tags release -count=1 -v -timeout 30m ./test/release/

## cyclonedx: bin/cyclonedx-gomod, the SBOM tool pinned in tools/go.mod
CYCLONEDX := $(BIN)/cyclonedx-gomod
cyclonedx:
	cd tools && $(GO) build -trimpath -buildvcs=false -o $(CURDIR)/$(CYCLONEDX) github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod

clean:
	rm -rf $(BIN)
