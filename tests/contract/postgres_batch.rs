//! `postgres` only: a batch is one session (issue 21: a session per change cost about
//! 5 ms of server CPU in backend start-up, 45-55x the `psql -f` floor), and a failed
//! statement in it still fails only its change.

use latchkey::connectors::postgres::PostgresConnector;
use latchkey::connectors::{Connector, Op};

use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

/// Sessions that have ended on the cluster's `postgres` database.
async fn sessions(su: &tokio_postgres::Client) -> i64 {
    su.batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    su.query_one(
        "SELECT sessions FROM pg_stat_database WHERE datname = 'postgres'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_changes_is_one_session_and_a_failure_stays_its_own() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let su = cluster.superuser("postgres").await;
    let password = format!("pw-batch-{}", cluster.port);
    su.batch_execute(&format!(
        "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'; \
         CREATE ROLE readers NOLOGIN; CREATE ROLE writers NOLOGIN; \
         CREATE ROLE \"dba@acme.example\" LOGIN",
        verifier(&password)
    ))
    .await
    .unwrap();
    let c = PostgresConnector::new(
        cluster.target("latchkey", "postgres", cluster.port, &password),
        2,
    );
    let people: Vec<String> = (0..60).map(|i| format!("p{i:02}@acme.example")).collect();
    let creates: Vec<Op> = people
        .iter()
        .map(|p| Op::CreateAccount {
            identity: p.clone(),
            display_name: None,
        })
        .collect();
    let mut grants = Vec::new();
    for (i, p) in people.iter().enumerate() {
        // Every tenth asks for a group the DBA never created: that GRANT fails alone.
        let groups: &[&str] = if i % 10 == 3 {
            &["readers", "missing"]
        } else {
            &["readers", "writers"]
        };
        for g in groups {
            grants.push(Op::AddEntitlement {
                identity: p.clone(),
                entitlement: g.to_string(),
            });
        }
    }
    // A DBA's own login, unmarked, is refused within the same batch.
    grants.push(Op::AddEntitlement {
        identity: "dba@acme.example".into(),
        entitlement: "readers".into(),
    });
    let before = sessions(&su).await;
    let created = c.apply_batch(&creates).await;
    let granted = c.apply_batch(&grants).await;
    // Backends report their end as they exit: wait for both to be counted.
    let mut after = sessions(&su).await;
    for _ in 0..50 {
        if after - before >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = sessions(&su).await;
    }
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    assert_eq!(
        after - before,
        2,
        "one session per batch, not one per change"
    );
    let failed: Vec<(String, String)> = grants
        .iter()
        .zip(&granted)
        .filter_map(|(op, r)| {
            r.as_ref()
                .err()
                .map(|e| (op.identity().to_string(), e.message.clone()))
        })
        .collect();
    assert_eq!(
        failed.len(),
        7,
        "six missing groups and the DBA's login: {failed:?}"
    );
    assert!(
        failed
            .iter()
            .filter(|(_, m)| m.contains("the DBA creates group role \"missing\""))
            .count()
            == 6
    );
    assert!(
        failed
            .iter()
            .any(|(who, m)| who == "dba@acme.example" && m.contains("not managed by latchkey"))
    );
    let memberships: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member \
             WHERE position('@' in m.rolname) > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        memberships,
        60 + 54,
        "every other grant landed beside the failures"
    );
}
