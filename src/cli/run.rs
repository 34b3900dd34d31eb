//! `latchkey run`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Args;
use tokio::sync::Notify;

use super::{CliError, Exit, RepoArgs};
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
#[derive(Args, Debug)]
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
}

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
        eprintln!("{tick:?}");
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

async fn shutdown_signal() {
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
