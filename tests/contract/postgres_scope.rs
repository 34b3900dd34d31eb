//! `postgres` only: entitlement scope against the live catalogue. latchkey grants NOLOGIN
//! group roles without privileges of their own, and refuses the rest: predefined `pg_*`
//! roles, another person's login role, roles with SUPERUSER, CREATEROLE, CREATEDB,
//! REPLICATION or BYPASSRLS, and its own role (issue 15: it granted whatever a Role named).

use latchkey::connectors::postgres::PostgresConnector;
use latchkey::connectors::{Connector, ErrorClass, Op};

use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_roles_are_never_granted() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let su = cluster.superuser("postgres").await;
    let password = format!("pw-scope-{}", cluster.port);
    su.batch_execute(&format!(
        "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'; \
         CREATE ROLE readers NOLOGIN; GRANT readers TO latchkey WITH ADMIN OPTION; \
         CREATE ROLE \"bob@acme.example\" LOGIN; GRANT \"bob@acme.example\" TO latchkey WITH ADMIN OPTION; \
         CREATE ROLE makers NOLOGIN CREATEDB; GRANT makers TO latchkey WITH ADMIN OPTION; \
         CREATE ROLE bypass NOLOGIN BYPASSRLS; GRANT bypass TO latchkey WITH ADMIN OPTION; \
         GRANT pg_read_server_files TO latchkey WITH ADMIN OPTION",
        verifier(&password)
    ))
    .await
    .unwrap();
    let target = cluster.target("latchkey", "postgres", cluster.port, &password);
    let c = PostgresConnector::new(target, 2);
    let erin = "erin@acme.example".to_string();
    c.apply(&Op::CreateAccount {
        identity: erin.clone(),
        display_name: None,
    })
    .await
    .unwrap();
    let grant = |e: &str| Op::AddEntitlement {
        identity: erin.clone(),
        entitlement: e.to_string(),
    };
    c.apply(&grant("readers"))
        .await
        .expect("a plain group role is granted");
    for (role, why) in [
        ("pg_read_server_files", "it is a PostgreSQL predefined role"),
        ("bob@acme.example", "it can log in"),
        ("makers", "it has CREATEDB"),
        ("bypass", "it has BYPASSRLS"),
        ("latchkey", "it is latchkey's own role"),
    ] {
        let e = c.apply(&grant(role)).await.expect_err(role);
        assert_eq!(e.class, ErrorClass::Permanent, "{role}: {e}");
        assert!(
            e.message
                .starts_with(&format!("refusing to grant {role:?}: {why}")),
            "{role}: {}",
            e.message
        );
    }
    let held: Vec<String> = su
        .query(
            "SELECT g.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid \
             JOIN pg_roles m ON m.oid = a.member WHERE m.rolname = $1 ORDER BY 1",
            &[&erin],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held, ["readers"], "only the group role was granted");
}
