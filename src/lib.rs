//! latchkey: a GitOps controller for access.
//!
//! The pipeline (docs/architecture.md) reads top to bottom through the modules:
//! [`source`] reads a git revision, [`load`] turns it into validated desired state,
//! [`connectors`] read actual state, [`plan`] diffs the two, [`apply`] executes the plan,
//! and [`audit`] writes the ledger back into git.

pub mod apply;
pub mod audit;
pub mod checks;
pub mod cli;
pub mod connectors;
pub mod controller;
pub mod import;
pub mod load;
pub mod model;
pub mod notify;
pub mod plan;
pub mod recertify;
pub mod reconcile;
pub mod serve;
pub mod source;
pub mod trust;
