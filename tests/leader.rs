//! Leader election on a coordination.k8s.io/v1 Lease against the kube-rs mock API
//! server, which keeps one Lease and enforces resourceVersion like the real one.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use latchkey::controller::leader::{Leadership, LeaseLock};
use serde_json::Value;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/latchkey-system/leases";

/// A stateful Lease store.
fn lease_server(
    initial: Option<Value>,
) -> (kube::Client, support::Calls, Arc<Mutex<Option<Value>>>) {
    let store = Arc::new(Mutex::new(initial));
    let state = store.clone();
    let (client, calls, _task) = support::mock_client(move |method, uri, body| {
        let path = uri.split('?').next().unwrap_or("");
        let mut lease = state.lock().unwrap();
        let version = |l: &Value| {
            l["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse::<u64>()
                .unwrap()
        };
        match (method.clone(), path) {
            (Method::GET, p) if p == format!("{LEASE}/latchkey-operator") => match &*lease {
                Some(l) => (200, l.clone()),
                None => support::status_error(404, "NotFound"),
            },
            (Method::POST, LEASE) => {
                if lease.is_some() {
                    return support::status_error(409, "AlreadyExists");
                }
                let mut l = body.clone();
                l["metadata"]["resourceVersion"] = "1".into();
                *lease = Some(l.clone());
                (201, l)
            }
            (Method::PUT, p) if p == format!("{LEASE}/latchkey-operator") => {
                let current = lease.as_ref().map(version).unwrap_or(0);
                if version(body) != current {
                    return support::status_error(409, "Conflict");
                }
                let mut l = body.clone();
                l["metadata"]["resourceVersion"] = (current + 1).to_string().into();
                *lease = Some(l.clone());
                (200, l)
            }
            _ => support::status_error(404, "NotFound"),
        }
    });
    (client, calls, store)
}

fn lock(client: &kube::Client, identity: &str) -> LeaseLock {
    let api: Api<Lease> = Api::namespaced(client.clone(), "latchkey-system");
    LeaseLock::new(api, "latchkey-operator", identity, Duration::from_secs(15))
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[tokio::test]
async fn acquires_an_absent_lease_then_renews_it() {
    let (client, calls, store) = lease_server(None);
    let a = lock(&client, "latchkey-0");
    let t0 = at("2026-11-23T10:00:00Z");
    assert_eq!(
        a.try_acquire_or_renew(t0).await.unwrap(),
        Leadership::Acquired
    );
    let created = calls.writes();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].method, Method::POST);
    let spec = &created[0].body["spec"];
    assert_eq!(spec["holderIdentity"], "latchkey-0");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    assert_eq!(spec["leaseTransitions"], 0);
    assert_eq!(spec["renewTime"], "2026-11-23T10:00:00.000000Z");

    let t1 = at("2026-11-23T10:00:05Z");
    assert_eq!(
        a.try_acquire_or_renew(t1).await.unwrap(),
        Leadership::Renewed
    );
    let writes = calls.writes();
    assert_eq!(writes.len(), 2);
    let renew = &writes[1];
    assert_eq!(renew.method, Method::PUT);
    assert_eq!(renew.body["metadata"]["resourceVersion"], "1");
    assert_eq!(renew.body["spec"]["holderIdentity"], "latchkey-0");
    assert_eq!(
        renew.body["spec"]["acquireTime"],
        "2026-11-23T10:00:00.000000Z"
    );
    assert_eq!(
        renew.body["spec"]["renewTime"],
        "2026-11-23T10:00:05.000000Z"
    );
    let stored = store.lock().unwrap().clone().unwrap();
    assert_eq!(stored["metadata"]["resourceVersion"], "2");
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_left_alone_and_an_expired_one_is_taken() {
    let (client, calls, _) = lease_server(None);
    let t0 = at("2026-11-23T10:00:00Z");
    lock(&client, "latchkey-0")
        .try_acquire_or_renew(t0)
        .await
        .unwrap();
    let b = lock(&client, "latchkey-1");
    // 10s later the holder's 15s Lease is live: no write.
    let live = b
        .try_acquire_or_renew(t0 + SignedDuration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(live, Leadership::HeldBy("latchkey-0".into()));
    assert!(!live.is_leader());
    assert_eq!(calls.writes().len(), 1);
    // 16s later it expired: taken over, one more transition.
    let taken = b
        .try_acquire_or_renew(t0 + SignedDuration::from_secs(16))
        .await
        .unwrap();
    assert_eq!(taken, Leadership::Acquired);
    let writes = calls.writes();
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[1].body["spec"]["holderIdentity"], "latchkey-1");
    assert_eq!(writes[1].body["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_conflicting_write_is_not_leadership() {
    // Another replica took the expired Lease between our read and our write: the API
    // answers our PUT with 409 Conflict.
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "latchkey-operator", "resourceVersion": "7"},
        "spec": {"holderIdentity": "latchkey-0", "leaseDurationSeconds": 15,
                 "renewTime": "2026-11-23T09:00:00.000000Z", "leaseTransitions": 2},
    });
    let (client, calls, _task) = support::mock_client(move |method, _, _| match *method {
        Method::GET => (200, lease.clone()),
        _ => support::status_error(409, "Conflict"),
    });
    let b = lock(&client, "latchkey-1");
    let got = b
        .try_acquire_or_renew(at("2026-11-23T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(got, Leadership::HeldBy("latchkey-0".into()));
    let writes = calls.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, Method::PUT);
    assert_eq!(writes[0].body["metadata"]["resourceVersion"], "7");
    assert_eq!(writes[0].body["spec"]["leaseTransitions"], 3);
}
