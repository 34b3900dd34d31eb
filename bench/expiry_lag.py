#!/usr/bin/env python3
"""Expiry lag of `latchkey run`: 50 grants expiring at staggered instants (every 0.4 s,
starting 8 s out) on the embedded SQLite staging system. Polls the database every 5 ms
and prints p50/p99/max of (time the entitlement disappeared - expires). Not a test.

    bench/expiry_lag.py [path/to/latchkey]     (default: target/release/latchkey)
"""
import datetime as dt, os, platform, shutil, sqlite3, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(root, "target/release/latchkey")
N, FIRST, STEP = 50, 8.0, 0.4

work = tempfile.mkdtemp(prefix="latchkey-expiry-")
schema = open(os.path.join(root, "examples/agency/schema.sql")).read()
for db in ("portal.sqlite", "staging.sqlite"):
    con = sqlite3.connect(os.path.join(work, db)); con.executescript(schema); con.commit(); con.close()
repo = os.path.join(work, "access"); os.makedirs(repo)
start = time.time()
expiries = {}
docs = ["""apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: staging}
spec: {type: sql, environment: staging, connection: {path: staging.sqlite}, prune: true}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: staging-admin}
spec: {entitlements: {staging: ["{client}:admin"]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec: {allowedRoles: [staging-admin], requireExpiry: [staging]}
"""]
for i in range(N):
    at = start + FIRST + i * STEP
    expiries[f"p{i}@acme.example"] = at
    stamp = dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    docs.append(f"""apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {{name: p{i}}}
spec: {{email: p{i}@acme.example, client: acme, grants: [{{role: staging-admin, expires: "{stamp}"}}]}}
""")
open(os.path.join(repo, "access.yaml"), "w").write("---\n".join(docs))
git = lambda *a: subprocess.run(["git", "-C", repo, "-c", "user.name=bench", "-c", "user.email=b@x", *a], check=True, capture_output=True)
git("init", "-q", "-b", "main"); git("add", "-A"); git("commit", "-q", "-m", "grants")

proc = subprocess.Popen([binary, "run", "access", "--interval", "1h", "--drift-interval", "1h", "--listen", "127.0.0.1:0"],
                        cwd=work, stderr=subprocess.DEVNULL)
con = sqlite3.connect(os.path.join(work, "staging.sqlite"))
gone, seen = {}, set()
deadline = start + FIRST + N * STEP + 10
while len(gone) < N and time.time() < deadline:
    rows = {e for (e,) in con.execute("SELECT u.email FROM users u JOIN user_roles r ON r.user_id = u.id")}
    now = time.time()
    seen |= rows
    for e in expiries:
        if e in seen and e not in rows and e not in gone:
            gone[e] = now
    time.sleep(0.005)
proc.terminate(); proc.wait()
lags = sorted(gone[e] - expiries[e] for e in gone)
pct = lambda p: lags[min(len(lags) - 1, int(round(p / 100 * (len(lags) - 1))))]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {platform.node()} {os.cpu_count()} cores, {cpu}")
print(f"grants: {N} expiring every {STEP}s; revoked: {len(lags)}")
if lags:
    print(f"expiry lag p50: {pct(50):.3f}s  p99: {pct(99):.3f}s  max: {lags[-1]:.3f}s  min: {lags[0]:.3f}s")
shutil.rmtree(work, ignore_errors=True)
sys.exit(0 if len(lags) == N else 1)
