//! SQLite: a portal database file in a temp dir (embedded; nothing to start).

use async_trait::async_trait;
use latchkey::connectors::Connector;
use latchkey::connectors::sql::{Mapping, SqliteConnector};

use super::{Fixture, Peer};
use crate::proxy::CutProxy;

const SCHEMA: &str = include_str!("../../../examples/agency/schema.sql");

pub struct SqlitePeer;

pub struct SqliteFixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    connector: SqliteConnector,
}

#[async_trait]
impl Peer for SqlitePeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("portal.sqlite");
        rusqlite::Connection::open(&path)
            .and_then(|c| c.execute_batch(SCHEMA))
            .expect("create schema");
        let connector = SqliteConnector::open(path.clone(), Mapping::default()).expect("open");
        Some(Box::new(SqliteFixture {
            _dir: dir,
            path,
            connector,
        }))
    }
}

#[async_trait]
impl Fixture for SqliteFixture {
    fn connector(&self) -> &dyn Connector {
        &self.connector
    }
    async fn seed_unmanaged(&self, email: &str, entitlement: &str) {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        c.execute(
            "INSERT INTO users (email, display_name, active, managed_by) VALUES (?1, 'Owner', 1, NULL)",
            [email],
        )
        .unwrap();
        c.execute(
            "INSERT INTO user_roles (user_id, role) SELECT id, ?2 FROM users WHERE email = ?1",
            [email, entitlement],
        )
        .unwrap();
    }
    async fn unmanaged_state(&self, email: &str) -> Option<String> {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        c.query_row(
            "SELECT u.active || '|' || coalesce(u.managed_by, '') || '|' || \
             coalesce((SELECT group_concat(role) FROM (SELECT role FROM user_roles WHERE user_id = u.id ORDER BY role)), '') \
             FROM users u WHERE email = ?1",
            [email],
            |r| r.get(0),
        )
        .ok()
    }
    async fn via_proxy(&self, _: &CutProxy) -> Option<Box<dyn Connector>> {
        None
    }
    fn upstream(&self) -> Option<std::net::SocketAddr> {
        None
    }
    fn secret(&self) -> Option<&str> {
        None
    }
    async fn with_wrong_secret(&self, _: &str) -> Option<Box<dyn Connector>> {
        None
    }
}
