#!/usr/bin/env bash
# First apply onto PostgreSQL against its floor (issue 21), whole processes, one run:
#   - latchkey: `apply` of PEOPLE people x 3 group memberships (a CREATE ROLE with its
#     COMMENT per person, then three GRANTs: 4 x PEOPLE changes) onto an empty cluster;
#   - the floor: the same CREATE ROLE / COMMENT / GRANT statements through `psql -f`,
#     one transaction each (autocommit, as latchkey commits each change), onto a second
#     empty database cluster started the same way.
# For each: wall time, and the server's CPU (the postmaster with every backend it reaped,
# from /proc), which is where a connection per change used to cost.
#   bench/postgres.sh               # 5,000 people: 20,000 changes
#   PEOPLE=500 bench/postgres.sh    # a quicker look
# Needs the PostgreSQL server (scripts/peers/install-postgres.sh) and root (the server
# runs as the postgres OS user). Not a timed test: prints figures and writes them to
# bench/results/postgres.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEOPLE=${PEOPLE:-5000}
NOW=2026-06-01T00:00:00Z
OUT=$ROOT/bench/results/postgres.txt
WORK=$(mktemp -d -t latchkey-pg.XXXXXX)
chmod 755 "$WORK"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --quiet --bin latchkey
BIN=$ROOT/target/release/latchkey
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 300); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$1" && return 0; sleep 0.1; done; echo "PostgreSQL on $1 never started" >&2; exit 1; }
export LATCHKEY_BENCH_PG_PASSWORD="bench-$$-$RANDOM"

# Starts a cluster in $WORK/$1 on a free port, with latchkey's role and the three group
# roles (the DBA's part); prints "port pid".
start_cluster() {
  local dir=$WORK/$1 port
  port=$(free_port)
  mkdir -p "$dir" && chown postgres:postgres "$dir"
  runuser -u postgres -- "$pgbin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
    --auth-host=trust --no-instructions -E UTF8 --locale=C.UTF-8 >/dev/null
  runuser -u postgres -- "$pgbin/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 \
    -c port="$port" -c unix_socket_directories="$dir" -c fsync=on >"$dir/server.log" 2>&1 &
  pids+=($!)
  wait_ready "$port" >/dev/null
  # The postmaster itself (runuser is its parent): its reaped backends' CPU counts there.
  local pid
  pid=$(head -1 "$dir/data/postmaster.pid")
  runuser -u postgres -- psql -q -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '$LATCHKEY_BENCH_PG_PASSWORD';
CREATE ROLE g_read NOLOGIN; CREATE ROLE g_write NOLOGIN; CREATE ROLE g_deploy NOLOGIN;
SQL
  echo "$port $pid"
}

# CPU seconds (user + system, with reaped children) of process $1.
server_cpu() {
  python3 - "$1" <<'PY'
import os, sys
f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print(sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK"))
PY
}

# "wall server-cpu" of running "$@" against the server with postmaster pid $1.
measure() {
  local pid=$1
  shift
  local before after t0 t1
  before=$(server_cpu "$pid")
  t0=$(date +%s.%N)
  "$@" >"$WORK/last.out" 2>"$WORK/last.err" || true
  t1=$(date +%s.%N)
  # Backends exit after their session; give the postmaster a moment to reap them.
  sleep 1
  after=$(server_cpu "$pid")
  python3 -c "print(f'{$t1 - $t0:.2f} {$after - $before:.2f}')"
}

read -r lk_port lk_pid < <(start_cluster latchkey)
read -r floor_port floor_pid < <(start_cluster floor)

# The repository: one Client per 100 people, one Role granting the three group roles.
repo=$WORK/repo
python3 - "$repo" "$PEOPLE" "$lk_port" <<'PY'
import os, sys
root, people, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(f"{root}/roles")
open(f"{root}/latchkey.yaml", "w").write(f"""apiVersion: latchkey.dev/v1alpha1
kind: System
metadata:
  name: staging-db
spec:
  type: postgres
  environment: staging
  connection:
    url: postgresql://latchkey@127.0.0.1:{port}/postgres
  credentials: {{env: LATCHKEY_BENCH_PG_PASSWORD}}
  prune: true
""")
open(f"{root}/roles/dev.yaml", "w").write("""apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata:
  name: dev
spec:
  entitlements:
    staging-db: [g_read, g_write, g_deploy]
""")
for c in range((people + 99) // 100):
    d = f"{root}/clients/c{c:03}"
    os.makedirs(d)
    open(f"{d}/client.yaml", "w").write(
        f"apiVersion: latchkey.dev/v1alpha1\nkind: Client\nmetadata:\n  name: c{c:03}\nspec:\n  allowedRoles: [dev]\n")
    with open(f"{d}/members.yaml", "w") as f:
        for p in range(c * 100, min(people, c * 100 + 100)):
            f.write(f"---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: p{p:05}\n"
                    f"spec:\n  email: p{p:05}@c{c:03}.example\n  client: c{c:03}\n  grants:\n    - role: dev\n")
PY
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=Bench -c user.email=bench@example.org commit -q -m "bench repository"

# The floor's statements: what latchkey's changes do, one autocommitted statement each.
python3 - "$PEOPLE" >"$WORK/floor.sql" <<'PY'
import sys
people = int(sys.argv[1])
for p in range(people):
    name = f'"p{p:05}@c{p // 100:03}.example"'
    print(f"CREATE ROLE {name} LOGIN PASSWORD NULL;")
    print(f"COMMENT ON ROLE {name} IS 'latchkey';")
for p in range(people):
    name = f'"p{p:05}@c{p // 100:03}.example"'
    for g in ("g_read", "g_write", "g_deploy"):
        print(f"GRANT {g} TO {name};")
PY

changes=$((PEOPLE * 4))
read -r fw fc < <(measure "$floor_pid" runuser -u postgres -- psql -q -h 127.0.0.1 -p "$floor_port" \
  -U latchkey -d postgres -v ON_ERROR_STOP=1 -f "$WORK/floor.sql")
read -r lw lc < <(measure "$lk_pid" "$BIN" apply "$repo" --now "$NOW")
if ! grep -q "applied $changes of $changes changes" "$WORK/last.err"; then
  echo "latchkey's apply did not apply $changes changes:" >&2
  tail -n 5 "$WORK/last.out" "$WORK/last.err" >&2
  exit 1
fi
roles=$(runuser -u postgres -- psql -tA -h 127.0.0.1 -p "$lk_port" -U postgres -d postgres \
  -c "SELECT count(*) FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member WHERE position('@' in m.rolname) > 0")
{
  echo "# bench/postgres.sh (PEOPLE=$PEOPLE, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD))"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg), $("$pgbin/postgres" --version)"
  echo "first apply of $changes changes ($PEOPLE people x 3 memberships; $roles memberships in place after)"
  echo "  psql -f floor:   wall $fw s, server CPU $fc s"
  echo "  latchkey apply:  wall $lw s, server CPU $lc s (audit commit included)"
  python3 -c "print(f'  ratio: wall {$lw / $fw:.1f}x, server CPU {$lc / max($fc, 0.01):.1f}x the floor')"
} | tee "$OUT"
