#!/usr/bin/env bash
# The pull-request review (issue 16) on the generator's repository: 1,000 clients, 20,000
# members, 60,000 grants, and a one-file change (one client's members file gains a member
# with a `for:` grant). Prints figures, not a timed test:
#   bench/review.sh
# Times `latchkey plan --base main --head pr` (the whole process, as CI runs it) in text,
# Markdown and JSON, and writes the figures to bench/results/review.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NOW=2026-06-01T00:00:00Z
WORK=${BENCH_DIR:-$(mktemp -d)}
OUT=$ROOT/bench/results/review.txt

cargo build --release --quiet --bin latchkey --example gen_repo
BIN=$ROOT/target/release
mkdir -p "$(dirname "$OUT")"
{
  echo "# latchkey review benchmark ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD))"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GB RAM", $2/1048576}' /proc/meminfo)"
  "$BIN/examples/gen_repo" --clients 1000 --members-per-client 20 --grants-per-member 3 \
    --expiring-share 0.2 --agency-staff 50 --seed 42 --now "$NOW" --out "$WORK"
  cd "$WORK"
  git clone -q repo.git work
  (
    cd work
    git checkout -q -b pr
    cat >> clients/c00042/members.yaml <<'YAML'
---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: bench-newcomer
spec:
  email: newcomer@c00042.example
  client: c00042
  grants:
    - {role: client-viewer, for: 14d, reason: BENCH-1 onboarding}
YAML
    git -c user.name=bench -c user.email=bench@example.test commit -q -am "c00042: a newcomer"
    git push -q origin pr
  )
  echo "change: $(git --git-dir=repo.git diff --stat main pr | tail -1)"
  for format in text markdown json; do
    /usr/bin/time -f "review --format $format (whole process): %e s wall, %U s user, peak RSS %M KB" \
      "$BIN/latchkey" plan repo.git --base main --head pr --now "$NOW" --format "$format" \
      >"review.$format" || test $? -eq 2
  done
  echo "markdown: $(wc -c <review.markdown) bytes; $(grep -c '^| ➕' review.markdown || true) gain rows"
  cd "$ROOT"
  rm -rf "$WORK"
} 2>&1 | tee "$OUT"
