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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rustc_hash::{FxHashMap, FxHashSet};

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
    /// Marks an unmarked row as latchkey's (adoption); `$1` the email.
    adopt_user: String,
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
    /// By row id, for SQLite's batches: a lookup by `lower(email)` cannot use the email
    /// index, so each would scan the users table (see [`UserIndex`]).
    user_ids: String,
    ids_of_email: String,
    set_active_id: String,
    add_role_id: String,
    remove_role_id: String,
    delete_roles_id: String,
    delete_user_id: String,
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
                "SELECT u.{email}, r.{role} FROM {roles} r JOIN {users} u ON u.{id} = r.{user_id}"
            ),
            adopt_user: format!(
                "UPDATE {users} SET {managed_by} = '{MANAGED_MARKER}' WHERE lower({email}) = lower($1) \
                 AND ({managed_by} IS NULL OR {managed_by} = '')"
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
            user_ids: format!("SELECT {id}, {email}, {managed_by} FROM {users}"),
            ids_of_email: format!("SELECT {id} FROM {users} WHERE {email} = $1"),
            set_active_id: format!(
                "UPDATE {users} SET {active} = $2 WHERE {id} = $1 AND {managed}"
            ),
            add_role_id: format!(
                "INSERT INTO {roles} ({user_id}, {role}) SELECT $1, $2 \
                 WHERE NOT EXISTS (SELECT 1 FROM {roles} WHERE {user_id} = $1 AND {role} = $2)"
            ),
            remove_role_id: format!("DELETE FROM {roles} WHERE {user_id} = $1 AND {role} = $2"),
            delete_roles_id: format!("DELETE FROM {roles} WHERE {user_id} = $1"),
            delete_user_id: format!("DELETE FROM {users} WHERE {id} = $1 AND {managed}"),
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

/// Why an `AdoptAccount` marked nothing: the row is gone, or carries another tool's
/// marker (never taken over).
fn not_adoptable(id: &str, existing: Option<Option<String>>) -> String {
    match existing {
        None => format!("no account for {id} to adopt"),
        Some(marker) => format!(
            "the account for {id} is marked {:?}, not unmarked; latchkey adopts only unmarked accounts",
            marker.unwrap_or_default()
        ),
    }
}

/// Unmanaged accounts by identity, rows differing only in case folded into one.
fn by_identity(accounts: impl Iterator<Item = Account>) -> BTreeMap<String, Account> {
    merge_same_identity(accounts.collect())
        .into_iter()
        .map(|a| (a.identity.clone(), a))
        .collect()
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
            let mut accounts: Vec<(bool, Account)> = Vec::new();
            let mut by_id: FxHashMap<RowId, usize> = FxHashMap::default();
            let mut stmt = conn.prepare(&sql.read_users_by_id)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let managed = row.get_ref(4)?.as_str_or_null()? == Some(MANAGED_MARKER);
                if let Some(id) = RowId::of(row.get_ref(0)?) {
                    by_id.insert(id, accounts.len());
                }
                accounts.push((
                    managed,
                    Account {
                        identity: super::identity(row.get_ref(1)?.as_str()?),
                        display_name: row.get(2)?,
                        active: row.get::<_, i64>(3)? != 0,
                        entitlements: super::EntitlementSet::new(),
                        valid_until: None,
                    },
                ));
            }
            // Each role name read once: the rows repeat a few names many times over.
            let mut names: FxHashSet<Arc<str>> = FxHashSet::default();
            let mut stmt = conn.prepare(&sql.read_role_rows)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let account = RowId::of(row.get_ref(0)?).and_then(|id| by_id.get(&id));
                if let Some(&i) = account {
                    let name = row.get_ref(1)?.as_str()?;
                    let name = match names.get(name) {
                        Some(n) => n.clone(),
                        None => {
                            let n: Arc<str> = Arc::from(name);
                            names.insert(n.clone());
                            n
                        }
                    };
                    accounts[i].1.entitlements.insert_shared(name);
                }
            }
            drop(names);
            let (managed, unmanaged): (Vec<_>, Vec<_>) =
                accounts.into_iter().partition(|(m, _)| *m);
            let mut managed = merge_same_identity(managed.into_iter().map(|(_, a)| a).collect());
            // The snapshot lives for the whole plan: a portal of 200,000 accounts would
            // otherwise keep room for 262,144 of them, and four entitlements for three.
            managed.shrink_to_fit();
            for a in &mut managed {
                a.entitlements.shrink_to_fit();
            }
            Ok(Snapshot {
                managed,
                unmanaged: by_identity(unmanaged.into_iter().map(|(_, a)| a)),
                completeness: Completeness::Complete,
                foreign_grants: Vec::new(),
                warnings: Vec::new(),
            })
        })
        .await
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        self.apply_batch(std::slice::from_ref(op))
            .await
            .pop()
            .unwrap_or_else(|| Err(ConnectorError::transient("no result for the change")))
    }

    fn batch_size(&self) -> usize {
        // One transaction per batch: large enough that commits stop dominating, small
        // enough that the portal's own writers wait milliseconds, not seconds.
        500
    }

    async fn apply_batch(&self, ops: &[Op]) -> Vec<Result<(), ConnectorError>> {
        let n = ops.len();
        let ops = ops.to_vec();
        let path = self.path.clone();
        match self
            .with(move |conn, sql| apply_in_transaction(conn, sql, &path, &ops))
            .await
        {
            Ok(results) => results,
            // The transaction did not commit: none of its changes happened.
            Err(e) => vec![Err(e); n],
        }
    }
}

/// The users table by identity, read once per batch: each identity's rows (emails that
/// differ only in case or normalisation are one person, as in a read), first row first,
/// with whether latchkey manages it.
struct UserIndex {
    rows: FxHashMap<String, Vec<(rusqlite::types::Value, bool)>>,
}

impl UserIndex {
    fn load(tx: &Connection, sql: &Statements) -> rusqlite::Result<UserIndex> {
        let mut rows: FxHashMap<String, Vec<(rusqlite::types::Value, bool)>> = FxHashMap::default();
        let mut stmt = tx.prepare_cached(&sql.user_ids)?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            let identity = super::identity(row.get_ref(1)?.as_str()?);
            let managed = row.get_ref(2)?.as_str_or_null()? == Some(MANAGED_MARKER);
            rows.entry(identity)
                .or_default()
                .push((row.get::<_, rusqlite::types::Value>(0)?, managed));
        }
        Ok(UserIndex { rows })
    }

    /// The ids of the identity's rows latchkey manages.
    fn managed(&self, identity: &str) -> Vec<rusqlite::types::Value> {
        self.rows
            .get(identity)
            .into_iter()
            .flatten()
            .filter(|(_, m)| *m)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// What an op did to the users table, applied to the index once its savepoint holds.
enum IndexChange {
    None,
    Inserted(String, Vec<rusqlite::types::Value>),
    Deleted(String),
    /// Rows were marked (adoption, rare): the index is read again.
    Reload,
}

/// Applies `ops` in one immediate transaction, each in a savepoint of its own: a failed
/// op is rolled back alone and the others commit together.
fn apply_in_transaction(
    conn: &mut Connection,
    sql: &Statements,
    path: &std::path::Path,
    ops: &[Op],
) -> rusqlite::Result<Vec<Result<(), ConnectorError>>> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut users = UserIndex::load(&tx, sql)?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let sp = tx.savepoint()?;
        match apply_one(&sp, sql, &users, op) {
            Ok(Ok(change)) => {
                sp.commit()?;
                match change {
                    IndexChange::None => {}
                    IndexChange::Inserted(identity, ids) => {
                        users
                            .rows
                            .entry(identity)
                            .or_default()
                            .extend(ids.into_iter().map(|id| (id, true)));
                    }
                    IndexChange::Deleted(identity) => {
                        if let Some(rows) = users.rows.get_mut(&identity) {
                            rows.retain(|(_, managed)| !managed);
                        }
                    }
                    IndexChange::Reload => users = UserIndex::load(&tx, sql)?,
                }
                out.push(Ok(()));
            }
            // Dropping the savepoint rolls the op back.
            Ok(Err(message)) => out.push(Err(ConnectorError::permanent(message))),
            Err(e) => out.push(Err(sqlite_error(path, e))),
        }
    }
    tx.commit()?;
    Ok(out)
}

/// One op inside its savepoint: `Ok(Err(..))` is a refusal (nothing to roll back but
/// the op), `Err` a database error.
fn apply_one(
    tx: &Connection,
    sql: &Statements,
    users: &UserIndex,
    op: &Op,
) -> rusqlite::Result<Result<IndexChange, String>> {
    let id = op.identity();
    let rows = users.rows.get(id).map(Vec::as_slice).unwrap_or_default();
    // As a lookup of one row would: the first row of the identity decides.
    let existing = rows.first();
    let managed = matches!(existing, Some((_, true)));
    let each = |statement: &str, second: Option<&dyn rusqlite::ToSql>| {
        let mut stmt = tx.prepare_cached(statement)?;
        for row in users.managed(id) {
            match second {
                Some(v) => stmt.execute(params![row, v])?,
                None => stmt.execute(params![row])?,
            };
        }
        Ok::<_, rusqlite::Error>(())
    };
    let done = Ok(IndexChange::None);
    Ok(match op {
        Op::SetExpiry { .. } => Err(ConnectorError::no_native_expiry("sql").message),
        Op::AdoptAccount { .. } if managed => done,
        // Only an unmarked row is taken over; another tool's marker is refused.
        Op::AdoptAccount { .. } => match tx
            .prepare_cached(&q(&sql.adopt_user))?
            .execute(params![id])?
        {
            0 => {
                let marker: Option<Option<String>> = tx
                    .query_row(&q(&sql.find_user), params![id], |r| r.get(0))
                    .optional()?;
                Err(not_adoptable(id, marker))
            }
            _ => Ok(IndexChange::Reload),
        },
        Op::CreateAccount { display_name, .. } => match existing {
            None => {
                tx.prepare_cached(&q(&sql.insert_user))?
                    .execute(params![id, display_name])?;
                let mut stmt = tx.prepare_cached(&q(&sql.ids_of_email))?;
                let ids = stmt
                    .query_map(params![id], |r| r.get::<_, rusqlite::types::Value>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(IndexChange::Inserted(id.to_string(), ids))
            }
            Some(_) if managed => {
                each(&q(&sql.set_active_id), Some(&true))?;
                done
            }
            Some(_) => Err(format!(
                "an account for {id} exists and is not managed by latchkey; it is left alone"
            )),
        },
        _ if !managed => match op {
            // Already gone is the goal of these.
            Op::RemoveEntitlement { .. } | Op::DisableAccount { .. } | Op::DeleteAccount { .. }
                if existing.is_none() =>
            {
                done
            }
            _ => Err(format!("no account managed by latchkey for {id}")),
        },
        Op::EnableAccount { .. } => {
            each(&q(&sql.set_active_id), Some(&true))?;
            done
        }
        Op::DisableAccount { .. } => {
            each(&q(&sql.set_active_id), Some(&false))?;
            done
        }
        Op::AddEntitlement { entitlement, .. } => {
            each(&q(&sql.add_role_id), Some(entitlement))?;
            done
        }
        Op::RemoveEntitlement { entitlement, .. } => {
            each(&q(&sql.remove_role_id), Some(entitlement))?;
            done
        }
        Op::DeleteAccount { .. } => {
            each(&q(&sql.delete_roles_id), None)?;
            each(&q(&sql.delete_user_id), None)?;
            Ok(IndexChange::Deleted(id.to_string()))
        }
    })
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
        // Managed and unmanaged accounts alike, told apart by the marker.
        let mut accounts: BTreeMap<String, (bool, Account)> = BTreeMap::new();
        for row in users {
            let identity = super::identity(&row.get::<_, String>(0));
            let marker: Option<String> = row.get(3);
            accounts.insert(
                identity.clone(),
                (
                    marker.as_deref() == Some(MANAGED_MARKER),
                    Account {
                        identity,
                        display_name: row.get(1),
                        active: row.get(2),
                        entitlements: super::EntitlementSet::new(),
                        valid_until: None,
                    },
                ),
            );
        }
        for row in roles {
            let identity = super::identity(&row.get::<_, String>(0));
            if let Some((_, a)) = accounts.get_mut(&identity) {
                a.entitlements.insert(row.get(1));
            }
        }
        let (managed, unmanaged): (BTreeMap<_, _>, BTreeMap<_, _>) =
            accounts.into_iter().partition(|(_, (m, _))| *m);
        Ok(Snapshot {
            managed: managed.into_values().map(|(_, a)| a).collect(),
            unmanaged: unmanaged.into_iter().map(|(k, (_, a))| (k, a)).collect(),
            completeness: Completeness::Complete,
            foreign_grants: Vec::new(),
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
            Op::AdoptAccount { .. } if managed => return Ok(()),
            Op::AdoptAccount { .. } => match tx.execute(&sql.adopt_user, &[&id]).await {
                Ok(0) => return Err(ConnectorError::permanent(not_adoptable(&id, existing))),
                other => other,
            },
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
                let ents = a.entitlements.iter().map(str::to_string).collect();
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
        // Unmanaged accounts come with what they hold (for import and adoption).
        let admin = &snap.unmanaged["admin@x.example"];
        assert_eq!(snap.unmanaged.len(), 1);
        assert_eq!(admin.entitlements.iter().collect::<Vec<_>>(), ["superuser"]);
        assert_eq!(admin.display_name.as_deref(), Some("Admin"));
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
