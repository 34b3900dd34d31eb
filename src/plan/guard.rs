//! Guards that hold a plan back until a person overrides them (docs/architecture.md).
//!
//! The deletion brake counts people losing access on one system for reasons a person
//! caused (declared, offboarded, undeclared). Expiries do not count: they were declared
//! with their time, and holding them would keep access open past its deadline.

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
