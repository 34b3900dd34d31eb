//! `Client`: the boundaries the agency sets for one client.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Environment;

/// A client of the agency and the boundaries of its team's access.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "Client",
    namespaced
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSpec {
    /// The name shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Roles this client's members may hold.
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// The longest grant allowed, e.g. `30d` (expires minus start, or `for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grant_duration: Option<String>,
    /// Environments whose grants must carry `expires` or `for`.
    #[serde(default)]
    pub require_expiry: Vec<Environment>,
    /// How often each grant must be reviewed, e.g. `90d` (default: the Policy's
    /// `reviewEvery`; none: no reviews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_every: Option<String>,
    /// People who may change `clients/<client>/**` (see trust).
    #[serde(default)]
    pub admins: Vec<String>,
    /// `latchkey serve` commits this client's admins' changes directly on the branch
    /// (after the same checks) instead of opening a pull request for the agency to
    /// review. Off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct_commits: bool,
}
