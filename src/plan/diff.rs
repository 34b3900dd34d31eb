//! desired × actual → ordered changes, each with its reason. Pure: no I/O, no clock.

use std::collections::BTreeMap;

use super::change::{Change, OutOfScope, Plan, Reason, SystemStatus};
use super::desired::{Desired, EntKey};
use crate::connectors::{Completeness, Op, Snapshot};
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
}

/// Computes the plan (before guards).
pub fn diff(input: &Inputs<'_>) -> Plan {
    let now = input.desired.now.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    // Asked per account, not collected: the previous revision declares as much as this one.
    let prev_declares = |key: &EntKey| input.previous.is_some_and(|p| p.declares(key));
    let prev_identity = |identity: &str| {
        input
            .previous
            .is_some_and(|p| p.identities.contains(identity))
    };
    let mut plan = Plan {
        revision: input.revision.clone(),
        now,
        changes: Vec::new(),
        drift: Vec::new(),
        out_of_scope: Vec::new(),
        systems: Vec::new(),
        holds: Vec::new(),
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
        });
        let partial = matches!(snapshot.completeness, Completeness::Partial(_));
        let wanted = input.desired.systems.get(name).unwrap_or(&empty);
        let actual: BTreeMap<&str, _> = snapshot
            .managed
            .iter()
            .map(|a| (a.identity.as_str(), a))
            .collect();
        let client_of = |identity: &str, grant_client: Option<&String>| {
            grant_client
                .cloned()
                .or_else(|| system.spec.client.clone())
                .or_else(|| input.desired.member_client.get(identity).cloned())
                // Someone removed from git: their client as the last applied revision knew it.
                .or_else(|| {
                    input
                        .previous
                        .and_then(|p| p.member_client.get(identity).cloned())
                })
        };
        let push = |plan: &mut Plan, change: Change, prunable: bool| {
            if change.reason == Reason::Undeclared && !(prunable && system.spec.prune && !partial) {
                plan.drift.push(change);
            } else {
                plan.changes.push(change);
            }
        };

        for (identity, want) in wanted {
            let started = |ent: &str| {
                want.entitlements
                    .get(ent)
                    .is_some_and(|s| s.iter().all(|g| g.starts.is_some()))
            };
            match actual.get(identity.as_str()) {
                None if snapshot.unmanaged.contains(identity) => plan.out_of_scope.push(OutOfScope {
                    system: name.clone(),
                    identity: identity.clone(),
                    note: "an account exists that latchkey does not manage; git's grants for it are not applied".into(),
                }),
                None => {
                    let first = want.entitlements.keys().next().map(|e| started(e)).unwrap_or(false);
                    let source = want.entitlements.values().next().and_then(|s| s.first()).cloned();
                    push(&mut plan, Change {
                        system: name.clone(),
                        client: client_of(identity, source.as_ref().map(|s| &s.client)),
                        op: Op::CreateAccount { identity: identity.clone(), display_name: want.display_name.clone() },
                        reason: if first { Reason::Started } else { Reason::Declared },
                        grant: None,
                    }, false);
                    for (ent, sources) in &want.entitlements {
                        push(&mut plan, Change {
                            system: name.clone(),
                            client: client_of(identity, sources.first().map(|s| &s.client)),
                            op: Op::AddEntitlement { identity: identity.clone(), entitlement: ent.clone() },
                            reason: if started(ent) { Reason::Started } else { Reason::Declared },
                            grant: sources.first().cloned(),
                        }, false);
                    }
                }
                Some(have) => {
                    if !have.active {
                        push(&mut plan, Change {
                            system: name.clone(),
                            client: client_of(identity, None),
                            op: Op::EnableAccount { identity: identity.clone() },
                            reason: Reason::Declared,
                            grant: None,
                        }, false);
                    }
                    for (ent, sources) in &want.entitlements {
                        if !have.entitlements.contains(ent) {
                            push(&mut plan, Change {
                                system: name.clone(),
                                client: client_of(identity, sources.first().map(|s| &s.client)),
                                op: Op::AddEntitlement { identity: identity.clone(), entitlement: ent.clone() },
                                reason: if started(ent) { Reason::Started } else { Reason::Declared },
                                grant: sources.first().cloned(),
                            }, false);
                        }
                    }
                }
            }
        }

        for (identity, have) in &actual {
            let identity = identity.to_string();
            let want = wanted.get(&identity);
            let offboarded = input.desired.offboarded.contains(&identity)
                || (!input.desired.identities.contains(&identity) && prev_identity(&identity));
            let undeclared_person = !input.desired.identities.contains(&identity) && !offboarded;
            for ent in &have.entitlements {
                if want.is_some_and(|w| w.entitlements.contains_key(ent)) {
                    continue;
                }
                let key = (name.clone(), identity.clone(), ent.clone());
                let expired = input.desired.expired.get(&key);
                let reason = if offboarded {
                    Reason::Offboarded
                } else if undeclared_person {
                    Reason::Undeclared
                } else if expired.is_some() {
                    Reason::Expired
                } else if prev_declares(&key) {
                    Reason::Declared
                } else {
                    Reason::Undeclared
                };
                push(
                    &mut plan,
                    Change {
                        system: name.clone(),
                        client: client_of(&identity, expired.map(|s| &s.client)),
                        op: Op::RemoveEntitlement {
                            identity: identity.clone(),
                            entitlement: ent.clone(),
                        },
                        reason,
                        grant: expired.cloned(),
                    },
                    true,
                );
            }
            if offboarded || undeclared_person {
                let op = match system.spec.offboard {
                    OffboardMode::Delete => Some(Op::DeleteAccount {
                        identity: identity.clone(),
                    }),
                    OffboardMode::Disable if have.active => Some(Op::DisableAccount {
                        identity: identity.clone(),
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
                            client: client_of(&identity, None),
                            op,
                            reason,
                            grant: None,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::connectors::Account;
    use crate::load::{Context, ParseCache, load_files};
    use crate::source::{Revision, SourceFile};

    const REPO: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: portal}
spec: {type: sql, environment: portal, prune: true, offboard: delete}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: viewer}
spec: {entitlements: {portal: [viewer]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec: {allowedRoles: [viewer]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: erin}
spec: {email: erin@acme.example, client: acme, grants: [{role: viewer}]}
";

    fn catalog() -> Catalog {
        let t: jiff::Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
        let rev = Revision {
            oid: git2::Oid::ZERO_SHA1,
            branch: None,
            time: t,
            author: String::new(),
            summary: String::new(),
        };
        let file = SourceFile {
            path: "latchkey.yaml".into(),
            blob: git2::Oid::ZERO_SHA1,
            text: REPO.into(),
        };
        let none = |_: &str, _: &crate::model::Grant| None;
        let ctx = Context {
            revision_time: t,
            now: t,
            merged_at: &none,
        };
        let loaded = load_files(rev, &[file], &ctx, &mut ParseCache::default());
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        loaded.catalog
    }

    fn account(id: &str, ents: &[&str]) -> Account {
        Account {
            identity: id.into(),
            display_name: None,
            active: true,
            entitlements: ents.iter().map(|e| e.to_string()).collect::<BTreeSet<_>>(),
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
            unmanaged: BTreeSet::new(),
            completeness,
        };
        let actual = BTreeMap::from([("portal".to_string(), Ok(snapshot))]);
        diff(&Inputs {
            catalog: &cat,
            desired: &desired,
            actual: &actual,
            previous: None,
            revision: "r".into(),
        })
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
}
