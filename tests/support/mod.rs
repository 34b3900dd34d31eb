//! The kube-rs mock API server pattern (tower-test): a Client whose requests are
//! answered by a function of the test, and recorded for assertions.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;

/// One request the code under test made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub body: Value,
}

impl Call {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

/// The recorded calls.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
    /// Calls other than reads (GET), in order.
    pub fn writes(&self) -> Vec<Call> {
        self.all()
            .into_iter()
            .filter(|c| c.method != Method::GET)
            .collect()
    }
}

/// A Client backed by `respond(method, uri, body) -> (status, body)`.
pub fn mock_client<F>(respond: F) -> (kube::Client, Calls, tokio::task::JoinHandle<()>)
where
    F: Fn(&Method, &str, &Value) -> (u16, Value) + Send + 'static,
{
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let calls = Calls::default();
    let recorded = calls.clone();
    let task = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let uri = req.uri().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (status, out) = respond(&method, &uri, &body);
            recorded.0.lock().unwrap().push(Call { method, uri, body });
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&out).unwrap()))
                    .unwrap(),
            );
        }
    });
    (client, calls, task)
}

/// A Kubernetes `Status` error body.
pub fn status_error(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": reason, "reason": reason, "code": code,
        }),
    )
}
