#!/usr/bin/env bash
# Apply at agency scale on the embedded SQLite portal (issue 21), whole processes:
#   1. the first apply onto a portal already in sync (it records the baseline),
#   2. a no-op apply against a no-op plan of the same repository (the ratio is the figure),
#   3. the first apply onto the emptied portal (every account and role row again),
#      against its floor: the same rows written by Python's sqlite3 in one transaction.
#   bench/apply.sh                 # scale 1: 1,000 clients, 20,000 members, 60,000 grants
#   SCALE=0.25 bench/apply.sh      # a quicker look
# Not a timed test: it prints figures; writes them to bench/results/apply.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCALE=${SCALE:-1}
NOW=2026-06-01T00:00:00Z
WORK=$(mktemp -d -t latchkey-apply.XXXXXX) && trap 'rm -rf "$WORK"' EXIT
OUT=$ROOT/bench/results/apply.txt
cargo build --release --quiet --bin latchkey --example gen_repo
BIN=$ROOT/target/release
CLIENTS=$(python3 -c "print(int(1000 * $SCALE))")

# Seconds of one command (stdout discarded, exit code tolerated: plan exits 2 when it has
# changes) as "wall/cpu": on a loaded machine the CPU time (user + system) is the
# steadier figure, and ratios below use it.
wall() {
  /usr/bin/time -f "%e %U %S" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/last.err" || true
  read -r w u s <"$WORK/time"
  python3 -c "print(f'{$w:.3f}/{$u + $s:.3f}')"
}
cpu() { echo "${1#*/}"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

{
  echo "# bench/apply.sh (SCALE=$SCALE, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD))"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "$BIN/examples/gen_repo" --clients "$CLIENTS" --members-per-client 20 --grants-per-member 3 \
    --expiring-share 0.2 --agency-staff 50 --seed 42 --now "$NOW" --out "$WORK/x" >/dev/null
  cd "$WORK/x"
  echo "first apply onto the portal in sync (baseline records): $(wall "$BIN/latchkey" apply repo.git --now "$NOW") s"
  plans=() noops=()
  for _ in 1 2 3; do
    plans+=("$(wall "$BIN/latchkey" plan repo.git --now "$NOW")")
    noops+=("$(wall "$BIN/latchkey" apply repo.git --now "$NOW")")
  done
  cpus=() cpun=()
  for x in "${plans[@]}"; do cpus+=("$(cpu "$x")"); done
  for x in "${noops[@]}"; do cpun+=("$(cpu "$x")"); done
  p=$(median "${cpus[@]}") n=$(median "${cpun[@]}")
  echo "no-op plan: median CPU $p s (wall/cpu: ${plans[*]})"
  echo "no-op apply: median CPU $n s (wall/cpu: ${noops[*]}); ratio to the plan $(python3 -c "print(f'{$n / $p:.2f}')")x"
  # Empty the portal's managed rows, keeping a copy to measure the floor on.
  rows=$(python3 - portal.sqlite <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
users = con.execute("SELECT email, display_name FROM users WHERE managed_by = 'latchkey'").fetchall()
roles = con.execute("SELECT u.email, r.role FROM user_roles r JOIN users u ON u.id = r.user_id WHERE u.managed_by = 'latchkey'").fetchall()
con.execute("DELETE FROM user_roles WHERE user_id IN (SELECT id FROM users WHERE managed_by = 'latchkey')")
con.execute("DELETE FROM users WHERE managed_by = 'latchkey'")
con.commit()
import json
json.dump({"users": users, "roles": roles}, open("rows.json", "w"))
print(len(users) + len(roles))
PY
)
  cp portal.sqlite empty.sqlite
  t=$(wall "$BIN/latchkey" apply repo.git --now "$NOW")
  c=$(cpu "$t")
  echo "first apply onto the emptied portal: $rows changes, wall/cpu $t s ($(python3 -c "print(f'{$rows / $c:.0f}')") changes per CPU second), $(grep -o 'applied [0-9]* of [0-9]*' "$WORK/last.err" || tail -1 "$WORK/last.err")"
  f=$(python3 - empty.sqlite <<'PY'
import json, sqlite3, sys, time
rows = json.load(open("rows.json"))
t0 = time.process_time()
con = sqlite3.connect(sys.argv[1])
with con:
    for email, name in rows["users"]:
        con.execute("INSERT INTO users (email, display_name, active, managed_by) VALUES (?, ?, 1, 'latchkey')", (email, name))
    for email, role in rows["roles"]:
        con.execute("INSERT INTO user_roles (user_id, role) SELECT id, ? FROM users WHERE email = ?", (role, email))
print(f"{time.process_time() - t0:.3f}")
PY
)
  echo "floor: the same rows in one transaction (python3 sqlite3): CPU $f s; ratio $(python3 -c "print(f'{$c / $f:.1f}')")x (CPU)"
} 2>&1 | tee "$OUT"
