//! `postgres` only: two Systems on one cluster creating the same login at once (issue 15:
//! the loser hit `duplicate_object` 42710 or `unique_violation` 23505, then `current
//! transaction is aborted` 25P02 when it looked the role up again).

use std::sync::Arc;
use std::time::Duration;

use latchkey::connectors::postgres::PostgresConnector;
use latchkey::connectors::{Connector, Op};

use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

/// Two connectors as two CREATEROLE roles, like two Systems with their own credentials.
async fn two_connectors(cluster: &PgCluster) -> (Arc<PostgresConnector>, Arc<PostgresConnector>) {
    let su = cluster.superuser("postgres").await;
    let mut out = Vec::new();
    for user in ["latchkey_a", "latchkey_b"] {
        let password = format!("pw-{user}-{}", cluster.port);
        su.batch_execute(&format!(
            "CREATE ROLE {user} LOGIN CREATEROLE PASSWORD '{}'",
            verifier(&password)
        ))
        .await
        .unwrap();
        let target = cluster.target(user, "postgres", cluster.port, &password);
        out.push(Arc::new(PostgresConnector::new(target, 4)));
    }
    let b = out.pop().unwrap();
    (out.pop().unwrap(), b)
}

fn create(login: &str) -> Op {
    Op::CreateAccount {
        identity: login.into(),
        display_name: None,
    }
}

/// (can login, latchkey's marker) of `login`, or None when there is no such role.
async fn login_state(su: &tokio_postgres::Client, login: &str) -> Option<(bool, Option<String>)> {
    su.query_opt(
        "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        &[&login],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1)))
}

/// Deterministic: a superuser holds pg_authid in SHARE mode, so both connectors find no
/// role and then both wait in CREATE ROLE; releasing the lock lets one create the login
/// while the other collides with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_systems_creating_the_same_login_at_once_both_succeed() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let (a, b) = two_connectors(&cluster).await;
    let su = cluster.superuser("postgres").await;
    let gate = cluster.superuser("postgres").await;
    for i in 0..3 {
        let login = format!("race-{i}@acme.example");
        gate.batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_authid IN SHARE MODE")
            .await
            .unwrap();
        let both = {
            let (a, b, op) = (a.clone(), b.clone(), create(&login));
            tokio::spawn(async move { tokio::join!(a.apply(&op), b.apply(&op)) })
        };
        let mut waiting = 0;
        for _ in 0..400 {
            waiting = su
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted \
                     AND relation = 'pg_catalog.pg_authid'::regclass",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if waiting == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(waiting, 2, "{login}: both creators wait on pg_authid");
        gate.batch_execute("COMMIT").await.unwrap();
        let (ra, rb) = both.await.unwrap();
        assert!(ra.is_ok() && rb.is_ok(), "{login}: {ra:?} / {rb:?}");
        assert_eq!(
            login_state(&su, &login).await,
            Some((true, Some("latchkey".into()))),
            "{login}: one login, LOGIN, marked"
        );
        for c in [&a, &b] {
            let snap = c.read().await.unwrap();
            assert!(
                snap.managed.iter().any(|acc| acc.identity == login),
                "{login}: managed for both"
            );
        }
    }
}

/// The same without the gate, many times over: whatever the interleaving, both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_creations_of_the_same_logins_all_succeed() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let (a, b) = two_connectors(&cluster).await;
    let su = cluster.superuser("postgres").await;
    for i in 0..20 {
        let login = format!("free-{i}@acme.example");
        let op = create(&login);
        let (ra, rb) = tokio::join!(a.apply(&op), b.apply(&op));
        assert!(ra.is_ok() && rb.is_ok(), "{login}: {ra:?} / {rb:?}");
        assert_eq!(
            login_state(&su, &login).await,
            Some((true, Some("latchkey".into()))),
            "{login}"
        );
    }
}
