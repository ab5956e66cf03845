#!/usr/bin/env bash
# scripts/bench-image.sh: `podfim baseline --image` of a generated image
# (scripts/genimage: 5,000 files, 100 MiB, 4 gzip layers, an OCI layout)
# against what it replaces: extracting the same layers with a plain
# `tar -xzf` and `podfim baseline --root` of the extracted tree, measured
# in the same run. `make bench` runs it; docs/benchmarks.md ("Image
# baselines") explains the figures.
#
# Environment:
#   BENCH_RUNS=5                        timed runs of each side (the median is reported)
#   IMAGE_BENCH_DIR=/var/tmp/podfim-bench-image   layout, extracted tree, baselines
#   PODFIM=bin/podfim                   the binary under test
#   GO=go                               the Go toolchain (only to build scripts/genimage)
#
# It fails on real errors only: a command that fails, or the image baseline
# not checking clean against the extracted tree. A missed target is MISS.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-5}
WORK=${IMAGE_BENCH_DIR:-/var/tmp/podfim-bench-image}
PODFIM=${PODFIM:-$REPO/bin/podfim}
T_RSS=48 # MiB, peak RSS of podfim baseline --image <= this

die() { echo "bench-image: $*" >&2; exit 1; }
log() { echo "bench-image: $*" >&2; }

case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a positive integer, not '$RUNS'" ;; esac
[[ -x $PODFIM ]] || die "$PODFIM is missing: run 'make build' (or 'make bench')"
[[ $WORK == /* ]] || die "IMAGE_BENCH_DIR must be absolute: $WORK"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is missing: apt-get install time"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

mkdir -p "$WORK"
LAYOUT=$WORK/layout
# The layout is regenerated when the generator changes.
STAMP=$(sha256sum "$REPO/scripts/genimage/main.go" | cut -c1-16)
if [[ ! -f $WORK/layout.$STAMP ]]; then
    log "generating the image (scripts/genimage)"
    rm -rf "$LAYOUT" "$WORK"/layout.*
    (cd "$REPO" && "$GO" run ./scripts/genimage -out "$LAYOUT")
    touch "$WORK/layout.$STAMP"
fi
mapfile -t LAYERS < "$LAYOUT/layers.txt"

# timed FILE CMD...: appends "seconds maxrss_kib" of CMD to FILE.
timed() {
    local file=$1; shift
    /usr/bin/time -f '%e %M' -o "$WORK/time.tmp" "$@" >/dev/null
    cat "$WORK/time.tmp" >> "$file"
}


: > "$WORK/direct"; : > "$WORK/extract"; : > "$WORK/tree-baseline"
BLOBS=("${LAYERS[@]/#/$LAYOUT/}")
for ((i = 0; i < RUNS; i++)); do
    timed "$WORK/direct" "$PODFIM" baseline --image "oci:$LAYOUT" --out "$WORK/image.pfb"
    rm -rf "$WORK/tree" && mkdir "$WORK/tree"
    timed "$WORK/extract" bash -c 'dir=$1; shift; for l; do tar -xzf "$l" -C "$dir"; done' _ "$WORK/tree" "${BLOBS[@]}"
    timed "$WORK/tree-baseline" "$PODFIM" baseline --root "$WORK/tree" --out "$WORK/tree.pfb"
done

# The two ways must agree: the image's baseline checks clean on the tree.
"$PODFIM" check --root "$WORK/tree" --baseline "$WORK/image.pfb" >/dev/null ||
    die "the image baseline does not check clean against the extracted tree"

median() { sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
direct=$(median "$WORK/direct" 1)
ext=$(median "$WORK/extract" 1)
tree=$(median "$WORK/tree-baseline" 1)
rss=$(median "$WORK/direct" 2)
rss_tree=$(median "$WORK/tree-baseline" 2)
entries=$("$PODFIM" check --root "$WORK/tree" --baseline "$WORK/image.pfb" --format json | grep -o '"baseline_entries": *[0-9]*' | grep -o '[0-9]*$')

awk -v d="$direct" -v e="$ext" -v t="$tree" -v r="$rss" -v rt="$rss_tree" -v tr="$T_RSS" -v n="$RUNS" -v ent="$entries" 'BEGIN {
    printf "\nImage baseline: %d entries, 100 MiB in 4 gzip layers (OCI layout); medians of %d runs\n", ent, n
    printf "  %-44s %8.2f s  peak RSS %6.1f MiB\n", "podfim baseline --image oci:DIR", d, r / 1024
    printf "  %-44s %8.2f s\n", "tar -xzf of each layer", e
    printf "  %-44s %8.2f s  peak RSS %6.1f MiB\n", "podfim baseline --root (the extracted tree)", t, rt / 1024
    printf "  %-44s %8.2f s\n", "extract + baseline", e + t
    printf "  %-44s %8.2fx  target > 1     %s\n", "speed-up of --image", (e + t) / d, (d < e + t) ? "PASS" : "MISS"
    printf "  %-44s %8.1f MiB target < %d  %s\n", "peak RSS of --image", r / 1024, tr, (r / 1024 < tr) ? "PASS" : "MISS"
}'
