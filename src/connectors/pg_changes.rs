//! How the `postgres` connector decides each change of a batch: one look-up of every
//! role the batch names, then a decision per change against what it found, so a refusal
//! (a DBA's role, a privileged group) costs no round trip and a change that passes is one
//! statement. The statements then go out pipelined on one session (see
//! [`super::postgres`]), each its own transaction, so a failed one fails only its change.
//!
//! The look-up is the state at the start of the batch, updated as the batch's own
//! changes are decided (a login created earlier in the batch is then latchkey's). A DBA
//! who alters a role in the milliseconds between the look-up and the statement races
//! latchkey as they did when each change looked its role up first; the marker and the
//! privilege checks still hold for every role that existed when the batch began.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::postgres::{ident, pg_error, valid_until_literal};
use super::{ConnectorError, MANAGED_MARKER, Op};

/// What the batch's look-up found about one role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleFacts {
    /// The role's comment (`latchkey` marks latchkey's logins).
    pub comment: Option<String>,
    pub can_login: bool,
    pub superuser: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    /// The role latchkey itself connects as.
    pub is_self: bool,
}

impl RoleFacts {
    fn managed(&self) -> bool {
        self.comment.as_deref() == Some(MANAGED_MARKER)
    }

    /// The first privilege that makes the role no plain group role, if any.
    fn privilege(&self) -> Option<&'static str> {
        [
            (self.superuser, "it is a SUPERUSER"),
            (self.create_role, "it has CREATEROLE"),
            (self.create_db, "it has CREATEDB"),
            (self.replication, "it has REPLICATION"),
            (self.bypass_rls, "it has BYPASSRLS"),
        ]
        .into_iter()
        .find_map(|(set, why)| set.then_some(why))
    }
}

/// Role name → what the look-up found; a name absent here has no role.
pub type Facts = HashMap<String, RoleFacts>;

/// Every role a batch names: its logins and the group roles it grants or revokes.
pub fn names(ops: &[Op]) -> Vec<String> {
    let mut names: Vec<String> = ops
        .iter()
        .flat_map(|op| {
            let group = match op {
                Op::AddEntitlement { entitlement, .. }
                | Op::RemoveEntitlement { entitlement, .. } => Some(entitlement.clone()),
                _ => None,
            };
            std::iter::once(op.identity().to_lowercase()).chain(group)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// One query for the facts of every role in `names`.
pub async fn look_up(client: &Client, names: &[String]) -> Result<Facts, ConnectorError> {
    let rows = client
        .query(
            "SELECT rolname, shobj_description(oid, 'pg_authid'), rolcanlogin, rolsuper, \
             rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolname = current_user \
             FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| pg_error("role lookup", &e))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let facts = RoleFacts {
                comment: r.get(1),
                can_login: r.get(2),
                superuser: r.get(3),
                create_role: r.get(4),
                create_db: r.get(5),
                replication: r.get(6),
                bypass_rls: r.get(7),
                is_self: r.get(8),
            };
            (r.get(0), facts)
        })
        .collect())
}

/// What a change needs after its decision.
#[derive(Debug)]
pub enum Step {
    /// Decided without the server: refused, or nothing to do.
    Done(Result<(), ConnectorError>),
    /// One statement (a simple query, its own transaction) to send.
    Send(Statement),
}

/// A statement and what it does, to read its error by.
#[derive(Debug)]
pub struct Statement {
    pub kind: Kind,
    pub sql: String,
}

/// What a statement does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// CREATE ROLE with its COMMENT, in one implicit transaction.
    Create,
    Adopt,
    Enable,
    Disable,
    Grant(String),
    Revoke,
    SetExpiry,
    Drop,
}

impl Kind {
    fn what(&self) -> &'static str {
        match self {
            Kind::Create => "create role",
            Kind::Adopt => "adopt",
            Kind::Enable => "enable",
            Kind::Disable => "disable",
            Kind::Grant(_) => "grant",
            Kind::Revoke => "revoke",
            Kind::SetExpiry => "set expiry",
            Kind::Drop => "drop role",
        }
    }
}

fn permanent(message: String) -> Step {
    Step::Done(Err(ConnectorError::permanent(message)))
}

fn send(kind: Kind, sql: String) -> Step {
    Step::Send(Statement { kind, sql })
}

/// The login's state for a change that needs it to be latchkey's: `Ok(None)` when there
/// is no such role, an error when the role exists unmarked (a DBA's, left alone).
fn managed<'f>(facts: &'f Facts, name: &str) -> Result<Option<&'f RoleFacts>, Step> {
    match facts.get(name) {
        Some(f) if f.managed() => Ok(Some(f)),
        Some(_) => Err(permanent(format!(
            "the PostgreSQL role {name} is not managed by latchkey (no 'latchkey' role comment); it is left alone"
        ))),
        None => Ok(None),
    }
}

/// Refuses to grant what would widen access beyond a group role: a predefined `pg_*`
/// role (`pg_read_server_files`, `pg_execute_server_program`, …), a role that can log in
/// (another person's login), one with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or
/// BYPASSRLS, and latchkey's own role. A missing role is left to the GRANT, which names it.
fn grantable(facts: &Facts, entitlement: &str) -> Result<(), Step> {
    let refuse = |why: &str| {
        Err(permanent(format!(
            "refusing to grant {entitlement:?}: {why}; latchkey grants only NOLOGIN group roles without privileges of their own"
        )))
    };
    if entitlement.starts_with("pg_") {
        return refuse("it is a PostgreSQL predefined role");
    }
    let Some(f) = facts.get(entitlement) else {
        return Ok(());
    };
    if f.is_self {
        return refuse("it is latchkey's own role");
    }
    if f.can_login {
        return refuse("it can log in (a person's or a service's login role)");
    }
    match f.privilege() {
        Some(why) => refuse(why),
        None => Ok(()),
    }
}

/// Marks an existing login role as latchkey's (`adopt: true`). Only a role with no
/// comment at all is taken over (a comment is a DBA's note, and the marker would
/// overwrite it), and never one with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or
/// BYPASSRLS, nor latchkey's own: those stay a DBA's, whatever git declares.
fn adopt(facts: &Facts, name: &str) -> Step {
    let refuse = |why: String| {
        permanent(format!(
            "not adopting the PostgreSQL role {name}: {why}; it stays unmanaged"
        ))
    };
    let Some(f) = facts.get(name) else {
        return refuse("it does not exist".into());
    };
    match &f.comment {
        Some(m) if m == MANAGED_MARKER => return Step::Done(Ok(())),
        Some(comment) => {
            return refuse(format!(
                "it has the comment {comment:?} (latchkey adopts only roles without one)"
            ));
        }
        None => {}
    }
    if let Some(why) = f.privilege() {
        return refuse(why.into());
    }
    if f.is_self {
        return refuse("it is latchkey's own role".into());
    }
    send(
        Kind::Adopt,
        format!("COMMENT ON ROLE {} IS '{MANAGED_MARKER}'", ident(name)),
    )
}

/// Decides one change against `facts`, and records in `facts` what the change will make
/// true, for the batch's later changes.
pub fn decide(op: &Op, facts: &mut Facts) -> Step {
    let name = op.identity().to_lowercase();
    if name.len() > 63 {
        return permanent(format!(
            "{name} is longer than PostgreSQL's 63-byte role names"
        ));
    }
    let role = ident(&name);
    let latchkeys = RoleFacts {
        comment: Some(MANAGED_MARKER.to_string()),
        can_login: true,
        ..RoleFacts::default()
    };
    let step = match op {
        Op::AdoptAccount { .. } => adopt(facts, &name),
        Op::CreateAccount { .. } => match facts.get(&name) {
            Some(f) if f.managed() => send(Kind::Enable, format!("ALTER ROLE {role} LOGIN")),
            Some(_) => permanent(format!(
                "a PostgreSQL role {name} exists and is not managed by latchkey; it is left alone"
            )),
            // No password: see the connector's docs for how the person signs in. Two
            // statements in one simple query are one transaction: never a login
            // without its marker.
            None => send(
                Kind::Create,
                format!(
                    "CREATE ROLE {role} LOGIN PASSWORD NULL; COMMENT ON ROLE {role} IS '{MANAGED_MARKER}'"
                ),
            ),
        },
        Op::EnableAccount { .. } => match managed(facts, &name) {
            Err(step) => step,
            Ok(None) => permanent(format!("no PostgreSQL role {name} to enable")),
            Ok(Some(_)) => send(Kind::Enable, format!("ALTER ROLE {role} LOGIN")),
        },
        Op::DisableAccount { .. } => match managed(facts, &name) {
            Err(step) => step,
            Ok(None) => Step::Done(Ok(())),
            Ok(Some(_)) => send(Kind::Disable, format!("ALTER ROLE {role} NOLOGIN")),
        },
        Op::AddEntitlement { entitlement, .. } => match managed(facts, &name) {
            Err(step) => step,
            Ok(None) => permanent(format!(
                "no PostgreSQL role {name} managed by latchkey to grant {entitlement:?} to"
            )),
            Ok(Some(_)) => match grantable(facts, entitlement) {
                Err(step) => step,
                Ok(()) => send(
                    Kind::Grant(entitlement.clone()),
                    format!("GRANT {} TO {role}", ident(entitlement)),
                ),
            },
        },
        Op::RemoveEntitlement { entitlement, .. } => match managed(facts, &name) {
            Err(step) => step,
            Ok(None) => Step::Done(Ok(())),
            Ok(Some(_)) => send(
                Kind::Revoke,
                format!("REVOKE {} FROM {role}", ident(entitlement)),
            ),
        },
        Op::SetExpiry { until, .. } => match managed(facts, &name) {
            Err(step) => step,
            Ok(None) => permanent(format!(
                "no PostgreSQL role {name} managed by latchkey to set the expiry of"
            )),
            Ok(Some(_)) => send(
                Kind::SetExpiry,
                format!(
                    "ALTER ROLE {role} VALID UNTIL {}",
                    valid_until_literal(*until)
                ),
            ),
        },
        Op::DeleteAccount { .. } => match managed(facts, &name) {
            Err(step) => step,
            Ok(None) => Step::Done(Ok(())),
            Ok(Some(_)) => send(Kind::Drop, format!("DROP ROLE IF EXISTS {role}")),
        },
    };
    if let Step::Send(st) = &step {
        match st.kind {
            Kind::Create | Kind::Adopt | Kind::Enable => {
                let f = facts.entry(name).or_insert(latchkeys);
                f.comment = Some(MANAGED_MARKER.to_string());
                f.can_login = true;
            }
            Kind::Disable => {
                if let Some(f) = facts.get_mut(&name) {
                    f.can_login = false;
                }
            }
            Kind::Drop => {
                facts.remove(&name);
            }
            Kind::Grant(_) | Kind::Revoke | Kind::SetExpiry => {}
        }
    }
    step
}

/// A statement's result, read by what it does.
pub enum Settled {
    Done(Result<(), ConnectorError>),
    /// A CREATE ROLE lost a race with another writer creating the same login.
    CreatedMeanwhile(tokio_postgres::Error),
}

/// Reads a statement's result: the errors a DBA must act on name what to do, and a
/// revoke of a group role that no longer exists is done (so is its membership).
pub fn settle(kind: &Kind, result: Result<(), tokio_postgres::Error>) -> Settled {
    let e = match result {
        Ok(()) => return Settled::Done(Ok(())),
        Err(e) => e,
    };
    if *kind == Kind::Create && super::postgres::created_meanwhile(&e) {
        return Settled::CreatedMeanwhile(e);
    }
    let err = pg_error(kind.what(), &e);
    Settled::Done(match kind {
        Kind::Grant(entitlement) if err.message.contains("42704") => {
            Err(ConnectorError::permanent(format!(
                "{}; the DBA creates group role {entitlement:?} (NOLOGIN, with its privileges)",
                err.message
            )))
        }
        Kind::Revoke if err.message.contains("42704") => Ok(()),
        Kind::Drop if err.message.contains("2BP01") => Err(ConnectorError::permanent(format!(
            "{}; the role owns objects: a DBA must REASSIGN OWNED / DROP OWNED first",
            err.message
        ))),
        _ => Err(err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(who: &str, ent: &str) -> Op {
        Op::AddEntitlement {
            identity: who.into(),
            entitlement: ent.into(),
        }
    }

    fn sql(step: &Step) -> &str {
        match step {
            Step::Send(st) => &st.sql,
            Step::Done(r) => panic!("decided without the server: {r:?}"),
        }
    }

    fn refusal(step: &Step) -> String {
        match step {
            Step::Done(Err(e)) => e.message.clone(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_login_created_earlier_in_the_batch_is_latchkeys_for_its_later_changes() {
        let mut facts = Facts::new();
        let create = Op::CreateAccount {
            identity: "Ann@X.example".into(),
            display_name: None,
        };
        assert!(sql(&decide(&create, &mut facts)).starts_with("CREATE ROLE \"ann@x.example\""));
        let expiry = Op::SetExpiry {
            identity: "ann@x.example".into(),
            until: None,
        };
        assert!(sql(&decide(&expiry, &mut facts)).contains("VALID UNTIL 'infinity'"));
        assert!(sql(&decide(&add("ann@x.example", "readers"), &mut facts)).starts_with("GRANT"));
        let delete = Op::DeleteAccount {
            identity: "ann@x.example".into(),
        };
        assert!(sql(&decide(&delete, &mut facts)).starts_with("DROP ROLE"));
        // Dropped earlier in the batch: nothing left to revoke from.
        let revoke = Op::RemoveEntitlement {
            identity: "ann@x.example".into(),
            entitlement: "readers".into(),
        };
        assert!(matches!(decide(&revoke, &mut facts), Step::Done(Ok(()))));
    }

    #[test]
    fn a_dbas_role_and_privileged_groups_are_refused_without_a_round_trip() {
        let mut facts = Facts::new();
        let marked = RoleFacts {
            comment: Some(MANAGED_MARKER.into()),
            can_login: true,
            ..RoleFacts::default()
        };
        facts.insert("ann@x.example".into(), marked);
        facts.insert(
            "dba@x.example".into(),
            RoleFacts {
                can_login: true,
                ..RoleFacts::default()
            },
        );
        facts.insert(
            "admins".into(),
            RoleFacts {
                create_role: true,
                ..RoleFacts::default()
            },
        );
        facts.insert(
            "latchkey".into(),
            RoleFacts {
                is_self: true,
                can_login: true,
                ..RoleFacts::default()
            },
        );
        assert!(
            refusal(&decide(&add("dba@x.example", "readers"), &mut facts))
                .contains("not managed by latchkey")
        );
        assert!(
            refusal(&decide(&add("ann@x.example", "admins"), &mut facts)).contains("CREATEROLE")
        );
        assert!(
            refusal(&decide(&add("ann@x.example", "latchkey"), &mut facts))
                .contains("latchkey's own role")
        );
        assert!(
            refusal(&decide(
                &add("ann@x.example", "pg_read_server_files"),
                &mut facts
            ))
            .contains("predefined")
        );
        assert!(
            refusal(&decide(&add("ann@x.example", "dba@x.example"), &mut facts))
                .contains("can log in")
        );
        // A group the DBA has not created yet is left to the GRANT, which names it.
        assert!(sql(&decide(&add("ann@x.example", "readers"), &mut facts)).starts_with("GRANT"));
    }

    #[test]
    fn the_batch_names_each_login_and_group_once() {
        let ops = [
            add("Ann@x.example", "readers"),
            add("ann@x.example", "writers"),
        ];
        assert_eq!(names(&ops), ["ann@x.example", "readers", "writers"]);
    }
}
