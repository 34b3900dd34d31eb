//! `latchkey run`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Args;
use tokio::sync::Notify;

use super::{CliError, Exit, RepoArgs, SummaryFormat, output};
use crate::audit::Trigger;
use crate::connectors::Secret;
use crate::controller::http::{Limits, Shared, router, serve};
use crate::controller::metrics::Metrics;
use crate::controller::run::{Controller, RunConfig, Tick};

/// Run the controller: keep the systems in line with a branch of the repository.
///
/// Fetches on an interval and on `POST /hooks/push`, ignores commits that touch only
/// audit/, wakes at the next `starts`/`expires` to revoke on time, and re-reads the
/// systems for drift. When the newest revision is invalid it keeps enforcing the last
/// valid one (including its expiries) and reports the invalid one in logs, metrics and
/// the audit. Serves /healthz, /readyz and /metrics. Stops cleanly on SIGTERM.
///
/// With --once: one reconcile, a summary of what it did, and the exit code apply gives
/// (0 applied or nothing to do, 1 errors or failed changes, 3 held).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey run https://git.example/agency/access.git --branch main --push \\
      --listen 0.0.0.0:9090 --log info --log-format json
  latchkey run access --once --format json     # one reconcile, e.g. from cron")]
pub struct RunArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The branch to enforce.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// How often to fetch, e.g. 30s, 5m.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub interval: Duration,
    /// How often to re-read the systems for drift.
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    pub drift_interval: Duration,
    /// Address for /healthz, /readyz, /metrics and /hooks/push.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Environment variable holding the push webhook's shared secret.
    #[arg(long, value_name = "VAR")]
    pub webhook_secret_env: Option<String>,
    /// Push audit commits to the remote.
    #[arg(long)]
    pub push: bool,
    /// Reconcile once and exit (for cron jobs and tests).
    #[arg(long)]
    pub once: bool,
    /// With --once: the summary as text (stderr) or json (stdout).
    #[arg(long, value_enum, default_value = "text", requires = "once")]
    pub format: SummaryFormat,
}

/// How long `run --once` waits for its notifications before it exits.
const ONCE_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn run(args: RunArgs) -> Result<Exit, CliError> {
    let webhook_secret = match &args.webhook_secret_env {
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                eprintln!("error: --webhook-secret-env {var}: the variable is not set");
                return Ok(Exit::Errors);
            }
        },
        None => None,
    };
    let shared = Arc::new(Shared {
        metrics: Metrics::new(),
        ready: AtomicBool::new(false),
        push: Notify::new(),
        webhook_secret,
    });
    let rec = args.repo.reconciler()?;
    let cfg = RunConfig {
        branch: args.branch.clone(),
        subpath: args.repo.subpath.clone(),
        interval: args.interval,
        drift_interval: args.drift_interval,
        push: args.push,
    };
    let mut controller = Controller::new(rec, cfg, shared.clone());
    if args.once {
        let tick = controller.tick(Trigger::Manual, args.repo.now()).await;
        tick.log(Trigger::Manual, controller.next_change);
        // The process exits next: give the notifications of this reconcile a bounded
        // time to go out (the outbox sends what is left on the next run).
        if !controller.drain_notifications(ONCE_DRAIN).await {
            tracing::warn!("notifications still queued at exit; the next run sends them");
        }
        match args.format {
            SummaryFormat::Text => eprintln!("{}", summary(&tick, controller.next_change)),
            SummaryFormat::Json => output::println(
                &serde_json::to_string_pretty(&summary_json(&tick, controller.next_change))
                    .unwrap_or_default(),
            )?,
        }
        return Ok(match tick {
            Tick::Applied { failed: 0, .. } | Tick::Idle => Exit::Ok,
            Tick::Held { .. } => Exit::Held,
            _ => Exit::Errors,
        });
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "latchkey run: enforcing {} of {} ; serving http://{}",
        args.branch,
        args.repo.repo,
        listener.local_addr()?
    );
    let app = router(shared.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server_task = tokio::spawn(async move {
        let mut rx = stop_rx;
        serve(listener, app, Limits::default(), async move {
            let _ = rx.changed().await;
        })
        .await;
    });
    controller.run(shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = server_task.await;
    Ok(Exit::Ok)
}

/// What one reconcile did, for a person.
fn summary(tick: &Tick, next: Option<jiff::Timestamp>) -> String {
    let mut s = match tick {
        Tick::Idle => "nothing to do: no new revision, no expiry due, no drift check".to_string(),
        Tick::Applied {
            revision,
            changes,
            failed,
        } => format!(
            "applied {revision}: {} of {}{}",
            changes - failed,
            super::count(*changes, "change"),
            if *failed > 0 {
                format!(", {failed} failed (retried on the next run)")
            } else {
                String::new()
            }
        ),
        Tick::Held { revision } => format!(
            "held at {revision}: a guard stopped the run and nothing was applied; \
             `latchkey plan` shows why and the flag that releases it"
        ),
        Tick::NoValidRevision => "the newest revision is invalid and no valid one is known: \
             nothing was applied; `latchkey validate --rev <branch>` shows why"
            .to_string(),
        Tick::Failed(e) => format!("failed: {e}; retried on the next run"),
    };
    if let Some(t) = next {
        s.push_str(&format!(
            "; next change at {}",
            crate::plan::render::instant(t)
        ));
    }
    s
}

/// What one reconcile did, for a script.
fn summary_json(tick: &Tick, next: Option<jiff::Timestamp>) -> serde_json::Value {
    let mut v = match tick {
        Tick::Idle => serde_json::json!({"outcome": "idle"}),
        Tick::Applied {
            revision,
            changes,
            failed,
        } => serde_json::json!({
            "outcome": "applied", "revision": revision, "changes": changes, "failed": failed,
        }),
        Tick::Held { revision } => serde_json::json!({"outcome": "held", "revision": revision}),
        Tick::NoValidRevision => serde_json::json!({"outcome": "noValidRevision"}),
        Tick::Failed(e) => serde_json::json!({"outcome": "failed", "error": e}),
    };
    v["nextChange"] = serde_json::json!(next.map(crate::plan::render::instant));
    v
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
