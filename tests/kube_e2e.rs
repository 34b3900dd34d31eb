//! Real-cluster end-to-end tests, run only when TEST_KUBECONFIG names a kubeconfig of a
//! disposable cluster (kind, k3d, minikube). Skipped, with a message, when it is unset.
//! They create and delete the namespace `latchkey-e2e-<pid>`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use latchkey::connectors::kubernetes::{KubernetesConnector, SubjectKind};
use latchkey::connectors::{Connector, Op};
use latchkey::controller::leader::{Leadership, LeaseLock};

async fn cluster() -> Option<kube::Client> {
    let Ok(path) = std::env::var("TEST_KUBECONFIG") else {
        eprintln!("skipped: TEST_KUBECONFIG is not set");
        return None;
    };
    let kc = Kubeconfig::read_from(&path).expect("TEST_KUBECONFIG is readable");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("TEST_KUBECONFIG is a valid kubeconfig");
    Some(kube::Client::try_from(config).expect("a client"))
}

async fn namespace(client: &kube::Client) -> String {
    let name = format!("latchkey-e2e-{}", std::process::id());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let api: Api<Namespace> = Api::all(client.clone());
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("cannot create namespace {name}: {e}"),
    }
    name
}

#[tokio::test]
async fn kubernetes_connector_and_lease_on_a_real_cluster() {
    let Some(client) = cluster().await else {
        return;
    };
    let ns = namespace(&client).await;
    let c = KubernetesConnector::new(&ns, SubjectKind::User, Some(client.clone()));
    let add = Op::AddEntitlement {
        identity: "ann@acme.example".into(),
        entitlement: "ClusterRole/view".into(),
    };
    c.apply(&add).await.unwrap();
    c.apply(&add).await.unwrap();
    let snap = c.read().await.unwrap();
    assert_eq!(snap.managed.len(), 1);
    assert_eq!(snap.managed[0].identity, "ann@acme.example");
    c.apply(&Op::DeleteAccount {
        identity: "ann@acme.example".into(),
    })
    .await
    .unwrap();
    assert!(c.read().await.unwrap().managed.is_empty());

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let a = LeaseLock::new(leases.clone(), "latchkey-e2e", "a", Duration::from_secs(15));
    let b = LeaseLock::new(leases, "latchkey-e2e", "b", Duration::from_secs(15));
    let now = jiff::Timestamp::now();
    assert_eq!(
        a.try_acquire_or_renew(now).await.unwrap(),
        Leadership::Acquired
    );
    assert_eq!(
        a.try_acquire_or_renew(now).await.unwrap(),
        Leadership::Renewed
    );
    assert_eq!(
        b.try_acquire_or_renew(now).await.unwrap(),
        Leadership::HeldBy("a".into())
    );

    let api: Api<Namespace> = Api::all(client);
    let _ = api.delete(&ns, &DeleteParams::default()).await;
}
