//! `/healthz`, `/readyz`, `/metrics` and the push webhook `POST /hooks/push`.
//!
//! The webhook accepts GitHub-style `X-Hub-Signature-256: sha256=<hmac of the body>` or
//! `Authorization: Bearer <secret>`; both are compared in constant time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

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
    use super::*;

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
