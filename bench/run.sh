#!/usr/bin/env bash
# Plan and validate benchmarks at agency scale (issue 8). One command:
#   bench/run.sh            # 1,000 clients / 20,000 members / 60,000 grants, then 2x, 5x, 10x
#   SCALES="1 2" bench/run.sh
# Prints the machine and every figure; writes them to bench/results/perf.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCALES=${SCALES:-"1 2 5 10"}
NOW=2026-06-01T00:00:00Z
WORK=${BENCH_DIR:-$(mktemp -d)}
OUT=$ROOT/bench/results/perf.txt

cargo build --release --quiet --bin latchkey --example gen_repo --example bench_plan
BIN=$ROOT/target/release
mkdir -p "$(dirname "$OUT")"
{
  echo "# latchkey plan benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD))"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GB RAM", $2/1048576}' /proc/meminfo)"
  for s in $SCALES; do
    clients=$((1000 * s))
    dir=$WORK/x$s
    echo
    echo "## scale x$s: $clients clients, 20 members each, 3 grants each, 50 agency staff"
    "$BIN/examples/gen_repo" --clients "$clients" --members-per-client 20 --grants-per-member 3 \
      --expiring-share 0.2 --agency-staff 50 --seed 42 --now "$NOW" --out "$dir"
    cd "$dir"
    "$BIN/examples/bench_plan" --repo repo.git --now "$NOW" --mode validate
    "$BIN/examples/bench_plan" --repo repo.git --now "$NOW" --mode plan
    # The whole CLI process, as a user runs it (exit 0: no changes).
    /usr/bin/time -f "cli plan (whole process): %e s wall, %U s user, peak RSS %M KB" \
      "$BIN/latchkey" plan repo.git --rev main --now "$NOW" >/dev/null
    if [ "$s" = 1 ]; then
      /usr/bin/time -f "cli validate (whole process): %e s wall, %U s user, peak RSS %M KB" \
        "$BIN/latchkey" validate repo.git --rev main --now "$NOW" >/dev/null
      # Last: it commits edits to the repository.
      "$BIN/examples/bench_plan" --repo repo.git --now "$NOW" --mode incremental --edits 20
    fi
    cd "$ROOT"
    rm -rf "$dir"
  done
} 2>&1 | tee "$OUT"
