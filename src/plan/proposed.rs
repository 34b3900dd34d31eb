//! A proposed change (base → head), as `latchkey check` and the self-service page see it:
//! the client boundaries it keeps or breaks, and what it does to effective access.

use std::cell::RefCell;

use jiff::Timestamp;

use super::Desired;
use super::review::{self, Review};
use crate::load::{self, Context, Loaded};
use crate::model::Grant;
use crate::reconcile::Reconciler;
use crate::source::history::MergeTimes;
use crate::source::{Revision, SourceError};
use crate::trust::boundary::{self, BoundaryReport};

/// Loads both revisions, checks the boundaries and reviews the effective-access change.
///
/// Both are loaded and evaluated as apply would, at the same instant `now`. The base
/// counts `for:` grants from the commits that added them, as apply does today; the head
/// is loaded as if merged at `now` (it is the revision apply would see after the merge):
/// its revision time is `now`, a grant the base already holds keeps the base's merge
/// time, and a grant the change adds counts from `now`, whenever the PR's commit was made.
pub fn review_change(
    rec: &mut Reconciler,
    subpath: &str,
    base: &str,
    head: &str,
    now: Timestamp,
) -> Result<(BoundaryReport, Review), SourceError> {
    let mut base_rev = rec.repo.resolve(base)?;
    let head_rev = rec.repo.resolve(head)?;
    // A PR's change is what its head adds to the merge base, as the host shows it:
    // changes that landed on the base branch since are not the PR's.
    if let Ok(fork) = rec.repo.git().merge_base(base_rev.oid, head_rev.oid)
        && fork != base_rev.oid
    {
        base_rev = rec.repo.revision(fork, None)?;
    }
    let base_loaded = rec.load(&base_rev, subpath, now)?;
    let (head_loaded, from_merge) = load_as_merged(rec, &base_rev, &head_rev, subpath, now)?;
    let report = boundary::check(&rec.repo, subpath, &base_loaded, &head_loaded)?;
    let base_desired = Desired::at_cached(&base_loaded.catalog, now, &mut rec.desired_cache);
    let head_desired = Desired::at_cached(&head_loaded.catalog, now, &mut rec.desired_cache);
    let r = review::review(&review::Inputs {
        base: review::Side {
            revision: &base_rev.display(),
            catalog: &base_loaded.catalog,
            desired: &base_desired,
        },
        head: review::Side {
            revision: &head_rev.display(),
            catalog: &head_loaded.catalog,
            desired: &head_desired,
        },
        now,
        head_errors: head_loaded.errors().map(ToString::to_string).collect(),
        from_merge: &from_merge,
    });
    // The process ends after a review: freeing two catalogues and their desired state
    // (60,000 grants each) would only delay the exit.
    std::mem::forget((base_loaded, head_loaded, base_desired, head_desired));
    Ok((report, r))
}

/// Loads `head` as apply would load it once merged into `base` at `now`; also returns
/// the `for:` grants that count from that merge (those `base` does not hold).
fn load_as_merged(
    rec: &mut Reconciler,
    base: &Revision,
    head: &Revision,
    subpath: &str,
    now: Timestamp,
) -> Result<(Loaded, Vec<(String, Grant)>), SourceError> {
    let staged = load::stage(&rec.repo, head, subpath, &mut rec.cache)?;
    // The base was just loaded: its first commit is looked up in the files parsed then.
    let base_blobs = rec.repo.yaml_blobs(base, subpath).unwrap_or_default();
    let in_base =
        MergeTimes::new(&rec.repo, base, subpath).with_parsed(rec.cache.parsed(&base_blobs));
    let from_merge = RefCell::new(Vec::new());
    let merged_at = |identity: &str, grant: &Grant| {
        in_base.merged_at(identity, grant).or_else(|| {
            from_merge
                .borrow_mut()
                .push((identity.to_string(), grant.clone()));
            Some(now)
        })
    };
    let ctx = Context {
        revision_time: now,
        now,
        merged_at: &merged_at,
    };
    let loaded = load::finish(&rec.repo, staged, &ctx, &mut rec.cache);
    Ok((loaded, from_merge.into_inner()))
}
