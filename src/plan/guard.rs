//! Guards that hold a plan back until a person overrides them (docs/architecture.md).
//!
//! The deletion brake counts people losing access on one system for reasons a person
//! caused (declared, offboarded, undeclared). Expiries do not count, nor review deadlines
//! under `overdueReview: revoke`: they were declared with their time, and holding them
//! would keep access open past its deadline.

use std::collections::{BTreeMap, BTreeSet};

use super::change::{Guard, Hold, Plan};
use crate::load::Catalog;

/// Applies the deletion brake and the empty-client guard. With `allow_mass_revoke`,
/// holds are kept for the record but released.
pub fn guard(
    plan: &mut Plan,
    catalog: &Catalog,
    previous: Option<&Catalog>,
    allow_mass_revoke: Option<&str>,
) {
    let brake = &catalog.policy.deletion_brake;
    let mut losing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.is_removal() && !c.reason.is_time_up())
    {
        losing
            .entry(c.system.as_str())
            .or_default()
            .insert(c.op.identity());
    }
    let mut holds = Vec::new();
    for (system, people) in losing {
        let managed = plan
            .systems
            .iter()
            .find(|s| s.system == system)
            .map_or(0, |s| s.managed_accounts);
        let share = (managed * brake.percent as usize).div_ceil(100);
        let limit = (brake.minimum as usize).max(share);
        if people.len() > limit {
            holds.push(Hold {
                guard: Guard::DeletionBrake,
                message: format!(
                    "{} people would lose access on system {system:?}, above the deletion brake of {limit} \
                     (max({}, {}% of {managed} managed accounts))",
                    people.len(),
                    brake.minimum,
                    brake.percent
                ),
            });
        }
    }
    if let Some(prev) = previous {
        for client in prev.live_clients.difference(&catalog.live_clients) {
            let removing = plan
                .changes
                .iter()
                .any(|c| c.is_removal() && c.client.as_deref() == Some(client));
            if removing {
                holds.push(Hold {
                    guard: Guard::EmptyClient,
                    message: format!(
                        "client {client:?} had grants in the last applied revision and declares none now"
                    ),
                });
            }
        }
    }
    plan.holds = holds;
    if !plan.holds.is_empty() {
        plan.override_reason = allow_mass_revoke.map(str::to_string);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::Op;
    use crate::plan::{Change, Reason, SystemStatus};

    /// Six people losing access on a system of six accounts, for `reason`.
    fn plan(reason: Reason) -> Plan {
        let changes = (0..6)
            .map(|i| Change {
                system: "portal".into(),
                client: Some("acme".into()),
                op: Op::RemoveEntitlement {
                    identity: format!("p{i}@acme.example"),
                    entitlement: "acme:viewer".into(),
                },
                reason,
                grant: None,
                retry: None,
            })
            .collect();
        Plan {
            revision: "main@sha1:00".into(),
            now: "2026-11-20T12:00:00Z".parse().unwrap(),
            changes,
            drift: Vec::new(),
            out_of_scope: Vec::new(),
            systems: vec![SystemStatus {
                system: "portal".into(),
                completeness: None,
                managed_accounts: 6,
                error: None,
                warnings: Vec::new(),
            }],
            holds: Vec::new(),
            refusals: Vec::new(),
            override_reason: None,
            next_change: None,
        }
    }

    #[test]
    fn time_up_removals_pass_the_deletion_brake_others_are_held() {
        let cat = crate::load::load_text(
            "latchkey.yaml",
            &format!("{}    - role: viewer\n", crate::load::TEST_REPO),
            "2026-11-20T12:00:00Z".parse().unwrap(),
        )
        .catalog;
        for (reason, held) in [
            (Reason::Declared, true),
            (Reason::Offboarded, true),
            (Reason::Expired, false),
            (Reason::ReviewOverdue, false),
        ] {
            let mut p = plan(reason);
            guard(&mut p, &cat, None, None);
            assert_eq!(p.is_held(), held, "{reason:?}: {:?}", p.holds);
        }
    }
}
