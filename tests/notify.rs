//! Notifications end to end (docs/notifications.md): a receiver started here on loopback
//! records every request; the controller runs in-process at chosen instants and is
//! restarted on the same repository.

mod common;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{Workspace, base_in, controller, member};
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use latchkey::audit::Trigger;
use latchkey::controller::run::{Controller, Tick};

const SECRET: &str = "hook-s3cret-do-not-leak";
const TOKEN: &str = "T0KEN-in-the-url";

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A webhook receiver: answers 500 to the first `fail_first` requests (and to every
/// request while `down`), then 200.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    fail_first: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (Receiver::serve(listener, fail_first), addr)
    }

    fn serve(listener: tokio::net::TcpListener, fail_first: usize) -> Receiver {
        let r = Receiver::default();
        r.fail_first.store(fail_first, Ordering::SeqCst);
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook/{token}",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let fail = state.down.load(Ordering::SeqCst)
                        || state
                            .fail_first
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                    let status = if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    state.got.lock().unwrap().push(Got {
                        status: status.as_u16(),
                        headers,
                        body,
                    });
                    status
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn delivered(&self) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.status == 200).collect()
    }
}

/// A Notifier whose URL and secret come from files (as a mounted Secret would).
fn notifier(ws: &Workspace, addr: SocketAddr, extra: &str) -> String {
    let url = ws.path().join("hook-url");
    let secret = ws.path().join("hook-secret");
    std::fs::write(&url, format!("http://{addr}/hook/{TOKEN}\n")).unwrap();
    std::fs::write(&secret, SECRET).unwrap();
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: Notifier\nmetadata: {{name: ops}}\nspec:\n  type: webhook\n  url: {{file: {}}}\n  secret: {{file: {}}}\n{extra}",
        url.display(),
        secret.display()
    )
}

/// The base repository with admins named on both clients.
fn base(ws: &Workspace) -> String {
    base_in(ws)
        .replace(
            "  requireExpiry: [staging]\n",
            "  requireExpiry: [staging]\n  admins: [ann@acme.example]\n",
        )
        .replace(
            "metadata: {name: studio}\nspec:\n  allowedRoles: [viewer]\n",
            "metadata: {name: studio}\nspec:\n  allowedRoles: [viewer]\n  admins: [boss@studio.example]\n",
        )
}

/// Quick retries, so the tests take milliseconds per backoff.
fn quick(mut c: Controller, attempts: u32) -> Controller {
    c.notifications.config.retry.attempts = attempts;
    c.notifications.config.retry.first_backoff = Duration::from_millis(20);
    c.notifications.config.retry.max_backoff = Duration::from_millis(50);
    c.notifications.config.timeout = Duration::from_secs(2);
    c
}

fn verify(g: &Got) {
    let sig = g.header("x-latchkey-signature");
    let hex_sig = sig.strip_prefix("sha256=").expect("sha256= signature");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&g.body);
    mac.verify_slice(&hex::decode(hex_sig).unwrap())
        .expect("the signature verifies with the notifier's secret");
    assert!(g.header("x-latchkey-timestamp").parse::<i64>().is_ok());
}

fn no_secrets(g: &Got) {
    let body = String::from_utf8_lossy(&g.body);
    assert!(!body.contains(SECRET), "the secret leaked: {body}");
    assert!(!body.contains(TOKEN), "the URL's token leaked: {body}");
}

#[tokio::test]
async fn signed_events_are_retried_after_500s_and_not_repeated_after_a_restart() {
    let (receiver, addr) = Receiver::start(2).await;
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    let expires = t0 + SignedDuration::from_hours(48);
    let grant = format!("    - role: viewer\n    - role: staging-admin\n      expires: {expires}");
    ws.commit(
        &[
            ("latchkey.yaml", &base(&ws)),
            ("notify.yaml", &notifier(&ws, addr, "")),
            ("clients/acme/members.yaml", &member("erin", &grant)),
        ],
        t0.as_second(),
        "erin, and word to ops",
    );
    let mut c = quick(controller(&ws), 5);
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);

    // Two 500s, then the delivery: three attempts of one event.
    let got = receiver.got();
    assert_eq!(
        got.iter().map(|g| g.status).collect::<Vec<_>>(),
        [500, 500, 200],
        "{got:?}"
    );
    let id = got[0].header("x-latchkey-delivery").to_string();
    assert_eq!(id.len(), 64, "a sha256 id");
    assert!(got.iter().all(|g| g.header("x-latchkey-delivery") == id));
    for g in &got {
        verify(g);
        no_secrets(g);
    }
    let e = got[2].json();
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["event"], "grant-expiring");
    assert_eq!(got[2].header("x-latchkey-event"), "grant-expiring");
    assert_eq!(e["identity"], "erin@acme.example");
    assert_eq!(e["client"], "acme");
    assert_eq!(e["role"], "staging-admin");
    assert_eq!(e["expires"], expires.to_string().as_str());
    assert_eq!(e["agency"], "studio");
    assert_eq!(
        e["recipients"],
        serde_json::json!(["ann@acme.example", "boss@studio.example"])
    );
    let metrics = c.shared().metrics.render();
    assert!(
        metrics.contains(
            "latchkey_notifications_total{notifier=\"ops\",event=\"grant-expiring\",result=\"delivered\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("latchkey_notification_queue_depth 0"),
        "{metrics}"
    );

    // A restart an hour later sees the same grant in the window: not sent again.
    drop(c);
    let mut c = quick(controller(&ws), 5);
    let tick = c
        .tick(Trigger::Drift, t0 + SignedDuration::from_hours(1))
        .await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    assert_eq!(receiver.got().len(), 3, "no duplicate after a restart");

    // At the expiry: the revocation, once per revoked entitlement.
    let tick = c.tick(Trigger::Expiry, expires).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    let expired: Vec<_> = receiver
        .delivered()
        .into_iter()
        .map(|g| g.json())
        .filter(|e| e["event"] == "grant-expired")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["system"], "staging");
    assert_eq!(expired[0]["entitlement"], "acme:admin");
    assert_eq!(expired[0]["recipients"][0], "ann@acme.example");
}

/// erin (offboarded or not) and dana, who keeps the client from being emptied.
fn two(offboarded: bool) -> String {
    let erin = member("erin", "    - role: viewer");
    let erin = if offboarded {
        format!("{erin}  offboarded: true\n")
    } else {
        erin
    };
    format!("{erin}---\n{}", member("dana", "    - role: viewer"))
}

#[tokio::test]
async fn a_receiver_that_is_down_never_blocks_the_reconcile_and_a_restart_sends_what_was_queued() {
    // A port nothing listens on: every attempt is refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    ws.commit(
        &[
            ("latchkey.yaml", &base(&ws)),
            (
                "notify.yaml",
                &notifier(
                    &ws,
                    addr,
                    "  events: [offboarding-completed, change-failed]\n",
                ),
            ),
            ("clients/acme/members.yaml", &two(false)),
        ],
        t0.as_second(),
        "erin and dana",
    );
    let mut c = quick(controller(&ws), 1000);
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    let offboard = ws.commit(
        &[("clients/acme/members.yaml", &two(true))],
        t0.as_second() + 60,
        "erin leaves",
    );
    let t1 = t0 + SignedDuration::from_mins(2);
    let started = std::time::Instant::now();
    let tick = c.tick(Trigger::Merge, t1).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the reconcile waited for the receiver"
    );
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(
        ws.rows("portal.sqlite")
            .iter()
            .any(|(e, active, _)| e == "erin@acme.example" && !active),
        "the offboarding was applied"
    );
    assert!(
        ws.ledger().iter().any(|r| r["reason"] == "offboarded"),
        "and committed"
    );
    assert!(!c.drain_notifications(Duration::from_millis(300)).await);
    drop(c);

    // The receiver comes up where the URL points; a new process sends the queued event.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let receiver = Receiver::serve(listener, 0);
    let mut c = quick(controller(&ws), 5);
    c.tick(Trigger::Drift, t1 + SignedDuration::from_mins(1))
        .await;
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    let got = receiver.delivered();
    assert_eq!(got.len(), 1, "{got:?}");
    verify(&got[0]);
    no_secrets(&got[0]);
    let e = got[0].json();
    assert_eq!(e["event"], "offboarding-completed");
    assert_eq!(e["identity"], "erin@acme.example");
    assert_eq!(e["revision"], format!("main@sha1:{offboard}").as_str());
    let systems: Vec<&str> = e["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["portal"]);
    assert!(e["systems"][0]["ended"].as_str().is_some());

    // And never again.
    drop(c);
    let mut c = quick(controller(&ws), 5);
    c.tick(Trigger::Drift, t1 + SignedDuration::from_mins(2))
        .await;
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    assert_eq!(receiver.got().len(), 1);
}

/// The operator delivers like `latchkey run`: its reconcile of an AccessRepository (on
/// the kube-rs mock API server) hands what it committed to the same notifications.
#[tokio::test]
async fn the_operator_delivers_the_notifications_of_its_reconcile() {
    use latchkey::controller::operator::{self, Context};
    use latchkey::controller::operator_http::Metrics;
    use latchkey::controller::{AccessRepository, AccessRepositorySpec};
    let (receiver, addr) = Receiver::start(1).await;
    let ws = Workspace::new();
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let expires = now + SignedDuration::from_hours(24);
    let grant = format!("    - role: viewer\n    - role: staging-admin\n      expires: {expires}");
    ws.commit(
        &[
            ("latchkey.yaml", &base(&ws)),
            (
                "notify.yaml",
                &notifier(&ws, addr, "  type: slack\n").replace("  type: webhook\n", ""),
            ),
            ("clients/acme/members.yaml", &member("erin", &grant)),
        ],
        now.as_second(),
        "erin",
    );
    let (client, _calls, task) = support::mock_client(move |method, uri, body| {
        let path = uri.split('?').next().unwrap_or("");
        match (method.as_str(), path.ends_with("/status")) {
            ("PATCH", true) => (200, serde_json::json!({"status": body["status"].clone()})),
            ("POST", _) => (201, body.clone()),
            _ => support::status_error(404, "NotFound"),
        }
    });
    let ctx = Arc::new(Context::new(
        client,
        ws.path().join("operator-cache"),
        Some("latchkey-0".into()),
        Arc::new(Metrics::default()),
        Arc::new(move || now),
    ));
    let spec: AccessRepositorySpec = serde_json::from_value(serde_json::json!({
        "url": ws.repo_path().display().to_string(),
        "interval": "1h",
    }))
    .unwrap();
    let mut obj = AccessRepository::new("access", spec);
    obj.metadata.namespace = Some("agency".into());
    obj.metadata.generation = Some(1);
    let _ = operator::reconcile(Arc::new(obj), ctx.clone()).await;
    task.abort();
    assert!(
        ws.rows("staging.sqlite")
            .iter()
            .any(|(e, _, _)| e == "erin@acme.example"),
        "the reconcile applied"
    );
    // The default backoff starts at a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while receiver.delivered().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.got();
    assert_eq!(got.iter().map(|g| g.status).collect::<Vec<_>>(), [500, 200]);
    verify(&got[1]);
    no_secrets(&got[1]);
    let text = got[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("latchkey grant-expiring: erin@acme.example's grant of staging-admin for acme expires at"),
        "{text}"
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "latchkey_operator_notifications_total{notifier=\"ops\",event=\"grant-expiring\",result=\"delivered\"} 1"
        ),
        "{metrics}"
    );
}

/// A hold and an invalid revision are told once each; a queue that is full drops what
/// does not fit (counted, recorded) and never blocks, and nothing dropped comes back
/// after a restart.
#[tokio::test]
async fn holds_and_invalid_revisions_are_told_and_a_full_queue_drops_without_blocking() {
    let (receiver, addr) = Receiver::start(0).await;
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    let braked = base(&ws).replace(
        "  maxGrantDuration: {staging: 30d}\n",
        "  maxGrantDuration: {staging: 30d}\n  deletionBrake: {minimum: 1, percent: 0}\n",
    );
    let soon = t0 + SignedDuration::from_hours(24);
    let three: Vec<String> = ["erin", "dana", "finn"]
        .iter()
        .map(|n| {
            member(
                n,
                &format!("    - role: viewer\n    - role: staging-admin\n      expires: {soon}"),
            )
        })
        .collect();
    ws.commit(
        &[
            ("latchkey.yaml", &braked),
            ("notify.yaml", &notifier(&ws, addr, "")),
            ("clients/acme/members.yaml", &three.join("---\n")),
        ],
        t0.as_second(),
        "three with admin for a day",
    );
    // Room for one: the three expiring grants are offered at once.
    let mut c = quick(controller(&ws), 3);
    c.notifications.config.queue = 1;
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    let metrics = c.shared().metrics.render();
    let count = |result: &str| -> u64 {
        let key = format!(
            "latchkey_notifications_total{{notifier=\"ops\",event=\"grant-expiring\",result=\"{result}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map_or(0, |v| v.parse().unwrap())
    };
    let (delivered, dropped) = (count("delivered"), count("dropped"));
    assert!(dropped >= 1, "{metrics}");
    assert_eq!(delivered + dropped, 3, "{metrics}");
    assert_eq!(receiver.delivered().len() as u64, delivered);

    // Removing two people is held by the brake; then a typo is invalid.
    c.notifications.config.queue = 1000;
    drop(c);
    let mut c = quick(controller(&ws), 3);
    ws.commit(
        &[("clients/acme/members.yaml", &three[0])],
        t0.as_second() + 60,
        "two leave",
    );
    let t1 = t0 + SignedDuration::from_mins(2);
    let tick = c.tick(Trigger::Merge, t1).await;
    assert!(matches!(tick, Tick::Held { .. }), "{tick:?}");
    let typo = ws.commit(
        &[(
            "clients/acme/members.yaml",
            &member("erin", "    - role: nope"),
        )],
        t0.as_second() + 120,
        "typo",
    );
    let t2 = t0 + SignedDuration::from_mins(3);
    c.tick(Trigger::Merge, t2).await;
    c.tick(Trigger::Drift, t2 + SignedDuration::from_mins(1))
        .await;
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    let events: Vec<serde_json::Value> = receiver.delivered().iter().map(Got::json).collect();
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("grant-expiring").len() as u64,
        delivered,
        "dropped ones are not sent after a restart: {events:?}"
    );
    // One hold per system, told once though every run (and the fallback's under the
    // invalid revision) records it again.
    let holds = of("hold");
    assert_eq!(holds.len(), 2, "{events:?}");
    for (hold, system) in holds.iter().zip(["portal", "staging"]) {
        let message = hold["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "held by a guard, nothing applied: 2 people would lose access on system"
            ),
            "{message}"
        );
        assert!(message.contains(system), "{message}");
        assert_eq!(
            hold["recipients"],
            serde_json::json!(["boss@studio.example"])
        );
    }
    let invalid = of("invalid-revision");
    assert_eq!(invalid.len(), 1, "told once: {events:?}");
    assert_eq!(invalid[0]["revision"], format!("main@sha1:{typo}").as_str());
}

/// A receiver that keeps answering 500 gets exactly the attempts configured; the delivery
/// is then `failed` in the outbox and the metrics, and a restart does not send it again.
#[tokio::test]
async fn a_delivery_that_keeps_failing_is_recorded_failed_after_its_attempts() {
    let (receiver, addr) = Receiver::start(0).await;
    receiver.down.store(true, Ordering::SeqCst);
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    let expires = t0 + SignedDuration::from_hours(2);
    let grant = format!("    - role: viewer\n    - role: staging-admin\n      expires: {expires}");
    ws.commit(
        &[
            ("latchkey.yaml", &base(&ws)),
            (
                "notify.yaml",
                &notifier(&ws, addr, "  expiringWithin: 1d\n"),
            ),
            ("clients/acme/members.yaml", &member("erin", &grant)),
        ],
        t0.as_second(),
        "erin",
    );
    let mut c = quick(controller(&ws), 3);
    c.tick(Trigger::Merge, t0).await;
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    assert_eq!(receiver.got().len(), 3, "three attempts");
    let metrics = c.shared().metrics.render();
    assert!(
        metrics.contains(
            "latchkey_notifications_total{notifier=\"ops\",event=\"grant-expiring\",result=\"failed\"} 1"
        ),
        "{metrics}"
    );
    let text = find_outbox(ws.path());
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).unwrap();
    assert_eq!(last["state"], "failed");
    assert_eq!(last["attempts"], 3);
    assert_eq!(last["error"], "HTTP 500 (after 3 attempts)");

    drop(c);
    receiver.down.store(false, Ordering::SeqCst);
    let mut c = quick(controller(&ws), 3);
    c.tick(Trigger::Drift, t0 + SignedDuration::from_mins(5))
        .await;
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    assert_eq!(
        receiver.got().len(),
        3,
        "a failed delivery is not sent again"
    );
}

/// The text of the one notification outbox under `dir` (wherever the git dir is).
fn find_outbox(dir: &std::path::Path) -> String {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.ends_with("latchkey/notify/main.jsonl") {
                return std::fs::read_to_string(p).unwrap();
            }
        }
    }
    panic!("no outbox under {}", dir.display());
}

/// Fail closed: a Notifier is in force only once its commit is applied. One added by a
/// revision the brake holds hears nothing (not even of that hold); applied, it does.
#[tokio::test]
async fn a_notifier_in_a_held_revision_is_not_in_force() {
    let (receiver, addr) = Receiver::start(0).await;
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    let braked = base(&ws).replace(
        "  maxGrantDuration: {staging: 30d}\n",
        "  maxGrantDuration: {staging: 30d}\n  deletionBrake: {minimum: 1, percent: 0}\n",
    );
    let people: Vec<String> = ["erin", "dana", "finn"]
        .iter()
        .map(|n| member(n, "    - role: viewer"))
        .collect();
    ws.commit(
        &[
            ("latchkey.yaml", &braked),
            ("clients/acme/members.yaml", &people.join("---\n")),
        ],
        t0.as_second(),
        "three",
    );
    let mut c = quick(controller(&ws), 3);
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    ws.commit(
        &[
            ("notify.yaml", &notifier(&ws, addr, "")),
            ("clients/acme/members.yaml", &people[0]),
        ],
        t0.as_second() + 60,
        "a notifier, and two leave",
    );
    let tick = c
        .tick(Trigger::Merge, t0 + SignedDuration::from_mins(2))
        .await;
    assert!(matches!(tick, Tick::Held { .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    assert!(receiver.got().is_empty(), "{:?}", receiver.got());

    // The Notifier alone, applied, is in force: the next hold is told.
    ws.commit(
        &[("clients/acme/members.yaml", &people.join("---\n"))],
        t0.as_second() + 120,
        "they stay after all",
    );
    let tick = c
        .tick(Trigger::Merge, t0 + SignedDuration::from_mins(3))
        .await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    ws.commit(
        &[("clients/acme/members.yaml", &people[0])],
        t0.as_second() + 180,
        "two leave",
    );
    let tick = c
        .tick(Trigger::Merge, t0 + SignedDuration::from_mins(4))
        .await;
    assert!(matches!(tick, Tick::Held { .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    let got = receiver.delivered();
    assert!(!got.is_empty());
    assert!(got.iter().all(|g| g.json()["event"] == "hold"), "{got:?}");
}

#[tokio::test]
async fn a_review_falling_due_is_told_to_the_admins_once() {
    let (receiver, addr) = Receiver::start(0).await;
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    let reviewed = t0 - SignedDuration::from_hours(24 * 29);
    let repo = base(&ws).replace(
        "  admins: [ann@acme.example]\n",
        "  admins: [ann@acme.example]\n  reviewEvery: 30d\n",
    );
    let grant =
        format!("    - role: viewer\n      reviewed: {{at: \"{reviewed}\", by: ann@acme.example}}");
    ws.commit(
        &[
            ("latchkey.yaml", &repo),
            (
                "notify.yaml",
                &notifier(&ws, addr, "  events: [review-due]\n"),
            ),
            ("clients/acme/members.yaml", &member("erin", &grant)),
        ],
        t0.as_second(),
        "erin, reviewed 29 days ago",
    );
    let mut c = quick(controller(&ws), 3);
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    let got = receiver.delivered();
    assert_eq!(got.len(), 1, "{got:?}");
    verify(&got[0]);
    let e = got[0].json();
    assert_eq!(e["event"], "review-due");
    assert_eq!(e["identity"], "erin@acme.example");
    assert_eq!(e["role"], "viewer");
    let due = reviewed + SignedDuration::from_hours(24 * 30);
    assert_eq!(e["expires"], due.to_string().as_str(), "the due instant");
    assert_eq!(e["recipients"][0], "ann@acme.example");

    // Overdue a day later, after a restart: the same review, not told again.
    drop(c);
    let mut c = quick(controller(&ws), 3);
    let tick = c
        .tick(Trigger::Drift, t0 + SignedDuration::from_hours(48))
        .await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(c.drain_notifications(Duration::from_secs(10)).await);
    assert_eq!(receiver.delivered().len(), 1, "one event per due instant");
}
