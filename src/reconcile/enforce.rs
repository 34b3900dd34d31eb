//! "Enforce this branch": the one driver `latchkey run` and the operator share
//! (docs/architecture.md). The newest revision is planned and applied; when it is
//! invalid, it is recorded once (never again for an audit commit of latchkey's on top
//! of it) and the last valid revision stays in force, expiries included.

use git2::Oid;

use super::{Applied, Options, ReconcileError, Reconciler};
use crate::apply::Outcome;
use crate::load::Diagnostic;

/// What enforcing a branch came to.
pub enum Enforced {
    /// The newest revision was planned; its apply's result.
    Newest(Result<Applied, ReconcileError>),
    /// The newest revision is invalid. `fallback` is the apply of the last valid
    /// revision, or None when there is none yet.
    KeptLastValid {
        revision: String,
        errors: Vec<Diagnostic>,
        fallback: Option<Result<Applied, ReconcileError>>,
    },
}

impl Reconciler {
    /// Plans and applies `opts.rev` (a branch; `opts.branch` names it for the audit); on
    /// an invalid revision, records it once and enforces `last_valid`, else the last
    /// applied commit. Errors are the newest revision's plan failing otherwise.
    pub async fn enforce(
        &mut self,
        opts: &Options,
        last_valid: Option<Oid>,
        on_done: &(dyn Fn(&Outcome) + Sync),
    ) -> Result<Enforced, ReconcileError> {
        let (revision, errors) = match self.plan(opts).await {
            Ok(planned) => return Ok(Enforced::Newest(self.apply(planned, opts, on_done).await)),
            Err(ReconcileError::Invalid { revision, errors }) => (revision, errors),
            Err(e) => return Err(e),
        };
        tracing::error!(%revision, errors = errors.len(), "newest revision is invalid; enforcing the last valid one");
        for e in &errors {
            tracing::error!("{e}");
        }
        // Recorded once per invalid content (Reconciler::record_invalid remembers it).
        if let Ok(head) = self.repo.resolve(&opts.rev)
            && let Err(e) = self.record_invalid(&head, &errors, opts)
        {
            tracing::warn!(error = %e, "could not record the invalid revision in the audit");
        }
        let branch = opts.branch.clone().unwrap_or_else(|| opts.rev.clone());
        let fallback = last_valid.or_else(|| self.last_applied_commit(&branch, &opts.subpath));
        let fallback = match fallback {
            None => None,
            Some(oid) => {
                let last = Options {
                    rev: oid.to_string(),
                    branch: Some(branch),
                    ..opts.clone()
                };
                Some(match self.plan(&last).await {
                    Ok(planned) => self.apply(planned, &last, on_done).await,
                    Err(e) => Err(e),
                })
            }
        };
        Ok(Enforced::KeptLastValid {
            revision,
            errors,
            fallback,
        })
    }
}
