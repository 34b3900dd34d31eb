//! Executes a plan through the connectors.
//!
//! Changes of one identity run in plan order (account before entitlements, entitlements
//! before disable); identities run concurrently up to the connector's limit. A failed
//! change never stops the others; a failed account creation skips that identity's adds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    pub fn failed(&self) -> bool {
        !matches!(self.result, ChangeResult::Applied)
    }
}

/// Retry policy for transient errors.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_backoff: Duration::from_millis(200),
        }
    }
}

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
            (Some(why), Op::AddEntitlement { .. }) => Outcome {
                change: change.clone(),
                result: ChangeResult::Skipped { why: why.clone() },
                at: clock(),
                attempts: 0,
            },
            _ => {
                let (result, attempts) = with_retry(connector, &change.op, retry).await;
                let result = match result {
                    Ok(()) => ChangeResult::Applied,
                    Err(e) => {
                        // An account not created, adopted or enabled gains nothing: a
                        // failed adoption leaves the account unmanaged and as it was.
                        if matches!(
                            change.op,
                            Op::CreateAccount { .. }
                                | Op::AdoptAccount { .. }
                                | Op::EnableAccount { .. }
                        ) {
                            account_failed =
                                Some(format!("the account could not be prepared: {}", e.message));
                        }
                        ChangeResult::Failed {
                            class: e.class,
                            error: e.message,
                        }
                    }
                };
                Outcome {
                    change: change.clone(),
                    result,
                    at: clock(),
                    attempts,
                }
            }
        };
        on_done(&outcome);
        out.push((i, outcome));
    }
    out
}

async fn with_retry(
    connector: &dyn Connector,
    op: &Op,
    retry: Retry,
) -> (Result<(), ConnectorError>, u32) {
    let mut backoff = retry.first_backoff;
    let mut attempt = 1;
    loop {
        match connector.apply(op).await {
            Err(e) if e.class == ErrorClass::Transient && attempt < retry.attempts => {
                tracing::warn!(attempt, error = %e, "transient failure; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            other => return (other, attempt),
        }
    }
}
