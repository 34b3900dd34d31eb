//! Executes a plan through the connectors.
//!
//! Changes of one identity run in plan order (account before entitlements, entitlements
//! before disable); identities run concurrently up to the connector's limit. A failed
//! change never stops the others; a failed account creation skips that identity's adds.
//! A connector with a `batch_size` above 1 gets whole identity groups in batches, under
//! the same rules (see `run_batch`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

use crate::connectors::{Connector, ConnectorError, ErrorClass, Op};
use crate::plan::{Change, Plan};

/// How one change went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ChangeResult {
    Applied,
    Failed { class: ErrorClass, error: String },
    Skipped { why: String },
}

/// A change and its result.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub change: Change,
    #[serde(flatten)]
    pub result: ChangeResult,
    pub at: Timestamp,
    pub attempts: u32,
}

impl Outcome {
    fn of(
        change: &Change,
        result: Result<(), ConnectorError>,
        attempts: u32,
        at: Timestamp,
    ) -> Outcome {
        let result = match result {
            Ok(()) => ChangeResult::Applied,
            Err(e) => ChangeResult::Failed {
                class: e.class,
                error: e.message,
            },
        };
        Outcome {
            change: change.clone(),
            result,
            at,
            attempts,
        }
    }

    /// An addition not sent: its account could not be prepared.
    fn skipped(change: &Change, why: &str, at: Timestamp) -> Outcome {
        Outcome {
            change: change.clone(),
            result: ChangeResult::Skipped {
                why: why.to_string(),
            },
            at,
            attempts: 0,
        }
    }

    pub fn failed(&self) -> bool {
        !matches!(self.result, ChangeResult::Applied)
    }
}

/// Retry policy for transient errors: the one retry layer (see [`crate::connectors::retry`]).
pub use crate::connectors::retry::Retry;

/// Applies every change of `plan` whose system has a connector; `on_done` sees each
/// outcome as it lands (progress bars, metrics). Outcomes come back in plan order.
pub async fn apply(
    plan: &Plan,
    connectors: &BTreeMap<String, Arc<dyn Connector>>,
    retry: Retry,
    clock: &(dyn Fn() -> Timestamp + Sync),
    on_done: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    // Group by (system, identity), keeping plan order inside each group.
    let mut groups: BTreeMap<(&str, &str), Vec<(usize, &Change)>> = BTreeMap::new();
    for (i, c) in plan.changes.iter().enumerate() {
        groups
            .entry((c.system.as_str(), c.op.identity()))
            .or_default()
            .push((i, c));
    }
    let mut by_system: BTreeMap<&str, Vec<Vec<(usize, &Change)>>> = BTreeMap::new();
    for ((system, _), group) in groups {
        by_system.entry(system).or_default().push(group);
    }
    let systems = by_system.into_iter().map(|(system, groups)| {
        let connector = connectors.get(system).cloned();
        async move {
            let Some(connector) = connector else {
                let now = clock();
                return groups
                    .into_iter()
                    .flatten()
                    .map(|(i, c)| {
                        (
                            i,
                            Outcome {
                                change: c.clone(),
                                result: ChangeResult::Skipped {
                                    why: format!("system {system} is not connected"),
                                },
                                at: now,
                                attempts: 0,
                            },
                        )
                    })
                    .collect::<Vec<_>>();
            };
            let limit = connector.capabilities().max_concurrency.max(1);
            let size = connector.batch_size();
            if size > 1 {
                return futures::stream::iter(batches(groups, size).into_iter().map(|batch| {
                    let connector = connector.clone();
                    async move { run_batch(batch, connector.as_ref(), retry, clock, on_done).await }
                }))
                .buffer_unordered(limit)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            }
            futures::stream::iter(groups.into_iter().map(|group| {
                let connector = connector.clone();
                async move { run_group(group, connector.as_ref(), retry, clock, on_done).await }
            }))
            .buffer_unordered(limit)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
        }
    });
    let mut all: Vec<(usize, Outcome)> = futures::future::join_all(systems)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, o)| o).collect()
}

async fn run_group(
    group: Vec<(usize, &Change)>,
    connector: &dyn Connector,
    retry: Retry,
    clock: &(dyn Fn() -> Timestamp + Sync),
    on_done: &(dyn Fn(&Outcome) + Sync),
) -> Vec<(usize, Outcome)> {
    let mut out = Vec::new();
    let mut account_failed: Option<String> = None;
    for (i, change) in group {
        let outcome = match (&account_failed, &change.op) {
            (Some(why), Op::AddEntitlement { .. }) => Outcome::skipped(change, why, clock()),
            _ => {
                let (result, attempts) = with_retry(connector, &change.op, retry).await;
                if let Err(e) = &result
                    && gates_additions(&change.op)
                {
                    account_failed = Some(not_prepared(e));
                }
                Outcome::of(change, result, attempts, clock())
            }
        };
        on_done(&outcome);
        out.push((i, outcome));
    }
    out
}

type Group<'a> = Vec<(usize, &'a Change)>;

/// Whole identity groups, packed in order into batches of about `size` changes (a group
/// is never split, so one identity's changes stay in one batch, in plan order).
fn batches(groups: Vec<Group<'_>>, size: usize) -> Vec<Vec<Group<'_>>> {
    let mut out: Vec<Vec<Group<'_>>> = Vec::new();
    let mut count = 0;
    for group in groups {
        if out.is_empty() || count + group.len() > size && count > 0 {
            out.push(Vec::new());
            count = 0;
        }
        count += group.len();
        out.last_mut().expect("pushed above").push(group);
    }
    out
}

/// True for the changes that prepare an account (they lead each identity's group).
fn prepares_account(op: &Op) -> bool {
    gates_additions(op) || matches!(op, Op::SetExpiry { .. })
}

/// Why an identity's additions are skipped, before the preparation's error.
const NOT_PREPARED: &str = "the account could not be prepared: ";

fn not_prepared(e: &ConnectorError) -> String {
    format!("{NOT_PREPARED}{}", e.message)
}

/// True for the changes without which an account gains nothing: when one fails, the
/// identity's additions are skipped (a failed adoption leaves the account unmanaged and
/// as it was).
fn gates_additions(op: &Op) -> bool {
    matches!(
        op,
        Op::CreateAccount { .. } | Op::AdoptAccount { .. } | Op::EnableAccount { .. }
    )
}

/// Runs a batch through [`Connector::apply_batch`] in two steps with the same rules as
/// [`run_group`]: first every identity's account preparation, then the rest, where an
/// identity whose account could not be prepared has its additions skipped. Changes that
/// fail transiently are retried one by one after their step's batch, so an identity's
/// later changes of that step may land before the retry (they never depend on it:
/// accounts are prepared in the step before).
async fn run_batch(
    batch: Vec<Group<'_>>,
    connector: &dyn Connector,
    retry: Retry,
    clock: &(dyn Fn() -> Timestamp + Sync),
    on_done: &(dyn Fn(&Outcome) + Sync),
) -> Vec<(usize, Outcome)> {
    let mut first: Vec<(usize, &Change)> = Vec::new();
    let mut rest: Vec<Vec<(usize, &Change)>> = Vec::new();
    for group in batch {
        let lead = group
            .iter()
            .take_while(|(_, c)| prepares_account(&c.op))
            .count();
        let mut group = group.into_iter();
        first.extend(group.by_ref().take(lead));
        rest.push(group.collect());
    }
    let mut out = Vec::new();
    let mut unprepared: BTreeMap<String, String> = BTreeMap::new();
    for (i, outcome) in apply_all(&first, connector, retry, clock).await {
        if let ChangeResult::Failed { error, .. } = &outcome.result
            && gates_additions(&outcome.change.op)
        {
            unprepared.insert(
                outcome.change.op.identity().to_string(),
                format!("{NOT_PREPARED}{error}"),
            );
        }
        on_done(&outcome);
        out.push((i, outcome));
    }
    let mut send = Vec::new();
    for (i, change) in rest.into_iter().flatten() {
        match (unprepared.get(change.op.identity()), &change.op) {
            (Some(why), Op::AddEntitlement { .. }) => {
                let outcome = Outcome::skipped(change, why, clock());
                on_done(&outcome);
                out.push((i, outcome));
            }
            _ => send.push((i, change)),
        }
    }
    for (i, outcome) in apply_all(&send, connector, retry, clock).await {
        on_done(&outcome);
        out.push((i, outcome));
    }
    out
}

/// One `apply_batch` for `changes`, then a one-by-one retry of those that failed
/// transiently (with the attempts left).
async fn apply_all(
    changes: &[(usize, &Change)],
    connector: &dyn Connector,
    retry: Retry,
    clock: &(dyn Fn() -> Timestamp + Sync),
) -> Vec<(usize, Outcome)> {
    if changes.is_empty() {
        return Vec::new();
    }
    let ops: Vec<Op> = changes.iter().map(|(_, c)| c.op.clone()).collect();
    let results = connector.apply_batch(&ops).await;
    let policy = connector.retry().unwrap_or(retry);
    let mut out = Vec::with_capacity(changes.len());
    for (k, &(i, change)) in changes.iter().enumerate() {
        let (result, attempts) = match results.get(k) {
            Some(Err(e)) if e.class == ErrorClass::Transient && policy.attempts > 1 => {
                // The batch was the first attempt; the rest of the budget goes to this
                // change alone, after the wait the failure asked for.
                let wait = e.retry_after.unwrap_or(policy.first_backoff);
                if wait > policy.max_retry_after {
                    (Err(e.clone()), 1)
                } else {
                    tracing::warn!(error = %e, ?wait, "transient failure in a batch; retrying alone");
                    tokio::time::sleep(wait).await;
                    let rest = Retry {
                        attempts: policy.attempts - 1,
                        ..policy
                    };
                    let (r, n) = rest.run("apply", || connector.apply(&change.op)).await;
                    (r, n + 1)
                }
            }
            Some(r) => (r.clone(), 1),
            // A connector that returns too few results: the rest did not happen.
            None => (
                Err(ConnectorError::transient(
                    "the connector returned no result for this change",
                )),
                1,
            ),
        };
        out.push((i, Outcome::of(change, result, attempts, clock())));
    }
    out
}

/// One change through the one retry layer, with the System's own policy if it has one.
async fn with_retry(
    connector: &dyn Connector,
    op: &Op,
    retry: Retry,
) -> (Result<(), ConnectorError>, u32) {
    let retry = connector.retry().unwrap_or(retry);
    retry.run("apply", || connector.apply(op)).await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::connectors::{Capabilities, Snapshot};
    use crate::plan::Reason;

    /// Records each batch it is sent; fails creates of `bad@`, and the first attempt of
    /// anything for `flaky@` transiently.
    struct Recorder {
        size: usize,
        batches: Mutex<Vec<Vec<Op>>>,
        flaked: Mutex<bool>,
    }

    #[async_trait::async_trait]
    impl Connector for Recorder {
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                native_expiry: false,
                max_concurrency: 1,
            }
        }
        async fn read(&self) -> Result<Snapshot, ConnectorError> {
            Ok(Snapshot::default())
        }
        async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
            self.batches.lock().unwrap().push(vec![op.clone()]);
            self.result(op)
        }
        fn batch_size(&self) -> usize {
            self.size
        }
        async fn apply_batch(&self, ops: &[Op]) -> Vec<Result<(), ConnectorError>> {
            self.batches.lock().unwrap().push(ops.to_vec());
            ops.iter().map(|op| self.result(op)).collect()
        }
    }

    impl Recorder {
        fn result(&self, op: &Op) -> Result<(), ConnectorError> {
            match op {
                Op::CreateAccount { identity, .. } if identity.starts_with("bad@") => {
                    Err(ConnectorError::permanent("refused"))
                }
                _ if op.identity().starts_with("flaky@") => {
                    let mut flaked = self.flaked.lock().unwrap();
                    if *flaked {
                        Ok(())
                    } else {
                        *flaked = true;
                        Err(ConnectorError::transient("try again"))
                    }
                }
                _ => Ok(()),
            }
        }
    }

    fn change(op: Op) -> Change {
        Change {
            system: "portal".into(),
            client: None,
            op,
            reason: Reason::Declared,
            grant: None,
            retry: None,
        }
    }

    fn create(who: &str) -> Op {
        Op::CreateAccount {
            identity: who.into(),
            display_name: None,
        }
    }

    fn add(who: &str, what: &str) -> Op {
        Op::AddEntitlement {
            identity: who.into(),
            entitlement: what.into(),
        }
    }

    async fn run(size: usize, ops: Vec<Op>) -> (Vec<Outcome>, Vec<Vec<Op>>) {
        let plan = Plan {
            revision: "main@sha1:00".into(),
            now: Timestamp::UNIX_EPOCH,
            changes: ops.into_iter().map(change).collect(),
            drift: Vec::new(),
            out_of_scope: Vec::new(),
            systems: Vec::new(),
            holds: Vec::new(),
            refusals: Vec::new(),
            override_reason: None,
            next_change: None,
        };
        let recorder = Arc::new(Recorder {
            size,
            batches: Mutex::new(Vec::new()),
            flaked: Mutex::new(false),
        });
        let connectors: BTreeMap<String, Arc<dyn Connector>> =
            BTreeMap::from([("portal".to_string(), recorder.clone() as Arc<dyn Connector>)]);
        let retry = Retry {
            attempts: 3,
            first_backoff: std::time::Duration::from_millis(1),
            ..Retry::default()
        };
        let seen = Mutex::new(0);
        let outcomes = apply(
            &plan,
            &connectors,
            retry,
            &|| Timestamp::UNIX_EPOCH,
            &|_| *seen.lock().unwrap() += 1,
        )
        .await;
        assert_eq!(
            *seen.lock().unwrap(),
            outcomes.len(),
            "every outcome is reported"
        );
        let batches = recorder.batches.lock().unwrap().clone();
        (outcomes, batches)
    }

    fn results(outcomes: &[Outcome]) -> Vec<(String, &'static str, u32)> {
        outcomes
            .iter()
            .map(|o| {
                let r = match o.result {
                    ChangeResult::Applied => "applied",
                    ChangeResult::Failed { .. } => "failed",
                    ChangeResult::Skipped { .. } => "skipped",
                };
                (o.change.op.identity().to_string(), r, o.attempts)
            })
            .collect()
    }

    fn plan_ops() -> Vec<Op> {
        vec![
            create("a@x"),
            add("a@x", "e1"),
            create("bad@x"),
            add("bad@x", "e1"),
            add("flaky@x", "e1"),
            add("z@x", "e2"),
        ]
    }

    #[tokio::test]
    async fn batches_keep_the_one_by_one_rules() {
        let (one_by_one, _) = run(1, plan_ops()).await;
        let (batched, batches) = run(4, plan_ops()).await;
        let expected = vec![
            ("a@x".to_string(), "applied", 1),
            ("a@x".to_string(), "applied", 1),
            ("bad@x".to_string(), "failed", 1),
            ("bad@x".to_string(), "skipped", 0),
            ("flaky@x".to_string(), "applied", 2),
            ("z@x".to_string(), "applied", 1),
        ];
        assert_eq!(results(&one_by_one), expected);
        assert_eq!(results(&batched), expected, "same outcomes, in plan order");
        // Whole identity groups, at most 4 changes a batch: accounts first, then the rest
        // (without the add of the account that failed); the transient failure is
        // retried alone.
        assert_eq!(
            batches,
            vec![
                vec![create("a@x"), create("bad@x")],
                vec![add("a@x", "e1")],
                vec![add("flaky@x", "e1"), add("z@x", "e2")],
                vec![add("flaky@x", "e1")],
            ]
        );
    }
}
