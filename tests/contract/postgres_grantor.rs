//! `postgres` only: memberships are read with their grantor (issue 17). On PostgreSQL 16+
//! a REVOKE by latchkey removes only latchkey's grant, so a membership another role
//! granted would be planned for revocation forever; it must not be read as latchkey's.
//! Debian 12 ships PostgreSQL 15, where the grantor is recorded too: this runs there.

use latchkey::connectors::postgres::PostgresConnector;
use latchkey::connectors::{Connector, ForeignGrant, Op};

use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_granted_by_another_role_are_foreign() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let su = cluster.superuser("postgres").await;
    let password = format!("pw-grantor-{}", cluster.port);
    su.batch_execute(&format!(
        "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'; \
         CREATE ROLE dba LOGIN CREATEROLE; \
         CREATE ROLE readers NOLOGIN; GRANT readers TO latchkey WITH ADMIN OPTION; \
         CREATE ROLE auditors NOLOGIN; GRANT auditors TO dba WITH ADMIN OPTION",
        verifier(&password)
    ))
    .await
    .unwrap();
    let target = cluster.target("latchkey", "postgres", cluster.port, &password);
    let c = PostgresConnector::new(target, 2);
    let erin = "erin@acme.example";
    c.apply(&Op::CreateAccount {
        identity: erin.into(),
        display_name: None,
    })
    .await
    .unwrap();
    c.apply(&Op::AddEntitlement {
        identity: erin.into(),
        entitlement: "readers".into(),
    })
    .await
    .unwrap();
    // The DBA grants another membership themselves.
    su.batch_execute(&format!(
        "SET ROLE dba; GRANT auditors TO \"{erin}\"; RESET ROLE"
    ))
    .await
    .unwrap();
    let grantors: Vec<(String, String)> = su
        .query(
            "SELECT g.rolname, gr.rolname FROM pg_auth_members a \
             JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
             JOIN pg_roles gr ON gr.oid = a.grantor WHERE m.rolname = $1 ORDER BY 1",
            &[&erin],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        grantors,
        [
            ("auditors".to_string(), "dba".to_string()),
            ("readers".to_string(), "latchkey".to_string())
        ],
        "the server records who granted what"
    );

    let snap = c.read().await.expect("read");
    let account = snap
        .managed
        .iter()
        .find(|a| a.identity == erin)
        .expect("erin is managed");
    assert_eq!(
        account.entitlements.iter().collect::<Vec<_>>(),
        ["readers"],
        "only latchkey's grant is its entitlement"
    );
    assert_eq!(
        snap.foreign_grants,
        [ForeignGrant {
            identity: erin.into(),
            entitlement: "auditors".into(),
            grantor: "dba".into(),
        }]
    );
}
