//! The checks a run passes before anything is applied: one list, run by `plan` (which
//! shows what `apply` would refuse or hold, and the override that releases it) and by
//! `apply` (which records and enforces what `plan` found). A new check is one unit here
//! and one line in [`CHECKS`]; see docs/architecture.md.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit;
use crate::reconcile::{Options, Planned, ReconcileError, Reconciler};

/// What a finding does to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Nothing is applied; the run fails (exit 1).
    Refuse,
    /// Nothing is applied until a person releases it (exit 3).
    Hold,
    /// Nothing is granted, but expiries are applied: holding them would keep access open
    /// past its deadline. The run fails (exit 1).
    ExpiriesOnly,
}

/// What one check found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The check's name: `rewind`, `signatures`, `ledger`, `deletion-brake`, `empty-client`.
    pub check: &'static str,
    pub effect: Effect,
    pub message: String,
    /// The flag that releases it, with a reason for the audit.
    pub release: &'static str,
    /// The reason it was released with, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden: Option<String>,
    #[serde(skip)]
    cause: Cause,
}

/// What a refusal's error carries.
#[derive(Clone, Debug)]
enum Cause {
    Rewind {
        revision: String,
        last_applied: String,
    },
    Untrusted {
        revision: String,
        refusals: Vec<crate::trust::Refusal>,
    },
    Ledger {
        branch: String,
        commit: String,
    },
    Guard,
}

impl Finding {
    /// Enforced: neither released nor a hold that a guard override released.
    pub fn enforced(&self) -> bool {
        self.overridden.is_none()
    }

    /// The error a run enforcing this finding fails with.
    pub fn error(&self) -> Option<ReconcileError> {
        Some(match &self.cause {
            Cause::Rewind {
                revision,
                last_applied,
            } => ReconcileError::Rewind {
                revision: revision.clone(),
                last_applied: last_applied.clone(),
            },
            Cause::Untrusted { revision, refusals } => ReconcileError::Untrusted {
                revision: revision.clone(),
                refusals: refusals.clone(),
            },
            Cause::Ledger { branch, commit } => ReconcileError::BrokenLedger {
                branch: branch.clone(),
                problem: self.message.clone(),
                commit: commit.clone(),
            },
            Cause::Guard => return None,
        })
    }

    /// The audit commit's subject when this finding refuses a run.
    pub fn summary(&self) -> String {
        match self.check {
            "rewind" => "refused a history rewrite".into(),
            "signatures" => "refused unsigned or untrusted commits".into(),
            other => format!("refused by the {other} check"),
        }
    }

    /// The ledger note of an enforced finding.
    pub fn note(&self) -> String {
        match self.check {
            "rewind" => format!("history rewrite: {}", self.message),
            "signatures" => format!("unsigned or untrusted commits: {}", self.message),
            "ledger" => format!("refused to build on the ledger: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

/// One check: what it finds on a computed plan.
trait Check: Sync {
    fn run(
        &self,
        rec: &mut Reconciler,
        planned: &mut Planned,
        opts: &Options,
    ) -> Result<Vec<Finding>, ReconcileError>;
}

/// Every check, in the order a run meets them.
static CHECKS: &[&dyn Check] = &[&Rewind, &Signatures, &Ledger, &Guards];

/// Runs every check; signatures' signers land in `planned.signers`.
pub fn run_all(
    rec: &mut Reconciler,
    planned: &mut Planned,
    opts: &Options,
) -> Result<Vec<Finding>, ReconcileError> {
    let mut out = Vec::new();
    for check in CHECKS {
        out.extend(check.run(rec, planned, opts)?);
    }
    Ok(out)
}

/// A revision that does not descend from the last applied one (a history rewrite).
struct Rewind;

impl Check for Rewind {
    fn run(
        &self,
        rec: &mut Reconciler,
        planned: &mut Planned,
        opts: &Options,
    ) -> Result<Vec<Finding>, ReconcileError> {
        let rev = &planned.loaded.revision;
        let (Some(last), Some(branch)) = (planned.last_applied, rev.branch.as_deref()) else {
            return Ok(Vec::new());
        };
        if rec.repo.descends_from(rev.oid, last)? {
            return Ok(Vec::new());
        }
        let last_applied = format!("{branch}@sha1:{last}");
        Ok(vec![Finding {
            check: "rewind",
            effect: Effect::Refuse,
            message: format!("does not descend from {last_applied}"),
            release: "--allow-rewind",
            overridden: opts.allow_rewind.clone(),
            cause: Cause::Rewind {
                revision: rev.display(),
                last_applied,
            },
        }])
    }
}

/// Unsigned or untrusted commits since the last applied one, when the Policy asks.
struct Signatures;

impl Check for Signatures {
    fn run(
        &self,
        rec: &mut Reconciler,
        planned: &mut Planned,
        opts: &Options,
    ) -> Result<Vec<Finding>, ReconcileError> {
        match rec.verify_signatures(planned, &opts.subpath, opts.now) {
            Ok(signers) => {
                planned.signers = signers;
                Ok(Vec::new())
            }
            Err(ReconcileError::Untrusted { revision, refusals }) => Ok(vec![Finding {
                check: "signatures",
                effect: Effect::Refuse,
                message: refusals
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                release: "",
                overridden: None,
                cause: Cause::Untrusted { revision, refusals },
            }]),
            Err(e) => Err(e),
        }
    }
}

/// A ledger that does not continue from the head anchored outside `audit/`.
struct Ledger;

impl Check for Ledger {
    fn run(
        &self,
        rec: &mut Reconciler,
        planned: &mut Planned,
        opts: &Options,
    ) -> Result<Vec<Finding>, ReconcileError> {
        let Some(branch) = planned.loaded.revision.branch.clone() else {
            return Ok(Vec::new());
        };
        let root = audit::audit_root(&opts.subpath);
        let anchor = rec.check_anchor(&branch, &root)?;
        let Err(anchor) = anchor else {
            // The controller also verifies the chain itself (incrementally).
            let Some((broken, commit)) = rec.verify_ledger(&branch, &root)? else {
                return Ok(Vec::new());
            };
            return Ok(vec![Finding {
                check: "ledger",
                effect: Effect::ExpiriesOnly,
                message: format!("it does not verify: {broken}"),
                release: "--allow-broken-ledger",
                overridden: opts.allow_broken_ledger.clone(),
                cause: Cause::Ledger { branch, commit },
            }]);
        };
        Ok(vec![Finding {
            check: "ledger",
            effect: Effect::ExpiriesOnly,
            message: crate::reconcile::ledger_problem(&anchor),
            release: "--allow-broken-ledger",
            overridden: opts.allow_broken_ledger.clone(),
            cause: Cause::Ledger {
                branch,
                commit: anchor.commit.to_string(),
            },
        }])
    }
}

/// The deletion brake and the empty-client guard (src/plan/guard.rs), computed with the
/// plan.
struct Guards;

impl Check for Guards {
    fn run(
        &self,
        _rec: &mut Reconciler,
        planned: &mut Planned,
        _opts: &Options,
    ) -> Result<Vec<Finding>, ReconcileError> {
        let plan = &planned.plan;
        Ok(plan
            .holds
            .iter()
            .map(|h| Finding {
                check: match h.guard {
                    crate::plan::Guard::DeletionBrake => "deletion-brake",
                    crate::plan::Guard::EmptyClient => "empty-client",
                },
                effect: Effect::Hold,
                message: h.message.clone(),
                release: "--allow-mass-revoke",
                overridden: plan.override_reason.clone(),
                cause: Cause::Guard,
            })
            .collect())
    }
}

/// Signers of each verified commit, by commit.
pub type Signers = BTreeMap<git2::Oid, String>;
