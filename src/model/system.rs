//! `System`: a target the controller manages (a portal, a staging database, ...).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Environment;

/// A system latchkey manages through one connector.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "System",
    namespaced
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemSpec {
    /// The connector: `sql`, `scim`, `postgres`, `ldap`, `kubernetes`, `wordpress` or `exec`.
    #[serde(rename = "type")]
    pub connector: String,
    /// Where the system sits; policies are expressed per environment.
    pub environment: Environment,
    /// The one client this system belongs to; absent when shared by all clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Connector settings (URL, file, table mapping), typed per `type`
    /// (docs/connectors.md). Never secrets: see `credentials`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schemars(schema_with = "crate::model::connection::any_connection")]
    pub connection: serde_json::Map<String, serde_json::Value>,
    /// Where the connector's secret comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Revoke managed accounts and entitlements that git does not declare.
    /// Off by default: undeclared access is then reported as drift only.
    #[serde(default)]
    pub prune: bool,
    /// Take over unmarked accounts whose identity git declares on this system: latchkey
    /// puts its marker on them (an `adopt account` change, an `adopted` ledger record)
    /// and from then on manages them like its own. Off by default: unmarked accounts are
    /// reported and never changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// What offboarding does to a managed account once its entitlements are removed.
    #[serde(default)]
    pub offboard: OffboardMode,
    /// What latchkey may grant on this system: entitlement names or glob patterns
    /// (`acme:*`, `staging-*`), after `{client}` is expanded. A Role entitlement outside
    /// them is a validation error. Absent: anything the connector itself allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantable: Option<Vec<String>>,
}

/// Where a connector's secret is read from. Exactly one source is set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// An environment variable of the latchkey process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file (e.g. a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A key of the operator's `systemsSecretRef` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

/// What offboarding does to an account.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OffboardMode {
    /// Keep the account, disabled, for the record (reversible).
    #[default]
    Disable,
    /// Delete the account.
    Delete,
}

/// A schema for free-form connector settings that Kubernetes accepts as structural.
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
