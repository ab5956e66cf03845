#!/usr/bin/env bash
# scripts/bench.sh: podfim against AIDE and against the floor (scripts/floor:
# the least work any tool must do for a full check) on the same trees with
# the same attributes (type, mode, uid, gid, size, inode, nlink, mtime,
# ctime, sha256).
# `make bench` builds bin/podfim and runs this; docs/benchmarks.md explains
# what is measured and how to read the output.
#
# Environment:
#   BENCH_RUNS=5                  timed runs of each operation (the median is reported)
#   BENCH_TREES=all               go (/usr/local/go) | gen (the generated tree) | all
#   BENCH_DIR=/var/tmp/podfim-bench  work dir: generated tree, databases, logs, report
#   BENCH_AIDE_WORKERS=$(nproc)   also time AIDE with this many workers (-W); <= 1 skips those rows
#   GOTREE=/usr/local/go          the read-only tree measured as is
#   PODFIM=bin/podfim             the binary under test
#   GO=go                         the Go toolchain (to build scripts/gentree and scripts/floor)
#
# It installs AIDE and GNU time if missing (Debian, root). It fails on real
# errors only: a command that fails, or a check that reports differences on
# an unchanged tree. A missed target is reported as MISS, not as a failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-5}
TREES=${BENCH_TREES:-all}
WORK=${BENCH_DIR:-/var/tmp/podfim-bench}
GOTREE=${GOTREE:-/usr/local/go}
PODFIM=${PODFIM:-$REPO/bin/podfim}
NPROC=$(nproc)
AIDE_WORKERS=${BENCH_AIDE_WORKERS:-$NPROC}

# The generated tree. Changing these or scripts/gentree/main.go regenerates it.
GEN_FILES=100000 GEN_DIRS=1000 GEN_MIN=1024 GEN_MAX=8192 GEN_BIG=20 GEN_BIGSIZE=$((16 << 20)) GEN_SEED=1

# Targets (see docs/benchmarks.md).
T_CHECK=10    # aide --check / podfim check   >= this
T_INIT=5      # aide --init / podfim baseline >= this
T_QUICK=1.5   # podfim check --quick / find   <= this
T_RSS=48      # podfim peak RSS on the generated tree, MiB <= this
T_FLOOR=1.3   # podfim check and baseline / floor, wall and CPU time <= this

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a positive integer, not '$RUNS'" ;; esac
case $TREES in go | gen | all) ;; *) die "BENCH_TREES must be go, gen or all, not '$TREES'" ;; esac
case $AIDE_WORKERS in '' | *[!0-9]*) die "BENCH_AIDE_WORKERS must be a number, not '$AIDE_WORKERS'" ;; esac
[[ -x $PODFIM ]] || die "$PODFIM is missing: run 'make build' (or 'make bench')"
[[ $WORK == /* ]] || die "BENCH_DIR must be absolute: $WORK"

START_NS=$(date +%s%N)

# --- tools -----------------------------------------------------------------
apt_install() {
    [[ $(id -u) == 0 ]] || die "$* is missing and installing it needs root: apt-get install $*"
    log "installing $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v aide >/dev/null || apt_install aide
[[ -x /usr/bin/time ]] || apt_install time
AIDE=$(command -v aide)
AIDE_VERSION=$("$AIDE" --version 2>&1 | head -n1)

find_go() {
    if [[ -n ${GO:-} ]]; then echo "$GO"; return; fi
    if command -v go >/dev/null; then command -v go; return; fi
    if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
    die "no Go toolchain to build scripts/gentree (set GO=...)"
}

# The floor program, built from this checkout for every run.
build_floor() {
    local go
    go=$(find_go)
    (cd "$REPO" && CGO_ENABLED=0 "$go" build -trimpath -o "$WORK/floor.bin" ./scripts/floor)
}

mkdir -p "$WORK"
RES=$WORK/results
rm -rf "$RES" "$WORK/logs"
mkdir -p "$RES" "$WORK/logs"

# --- the generated tree ----------------------------------------------------
GENTREE_DIR=$WORK/tree
# Nothing else in $WORK may start with "tree": AIDE's selection line is a
# prefix regex, so $WORK/tree.x would be in AIDE's tree and not in podfim's.
GEN_MARKER=$WORK/gentree.done
GEN_TMP=$WORK/gentree.tmp

gen_spec() {
    local h
    h=$(sha256sum "$REPO/scripts/gentree/main.go" | cut -c1-16)
    echo "gentree $h files=$GEN_FILES dirs=$GEN_DIRS min=$GEN_MIN max=$GEN_MAX big=$GEN_BIG bigsize=$GEN_BIGSIZE seed=$GEN_SEED"
}

ensure_gentree() {
    local want
    want=$(gen_spec)
    if [[ -d $GENTREE_DIR && -f $GEN_MARKER && $(cat "$GEN_MARKER") == "$want" ]]; then
        log "reusing $GENTREE_DIR ($want)"
        return
    fi
    local go
    go=$(find_go)
    log "generating $GENTREE_DIR ($want)"
    rm -f "$GEN_MARKER"
    rm -rf "$GENTREE_DIR" "$GEN_TMP"
    (cd "$REPO" && CGO_ENABLED=0 "$go" build -trimpath -o "$WORK/gentree.bin" ./scripts/gentree)
    "$WORK/gentree.bin" -root "$GEN_TMP" -files "$GEN_FILES" -dirs "$GEN_DIRS" \
        -min "$GEN_MIN" -max "$GEN_MAX" -big "$GEN_BIG" -bigsize "$GEN_BIGSIZE" -seed "$GEN_SEED" >&2
    mv "$GEN_TMP" "$GENTREE_DIR"
    sync # write the dirty pages back now, not during the timed runs
    echo "$want" >"$GEN_MARKER"
}

# --- measuring -------------------------------------------------------------
# measure TREE OP EXPECT OUT CMD...: run CMD with stdout to OUT and stderr to
# a log (OUT "log": a file next to it); append "wall_seconds peak_rss_kib
# cpu_seconds" to $RES/TREE/OP. EXPECT is "0" (the exit status must be 0) or
# "any". OP "-" runs without recording (warm-up).
measure() {
    local tree=$1 op=$2 expect=$3 out=$4
    shift 4
    local slug=${op//[^A-Za-z0-9]/_}
    local logf=$WORK/logs/$tree-$slug.log rssf=$WORK/logs/$tree-$slug.rss
    [[ $op == - ]] && logf=$WORK/logs/$tree-warm-$(basename "$1")-$RANDOM.log && rssf=$logf.rss
    [[ $out == log ]] && out=$logf.out
    local t0 t1 rc=0
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$rssf" "$@" >"$out" 2>"$logf" || rc=$?
    t1=$(date +%s%N)
    if [[ $expect == 0 && $rc != 0 ]]; then
        echo "bench: FAILED (exit $rc, expected 0): $*" >&2
        [[ -f $out && $out != /dev/null ]] && tail -n 20 "$out" >&2
        tail -n 20 "$logf" >&2
        exit 1
    fi
    if [[ $op != - ]]; then
        mkdir -p "$RES/$tree"
        tail -n1 "$rssf" | awk -v a="$t0" -v b="$t1" '{ printf "%.3f %d %.2f\n", (b - a) / 1e9, $1, $2 + $3 }' >>"$RES/$tree/$slug"
    fi
}

# median FILE COLUMN
median() {
    sort -n -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- one tree --------------------------------------------------------------
aide_regex() { printf '%s' "$1" | sed 's/[].[^$*+?(){}|\\]/\\&/g'; }

bench_tree() {
    local name=$1 root=$2
    local dir=$WORK/$name
    mkdir -p "$dir"
    local conf=$dir/aide.conf policy=$dir/policy.yaml base=$dir/base.pfb
    local dbin=$dir/aide.db.gz dbout=$dir/aide.db.new.gz

    # AIDE: the same ten attributes as the policy below. database_attrs is
    # cut to one sha256 of the database (AIDE's default computes a dozen
    # digests of it), like podfim's one digest of its baseline.
    cat >"$conf" <<EOF
# written by scripts/bench.sh
database_in=file:$dbin
database_out=file:$dbout
gzip_dbout=yes
database_attrs=sha256
report_url=stdout
Full = p+i+n+u+g+s+m+c+sha256
$(aide_regex "$root") Full
EOF
    cat >"$policy" <<EOF
# written by scripts/bench.sh: the attributes of AIDE's p+i+n+u+g+s+m+c+sha256
version: 1
rules:
  - path: /
    attributes: [type, mode, uid, gid, size, inode, nlink, mtime, ctime, sha256]
EOF
    "$AIDE" --config "$conf" --config-check >"$dir/aide-config-check.log" 2>&1 ||
        { cat "$dir/aide-config-check.log" >&2; die "aide rejects $conf"; }

    local aide_mt=()
    ((AIDE_WORKERS > 1)) && aide_mt=(-W "$AIDE_WORKERS")
    local walk=(find "$root" -printf '%i %n %m %U %G %s %T@ %C@\n')

    # Warm the page cache and dentries, and make the databases the checks read.
    log "$name: warm-up (one untimed run of each tool)"
    measure "$name" - 0 log "$AIDE" --config "$conf" --init
    cp "$dbout" "$dbin"
    measure "$name" - 0 log "$AIDE" --config "$conf" --check
    measure "$name" - 0 log "$PODFIM" baseline --root "$root" --out "$base" --policy "$policy"
    measure "$name" - 0 log "$PODFIM" check --root "$root" --baseline "$base" --policy "$policy"
    measure "$name" - 0 /dev/null "${walk[@]}"
    measure "$name" - 0 /dev/null "$WORK/floor.bin" "$root"

    # Timed runs, interleaved so that load from elsewhere on the machine
    # spreads over every operation rather than hitting one.
    local r
    for ((r = 1; r <= RUNS; r++)); do
        log "$name: run $r/$RUNS"
        measure "$name" "aide --init" 0 log "$AIDE" --config "$conf" --init
        measure "$name" "podfim baseline" 0 log "$PODFIM" baseline --root "$root" --out "$base" --policy "$policy"
        measure "$name" "aide --check" 0 log "$AIDE" --config "$conf" --check
        measure "$name" "podfim check" 0 log "$PODFIM" check --root "$root" --baseline "$base" --policy "$policy"
        measure "$name" "podfim check --quick" 0 log "$PODFIM" check --quick --root "$root" --baseline "$base" --policy "$policy"
        if ((${#aide_mt[@]})); then
            measure "$name" "aide --init -W $AIDE_WORKERS" 0 log "$AIDE" --config "$conf" --init "${aide_mt[@]}"
            measure "$name" "aide --check -W $AIDE_WORKERS" 0 log "$AIDE" --config "$conf" --check "${aide_mt[@]}"
        fi
        measure "$name" "find walk" 0 /dev/null "${walk[@]}"
        measure "$name" "floor" 0 /dev/null "$WORK/floor.bin" "$root"
    done

    # Sanity: both tools agree the unchanged tree has no differences (every
    # check above exited 0) and cover the same entries.
    local aide_n podfim_n find_n
    aide_n=$(grep -aoP 'Number of entries:\s*\K[0-9]+' "$WORK/logs/$name-aide___check.log.out" | tail -n1 || true)
    podfim_n=$(grep -aoP 'wrote baseline .*: \K[0-9]+(?= entries)' "$WORK/logs/$name-podfim_baseline.log.out" | tail -n1 || true)
    find_n=$(find "$root" | wc -l)
    echo "$aide_n" >"$RES/$name/entries.aide"
    echo "$podfim_n" >"$RES/$name/entries.podfim"
    echo "$find_n" >"$RES/$name/entries.find"
    [[ -n $aide_n && -n $podfim_n ]] || die "$name: could not read the entry counts from the logs in $WORK/logs"
    # podfim may or may not record the root itself: allow a difference of one.
    local d=$((aide_n - podfim_n))
    ((d >= -1 && d <= 1)) || die "$name: AIDE has $aide_n entries but podfim $podfim_n (find: $find_n): they do not cover the same tree"
    stat -c %s "$dbin" >"$RES/$name/db.aide"
    stat -c %s "$base" >"$RES/$name/db.podfim"
}

# footprint CMD...: the resident memory of CMD at its first write to
# standard output (for `podfim version`: all of start-up done), split into
# file pages (the binary's code and data that start-up touched: shared by
# every process of the same binary, and reclaimable) and anonymous memory
# (heap, stacks: the process's own). The command writes into a pipe that is
# already full, so it blocks there until it is killed.
footprint() {
    local d fifo pid i st
    d=$(mktemp -d) fifo=$d/out
    mkfifo "$fifo"
    exec 3<>"$fifo"
    head -c 65536 /dev/zero >&3 # a pipe holds 64 KiB: now full
    "$@" >"$fifo" 2>/dev/null &
    pid=$!
    for ((i = 0; i < 200; i++)); do
        st=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        [[ $st == S ]] && grep -qs pipe_write /proc/$pid/task/*/wchan && break
        sleep 0.05
    done
    awk '/^(VmRSS|RssAnon|RssFile):/ { v[$1] = $2 } END {
        printf "VmRSS %.1f MiB = file pages (binary) %.1f MiB + anonymous (heap, stacks) %.1f MiB\n",
            v["VmRSS:"] / 1024, v["RssFile:"] / 1024, v["RssAnon:"] / 1024 }' "/proc/$pid/status"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    exec 3>&-
    rm -rf "$d"
}

# --- report ----------------------------------------------------------------
# secs TREE OP / rss TREE OP: medians (seconds; MiB)
slug() { local s=$1; echo "${s//[^A-Za-z0-9]/_}"; }
secs() { local f=$RES/$1/$(slug "$2"); [[ -f $f ]] && median "$f" 1 || echo nan; }
cpu() { local f=$RES/$1/$(slug "$2"); [[ -f $f ]] && median "$f" 3 || echo nan; }
rss() { local f=$RES/$1/$(slug "$2"); [[ -f $f ]] && awk -v k="$(median "$f" 2)" 'BEGIN { printf "%.1f", k / 1024 }' || echo nan; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "nan"; else printf "%.2f", a / b }'; }
verdict() { # verdict VALUE ge|le TARGET
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "nan") { print "n/a"; exit }
        ok = (op == "ge") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print ok ? "PASS" : "MISS" }'
}

# floor_rows TREE: every podfim operation as a ratio to the floor, wall and
# CPU time; full check and baseline have a target, the quick check is info.
floor_rows() {
    local t=$1 op v kind get target
    for op in "podfim check" "podfim baseline" "podfim check --quick" "aide --check"; do
        for kind in wall CPU; do
            get=secs; [[ $kind == CPU ]] && get=cpu
            v=$(ratio "$($get "$t" "$op")" "$($get "$t" floor)")
            case $op in
            "podfim check" | "podfim baseline") target="<= $T_FLOOR" ;;
            *) target= ;;
            esac
            if [[ -n $target ]]; then
                printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "$kind: $op / floor" "$v" "$target" "$(verdict "$v" le $T_FLOOR)"
            else
                printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "$kind: $op / floor" "$v" "" "info"
            fi
        done
    done
}

report() {
    local trees=("$@") t op f
    local ops=("aide --init" "podfim baseline" "aide --check" "podfim check" "podfim check --quick")
    ((AIDE_WORKERS > 1)) && ops+=("aide --init -W $AIDE_WORKERS" "aide --check -W $AIDE_WORKERS")
    ops+=("find walk" "floor")

    echo
    echo "podfim benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $RUNS timed run(s) per operation after one warm-up, warm page cache"
    echo "machine: $NPROC CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), kernel $(uname -r), $AIDE_VERSION, $("$PODFIM" version 2>/dev/null | head -n1 || echo podfim)"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "podfim version at its output: $(footprint "$PODFIM" version)"
    echo
    printf '%-6s  %-26s  %9s  %9s  %9s  %9s  %8s\n' tree operation "median s" "min s" "max s" "CPU s" "RSS MiB"
    printf '%-6s  %-26s  %9s  %9s  %9s  %9s  %8s\n' ------ -------------------------- --------- --------- --------- --------- --------
    for t in "${trees[@]}"; do
        for op in "${ops[@]}"; do
            f=$RES/$t/$(slug "$op")
            [[ -f $f ]] || continue
            printf '%-6s  %-26s  %9s  %9s  %9s  %9s  %8s\n' "$t" "$op" "$(secs "$t" "$op")" \
                "$(sort -n "$f" | head -n1 | cut -d' ' -f1)" "$(sort -n "$f" | tail -n1 | cut -d' ' -f1)" \
                "$(median "$f" 3)" "$(rss "$t" "$op")"
        done
    done
    echo
    printf "%-6s  %-44s  %18s  %7s  %s\n" tree "ratio (of medians) or figure" value target verdict
    local v
    for t in "${trees[@]}"; do
        v=$(ratio "$(secs "$t" "aide --check")" "$(secs "$t" "podfim check")")
        printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "aide --check / podfim check" "$v" ">= $T_CHECK" "$(verdict "$v" ge $T_CHECK)"
        v=$(ratio "$(secs "$t" "aide --init")" "$(secs "$t" "podfim baseline")")
        printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "aide --init / podfim baseline" "$v" ">= $T_INIT" "$(verdict "$v" ge $T_INIT)"
        v=$(ratio "$(secs "$t" "podfim check --quick")" "$(secs "$t" "find walk")")
        printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "podfim check --quick / find walk" "$v" "<= $T_QUICK" "$(verdict "$v" le $T_QUICK)"
        floor_rows "$t"
        v=$(ratio "$(cpu "$t" "aide --check")" "$(cpu "$t" "podfim check")")
        printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "CPU time: aide --check / podfim check" "$v" "" "info"
        v=$(ratio "$(cpu "$t" "aide --init")" "$(cpu "$t" "podfim baseline")")
        printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "CPU time: aide --init / podfim baseline" "$v" "" "info"
        if ((AIDE_WORKERS > 1)); then
            v=$(ratio "$(secs "$t" "aide --check -W $AIDE_WORKERS")" "$(secs "$t" "podfim check")")
            printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "aide --check -W $AIDE_WORKERS / podfim check" "$v" "" "info"
            v=$(ratio "$(secs "$t" "aide --init -W $AIDE_WORKERS")" "$(secs "$t" "podfim baseline")")
            printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "aide --init -W $AIDE_WORKERS / podfim baseline" "$v" "" "info"
        fi
        # Peak RSS: the largest median among podfim's operations.
        local prss=0 arss=0 x
        for op in "podfim baseline" "podfim check" "podfim check --quick"; do
            x=$(rss "$t" "$op"); [[ $x == nan ]] || prss=$(awk -v a="$prss" -v b="$x" 'BEGIN { print (b > a) ? b : a }')
        done
        for op in "aide --init" "aide --check"; do
            x=$(rss "$t" "$op"); [[ $x == nan ]] || arss=$(awk -v a="$arss" -v b="$x" 'BEGIN { print (b > a) ? b : a }')
        done
        if [[ $t == gen ]]; then
            printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "podfim peak RSS MiB (AIDE: $arss)" "$prss" "<= $T_RSS" "$(verdict "$prss" le $T_RSS)"
        else
            printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "podfim peak RSS MiB (AIDE: $arss)" "$prss" "" "info"
        fi
        printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "database bytes: AIDE gz / podfim" "$(cat "$RES/$t/db.aide") / $(cat "$RES/$t/db.podfim")" "" "info"
        printf '%-6s  %-44s  %18s  %7s  %s\n' "$t" "entries: AIDE / podfim / find" "$(cat "$RES/$t/entries.aide") / $(cat "$RES/$t/entries.podfim") / $(cat "$RES/$t/entries.find")" "" "info"
    done
    echo
    echo "every check (AIDE and podfim, full and quick) found no differences on the unchanged trees"
    echo "raw runs: $RES; logs: $WORK/logs"
}

# --- main ------------------------------------------------------------------
trees=()
if [[ $TREES == go || $TREES == all ]]; then
    [[ -d $GOTREE ]] || die "$GOTREE is missing"
    trees+=(go)
fi
if [[ $TREES == gen || $TREES == all ]]; then
    ensure_gentree
    trees+=(gen)
fi
build_floor
for t in "${trees[@]}"; do
    case $t in
    go) bench_tree go "$GOTREE" ;;
    gen) bench_tree gen "$GENTREE_DIR" ;;
    esac
done
report "${trees[@]}" | tee "$WORK/report.txt"
echo "bench: done in $(awk -v a="$START_NS" -v b="$(date +%s%N)" 'BEGIN { printf "%.0f", (b - a) / 1e9 }')s; report in $WORK/report.txt"
