//! The `kubernetes` connector against the kube-rs mock API server, which keeps the
//! namespace's RoleBindings and honours label selectors, 409 and 404 like the real one.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::Method;
use latchkey::connectors::kubernetes::{KubernetesConnector, SubjectKind, binding_name};
use latchkey::connectors::{Completeness, Connector, ErrorClass, Op};
use serde_json::{Value, json};

const RB: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/acme-staging/rolebindings";

type Store = Arc<Mutex<BTreeMap<String, Value>>>;

fn server(initial: Vec<Value>) -> (kube::Client, support::Calls, Store) {
    let store: Store = Arc::new(Mutex::new(
        initial
            .into_iter()
            .map(|b| (b["metadata"]["name"].as_str().unwrap().to_string(), b))
            .collect(),
    ));
    let state = store.clone();
    let (client, calls, _task) = support::mock_client(move |method, uri, body| {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut bindings = state.lock().unwrap();
        match (method.clone(), path) {
            (Method::GET, RB) => {
                let selector = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("labelSelector="))
                    .map(|s| s.replace("%3D", "=").replace("%2F", "/"));
                let items: Vec<Value> = bindings
                    .values()
                    .filter(|b| match &selector {
                        Some(sel) => {
                            let (k, v) = sel.split_once('=').unwrap();
                            b["metadata"]["labels"][k] == v
                        }
                        None => true,
                    })
                    .cloned()
                    .collect();
                (
                    200,
                    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBindingList",
                           "metadata": {}, "items": items}),
                )
            }
            (Method::POST, RB) => {
                let name = body["metadata"]["name"].as_str().unwrap().to_string();
                if bindings.contains_key(&name) {
                    return support::status_error(409, "AlreadyExists");
                }
                bindings.insert(name, body.clone());
                (201, body.clone())
            }
            (Method::DELETE, p) if p.starts_with(RB) => {
                let name = p.rsplit('/').next().unwrap();
                match bindings.remove(name) {
                    Some(_) => (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                    ),
                    None => support::status_error(404, "NotFound"),
                }
            }
            _ => support::status_error(404, "NotFound"),
        }
    });
    (client, calls, store)
}

fn managed(identity: &str, entitlement: &str) -> Value {
    let (kind, name) = entitlement.split_once('/').unwrap();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {
            "name": binding_name(identity, entitlement), "namespace": "acme-staging",
            "labels": {"app.kubernetes.io/managed-by": "latchkey"},
            "annotations": {"latchkey.dev/identity": identity, "latchkey.dev/entitlement": entitlement},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": identity}],
    })
}

/// A binding someone made by hand: latchkey must never touch it.
fn unmanaged() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "ops-admin", "namespace": "acme-staging"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "ops@northwind.example"}],
    })
}

fn add(identity: &str, entitlement: &str) -> Op {
    Op::AddEntitlement {
        identity: identity.into(),
        entitlement: entitlement.into(),
    }
}

#[tokio::test]
async fn reads_only_labelled_bindings() {
    let (client, calls, _) = server(vec![
        unmanaged(),
        managed("ann@acme.example", "ClusterRole/view"),
        managed("ann@acme.example", "Role/deployer"),
        managed("bob@acme.example", "ClusterRole/edit"),
    ]);
    let c = KubernetesConnector::new("acme-staging", SubjectKind::User, Some(client));
    let snap = c.read().await.unwrap();
    assert_eq!(snap.completeness, Completeness::Complete);
    let got: Vec<(String, Vec<String>)> = snap
        .managed
        .iter()
        .map(|a| {
            (
                a.identity.clone(),
                a.entitlements.iter().map(str::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "ann@acme.example".to_string(),
                vec!["ClusterRole/view".to_string(), "Role/deployer".to_string()]
            ),
            (
                "bob@acme.example".to_string(),
                vec!["ClusterRole/edit".to_string()]
            ),
        ]
    );
    let list = &calls.all()[0];
    assert!(
        list.uri
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dlatchkey"),
        "{}",
        list.uri
    );
}

#[tokio::test]
async fn creates_and_deletes_exactly_the_expected_role_bindings() {
    let (client, calls, store) = server(vec![
        unmanaged(),
        managed("old@acme.example", "ClusterRole/edit"),
        managed("bob@acme.example", "ClusterRole/view"),
        managed("bob@acme.example", "Role/deployer"),
    ]);
    let c = KubernetesConnector::new("acme-staging", SubjectKind::User, Some(client));
    for op in [
        Op::CreateAccount {
            identity: "ann@acme.example".into(),
            display_name: None,
        },
        add("ann@acme.example", "ClusterRole/view"),
        add("ann@acme.example", "Role/deployer"),
        // Idempotent: the binding exists (409) and that is success.
        add("ann@acme.example", "ClusterRole/view"),
        Op::RemoveEntitlement {
            identity: "old@acme.example".into(),
            entitlement: "ClusterRole/edit".into(),
        },
        // Already gone (404) is success too.
        Op::RemoveEntitlement {
            identity: "old@acme.example".into(),
            entitlement: "ClusterRole/edit".into(),
        },
        Op::DisableAccount {
            identity: "bob@acme.example".into(),
        },
        Op::DeleteAccount {
            identity: "bob@acme.example".into(),
        },
    ] {
        c.apply(&op).await.unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }

    let writes: Vec<(Method, String)> = calls
        .writes()
        .iter()
        .map(|w| (w.method.clone(), w.path().to_string()))
        .collect();
    let del = |id: &str, ent: &str| (Method::DELETE, format!("{RB}/{}", binding_name(id, ent)));
    let post = (Method::POST, RB.to_string());
    assert_eq!(
        writes[..5],
        [
            post.clone(),
            post.clone(),
            post,
            del("old@acme.example", "ClusterRole/edit"),
            del("old@acme.example", "ClusterRole/edit"),
        ]
    );
    // DeleteAccount removes both of bob's bindings (in list order), nothing else.
    let mut bob = writes[5..].to_vec();
    bob.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected_bob = vec![
        del("bob@acme.example", "Role/deployer"),
        del("bob@acme.example", "ClusterRole/view"),
    ];
    expected_bob.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(bob, expected_bob);
    let created = &calls.writes()[0].body;
    assert_eq!(
        created,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {
                "name": binding_name("ann@acme.example", "ClusterRole/view"),
                "namespace": "acme-staging",
                "labels": {"app.kubernetes.io/managed-by": "latchkey"},
                "annotations": {
                    "latchkey.dev/identity": "ann@acme.example",
                    "latchkey.dev/entitlement": "ClusterRole/view",
                },
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "ann@acme.example"}],
        })
    );
    assert_eq!(calls.writes()[1].body["roleRef"]["kind"], "Role");
    assert_eq!(calls.writes()[1].body["roleRef"]["name"], "deployer");

    // What is left: the hand-made binding and ann's two.
    let left: Vec<String> = store.lock().unwrap().keys().cloned().collect();
    let mut expected = vec![
        "ops-admin".to_string(),
        binding_name("ann@acme.example", "ClusterRole/view"),
        binding_name("ann@acme.example", "Role/deployer"),
    ];
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test]
async fn group_subjects_and_bad_entitlements() {
    let (client, calls, _) = server(vec![]);
    let c = KubernetesConnector::new("acme-staging", SubjectKind::Group, Some(client));
    c.apply(&add("acme-devs", "ClusterRole/edit"))
        .await
        .unwrap();
    let subject = &calls.writes()[0].body["subjects"][0];
    assert_eq!(subject["kind"], "Group");
    assert_eq!(subject["name"], "acme-devs");
    let err = c.apply(&add("acme-devs", "edit")).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(
        err.message,
        "entitlement \"edit\" is not ClusterRole/<name> or Role/<name>"
    );
    assert_eq!(
        calls.writes().len(),
        1,
        "nothing sent for a bad entitlement"
    );
}

#[tokio::test]
async fn forbidden_is_a_config_error_and_server_errors_are_transient() {
    let (client, _, _task) = support::mock_client(|method, _, _| match *method {
        Method::GET => support::status_error(403, "Forbidden"),
        _ => support::status_error(503, "ServiceUnavailable"),
    });
    let c = KubernetesConnector::new("acme-staging", SubjectKind::User, Some(client));
    let read = c.read().await.unwrap_err();
    assert_eq!(read.class, ErrorClass::Config);
    assert!(
        read.message
            .starts_with("cannot list RoleBindings in namespace acme-staging: "),
        "{}",
        read.message
    );
    let create = c
        .apply(&add("ann@acme.example", "ClusterRole/view"))
        .await
        .unwrap_err();
    assert_eq!(create.class, ErrorClass::Transient);
}
