#!/usr/bin/env python3
"""Expiry lag of `latchkey run`: 50 grants expiring at staggered instants (every 0.4 s,
starting 8 s out) on the embedded SQLite staging system. Polls the database every 5 ms
and prints p50/p99/max of (time the entitlement disappeared - expires). Not a test.

    bench/expiry_lag.py [path/to/latchkey]     (default: target/release/latchkey)
    bench/expiry_lag.py --scale 1 [latchkey]   # the same 50 grants inside the generator's
                                               # 1x repository (1,000 clients, 60,000
                                               # grants) and its in-sync portal, every 3 s
"""
import datetime as dt, os, platform, shutil, sqlite3, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
scale = None
if args[:1] == ["--scale"]:
    scale, args = float(args[1]), args[2:]
binary = os.path.abspath(args[0]) if args else os.path.join(root, "target/release/latchkey")
# At scale the first reconcile (reading and planning the whole repository) comes first,
# and expiries are spaced so that each one's reconcile is measured, not a queue of them.
N, FIRST, STEP = (50, 8.0, 0.4) if scale is None else (50, 45.0, 3.0)
# The system holding the expiring grants, and the database it lives in.
SYSTEM, DB = ("staging", "staging.sqlite") if scale is None else ("portal", "portal.sqlite")

work = tempfile.mkdtemp(prefix="latchkey-expiry-")
if scale is None:
    schema = open(os.path.join(root, "examples/agency/schema.sql")).read()
    for db in ("portal.sqlite", "staging.sqlite"):
        con = sqlite3.connect(os.path.join(work, db)); con.executescript(schema); con.commit(); con.close()
    repo = os.path.join(work, "access"); os.makedirs(repo)
else:
    # The generator's repository, in sync at the real clock's now, cloned to add the grants.
    stamp_now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    subprocess.run([os.path.join(os.path.dirname(binary), "examples/gen_repo"), "--clients", str(int(1000 * scale)),
                    "--members-per-client", "20", "--grants-per-member", "3", "--expiring-share", "0.2",
                    "--agency-staff", "50", "--seed", "42", "--now", stamp_now, "--out", work],
                   check=True, capture_output=True)
    repo = os.path.join(work, "access")
    subprocess.run(["git", "clone", "-q", os.path.join(work, "repo.git"), repo], check=True)
start = time.time()
expiries = {}
# One document stream: the System (alone) and the next document are joined by "---".
head = "" if scale is not None else """apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: staging}
spec: {type: sql, environment: staging, connection: {path: staging.sqlite}, prune: true}
---
"""
docs = [head + """apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: lag-admin}
spec: {entitlements: {%s: ["{client}:admin"]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: lagbench}
spec: {allowedRoles: [lag-admin]}
""" % SYSTEM]
for i in range(N):
    at = start + FIRST + i * STEP
    expiries[f"p{i}@lagbench.example"] = at
    stamp = dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    docs.append(f"""apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {{name: p{i}}}
spec: {{email: p{i}@lagbench.example, client: lagbench, grants: [{{role: lag-admin, expires: "{stamp}"}}]}}
""")
open(os.path.join(repo, "lagbench.yaml"), "w").write("---\n".join(docs))
git = lambda *a: subprocess.run(["git", "-C", repo, "-c", "user.name=bench", "-c", "user.email=b@x", *a], check=True, capture_output=True)
if scale is None:
    git("init", "-q", "-b", "main")
git("add", "-A"); git("commit", "-q", "-m", "grants")
if scale is not None:
    git("push", "-q", "origin", "HEAD:main")

proc = subprocess.Popen([binary, "run", "access" if scale is None else "repo.git", "--interval", "1h", "--drift-interval", "1h", "--listen", "127.0.0.1:0"],
                        cwd=work, stderr=subprocess.DEVNULL)
con = sqlite3.connect(os.path.join(work, DB))
gone, seen = {}, set()
deadline = start + FIRST + N * STEP + 10
while len(gone) < N and time.time() < deadline:
    rows = {e for (e,) in con.execute("SELECT u.email FROM users u JOIN user_roles r ON r.user_id = u.id WHERE u.email LIKE '%@lagbench.example'")}
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
print(f"scale: {scale or 'a small repository'}; grants: {N} expiring every {STEP}s; revoked: {len(lags)}")
if lags:
    print(f"expiry lag p50: {pct(50):.3f}s  p99: {pct(99):.3f}s  max: {lags[-1]:.3f}s  min: {lags[0]:.3f}s")
shutil.rmtree(work, ignore_errors=True)
sys.exit(0 if len(lags) == N else 1)
