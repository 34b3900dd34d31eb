//! `exec`: any system, through an external program speaking a small JSON protocol.
//!
//! latchkey runs the program once per call with one JSON request on stdin and reads one
//! JSON response from stdout (protocol `latchkey.exec/v1`, JSON Schemas in `schemas/`):
//!
//! - `{"protocol": "latchkey.exec/v1", "system": "shop", "action": "read", "connection": {...}}`
//!   → `{"accounts": [{"identity", "displayName", "active", "entitlements": [...]}],
//!   "unmanaged": [...], "complete": true}` (or `"complete": false, "reason": "..."`).
//! - `{"protocol": ..., "action": "apply", "change": {"op": "addEntitlement", ...}}`
//!   → `{"ok": true}` or `{"ok": false, "error": {"class": "transient"|"permanent", "message"}}`.
//!
//! The System's credential is passed in the environment as `LATCHKEY_SECRET` only, never
//! in the request. Each call is time-limited (`connection.timeout`, default 30s); the
//! program's own settings are `connection.settings`, sent as the request's `connection`. stderr
//! goes to the log with the secret redacted; so does every string of the answer (reasons,
//! names, entitlements, error messages), before it can reach a plan, a log or the ledger. A non-zero exit, malformed JSON or a timeout
//! is an error naming the System: a read that fails plans nothing there, so it can never
//! prune.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, ErrorClass, Op, Secret,
    Snapshot, SystemContext,
};
use crate::model::connection::ExecConnection;

/// The protocol version latchkey speaks.
pub const PROTOCOL: &str = "latchkey.exec/v1";

/// What latchkey sends on stdin.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Always `latchkey.exec/v1`.
    pub protocol: String,
    /// The System's name.
    pub system: String,
    pub action: Action,
    /// The System's `connection.settings`: the program's own settings (never secrets).
    pub connection: serde_json::Map<String, serde_json::Value>,
    /// For `apply`: the one change to make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Op>,
}

/// What is asked.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// List the accounts latchkey manages and their entitlements.
    Read,
    /// Make one change; must be idempotent.
    Apply,
}

/// The answer to `read`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadResponse {
    /// Accounts carrying latchkey's marker.
    pub accounts: Vec<ExecAccount>,
    /// Other accounts (reported, never changed): an identity, or an account with its
    /// entitlements so that `latchkey import` can turn it into a Member.
    #[serde(default)]
    pub unmanaged: Vec<UnmanagedAccount>,
    /// False when the program could not see everything (nothing is pruned then).
    pub complete: bool,
    /// Why the read is incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One account in a read response.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAccount {
    /// The email: the identity key.
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub active: bool,
    pub entitlements: Vec<String>,
}

/// An account without latchkey's marker in a read response.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum UnmanagedAccount {
    /// Only its identity (what it holds is not reported).
    Identity(String),
    /// The account and what it holds.
    Account(ExecAccount),
}

impl From<ExecAccount> for Account {
    fn from(a: ExecAccount) -> Account {
        Account {
            identity: super::identity(&a.identity),
            display_name: a.display_name,
            active: a.active,
            entitlements: a.entitlements.into_iter().collect(),
            valid_until: None,
        }
    }
}

/// The answer to `apply`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApplyResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExecError>,
}

/// Why an apply failed.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecError {
    /// `transient` is retried with backoff; `permanent` is not.
    pub class: ExecErrorClass,
    pub message: String,
}

/// The error classes a program may report.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExecErrorClass {
    Transient,
    Permanent,
}

/// Builds the `exec` connector: `connection.command` is the program and its arguments,
/// `connection.settings` what the program reads.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let settings: ExecConnection = ctx.settings()?;
    if settings.command.is_empty() {
        return Err(ConnectorError::config(
            "connection.command is required for type exec, e.g. [\"python3\", \"shop.py\"]",
        ));
    }
    Ok(Box::new(ExecConnector {
        system: ctx.name.to_string(),
        command: settings.command,
        connection: settings.settings,
        secret: ctx.secret.clone(),
        timeout: settings
            .timeout
            .map_or(Duration::from_secs(30), |t| t.get()),
        concurrency: settings.max_concurrency.unwrap_or(1).max(1),
    }))
}

/// Runs the program per call.
pub struct ExecConnector {
    system: String,
    command: Vec<String>,
    connection: serde_json::Map<String, serde_json::Value>,
    secret: Option<Secret>,
    timeout: Duration,
    concurrency: usize,
}

impl ExecConnector {
    /// Removes the secret from text that came from the program.
    fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(s) if !s.expose().is_empty() => text.replace(s.expose(), "***"),
            _ => text.to_string(),
        }
    }

    /// Redacts every string and key of a decoded answer. Decoded, not raw: a secret with
    /// a quote or a backslash is escaped in the JSON text, and `\u` escapes can spell it.
    fn redact_value(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            serde_json::Value::Object(map) => {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, mut v)| {
                        self.redact_value(&mut v);
                        (self.redact(&k), v)
                    })
                    .collect();
            }
            _ => {}
        }
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        request: &Request,
    ) -> Result<T, ConnectorError> {
        let sys = &self.system;
        // Errors are reported under the System's name by the plan; `sys` is for logs.
        let what = format!("{:?}", request.action).to_lowercase();
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("LATCHKEY_SECRET")
            .kill_on_drop(true);
        if let Some(s) = &self.secret {
            cmd.env("LATCHKEY_SECRET", s.expose());
        }
        let mut child = cmd.spawn().map_err(|e| {
            ConnectorError::config(format!("cannot start {:?}: {e}", self.command[0]))
        })?;
        let body =
            serde_json::to_vec(request).map_err(|e| ConnectorError::permanent(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program that exits without reading stdin is judged by its answer below.
            let _ = stdin.write_all(&body).await;
        }
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(ConnectorError::transient(format!("{what} failed: {e}"))),
            Err(_) => {
                return Err(ConnectorError::transient(format!(
                    "{what} timed out after {}s",
                    self.timeout.as_secs()
                )));
            }
        };
        let stderr = self.redact(String::from_utf8_lossy(&output.stderr).trim());
        if !stderr.is_empty() {
            tracing::info!(system = %sys, action = %what, "program stderr: {stderr}");
        }
        if !output.status.success() {
            let tail: String = stderr
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect();
            return Err(ConnectorError::transient(format!(
                "{what} exited with {}{}",
                output.status,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )));
        }
        let malformed = |e: serde_json::Error| {
            // serde quotes the offending value ("invalid type: string ..."): redacted too.
            ConnectorError::permanent(format!(
                "{what} answered malformed JSON ({}); see docs/exec.md for the protocol",
                self.redact(&e.to_string())
            ))
        };
        let mut answer: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(malformed)?;
        self.redact_value(&mut answer);
        serde_json::from_value(answer).map_err(malformed)
    }

    fn request(&self, action: Action, change: Option<Op>) -> Request {
        Request {
            protocol: PROTOCOL.into(),
            system: self.system.clone(),
            action,
            connection: self.connection.clone(),
            change,
        }
    }
}

#[async_trait]
impl Connector for ExecConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: false,
            max_concurrency: self.concurrency,
        }
    }

    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        let r: ReadResponse = self.call(&self.request(Action::Read, None)).await?;
        let managed = r.accounts.into_iter().map(Account::from).collect();
        let completeness = if r.complete {
            Completeness::Complete
        } else {
            Completeness::Partial(
                r.reason
                    .unwrap_or_else(|| "the program reported an incomplete read".into()),
            )
        };
        Ok(Snapshot {
            managed,
            unmanaged: r
                .unmanaged
                .into_iter()
                .map(|u| {
                    let a = match u {
                        UnmanagedAccount::Identity(who) => Account {
                            identity: super::identity(&who),
                            display_name: None,
                            active: true,
                            entitlements: super::EntitlementSet::new(),
                            valid_until: None,
                        },
                        UnmanagedAccount::Account(a) => Account::from(a),
                    };
                    (a.identity.clone(), a)
                })
                .collect(),
            completeness,
            foreign_grants: Vec::new(),
            warnings: Vec::new(),
        })
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        // Protocol v1 programs are never asked to enforce expiry (see docs/exec.md).
        if let Op::SetExpiry { .. } = op {
            return Err(ConnectorError::no_native_expiry("exec"));
        }
        // Protocol v1 has no adoption: a program would not know the op.
        if let Op::AdoptAccount { .. } = op {
            return Err(ConnectorError::no_adoption("exec"));
        }
        let r: ApplyResponse = self
            .call(&self.request(Action::Apply, Some(op.clone())))
            .await?;
        match (r.ok, r.error) {
            (true, _) => Ok(()),
            (false, Some(e)) => Err(ConnectorError::new(
                match e.class {
                    ExecErrorClass::Transient => ErrorClass::Transient,
                    ExecErrorClass::Permanent => ErrorClass::Permanent,
                },
                e.message,
            )),
            (false, None) => Err(ConnectorError::permanent(
                "the program answered ok: false without an error",
            )),
        }
    }
}

/// JSON Schemas of the protocol, by file name (written to `schemas/`).
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    let s = |schema: schemars::Schema| serde_json::to_value(schema).unwrap_or_default();
    vec![
        ("exec-request.json", s(schemars::schema_for!(Request))),
        (
            "exec-read-response.json",
            s(schemars::schema_for!(ReadResponse)),
        ),
        (
            "exec-apply-response.json",
            s(schemars::schema_for!(ApplyResponse)),
        ),
    ]
}
