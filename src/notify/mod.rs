//! Notifications (docs/notifications.md): word to people before and when access
//! changes, sent to the `Notifier`s of the last applied revision.
//!
//! - [`event`]: what is told: events derived from the ledger records a run committed and
//!   from the grants about to expire at `now`, each with a stable id;
//! - [`outbox`]: the durable record of each delivery, so a restart neither loses nor
//!   repeats one;
//! - [`deliver`]: the bounded queue and the task that signs and sends, with retries;
//! - [`branch`]: what a controller calls after each reconcile of a branch.

pub mod branch;
pub mod deliver;
pub mod event;
pub mod outbox;

pub use branch::{BranchNotifications, read_all};
pub use deliver::{Config, Metrics, Notifications, NotifyError};
pub use event::{Event, EventKind};
pub use outbox::{Delivery, Outbox, State};

use jiff::{SignedDuration, Timestamp};

use crate::audit::Record;
use crate::load::Catalog;

/// Every event of one reconcile: the records it committed, and the grants of `catalog`
/// (the revision in force) expiring within `expiring_within` of `now` or whose review
/// falls due within `review_within` (None: no notifier wants that kind).
pub fn events_of_run(
    records: &[Record],
    catalog: &Catalog,
    complete: bool,
    now: Timestamp,
    expiring_within: Option<SignedDuration>,
    review_within: Option<SignedDuration>,
) -> Vec<Event> {
    let mut events = event::from_records(records, catalog, complete);
    if let Some(within) = expiring_within {
        events.extend(event::expiring(catalog, now, within));
    }
    if let Some(within) = review_within {
        events.extend(event::reviews_due(catalog, now, within));
    }
    events
}

/// Where the outbox of `branch` lives in the git directory `git_dir`.
pub fn outbox_path(git_dir: &std::path::Path, branch: &str) -> std::path::PathBuf {
    git_dir
        .join("latchkey")
        .join("notify")
        .join(format!("{}.jsonl", branch.replace('/', "%2F")))
}
