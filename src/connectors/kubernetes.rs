//! The `kubernetes` connector: access to a staging namespace as RoleBindings.
//!
//! `connection`: `namespace` (required) and `subjectKind` (`User`, the default, or
//! `Group`). An entitlement names what to bind: `ClusterRole/<name>` or `Role/<name>`
//! (a Role in the namespace). Each (identity, entitlement) is one RoleBinding named
//! `latchkey-<hash>`, labelled `app.kubernetes.io/managed-by=latchkey` and annotated
//! with the identity and entitlement; only labelled bindings are read or deleted.
//!
//! Kubernetes has no accounts: users come from the cluster's authenticator. Creating,
//! enabling and disabling an account are no-ops; deleting one removes its bindings.
//! The client is built on first use (in-cluster service account or KUBECONFIG).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, MANAGED_MARKER, Op, Snapshot,
    SystemContext,
};
use crate::model::connection::{self, KubernetesConnection};

/// The label every latchkey RoleBinding carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The annotation holding the identity (email) a binding is for.
pub const IDENTITY_ANNOTATION: &str = "latchkey.dev/identity";
/// The annotation holding the entitlement a binding grants.
pub const ENTITLEMENT_ANNOTATION: &str = "latchkey.dev/entitlement";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Whether bindings name users or groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Group,
}

/// The connector for one namespace.
pub struct KubernetesConnector {
    namespace: String,
    subject_kind: SubjectKind,
    client: OnceCell<Client>,
}

/// Builds the `kubernetes` connector for a System.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let settings: KubernetesConnection = ctx.settings()?;
    let subject_kind = match settings.subject_kind {
        connection::SubjectKind::User => SubjectKind::User,
        connection::SubjectKind::Group => SubjectKind::Group,
    };
    let namespace = settings.namespace.as_str();
    Ok(Box::new(KubernetesConnector::new(
        namespace,
        subject_kind,
        None,
    )))
}

impl KubernetesConnector {
    /// A connector; with `client` `None` one is inferred on first use.
    pub fn new(namespace: &str, subject_kind: SubjectKind, client: Option<Client>) -> Self {
        KubernetesConnector {
            namespace: namespace.to_string(),
            subject_kind,
            client: OnceCell::new_with(client),
        }
    }

    async fn api(&self) -> Result<Api<RoleBinding>, ConnectorError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                Client::try_default().await.map_err(|e| {
                    ConnectorError::config(format!(
                        "cannot build a Kubernetes client (in-cluster or KUBECONFIG): {e}"
                    ))
                })
            })
            .await?;
        Ok(Api::namespaced(client.clone(), &self.namespace))
    }

    async fn managed(&self) -> Result<Vec<RoleBinding>, ConnectorError> {
        let lp = ListParams::default().labels(&format!("{MANAGED_BY}={MANAGED_MARKER}"));
        let list = self
            .api()
            .await?
            .list(&lp)
            .await
            .map_err(|e| classify(&self.namespace, "list RoleBindings", e))?;
        Ok(list.items)
    }

    /// The RoleBinding for one grant.
    pub fn binding(
        &self,
        identity: &str,
        entitlement: &str,
    ) -> Result<RoleBinding, ConnectorError> {
        let role_ref = role_ref(entitlement)?;
        let (kind, api_group) = match self.subject_kind {
            SubjectKind::User => ("User", RBAC_GROUP),
            SubjectKind::Group => ("Group", RBAC_GROUP),
        };
        Ok(RoleBinding {
            metadata: ObjectMeta {
                name: Some(binding_name(identity, entitlement)),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(MANAGED_BY.into(), MANAGED_MARKER.into())])),
                annotations: Some(BTreeMap::from([
                    (IDENTITY_ANNOTATION.into(), identity.into()),
                    (ENTITLEMENT_ANNOTATION.into(), entitlement.into()),
                ])),
                ..ObjectMeta::default()
            },
            role_ref,
            subjects: Some(vec![Subject {
                kind: kind.into(),
                api_group: Some(api_group.into()),
                name: identity.into(),
                namespace: None,
            }]),
        })
    }

    async fn delete(&self, name: &str) -> Result<(), ConnectorError> {
        match self
            .api()
            .await?
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(classify(&self.namespace, "delete a RoleBinding", e)),
        }
    }
}

/// `latchkey-` and 16 hex digits of SHA-256(identity, entitlement): stable across runs
/// and replicas, so creating twice conflicts instead of duplicating.
pub fn binding_name(identity: &str, entitlement: &str) -> String {
    let mut h = Sha256::new();
    h.update(identity.as_bytes());
    h.update(b"\0");
    h.update(entitlement.as_bytes());
    format!("latchkey-{}", &hex::encode(h.finalize())[..16])
}

/// `ClusterRole/<name>` or `Role/<name>`.
pub fn role_ref(entitlement: &str) -> Result<RoleRef, ConnectorError> {
    let (kind, name) = entitlement
        .split_once('/')
        .filter(|(k, n)| matches!(*k, "ClusterRole" | "Role") && !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| {
            ConnectorError::permanent(format!(
                "entitlement {entitlement:?} is not ClusterRole/<name> or Role/<name>"
            ))
        })?;
    Ok(RoleRef {
        api_group: RBAC_GROUP.into(),
        kind: kind.into(),
        name: name.into(),
    })
}

/// API errors: 429, 5xx and transport failures pass on retry; the rest will not.
fn classify(namespace: &str, what: &str, e: kube::Error) -> ConnectorError {
    let message = format!("cannot {what} in namespace {namespace}: {e}");
    match &e {
        kube::Error::Api(s) if s.code == 429 || s.code >= 500 => ConnectorError::transient(message),
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ConnectorError::config(message),
        kube::Error::Api(_) => ConnectorError::permanent(message),
        _ => ConnectorError::transient(message),
    }
}

fn annotation<'a>(b: &'a RoleBinding, key: &str) -> Option<&'a str> {
    b.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

#[async_trait]
impl Connector for KubernetesConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: false,
            max_concurrency: 4,
        }
    }

    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        let mut accounts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut partial = Vec::new();
        for b in self.managed().await? {
            match (
                annotation(&b, IDENTITY_ANNOTATION),
                annotation(&b, ENTITLEMENT_ANNOTATION),
            ) {
                (Some(id), Some(ent)) => {
                    accounts
                        .entry(super::identity(id))
                        .or_default()
                        .insert(ent.to_string());
                }
                // A labelled binding someone edited: never guess what it grants.
                _ => partial.push(b.metadata.name.unwrap_or_default()),
            }
        }
        let completeness = if partial.is_empty() {
            Completeness::Complete
        } else {
            Completeness::Partial(format!(
                "RoleBindings without latchkey annotations: {}",
                partial.join(", ")
            ))
        };
        Ok(Snapshot {
            managed: accounts
                .into_iter()
                .map(|(identity, entitlements)| Account {
                    identity,
                    display_name: None,
                    active: true,
                    entitlements: entitlements.into_iter().collect(),
                    valid_until: None,
                })
                .collect(),
            unmanaged: Default::default(),
            completeness,
            foreign_grants: Vec::new(),
            warnings: Vec::new(),
        })
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        match op {
            Op::SetExpiry { .. } => Err(ConnectorError::no_native_expiry("kubernetes")),
            Op::AdoptAccount { .. } => Err(ConnectorError::no_adoption("kubernetes")),
            // Accounts live in the cluster's authenticator, not in the namespace.
            Op::CreateAccount { .. } | Op::EnableAccount { .. } | Op::DisableAccount { .. } => {
                Ok(())
            }
            Op::AddEntitlement {
                identity,
                entitlement,
            } => {
                let binding = self.binding(identity, entitlement)?;
                match self
                    .api()
                    .await?
                    .create(&PostParams::default(), &binding)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(classify(&self.namespace, "create a RoleBinding", e)),
                }
            }
            Op::RemoveEntitlement {
                identity,
                entitlement,
            } => self.delete(&binding_name(identity, entitlement)).await,
            Op::DeleteAccount { identity } => {
                for b in self.managed().await? {
                    if annotation(&b, IDENTITY_ANNOTATION)
                        .is_some_and(|id| id.eq_ignore_ascii_case(identity))
                        && let Some(name) = &b.metadata.name
                    {
                        self.delete(name).await?;
                    }
                }
                Ok(())
            }
        }
    }
}
