//! `/healthz`, `/readyz`, `/metrics` and the push webhook `POST /hooks/push`.
//!
//! The webhook accepts GitHub-style `X-Hub-Signature-256: sha256=<hmac of the body>` or
//! `Authorization: Bearer <secret>`; both are compared in constant time.
//!
//! [`serve`] bounds what clients can hold: a connection must finish its request headers
//! within [`Limits::header_timeout`] (also when idle between requests), a request must be
//! read and answered within [`Limits::body_timeout`], and at most
//! [`Limits::max_connections`] are open at once, so idle or half-sent requests cannot pile
//! up until the process runs out of file descriptors.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use super::metrics::Metrics;
use crate::connectors::Secret;

/// What the endpoints share with the run loop.
pub struct Shared {
    pub metrics: Metrics,
    pub ready: AtomicBool,
    /// Wakes the loop for a fetch.
    pub push: Notify,
    pub webhook_secret: Option<Secret>,
}

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/hooks/push", post(push))
        .with_state(shared)
}

async fn readyz(State(s): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no valid revision applied yet",
        )
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn push(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(secret) = &s.webhook_secret else {
        return (
            StatusCode::NOT_FOUND,
            "webhook disabled: set --webhook-secret-env",
        );
    };
    if !authorized(secret, &headers, &body) {
        return (StatusCode::UNAUTHORIZED, "bad or missing signature");
    }
    s.push.notify_one();
    (StatusCode::ACCEPTED, "fetch scheduled")
}

/// What a client may hold of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From accepting a connection, or from the end of the previous answer on a kept-alive
    /// one, to the end of the request headers.
    pub header_timeout: Duration,
    /// From the end of the headers to the answer, which bounds reading the body.
    pub body_timeout: Duration,
    /// Connections open at once; a connection beyond them is closed as it is accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s for headers, 30 s for the rest of a request, 256 connections: ample for
    /// GitHub's webhooks and a Prometheus scrape, tight enough for slow-request floods.
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then stops
/// accepting and waits for the requests in progress.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let body_timeout = limits.body_timeout;
    let app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| answer_within(body_timeout, req, next),
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper enforces the header timeout only with a timer.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut full = false;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once tells the client, where leaving it in the backlog would not.
            if !full {
                tracing::warn!(
                    max = limits.max_connections,
                    "too many open connections: closing new ones until some end"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    graceful.shutdown().await;
}

/// Runs the rest of the request, or answers 408 and closes the connection when the body
/// (or the handler) takes longer than `limit`.
async fn answer_within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            "request not received in time",
        )
            .into_response(),
    }
}

/// Checks the HMAC signature or the bearer token.
pub fn authorized(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> bool {
    if let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        && let Some(hex_sig) = sig.strip_prefix("sha256=")
        && let Ok(expected) = hex::decode(hex_sig)
        && let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
    {
        mac.update(body);
        return mac.verify_slice(&expected).is_ok();
    }
    if let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        // Compare MACs of both values: constant time, and no length leak.
        let tag = |v: &str| {
            let mut m =
                Hmac::<Sha256>::new_from_slice(b"latchkey-webhook").expect("any key length");
            m.update(v.as_bytes());
            m.finalize().into_bytes()
        };
        return tag(token) == tag(secret.expose());
    }
    false
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A real server on loopback with `limits`, the webhook enabled.
    async fn server(limits: Limits) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            metrics: Metrics::new(),
            ready: AtomicBool::new(true),
            push: Notify::new(),
            webhook_secret: Some(Secret::new("s3cret")),
        });
        let task = tokio::spawn(serve(
            listener,
            router(shared),
            limits,
            std::future::pending(),
        ));
        (addr, task)
    }

    /// Reads until the server closes the connection (a reset counts); fails the test if
    /// it stays open for 10 s, far beyond any limit used here.
    async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got));
        match read.await {
            Ok(_) => got,
            Err(_) => panic!(
                "the server kept the connection open; read so far: {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }

    /// Sends a whole GET and reads its answer, leaving the connection open (keep-alive).
    async fn get_healthz(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"ok") {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Issue 15: 3,000 idle, half-sent requests stayed open. Connections beyond the bound
    /// are closed at once, and a slot is usable again when a connection ends. The
    /// timeouts are long here so that only the bound can close anything.
    #[tokio::test]
    async fn connections_beyond_the_bound_are_closed_at_once() {
        let (addr, task) = server(Limits {
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: 8,
        })
        .await;
        // Served (so certainly accepted) and kept alive: all slots taken.
        let mut held = Vec::new();
        for _ in 0..8 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            assert!(get_healthz(&mut c).await.starts_with("HTTP/1.1 200 OK"));
            held.push(c);
        }
        for _ in 0..40 {
            let mut extra = TcpStream::connect(addr).await.unwrap();
            let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\n").await;
            assert_eq!(until_closed(&mut extra).await, b"", "closed unanswered");
        }
        // The held ones were not disturbed.
        assert!(
            get_healthz(&mut held[0])
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
        drop(held.pop());
        let started = Instant::now();
        loop {
            let mut c = TcpStream::connect(addr).await.unwrap();
            if get_healthz(&mut c).await.starts_with("HTTP/1.1 200 OK") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no slot freed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
    }

    /// Idle connections, half-sent headers and half-sent bodies are all closed once their
    /// timeout passes, kept-alive connections too.
    #[tokio::test]
    async fn idle_and_half_sent_requests_are_closed_after_their_timeout() {
        let limit = Duration::from_millis(300);
        let (addr, task) = server(Limits {
            header_timeout: limit,
            body_timeout: limit,
            max_connections: 1024,
        })
        .await;
        let started = Instant::now();
        let mut idle = Vec::new();
        for i in 0..300 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            match i % 3 {
                0 => {}
                1 => c
                    .write_all(b"POST /hooks/push HTTP/1.1\r\nHost: t\r\n")
                    .await
                    .unwrap(),
                _ => c
                    .write_all(b"POST /hooks/push HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"ref\"")
                    .await
                    .unwrap(),
            }
            idle.push(c);
        }
        for (i, c) in idle.iter_mut().enumerate() {
            let got = until_closed(c).await;
            let got = String::from_utf8_lossy(&got);
            if i % 3 == 2 {
                assert!(got.starts_with("HTTP/1.1 408 Request Timeout"), "{got}");
                assert!(got.ends_with("request not received in time"), "{got}");
            }
        }
        assert!(started.elapsed() >= limit);
        // Between requests, a kept-alive connection has the header timeout too.
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(get_healthz(&mut c).await.starts_with("HTTP/1.1 200 OK"));
        let answered = Instant::now();
        assert_eq!(until_closed(&mut c).await, b"");
        assert!(answered.elapsed() >= limit - Duration::from_millis(50));
        task.abort();
    }

    #[test]
    fn github_signatures_and_bearer_tokens() {
        let secret = Secret::new("s3cret");
        let body = b"{\"ref\":\"refs/heads/main\"}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", good.parse().unwrap());
        assert!(authorized(&secret, &h, body));
        assert!(!authorized(&secret, &h, b"tampered"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(authorized(&secret, &h, b""));
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert!(!authorized(&secret, &h, b""));
        assert!(!authorized(&secret, &HeaderMap::new(), b""));
    }
}
