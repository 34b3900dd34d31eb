//! `postgres`: staging database access as PostgreSQL roles.
//!
//! - A person is a LOGIN role named by their lowercase email (always a quoted identifier),
//!   marked as latchkey's by `COMMENT ON ROLE "<email>" IS 'latchkey'`. Roles with an `@`
//!   in their name but no marker are reported as out of scope; roles without `@`
//!   (applications, the DBA) are not people and are ignored.
//! - An entitlement is membership in a NOLOGIN group role of the same name. Group roles
//!   carry the privileges and are created by the DBA, never by latchkey.
//! - Disable is `ALTER ROLE ... NOLOGIN`; delete is `DROP ROLE`.
//! - **Native expiry** (`native_expiry: true`): the earliest `expires` of the person's
//!   grants on this system is pushed down as `ALTER ROLE ... VALID UNTIL '<RFC 3339>'`
//!   (`'infinity'` when no grant expires), a second lock besides latchkey revoking the
//!   membership: if the controller is down when a grant expires, PostgreSQL still refuses
//!   the login. It fails closed: the whole login is locked at the earliest expiry, also
//!   for grants that last longer, until the next run moves it on. `VALID UNTIL` only
//!   stops *password* authentication; cert, LDAP, GSS/SSO (and trust) logins ignore it,
//!   which is why latchkey's own revocation stays the primary lock. A login with no
//!   wanted grants keeps its last `VALID UNTIL` (not reopened for nothing to do).
//! - New logins get **no password** (`PASSWORD NULL`): latchkey never creates, stores or
//!   logs one. The person signs in through the agency's SSO/certificate auth (pg_hba
//!   `cert`/`ldap`/`gss`), or a DBA sets a password out of band.
//! - PostgreSQL 15: a CREATEROLE role may grant any non-superuser role. PostgreSQL 16+:
//!   it needs `ADMIN OPTION` on each group role (`GRANT "<group>" TO latchkey WITH ADMIN
//!   OPTION`), and REVOKE removes only grants made by latchkey's role.
//! - Memberships are read with their grantor (`pg_auth_members.grantor`): only those
//!   latchkey's role granted are its entitlements. The rest are `foreign_grants`: a plan
//!   reports them out of scope and never revokes them (on 16+ such a REVOKE would end in
//!   a WARNING with the membership still there, planned again forever under `prune`).
//!
//! `connection` ([`crate::model::connection::PostgresConnection`]): `url`
//! (`postgresql://latchkey@db.staging:5432/postgres?sslmode=verify-full&sslrootcert=ca.pem`,
//! without a password; libpq's TLS parameters, see [`super::pg_session`]),
//! `maxConcurrency` (4), `timeout` (10s). `credentials`: the password of the `url` user.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::pg_changes::{self, Settled, Step, settle};
pub use super::pg_session::PgTarget;
use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, ForeignGrant, MANAGED_MARKER,
    Op, Snapshot, SystemContext,
};
use crate::model::connection::PostgresConnection;

/// Classifies a driver error; never includes connection parameters.
pub fn pg_error(what: &str, e: &tokio_postgres::Error) -> ConnectorError {
    if let Some(db) = e.as_db_error() {
        let text = format!("PostgreSQL {what}: {} ({})", db.message(), db.code().code());
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            ConnectorError::config(format!("{text}; check the System's credentials"))
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            ConnectorError::config(format!(
                "{text}; latchkey's role needs CREATEROLE (and ADMIN OPTION on group roles on PostgreSQL 16+)"
            ))
        } else if code.code().starts_with("08")
            || code.code().starts_with("57P")
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            ConnectorError::transient(text)
        } else {
            ConnectorError::permanent(text)
        };
    }
    let mut text = e.to_string();
    if let Some(src) = std::error::Error::source(e) {
        text = format!("{text}: {src}");
    }
    ConnectorError::transient(format!("PostgreSQL {what}: {text}"))
}

/// A quoted identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `pg_roles.rolvaliduntil` as microseconds since the Unix epoch: NULL for no expiry
/// (NULL or `infinity`), `i64::MIN` for `-infinity` (never valid). Whole microseconds
/// are what PostgreSQL keeps, so the value round-trips exactly.
const VALID_UNTIL_MICROS: &str = "CASE \
     WHEN isfinite(rolvaliduntil) THEN trunc(extract(epoch FROM rolvaliduntil) * 1000000)::int8 \
     WHEN rolvaliduntil = '-infinity' THEN (-9223372036854775808)::int8 END";

/// An instant read back from PostgreSQL; those beyond jiff's range (years before -9999 or
/// after 9999) are clamped, which keeps their meaning (long expired, far future).
fn from_micros(us: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(us).unwrap_or(if us < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

/// The `VALID UNTIL` literal: RFC 3339 in UTC, or `'infinity'` to clear the expiry.
pub fn valid_until_literal(until: Option<jiff::Timestamp>) -> String {
    match until {
        Some(t) => format!("'{t}'"),
        None => "'infinity'".to_string(),
    }
}

/// Builds the `postgres` connector for a System.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let settings: PostgresConnection = ctx.settings()?;
    let target = PgTarget::from_url(
        &settings.url,
        ctx.secret.as_ref(),
        settings.timeout.map(|t| t.get()),
    )?;
    Ok(Box::new(PostgresConnector::new(
        target,
        settings.max_concurrency.unwrap_or(4),
    )))
}

/// The `postgres` connector.
pub struct PostgresConnector {
    target: PgTarget,
    max_concurrency: usize,
}

/// A role as latchkey needs it.
struct Role {
    managed: bool,
    can_login: bool,
}

/// A CREATE ROLE that collided with the same role created concurrently: `42710` when the
/// other transaction had committed first, `23505` (on `pg_authid_rolname_index`) when
/// both inserted at once.
pub(super) fn created_meanwhile(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| *c == SqlState::DUPLICATE_OBJECT || *c == SqlState::UNIQUE_VIOLATION)
}

impl PostgresConnector {
    /// A connector for a target (with its password set).
    pub fn new(target: PgTarget, max_concurrency: usize) -> PostgresConnector {
        PostgresConnector {
            target,
            max_concurrency: max_concurrency.max(1),
        }
    }

    async fn role(client: &Client, name: &str) -> Result<Option<Role>, ConnectorError> {
        let row = client
            .query_opt(
                "SELECT shobj_description(oid, 'pg_authid'), rolcanlogin FROM pg_roles WHERE rolname = $1",
                &[&name],
            )
            .await
            .map_err(|e| pg_error("role lookup", &e))?;
        Ok(row.map(|r| Role {
            managed: r.get::<_, Option<String>>(0).as_deref() == Some(MANAGED_MARKER),
            can_login: r.get(1),
        }))
    }

    /// After a CREATE ROLE lost a race: another writer (a second System on the cluster,
    /// a second latchkey) created the login between the look-up and the CREATE. The
    /// CREATE and its COMMENT were one implicit transaction, rolled back whole; a login
    /// that is latchkey's is then as good as created.
    async fn created_by_another(
        client: &Client,
        name: &str,
        lost: &tokio_postgres::Error,
    ) -> Result<(), ConnectorError> {
        match Self::role(client, name).await? {
            Some(r) if r.managed && r.can_login => Ok(()),
            Some(r) if r.managed => {
                let sql = format!("ALTER ROLE {} LOGIN", ident(name));
                Self::exec(client, "enable", &sql).await
            }
            Some(_) => Err(ConnectorError::permanent(format!(
                "a PostgreSQL role {name} was created meanwhile and is not managed by latchkey; it is left alone"
            ))),
            // Created and dropped again already: let the retry decide.
            None => Err(ConnectorError::transient(
                pg_error("create role", lost).message,
            )),
        }
    }

    async fn exec(client: &Client, what: &str, sql: &str) -> Result<(), ConnectorError> {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| pg_error(what, &e))
    }

    /// One identity's changes of a batch, in order, on the batch's session.
    async fn run_chain(
        client: &Client,
        chain: Vec<(usize, String, Step)>,
    ) -> Vec<(usize, Result<(), ConnectorError>)> {
        let mut out = Vec::with_capacity(chain.len());
        for (i, name, step) in chain {
            let result = match step {
                Step::Done(r) => r,
                Step::Send(st) => match settle(&st.kind, client.batch_execute(&st.sql).await) {
                    Settled::Done(r) => r,
                    Settled::CreatedMeanwhile(e) => {
                        Self::created_by_another(client, &name, &e).await
                    }
                },
            };
            out.push((i, result));
        }
        out
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: true,
            max_concurrency: self.max_concurrency,
        }
    }

    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        let session = self.target.connect().await?;
        let warnings = self.target.unencrypted_warning(session.encrypted);
        let client = session.client;
        // One snapshot for both queries: roles and memberships agree with each other.
        let tx_sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
        Self::exec(&client, "read", tx_sql).await?;
        let roles = client
            .query(
                &format!(
                    "SELECT rolname, rolcanlogin, shobj_description(oid, 'pg_authid'), {VALID_UNTIL_MICROS} \
                     FROM pg_roles WHERE position('@' in rolname) > 0 ORDER BY rolname"
                ),
                &[],
            )
            .await
            .map_err(|e| pg_error("read roles", &e))?;
        // With their grantor: only latchkey's own grants are latchkey's to revoke (a
        // REVOKE on 16+ removes only the current role's grant). A superuser's grants are
        // recorded as the bootstrap superuser's (oid 10) on 16+.
        let members = client
            .query(
                "SELECT m.rolname, g.rolname, \
                        am.grantor = me.oid OR (me.rolsuper AND am.grantor = 10), \
                        coalesce(gr.rolname, am.grantor::text) \
                 FROM pg_auth_members am \
                 JOIN pg_roles m ON m.oid = am.member JOIN pg_roles g ON g.oid = am.roleid \
                 LEFT JOIN pg_roles gr ON gr.oid = am.grantor \
                 CROSS JOIN (SELECT oid, rolsuper FROM pg_roles WHERE rolname = current_user) me \
                 WHERE position('@' in m.rolname) > 0",
                &[],
            )
            .await
            .map_err(|e| pg_error("read memberships", &e))?;
        Self::exec(&client, "read", "COMMIT").await?;
        // Every login-named role with its memberships; the marker tells managed apart.
        let mut accounts = BTreeMap::new();
        for r in roles {
            let name: String = r.get(0);
            let marker: Option<String> = r.get(2);
            let account = Account {
                identity: super::identity(&name),
                display_name: None,
                active: r.get(1),
                entitlements: super::EntitlementSet::new(),
                valid_until: r.get::<_, Option<i64>>(3).map(from_micros),
            };
            accounts.insert(name, (marker.as_deref() == Some(MANAGED_MARKER), account));
        }
        let mut foreign_grants = Vec::new();
        for m in members {
            let who: String = m.get(0);
            let Some((managed, a)) = accounts.get_mut(&who) else {
                continue;
            };
            // What an unmarked account holds is all its own (import reads it); on
            // latchkey's accounts only latchkey's grants are latchkey's.
            if !*managed || m.get::<_, Option<bool>>(2) == Some(true) {
                a.entitlements.insert(m.get(1));
            } else {
                foreign_grants.push(ForeignGrant {
                    identity: a.identity.clone(),
                    entitlement: m.get(1),
                    grantor: m.get(3),
                });
            }
        }
        foreign_grants.sort();
        let (managed, unmanaged): (Vec<_>, Vec<_>) = accounts.into_values().partition(|(m, _)| *m);
        Ok(Snapshot {
            managed: managed.into_iter().map(|(_, a)| a).collect(),
            unmanaged: unmanaged
                .into_iter()
                .map(|(_, a)| (a.identity.clone(), a))
                .collect(),
            completeness: Completeness::Complete,
            foreign_grants,
            warnings: warnings.into_iter().collect(),
        })
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        let mut out = self.apply_batch(std::slice::from_ref(op)).await;
        out.pop()
            .unwrap_or_else(|| Err(ConnectorError::permanent("no result for the change")))
    }

    fn batch_size(&self) -> usize {
        // One session and one role look-up per batch: a backend start costs more server
        // CPU (about 5 ms) than the statements of many changes.
        500
    }

    /// One session, one look-up of every role the batch names, then each identity's
    /// statements in order while the identities' chains run pipelined on the session
    /// (tokio-postgres sends a request before the answers to earlier ones arrive). Each
    /// statement is its own transaction, so a failure fails its change alone; a dropped
    /// session fails the rest transiently, and the engine retries them one by one.
    async fn apply_batch(&self, ops: &[Op]) -> Vec<Result<(), ConnectorError>> {
        let client = match self.target.connect().await {
            Ok(session) => session.client,
            Err(e) => return vec![Err(e); ops.len()],
        };
        let mut facts = match pg_changes::look_up(&client, &pg_changes::names(ops)).await {
            Ok(facts) => facts,
            Err(e) => return vec![Err(e); ops.len()],
        };
        let mut chains: BTreeMap<String, Vec<(usize, String, Step)>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let step = pg_changes::decide(op, &mut facts);
            let name = op.identity().to_lowercase();
            chains
                .entry(name.clone())
                .or_default()
                .push((i, name, step));
        }
        let done = futures::future::join_all(
            chains
                .into_values()
                .map(|chain| Self::run_chain(&client, chain)),
        )
        .await;
        super::in_plan_order(ops.len(), done.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("a@b.c"), "\"a@b.c\"");
        assert_eq!(ident("x\"; DROP ROLE y; --"), "\"x\"\"; DROP ROLE y; --\"");
    }

    #[test]
    fn valid_until_is_rfc3339_or_infinity() {
        let t: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(valid_until_literal(Some(t)), "'2026-12-01T00:00:00Z'");
        assert_eq!(valid_until_literal(None), "'infinity'");
    }

    #[test]
    fn instants_beyond_jiff_are_clamped() {
        let t: jiff::Timestamp = "2026-12-01T00:00:00.000001Z".parse().unwrap();
        assert_eq!(from_micros(t.as_microsecond()), t);
        assert_eq!(from_micros(i64::MIN), jiff::Timestamp::MIN);
        assert_eq!(from_micros(i64::MAX), jiff::Timestamp::MAX);
    }
}
