//! The `postgres` connector and `sql` on PostgreSQL, each on a throwaway cluster.

use std::net::SocketAddr;

use async_trait::async_trait;
use latchkey::connectors::Connector;
use latchkey::connectors::postgres::{PostgresConnector, ident};
use latchkey::connectors::sql::{Mapping, PgSqlConnector};

use super::pg::PgCluster;
use super::{Fixture, Peer, unavailable};
use crate::proxy::CutProxy;

/// Group roles the suite grants; the DBA's job in real life.
const GROUPS: &[&str] = &[
    "portal-editors",
    "portal-admins",
    "viewers",
    "staff",
    "editors",
    "admins",
    "role-0",
    "role-1",
    "bulk",
    "fresh-role",
];

pub struct PostgresPeer;

/// A SCRAM verifier, so the harness's own (logged) setup SQL never holds the password.
pub fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Which connector a fixture tests.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Roles,
    Portal,
}

pub struct PgFixture {
    cluster: PgCluster,
    kind: Kind,
    user: &'static str,
    db: &'static str,
    password: String,
    connector: Box<dyn Connector>,
}

impl PgFixture {
    async fn start(kind: Kind, tls: bool) -> Option<Box<dyn Fixture>> {
        let started = if tls {
            PgCluster::start_tls()
        } else {
            PgCluster::start()
        };
        let cluster = match started {
            Ok(c) => c,
            Err(why) => return unavailable("PostgreSQL", &why),
        };
        let su = cluster.superuser("postgres").await;
        let password = format!("pw-{}-{}", cluster.port, std::process::id());
        let (user, db) = match kind {
            Kind::Roles => {
                // Least privilege: CREATEROLE, plus ADMIN OPTION on the groups (PG 16+ needs it).
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
                ("latchkey", "postgres")
            }
            Kind::Portal => {
                su.batch_execute(&format!(
                    "CREATE ROLE portal_admin LOGIN PASSWORD '{}'",
                    verifier(&password)
                ))
                .await
                .unwrap();
                su.batch_execute("CREATE DATABASE portal OWNER portal_admin")
                    .await
                    .unwrap();
                let c = cluster.local_config("portal_admin", "portal");
                let (client, conn) = c.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client
                    .batch_execute(
                        "CREATE TABLE users (id SERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE, \
                         display_name TEXT, active BOOLEAN NOT NULL DEFAULT TRUE, managed_by TEXT); \
                         CREATE TABLE user_roles (user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, \
                         role TEXT NOT NULL, PRIMARY KEY (user_id, role));",
                    )
                    .await
                    .unwrap();
                ("portal_admin", "portal")
            }
        };
        let connector = connector(kind, &cluster, user, db, &password, cluster.port);
        Some(Box::new(PgFixture {
            cluster,
            kind,
            user,
            db,
            password,
            connector,
        }))
    }
}

fn connector(
    kind: Kind,
    cluster: &PgCluster,
    user: &str,
    db: &str,
    password: &str,
    port: u16,
) -> Box<dyn Connector> {
    let target = cluster.target(user, db, port, password);
    match kind {
        Kind::Roles => Box::new(PostgresConnector::new(target, 4)),
        Kind::Portal => Box::new(PgSqlConnector::new(target, Mapping::default())),
    }
}

#[async_trait]
impl Peer for PostgresPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        PgFixture::start(Kind::Roles, false).await
    }
}

/// `postgres` on a cluster that accepts only TLS sessions, with `sslmode=verify-full`.
pub struct PostgresTlsPeer;

#[async_trait]
impl Peer for PostgresTlsPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        PgFixture::start(Kind::Roles, true).await
    }
}

/// `sql` with driver postgres.
pub struct SqlPostgresPeer;

#[async_trait]
impl Peer for SqlPostgresPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        PgFixture::start(Kind::Portal, false).await
    }
}

/// `sql` with driver postgres on a TLS-only cluster.
pub struct SqlPostgresTlsPeer;

#[async_trait]
impl Peer for SqlPostgresTlsPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        PgFixture::start(Kind::Portal, true).await
    }
}

#[async_trait]
impl Fixture for PgFixture {
    fn connector(&self) -> &dyn Connector {
        self.connector.as_ref()
    }
    async fn seed_unmanaged(&self, email: &str, entitlement: &str) {
        match self.kind {
            Kind::Roles => {
                let su = self.cluster.superuser("postgres").await;
                su.batch_execute(&format!(
                    "CREATE ROLE {0} LOGIN; GRANT {1} TO {0}",
                    ident(email),
                    ident(entitlement)
                ))
                .await
                .unwrap();
            }
            Kind::Portal => {
                let su = self.cluster.superuser("portal").await;
                su.execute(
                    "INSERT INTO users (email, display_name, active, managed_by) VALUES ($1, 'Owner', TRUE, NULL)",
                    &[&email],
                )
                .await
                .unwrap();
                su.execute(
                    "INSERT INTO user_roles (user_id, role) SELECT id, $2::text FROM users WHERE email = $1",
                    &[&email, &entitlement],
                )
                .await
                .unwrap();
            }
        }
    }
    async fn unmanaged_state(&self, email: &str) -> Option<String> {
        let (db, sql) = match self.kind {
            Kind::Roles => (
                "postgres",
                "SELECT r.rolcanlogin::text || '|' || coalesce(shobj_description(r.oid, 'pg_authid'), '') || '|' || \
                 coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m \
                 JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '') || '|' || \
                 coalesce(r.rolvaliduntil::text, '') FROM pg_roles r WHERE rolname = $1",
            ),
            Kind::Portal => (
                "portal",
                "SELECT u.active::text || '|' || coalesce(u.managed_by, '') || '|' || \
                 coalesce((SELECT string_agg(role, ',' ORDER BY role) FROM user_roles WHERE user_id = u.id), '') \
                 FROM users u WHERE email = $1",
            ),
        };
        let su = self.cluster.superuser(db).await;
        su.query_opt(sql, &[&email])
            .await
            .unwrap()
            .map(|r| r.get(0))
    }
    async fn via_proxy(&self, proxy: &CutProxy) -> Option<Box<dyn Connector>> {
        Some(connector(
            self.kind,
            &self.cluster,
            self.user,
            self.db,
            &self.password,
            proxy.addr.port(),
        ))
    }
    fn upstream(&self) -> Option<SocketAddr> {
        Some(self.cluster.addr())
    }
    fn secret(&self) -> Option<&str> {
        Some(&self.password)
    }
    async fn with_wrong_secret(&self, wrong: &str) -> Option<Box<dyn Connector>> {
        Some(connector(
            self.kind,
            &self.cluster,
            self.user,
            self.db,
            wrong,
            self.cluster.port,
        ))
    }
}
