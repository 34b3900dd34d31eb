//! `postgres` only: grant expiry pushed down as `VALID UNTIL`, the second lock, through
//! the whole pipeline (git → plan → apply → audit) against a real PostgreSQL.

use jiff::{SignedDuration, Timestamp};
use latchkey::audit::Trigger;
use latchkey::connectors::postgres::ident;
use latchkey::connectors::{Op, Registry, Secret, SecretSource};
use latchkey::plan::{Plan, render};
use latchkey::reconcile::{Options, Reconciler};
use latchkey::source::{Location, SourceRepo};
use tokio_postgres::NoTls;

use crate::common::Workspace;
use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

const ERIN: &str = "erin@acme.example";
const GROUPS: &[&str] = &["staging-readers", "staging-writers"];

/// A cluster with latchkey's least-privilege role and the DBA's group roles, plus a
/// workspace whose repository points a `postgres` System at it.
struct Setup {
    cluster: PgCluster,
    ws: Workspace,
    rec: Reconciler,
}

impl Setup {
    async fn start() -> Option<Setup> {
        let cluster = match PgCluster::start() {
            Ok(c) => c,
            Err(why) => {
                crate::peers::unavailable("PostgreSQL", &why);
                return None;
            }
        };
        let su = cluster.superuser("postgres").await;
        let password = format!("pw-{}-{}", cluster.port, std::process::id());
        su.batch_execute(&format!(
            "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'",
            verifier(&password)
        ))
        .await
        .unwrap();
        for g in GROUPS {
            su.batch_execute(&format!(
                "CREATE ROLE {0} NOLOGIN; GRANT {0} TO latchkey WITH ADMIN OPTION",
                ident(g)
            ))
            .await
            .unwrap();
        }
        let ws = Workspace::new();
        // The first commit exists before the reconciler opens the repository.
        ws.commit(&[("latchkey.yaml", &base(cluster.port))], 0, "systems");
        let source = SourceRepo::open(&Location::Path(ws.repo_path()), ws.path()).unwrap();
        let mut secrets = SecretSource::default();
        secrets
            .secret_keys
            .insert("db".into(), Secret::new(password));
        let rec = Reconciler::new(source, Registry::builtin(secrets));
        Some(Setup { cluster, ws, rec })
    }

    /// Commits erin's grants at `time`.
    fn grants(&self, grants: &str, time: Timestamp) {
        let erin = format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata: {{name: erin}}\nspec:\n  email: {ERIN}\n  client: acme\n  grants:\n{grants}\n"
        );
        self.ws.commit(
            &[("clients/acme/erin.yaml", &erin)],
            time.as_second(),
            "erin's grants",
        );
    }

    async fn plan(&mut self, now: Timestamp) -> Plan {
        self.rec
            .plan(&options(now))
            .await
            .unwrap_or_else(|e| panic!("plan: {e}"))
            .plan
    }

    /// Plans and applies at `now`; every change must apply. Returns the plan.
    async fn apply(&mut self, now: Timestamp) -> Plan {
        let planned = self
            .rec
            .plan(&options(now))
            .await
            .unwrap_or_else(|e| panic!("plan: {e}"));
        assert!(
            !planned.plan.has_read_errors(),
            "{}",
            render::text(&planned.plan, false)
        );
        let applied = self
            .rec
            .apply(planned, &options(now), &|_| {})
            .await
            .unwrap_or_else(|e| panic!("apply: {e}"));
        let failed: Vec<_> = applied.outcomes.iter().filter(|o| o.failed()).collect();
        assert!(failed.is_empty(), "{failed:?}");
        applied.planned.plan
    }

    /// `pg_roles.rolvaliduntil` of erin's role, read around the connector: an RFC 3339
    /// instant, `infinity` or `null`.
    async fn valid_until(&self) -> String {
        let su = self.cluster.superuser("postgres").await;
        su.query_one(
            "SELECT CASE WHEN rolvaliduntil IS NULL THEN 'null' \
             WHEN NOT isfinite(rolvaliduntil) THEN rolvaliduntil::text \
             ELSE to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') END \
             FROM pg_roles WHERE rolname = $1",
            &[&ERIN],
        )
        .await
        .unwrap()
        .get(0)
    }

    /// Logs in as erin with a password over TCP (SCRAM, see pg.rs): whether the member
    /// of `staging-readers` got in, or PostgreSQL's refusal.
    async fn login(&self, password: &str) -> Result<bool, String> {
        let mut config = self.cluster.config(ERIN, "postgres", self.cluster.port);
        config.password(password);
        match config.connect(NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                let row = client
                    .query_one("SELECT pg_has_role('staging-readers', 'MEMBER')", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(row.get(0))
            }
            Err(e) => Err(e
                .as_db_error()
                .map(|db| db.message().to_string())
                .unwrap_or_else(|| e.to_string())),
        }
    }
}

fn base(port: u16) -> String {
    format!(
        r#"apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {{name: db}}
spec:
  type: postgres
  environment: staging
  connection: {{url: "postgresql://latchkey@127.0.0.1:{port}/postgres"}}
  credentials: {{secretKey: db}}
  prune: true
  offboard: delete
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {{name: reader}}
spec: {{entitlements: {{db: [staging-readers]}}}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {{name: writer}}
spec: {{entitlements: {{db: [staging-writers]}}}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {{name: acme}}
spec: {{allowedRoles: [reader, writer]}}
"#
    )
}

fn options(now: Timestamp) -> Options {
    Options {
        rev: "main".into(),
        branch: None,
        subpath: String::new(),
        now,
        dry_run: false,
        push: false,
        allow_mass_revoke: None,
        allow_rewind: None,
        allow_broken_ledger: None,
        trigger: Trigger::Manual,
    }
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The native expiry changes of a plan.
fn expiries(plan: &Plan) -> Vec<Op> {
    plan.changes
        .iter()
        .filter(|c| c.expiry().is_some())
        .map(|c| c.op.clone())
        .collect()
}

fn set(until: Option<&str>) -> Op {
    Op::SetExpiry {
        identity: ERIN.into(),
        until: until.map(t),
    }
}

/// `VALID UNTIL` follows the earliest expiry of erin's grants on the system, is cleared
/// when no grant expires, and a re-plan after each apply is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_until_is_the_earliest_grant_expiry() {
    crate::suite::init_log_capture();
    let Some(mut s) = Setup::start().await else {
        return;
    };
    let t0 = t("2026-11-20T12:00:00Z");

    s.grants("    - {role: reader, expires: '2026-12-15T00:00:00Z'}", t0);
    let plan = s.apply(t0 + SignedDuration::from_mins(1)).await;
    let verbs: Vec<_> = plan.changes.iter().map(|c| c.verb()).collect();
    assert_eq!(
        verbs,
        ["create account", "set expiry", "grant"],
        "the lock is in place before the grant"
    );
    assert_eq!(s.valid_until().await, "2026-12-15T00:00:00Z");
    let again = s.plan(t0 + SignedDuration::from_mins(2)).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    // A second grant that expires sooner moves the lock earlier.
    s.grants(
        "    - {role: reader, expires: '2026-12-15T00:00:00Z'}\n    - {role: writer, expires: '2026-12-01T00:00:00Z'}",
        t0 + SignedDuration::from_mins(3),
    );
    let now = t0 + SignedDuration::from_mins(4);
    let preview = s.plan(now).await;
    let text = render::text(&preview, false);
    assert!(
        text.contains("~ erin@acme.example") && text.contains("set expiry 2026-12-01T00:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains("2 changes: 1 to grant, 0 to revoke, 1 expiry to set;"),
        "{text}"
    );
    let markdown = render::markdown(&preview);
    assert!(
        markdown.contains(
            "| ⏳ | erin@acme.example | db | set expiry |  | declared | 2026-12-01T00:00:00Z (in 10d 11h) |"
        ),
        "{markdown}"
    );
    let plan = s.apply(now).await;
    assert_eq!(expiries(&plan), [set(Some("2026-12-01T00:00:00Z"))]);
    assert_eq!(s.valid_until().await, "2026-12-01T00:00:00Z");
    let again = s.plan(now + SignedDuration::from_mins(1)).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    // The ledger records the instant written.
    let set_expiry: Vec<_> =
        s.ws.ledger()
            .into_iter()
            .filter(|r| r["change"] == "set-expiry")
            .map(|r| (r["expires"].clone(), r["result"].clone()))
            .collect();
    assert_eq!(
        set_expiry,
        [
            (
                serde_json::json!("2026-12-15T00:00:00Z"),
                serde_json::json!("applied")
            ),
            (
                serde_json::json!("2026-12-01T00:00:00Z"),
                serde_json::json!("applied")
            ),
        ]
    );

    // No grant expires any more: the lock is lifted.
    s.grants(
        "    - {role: reader}\n    - {role: writer}",
        t0 + SignedDuration::from_mins(5),
    );
    let now = t0 + SignedDuration::from_mins(6);
    let plan = s.apply(now).await;
    assert_eq!(expiries(&plan), [set(None)]);
    assert_eq!(plan.changes[0].verb(), "clear expiry");
    assert_eq!(s.valid_until().await, "infinity");
    let again = s.plan(now + SignedDuration::from_mins(1)).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);
}

/// The second lock locks: with a password a DBA set out of band, erin logs in while
/// `VALID UNTIL` is ahead and is refused by PostgreSQL itself once it has passed, even
/// though the controller (planning at an earlier instant) still grants the membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_valid_until_refuses_the_password_login() {
    crate::suite::init_log_capture();
    let Some(mut s) = Setup::start().await else {
        return;
    };
    // PostgreSQL checks VALID UNTIL against its own clock, so times here are real ones.
    let real = Timestamp::now()
        .round(jiff::Unit::Second)
        .expect("round to seconds");
    let t0 = real - SignedDuration::from_hours(2);

    let tomorrow = real + SignedDuration::from_hours(24);
    s.grants(
        &format!("    - {{role: reader, expires: '{tomorrow}'}}"),
        t0,
    );
    s.apply(t0 + SignedDuration::from_mins(1)).await;
    assert_eq!(s.valid_until().await, tomorrow.to_string());

    // A DBA gives erin a password out of band (only its SCRAM verifier crosses the wire).
    let password = format!("erin-{}", s.cluster.port);
    let su = s.cluster.superuser("postgres").await;
    su.batch_execute(&format!(
        "ALTER ROLE {} PASSWORD '{}'",
        ident(ERIN),
        verifier(&password)
    ))
    .await
    .unwrap();
    assert_eq!(s.login(&password).await, Ok(true), "before VALID UNTIL");

    // The grant is shortened to an hour ago, applied by a controller whose last run was
    // still before that hour: the membership stays, only the second lock can stop erin.
    let hour_ago = real - SignedDuration::from_hours(1);
    s.grants(
        &format!("    - {{role: reader, expires: '{hour_ago}'}}"),
        t0 + SignedDuration::from_mins(2),
    );
    let plan = s.apply(t0 + SignedDuration::from_mins(3)).await;
    assert_eq!(expiries(&plan), [set(Some(&hour_ago.to_string()))]);
    assert_eq!(plan.changes.len(), 1, "the membership is not revoked yet");
    let refused = s
        .login(&password)
        .await
        .expect_err("VALID UNTIL has passed");
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    assert!(
        s.login("wrong").await.is_err(),
        "a wrong password fails the same way"
    );

    // The controller catches up: it revokes the membership and leaves the lock closed.
    let plan = s.apply(real).await;
    let verbs: Vec<_> = plan.changes.iter().map(|c| c.verb()).collect();
    assert_eq!(verbs, ["revoke"]);
    assert_eq!(s.valid_until().await, hour_ago.to_string());
    assert!(s.login(&password).await.is_err());
}
