//! Delivery: a bounded queue and one background task that sends each delivery with
//! retries and backoff. Offering never blocks and never fails a reconcile: a full queue
//! drops the delivery (counted, logged, recorded as `dropped`), and an outbox that cannot
//! be written is logged and the delivery skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::event::{Event, EventKind};
use super::outbox::{Delivery, Outbox, OutboxError, State};
use crate::connectors::retry::Retry;
use crate::connectors::{ConnectorError, SecretSource};
use crate::load::Item;
use crate::model::{GrantDuration, NotifierSpec, ReceiverType};

/// The signature header: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE: &str = "x-latchkey-signature";
/// The delivery header: the event's id, stable across retries and restarts.
pub const DELIVERY: &str = "x-latchkey-delivery";
/// The event kind header.
pub const EVENT: &str = "x-latchkey-event";
/// When the attempt was sent, in Unix seconds.
pub const TIMESTAMP: &str = "x-latchkey-timestamp";

/// The default `expiringWithin`.
pub const DEFAULT_EXPIRING_WITHIN: SignedDuration = SignedDuration::from_hours(72);

/// How deliveries are made.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Deliveries waiting at most; beyond, offers are dropped.
    pub queue: usize,
    /// Attempts and backoff (the connectors' retry layer, on backon).
    pub retry: Retry,
    /// One attempt's time limit.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue: 1000,
            retry: Retry {
                attempts: 6,
                first_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
                max_retry_after: Duration::from_secs(300),
            },
            timeout: Duration::from_secs(10),
        }
    }
}

type Labels = Vec<(String, String)>;

/// Delivery metrics, registered in the controller's or the operator's registry.
#[derive(Default)]
pub struct Metrics {
    /// `latchkey_notifications_total{notifier,event,result}`: result is `delivered`,
    /// `failed` or `dropped`.
    pub total: Family<Labels, Counter>,
    /// Deliveries waiting in the queue.
    pub queue_depth: Gauge,
}

impl Metrics {
    /// Registers both metrics (under the registry's `latchkey` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications",
            "Notifications by notifier, event and result (delivered, failed, dropped)",
            self.total.clone(),
        );
        registry.register(
            "notification_queue_depth",
            "Notifications waiting to be sent",
            self.queue_depth.clone(),
        );
    }

    fn count(&self, d: &Delivery, state: State) {
        let labels = vec![
            ("notifier".to_string(), d.notifier.clone()),
            ("event".to_string(), d.event.event.as_str().to_string()),
            ("result".to_string(), state.as_str().to_string()),
        ];
        self.total.get_or_create(&labels).inc();
    }
}

/// Why notifications cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("cannot build the HTTP client for notifications: {0}")]
    Http(String),
}

/// What the task shares with the offering side.
struct Shared {
    outbox: Mutex<Outbox>,
    notifiers: RwLock<BTreeMap<String, NotifierSpec>>,
    secrets: RwLock<SecretSource>,
    metrics: Arc<Metrics>,
    /// Queued and not yet settled (for [`Notifications::drain`]).
    in_flight: AtomicUsize,
}

/// The notifications of one branch: the outbox, the queue and the sending task.
pub struct Notifications {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Delivery>,
    /// Queued in the outbox by an earlier process: sent once notifiers are known.
    resend: Vec<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Notifications {
    /// Opens the outbox at `outbox` and starts the sending task (on the current tokio
    /// runtime).
    pub fn start(
        outbox: PathBuf,
        secrets: SecretSource,
        metrics: Arc<Metrics>,
        config: Config,
        now: Timestamp,
    ) -> Result<Notifications, NotifyError> {
        let outbox = Outbox::open(&outbox, now)?;
        let resend = outbox.queued();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Http(e.to_string()))?;
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            notifiers: RwLock::default(),
            secrets: RwLock::new(secrets),
            metrics,
            in_flight: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let task = tokio::spawn(send_all(rx, shared.clone(), http, config.retry));
        Ok(Notifications {
            shared,
            tx,
            resend,
            task,
        })
    }

    /// The Notifiers in force (those of the last applied revision).
    pub fn set_notifiers(&self, notifiers: &BTreeMap<String, Item<NotifierSpec>>) {
        let specs = notifiers
            .iter()
            .map(|(k, v)| (k.clone(), v.spec.clone()))
            .collect();
        *self
            .shared
            .notifiers
            .write()
            .unwrap_or_else(|p| p.into_inner()) = specs;
    }

    /// The secrets Notifiers' credentials resolve against (they may rotate).
    pub fn set_secrets(&self, secrets: SecretSource) {
        *self
            .shared
            .secrets
            .write()
            .unwrap_or_else(|p| p.into_inner()) = secrets;
    }

    /// The widest `expiringWithin` of the Notifiers in force that want `grant-expiring`.
    pub fn expiring_within(&self) -> Option<SignedDuration> {
        self.window_for(EventKind::GrantExpiring)
    }

    /// How far ahead due reviews are looked for: the widest `expiringWithin` of the
    /// notifiers that want `review-due`; None when none does.
    pub fn review_within(&self) -> Option<SignedDuration> {
        self.window_for(EventKind::ReviewDue)
    }

    fn window_for(&self, kind: EventKind) -> Option<SignedDuration> {
        let notifiers = self
            .shared
            .notifiers
            .read()
            .unwrap_or_else(|p| p.into_inner());
        notifiers
            .values()
            .filter(|n| wants(n, kind))
            .map(window)
            .max()
    }

    /// Offers events to every Notifier in force that wants them; each (notifier, event)
    /// is queued once in the outbox's lifetime. Never blocks.
    pub fn offer(&mut self, events: &[Event], now: Timestamp) {
        let notifiers = self
            .shared
            .notifiers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for d in std::mem::take(&mut self.resend) {
            self.enqueue(d);
        }
        for (name, spec) in &notifiers {
            for e in events.iter().filter(|e| selects(spec, e, now)) {
                let d = Delivery {
                    notifier: name.clone(),
                    event: e.clone(),
                };
                let mut outbox = self.shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
                if outbox.knows(&d.key()) {
                    continue;
                }
                if let Err(e) = outbox.queue(&d, now) {
                    // Not recorded, so not sent: a later run offers it again.
                    tracing::warn!(error = %e, "cannot record a notification; not sending it");
                    continue;
                }
                drop(outbox);
                self.enqueue(d);
            }
        }
    }

    fn enqueue(&self, d: Delivery) {
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(d) {
            Ok(()) => {
                self.shared.metrics.queue_depth.inc();
            }
            Err(e) => {
                let d = e.into_inner();
                tracing::warn!(notifier = %d.notifier, event = d.event.event.as_str(), id = %d.event.id, "the notification queue is full; dropped");
                settle(
                    &self.shared,
                    &d,
                    State::Dropped,
                    0,
                    Some("the queue was full".into()),
                );
            }
        }
    }

    /// Waits until every queued delivery is settled, at most `timeout` (for `run
    /// --once`, which exits after one reconcile). True when all were.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// The Notifier's `expiringWithin` (validated at load; the default otherwise).
fn window(spec: &NotifierSpec) -> SignedDuration {
    spec.expiring_within
        .as_deref()
        .and_then(|d| GrantDuration::parse(d).ok())
        .map_or(DEFAULT_EXPIRING_WITHIN, GrantDuration::as_signed)
}

fn wants(spec: &NotifierSpec, kind: EventKind) -> bool {
    spec.events
        .as_ref()
        .is_none_or(|events| events.iter().any(|e| e == kind.as_str()))
}

/// Whether `spec` wants `e`: its kind, its client, and for an expiring grant its window.
fn selects(spec: &NotifierSpec, e: &Event, now: Timestamp) -> bool {
    let client = match (&spec.clients, &e.client) {
        (Some(only), Some(c)) => only.contains(c),
        _ => true,
    };
    let in_window = match (e.event, e.expires) {
        (EventKind::GrantExpiring, Some(at)) => at.duration_since(now) <= window(spec),
        _ => true,
    };
    wants(spec, e.event) && client && in_window
}

fn settle(shared: &Shared, d: &Delivery, state: State, attempts: u32, error: Option<String>) {
    shared.metrics.count(d, state);
    let mut outbox = shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = outbox.settle(d, state, attempts, error, Timestamp::now()) {
        tracing::warn!(error = %e, id = %d.event.id, "cannot record how a notification ended");
    }
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// The sending task: one delivery at a time, in order.
async fn send_all(
    mut rx: mpsc::Receiver<Delivery>,
    shared: Arc<Shared>,
    http: reqwest::Client,
    retry: Retry,
) {
    while let Some(d) = rx.recv().await {
        shared.metrics.queue_depth.dec();
        let spec = shared
            .notifiers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&d.notifier)
            .cloned();
        let Some(spec) = spec else {
            settle(
                &shared,
                &d,
                State::Failed,
                0,
                Some("the Notifier is no longer declared".into()),
            );
            continue;
        };
        let resolved = {
            let secrets = shared.secrets.read().unwrap_or_else(|p| p.into_inner());
            secrets
                .resolve(&spec.url)
                .map_err(|e| format!("url: {e}"))
                .and_then(|url| {
                    Ok((
                        url,
                        secrets
                            .resolve(&spec.secret)
                            .map_err(|e| format!("secret: {e}"))?,
                    ))
                })
        };
        let (url, secret) = match resolved {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(notifier = %d.notifier, error = %e, "cannot send a notification");
                settle(&shared, &d, State::Failed, 0, Some(e));
                continue;
            }
        };
        let body = body(spec.receiver, &d.event);
        let signature = sign(secret.expose(), &body);
        let what = format!("notification {} to {}", d.event.id, d.notifier);
        let (result, attempts) = retry
            .run(&what, || {
                post(&http, url.expose(), &body, &signature, &d.event)
            })
            .await;
        match result {
            Ok(()) => settle(&shared, &d, State::Delivered, attempts, None),
            Err(e) => {
                tracing::warn!(notifier = %d.notifier, id = %d.event.id, attempts, error = %e.message, "notification not delivered");
                settle(&shared, &d, State::Failed, attempts, Some(e.message));
            }
        }
    }
}

/// The request body: the event as JSON, or Slack's `{"text": ...}`.
pub fn body(receiver: ReceiverType, e: &Event) -> Vec<u8> {
    let value = match receiver {
        ReceiverType::Webhook => serde_json::to_value(e).unwrap_or_default(),
        ReceiverType::Slack => serde_json::json!({
            "text": format!("latchkey {}: {}", e.event.as_str(), e.message),
        }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `sha256=<hex>` of HMAC-SHA256 over `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One attempt. 2xx is delivered; 429 and 5xx are retried; other answers are final.
/// Errors never name the URL (it may hold a token).
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: &str,
    e: &Event,
) -> Result<(), ConnectorError> {
    let sent = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE, signature)
        .header(DELIVERY, &e.id)
        .header(EVENT, e.event.as_str())
        .header(TIMESTAMP, Timestamp::now().as_second().to_string())
        .body(body.to_vec())
        .send()
        .await
        .map_err(|err| ConnectorError::transient(err.without_url().to_string()))?;
    let status = sent.status();
    if status.is_success() {
        return Ok(());
    }
    let message = format!("HTTP {}", status.as_u16());
    let wait = sent
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::connectors::retry::retry_after(v, std::time::SystemTime::now()));
    if status.as_u16() == 429 || status.is_server_error() {
        Err(ConnectorError::transient(message).with_retry_after(wait))
    } else {
        Err(ConnectorError::permanent(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
