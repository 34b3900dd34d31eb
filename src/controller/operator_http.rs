//! The operator's `/healthz`, `/readyz` and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `latchkey_operator_reconciles_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `applied`, `held`, `stalled` or `failed`.
    pub result: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by result.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Changes applied successfully.
    pub changes_applied: Counter,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Set once the operator has started (the server answers 200 on /readyz).
    pub ready: AtomicBool,
    /// Notification deliveries and the queue (crate::notify).
    pub notify: Arc<crate::notify::Metrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("latchkey_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let changes_applied = Counter::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        registry.register(
            "changes_applied",
            "Changes applied to systems",
            changes_applied.clone(),
        );
        registry.register("leader", "1 while this replica leads", leader.clone());
        let notify = Arc::new(crate::notify::Metrics::default());
        notify.register(&mut registry);
        Metrics {
            registry,
            reconciles,
            changes_applied,
            leader,
            ready: AtomicBool::new(false),
            notify,
        }
    }
}

impl Metrics {
    /// Counts one reconcile.
    pub fn reconciled(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The health and metrics routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, router(metrics.clone())).into_future());
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        metrics.ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        metrics.reconciled("held");
        metrics.leader.set(1);
        let body = get(addr, "/metrics").await;
        assert!(
            body.contains("latchkey_operator_reconciles_total{result=\"held\"} 1"),
            "{body}"
        );
        assert!(body.contains("latchkey_operator_leader 1"), "{body}");
        server.abort();
    }
}
