//! `latchkey operator`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, Exit};
use crate::controller::operator::{self, OperatorConfig};

/// Run the Kubernetes operator: reconcile every AccessRepository resource.
///
/// Uses the in-cluster service account (or KUBECONFIG). Replicas elect a leader through
/// a coordination.k8s.io Lease; only the leader reconciles. Serves /healthz, /readyz
/// and /metrics on --listen.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey operator --log info --log-format json            # as the chart runs it
  KUBECONFIG=~/.kube/config latchkey operator --namespace access")]
pub struct OperatorArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "LATCHKEY_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Where remote repositories are mirrored.
    #[arg(
        long,
        env = "LATCHKEY_CACHE_DIR",
        default_value = "/var/cache/latchkey"
    )]
    pub cache_dir: PathBuf,
    /// Address of the health and metrics server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "latchkey-system")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "latchkey-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "latchkey-operator")]
    pub identity: String,
    /// Seconds a leader that stops renewing keeps the Lease.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
}

pub async fn run(args: OperatorArgs) -> Result<Exit, CliError> {
    let cfg = OperatorConfig {
        namespace: args.namespace.filter(|n| !n.is_empty()),
        cache_dir: args.cache_dir,
        listen: args.listen,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        identity: args.identity,
        lease_duration: Duration::from_secs(args.lease_seconds.max(3)),
    };
    operator::run(cfg).await?;
    Ok(Exit::Ok)
}
