//! `Role`: a named bundle of entitlements per system.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A role people are granted; it expands to entitlements on systems.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "Role",
    namespaced
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// What the role is for, shown in plans and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Entitlements per system name. `{client}` expands to the grant's client.
    pub entitlements: BTreeMap<String, Vec<String>>,
}

/// The placeholder in an entitlement replaced by the grant's client.
pub const CLIENT_PLACEHOLDER: &str = "{client}";
