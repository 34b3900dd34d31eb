#!/usr/bin/env bash
# Runs latchkey end to end on a scratch copy of this example, with no server:
# validate, plan, apply to two embedded SQLite systems, show the audit commit, re-plan.
#   examples/agency/demo.sh [SCRATCH_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${LATCHKEY_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  bin="$root/target/release/latchkey"
fi
work="${1:-$(mktemp -d -t latchkey-demo.XXXXXX)}"
mkdir -p "$work" && cd "$work"
rm -rf access portal.sqlite staging.sqlite
mkdir access && cp -r "$here"/latchkey.yaml "$here"/roles "$here"/clients "$here"/team access/

# The systems: the portal (seeded with pre-existing accounts) and the staging store.
python3 - "$here" <<'PY'
import sqlite3, sys
schema = open(f"{sys.argv[1]}/schema.sql").read()
for db, seed in (("portal.sqlite", True), ("staging.sqlite", False)):
    con = sqlite3.connect(db)
    con.executescript(schema)
    if seed:
        con.executescript(open(f"{sys.argv[1]}/seed.sql").read())
    con.commit()
PY

git -C access init -q -b main
git -C access add -A
git -C access -c user.name="Dana Ops" -c user.email=ops@northwind.example commit -q -m "Access for Northwind Studio's clients"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "latchkey validate access"
"$bin" validate access
step "latchkey plan access --format markdown   (exit 2: there are changes)"
"$bin" plan access --format markdown || [ $? -eq 2 ]
step "latchkey apply access"
"$bin" apply access
step "the audit commit latchkey made"
git -C access log -1 --stat --format='%h %an: %s%n%n%b'
step "audit/access/acme.md"
cat access/audit/access/acme.md
step "latchkey plan access   (exit 0: in sync)"
"$bin" plan access
echo
echo "scratch copy: $work"
