#!/usr/bin/env bash
# Starts the real servers on loopback (scim2-server, PostgreSQL, slapd, plus a SQLite
# file), then runs latchkey validate / plan / apply / plan against all four connector
# types. Everything lives in a scratch directory; the servers stop on exit.
#   scripts/peers/install-{scim,postgres,ldap}.sh   # once, as root
#   examples/multi-system/run.sh [SCRATCH_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${LATCHKEY_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  bin="$root/target/release/latchkey"
fi
work="${1:-$(mktemp -d -t latchkey-multi.XXXXXX)}"
mkdir -p "$work" && chmod 755 "$work" && cd "$work"
rm -rf access pg ldap reports.sqlite
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
# Throwaway secrets for this run only: generated here, passed by environment, never written to git.
rand() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }
export PORTAL_SCIM_TOKEN="$(rand)" STAGING_DB_PASSWORD="$(rand)" STAGING_SSO_PASSWORD="$(rand)"

# SCIM portal.
SCIM_PORT=$(free_port)
"${LATCHKEY_SCIM_VENV:-/opt/latchkey-peers/scim-venv}/bin/scim2-server" --hostname 127.0.0.1 \
  --port "$SCIM_PORT" --bearer-token "$PORTAL_SCIM_TOKEN" --tenant portal >scim.log 2>&1 &
pids+=($!)

# PostgreSQL staging database: latchkey's role has CREATEROLE and ADMIN OPTION on the groups.
PG_PORT=$(free_port)
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir pg && chown postgres:postgres pg
su_pw=$(rand); printf '%s' "$su_pw" > pg/pwfile; chown postgres pg/pwfile
runuser -u postgres -- "$pgbin/initdb" -D pg/data -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  --pwfile=pg/pwfile --no-instructions -E UTF8 --locale=C.UTF-8 >/dev/null
rm pg/pwfile
runuser -u postgres -- "$pgbin/postgres" -D pg/data -c listen_addresses=127.0.0.1 -c port="$PG_PORT" \
  -c unix_socket_directories="$work/pg" >pg/server.log 2>&1 &
pids+=($!)

# OpenLDAP staging SSO.
LDAP_PORT=$(free_port)
mkdir -p ldap/slapd.d ldap/db
sed -e "s#@DIR@#$work/ldap#g" -e "s#@PASSWORD@#$STAGING_SSO_PASSWORD#" \
  "$root/tests/contract/peers/slapd-config.ldif" > ldap/config.ldif
/usr/sbin/slapadd -q -n 0 -F ldap/slapd.d -l ldap/config.ldif
printf 'dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\ndn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\ndn: ou=groups,dc=example,dc=org\nobjectClass: organizationalUnit\nou: groups\n' \
  | /usr/sbin/slapadd -q -b dc=example,dc=org -F ldap/slapd.d
rm ldap/config.ldif
/usr/sbin/slapd -d 0 -h "ldap://127.0.0.1:$LDAP_PORT/" -F ldap/slapd.d >ldap/slapd.log 2>&1 &
pids+=($!)

# The legacy reports portal (SQLite).
python3 -c "import sqlite3,sys; c=sqlite3.connect('reports.sqlite'); c.executescript(open(sys.argv[1]).read()); c.commit()" \
  "$root/examples/agency/schema.sql"

wait_port "$SCIM_PORT"; wait_port "$PG_PORT"; wait_port "$LDAP_PORT"
sleep 0.5
# The DBA's part: group roles with their privileges, and latchkey's own role.
runuser -u postgres -- psql -q -h "$work/pg" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 \
  -v pw="$STAGING_DB_PASSWORD" <<'SQL'
CREATE ROLE latchkey LOGIN CREATEROLE;
\set QUIET on
ALTER ROLE latchkey PASSWORD :'pw';
CREATE ROLE acme_developers NOLOGIN;
GRANT acme_developers TO latchkey WITH ADMIN OPTION;
SQL

mkdir access && cp -r "$here"/access/* access/
sed -i -e "s/@SCIM_PORT@/$SCIM_PORT/" -e "s/@PG_PORT@/$PG_PORT/" -e "s/@LDAP_PORT@/$LDAP_PORT/" access/latchkey.yaml
git -C access init -q -b main
git -C access add -A
git -C access -c user.name="Dana Ops" -c user.email=ops@northwind.example commit -q -m "Access across four systems"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "latchkey validate access"
"$bin" validate access
step "latchkey plan access   (exit 2: there are changes)"
"$bin" plan access || [ $? -eq 2 ]
step "latchkey apply access"
"$bin" apply access
step "what the servers hold now"
curl -s -H "Authorization: Bearer $PORTAL_SCIM_TOKEN" "http://127.0.0.1:$SCIM_PORT/portal/v2/Groups?attributes=displayName,members" | python3 -m json.tool | grep -E 'displayName|value' || true
runuser -u postgres -- psql -h "$work/pg" -p "$PG_PORT" -U postgres -Atc \
  "SELECT m.rolname || ' in ' || g.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid=a.member JOIN pg_roles g ON g.oid=a.roleid WHERE m.rolname LIKE '%@%'"
ldapsearch -x -LLL -H "ldap://127.0.0.1:$LDAP_PORT" -D cn=admin,dc=example,dc=org -w "$STAGING_SSO_PASSWORD" \
  -b ou=groups,dc=example,dc=org member 2>/dev/null || true
step "latchkey plan access   (exit 0: in sync)"
"$bin" plan access
echo
echo "scratch copy: $work"
