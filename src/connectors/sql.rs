//! `sql`: a custom portal's own user and role tables.
//!
//! Default schema (every table and column name can be mapped in `connection`):
//!
//! ```sql
//! CREATE TABLE users (
//!     id           INTEGER PRIMARY KEY,          -- SERIAL/IDENTITY on PostgreSQL
//!     email        TEXT NOT NULL UNIQUE,
//!     display_name TEXT,
//!     active       BOOLEAN NOT NULL DEFAULT TRUE,
//!     managed_by   TEXT                          -- 'latchkey' marks latchkey's accounts
//! );
//! CREATE TABLE user_roles (
//!     user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
//!     role    TEXT NOT NULL,
//!     PRIMARY KEY (user_id, role)
//! );
//! ```
//!
//! `connection` ([`SqlConnection`]): `driver: sqlite` (default) with `path: portal.sqlite`, or `driver:
//! postgres` with `url: postgresql://portal_admin@db:5432/portal?sslmode=verify-full` (no
//! password in the URL; the password comes from the System's `credentials`; TLS as for
//! `postgres`, see [`super::pg_session`]) and `timeout`; `tables:
//! {users, roles}`; `columns: {id, email, displayName, active, managedBy, userId, role}`.
//! Only rows whose `managed_by` is `latchkey` are read as managed or ever changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rustc_hash::FxHashMap;

use super::pg_session::PgTarget;
use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, MANAGED_MARKER, Op, Snapshot,
    SystemContext,
};
use crate::model::connection::{SqlConnection, SqlDriver};

/// Table and column names, validated as plain identifiers (they are spliced into SQL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub users: String,
    pub roles: String,
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub active: String,
    pub managed_by: String,
    pub user_id: String,
    pub role: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            users: "users".into(),
            roles: "user_roles".into(),
            id: "id".into(),
            email: "email".into(),
            display_name: "display_name".into(),
            active: "active".into(),
            managed_by: "managed_by".into(),
            user_id: "user_id".into(),
            role: "role".into(),
        }
    }
}

impl Mapping {
    /// Reads `tables` and `columns` from a System's typed settings.
    pub fn from_settings(conn: &SqlConnection) -> Result<Mapping, String> {
        let mut m = Mapping::default();
        let (t, c) = (&conn.tables, &conn.columns);
        let fields: [(&str, &str, &Option<String>, &mut String); 9] = [
            ("tables", "users", &t.users, &mut m.users),
            ("tables", "roles", &t.roles, &mut m.roles),
            ("columns", "id", &c.id, &mut m.id),
            ("columns", "email", &c.email, &mut m.email),
            (
                "columns",
                "displayName",
                &c.display_name,
                &mut m.display_name,
            ),
            ("columns", "active", &c.active, &mut m.active),
            ("columns", "managedBy", &c.managed_by, &mut m.managed_by),
            ("columns", "userId", &c.user_id, &mut m.user_id),
            ("columns", "role", &c.role, &mut m.role),
        ];
        for (section, key, value, slot) in fields {
            if let Some(v) = value {
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "connection.{section}.{key} {v:?} must be a plain SQL identifier"
                    ));
                }
                *slot = v.clone();
            }
        }
        Ok(m)
    }
}

/// The statements, written once for the mapping.
struct Statements {
    read_users: String,
    read_roles: String,
    /// SQLite reads users with their row id and every role row by user id, and joins
    /// the two itself (see [`SqliteConnector::read`]).
    read_users_by_id: String,
    read_role_rows: String,
    find_user: String,
    insert_user: String,
    set_active: String,
    add_role: String,
    remove_role: String,
    delete_roles: String,
    delete_user: String,
}

impl Statements {
    /// `$N` placeholders; SQLite reads them as `?N`.
    fn new(m: &Mapping) -> Statements {
        let Mapping {
            users,
            roles,
            id,
            email,
            display_name,
            active,
            managed_by,
            user_id,
            role,
        } = m;
        let managed = format!("{managed_by} = '{MANAGED_MARKER}'");
        let me = format!("lower({email}) = lower($1) AND {managed}");
        Statements {
            read_users: format!(
                "SELECT {email}, {display_name}, {active}, {managed_by} FROM {users}"
            ),
            read_roles: format!(
                "SELECT u.{email}, r.{role} FROM {roles} r JOIN {users} u ON u.{id} = r.{user_id} WHERE u.{managed}"
            ),
            read_users_by_id: format!(
                "SELECT {id}, {email}, {display_name}, {active}, {managed_by} FROM {users}"
            ),
            read_role_rows: format!("SELECT {user_id}, {role} FROM {roles}"),
            find_user: format!("SELECT {managed_by} FROM {users} WHERE lower({email}) = lower($1)"),
            insert_user: format!(
                "INSERT INTO {users} ({email}, {display_name}, {active}, {managed_by}) VALUES ($1, $2, TRUE, '{MANAGED_MARKER}')"
            ),
            set_active: format!("UPDATE {users} SET {active} = $2 WHERE {me}"),
            add_role: format!(
                "INSERT INTO {roles} ({user_id}, {role}) SELECT {id}, $2 FROM {users} WHERE {me} \
                 AND NOT EXISTS (SELECT 1 FROM {roles} x WHERE x.{user_id} = {users}.{id} AND x.{role} = $2)"
            ),
            remove_role: format!(
                "DELETE FROM {roles} WHERE {role} = $2 AND {user_id} IN (SELECT {id} FROM {users} WHERE {me})"
            ),
            delete_roles: format!(
                "DELETE FROM {roles} WHERE {user_id} IN (SELECT {id} FROM {users} WHERE {me})"
            ),
            delete_user: format!("DELETE FROM {users} WHERE {me}"),
        }
    }
}

/// Builds the `sql` connector for a System.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let settings: SqlConnection = ctx.settings()?;
    let mapping = Mapping::from_settings(&settings).map_err(ConnectorError::config)?;
    match settings.driver {
        SqlDriver::Sqlite => {
            let path = settings.path.ok_or_else(|| {
                ConnectorError::config(
                    "connection.path is required for driver sqlite (the database file)",
                )
            })?;
            Ok(Box::new(SqliteConnector::open(
                PathBuf::from(path),
                mapping,
            )?))
        }
        SqlDriver::Postgres => {
            let url = settings.url.ok_or_else(|| {
                ConnectorError::config(
                    "connection.url is required for driver postgres (postgresql://user@host:port/dbname, without a password)",
                )
            })?;
            let target =
                PgTarget::from_url(&url, ctx.secret.as_ref(), settings.timeout.map(|t| t.get()))?;
            Ok(Box::new(PgSqlConnector::new(target, mapping)))
        }
    }
}

/// The embedded default: a SQLite file.
pub struct SqliteConnector {
    conn: Arc<Mutex<Connection>>,
    sql: Arc<Statements>,
    path: PathBuf,
}

impl SqliteConnector {
    /// Opens an existing database; never creates one (a typo must not yield an empty portal).
    pub fn open(path: PathBuf, mapping: Mapping) -> Result<SqliteConnector, ConnectorError> {
        // SQLite's own message ("unable to open database file") does not say why.
        if !path.exists() {
            return Err(ConnectorError::config(format!(
                "SQLite database {} does not exist (a relative path is resolved from the working directory; latchkey never creates it)",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            ConnectorError::config(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        // Foreign keys make ON DELETE CASCADE work; busy_timeout rides out a portal's own writes.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .map_err(|e| sqlite_error(&path, e))?;
        Ok(SqliteConnector {
            conn: Arc::new(Mutex::new(conn)),
            sql: Arc::new(Statements::new(&mapping)),
            path,
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Statements) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let (conn, sql, path) = (self.conn.clone(), self.sql.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| ConnectorError::transient("database handle poisoned"))?;
            f(&mut guard, &sql).map_err(|e| sqlite_error(&path, e))
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("database task failed: {e}")))?
    }
}

/// A user row's id as SQLite compares it in `user_roles.user_id = users.id`: integers
/// (the usual `INTEGER PRIMARY KEY`) by value, text and blobs by bytes. NULL matches
/// nothing, as in SQL.
#[derive(PartialEq, Eq, Hash)]
enum RowId {
    Int(i64),
    Bytes(Vec<u8>),
}

impl RowId {
    fn of(v: ValueRef<'_>) -> Option<RowId> {
        match v {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(RowId::Int(i)),
            // An integral REAL equals the INTEGER of the same value in SQL.
            ValueRef::Real(r) if r.fract() == 0.0 && r.abs() < 9.0e15 => Some(RowId::Int(r as i64)),
            ValueRef::Real(r) => Some(RowId::Bytes(r.to_bits().to_be_bytes().to_vec())),
            ValueRef::Text(b) | ValueRef::Blob(b) => Some(RowId::Bytes(b.to_vec())),
        }
    }
}

/// Sorts accounts by identity and folds rows whose emails differ only in case into one
/// account: the last row's name and state, every row's roles.
fn merge_same_identity(mut accounts: Vec<Account>) -> Vec<Account> {
    // Stable: among rows of one identity, the last read stays last.
    accounts.sort_by(|a, b| a.identity.cmp(&b.identity));
    accounts.dedup_by(|later, kept| {
        if later.identity != kept.identity {
            return false;
        }
        kept.entitlements.append(&mut later.entitlements);
        kept.display_name = later.display_name.take();
        kept.active = later.active;
        true
    });
    accounts
}

fn sqlite_error(path: &std::path::Path, e: rusqlite::Error) -> ConnectorError {
    let text = e.to_string();
    let at = path.display();
    if text.contains("not a database") {
        ConnectorError::config(format!(
            "{at} is not a SQLite database (file is not a database)"
        ))
    } else if text.contains("no such table") || text.contains("no such column") {
        ConnectorError::config(format!(
            "{at}: {text}; create the portal schema (see README) or map tables and columns in connection"
        ))
    } else if text.contains("locked") || text.contains("busy") {
        ConnectorError::transient(format!("{at}: {text}"))
    } else {
        ConnectorError::permanent(format!("{at}: {text}"))
    }
}

fn q(s: &str) -> String {
    s.replace('$', "?")
}

#[async_trait]
impl Connector for SqliteConnector {
    fn capabilities(&self) -> Capabilities {
        // One writer at a time: SQLite serialises writes anyway.
        Capabilities {
            native_expiry: false,
            max_concurrency: 1,
        }
    }

    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        self.with(|conn, sql| {
            // Two plain scans joined here by user id, an integer lookup per role row,
            // rather than a join in SQL keyed by email: half the time on a large portal.
            let mut managed: Vec<Account> = Vec::new();
            let mut by_id: FxHashMap<RowId, usize> = FxHashMap::default();
            let mut unmanaged = BTreeSet::new();
            let mut stmt = conn.prepare(&sql.read_users_by_id)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let identity = super::identity(row.get_ref(1)?.as_str()?);
                if row.get_ref(4)?.as_str_or_null()? != Some(MANAGED_MARKER) {
                    unmanaged.insert(identity);
                    continue;
                }
                if let Some(id) = RowId::of(row.get_ref(0)?) {
                    by_id.insert(id, managed.len());
                }
                managed.push(Account {
                    identity,
                    display_name: row.get(2)?,
                    active: row.get::<_, i64>(3)? != 0,
                    entitlements: BTreeSet::new(),
                    valid_until: None,
                });
            }
            let mut stmt = conn.prepare(&sql.read_role_rows)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let account = RowId::of(row.get_ref(0)?).and_then(|id| by_id.get(&id));
                if let Some(&i) = account {
                    managed[i].entitlements.insert(row.get(1)?);
                }
            }
            Ok(Snapshot {
                managed: merge_same_identity(managed),
                unmanaged,
                completeness: Completeness::Complete,
                warnings: Vec::new(),
            })
        })
        .await
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        let op = op.clone();
        let outcome = self
            .with(move |conn, sql| {
                let tx = conn.transaction()?;
                let id = op.identity().to_string();
                let existing: Option<Option<String>> =
                    tx.query_row(&q(&sql.find_user), params![id], |r| r.get(0)).optional()?;
                let managed = matches!(&existing, Some(Some(m)) if m == MANAGED_MARKER);
                let result = match &op {
                    Op::SetExpiry { .. } => Err(ConnectorError::no_native_expiry("sql").message),
                    Op::CreateAccount { display_name, .. } => match existing {
                        None => {
                            tx.execute(&q(&sql.insert_user), params![id, display_name])?;
                            Ok(())
                        }
                        Some(_) if managed => {
                            tx.execute(&q(&sql.set_active), params![id, true])?;
                            Ok(())
                        }
                        Some(_) => Err(format!("an account for {id} exists and is not managed by latchkey; it is left alone")),
                    },
                    _ if !managed => match op {
                        // Already gone is the goal of these.
                        Op::RemoveEntitlement { .. } | Op::DisableAccount { .. } | Op::DeleteAccount { .. } if existing.is_none() => Ok(()),
                        _ => Err(format!("no account managed by latchkey for {id}")),
                    },
                    Op::EnableAccount { .. } => tx.execute(&q(&sql.set_active), params![id, true]).map(|_| Ok(()))?,
                    Op::DisableAccount { .. } => tx.execute(&q(&sql.set_active), params![id, false]).map(|_| Ok(()))?,
                    Op::AddEntitlement { entitlement, .. } => tx.execute(&q(&sql.add_role), params![id, entitlement]).map(|_| Ok(()))?,
                    Op::RemoveEntitlement { entitlement, .. } => tx.execute(&q(&sql.remove_role), params![id, entitlement]).map(|_| Ok(()))?,
                    Op::DeleteAccount { .. } => {
                        tx.execute(&q(&sql.delete_roles), params![id])?;
                        tx.execute(&q(&sql.delete_user), params![id]).map(|_| Ok(()))?
                    }
                };
                if result.is_ok() {
                    tx.commit()?;
                }
                Ok(result)
            })
            .await?;
        outcome.map_err(ConnectorError::permanent)
    }
}

/// The same portal tables in a PostgreSQL database.
pub struct PgSqlConnector {
    target: PgTarget,
    sql: Statements,
}

impl PgSqlConnector {
    /// A connector for a target (password set) and a table mapping.
    pub fn new(target: PgTarget, mapping: Mapping) -> PgSqlConnector {
        PgSqlConnector {
            target,
            sql: Statements::new(&mapping),
        }
    }
}

fn pg_table_error(e: ConnectorError) -> ConnectorError {
    // 42P01 undefined table, 42703 undefined column: the schema or mapping is wrong.
    if e.message.contains("42P01") || e.message.contains("42703") {
        ConnectorError::config(format!(
            "{}; create the portal schema or map tables and columns in connection",
            e.message
        ))
    } else {
        e
    }
}

#[async_trait]
impl Connector for PgSqlConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: false,
            max_concurrency: 4,
        }
    }

    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        use super::postgres::pg_error;
        let session = self.target.connect().await?;
        let warnings = self.target.unencrypted_warning(session.encrypted);
        let mut client = session.client;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| pg_error("read", &e))?;
        let users = tx
            .query(&self.sql.read_users, &[])
            .await
            .map_err(|e| pg_table_error(pg_error("read users", &e)))?;
        let roles = tx
            .query(&self.sql.read_roles, &[])
            .await
            .map_err(|e| pg_table_error(pg_error("read roles", &e)))?;
        tx.commit().await.map_err(|e| pg_error("read", &e))?;
        let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
        let mut unmanaged = BTreeSet::new();
        for row in users {
            let identity = super::identity(&row.get::<_, String>(0));
            let marker: Option<String> = row.get(3);
            if marker.as_deref() != Some(MANAGED_MARKER) {
                unmanaged.insert(identity);
                continue;
            }
            accounts.insert(
                identity.clone(),
                Account {
                    identity,
                    display_name: row.get(1),
                    active: row.get(2),
                    entitlements: BTreeSet::new(),
                    valid_until: None,
                },
            );
        }
        for row in roles {
            let identity = super::identity(&row.get::<_, String>(0));
            if let Some(a) = accounts.get_mut(&identity) {
                a.entitlements.insert(row.get(1));
            }
        }
        Ok(Snapshot {
            managed: accounts.into_values().collect(),
            unmanaged,
            completeness: Completeness::Complete,
            warnings: warnings.into_iter().collect(),
        })
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        use super::postgres::pg_error;
        let fail = |e: tokio_postgres::Error| pg_table_error(pg_error("apply", &e));
        let mut client = self.target.connect().await?.client;
        let tx = client.transaction().await.map_err(fail)?;
        let id = op.identity().to_string();
        let existing: Option<Option<String>> = tx
            .query_opt(&self.sql.find_user, &[&id])
            .await
            .map_err(fail)?
            .map(|r| r.get(0));
        let managed = matches!(&existing, Some(Some(m)) if m == MANAGED_MARKER);
        let sql = &self.sql;
        match op {
            Op::SetExpiry { .. } => return Err(ConnectorError::no_native_expiry("sql")),
            Op::CreateAccount { display_name, .. } => match existing {
                None => tx.execute(&sql.insert_user, &[&id, display_name]).await,
                Some(_) if managed => tx.execute(&sql.set_active, &[&id, &true]).await,
                Some(_) => {
                    return Err(ConnectorError::permanent(format!(
                        "an account for {id} exists and is not managed by latchkey; it is left alone"
                    )));
                }
            },
            _ if !managed => {
                return match op {
                    Op::RemoveEntitlement { .. }
                    | Op::DisableAccount { .. }
                    | Op::DeleteAccount { .. }
                        if existing.is_none() =>
                    {
                        Ok(())
                    }
                    _ => Err(ConnectorError::permanent(format!(
                        "no account managed by latchkey for {id}"
                    ))),
                };
            }
            Op::EnableAccount { .. } => tx.execute(&sql.set_active, &[&id, &true]).await,
            Op::DisableAccount { .. } => tx.execute(&sql.set_active, &[&id, &false]).await,
            Op::AddEntitlement { entitlement, .. } => {
                tx.execute(&sql.add_role, &[&id, entitlement]).await
            }
            Op::RemoveEntitlement { entitlement, .. } => {
                tx.execute(&sql.remove_role, &[&id, entitlement]).await
            }
            Op::DeleteAccount { .. } => {
                tx.execute(&sql.delete_roles, &[&id]).await.map_err(fail)?;
                tx.execute(&sql.delete_user, &[&id]).await
            }
        }
        .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A portal file with `schema` and `rows`, read by the connector.
    async fn read(schema: &str, rows: &str, mapping: Mapping) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!("{schema}\n{rows}"))
            .unwrap();
        SqliteConnector::open(path, mapping)
            .unwrap()
            .read()
            .await
            .unwrap()
    }

    const SCHEMA: &str = "
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
            display_name TEXT, active BOOLEAN NOT NULL DEFAULT TRUE, managed_by TEXT);
        CREATE TABLE user_roles (user_id INTEGER NOT NULL, role TEXT NOT NULL);";

    fn summary(s: &Snapshot) -> Vec<(String, Option<String>, bool, Vec<String>)> {
        s.managed
            .iter()
            .map(|a| {
                let ents = a.entitlements.iter().cloned().collect();
                (a.identity.clone(), a.display_name.clone(), a.active, ents)
            })
            .collect()
    }

    #[tokio::test]
    async fn roles_join_their_managed_user_by_id_only() {
        let snap = read(
            SCHEMA,
            "INSERT INTO users VALUES (1, 'b@x.example', 'B', 1, 'latchkey'),
                                      (2, 'a@x.example', 'A', 0, 'latchkey'),
                                      (3, 'admin@x.example', 'Admin', 1, NULL);
             INSERT INTO user_roles VALUES (1, 'viewer'), (2, 'editor'), (1, 'editor'),
                                           (3, 'superuser'), (99, 'orphan');",
            Mapping::default(),
        )
        .await;
        assert_eq!(
            summary(&snap),
            [
                (
                    "a@x.example".into(),
                    Some("A".into()),
                    false,
                    vec!["editor".into()]
                ),
                (
                    "b@x.example".into(),
                    Some("B".into()),
                    true,
                    vec!["editor".into(), "viewer".into()]
                ),
            ]
        );
        assert_eq!(
            snap.unmanaged.iter().collect::<Vec<_>>(),
            ["admin@x.example"]
        );
    }

    #[tokio::test]
    async fn emails_differing_in_case_are_one_account_with_every_role() {
        let snap = read(
            SCHEMA,
            "INSERT INTO users VALUES (1, 'Erin@X.example', 'Old', 0, 'latchkey'),
                                      (2, 'erin@x.example', 'New', 1, 'latchkey');
             INSERT INTO user_roles VALUES (1, 'viewer'), (2, 'editor');",
            Mapping::default(),
        )
        .await;
        assert_eq!(
            summary(&snap),
            [(
                "erin@x.example".into(),
                Some("New".into()),
                true,
                vec!["editor".into(), "viewer".into()]
            )]
        );
    }

    #[tokio::test]
    async fn text_ids_join_by_value() {
        let mapping = Mapping {
            users: "people".into(),
            roles: "grants".into(),
            id: "uuid".into(),
            user_id: "person".into(),
            ..Mapping::default()
        };
        let snap = read(
            "CREATE TABLE people (uuid TEXT PRIMARY KEY, email TEXT, display_name TEXT,
                 active BOOLEAN, managed_by TEXT);
             CREATE TABLE grants (person TEXT, role TEXT);",
            "INSERT INTO people VALUES ('u-1', 'a@x.example', NULL, 1, 'latchkey'),
                                       ('u-2', 'b@x.example', NULL, 1, 'latchkey');
             INSERT INTO grants VALUES ('u-2', 'viewer'), ('u-1', 'editor'), (NULL, 'lost');",
            mapping,
        )
        .await;
        assert_eq!(
            summary(&snap),
            [
                ("a@x.example".into(), None, true, vec!["editor".into()]),
                ("b@x.example".into(), None, true, vec!["viewer".into()]),
            ]
        );
    }
}
