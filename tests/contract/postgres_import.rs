//! `postgres`: `latchkey import` turns a real cluster's login roles (unmarked, as a DBA
//! made them) into Member documents, and `AdoptAccount` marks only what latchkey may take
//! over: never a privileged login, never a role with a DBA's comment.

use std::collections::BTreeMap;

use latchkey::connectors::postgres::PostgresConnector;
use latchkey::connectors::{Connector, ErrorClass, Op};

use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

const REPO: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: Policy
metadata: {name: p}
spec: {agencyClient: studio}
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: db}
spec: {type: postgres, environment: staging, adopt: true, connection: {url: \"postgresql://latchkey@127.0.0.1/postgres\"}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: reader}
spec: {entitlements: {db: [\"{client}-readers\"]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: writer}
spec: {entitlements: {db: [\"{client}-readers\", \"{client}-writers\"]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec: {allowedRoles: [reader, writer], admins: [dana@acme.example], requireExpiry: [staging]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: studio}
spec: {allowedRoles: [reader], admins: [ops@studio.example]}
";

fn catalog() -> latchkey::load::Catalog {
    let at = "2026-11-20T12:00:00Z".parse().unwrap();
    let loaded = latchkey::load::load_text("latchkey.yaml", REPO, at);
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
    loaded.catalog
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_maps_login_roles_and_adopt_marks_only_plain_logins() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let su = cluster.superuser("postgres").await;
    let password = format!("pw-import-{}", cluster.port);
    // What a DBA built before latchkey: plain logins in group roles with expiries (acme
    // requires them on staging), one privileged login, one with a DBA's comment, one holding a group no Role grants.
    su.batch_execute(&format!(
        "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'; \
         CREATE ROLE \"acme-readers\" NOLOGIN; CREATE ROLE \"acme-writers\" NOLOGIN; \
         CREATE ROLE \"studio-readers\" NOLOGIN; CREATE ROLE legacy NOLOGIN; \
         CREATE ROLE \"erin@acme.example\" LOGIN VALID UNTIL '2026-12-15 18:00:00+00'; \
         GRANT \"acme-readers\", \"acme-writers\" TO \"erin@acme.example\"; \
         CREATE ROLE \"sam@studio.example\" LOGIN VALID UNTIL '2026-12-18 17:00:00+00'; \
         GRANT \"acme-readers\", \"studio-readers\" TO \"sam@studio.example\"; \
         CREATE ROLE \"root@acme.example\" LOGIN SUPERUSER VALID UNTIL '2026-12-20 00:00:00+00'; \
         GRANT \"acme-readers\" TO \"root@acme.example\"; \
         CREATE ROLE \"ann@acme.example\" LOGIN VALID UNTIL '2026-12-20 00:00:00+00'; COMMENT ON ROLE \"ann@acme.example\" IS 'Ann, on leave'; \
         GRANT \"acme-readers\", legacy TO \"ann@acme.example\"",
        verifier(&password)
    ))
    .await
    .unwrap();
    let target = cluster.target("latchkey", "postgres", cluster.port, &password);
    let c = PostgresConnector::new(target, 2);

    let snap = c.read().await.unwrap();
    assert!(snap.managed.is_empty(), "{snap:?}");
    let reads = BTreeMap::from([("db".to_string(), snap)]);
    let imported = latchkey::import::import(&catalog(), &reads);
    let docs: Vec<serde_json::Value> = imported
        .members
        .iter()
        .map(|p| serde_json::json!({"file": p.file, "doc": p.document}))
        .collect();
    assert_eq!(
        serde_json::Value::Array(docs),
        serde_json::json!([
            {"file": "clients/acme/members.yaml", "doc": {
                "apiVersion": "latchkey.dev/v1alpha1", "kind": "Member", "metadata": {"name": "ann"},
                "spec": {"email": "ann@acme.example", "client": "acme", "offboarded": false,
                         "grants": [{"role": "reader", "expires": "2026-12-20T00:00:00Z"}]}}},
            // The login's VALID UNTIL becomes the grant's expiry (staging requires one).
            {"file": "clients/acme/members.yaml", "doc": {
                "apiVersion": "latchkey.dev/v1alpha1", "kind": "Member", "metadata": {"name": "erin"},
                "spec": {"email": "erin@acme.example", "client": "acme", "offboarded": false,
                         "grants": [{"role": "writer", "expires": "2026-12-15T18:00:00Z"}]}}},
            {"file": "clients/acme/members.yaml", "doc": {
                "apiVersion": "latchkey.dev/v1alpha1", "kind": "Member", "metadata": {"name": "root"},
                "spec": {"email": "root@acme.example", "client": "acme", "offboarded": false,
                         "grants": [{"role": "reader", "expires": "2026-12-20T00:00:00Z"}]}}},
            // Agency staff: the other client's grant names it.
            {"file": "team/members.yaml", "doc": {
                "apiVersion": "latchkey.dev/v1alpha1", "kind": "Member", "metadata": {"name": "sam"},
                "spec": {"email": "sam@studio.example", "client": "studio", "offboarded": false,
                         "grants": [{"role": "reader", "client": "acme", "expires": "2026-12-18T17:00:00Z"},
                                    {"role": "reader"}]}}},
        ])
    );
    let unmapped: Vec<(String, String)> = imported
        .findings
        .iter()
        .filter(|f| f.problem == latchkey::import::Problem::Unmapped)
        .map(|f| (f.identity.clone(), f.message.clone()))
        .collect();
    assert_eq!(unmapped.len(), 1, "{:?}", imported.findings);
    assert_eq!(unmapped[0].0, "ann@acme.example");
    assert!(
        unmapped[0].1.starts_with("\"legacy\": no Role"),
        "{}",
        unmapped[0].1
    );

    // Adoption: a plain login is marked and nothing else about it changes.
    let adopt = |who: &str| Op::AdoptAccount {
        identity: who.to_string(),
    };
    c.apply(&adopt("erin@acme.example")).await.unwrap();
    c.apply(&adopt("erin@acme.example")).await.unwrap(); // idempotent
    let marker: Option<String> = su
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'erin@acme.example'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marker.as_deref(), Some("latchkey"));
    let snap = c.read().await.unwrap();
    let erin = snap
        .managed
        .iter()
        .find(|a| a.identity == "erin@acme.example")
        .expect("adopted: managed");
    // The memberships the DBA granted stay the DBA's (PostgreSQL 16+ would not let
    // latchkey's role revoke them): reported as foreign grants, not latchkey's own.
    assert!(erin.entitlements.is_empty(), "{:?}", erin.entitlements);
    let mut foreign: Vec<&str> = snap
        .foreign_grants
        .iter()
        .filter(|g| g.identity == "erin@acme.example")
        .map(|g| g.entitlement.as_str())
        .collect();
    foreign.sort();
    assert_eq!(foreign, ["acme-readers", "acme-writers"]);
    assert_eq!(
        erin.valid_until,
        Some("2026-12-15T18:00:00Z".parse().unwrap())
    );
    // Fail closed: a SUPERUSER login and a role with a DBA's comment stay unmanaged.
    for (who, why) in [
        ("root@acme.example", "it is a SUPERUSER"),
        ("ann@acme.example", "it has the comment \"Ann, on leave\""),
        ("nobody@acme.example", "it does not exist"),
    ] {
        let e = c.apply(&adopt(who)).await.expect_err(who);
        assert_eq!(e.class, ErrorClass::Permanent, "{who}: {e}");
        assert!(e.message.contains(why), "{who}: {e}");
    }
    let snap = c.read().await.unwrap();
    assert!(snap.unmanaged.contains_key("root@acme.example"));
    assert!(snap.unmanaged.contains_key("ann@acme.example"));
    assert_eq!(snap.managed.len(), 1);
}
