//! `audit/state.yaml`: the last applied revision and what each system looked like.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What latchkey last applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub version: u32,
    /// `main@sha1:<hex>`.
    pub last_applied_revision: String,
    /// The commit id alone, for ancestry checks.
    pub last_applied_commit: String,
    pub applied_at: Option<Timestamp>,
    pub run: String,
    /// Hash of the last ledger record.
    pub ledger_head: String,
    #[serde(default)]
    pub systems: BTreeMap<String, SystemState>,
    /// The newest revision that did not validate, while the last valid one stays in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_invalid_revision: Option<String>,
}

/// A system after the last apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemState {
    pub managed_accounts: usize,
    /// SHA-256 of the sorted managed accounts and entitlements latchkey expects there.
    pub digest: String,
}

impl State {
    pub fn parse(text: &str) -> Result<State, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    pub fn to_yaml(&self) -> String {
        let body = serde_yaml::to_string(self).unwrap_or_default();
        format!("# Written by latchkey after each apply. Do not edit.\n{body}")
    }
}
