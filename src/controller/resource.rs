//! `AccessRepository`: the operator's custom resource, one per access repository.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A git repository of access documents the operator reconciles.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "AccessRepository",
    namespaced,
    status = "AccessRepositoryStatus",
    shortname = "accessrepo",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Accounts","type":"integer","jsonPath":".status.managedAccounts"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessRepositorySpec {
    /// The repository URL (https://, ssh://, file://) or a path mounted into the pod.
    pub url: String,
    /// The branch to reconcile; the audit is committed to it.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Sub-path of the repository that holds the documents.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// How often to reconcile, e.g. `5m`, `1h`, `30s`. Expiries are enforced on time
    /// regardless: the operator requeues at the next expiry when it is earlier.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// A Secret with git credentials: `token` (HTTPS), or `identity` (an SSH private key)
    /// with optional `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// A Secret whose keys Systems name in `credentials.secretKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systems_secret_ref: Option<LocalObjectReference>,
    /// Stop reconciling (nothing is read or applied) until unset.
    #[serde(default)]
    pub suspend: bool,
    /// Prune undeclared access on Systems that do not set `prune` themselves.
    #[serde(default)]
    pub prune: bool,
    /// Push the audit commit back to the remote.
    #[serde(default)]
    pub push: bool,
}

fn default_branch() -> String {
    "main".into()
}

fn default_interval() -> String {
    "5m".into()
}

/// A reference to a Secret in the AccessRepository's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct LocalObjectReference {
    /// The Secret's name.
    pub name: String,
}

/// What the operator observed, in Flux's conventions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessRepositoryStatus {
    /// `Ready`, `Reconciling`, `Stalled` and `Held`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last revision applied, `main@sha1:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The last revision tried, applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// When the next grant expires or starts (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<String>,
    /// Accounts latchkey manages across all Systems.
    #[serde(default)]
    pub managed_accounts: i64,
    /// Changes planned but not applied (held, failed or dry).
    #[serde(default)]
    pub pending_changes: i64,
}
