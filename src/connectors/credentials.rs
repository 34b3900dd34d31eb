//! Where connector secrets come from: the environment, a file, or a Kubernetes Secret.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Credentials;

/// A secret value. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that sends it to the system.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves a System's `credentials`.
#[derive(Clone, Debug, Default)]
pub struct SecretSource {
    /// Values of the operator's `systemsSecretRef` Secret, by key.
    pub secret_keys: BTreeMap<String, Secret>,
}

impl SecretSource {
    /// Reads the secret, or explains which source is missing (never the value).
    pub fn resolve(&self, creds: &Credentials) -> Result<Secret, String> {
        if let Some(var) = &creds.env {
            return std::env::var(var)
                .map(Secret)
                .map_err(|_| format!("environment variable {var} is not set"));
        }
        if let Some(path) = &creds.file {
            return std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end().to_string()))
                .map_err(|e| format!("cannot read credentials file {path}: {e}"));
        }
        if let Some(key) = &creds.secret_key {
            return self
                .secret_keys
                .get(key)
                .cloned()
                .ok_or_else(|| format!("key {key} is not in the systems Secret"));
        }
        Err("credentials name no source".into())
    }
}
