//! desired × actual → ordered changes, each with its reason. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{RoundMode, Timestamp, TimestampRound, Unit};

use super::change::{Change, OutOfScope, Plan, Reason, SystemStatus};
use super::desired::{Desired, EntKey};
use crate::connectors::{Account, Completeness, Op, Snapshot};
use crate::load::Catalog;
use crate::model::OffboardMode;

/// What the diff needs.
pub struct Inputs<'a> {
    pub catalog: &'a Catalog,
    pub desired: &'a Desired,
    /// Per system: what a read returned, or why it failed.
    pub actual: &'a BTreeMap<String, Result<Snapshot, String>>,
    /// Desired state of the last applied revision: tells "removed from git" from drift.
    pub previous: Option<&'a Desired>,
    pub revision: String,
    /// Systems whose connector enforces expiry itself (`Capabilities::native_expiry`):
    /// only these get `SetExpiry` changes.
    pub native_expiry: BTreeSet<String>,
    /// Changes whose newest ledger record is a failure, by (system, op).
    pub pending: &'a Pending,
}

/// A change that failed and has not succeeded since: its original reason and last error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingFailure {
    pub reason: Reason,
    pub error: String,
}

/// Pending failures by (system, op).
pub type Pending = BTreeMap<(String, Op), PendingFailure>;

/// Whole seconds, rounded down: systems keep coarser instants than jiff (PostgreSQL keeps
/// microseconds), and an expiry read back must equal the one written or the plan would
/// never settle. Down, so the system's lock never closes later than the grant.
fn whole_second(t: Timestamp) -> Timestamp {
    t.round(
        TimestampRound::new()
            .smallest(Unit::Second)
            .mode(RoundMode::Floor),
    )
    .unwrap_or(t)
}

/// Computes the plan (before guards).
pub fn diff(input: &Inputs<'_>) -> Plan {
    let now = input.desired.now.unwrap_or(Timestamp::UNIX_EPOCH);
    // Asked per account, not collected: the previous revision declares as much as this one.
    let prev_declares = |key: &EntKey| input.previous.is_some_and(|p| p.declares(key));
    let prev_identity = |identity: &str| {
        input
            .previous
            .is_some_and(|p| p.declares_identity(identity))
    };
    let mut plan = Plan {
        revision: input.revision.clone(),
        now,
        changes: Vec::new(),
        drift: Vec::new(),
        out_of_scope: Vec::new(),
        systems: Vec::new(),
        holds: Vec::new(),
        refusals: Vec::new(),
        override_reason: None,
        next_change: input.desired.next_change,
    };
    let empty = BTreeMap::new();
    for (name, system) in &input.catalog.systems {
        let snapshot = match input.actual.get(name) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                plan.systems.push(SystemStatus {
                    system: name.clone(),
                    completeness: None,
                    managed_accounts: 0,
                    error: Some(e.clone()),
                    warnings: Vec::new(),
                });
                continue;
            }
            None => continue,
        };
        plan.systems.push(SystemStatus {
            system: name.clone(),
            completeness: Some(snapshot.completeness.clone()),
            managed_accounts: snapshot.managed.len(),
            error: None,
            warnings: snapshot.warnings.clone(),
        });
        let partial = matches!(snapshot.completeness, Completeness::Partial(_));
        let native_expiry = input.native_expiry.contains(name);
        let wanted = input.desired.systems.get(name).unwrap_or(&empty);
        // `adopt: true`: an unmarked account git declares here is taken over, then diffed
        // like a managed one (what git declares is added, the rest is undeclared).
        let adopting: BTreeSet<&str> = if system.spec.adopt {
            adoptable(snapshot, wanted, input.desired)
        } else {
            BTreeSet::new()
        };
        let actual = by_identity_with(
            &snapshot.managed,
            adopting.iter().filter_map(|id| snapshot.unmanaged.get(*id)),
        );
        let client_of = |identity: &str, grant_client: Option<&std::sync::Arc<str>>| {
            grant_client
                .map(|c| c.to_string())
                .or_else(|| system.spec.client.clone())
                .or_else(|| input.desired.client_of(identity).cloned())
                // Someone removed from git: their client as the last applied revision knew it.
                .or_else(|| input.previous.and_then(|p| p.client_of(identity).cloned()))
        };
        let push = |plan: &mut Plan, mut change: Change, prunable: bool| {
            // A change that failed keeps its reason and is planned again until it
            // succeeds, whatever `prune` says (derived from the ledger's failed records).
            if let Some(p) = input.pending.get(&(name.clone(), change.op.clone())) {
                if change.reason == Reason::Undeclared {
                    change.reason = p.reason;
                }
                change.retry = Some(p.error.clone());
            }
            if change.reason == Reason::Undeclared && !(prunable && system.spec.prune && !partial) {
                plan.drift.push(change);
            } else {
                plan.changes.push(change);
            }
        };

        // Held through someone else's grant: satisfies git, and is never latchkey's to
        // revoke (PostgreSQL 16+ grantors; docs/connectors.md).
        let foreign: BTreeSet<(&str, &str)> = snapshot
            .foreign_grants
            .iter()
            .map(|g| (g.identity.as_str(), g.entitlement.as_str()))
            .collect();
        for g in &snapshot.foreign_grants {
            let wanted_here = wanted
                .get(g.identity.as_str())
                .is_some_and(|w| w.entitlements.contains_key(&g.entitlement));
            if !wanted_here {
                plan.out_of_scope.push(OutOfScope {
                    system: name.clone(),
                    identity: g.identity.clone(),
                    note: format!(
                        "holds {:?} through a grant by {:?}, not by latchkey: reported, never revoked (revoke it as {:?})",
                        g.entitlement, g.grantor, g.grantor
                    ),
                });
            }
        }
        let mut have_of = Ascending::new(actual.iter().map(|a| (a.identity.as_str(), *a)));
        for (identity, want) in wanted {
            // The second lock (docs/connectors.md): the earliest expiry of what the person holds here.
            let expiry = native_expiry
                .then(|| want.earliest_expiry().map(whole_second))
                .flatten();
            let set_expiry = |have: Option<Timestamp>| {
                (native_expiry && expiry != have).then(|| Change {
                    system: name.clone(),
                    client: client_of(identity, None),
                    op: Op::SetExpiry {
                        identity: identity.to_string(),
                        until: expiry,
                    },
                    reason: Reason::Declared,
                    grant: None,
                    retry: None,
                })
            };
            let started = |ent: &str| {
                want.entitlements
                    .get(ent)
                    .is_some_and(|s| s.iter().all(|g| g.starts.is_some()))
            };
            match have_of.get(identity) {
                None if snapshot.unmanaged.contains_key(&**identity) => plan.out_of_scope.push(OutOfScope {
                    system: name.clone(),
                    identity: identity.to_string(),
                    note: "an account exists that latchkey does not manage; git's grants for it are not applied (adopt: true on the System takes it over)".into(),
                }),
                None => {
                    let first = want.entitlements.keys().next().map(|e| started(e)).unwrap_or(false);
                    let source = want.entitlements.values().next().and_then(|s| s.first()).cloned();
                    push(&mut plan, Change {
                        system: name.clone(),
                        client: client_of(identity, source.as_ref().map(|s| &s.client)),
                        op: Op::CreateAccount { identity: identity.to_string(), display_name: want.display_name().map(str::to_string) },
                        reason: if first { Reason::Started } else { Reason::Declared },
                        grant: None,
                        retry: None,
                    }, false);
                    // A new account starts without an expiry.
                    if let Some(change) = set_expiry(None) {
                        push(&mut plan, change, false);
                    }
                    for (ent, sources) in &want.entitlements {
                        push(&mut plan, Change {
                            system: name.clone(),
                            client: client_of(identity, sources.first().map(|s| &s.client)),
                            op: Op::AddEntitlement { identity: identity.to_string(), entitlement: ent.clone() },
                            reason: if started(ent) { Reason::Started } else { Reason::Declared },
                            grant: sources.first().cloned(),
                            retry: None,
                        }, false);
                    }
                }
                Some(have) => {
                    if adopting.contains(&**identity) {
                        push(&mut plan, Change {
                            system: name.clone(),
                            client: client_of(identity, want.entitlements.values().next().and_then(|s| s.first()).map(|s| &s.client)),
                            op: Op::AdoptAccount { identity: identity.to_string() },
                            reason: Reason::Declared,
                            grant: None,
                            retry: None,
                        }, false);
                    }
                    if let Some(change) = set_expiry(have.valid_until) {
                        push(&mut plan, change, false);
                    }
                    if !have.active {
                        push(&mut plan, Change {
                            system: name.clone(),
                            client: client_of(identity, None),
                            op: Op::EnableAccount { identity: identity.to_string() },
                            reason: Reason::Declared,
                            grant: None,
                            retry: None,
                        }, false);
                    }
                    for (ent, sources) in &want.entitlements {
                        if !have.entitlements.contains(ent)
                            && !foreign.contains(&(&**identity, ent.as_str()))
                        {
                            push(&mut plan, Change {
                                system: name.clone(),
                                client: client_of(identity, sources.first().map(|s| &s.client)),
                                op: Op::AddEntitlement { identity: identity.to_string(), entitlement: ent.clone() },
                                reason: if started(ent) { Reason::Started } else { Reason::Declared },
                                grant: sources.first().cloned(),
                                retry: None,
                            }, false);
                        }
                    }
                }
            }
        }

        let (mut want_of, mut member_of) = (
            Ascending::new(wanted.iter().map(|(k, v)| (&**k, v))),
            Ascending::new(input.desired.members.iter().map(|(k, v)| (k.as_str(), v))),
        );
        for have in &actual {
            let identity = have.identity.as_str();
            let want = want_of.get(identity);
            let member = member_of.get(identity);
            let offboarded = member.is_some_and(|m| m.spec.offboarded)
                || (member.is_none() && prev_identity(identity));
            let undeclared_person = member.is_none() && !offboarded;
            for ent in &have.entitlements {
                if want.is_some_and(|w| w.entitlements.contains_key(ent)) {
                    continue;
                }
                let key = (name.clone(), identity.to_string(), ent.to_string());
                let expired = input.desired.expired.get(&key);
                let reason = if offboarded {
                    Reason::Offboarded
                } else if undeclared_person {
                    Reason::Undeclared
                } else if let Some(grant) = expired {
                    grant.end_reason()
                } else if prev_declares(&key) {
                    Reason::Declared
                } else {
                    Reason::Undeclared
                };
                push(
                    &mut plan,
                    Change {
                        system: name.clone(),
                        client: client_of(identity, expired.map(|s| &s.client)),
                        op: Op::RemoveEntitlement {
                            identity: identity.to_string(),
                            entitlement: ent.to_string(),
                        },
                        reason,
                        grant: expired.cloned(),
                        retry: None,
                    },
                    true,
                );
            }
            if offboarded || undeclared_person {
                let op = match system.spec.offboard {
                    OffboardMode::Delete => Some(Op::DeleteAccount {
                        identity: identity.to_string(),
                    }),
                    OffboardMode::Disable if have.active => Some(Op::DisableAccount {
                        identity: identity.to_string(),
                    }),
                    OffboardMode::Disable => None,
                };
                if let Some(op) = op {
                    let reason = if offboarded {
                        Reason::Offboarded
                    } else {
                        Reason::Undeclared
                    };
                    push(
                        &mut plan,
                        Change {
                            system: name.clone(),
                            client: client_of(identity, None),
                            op,
                            reason,
                            grant: None,
                            retry: None,
                        },
                        true,
                    );
                }
            }
        }
    }
    let key = |c: &Change| {
        (
            c.system.clone(),
            c.op.identity().to_string(),
            c.phase(),
            c.entitlement().map(str::to_string),
        )
    };
    plan.changes.sort_by_key(key);
    plan.drift.sort_by_key(key);
    plan
}

/// The unmarked accounts a System with `adopt: true` takes over: those whose identity
/// git declares on it, for a Member who is not offboarded. Never a person git only
/// mentions elsewhere: adoption follows what git declares on this system.
fn adoptable<'a>(
    snapshot: &'a Snapshot,
    wanted: &BTreeMap<std::sync::Arc<str>, std::sync::Arc<super::desired::WantedAccount>>,
    desired: &Desired,
) -> BTreeSet<&'a str> {
    snapshot
        .unmanaged
        .keys()
        .filter(|id| wanted.contains_key(id.as_str()))
        .filter(|id| desired.members.get(*id).is_some_and(|m| !m.spec.offboarded))
        .map(String::as_str)
        .collect()
}

/// Accounts in identity order, one per identity (the last read wins, as in a map),
/// with the accounts being adopted (never also managed: a connector lists an account in
/// one of the two).
/// Connectors usually return them sorted already; then this only checks.
fn by_identity_with<'a>(
    accounts: &'a [Account],
    adopted: impl Iterator<Item = &'a Account>,
) -> Vec<&'a Account> {
    let mut sorted: Vec<&Account> = accounts.iter().chain(adopted).collect();
    if !sorted.is_sorted_by(|a, b| a.identity < b.identity) {
        // Stable, then reversed: the last of equal identities comes first and stays.
        sorted.sort_by(|a, b| a.identity.cmp(&b.identity));
        sorted.reverse();
        sorted.dedup_by(|a, b| a.identity == b.identity);
        sorted.reverse();
    }
    sorted
}

/// Looks up keys given in ascending order among entries sorted by key by walking them
/// once: the diff visits every account in identity order, so this replaces a tree
/// search (a dozen string comparisons) per account with one or two.
struct Ascending<'a, V, I: Iterator<Item = (&'a str, V)>> {
    iter: std::iter::Peekable<I>,
}

impl<'a, V, I: Iterator<Item = (&'a str, V)>> Ascending<'a, V, I> {
    fn new(entries: I) -> Self {
        Ascending {
            iter: entries.peekable(),
        }
    }

    /// The value at `key`; keys must come in ascending order from call to call.
    fn get(&mut self, key: &str) -> Option<V> {
        while self.iter.next_if(|(k, _)| *k < key).is_some() {}
        self.iter.next_if(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::connectors::Account;

    /// Erin holds viewer on the portal.
    fn repo() -> String {
        format!("{}    - role: viewer\n", crate::load::TEST_REPO)
    }

    fn catalog() -> Catalog {
        catalog_of(&repo())
    }

    fn catalog_of(text: &str) -> Catalog {
        let loaded = crate::load::load_text(
            "latchkey.yaml",
            text,
            "2026-11-20T12:00:00Z".parse().unwrap(),
        );
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        loaded.catalog
    }

    fn account(id: &str, ents: &[&str]) -> Account {
        Account {
            identity: id.into(),
            display_name: None,
            active: true,
            entitlements: ents.iter().map(|e| e.to_string()).collect(),
            valid_until: None,
        }
    }

    fn plan_with(completeness: Completeness) -> Plan {
        let cat = catalog();
        let desired = Desired::at(&cat, "2026-11-21T00:00:00Z".parse().unwrap());
        let snapshot = Snapshot {
            managed: vec![
                account("erin@acme.example", &["viewer", "admin"]),
                account("ghost@acme.example", &["viewer"]),
            ],
            unmanaged: BTreeMap::new(),
            completeness,
            foreign_grants: Vec::new(),
            warnings: Vec::new(),
        };
        plan_of(&cat, &desired, snapshot)
    }

    /// The plan for one `portal` snapshot.
    fn plan_of(cat: &Catalog, desired: &Desired, snapshot: Snapshot) -> Plan {
        let actual = BTreeMap::from([("portal".to_string(), Ok(snapshot))]);
        diff(&Inputs {
            pending: &Pending::new(),
            catalog: cat,
            desired,
            actual: &actual,
            previous: None,
            revision: "r".into(),
            native_expiry: BTreeSet::new(),
        })
    }

    /// Issue 17 (PostgreSQL 16+): a membership granted by another role is not latchkey's.
    /// Under `prune: true` it is reported out of scope and never revoked (a REVOKE would
    /// leave it in place and be planned again forever); wanted, it is not granted again.
    #[test]
    fn foreign_grants_are_reported_and_never_revoked_or_regranted() {
        let cat = catalog();
        let desired = Desired::at(&cat, "2026-11-21T00:00:00Z".parse().unwrap());
        let foreign = |ent: &str| crate::connectors::ForeignGrant {
            identity: "erin@acme.example".into(),
            entitlement: ent.into(),
            grantor: "dba".into(),
        };
        let snapshot = Snapshot {
            managed: vec![account("erin@acme.example", &[])],
            unmanaged: Default::default(),
            completeness: Completeness::Complete,
            foreign_grants: vec![foreign("admin"), foreign("viewer")],
            warnings: Vec::new(),
        };
        let plan = plan_of(&cat, &desired, snapshot);
        assert!(plan.changes.is_empty(), "{:#?}", plan.changes);
        assert!(plan.drift.is_empty(), "{:#?}", plan.drift);
        let notes: Vec<&str> = plan.out_of_scope.iter().map(|o| o.note.as_str()).collect();
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert!(
            notes[0].starts_with("holds \"admin\" through a grant by \"dba\""),
            "{notes:#?}"
        );
    }

    #[test]
    fn a_read_warning_reaches_the_plan_and_its_renderings() {
        let cat = catalog();
        let desired = Desired::at(&cat, "2026-11-21T00:00:00Z".parse().unwrap());
        let warning = "the PostgreSQL session to db.staging:5432 is not encrypted";
        let snapshot = Snapshot {
            warnings: vec![warning.to_string()],
            ..Snapshot::default()
        };
        let actual = BTreeMap::from([("portal".to_string(), Ok(snapshot))]);
        let plan = diff(&Inputs {
            pending: &Pending::new(),
            catalog: &cat,
            desired: &desired,
            actual: &actual,
            previous: None,
            revision: "r".into(),
            native_expiry: BTreeSet::new(),
        });
        assert_eq!(plan.systems[0].warnings, [warning]);
        let text = crate::plan::render::text(&plan, false);
        assert!(
            text.contains(&format!("warning: system portal: {warning}")),
            "{text}"
        );
        let md = crate::plan::render::markdown(&plan);
        assert!(md.contains("is not encrypted"), "{md}");
    }

    #[test]
    fn ascending_lookups_find_exactly_the_present_keys() {
        let map: BTreeMap<String, u32> = [("b", 1), ("d", 2), ("e", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut at = Ascending::new(map.iter().map(|(k, v)| (k.as_str(), v)));
        let found: Vec<_> = ["a", "b", "c", "e", "f"]
            .into_iter()
            .map(|k| at.get(k).copied())
            .collect();
        assert_eq!(found, [None, Some(1), None, Some(3), None]);
    }

    #[test]
    fn accounts_out_of_order_are_sorted_and_the_last_of_an_identity_wins() {
        let account = |identity: &str, active: bool| Account {
            active,
            ..account(identity, &[])
        };
        let read = [
            account("c", true),
            account("a", false),
            account("b", true),
            account("a", true),
        ];
        let got: Vec<_> = by_identity_with(&read, std::iter::empty())
            .iter()
            .map(|a| (a.identity.as_str(), a.active))
            .collect();
        assert_eq!(got, [("a", true), ("b", true), ("c", true)]);
        let sorted = [account("a", true), account("b", false)];
        assert_eq!(by_identity_with(&sorted, std::iter::empty()).len(), 2);
    }

    #[test]
    fn a_complete_read_prunes_undeclared_access() {
        let plan = plan_with(Completeness::Complete);
        let removed: Vec<_> = plan
            .changes
            .iter()
            .map(|c| (c.op.identity().to_string(), c.verb(), c.reason))
            .collect();
        assert_eq!(
            removed,
            [
                (
                    "erin@acme.example".to_string(),
                    "revoke",
                    Reason::Undeclared
                ),
                (
                    "ghost@acme.example".to_string(),
                    "revoke",
                    Reason::Undeclared
                ),
                (
                    "ghost@acme.example".to_string(),
                    "delete account",
                    Reason::Undeclared
                ),
            ]
        );
    }

    #[test]
    fn a_partial_read_never_prunes_on_that_system() {
        let plan = plan_with(Completeness::Partial("page 3 timed out".into()));
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        assert_eq!(
            plan.drift.len(),
            3,
            "the same removals are reported as drift instead"
        );
    }

    /// Two systems reached by the same roles; only `db` may get a native expiry.
    const EXPIRY_REPO: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: db}
spec: {type: postgres, environment: staging, connection: {url: 'postgresql://latchkey@db/postgres'}, prune: true, offboard: delete}
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: portal}
spec: {type: sql, environment: portal, prune: true, offboard: delete}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: reader}
spec: {entitlements: {db: [readers], portal: [viewer]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: writer}
spec: {entitlements: {db: [writers]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: auditor}
spec: {entitlements: {db: [auditors]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec: {allowedRoles: [reader, writer, auditor]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: erin}
spec:
  email: erin@acme.example
  client: acme
  grants:
    - {role: reader, expires: '2026-12-15T00:00:00Z'}
    - {role: writer, expires: '2026-12-01T18:30:00.75Z'}
    - {role: auditor}
---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: kim}
spec: {email: kim@acme.example, client: acme, grants: [{role: auditor}]}
";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The plan for `EXPIRY_REPO` at 2026-11-21 against `db` and `portal` holding `accounts`.
    fn expiry_plan(accounts: Vec<Account>, native: &[&str]) -> Plan {
        let cat = catalog_of(EXPIRY_REPO);
        let desired = Desired::at(&cat, ts("2026-11-21T00:00:00Z"));
        let snapshot = |system: &str| Snapshot {
            managed: accounts
                .iter()
                .filter(|a| system == "db" || a.entitlements.iter().any(|e| e == "viewer"))
                .cloned()
                .collect(),
            unmanaged: BTreeMap::new(),
            completeness: Completeness::Complete,
            foreign_grants: Vec::new(),
            warnings: Vec::new(),
        };
        let actual = BTreeMap::from([
            ("db".to_string(), Ok(snapshot("db"))),
            ("portal".to_string(), Ok(snapshot("portal"))),
        ]);
        diff(&Inputs {
            pending: &Pending::new(),
            catalog: &cat,
            desired: &desired,
            actual: &actual,
            previous: None,
            revision: "r".into(),
            native_expiry: native.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn expiries(plan: &Plan) -> Vec<(String, String, Option<Timestamp>)> {
        plan.changes
            .iter()
            .filter_map(|c| {
                c.expiry()
                    .map(|u| (c.system.clone(), c.op.identity().to_string(), u))
            })
            .collect()
    }

    fn with_expiry(mut a: Account, until: Option<&str>) -> Account {
        a.valid_until = until.map(ts);
        a
    }

    #[test]
    fn native_expiry_is_the_earliest_grant_expiry_in_whole_seconds() {
        let plan = expiry_plan(
            vec![
                account("erin@acme.example", &["readers", "writers", "auditors"]),
                account("kim@acme.example", &["auditors"]),
            ],
            &["db"],
        );
        // The writer grant's 18:30:00.75 rounds down, so the lock never closes late; the
        // auditor grant without an expiry does not lift it; kim has no expiring grant.
        assert_eq!(
            expiries(&plan),
            [(
                "db".to_string(),
                "erin@acme.example".to_string(),
                Some(ts("2026-12-01T18:30:00Z"))
            )]
        );
        let c = plan.changes.iter().find(|c| c.expiry().is_some()).unwrap();
        assert_eq!(c.reason, Reason::Declared);
        assert_eq!(c.client.as_deref(), Some("acme"));
        assert!(!c.is_removal(), "never counts for the deletion brake");
    }

    #[test]
    fn no_native_expiry_without_the_capability() {
        let accounts = vec![account("erin@acme.example", &["readers", "writers"])];
        assert!(expiries(&expiry_plan(accounts.clone(), &[])).is_empty());
        // The portal never gets one, whatever db does.
        let plan = expiry_plan(accounts, &["db"]);
        assert!(expiries(&plan).iter().all(|(system, _, _)| system == "db"));
    }

    #[test]
    fn an_equal_native_expiry_is_left_alone() {
        let erin = account("erin@acme.example", &["readers", "writers", "auditors"]);
        let plan = expiry_plan(
            vec![with_expiry(erin, Some("2026-12-01T18:30:00Z"))],
            &["db"],
        );
        let erin: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.system == "db" && c.op.identity() == "erin@acme.example")
            .collect();
        assert!(erin.is_empty(), "{erin:?}");
    }

    #[test]
    fn a_native_expiry_without_an_expiring_grant_is_cleared() {
        let kim = account("kim@acme.example", &["auditors"]);
        let plan = expiry_plan(
            vec![with_expiry(kim, Some("2026-12-01T00:00:00Z"))],
            &["db"],
        );
        let kim: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.op.identity() == "kim@acme.example")
            .map(|c| (c.verb(), c.expiry()))
            .collect();
        assert_eq!(kim, [("clear expiry", Some(None))]);
    }

    #[test]
    fn a_new_account_gets_its_expiry_before_its_grants() {
        let plan = expiry_plan(Vec::new(), &["db"]);
        let erin: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.system == "db" && c.op.identity() == "erin@acme.example")
            .map(|c| c.verb())
            .collect();
        assert_eq!(
            erin,
            ["create account", "set expiry", "grant", "grant", "grant"]
        );
        // A new account starts without one: none is set where none is wanted.
        assert!(
            !plan
                .changes
                .iter()
                .any(|c| c.op.identity() == "kim@acme.example" && c.expiry().is_some())
        );
    }

    #[test]
    fn accounts_losing_everything_keep_their_native_expiry() {
        // ghost is not declared: revoked and deleted, never given a new expiry.
        let ghost = account("ghost@acme.example", &["readers"]);
        let plan = expiry_plan(
            vec![with_expiry(ghost, Some("2026-11-30T00:00:00Z"))],
            &["db"],
        );
        let ghost: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.op.identity() == "ghost@acme.example")
            .map(|c| c.verb())
            .collect();
        assert_eq!(ghost, ["revoke", "delete account"]);
    }

    /// An unmarked account for erin (viewer and editor) and one git does not declare.
    fn adoption_plan(adopt: bool) -> Plan {
        let repo = repo().replace("prune: true,", &format!("prune: true, adopt: {adopt},"));
        let cat = catalog_of(&repo);
        let desired = Desired::at(&cat, "2026-11-21T00:00:00Z".parse().unwrap());
        let snapshot = Snapshot {
            managed: vec![],
            unmanaged: [
                account("erin@acme.example", &["editor"]),
                account("root@acme.example", &["superuser"]),
            ]
            .into_iter()
            .map(|a| (a.identity.clone(), a))
            .collect(),
            completeness: Completeness::Complete,
            foreign_grants: Vec::new(),
            warnings: Vec::new(),
        };
        let actual = BTreeMap::from([("portal".to_string(), Ok(snapshot))]);
        diff(&Inputs {
            pending: &Pending::new(),
            catalog: &cat,
            desired: &desired,
            actual: &actual,
            previous: None,
            revision: "r".into(),
            native_expiry: BTreeSet::new(),
        })
    }

    #[test]
    fn adopt_takes_over_declared_unmarked_accounts_first_and_only_those() {
        let plan = adoption_plan(true);
        let got: Vec<_> = plan
            .changes
            .iter()
            .map(|c| (c.op.identity(), c.verb(), c.entitlement(), c.reason))
            .collect();
        // Marked first; then like a managed account: git's viewer added, the undeclared
        // editor pruned. root (not declared) is neither adopted nor touched.
        assert_eq!(
            got,
            [
                ("erin@acme.example", "adopt account", None, Reason::Declared),
                (
                    "erin@acme.example",
                    "grant",
                    Some("viewer"),
                    Reason::Declared
                ),
                (
                    "erin@acme.example",
                    "revoke",
                    Some("editor"),
                    Reason::Undeclared
                ),
            ]
        );
        assert!(plan.out_of_scope.is_empty());
    }

    #[test]
    fn without_adopt_unmarked_accounts_are_out_of_scope_and_unchanged() {
        let plan = adoption_plan(false);
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        assert!(plan.drift.is_empty(), "{:?}", plan.drift);
        let outside: Vec<_> = plan
            .out_of_scope
            .iter()
            .map(|o| o.identity.as_str())
            .collect();
        assert_eq!(outside, ["erin@acme.example"]);
    }
}
