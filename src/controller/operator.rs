//! `latchkey operator`: a kube-runtime Controller over `AccessRepository`, running the
//! same pipeline as the CLI ([`crate::reconcile::Reconciler`]).
//!
//! No finalizer: deleting an AccessRepository must not revoke anyone's access (that
//! would turn `kubectl delete` into a mass offboarding), and the operator creates no
//! Kubernetes objects owned by it that would need cleaning up. Access changes only when
//! git says so.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::operator_http::Metrics;
use super::status::{self, Outcome};
use super::{AccessRepository, AccessRepositorySpec, AccessRepositoryStatus};
use crate::audit::Trigger;
use crate::connectors::{Registry, Secret, SecretSource};
use crate::notify::BranchNotifications;
use crate::reconcile::{Enforced, Options, ReconcileError, Reconciler, RunOutcome};
use crate::source::{GitCredentials, Location, SourceRepo};

/// The field manager of the status patches and the events' reporting controller.
pub const MANAGER: &str = "latchkey-operator";

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{name}: interval {value:?} is not a duration like 5m, 1h or 30s")]
    Interval { name: String, value: String },
    #[error("{name} has no namespace")]
    NoNamespace { name: String },
    #[error("cannot read Secret {namespace}/{secret}")]
    ReadSecret {
        namespace: String,
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status of {name}")]
    PatchStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{name}: {source}")]
    Reconcile {
        name: String,
        #[source]
        source: ReconcileError,
    },
    #[error("{name}: the reconcile task stopped: {message}")]
    Task { name: String, message: String },
}

impl Error {
    /// User errors need a person to change git or the resource; retrying sooner than
    /// the interval will not help.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Interval { .. } => true,
            Error::Reconcile { source, .. } => source.is_user_error(),
            _ => false,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Interval { .. } => "interval",
            Error::NoNamespace { .. } => "namespace",
            Error::ReadSecret { .. } => "secret",
            Error::PatchStatus { .. } => "status",
            Error::Reconcile { source, .. } => source.label(),
            Error::Task { .. } => "task",
        }
    }
}

/// Shared state of the reconciles.
pub struct Context {
    pub client: Client,
    /// Where remote repositories are mirrored, one directory per resource.
    pub cache_dir: PathBuf,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The clock; a parameter so tests pin time.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Consecutive transient failures per resource, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Each resource's reconciler, kept between reconciles so plans stay warm (parsed
    /// files, the last applied revision, the invalid revision already recorded).
    reconcilers: Reconcilers,
}

/// Reconcilers by resource, with the (url, branch, path) they were built for and the
/// resource's notifications.
type Reconcilers = Arc<Mutex<HashMap<String, (String, Reconciler, BranchNotifications)>>>;

impl Context {
    /// A context; `instance` names this replica in Events (the pod name).
    pub fn new(
        client: Client,
        cache_dir: PathBuf,
        instance: Option<String>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    ) -> Context {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            cache_dir,
            metrics,
            clock,
            failures: Mutex::default(),
            reconcilers: Reconcilers::default(),
        }
    }

    fn failures(&self, key: &str, reset: bool) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if reset {
            f.remove(key);
            return 0;
        }
        let n = f.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

/// An Event to publish about a reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Parses `interval`: `30s`, `5m`, `1h`, `1h30m`.
pub fn parse_interval(s: &str) -> Option<Duration> {
    let d: jiff::SignedDuration = s.parse().ok()?;
    let d = Duration::try_from(d).ok()?;
    (!d.is_zero()).then_some(d)
}

/// When to reconcile next: at the next grant start or expiry, or after the interval,
/// whichever is earlier (at least one second from now).
pub fn requeue_after(
    next_change: Option<Timestamp>,
    now: Timestamp,
    interval: Duration,
) -> Duration {
    let until_change = next_change
        .map(|t| t.duration_since(now))
        .map(|d| Duration::try_from(d).unwrap_or(Duration::ZERO));
    until_change
        .map_or(interval, |d| d.min(interval))
        .max(Duration::from_secs(1))
}

/// Reconciles one AccessRepository: plan, apply, audit, then status and Events.
pub async fn reconcile(obj: Arc<AccessRepository>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = obj.name_any();
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace { name: name.clone() })?;
    let key = format!("{namespace}/{name}");
    if obj.spec.suspend {
        tracing::info!(resource = %key, "suspended");
        return Ok(Action::await_change());
    }
    let now = (ctx.clock)();
    let interval = parse_interval(&obj.spec.interval);
    let (outcome, notices, error) = match interval {
        None => {
            let e = Error::Interval {
                name: key.clone(),
                value: obj.spec.interval.clone(),
            };
            let outcome = Outcome::Failed {
                revision: None,
                reason: "InvalidInterval".into(),
                message: e.to_string(),
                user_error: true,
            };
            (outcome, Vec::new(), Some(e))
        }
        Some(_) => {
            let secrets = read_systems_secret(&ctx.client, &namespace, &obj.spec).await?;
            let git = read_git_secret(&ctx.client, &namespace, &obj.spec).await?;
            let cache = ctx.cache_dir.join(&namespace).join(&name);
            run_pipeline(
                key.clone(),
                ctx.reconcilers.clone(),
                ctx.metrics.notify.clone(),
                obj.spec.clone(),
                obj.status.clone(),
                cache,
                secrets,
                git,
                now,
            )
            .await
            .map_err(|message| Error::Task {
                name: key.clone(),
                message,
            })
            .map(|r| {
                (
                    r.0,
                    r.1,
                    r.2.map(|source| Error::Reconcile {
                        name: key.clone(),
                        source,
                    }),
                )
            })?
        }
    };
    let next = status::compute(obj.status.as_ref(), &outcome, obj.metadata.generation, now);
    let api: Api<AccessRepository> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": AccessRepository::api_version(&()),
        "kind": AccessRepository::kind(&()),
        "status": next,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::PatchStatus {
        name: key.clone(),
        source,
    })?;
    let reference = obj.object_ref(&());
    for n in &notices {
        let event = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.into(),
            note: Some(truncate(&n.note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        // An Event that cannot be written must not fail the reconcile: status holds
        // the same facts.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(resource = %key, error = %e, "cannot publish event");
        }
    }
    let result = match (&outcome, &error) {
        (Outcome::Held { .. }, _) => "held",
        (_, Some(e)) if e.is_user_error() => "stalled",
        (_, Some(_)) => "failed",
        _ => "applied",
    };
    ctx.metrics.reconciled(result);
    if let Outcome::Applied { applied, .. } = &outcome {
        ctx.metrics.changes_applied.inc_by(*applied as u64);
    }
    match error {
        Some(e) => Err(e),
        None => {
            ctx.failures(&key, true);
            let next_change = match &outcome {
                Outcome::Applied { next_change, .. } | Outcome::Held { next_change, .. } => {
                    *next_change
                }
                Outcome::Failed { .. } => None,
            };
            let interval = interval.unwrap_or(Duration::from_secs(300));
            Ok(Action::requeue(requeue_after(next_change, now, interval)))
        }
    }
}

/// On user errors (invalid revision, history rewrite, bad interval) the resource is
/// Stalled: retry at the interval, since a fix arrives through git, which has no watch.
/// Transient errors back off exponentially from 5s, capped at the interval.
pub fn error_policy(obj: Arc<AccessRepository>, error: &Error, ctx: Arc<Context>) -> Action {
    let interval = parse_interval(&obj.spec.interval).unwrap_or(Duration::from_secs(300));
    tracing::warn!(resource = %obj.name_any(), error = %error, "reconcile failed");
    if error.is_user_error() {
        return Action::requeue(interval);
    }
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let n = ctx.failures(&key, false).min(16);
    Action::requeue(backoff(n, interval))
}

/// 5s, 10s, 20s, ... capped at `cap`.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = 2u64.saturating_pow(failures.saturating_sub(1));
    Duration::from_secs(5u64.saturating_mul(exp)).min(cap.max(Duration::from_secs(5)))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The `systemsSecretRef` Secret's keys, for Systems' `credentials.secretKey`.
async fn read_systems_secret(
    client: &Client,
    namespace: &str,
    spec: &AccessRepositorySpec,
) -> Result<SecretSource, Error> {
    let mut source = SecretSource::default();
    let Some(r) = &spec.systems_secret_ref else {
        return Ok(source);
    };
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get(&r.name).await.map_err(|source| Error::ReadSecret {
        namespace: namespace.to_string(),
        secret: r.name.clone(),
        source,
    })?;
    for (k, v) in secret.data.unwrap_or_default() {
        source
            .secret_keys
            .insert(k, Secret::new(String::from_utf8_lossy(&v.0).into_owned()));
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        source.secret_keys.insert(k, Secret::new(v));
    }
    Ok(source)
}

/// The `secretRef` Secret as git credentials, Flux's key names: `token` or `password`
/// (with optional `username`) for HTTPS, `identity` (an OpenSSH private key) for SSH.
/// Without a `secretRef`, the process environment's credentials apply.
async fn read_git_secret(
    client: &Client,
    namespace: &str,
    spec: &AccessRepositorySpec,
) -> Result<GitCredentials, Error> {
    let Some(r) = &spec.secret_ref else {
        return Ok(GitCredentials::from_env());
    };
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get(&r.name).await.map_err(|source| Error::ReadSecret {
        namespace: namespace.to_string(),
        secret: r.name.clone(),
        source,
    })?;
    let mut values: std::collections::BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    values.extend(secret.string_data.unwrap_or_default());
    Ok(GitCredentials {
        username: values.get("username").cloned(),
        token: values
            .get("token")
            .or_else(|| values.get("password"))
            .cloned(),
        ssh_key: values.get("identity").cloned(),
        ssh_key_file: None,
    })
}

type PipelineResult = (Outcome, Vec<Notice>, Option<ReconcileError>);

/// Runs the CLI's pipeline on a blocking thread: git2 and the SQL connectors block.
#[allow(clippy::too_many_arguments)]
async fn run_pipeline(
    key: String,
    reconcilers: Reconcilers,
    notify_metrics: Arc<crate::notify::Metrics>,
    spec: AccessRepositorySpec,
    previous: Option<AccessRepositoryStatus>,
    cache: PathBuf,
    secrets: SecretSource,
    git: GitCredentials,
    now: Timestamp,
) -> Result<PipelineResult, String> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // The resource's reconciler, when it was built for the same repository.
        let built_for = format!("{}\n{}\n{}", spec.url, spec.branch, spec.path);
        let (kept, notifications) = match reconcilers
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&key))
            .filter(|(k, _, _)| *k == built_for)
        {
            Some((_, r, n)) => (Some(r), n),
            None => (
                None,
                BranchNotifications::new(&spec.branch, &spec.path, notify_metrics),
            ),
        };
        let mut notifications = notifications;
        let (result, rec) = handle.block_on(pipeline(
            kept,
            &spec,
            previous.as_ref(),
            &cache,
            secrets,
            git,
            now,
        ));
        if let Some(mut rec) = rec {
            // Word of what the reconcile committed; it never changes the reconcile's result.
            let read_all =
                matches!(&result.0, Outcome::Applied { unreadable, .. } if unreadable.is_empty());
            let _runtime = handle.enter();
            notifications.after_run(&mut rec, now, read_all);
            if let Ok(mut m) = reconcilers.lock() {
                m.insert(key, (built_for, rec, notifications));
            }
        }
        result
    })
    .await
    .map_err(|e| e.to_string())
}

/// The pipeline, reduced to an [`Outcome`] and the Events to publish.
/// `kept` is the resource's reconciler from the last reconcile, returned for the next.
pub async fn pipeline(
    kept: Option<Reconciler>,
    spec: &AccessRepositorySpec,
    previous: Option<&AccessRepositoryStatus>,
    cache: &std::path::Path,
    secrets: SecretSource,
    git: GitCredentials,
    now: Timestamp,
) -> (PipelineResult, Option<Reconciler>) {
    let failed = |e: ReconcileError, revision: Option<String>| {
        let stalls = RunOutcome::of_error(&e).stalls();
        let notice = Notice {
            warning: true,
            reason: if stalls { "Refused" } else { "ReconcileFailed" },
            note: e.to_string(),
        };
        let outcome = Outcome::Failed {
            revision,
            reason: e.reason().into(),
            message: e.to_string(),
            user_error: stalls,
        };
        (outcome, vec![notice], Some(e))
    };
    let mut rec = match kept {
        Some(mut rec) => {
            // Secrets may have rotated since: the current ones, then a fetch.
            rec.registry = Registry::builtin(secrets);
            rec.repo.set_credentials(git);
            if let Err(e) = rec.repo.fetch() {
                return (failed(e.into(), None), Some(rec));
            }
            rec
        }
        None => match SourceRepo::open_with(&Location::parse(&spec.url), cache, git) {
            Ok(repo) => Reconciler::new(repo, Registry::builtin(secrets))
                .with_ledger_verification()
                .keep_committed(),
            Err(e) => return (failed(e.into(), None), None),
        },
    };
    let result = enforce(&mut rec, spec, previous, now, &failed).await;
    (result, Some(rec))
}

/// Enforces the branch through the shared driver and turns what happened into an
/// [`Outcome`] and Events.
async fn enforce(
    rec: &mut Reconciler,
    spec: &AccessRepositorySpec,
    previous: Option<&AccessRepositoryStatus>,
    now: Timestamp,
    failed: &dyn Fn(ReconcileError, Option<String>) -> PipelineResult,
) -> PipelineResult {
    let head = rec.repo.resolve(&spec.branch).ok().map(|r| r.display());
    let opts = Options {
        rev: spec.branch.clone(),
        branch: Some(spec.branch.clone()),
        subpath: spec.path.clone(),
        now,
        dry_run: false,
        push: spec.push,
        allow_mass_revoke: None,
        allow_rewind: None,
        allow_broken_ledger: None,
        trigger: trigger(previous, head.as_deref(), now),
    };
    // One writer per branch, also against a `latchkey apply` on the same mirror.
    let _lock = match rec.lock_writer(
        &opts,
        "latchkey operator",
        std::time::Duration::from_secs(30),
    ) {
        Ok(lock) => lock,
        Err(e) => return failed(e, head),
    };
    let applied = match rec.enforce(&opts, None, &|_| {}).await {
        Ok(Enforced::Newest(Ok(applied))) => applied,
        Ok(Enforced::Newest(Err(e))) => return failed(e, head),
        Ok(Enforced::KeptLastValid {
            revision,
            errors,
            fallback,
        }) => {
            if let Some(Err(e)) = fallback {
                tracing::warn!(error = %e, "could not enforce the last valid revision");
            }
            let first = errors
                .first()
                .map(|d| d.to_string().lines().next().unwrap_or("").to_string())
                .unwrap_or_default();
            let mut r = failed(
                ReconcileError::Invalid {
                    revision: revision.clone(),
                    errors,
                },
                Some(revision),
            );
            if let Outcome::Failed { message, .. } = &mut r.0 {
                message.push_str(&format!("; first: {first}"));
            }
            return r;
        }
        Err(e) => {
            let revision = rec.repo.resolve(&opts.rev).ok().map(|r| r.display());
            return failed(e, revision);
        }
    };
    let planned = &applied.planned;
    let revision = planned.plan.revision.clone();
    let next_change = planned.plan.next_change;
    let managed: usize = planned.desired.systems.values().map(|a| a.len()).sum();
    let unreadable: Vec<String> = planned
        .plan
        .systems
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.system)))
        .collect();
    let planned_changes = planned.plan.changes.len();
    if applied.held {
        let message = applied
            .planned
            .plan
            .holds
            .iter()
            .map(|h| h.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        let notice = Notice {
            warning: true,
            reason: "Held",
            note: format!("{message}. Nothing was applied; review the change in git."),
        };
        let outcome = Outcome::Held {
            revision,
            managed_accounts: managed,
            pending: planned_changes,
            message,
            next_change,
        };
        return (outcome, vec![notice], None);
    }
    let failures = applied.failures();
    let ok = applied.outcomes.len() - failures;
    let mut notices = Vec::new();
    if ok > 0 {
        notices.push(Notice {
            warning: false,
            reason: "Applied",
            note: format!("applied {ok} changes from {revision}"),
        });
    }
    if !unreadable.is_empty() {
        notices.push(Notice {
            warning: true,
            reason: "SystemUnreadable",
            note: format!("not reconciled: {}", unreadable.join("; ")),
        });
    }
    if failures > 0 {
        notices.push(Notice {
            warning: true,
            reason: "ChangesFailed",
            note: format!("{failures} changes from {revision} failed; see the audit ledger"),
        });
    }
    let outcome = Outcome::Applied {
        revision,
        managed_accounts: managed,
        pending: failures,
        applied: ok,
        next_change,
        unreadable,
    };
    (outcome, notices, None)
}

/// Why this run happens, for the audit: a new revision, a due grant change, or a
/// periodic re-read of the same revision.
pub fn trigger(
    previous: Option<&AccessRepositoryStatus>,
    head: Option<&str>,
    now: Timestamp,
) -> Trigger {
    let Some(prev) = previous else {
        return Trigger::Merge;
    };
    if head.is_none() || prev.last_applied_revision.as_deref() != head {
        return Trigger::Merge;
    }
    let due = prev
        .next_expiry
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|t| t <= now);
    if due { Trigger::Expiry } else { Trigger::Drift }
}

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch one namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    pub cache_dir: PathBuf,
    /// Where /healthz, /readyz and /metrics are served.
    pub listen: std::net::SocketAddr,
    /// The Lease: `namespace/name`.
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
}

/// Runs the operator until a signal or until leadership is lost (the process then exits
/// and Kubernetes restarts it as a follower).
pub async fn run(cfg: OperatorConfig) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let routes = super::operator_http::router(metrics.clone());
    // The same limits as `run`'s server: idle or half-sent requests cannot pile up.
    let server = tokio::spawn(super::http::serve(
        listener,
        routes,
        super::http::Limits::default(),
        std::future::pending(),
    ));
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let lock = super::leader::LeaseLock::new(
        Api::namespaced(client.clone(), &cfg.lease_namespace),
        &cfg.lease_name,
        &cfg.identity,
        cfg.lease_duration,
    );
    loop {
        match lock.try_acquire_or_renew(Timestamp::now()).await {
            Ok(l) if l.is_leader() => break,
            Ok(l) => tracing::info!(?l, "waiting for the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "cannot read the leader Lease"),
        }
        tokio::time::sleep(lock.retry_period()).await;
    }
    metrics.leader.set(1);
    tracing::info!(identity = %cfg.identity, "leading");
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lost_flag = lost.clone();
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let renew_every = lock.retry_period();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(renew_every).await;
            match lock.try_acquire_or_renew(Timestamp::now()).await {
                Ok(l) if l.is_leader() => {}
                outcome => {
                    tracing::error!(?outcome, "lost the leader Lease; stopping");
                    lost_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = lost_tx.send(());
                    return;
                }
            }
        }
    });
    let api: Api<AccessRepository> = match &cfg.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = Arc::new(Context::new(
        client,
        cfg.cache_dir.clone(),
        Some(cfg.identity.clone()),
        metrics,
        Arc::new(Timestamp::now),
    ));
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(async move {
            let _ = lost_rx.await;
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller");
            }
        })
        .await;
    server.abort();
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        // A non-zero exit makes the restart visible; the pod comes back as a follower.
        return Err(RunError::LostLease);
    }
    Ok(())
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the leader Lease; exiting so a follower takes over")]
    LostLease,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_is_the_earlier_of_expiry_and_interval() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let soon: Timestamp = "2026-11-23T10:01:00Z".parse().unwrap();
        let five = Duration::from_secs(300);
        assert_eq!(
            requeue_after(Some(soon), now, five),
            Duration::from_secs(60)
        );
        assert_eq!(requeue_after(None, now, five), five);
        let past: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        assert_eq!(requeue_after(Some(past), now, five), Duration::from_secs(1));
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("soon"), None);
    }

    #[test]
    fn trigger_tells_merge_expiry_and_drift_apart() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let prev = AccessRepositoryStatus {
            last_applied_revision: Some("main@sha1:aa".into()),
            next_expiry: Some("2026-11-23T09:59:00Z".into()),
            ..Default::default()
        };
        assert_eq!(trigger(None, Some("main@sha1:aa"), now), Trigger::Merge);
        assert_eq!(
            trigger(Some(&prev), Some("main@sha1:bb"), now),
            Trigger::Merge
        );
        assert_eq!(
            trigger(Some(&prev), Some("main@sha1:aa"), now),
            Trigger::Expiry
        );
        let later = AccessRepositoryStatus {
            next_expiry: Some("2026-11-23T11:00:00Z".into()),
            ..prev
        };
        assert_eq!(
            trigger(Some(&later), Some("main@sha1:aa"), now),
            Trigger::Drift
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, cap), Duration::from_secs(5));
        assert_eq!(backoff(3, cap), Duration::from_secs(20));
        assert_eq!(backoff(10, cap), cap);
    }
}
