//! Typed `connection` settings, one struct per connector type.
//!
//! A System's `connection` stays a JSON map in [`super::SystemSpec`] (the CRD keeps
//! unknown fields so `validate` can name them); these types are what `validate` checks it
//! against and what each connector reads. One convention for every connector: camelCase
//! names, `maxConcurrency` for changes at once, `timeout` as a duration string (`30s`,
//! `2m`, `500ms`). Unknown fields are errors that list the valid names.

use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A positive duration written as jiff reads it: `30s`, `2m`, `1m30s`, `500ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Timeout(Duration);

impl Timeout {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Parses `30s`, `2m`, `500ms`; zero and negative durations are refused.
    pub fn parse(s: &str) -> Result<Timeout, String> {
        let d: jiff::SignedDuration = s
            .parse()
            .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. 30s, 2m or 500ms"))?;
        if d.is_negative() || d.is_zero() {
            return Err(format!("duration {s:?} must be longer than zero"));
        }
        Duration::try_from(d)
            .map(Timeout)
            .map_err(|e| format!("invalid duration {s:?}: {e}"))
    }
}

impl From<Timeout> for String {
    fn from(t: Timeout) -> String {
        jiff::SignedDuration::try_from(t.0)
            .map(|d| format!("{d:#}"))
            .unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timeout::parse(&s).map_err(D::Error::custom)
    }
}

impl JsonSchema for Timeout {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timeout".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: 30s, 2m, 1m30s or 500ms.",
        })
    }
}

/// `postgres`: PostgreSQL roles. The URL carries libpq's TLS parameters (docs/connectors.md).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresConnection {
    /// `postgresql://user@host:port/dbname?sslmode=verify-full&sslrootcert=ca.pem`, without
    /// a password (that is the System's credentials). `sslmode` defaults to `prefer`.
    pub url: String,
    /// Changes at once against this database (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Time to connect, TLS included (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
}

/// Where a `sql` System's tables live.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqlDriver {
    /// A SQLite file (`path`).
    #[default]
    Sqlite,
    /// A PostgreSQL database (`url`, as for `postgres`).
    Postgres,
}

/// `sql`: a portal's own user and role tables.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlConnection {
    /// `sqlite` (default) or `postgres`.
    #[serde(default)]
    pub driver: SqlDriver,
    /// The SQLite file (driver sqlite); never created by latchkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The PostgreSQL URL (driver postgres), with the same TLS parameters as `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Time to connect (driver postgres; default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Table names.
    #[serde(default)]
    pub tables: SqlTables,
    /// Column names.
    #[serde(default)]
    pub columns: SqlColumns,
}

/// `sql` table names (plain SQL identifiers).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlTables {
    /// The users table (default `users`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<String>,
    /// The user–role table (default `user_roles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
}

/// `sql` column names (plain SQL identifiers); each defaults to its snake_case name.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlColumns {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `ldap`: groupOfNames in a directory.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapConnection {
    /// `ldaps://sso.staging:636`, or `ldap://sso.staging:389` with `startTls: true`.
    pub url: String,
    /// The DN latchkey binds as; its password is the System's credentials.
    pub bind_dn: String,
    /// Where person entries live (`uid=<email>,<peopleDn>`).
    pub people_dn: String,
    /// Where groups live (`cn=<entitlement>,<groupsDn>`).
    pub groups_dn: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding (default false).
    #[serde(default)]
    pub start_tls: bool,
    /// A PEM file of the CA(s) that sign the directory's certificate (default: the
    /// system's roots). The host name is always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Send the bind password in cleartext to a host that is not loopback (`ldap://`
    /// without StartTLS). Off by default: such a System is refused before connecting.
    #[serde(default)]
    pub allow_cleartext_bind: bool,
    /// Entries per page of a read (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Changes at once against this directory (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// The placeholder member of a group whose last member is removed (default `cn=nobody`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_member: Option<String>,
    /// Time to connect, TLS included (default 10s); each operation gets 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
}

/// `scim`: a SCIM 2.0 server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScimConnection {
    /// The SCIM base URL, e.g. `https://portal.example/scim/v2`.
    pub url: String,
    /// Resources per page of a read (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<usize>,
    /// Pages read at most per resource type (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<usize>,
    /// Changes at once against this server (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Retries of a request answered 429/5xx or dropped (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// First retry delay, doubled on each retry (default 200ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base: Option<Timeout>,
    /// Time per request (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// How a member is removed from a group (default `auto`): the RFC 7644 filtered path
    /// first, the value array Entra ID and Okta send when the server answers 501 or 400.
    #[serde(default)]
    pub member_remove: MemberRemoveSetting,
}

/// `memberRemove` of a SCIM System.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum MemberRemoveSetting {
    /// The filtered path, falling back to the value array (remembered per run).
    #[default]
    Auto,
    /// Only `path: members[value eq "…"]`.
    Filtered,
    /// Only `path: members` with a `value` array.
    ValueArray,
}

/// Whom RoleBindings name.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SubjectKind {
    #[default]
    User,
    Group,
}

/// `kubernetes`: RoleBindings in one namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesConnection {
    /// The staging namespace.
    pub namespace: String,
    /// `User` (default) or `Group`.
    #[serde(default)]
    pub subject_kind: SubjectKind,
}

/// The account that keeps a deleted WordPress user's content: a user id or a login.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum ReassignTo {
    Id(u64),
    Login(String),
}

/// `wordpress`: users and roles through the REST API.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WordpressConnection {
    /// The site's base URL, e.g. `https://staging.shop.example`.
    pub url: String,
    /// The login owning the application password (the System's credentials).
    pub user: String,
    /// Who keeps the content of deleted users (required for `offboard: delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub reassign_to: Option<ReassignTo>,
    /// Users per page of a read (default and at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u64>,
    /// Pages read at most (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u64>,
    /// Changes at once against the site (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Time per request (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
}

/// `exec`: an external program speaking `latchkey.exec/v1`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecConnection {
    /// The program and its arguments, e.g. `[python3, shop.py]`.
    pub command: Vec<String>,
    /// Time per call (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Calls at once against this system (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// The program's own settings, passed to it as the request's `connection`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(schema_with = "crate::model::system::free_form_object")]
    pub settings: Map<String, Value>,
}

/// Settings renamed when every connector moved to one naming convention: `validate` says
/// what to write instead.
pub const RENAMED: &[(&str, &str, &str)] = &[
    ("exec", "concurrency", "maxConcurrency"),
    ("wordpress", "concurrency", "maxConcurrency"),
    ("scim", "timeoutSecs", "timeout (a duration such as 30s)"),
    (
        "scim",
        "retryBaseMs",
        "retryBase (a duration such as 200ms)",
    ),
];

/// A setting that failed to parse: where (inside `connection`) and why.
#[derive(Debug)]
pub struct SettingsError {
    /// Path segments inside `connection`: keys and sequence indices.
    pub path: Vec<PathSeg>,
    /// serde's message, e.g. "unknown field `starttls`, expected one of `url`, ...".
    pub message: String,
}

/// One step of [`SettingsError::path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut at = String::from("connection");
        for seg in &self.path {
            match seg {
                PathSeg::Key(k) => {
                    at.push('.');
                    at.push_str(k);
                }
                PathSeg::Index(i) => at.push_str(&format!("[{i}]")),
            }
        }
        write!(f, "{at}: {}", self.message)
    }
}

/// Reads `connection` as `T`, with the path of what does not fit.
pub fn parse<T: DeserializeOwned>(connection: &Map<String, Value>) -> Result<T, SettingsError> {
    let value = Value::Object(connection.clone());
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(PathSeg::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        SettingsError {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

/// Checks `connection` against the settings of connector `kind`; an unknown kind is
/// reported elsewhere and passes here.
pub fn check(kind: &str, connection: &Map<String, Value>) -> Result<(), SettingsError> {
    match kind {
        "postgres" => parse::<PostgresConnection>(connection).map(drop),
        "sql" => parse::<SqlConnection>(connection).map(drop),
        "ldap" => parse::<LdapConnection>(connection).map(drop),
        "scim" => parse::<ScimConnection>(connection).map(drop),
        "kubernetes" => parse::<KubernetesConnection>(connection).map(drop),
        "wordpress" => parse::<WordpressConnection>(connection).map(drop),
        "exec" => parse::<ExecConnection>(connection).map(drop),
        _ => Ok(()),
    }
}

/// The settings schema of each connector type, by type name.
pub fn schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("postgres", g.subschema_for::<PostgresConnection>()),
        ("sql", g.subschema_for::<SqlConnection>()),
        ("ldap", g.subschema_for::<LdapConnection>()),
        ("scim", g.subschema_for::<ScimConnection>()),
        ("kubernetes", g.subschema_for::<KubernetesConnection>()),
        ("wordpress", g.subschema_for::<WordpressConnection>()),
        ("exec", g.subschema_for::<ExecConnection>()),
    ]
}

/// `connection` in the CRD and the System schema: every connector's settings in one
/// structural object (Kubernetes accepts no per-type `if`/`then`), unknown fields kept so
/// latchkey's own validation names them. The JSON Schema adds the per-type rules
/// (`latchkey schema`).
pub(crate) fn any_connection(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut properties = Map::new();
    let parts: [schemars::Schema; 7] = [
        PostgresConnection::json_schema(g),
        SqlConnection::json_schema(g),
        LdapConnection::json_schema(g),
        ScimConnection::json_schema(g),
        KubernetesConnection::json_schema(g),
        WordpressConnection::json_schema(g),
        ExecConnection::json_schema(g),
    ];
    for part in parts {
        if let Some(Value::Object(props)) = part.get("properties") {
            for (k, v) in props {
                // No `default`: the API server would write each connector's defaults
                // into every System, whatever its type.
                let mut v = v.clone();
                if let Value::Object(o) = &mut v {
                    o.remove("default");
                }
                properties.entry(k.clone()).or_insert(v);
            }
        }
    }
    schemars::json_schema!({
        "description": "Connector settings, typed per `type` (docs/connectors.md). Never secrets: see `credentials`.",
        "type": "object",
        "properties": properties,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `reassignTo`: a user id or a login, as Kubernetes' structural schemas allow it.
fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Who keeps the content of deleted users: a user id or login (required for `offboard: delete`).",
        "x-kubernetes-int-or-string": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn unknown_settings_name_the_valid_ones() {
        let e = check(
            "ldap",
            &map(json!({"url": "ldap://x", "bindDn": "a", "peopleDn": "b", "groupsDn": "c", "starttls": true})),
        )
        .unwrap_err();
        assert_eq!(e.path, [PathSeg::Key("starttls".into())]);
        assert!(e.message.contains("unknown field `starttls`"), "{e}");
        assert!(e.message.contains("`startTls`"), "{e}");
    }

    #[test]
    fn ill_typed_settings_are_errors_not_defaults() {
        let e = check(
            "postgres",
            &map(json!({"url": "postgresql://x@h/db", "maxConcurrency": "four"})),
        )
        .unwrap_err();
        assert_eq!(e.path, [PathSeg::Key("maxConcurrency".into())]);
        assert!(e.message.contains("invalid type"), "{e}");
        let e = check(
            "sql",
            &map(json!({"driver": "sqlite", "path": "p", "columns": {"emial": "e"}})),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string().split(':').next(),
            Some("connection.columns.emial")
        );
    }

    #[test]
    fn timeouts_are_duration_strings() {
        assert_eq!(
            Timeout::parse("30s").unwrap().get(),
            Duration::from_secs(30)
        );
        assert_eq!(
            Timeout::parse("500ms").unwrap().get(),
            Duration::from_millis(500)
        );
        assert_eq!(
            Timeout::parse("1m30s").unwrap().get(),
            Duration::from_secs(90)
        );
        for bad in ["30", "0s", "-5s", "soon"] {
            assert!(Timeout::parse(bad).is_err(), "{bad} should not parse");
        }
        let e = check("scim", &map(json!({"url": "https://x", "timeout": 30}))).unwrap_err();
        assert_eq!(e.path, [PathSeg::Key("timeout".into())]);
    }
}
