//! `Member`: a person and their grants.

use std::sync::Arc;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A person, identified by email across systems, and the roles they hold.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "Member",
    namespaced
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberSpec {
    /// Identity key across systems, compared case-insensitively.
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The client this person belongs to; must match the `clients/<client>/` folder.
    pub client: String,
    /// Revoke this person everywhere (kept in git for the record).
    #[serde(default)]
    pub offboarded: bool,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// The identity key of an email, as every comparison sees it: surrounding whitespace
/// trimmed, Unicode NFC (an `é` typed as one code point or as `e` + accent is one
/// person), then lowercased.
pub fn identity(email: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    email.trim().nfc().collect::<String>().to_lowercase()
}

/// One role for one client, optionally inside a time window.
// Hundreds of thousands of these sit in the parse cache, so the strings are `Box<str>`
// (two words, not three) and the rare review is boxed: 104 bytes a grant, not 192. The
// role is an `Arc<str>` that the parser shares among the grants of a file naming the same
// role (a few names, used over and over). (A plain comment: doc comments become the
// schema's description.)
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grant {
    pub role: Arc<str>,
    /// The client whose systems the role applies to; defaults to the member's client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Box<str>>,
    /// RFC 3339 with offset, e.g. `2026-12-15T18:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Box<str>>,
    /// A duration from the time the grant was merged, e.g. `14d`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<Box<str>>,
    /// RFC 3339 with offset; the grant is not in force before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<Box<str>>,
    /// Why the access is needed (a ticket, a project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Box<str>>,
    /// The last access review of this grant: the next one falls due `reviewEvery`
    /// (Client, else Policy) after it, or after the grant was merged when it has none.
    /// Recorded by a commit, so a review is itself a reviewed change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<Box<Review>>,
}

impl Grant {
    /// The grant's terms without its review record: what "the same grant" means when
    /// history is asked when it was merged (a review does not restart `for:`).
    pub fn terms(&self) -> Grant {
        Grant {
            reviewed: None,
            ..self.clone()
        }
    }
}

/// Who confirmed a grant is still needed, and when.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Review {
    /// RFC 3339 with offset, e.g. `2026-09-01T10:00:00Z`; not after the revision.
    pub at: String,
    /// The reviewer's email.
    pub by: String,
}

#[cfg(test)]
mod tests {
    use super::identity;

    #[test]
    fn an_email_in_nfc_and_in_nfd_is_one_identity() {
        let nfc = "zo\u{eb}@acme.example";
        let nfd = "zoe\u{308}@acme.example";
        assert_ne!(nfc, nfd);
        assert_eq!(identity(nfd), identity(nfc));
        assert_eq!(identity(" ZOE\u{308}@ACME.example "), nfc);
    }
}
