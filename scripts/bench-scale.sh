#!/usr/bin/env bash
# scripts/bench-scale.sh: podfim at scale (issue #14 item 3). Generated trees
# of N small files and of N/10 (the ratio shows whether time grows linearly),
# and one of BIG files of 1 MiB; on each, podfim baseline, check, check
# --quick and update, and the floor (scripts/floor), with wall time, CPU time
# and peak RSS; AIDE once on the largest tree, for the record.
# `make bench-scale` runs it; docs/benchmarks.md explains the figures.
#
# Environment:
#   BENCH_SCALE_FILES=1000000     N, the small files of the large tree (the small tree has N/10)
#   BENCH_SCALE_BIG=10000         files of 1 MiB in the third tree (0: no such tree)
#   BENCH_SCALE_RUNS=1            timed runs of each operation after one warm-up (median reported)
#   BENCH_SCALE_AIDE=1            AIDE --init and --check once on the large tree (0: skip)
#   BENCH_DIR=/var/tmp/podfim-bench-scale   work dir (trees are kept and reused)
#   PODFIM=bin/podfim, GO=go      the binary under test; the toolchain for gentree and floor
#
# Needs about 4.5 GiB in BENCH_DIR at the full size (1M files of 256 B-4 KiB,
# 10,000 MiB of big files) and as much page cache for warm-cache figures. A
# missed target is printed as MISS, not a failure; a failing command or a
# check that finds differences on an unchanged tree fails the run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_SCALE_FILES:-1000000}
BIG=${BENCH_SCALE_BIG:-10000}
RUNS=${BENCH_SCALE_RUNS:-1}
WITH_AIDE=${BENCH_SCALE_AIDE:-1}
WORK=${BENCH_DIR:-/var/tmp/podfim-bench-scale}
PODFIM=${PODFIM:-$REPO/bin/podfim}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

T_LINEAR=11 # N / (N/10): time (wall and CPU) <= this
T_RSS=64    # peak RSS of every command on every tree, MiB <= this

die() { echo "bench-scale: $*" >&2; exit 1; }
log() { echo "bench-scale: $*" >&2; }
for v in N BIG RUNS WITH_AIDE; do
    case ${!v} in '' | *[!0-9]*) die "$v must be a number, not '${!v}'" ;; esac
done
((N >= 1000)) || die "BENCH_SCALE_FILES must be at least 1000"
((RUNS >= 1)) || die "BENCH_SCALE_RUNS must be at least 1"
[[ -x $PODFIM ]] || die "$PODFIM is missing: run 'make build'"
[[ $WORK == /* ]] || die "BENCH_DIR must be absolute: $WORK"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing: apt-get install time"
((WITH_AIDE == 0)) || command -v aide >/dev/null || die "aide is missing: apt-get install aide (or BENCH_SCALE_AIDE=0)"
START_NS=$(date +%s%N)

mkdir -p "$WORK"
RES=$WORK/results
rm -rf "$RES" "$WORK/logs"
mkdir -p "$RES" "$WORK/logs"
(cd "$REPO" && CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/gentree.bin" ./scripts/gentree &&
    CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/floor.bin" ./scripts/floor)

# dirs_for FILES: leaf directories of about 1,000 files each (gentree: a
# multiple of 10, 10 to 1000).
dirs_for() { local d=$(($1 / 1000 / 10 * 10)); ((d < 10)) && d=10; ((d > 1000)) && d=1000; echo $d; }

# tree NAME FILES MIN MAX DIRS: generate (or reuse) $WORK/NAME.
tree() {
    local name=$1 files=$2 min=$3 max=$4 dirs=$5
    local dir=$WORK/$name want
    want="$(sha256sum "$REPO/scripts/gentree/main.go" | cut -c1-16) files=$files min=$min max=$max dirs=$dirs"
    if [[ -d $dir && -f $dir.done && $(cat "$dir.done") == "$want" ]]; then
        log "reusing $dir ($want)"
        return
    fi
    log "generating $dir ($want)"
    rm -rf "$dir" "$dir.tmp" "$dir.done"
    "$WORK/gentree.bin" -root "$dir.tmp" -files "$files" -dirs "$dirs" -min "$min" -max "$max" -big 0 -seed 1 >&2
    mv "$dir.tmp" "$dir"
    sync
    echo "$want" >"$dir.done"
}

# measure TREE OP CMD...: append "wall_s rss_kib cpu_s" to $RES/TREE/OP
# (OP "-": a warm-up, not recorded). The command must exit 0.
measure() {
    local tree=$1 op=$2
    shift 2
    local slug=${op//[^A-Za-z0-9]/_} rc=0 t0 t1
    local logf=$WORK/logs/$tree-$slug.log
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$logf.rss" "$@" >"$logf" 2>&1 || rc=$?
    t1=$(date +%s%N)
    ((rc == 0)) || { tail -n 20 "$logf" >&2; die "$tree: exit $rc: $*"; }
    [[ $op == - ]] && return
    mkdir -p "$RES/$tree"
    tail -n1 "$logf.rss" | awk -v a="$t0" -v b="$t1" '{ printf "%.3f %d %.2f\n", (b - a) / 1e9, $1, $2 + $3 }' >>"$RES/$tree/$slug"
}

bench_tree() {
    local name=$1 root=$WORK/$1 r
    local base=$WORK/$name.pfb upd=$WORK/$name.upd.pfb
    log "$name: warm-up"
    measure "$name" - "$PODFIM" baseline --root "$root" --out "$base"
    measure "$name" - "$WORK/floor.bin" "$root"
    for ((r = 1; r <= RUNS; r++)); do
        log "$name: run $r/$RUNS"
        measure "$name" "podfim baseline" "$PODFIM" baseline --root "$root" --out "$base"
        measure "$name" "podfim check" "$PODFIM" check --root "$root" --baseline "$base"
        measure "$name" "podfim check --quick" "$PODFIM" check --quick --root "$root" --baseline "$base"
        cp "$base" "$upd"
        measure "$name" "podfim update" "$PODFIM" update --root "$root" --baseline "$upd"
        measure "$name" "floor" "$WORK/floor.bin" "$root"
    done
    grep -aoP 'wrote baseline .*: \K[0-9]+(?= entries)' "$WORK/logs/$name-podfim_baseline.log" >"$RES/$name/entries" ||
        die "$name: no entry count in the baseline's log"
}

bench_aide() {
    local name=$1 root=$WORK/$1 conf=$WORK/aide-$1.conf
    cat >"$conf" <<EOF
database_in=file:$WORK/aide-$name.db.gz
database_out=file:$WORK/aide-$name.db.new.gz
gzip_dbout=yes
database_attrs=sha256
report_url=stdout
Full = p+i+n+u+g+s+m+c+sha256
$(printf '%s' "$root" | sed 's/[].[^$*+?(){}|\\]/\\&/g') Full
EOF
    log "$name: aide --init and --check (once, for the record)"
    measure "$name" "aide --init" aide --config "$conf" --init
    cp "$WORK/aide-$name.db.new.gz" "$WORK/aide-$name.db.gz"
    measure "$name" "aide --check" aide --config "$conf" --check
}

# --- report ----------------------------------------------------------------
median() {
    sort -n -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fig() { # fig TREE OP COLUMN: the median (seconds; RSS in MiB)
    local f=$RES/$1/${2//[^A-Za-z0-9]/_}
    [[ -f $f ]] || { echo nan; return; }
    if (($3 == 2)); then awk -v k="$(median "$f" 2)" 'BEGIN { printf "%.1f", k / 1024 }'; else median "$f" "$3"; fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "nan"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "nan") print "n/a"; else print (v + 0 <= t + 0) ? "PASS" : "MISS" }'; }
row() { printf '%-44s  %10s  %8s  %s\n' "$@"; }

report() {
    local trees=("$@") t op
    local ops=("podfim baseline" "podfim check" "podfim check --quick" "podfim update" "floor" "aide --init" "aide --check")
    echo
    echo "podfim scale benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $RUNS timed run(s) per operation after a warm-up, warm page cache"
    echo "machine: $(nproc) CPU, kernel $(uname -r), $("$PODFIM" version 2>/dev/null | head -n1)"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    printf '%-8s  %-22s  %9s  %9s  %9s\n' tree operation "wall s" "CPU s" "RSS MiB"
    for t in "${trees[@]}"; do
        for op in "${ops[@]}"; do
            [[ -f $RES/$t/${op//[^A-Za-z0-9]/_} ]] || continue
            printf '%-8s  %-22s  %9s  %9s  %9s\n' "$t" "$op" "$(fig "$t" "$op" 1)" "$(fig "$t" "$op" 3)" "$(fig "$t" "$op" 2)"
        done
        echo "          ($(cat "$RES/$t/entries") entries)"
    done
    echo
    row "figure" value target verdict
    local v
    for op in "podfim baseline" "podfim check" "podfim check --quick" "podfim update"; do
        v=$(ratio "$(fig large "$op" 1)" "$(fig small "$op" 1)")
        row "wall: $op, large / small" "$v" "<= $T_LINEAR" "$(verdict "$v" $T_LINEAR)"
        v=$(ratio "$(fig large "$op" 3)" "$(fig small "$op" 3)")
        row "CPU: $op, large / small" "$v" "<= $T_LINEAR" "$(verdict "$v" $T_LINEAR)"
    done
    for t in "${trees[@]}"; do
        for op in "podfim baseline" "podfim check" "podfim check --quick" "podfim update"; do
            v=$(fig "$t" "$op" 2)
            row "peak RSS MiB: $op, $t" "$v" "<= $T_RSS" "$(verdict "$v" $T_RSS)"
        done
        for op in "podfim baseline" "podfim check"; do
            row "CPU: $op / floor, $t" "$(ratio "$(fig "$t" "$op" 3)" "$(fig "$t" floor 3)")" "" info
        done
    done
    echo
    echo "trees: small $((N / 10)) and large $N files of 256 B-4 KiB; big: $BIG files of 1 MiB; in $WORK"
}

# --- main ------------------------------------------------------------------
trees=(small large)
tree small $((N / 10)) 256 4096 "$(dirs_for $((N / 10)))"
tree large "$N" 256 4096 "$(dirs_for "$N")"
if ((BIG > 0)); then
    tree big "$BIG" $((1 << 20)) $((1 << 20)) "$(dirs_for $((BIG * 10)))"
    trees+=(big)
fi
for t in "${trees[@]}"; do bench_tree "$t"; done
((WITH_AIDE == 0)) || bench_aide large
report "${trees[@]}" | tee "$WORK/report.txt"
echo "bench-scale: done in $(awk -v a="$START_NS" -v b="$(date +%s%N)" 'BEGIN { printf "%.0f", (b - a) / 1e9 }')s; report in $WORK/report.txt"
