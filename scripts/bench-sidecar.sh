#!/usr/bin/env bash
# scripts/bench-sidecar.sh: the sidecar benchmark. It builds podfim (go build,
# no race detector) and the benchmark (test/sidecar, build tag
# sidecarbench), then runs the real `podfim sidecar` in a pod made of Linux
# namespaces and prints tamper-to-response latencies and the sidecar's CPU
# and memory. `make bench` runs it after scripts/bench.sh; docs/benchmarks.md
# ("Sidecar") explains the figures.
#
# Environment:
#   SIDECAR_BENCH_TAMPERS=1000         tampers answered by restore, per detection mode
#   SIDECAR_BENCH_KILLS=50             tampers answered by kill (each restarts the app)
#   SIDECAR_BENCH_POLL=10ms            --quick-interval of the polling-only run
#   SIDECAR_BENCH_IDLE=30s             idle window of the small app
#   SIDECAR_BENCH_TREES="10000 100000 300000" files (1-8 KiB) in the app's root for the CPU/RSS runs; "" skips
#   SIDECAR_BENCH_TREE_IDLE=15s        idle window of each tree run
#   SIDECAR_BENCH_PHASES=latency,growing,kill,idle,drift,trees   which parts run
#   SIDECAR_BENCH_IDLE_FLAGS=          more sidecar flags for the idle runs (experiments)
#   SIDECAR_BENCH_DIR=/var/tmp/podfim-bench-sidecar  binaries, report.txt, log.txt
#   GO=go                              the Go toolchain
#
# Needs root (namespaces, tmpfs mounts; the sidecar needs CAP_SYS_PTRACE and
# CAP_KILL). It fails on real errors only (a build failing, the sidecar not
# starting, a tamper never answered); a missed target is printed as MISS.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${SIDECAR_BENCH_DIR:-/var/tmp/podfim-bench-sidecar}

die() { echo "bench-sidecar: $*" >&2; exit 1; }
log() { echo "bench-sidecar: $*" >&2; }

[[ $(id -u) == 0 ]] || die "needs root: it builds a pod out of pid and mount namespaces"
[[ $WORK == /* ]] || die "SIDECAR_BENCH_DIR must be absolute: $WORK"

find_go() {
    if [[ -n ${GO:-} ]]; then echo "$GO"; return; fi
    if command -v go >/dev/null; then command -v go; return; fi
    if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
    die "no Go toolchain (set GO=...)"
}
GOBIN=$(find_go)
# The benchmark builds its static test app with `go` from PATH.
export PATH="$(dirname "$GOBIN"):$PATH"

START_NS=$(date +%s%N)
mkdir -p "$WORK"

log "building podfim (go build -trimpath, CGO_ENABLED=0, no -race) and the benchmark"
(cd "$REPO" && CGO_ENABLED=0 "$GOBIN" build -trimpath -o "$WORK/podfim" ./cmd/podfim)
(cd "$REPO" && CGO_ENABLED=0 "$GOBIN" test -c -trimpath -tags sidecarbench -o "$WORK/sidecarbench.test" ./test/sidecar)

# GOFLAGS may hold -buildvcs=false: say here which source was built.
src="unknown source"
if rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); then
    src="commit $rev"
    n=$(git -C "$REPO" status --porcelain --untracked-files=no -- cmd internal go.mod go.sum | wc -l)
    ((n == 0)) || src="$src + uncommitted changes to $n file(s) of cmd/, internal/, go.mod, go.sum"
fi

export SIDECARBENCH_PODFIM=$WORK/podfim
export SIDECARBENCH_SOURCE=$src
export SIDECARBENCH_REPORT=$WORK/report.txt
export SIDECARBENCH_TAMPERS=${SIDECAR_BENCH_TAMPERS:-1000}
export SIDECARBENCH_KILLS=${SIDECAR_BENCH_KILLS:-50}
export SIDECARBENCH_POLL=${SIDECAR_BENCH_POLL:-10ms}
export SIDECARBENCH_IDLE=${SIDECAR_BENCH_IDLE:-30s}
export SIDECARBENCH_TREES=${SIDECAR_BENCH_TREES-10000 100000 300000}
export SIDECARBENCH_TREE_IDLE=${SIDECAR_BENCH_TREE_IDLE:-15s}
export SIDECARBENCH_PHASES=${SIDECAR_BENCH_PHASES:-latency,growing,kill,idle,drift,trees}
export SIDECARBENCH_IDLE_FLAGS=${SIDECAR_BENCH_IDLE_FLAGS:-}
rm -f "$SIDECARBENCH_REPORT"

# The test binary runs from its package directory (it builds testdata/app).
# Its log (test output, the sidecar's log on failure) goes to log.txt; the
# progress lines and the report to the terminal.
rc=0
(cd "$REPO/test/sidecar" && "$WORK/sidecarbench.test" -test.run '^TestSidecarBench$' -test.count=1 -test.timeout=30m) \
    >"$WORK/log.txt" || rc=$?
if [[ -f $SIDECARBENCH_REPORT ]]; then
    cat "$SIDECARBENCH_REPORT"
fi
if [[ $rc != 0 ]]; then
    tail -n 60 "$WORK/log.txt" >&2
    die "FAILED (exit $rc); the whole output is in $WORK/log.txt"
fi
echo "bench-sidecar: done in $(awk -v a="$START_NS" -v b="$(date +%s%N)" 'BEGIN { printf "%.0f", (b - a) / 1e9 }')s; report in $SIDECARBENCH_REPORT"
