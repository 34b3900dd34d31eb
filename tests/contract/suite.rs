//! The shared contract: every function runs against every peer's fixture.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use latchkey::connectors::{Account, Completeness, Connector, ErrorClass, Op, Snapshot};

use crate::peers::Fixture;
use crate::proxy::CutProxy;

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Captures every log line of the test binary, so tests can assert secrets never appear.
pub fn init_log_capture() {
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    });
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn captured_log() -> String {
    let buf = LOG.get().expect("log capture initialised");
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

async fn apply(c: &dyn Connector, op: Op) {
    if let Err(e) = c.apply(&op).await {
        panic!("{op:?} failed: {e} ({:?})", e.class);
    }
}

async fn read(c: &dyn Connector) -> Snapshot {
    let snap = c
        .read()
        .await
        .unwrap_or_else(|e| panic!("read failed: {e}"));
    assert_eq!(
        snap.completeness,
        Completeness::Complete,
        "a quiet read is complete"
    );
    snap
}

fn account<'a>(snap: &'a Snapshot, who: &str) -> Option<&'a Account> {
    snap.managed.iter().find(|a| a.identity == who)
}

fn ents(list: &[&str]) -> latchkey::connectors::EntitlementSet {
    list.iter().map(|s| s.to_string()).collect()
}

fn create(who: &str) -> Op {
    Op::CreateAccount {
        identity: who.into(),
        display_name: Some(format!("Person {who}")),
    }
}

fn add(who: &str, what: &str) -> Op {
    Op::AddEntitlement {
        identity: who.into(),
        entitlement: what.into(),
    }
}

fn remove(who: &str, what: &str) -> Op {
    Op::RemoveEntitlement {
        identity: who.into(),
        entitlement: what.into(),
    }
}

/// Create an account, grant two roles, revoke one; every step is visible on read.
pub async fn create_grant_revoke(f: &dyn Fixture) {
    let c = f.connector();
    let who = "alice@client.example";
    assert!(account(&read(c).await, who).is_none());
    apply(c, create(who)).await;
    let a = read(c).await;
    let acct = account(&a, who).expect("created account is read back");
    assert!(acct.active);
    assert!(acct.entitlements.is_empty());
    apply(c, add(who, "portal-editors")).await;
    apply(c, add(who, "portal-admins")).await;
    let snap = read(c).await;
    assert_eq!(
        account(&snap, who).unwrap().entitlements,
        ents(&["portal-admins", "portal-editors"])
    );
    apply(c, remove(who, "portal-admins")).await;
    let snap = read(c).await;
    assert_eq!(
        account(&snap, who).unwrap().entitlements,
        ents(&["portal-editors"])
    );
    assert_eq!(snap.managed.len(), 1);
}

/// Disable keeps the account and its grants but marks it inactive; enable restores it.
pub async fn disable_and_enable(f: &dyn Fixture) {
    let c = f.connector();
    let who = "bob@client.example";
    apply(c, create(who)).await;
    apply(c, add(who, "viewers")).await;
    apply(
        c,
        Op::DisableAccount {
            identity: who.into(),
        },
    )
    .await;
    let snap = read(c).await;
    let acct = account(&snap, who).expect("disabled account still exists");
    assert!(!acct.active, "disabled account reads as inactive");
    assert_eq!(acct.entitlements, ents(&["viewers"]));
    apply(
        c,
        Op::EnableAccount {
            identity: who.into(),
        },
    )
    .await;
    assert!(account(&read(c).await, who).unwrap().active);
}

/// Delete removes the account; deleting or revoking on a missing account is done already.
pub async fn delete_account(f: &dyn Fixture) {
    let c = f.connector();
    let who = "carol@client.example";
    let other = "dave@client.example";
    for p in [who, other] {
        apply(c, create(p)).await;
        apply(c, add(p, "staff")).await;
    }
    apply(
        c,
        Op::DeleteAccount {
            identity: who.into(),
        },
    )
    .await;
    let snap = read(c).await;
    assert!(account(&snap, who).is_none(), "deleted account is gone");
    assert!(!snap.unmanaged.contains_key(who));
    assert_eq!(
        account(&snap, other).unwrap().entitlements,
        ents(&["staff"])
    );
    apply(
        c,
        Op::DeleteAccount {
            identity: who.into(),
        },
    )
    .await;
    apply(c, remove(who, "staff")).await;
    apply(
        c,
        Op::DisableAccount {
            identity: who.into(),
        },
    )
    .await;
    assert_eq!(
        read(c).await,
        snap,
        "ops on a deleted account change nothing"
    );
}

/// Every op applied twice succeeds and leaves the same state as applying it once.
pub async fn idempotent_reapply(f: &dyn Fixture) {
    let c = f.connector();
    let who = "erin@client.example";
    let ops = [
        create(who),
        add(who, "editors"),
        add(who, "admins"),
        remove(who, "admins"),
        Op::DisableAccount {
            identity: who.into(),
        },
        Op::EnableAccount {
            identity: who.into(),
        },
        Op::DeleteAccount {
            identity: who.into(),
        },
    ];
    for op in ops {
        apply(c, op.clone()).await;
        let once = read(c).await;
        apply(c, op.clone()).await;
        let twice = read(c).await;
        assert_eq!(once, twice, "re-applying {op:?} changed the state");
    }
}

/// Many accounts with distinct grants read back exactly as written.
pub async fn read_after_write_many(f: &dyn Fixture) {
    let c = f.connector();
    let mut expected = Vec::new();
    for i in 0..6 {
        let who = format!("user{i}@client.example");
        apply(c, create(&who)).await;
        let mut set = latchkey::connectors::EntitlementSet::new();
        for r in 0..(i % 3) {
            let role = format!("role-{r}");
            apply(c, add(&who, &role)).await;
            set.insert(role);
        }
        if i == 5 {
            apply(
                c,
                Op::DisableAccount {
                    identity: who.clone(),
                },
            )
            .await;
        }
        expected.push((who, set, i != 5));
    }
    let snap = read(c).await;
    assert_eq!(snap.managed.len(), expected.len());
    for (who, set, active) in expected {
        let a = account(&snap, &who).unwrap_or_else(|| panic!("{who} missing"));
        assert_eq!(a.entitlements, set, "{who}");
        assert_eq!(a.active, active, "{who}");
    }
}

/// Accounts without latchkey's marker are reported, never changed.
pub async fn out_of_scope_untouched(f: &dyn Fixture) {
    let c = f.connector();
    let who = "owner@client.example";
    f.seed_unmanaged(who, "portal-admins").await;
    let before = f.unmanaged_state(who).await.expect("seeded account exists");
    let snap = read(c).await;
    assert!(
        snap.unmanaged.contains_key(who),
        "reported as out of scope: {snap:?}"
    );
    // With what it holds, for import and adoption (ldap spells groups in lower case).
    assert_eq!(
        snap.unmanaged[who].entitlements,
        ["portal-admins".to_string()].into(),
        "{snap:?}"
    );
    assert!(account(&snap, who).is_none());
    let err = c
        .apply(&create(who))
        .await
        .expect_err("create must not adopt");
    assert!(err.message.contains(who), "error names the account: {err}");
    for op in [
        add(who, "viewers"),
        remove(who, "portal-admins"),
        Op::DisableAccount {
            identity: who.into(),
        },
        Op::SetExpiry {
            identity: who.into(),
            until: Some("2026-12-01T00:00:00Z".parse().unwrap()),
        },
        Op::DeleteAccount {
            identity: who.into(),
        },
    ] {
        let _ = c.apply(&op).await; // refused or a no-op; either way nothing changes
        assert_eq!(
            f.unmanaged_state(who).await.as_ref(),
            Some(&before),
            "{op:?} touched an unmanaged account"
        );
    }
    // A managed neighbour in the same group is still managed normally.
    apply(c, create("new@client.example")).await;
    apply(c, add("new@client.example", "portal-admins")).await;
    apply(c, remove("new@client.example", "portal-admins")).await;
    assert_eq!(f.unmanaged_state(who).await.as_ref(), Some(&before));
}

/// A connector with native expiry stores it, reads it back exactly and clears it, each
/// step idempotent; any other connector refuses `SetExpiry` with a permanent error (the
/// planner never sends it one, so a bug cannot pass as applied).
pub async fn native_expiry_set_and_cleared_or_refused(f: &dyn Fixture) {
    let c = f.connector();
    let who = "until@client.example";
    apply(c, create(who)).await;
    let expiry = |snap: &Snapshot| account(snap, who).expect("account").valid_until;
    assert_eq!(expiry(&read(c).await), None, "a new account has no expiry");
    let until = "2026-12-01T18:30:00Z".parse().unwrap();
    let set = Op::SetExpiry {
        identity: who.into(),
        until: Some(until),
    };
    if !c.capabilities().native_expiry {
        let e = c.apply(&set).await.expect_err("no native expiry");
        assert_eq!(e.class, ErrorClass::Permanent, "{e}");
        assert!(e.message.contains("does not support native expiry"), "{e}");
        assert_eq!(expiry(&read(c).await), None);
        return;
    }
    apply(c, set.clone()).await;
    apply(c, set).await;
    assert_eq!(expiry(&read(c).await), Some(until));
    let clear = Op::SetExpiry {
        identity: who.into(),
        until: None,
    };
    apply(c, clear.clone()).await;
    apply(c, clear).await;
    assert_eq!(expiry(&read(c).await), None);
    let missing = c
        .apply(&Op::SetExpiry {
            identity: "nobody@client.example".into(),
            until: Some(until),
        })
        .await
        .expect_err("no account to set the expiry of");
    assert_eq!(missing.class, ErrorClass::Permanent, "{missing}");
}

/// A connection dropped part-way through a read yields an error or a Partial snapshot,
/// never a Complete one that misses accounts.
pub async fn dropped_connection_is_never_a_short_complete(f: &dyn Fixture) {
    let upstream = f.upstream().expect("network peer");
    let c = f.connector();
    let n = 40;
    for i in 0..n {
        let who = format!("bulk{i:02}@client.example");
        apply(c, create(&who)).await;
        apply(c, add(&who, "bulk")).await;
    }
    let proxy = CutProxy::start(upstream).await;
    let through = f.via_proxy(&proxy).await.expect("proxied connector");
    let full = read(through.as_ref()).await;
    assert_eq!(full.managed.len(), n);
    let total = proxy.used();
    assert!(total > 0, "the read went through the proxy");
    // Cuts early (inside the first resource's pages), midway and late.
    for eighths in [1, 4, 7] {
        let cut = total * eighths / 8;
        proxy.cut_after(cut);
        let outcome = through.read().await;
        eprintln!(
            "cut after {cut}/{total} bytes: {:?}",
            outcome.as_ref().map(|s| &s.completeness)
        );
        match outcome {
            Err(e) => assert!(!e.message.is_empty()),
            Ok(s) => match s.completeness {
                Completeness::Partial(reason) => assert!(!reason.is_empty()),
                Completeness::Complete => assert_eq!(
                    s.managed.len(),
                    n,
                    "a Complete snapshot after a dropped connection misses accounts"
                ),
            },
        }
    }
    if let Some(secret) = f.secret() {
        assert!(!captured_log().contains(secret), "secret in logs");
    }
}

/// Wrong credentials give a clear error that contains neither the wrong nor the real
/// secret; logs never contain the real secret.
pub async fn credentials_absent_from_errors_and_logs(f: &dyn Fixture) {
    let secret = f.secret().expect("peer uses a secret").to_string();
    let wrong = "wrong-Zx81-credential";
    let c = f
        .with_wrong_secret(wrong)
        .await
        .expect("wrong-secret connector");
    let e = c.read().await.expect_err("a wrong secret cannot read");
    let e2 = c
        .apply(&create("x@client.example"))
        .await
        .expect_err("a wrong secret cannot write");
    for err in [&e, &e2] {
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(wrong), "wrong secret leaked: {shown}");
        assert!(!shown.contains(&secret), "secret leaked: {shown}");
        assert!(
            shown.to_lowercase().contains("credentials") || shown.contains("401"),
            "error says what is wrong: {shown}"
        );
    }
    apply(f.connector(), create("y@client.example")).await;
    let log = captured_log();
    assert!(!log.contains(&secret), "secret in logs");
    assert!(!log.contains(wrong), "wrong secret in logs");
}

/// Concurrent grants of a role that does not exist yet land in one group, for everyone.
pub async fn concurrent_grants_of_a_new_role(f: &dyn Fixture) {
    let c = f.connector();
    let people: Vec<String> = (0..8).map(|i| format!("con{i}@client.example")).collect();
    for p in &people {
        apply(c, create(p)).await;
    }
    let grants: Vec<Op> = people.iter().map(|p| add(p, "fresh-role")).collect();
    let results = futures::future::join_all(grants.iter().map(|op| c.apply(op))).await;
    for r in results {
        r.expect("concurrent grant");
    }
    let snap = read(c).await;
    for p in &people {
        assert_eq!(
            account(&snap, p).unwrap().entitlements,
            ents(&["fresh-role"]),
            "{p}"
        );
    }
    if let Some(n) = f.entitlement_objects("fresh-role").await {
        assert_eq!(n, 1, "one group for the role, not one per racing grant");
    }
}

/// A batch (`apply_batch`, one transaction per batch where the connector has them) in
/// which one change fails: that change alone fails, every other one is in effect, and
/// the results come back in order.
pub async fn a_failed_change_in_a_batch_fails_alone(f: &dyn Fixture) {
    let c = f.connector();
    let (a, ghost, b) = (
        "batch-a@client.example",
        "batch-ghost@client.example",
        "batch-b@client.example",
    );
    let ops = [
        create(a),
        add(a, "portal-editors"),
        // No account latchkey manages: refused.
        add(ghost, "portal-editors"),
        create(b),
        add(b, "portal-admins"),
    ];
    let results = c.apply_batch(&ops).await;
    assert_eq!(results.len(), ops.len(), "one result per change");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_err(), i == 2, "change {i} ({:?}): {r:?}", ops[i]);
    }
    let snap = read(c).await;
    assert_eq!(
        account(&snap, a).map(|x| &x.entitlements),
        Some(&ents(&["portal-editors"]))
    );
    assert_eq!(
        account(&snap, b).map(|x| &x.entitlements),
        Some(&ents(&["portal-admins"]))
    );
    assert!(account(&snap, ghost).is_none());
}

/// `AdoptAccount` (a System with `adopt: true`) puts latchkey's marker on an unmarked
/// account and changes nothing else: it then reads as managed with what it held, and is
/// managed like latchkey's own. Idempotent.
pub async fn adopt_marks_an_unmarked_account(f: &dyn Fixture) {
    let c = f.connector();
    let who = "owner@client.example";
    f.seed_unmanaged(who, "portal-admins").await;
    let adopt = Op::AdoptAccount {
        identity: who.into(),
    };
    apply(c, adopt.clone()).await;
    apply(c, adopt).await;
    let snap = read(c).await;
    assert!(!snap.unmanaged.contains_key(who), "{snap:?}");
    let a = account(&snap, who).expect("adopted: managed");
    assert!(a.active);
    // What it held is latchkey's from now on, except where the system records who
    // granted it (PostgreSQL): then it stays the grantor's, reported, never revoked.
    let foreign = snap
        .foreign_grants
        .iter()
        .any(|g| g.identity == who && g.entitlement == "portal-admins");
    if foreign {
        assert!(a.entitlements.is_empty(), "{a:?}");
        return;
    }
    assert_eq!(a.entitlements, ["portal-admins".to_string()].into());
    apply(c, remove(who, "portal-admins")).await;
    let snap = read(c).await;
    assert!(account(&snap, who).unwrap().entitlements.is_empty());
}

/// A connector that cannot mark an account refuses `AdoptAccount` permanently and
/// leaves the account as it was (`validate` also rejects `adopt: true` for it).
pub async fn adopt_is_refused_without_a_marker(f: &dyn Fixture) {
    let c = f.connector();
    let who = "owner@client.example";
    f.seed_unmanaged(who, "portal-admins").await;
    let before = f.unmanaged_state(who).await;
    let e = c
        .apply(&Op::AdoptAccount {
            identity: who.into(),
        })
        .await
        .expect_err("cannot adopt");
    assert_eq!(e.class, latchkey::connectors::ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("cannot adopt"), "{e}");
    assert_eq!(f.unmanaged_state(who).await, before);
}
