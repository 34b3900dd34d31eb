//! Prometheus metrics of the controller.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::apply::{ChangeResult, Outcome};

type Labels = Vec<(String, String)>;

/// Every metric `run` exposes on `/metrics`.
pub struct Metrics {
    registry: Registry,
    pub reconcile_duration: Histogram,
    pub reconciles: Family<Labels, Counter>,
    pub changes: Family<Labels, Counter>,
    pub brake_holds: Counter,
    pub expiry_lag: Histogram,
    pub drift: Gauge,
    pub invalid_revision: Gauge,
    pub last_applied: Gauge<f64, AtomicU64>,
    /// Notification deliveries and the queue (crate::notify).
    pub notify: std::sync::Arc<crate::notify::Metrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("latchkey");
        let m = Metrics {
            registry: Registry::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            reconciles: Family::default(),
            changes: Family::default(),
            brake_holds: Counter::default(),
            expiry_lag: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            drift: Gauge::default(),
            invalid_revision: Gauge::default(),
            last_applied: Gauge::default(),
            notify: Default::default(),
        };
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by trigger and outcome",
            m.reconciles.clone(),
        );
        registry.register(
            "changes",
            "Changes applied, by system, change and result",
            m.changes.clone(),
        );
        registry.register(
            "brake_holds",
            "Runs held by the deletion brake or empty-client guard",
            m.brake_holds.clone(),
        );
        registry.register(
            "expiry_lag_seconds",
            "Revocation time minus the grant's expires, for expired grants",
            m.expiry_lag.clone(),
        );
        registry.register(
            "drift_entitlements",
            "Undeclared entitlements left in place",
            m.drift.clone(),
        );
        registry.register(
            "invalid_revision",
            "1 while the newest revision does not validate",
            m.invalid_revision.clone(),
        );
        registry.register(
            "last_applied_timestamp_seconds",
            "When a revision was last applied",
            m.last_applied.clone(),
        );
        m.notify.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Counts applied changes and the expiry lag of revocations.
    pub fn observe(&self, outcome: &Outcome) {
        let result = match outcome.result {
            ChangeResult::Applied => "applied",
            ChangeResult::Failed { .. } => "failed",
            ChangeResult::Skipped { .. } => "skipped",
        };
        let labels = vec![
            ("system".to_string(), outcome.change.system.clone()),
            (
                "change".to_string(),
                outcome.change.verb().replace(' ', "-"),
            ),
            ("result".to_string(), result.to_string()),
        ];
        self.changes.get_or_create(&labels).inc();
        if outcome.change.reason.is_time_up()
            && matches!(outcome.result, ChangeResult::Applied)
            && let Some(expires) = outcome.change.grant.as_ref().and_then(|g| g.expires)
        {
            let lag = outcome.at.duration_since(expires).as_secs_f64().max(0.0);
            self.expiry_lag.observe(lag);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
