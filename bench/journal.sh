#!/usr/bin/env bash
# The cost of the write-ahead journal on `latchkey apply` (the issue's target: within
# 1.2x of the time without it). Not a timed test: it prints figures.
#   bench/journal.sh                 # 5 rounds, 500 members x 4 changes = 2,000 changes
#   ROUNDS=9 MEMBERS=1000 bench/journal.sh
#   BENCH_DIR=/tmp/j bench/journal.sh   # keep the generated repository (fresh/) and last run
# Each round applies the same fresh repository to an empty SQLite portal twice, in
# alternating order (on/off, then off/on, ...) to cancel machine drift: once with the
# journal (default) and once with LATCHKEY_JOURNAL=off. Wall time of the whole
# `latchkey apply` process. Writes the figures to bench/results/journal.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
MEMBERS=${MEMBERS:-500}   # each: create-account + viewer, finance, project = 4 changes
CLIENTS=${CLIENTS:-10}
NOW=2026-06-01T00:00:00Z
if [ -n "${BENCH_DIR:-}" ]; then  # kept afterwards: fresh/ is the generated repo + portal
  WORK=$BENCH_DIR && rm -rf "$WORK/fresh" "$WORK/run" && mkdir -p "$WORK"
else
  WORK=$(mktemp -d -t latchkey-journal.XXXXXX) && trap 'rm -rf "$WORK"' EXIT
fi
OUT=$ROOT/bench/results/journal.txt

cargo build --release --quiet --bin latchkey
BIN=$ROOT/target/release/latchkey

# The fresh repository and the empty portal, modelled on examples/agency: one sql
# system (driver sqlite, path relative to the working directory), CLIENTS clients,
# MEMBERS members spread over them, each with client-finance + client-project.
mkdir -p "$WORK/fresh/access"
python3 - "$WORK/fresh" "$ROOT/examples/agency/schema.sql" "$MEMBERS" "$CLIENTS" <<'PY'
import os, sqlite3, sys
out, schema, members, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
acc = os.path.join(out, "access")
def write(path, text):
    path = os.path.join(acc, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
write("latchkey.yaml", """apiVersion: latchkey.dev/v1alpha1
kind: Policy
metadata:
  name: guardrails
spec:
  agencyClient: northwind
  deletionBrake: {minimum: 5, percent: 25}
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata:
  name: portal
spec:
  type: sql
  environment: portal
  connection:
    driver: sqlite
    path: portal.sqlite
  prune: true
  offboard: disable
""")
roles = [("client-viewer", ["viewer"]), ("client-finance", ["viewer", "finance"]),
         ("client-project", ["viewer", "project"])]
write("roles/client-roles.yaml", "---\n".join(
    f"""apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata:
  name: {name}
spec:
  description: bench role {name}
  entitlements:
    portal: [{", ".join(f'"{{client}}:{e}"' for e in ents)}]
""" for name, ents in roles))
write("team/agency.yaml", """apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata:
  name: northwind
spec:
  displayName: Northwind Studio
  allowedRoles: [client-viewer]
  admins: [ops@northwind.example]
""")
for c in range(clients):
    name = f"c{c:03d}"
    write(f"clients/{name}/client.yaml", f"""apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata:
  name: {name}
spec:
  displayName: Client {c}
  allowedRoles: [client-viewer, client-finance, client-project]
  admins: [admin@{name}.example]
""")
    docs = []
    for m in range(c, members, clients):
        docs.append(f"""apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: m{m:05d}
spec:
  email: m{m:05d}@{name}.example
  displayName: Member {m}
  client: {name}
  grants:
    - role: client-finance
    - role: client-project
""")
    write(f"clients/{name}/members.yaml", "---\n".join(docs))
con = sqlite3.connect(os.path.join(out, "portal.sqlite"))
con.executescript(open(schema).read())
con.commit()
PY
git -C "$WORK/fresh/access" init -q -b main
git -C "$WORK/fresh/access" add -A
git -C "$WORK/fresh/access" -c user.name=bench -c user.email=bench@example.com \
  commit -q -m "bench: $MEMBERS members"

# One timed apply on a scratch copy; prints "<seconds> <applied> <total> <journal commit?> <outcome lines>".
run_one() { # mode: on|off
  local mode=$1 dir=$WORK/run
  rm -rf "$dir" && cp -a "$WORK/fresh" "$dir"
  sync
  local env=()
  [ "$mode" = off ] && env=(LATCHKEY_JOURNAL=off)
  local times rc=0
  # Wall (perf_counter around the child) and the child's own user + system CPU seconds.
  times=$(cd "$dir" && env "${env[@]}" python3 -c '
import resource, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "w") as o, open(sys.argv[2], "w") as e:
    rc = subprocess.call(sys.argv[3:], stdout=o, stderr=e)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f} {rc}")
' "$WORK/stdout.$mode" "$WORK/stderr.$mode" "$BIN" apply access --rev main --now "$NOW")
  local wall cpu
  read -r wall cpu rc <<<"$times"
  if [ "$rc" -ne 0 ]; then
    echo "apply (journal $mode) exited $rc:" >&2
    tail -20 "$WORK/stderr.$mode" >&2
    exit 1
  fi
  local line
  line=$(grep -Eo 'applied [0-9]+ of [0-9]+ changes' "$WORK/stderr.$mode" | tail -1)
  [ -n "$line" ] || { echo "no 'applied N of M changes' line (journal $mode)" >&2; exit 1; }
  set -- $line
  # What the journal left behind (cleared at the end of a successful run, if at all).
  local jref=no outc=absent
  git -C "$dir/access" rev-parse -q --verify refs/latchkey/journal/main >/dev/null && jref=yes
  [ -f "$dir/access/.git/latchkey/journal/main.outcomes.jsonl" ] &&
    outc=$(wc -l <"$dir/access/.git/latchkey/journal/main.outcomes.jsonl")
  echo "$wall $cpu $2 $4 $jref $outc"
}

{
  echo "# latchkey apply: write-ahead journal on vs LATCHKEY_JOURNAL=off ($(date -u +%Y-%m-%dT%H:%MZ))"
  dirty=""
  [ -z "$(git status --porcelain -- src Cargo.toml Cargo.lock)" ] || dirty=" (src/ has uncommitted changes)"
  echo "commit: $(git rev-parse --short HEAD)$dirty"
  echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "workload: $MEMBERS members in $CLIENTS clients, 2 roles each (create-account + 3 grants), empty SQLite portal; $ROUNDS rounds, order alternating"
  echo
  echo "wall and cpu (user + system of the process) in seconds"
  printf '%-6s %-8s %8s %8s %7s %8s %8s %7s  %s\n' round order on_wall off_wall on/off on_cpu off_cpu on/off "applied (on | off)"
  on_all=() off_all=() onc_all=() offc_all=()
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
      a=$(run_one on); b=$(run_one off); order=on,off
    else
      b=$(run_one off); a=$(run_one on); order=off,on
    fi
    read -r ta ca na ma ja oa <<<"$a"
    read -r tb cb nb mb _ _ <<<"$b"
    if [ "$na" != "$nb" ] || [ "$ma" != "$mb" ]; then
      echo "round $r: journal on applied $na of $ma, off applied $nb of $mb: not the same work" >&2
      exit 1
    fi
    on_all+=("$ta") off_all+=("$tb") onc_all+=("$ca") offc_all+=("$cb")
    printf '%-6s %-8s %8s %8s %7s %8s %8s %7s  %s of %s | %s of %s (journal ref left: %s, outcome lines left: %s)\n' \
      "$r" "$order" "$ta" "$tb" "$(python3 -c "print(f'{$ta / $tb:.2f}')")" \
      "$ca" "$cb" "$(python3 -c "print(f'{$ca / $cb:.2f}')")" "$na" "$ma" "$nb" "$mb" "$ja" "$oa"
  done
  python3 - "${on_all[*]}" "${off_all[*]}" "${onc_all[*]}" "${offc_all[*]}" <<'PY'
import statistics, sys
on, off, onc, offc = ([float(x) for x in a.split()] for a in sys.argv[1:5])
med = statistics.median
print()
for what, a, b in (("wall", on, off), ("cpu ", onc, offc)):
    print(f"median {what}, journal on : {med(a):.3f} s  (min {min(a):.3f}, max {max(a):.3f})")
    print(f"median {what}, journal off: {med(b):.3f} s  (min {min(b):.3f}, max {max(b):.3f})")
    print(f"ratio on/off of median {what}: {med(a) / med(b):.2f}x"
          f"  (median of the per-round ratios: {med([x / y for x, y in zip(a, b)]):.2f}x)")
print("target: within 1.2x (wall)")
PY
} 2>&1 | tee "$OUT"
