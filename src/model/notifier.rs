//! `Notifier`: where latchkey tells people that access is about to change or did
//! (docs/notifications.md).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Credentials;

/// A receiver of notifications: a JSON webhook or a Slack-compatible incoming webhook,
/// each request signed with HMAC-SHA256.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "Notifier",
    namespaced
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifierSpec {
    /// `webhook` (the event as JSON) or `slack` (a `{"text": ...}` body).
    #[serde(rename = "type")]
    pub receiver: ReceiverType,
    /// Where the URL comes from: a webhook URL often is a secret itself (Slack's is), so
    /// it is never written in git.
    pub url: Credentials,
    /// Where the HMAC key that signs each request comes from.
    pub secret: Credentials,
    /// The events to send (`grant-expiring`, `grant-expired`, `offboarding-completed`,
    /// `hold`, `refusal`, `invalid-revision`, `change-failed`, `review-due`). Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// How long before a grant's `expires` the `grant-expiring` event is sent
    /// (default `3d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_within: Option<String>,
    /// Only events about these clients (events about no client, such as an invalid
    /// revision, are always sent). Absent: every client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<String>>,
}

/// The shape of the request body.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverType {
    /// The event as a JSON object.
    Webhook,
    /// A Slack-compatible incoming webhook: `{"text": "..."}`.
    Slack,
}

impl ReceiverType {
    /// The name used in YAML and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverType::Webhook => "webhook",
            ReceiverType::Slack => "slack",
        }
    }
}
