//! The document kinds of an access repository (README, "The repository").
//!
//! Each kind is a `CustomResource` so the same Rust types are the YAML that people write,
//! the CRDs in `crds/`, and the JSON Schemas editors validate against. No I/O lives here.

mod client;
pub mod connection;
mod duration;
mod instant;
mod member;
mod notifier;
mod policy;
pub mod role;
mod system;

pub use client::{Client, ClientSpec};
pub use duration::{GrantDuration, ParseDurationError};
pub use instant::{LATEST, ParseInstantError, parse_instant};
pub use member::{Grant, Member, MemberSpec, Review, identity};
pub use notifier::{Notifier, NotifierSpec, ReceiverType};
pub use policy::{DeletionBrake, OverdueReview, Policy, PolicySpec, Signer, Trust};
pub use role::{Role, RoleSpec};
pub use system::{Credentials, OffboardMode, System, SystemSpec};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `apiVersion` every document carries.
pub const API_VERSION: &str = "latchkey.dev/v1alpha1";
/// The API group of every latchkey kind.
pub const GROUP: &str = "latchkey.dev";

/// Where a system sits; policies and client boundaries are expressed per environment.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A client-facing portal (reports, invoices, project status).
    Portal,
    /// Staging / UAT systems.
    Staging,
    /// Production systems; client members may not reach these by default.
    Production,
}

impl Environment {
    /// The lowercase name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Portal => "portal",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl std::fmt::Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds a repository may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    System,
    Role,
    Client,
    Member,
    Policy,
    Notifier,
}

impl Kind {
    /// Every kind, in the order documents are listed.
    pub const ALL: [Kind; 6] = [
        Kind::Policy,
        Kind::System,
        Kind::Role,
        Kind::Client,
        Kind::Member,
        Kind::Notifier,
    ];

    /// Parses a `kind:` value.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::System => "System",
            Kind::Role => "Role",
            Kind::Client => "Client",
            Kind::Member => "Member",
            Kind::Policy => "Policy",
            Kind::Notifier => "Notifier",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `apiVersion` of a document: it has one value ([`API_VERSION`]), so a document
/// holds no copy of it (tens of thousands of members sit in the parse cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiVersion;

impl Serialize for ApiVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(API_VERSION)
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        if s == API_VERSION {
            Ok(ApiVersion)
        } else {
            Err(serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&s),
                &API_VERSION,
            ))
        }
    }
}

/// The `metadata` of a document: only what latchkey reads.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique per kind.
    pub name: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A whole document with its typed spec, as written in the repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Envelope<S> {
    pub api_version: ApiVersion,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: S,
}
