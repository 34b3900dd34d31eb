//! Desired state at an instant: which entitlements each identity should hold on each
//! system, and why.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use crate::load::{Catalog, ResolvedGrant, expand};

/// A grant that yields an entitlement (for plans, reports and the audit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub role: String,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Source {
    fn of(g: &ResolvedGrant) -> Source {
        Source {
            role: g.role.clone(),
            client: g.client.clone(),
            starts: g.starts,
            expires: g.expires,
            reason: g.reason.clone(),
        }
    }
}

/// One identity's wanted account on one system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WantedAccount {
    pub display_name: Option<String>,
    /// Entitlement → the grants that yield it now.
    pub entitlements: BTreeMap<String, Vec<Source>>,
}

/// Key of an entitlement anywhere: (system, identity, entitlement).
pub type EntKey = (String, String, String);

/// Desired state at `now`, plus what is declared regardless of time (to tell an
/// expired grant from undeclared drift).
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub now: Option<Timestamp>,
    /// System → identity → account.
    pub systems: BTreeMap<String, BTreeMap<String, WantedAccount>>,
    /// Declared by a grant whose window has passed at `now`, with the grant.
    pub expired: BTreeMap<EntKey, Source>,
    /// Declared by a grant that has not started at `now`.
    pub pending: BTreeMap<EntKey, Source>,
    /// Identities of members marked `offboarded: true`.
    pub offboarded: BTreeSet<String>,
    /// Every identity declared (offboarded included).
    pub identities: BTreeSet<String>,
    /// The client each declared identity belongs to.
    pub member_client: BTreeMap<String, String>,
    /// The earliest future `starts` or `expires`: when desired state next changes.
    pub next_change: Option<Timestamp>,
}

impl Desired {
    /// Evaluates the catalogue at `now`.
    pub fn at(cat: &Catalog, now: Timestamp) -> Desired {
        let mut d = Desired {
            now: Some(now),
            ..Desired::default()
        };
        for (identity, m) in &cat.members {
            d.identities.insert(identity.clone());
            d.member_client
                .insert(identity.clone(), m.spec.client.clone());
            if m.spec.offboarded {
                d.offboarded.insert(identity.clone());
            }
        }
        for g in &cat.grants {
            for instant in [g.starts, g.expires].into_iter().flatten() {
                if instant > now && !g.offboarded {
                    d.next_change = Some(d.next_change.map_or(instant, |n| n.min(instant)));
                }
            }
            let Some(role) = cat.roles.get(&g.role) else {
                continue;
            };
            if g.offboarded {
                continue;
            }
            let active = g.active_at(now);
            let display_name = cat
                .members
                .get(&g.identity)
                .and_then(|m| m.spec.display_name.as_ref());
            for (system, patterns) in cat.reach(&role.spec, &g.client) {
                for p in patterns {
                    let ent = expand(p, &g.client);
                    if active {
                        // Look up before inserting: the keys are cloned only for the
                        // first grant of a system and an identity, not for every one.
                        let accounts = match d.systems.get_mut(&system.name) {
                            Some(a) => a,
                            None => d.systems.entry(system.name.clone()).or_default(),
                        };
                        let acct = match accounts.get_mut(&g.identity) {
                            Some(a) => a,
                            None => accounts.entry(g.identity.clone()).or_default(),
                        };
                        if acct.display_name.as_ref() != display_name {
                            acct.display_name = display_name.cloned();
                        }
                        acct.entitlements
                            .entry(ent)
                            .or_default()
                            .push(Source::of(g));
                    } else {
                        let key = (system.name.clone(), g.identity.clone(), ent);
                        if g.expires.is_some_and(|e| e <= now) {
                            d.expired.insert(key, Source::of(g));
                        } else {
                            d.pending.insert(key, Source::of(g));
                        }
                    }
                }
            }
        }
        d
    }

    /// The earliest `expires` among the grants behind an identity's wanted entitlements on
    /// a system (grants without one are ignored); None when none has one or nothing is
    /// wanted there. Pushed down as the system's native expiry.
    pub fn expiry_of(&self, system: &str, identity: &str) -> Option<Timestamp> {
        self.systems
            .get(system)?
            .get(identity)?
            .entitlements
            .values()
            .flatten()
            .filter_map(|s| s.expires)
            .min()
    }

    /// Everything declared, ignoring time: (system, identity, entitlement).
    pub fn declared(&self) -> BTreeSet<EntKey> {
        let mut all: BTreeSet<EntKey> = self
            .expired
            .keys()
            .chain(self.pending.keys())
            .cloned()
            .collect();
        for (sys, accounts) in &self.systems {
            for (id, acct) in accounts {
                for ent in acct.entitlements.keys() {
                    all.insert((sys.clone(), id.clone(), ent.clone()));
                }
            }
        }
        all
    }
}
