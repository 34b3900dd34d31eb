#!/usr/bin/env python3
"""A small store back office for the exec connector's tests: latchkey.exec/v1 on
stdin/stdout, state in the JSON file named by connection.stateFile. It insists on the
token in LATCHKEY_SECRET, prints it to stderr (latchkey must redact it), and can
misbehave on demand through connection.mode: exit | malformed | sleep | partial | deny |
leak (echoes the token in its partial-read reason, an account name and an apply error,
once spelt with a JSON escape) | leak-type (the token where a boolean belongs)."""
import fcntl, json, os, sys, time

req = json.load(sys.stdin)
conn = req["connection"]
mode = conn.get("mode", "")
secret = os.environ.get("LATCHKEY_SECRET", "")
print(f"fake-store: {req['action']} with token {secret}", file=sys.stderr)
if req.get("protocol") != "latchkey.exec/v1":
    print("unsupported protocol", file=sys.stderr); sys.exit(3)
if mode == "exit":
    print(f"crashed while holding {secret}", file=sys.stderr); sys.exit(7)
if mode == "malformed":
    print("this is not json"); sys.exit(0)
if mode == "sleep":
    time.sleep(30)
if mode == "leak-type" and req["action"] == "read":
    json.dump({"accounts": [], "complete": secret}, sys.stdout); sys.exit(0)
expected = os.environ.get("FAKE_STORE_EXPECT")
if expected is None and "expectTokenFile" in conn:
    expected = open(conn["expectTokenFile"]).read().strip()
if secret != expected:
    if req["action"] == "read":
        print(f"401 invalid credentials: token {secret} refused", file=sys.stderr); sys.exit(2)
    json.dump({"ok": False, "error": {"class": "permanent", "message": f"401 invalid credentials: token {secret} refused"}}, sys.stdout); sys.exit(0)

# One writer at a time: latchkey (or a test) may call several of us at once.
lock = open(conn["stateFile"] + ".lock", "w")
fcntl.flock(lock, fcntl.LOCK_EX)

path = conn["stateFile"]
state = json.load(open(path)) if os.path.exists(path) else {"users": {}}
users = state["users"]

if req["action"] == "read":
    accounts = [{"identity": e, "active": u["active"], "entitlements": sorted(u["roles"])}
                for e, u in sorted(users.items()) if u.get("managed")]
    # Unmanaged accounts with what they hold (an identity alone is also valid v1).
    unmanaged = [{"identity": e, "active": u["active"], "entitlements": sorted(u["roles"])}
                 for e, u in sorted(users.items()) if not u.get("managed")]
    out = {"accounts": accounts, "unmanaged": unmanaged, "complete": mode not in ("partial", "leak")}
    if mode == "partial":
        out["reason"] = "page 2 of users timed out"
    if mode == "leak":
        out["reason"] = f"page 2 refused token {secret}"
        out["unmanaged"].append(f"svc-{secret}@acme.example")
        # The same token spelt with a JSON escape: latchkey must redact decoded text.
        text = json.dumps(out).replace(f"svc-{secret}", "svc-\\u" + format(ord(secret[0]), "04x") + secret[1:])
        sys.stdout.write(text); sys.exit(0)
    json.dump(out, sys.stdout)
    sys.exit(0)

change = req["change"]
op, who = change["op"], change["identity"]
user = users.get(who)
if op != "createAccount" and (user is None or not user.get("managed")):
    ok = op in ("removeEntitlement", "disableAccount", "deleteAccount") and user is None
    json.dump({"ok": ok} if ok else {"ok": False, "error": {"class": "permanent", "message": f"no managed account {who}"}}, sys.stdout)
    sys.exit(0)
if mode == "leak" and op == "addEntitlement":
    json.dump({"ok": False, "error": {"class": "permanent", "message": f"shop rejected token {secret} for {who}"}}, sys.stdout); sys.exit(0)
if mode == "deny" and op == "addEntitlement":
    json.dump({"ok": False, "error": {"class": "permanent", "message": "role not allowed on this plan"}}, sys.stdout); sys.exit(0)
if op == "createAccount":
    if user and not user.get("managed"):
        json.dump({"ok": False, "error": {"class": "permanent", "message": f"{who} exists and is not managed"}}, sys.stdout); sys.exit(0)
    users[who] = {"managed": True, "active": True, "roles": (user or {}).get("roles", []), "name": change.get("displayName")}
elif op == "enableAccount":
    user["active"] = True
elif op == "disableAccount":
    user["active"] = False
elif op == "deleteAccount":
    del users[who]
elif op == "addEntitlement":
    if change["entitlement"] not in user["roles"]:
        user["roles"].append(change["entitlement"])
elif op == "removeEntitlement":
    user["roles"] = [r for r in user["roles"] if r != change["entitlement"]]
json.dump(state, open(path + ".tmp", "w"), indent=1)
os.replace(path + ".tmp", path)
json.dump({"ok": True}, sys.stdout)
