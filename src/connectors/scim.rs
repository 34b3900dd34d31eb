//! `scim`: SaaS portals and IdPs speaking SCIM 2.0 (RFC 7643 / RFC 7644).
//!
//! - A person is a User whose `userName` is their email; latchkey marks its users with
//!   `externalId: "latchkey:<email>"`. Users without that marker are out of scope.
//! - An entitlement is a Group, matched by `displayName` (created when first granted).
//! - Membership changes only by PATCH, never by PUT of a group, so large groups are never
//!   rewritten or truncated. Removal sends the RFC 7644 filtered path or the value array
//!   Entra ID and Okta send (`memberRemove`; `auto` falls back on 501/400 and remembers).
//! - A 2xx is not proof: a group POST with members, and the first change of each kind,
//!   are read back; a server that ignored `members` in a POST gets a PATCH, and a change
//!   the server did not make fails as permanent, never recorded as applied.
//! - Reads page with `startIndex`/`count` until `totalResults`, and stop after
//!   `maxPages` pages (a server that never ends yields a Partial snapshot).
//! - 429, 5xx other than 501 and dropped connections are Transient (with the server's
//!   `Retry-After`), every 4xx and 501 Permanent. Nothing is retried here: the apply
//!   engine retries changes and `list` each page, both through [`super::retry`].
//! - Ids are resolved once per connector (one reconcile): a user's id found or created
//!   by one change is reused by that person's next changes, a group's id by every grant
//!   of the role, so a grant costs one PATCH instead of a filter lookup and a PATCH. A
//!   cached id the server answers 404 for is forgotten and resolved again.
//! - Tolerated quirks: `active` as the strings "True"/"False", missing ETags, group
//!   members that are not users (dangling ids), missing `totalResults`.
//!
//! `connection`: `url` (the SCIM base, e.g. `https://portal.example/scim/v2`, required),
//! `pageSize` (100), `maxPages` (1000), `maxConcurrency` (8), `maxRetries` (4),
//! `retryBase` (200ms), `timeout` (30s), `memberRemove` (auto). `credentials`: the
//! bearer token.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, ErrorClass, MANAGED_MARKER, Op,
    Secret, Snapshot, SystemContext, retry::Retry,
};
use crate::model::connection::{MemberRemoveSetting, ScimConnection};

mod bulk;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Settings of one SCIM system.
#[derive(Clone, Debug)]
pub struct ScimConfig {
    /// Base URL without a trailing slash (`.../v2`).
    pub url: String,
    pub page_size: usize,
    pub max_pages: usize,
    pub max_concurrency: usize,
    pub max_retries: u32,
    pub retry_base: Duration,
    pub timeout: Duration,
    /// How a member is removed from a group (`memberRemove`).
    pub member_remove: MemberRemove,
}

/// The PATCH shapes that remove one member from a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RemoveShape {
    /// RFC 7644 §3.5.2.2: `{"op":"remove","path":"members[value eq \"<id>\"]"}`.
    Filtered,
    /// What Entra ID and Okta send: `{"op":"remove","path":"members","value":[{"value":"<id>"}]}`.
    ValueArray,
}

/// `connection.memberRemove`: `auto` (default: the filtered path, then the value array
/// when the server refuses it with 501 or 400, remembered per connector), `filtered` or
/// `valueArray` (only that shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRemove {
    Auto,
    Only(RemoveShape),
}

impl ScimConfig {
    /// Defaults for a base URL.
    pub fn new(url: impl Into<String>) -> ScimConfig {
        ScimConfig {
            url: url.into().trim_end_matches('/').to_string(),
            page_size: 100,
            max_pages: 1000,
            max_concurrency: 8,
            max_retries: 4,
            retry_base: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
            member_remove: MemberRemove::Auto,
        }
    }

    /// The config of a System's typed settings.
    pub fn from_settings(s: ScimConnection) -> Result<ScimConfig, String> {
        let url = s.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("connection.url {url:?} must be an http(s) URL"));
        }
        let mut c = ScimConfig::new(url);
        let positive = |key: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(format!("connection.{key} must be a positive integer")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        c.page_size = positive("pageSize", s.page_size, c.page_size)?;
        c.max_pages = positive("maxPages", s.max_pages, c.max_pages)?;
        c.max_concurrency = positive("maxConcurrency", s.max_concurrency, c.max_concurrency)?;
        c.max_retries = s.max_retries.unwrap_or(c.max_retries);
        if let Some(b) = s.retry_base {
            c.retry_base = b.get();
        }
        if let Some(t) = s.timeout {
            c.timeout = t.get();
        }
        c.member_remove = match s.member_remove {
            MemberRemoveSetting::Auto => MemberRemove::Auto,
            MemberRemoveSetting::Filtered => MemberRemove::Only(RemoveShape::Filtered),
            MemberRemoveSetting::ValueArray => MemberRemove::Only(RemoveShape::ValueArray),
        };
        Ok(c)
    }
}

/// Builds the `scim` connector for a System.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let config = ScimConfig::from_settings(ctx.settings()?).map_err(ConnectorError::config)?;
    Ok(Box::new(ScimConnector::new(config, ctx.secret.clone())?))
}

/// The SCIM connector.
pub struct ScimConnector {
    config: ScimConfig,
    token: Option<Secret>,
    http: reqwest::Client,
    /// Group ids by displayName; creation is serialised so concurrent grants of a new
    /// role never create the group twice (many servers do not enforce unique names).
    groups: tokio::sync::Mutex<HashMap<String, String>>,
    /// Ids of managed users by lowercased userName, resolved by this connector's changes.
    /// Not filled from `read`: a group PATCH naming a user deleted since is accepted by
    /// servers (a dangling member, no 404), so an id is only trusted from the lookup or
    /// POST of the same apply, as short-lived as the lookup it replaces. Cleared by `read`.
    users: std::sync::Mutex<HashMap<String, String>>,
    /// What this server was seen to accept and honour, learned by this connector.
    learned: std::sync::Mutex<Learned>,
}

/// What a server does with membership requests, learned from its answers.
#[derive(Debug, Default)]
struct Learned {
    /// The removal shape that worked (for `memberRemove: auto`).
    remove: Option<RemoveShape>,
    /// A group POST with `members` was answered 201 without them.
    post_ignores_members: bool,
    /// Kinds of membership change read back once and found made: later ones of the
    /// kind trust the 2xx (the next read would show a server that stopped honouring it).
    proven: BTreeSet<Proof>,
    /// The Bulk limits the server advertises (None inside: no Bulk); None: not asked yet.
    bulk: Option<Option<bulk::BulkLimits>>,
}

/// A kind of membership change, for read-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proof {
    PostMembers,
    Add,
    Remove(RemoveShape),
}

/// A user as latchkey needs it.
struct User {
    id: String,
    managed: bool,
}

impl ScimConnector {
    /// A connector for `config`, authenticating with the bearer `token` when given.
    pub fn new(config: ScimConfig, token: Option<Secret>) -> Result<ScimConnector, ConnectorError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| ConnectorError::config(format!("cannot build HTTP client: {e}")))?;
        Ok(ScimConnector {
            config,
            token,
            http,
            groups: tokio::sync::Mutex::new(HashMap::new()),
            users: std::sync::Mutex::new(HashMap::new()),
            learned: std::sync::Mutex::new(Learned::default()),
        })
    }

    /// Sends one request (never retried here: see [`super::retry`]); returns the status
    /// and the JSON body (Null when empty). 429 and 5xx other than 501 are transient
    /// errors carrying the server's `Retry-After`; 501 comes back as a status.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ConnectorError> {
        let url = format!("{}{path}", self.config.url);
        let what = format!("SCIM {method} {path}");
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("Accept", "application/scim+json, application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ConnectorError::transient(format!("{what}: {}", plain(&e))))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::retry_after(v, std::time::SystemTime::now()));
        let bytes = resp.bytes().await.map_err(|e| {
            ConnectorError::transient(format!("{what}: response cut off: {}", plain(&e)))
        })?;
        if status == StatusCode::TOO_MANY_REQUESTS
            || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
        {
            return Err(ConnectorError::transient(format!(
                "{what}: HTTP {status}{}",
                detail(&bytes)
            ))
            .with_retry_after(retry_after));
        }
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ConnectorError::transient(format!(
                    "{what}: HTTP {status} with a body that is not JSON: {e}"
                ))
            })?
        };
        Ok((status, value))
    }

    /// The settings this connector runs with.
    pub fn config(&self) -> &ScimConfig {
        &self.config
    }

    /// This System's retry policy (`maxRetries`, `retryBase`).
    fn retry_policy(&self) -> Retry {
        Retry {
            attempts: self.config.max_retries + 1,
            first_backoff: self.config.retry_base,
            ..Retry::default()
        }
    }

    /// `call`, turning unexpected statuses into errors.
    async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        ok: &[StatusCode],
    ) -> Result<(StatusCode, Value), ConnectorError> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        if status.is_success() || ok.contains(&status) {
            return Ok((status, value));
        }
        let text = format!("SCIM {method} {path}: HTTP {status}{}", detail_json(&value));
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::config(format!(
                "{text}; check the System's credentials (bearer token)"
            )),
            StatusCode::NOT_FOUND if path.is_empty() || !path.contains('/') => {
                ConnectorError::config(format!("{text}; check connection.url"))
            }
            _ => ConnectorError::permanent(text),
        })
    }

    /// Reads every resource of `/Users` or `/Groups`, page by page.
    async fn list(
        &self,
        resource: &str,
        attributes: &str,
        into: &mut Vec<Value>,
    ) -> Result<Option<String>, ConnectorError> {
        let mut start = 1usize;
        for page in 0..self.config.max_pages {
            let path = format!(
                "/{resource}?startIndex={start}&count={}&attributes={attributes}",
                self.config.page_size
            );
            // Reads are not retried by the engine: each page goes through the retry layer.
            let (result, _) = self
                .retry_policy()
                .run("SCIM read", || self.expect(Method::GET, &path, None, &[]))
                .await;
            let (_, body) = match result {
                Ok(r) => r,
                Err(e) if page > 0 && e.class == ErrorClass::Transient => {
                    return Ok(Some(format!(
                        "{resource} read stopped at item {start}: {e}"
                    )));
                }
                Err(e) => return Err(e),
            };
            let items = body
                .get("Resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = body.get("totalResults").and_then(Value::as_u64);
            let got = items.len();
            into.extend(items);
            start += got;
            match total {
                Some(t) if (start - 1) as u64 >= t => return Ok(None),
                Some(t) if got == 0 => {
                    return Ok(Some(format!(
                        "{resource}: server reports {t} results but returned an empty page at {start}"
                    )));
                }
                // Without totalResults a short page is the last one.
                None if got < self.config.page_size => return Ok(None),
                _ => {}
            }
        }
        Ok(Some(format!(
            "{resource}: stopped after {} pages (connection.maxPages); the server keeps returning results",
            self.config.max_pages
        )))
    }

    async fn find_user(&self, email: &str) -> Result<Option<User>, ConnectorError> {
        let path = format!(
            "/Users?filter={}&attributes=userName,externalId",
            urlencoding::encode(&format!("userName eq {}", quoted(email)))
        );
        let (_, body) = self.expect(Method::GET, &path, None, &[]).await?;
        let found = body
            .get("Resources")
            .and_then(Value::as_array)
            .and_then(|r| {
                r.iter().find(|u| {
                    u.get("userName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(email))
                })
            });
        Ok(found.and_then(|u| {
            Some(User {
                id: u.get("id")?.as_str()?.to_string(),
                managed: is_managed(u),
            })
        }))
    }

    /// The cached id of the managed user `email`.
    fn cached_user(&self, email: &str) -> Option<String> {
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(email)
            .cloned()
    }

    fn remember_user(&self, email: &str, id: &str) {
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(email.to_string(), id.to_string());
    }

    /// Forgets `email`'s id if it is still `id` (a concurrent change may have resolved
    /// a fresh one meanwhile).
    fn forget_user(&self, email: &str, id: &str) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.get(email).is_some_and(|cached| cached == id) {
            users.remove(email);
        }
    }

    /// Looks the user up on the server; a managed user's id is cached.
    async fn lookup_managed_user(&self, email: &str) -> Result<Option<String>, ConnectorError> {
        match self.find_user(email).await? {
            Some(u) if u.managed => {
                self.remember_user(email, &u.id);
                Ok(Some(u.id))
            }
            Some(_) => Err(ConnectorError::permanent(format!(
                "the SCIM user {email} is not managed by latchkey (externalId has no latchkey marker); it is left alone"
            ))),
            None => Ok(None),
        }
    }

    /// Runs `op` with the id of the managed user `email` (None: no such user). `op`
    /// answers None when the server does not know the id (404): a cached id is then
    /// forgotten and the user looked up once more; after a fresh lookup it means the
    /// user is gone.
    async fn with_user<T, F, Fut>(&self, email: &str, op: F) -> Result<Option<T>, ConnectorError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ConnectorError>>,
    {
        if let Some(id) = self.cached_user(email) {
            if let Some(done) = op(id.clone()).await? {
                return Ok(Some(done));
            }
            self.forget_user(email, &id);
        }
        match self.lookup_managed_user(email).await? {
            Some(id) => op(id).await,
            None => Ok(None),
        }
    }

    async fn find_group(&self, name: &str) -> Result<Option<String>, ConnectorError> {
        if let Some(id) = self.groups.lock().await.get(name) {
            return Ok(Some(id.clone()));
        }
        let id = self.lookup_group(name).await?;
        if let Some(id) = &id {
            self.groups
                .lock()
                .await
                .insert(name.to_string(), id.clone());
        }
        Ok(id)
    }

    /// Forgets `name`'s group id if it is still `id`.
    async fn forget_group(&self, name: &str, id: &str) {
        let mut groups = self.groups.lock().await;
        if groups.get(name).is_some_and(|cached| cached == id) {
            groups.remove(name);
        }
    }

    /// The group's id from the server (no cache).
    async fn lookup_group(&self, name: &str) -> Result<Option<String>, ConnectorError> {
        let path = format!(
            "/Groups?filter={}&attributes=displayName",
            urlencoding::encode(&format!("displayName eq {}", quoted(name)))
        );
        let (_, body) = self.expect(Method::GET, &path, None, &[]).await?;
        Ok(body
            .get("Resources")
            .and_then(Value::as_array)
            .and_then(|r| {
                r.iter()
                    .find(|g| g.get("displayName").and_then(Value::as_str) == Some(name))
            })
            .and_then(|g| g.get("id")?.as_str().map(str::to_string)))
    }

    /// Sets `active`; false when the server has no user `id` (404).
    async fn set_active(&self, id: &str, active: bool) -> Result<bool, ConnectorError> {
        let body = json!({
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "replace", "path": "active", "value": active}],
        });
        let (status, _) = self
            .expect(
                Method::PATCH,
                &format!("/Users/{id}"),
                Some(&body),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(status != StatusCode::NOT_FOUND)
    }

    async fn add_member(&self, user: &str, group: &str) -> Result<(), ConnectorError> {
        let cached = self.groups.lock().await.get(group).cloned();
        if let Some(gid) = cached {
            if self.patch_add(&gid, user).await? {
                return Ok(());
            }
            // Deleted elsewhere since it was resolved: resolve or create it again below.
            self.forget_group(group, &gid).await;
        }
        // Serialise resolution and creation: the lock is held across the lookup, the
        // POST and the cache insert, so concurrent grants of a new role create one group
        // (and look it up once).
        let mut cache = self.groups.lock().await;
        let known = match cache.get(group) {
            Some(gid) => Some(gid.clone()),
            None => self.lookup_group(group).await?,
        };
        if let Some(gid) = known {
            cache.insert(group.to_string(), gid.clone());
            drop(cache);
            return self.patch_add_fresh(&gid, group, user).await;
        }
        // Members in the POST save a request where the server honours them; where it
        // was seen not to, the group is created empty and the member PATCHed in.
        let with_members = !self.learned().post_ignores_members;
        let mut body = json!({"schemas": [GROUP_SCHEMA], "displayName": group});
        if with_members {
            body["members"] = json!([{"value": user}]);
        }
        let (status, created) = self
            .expect(
                Method::POST,
                "/Groups",
                Some(&body),
                &[StatusCode::CONFLICT],
            )
            .await?;
        if status == StatusCode::CONFLICT {
            // Created by someone else meanwhile: add to theirs.
            let gid = self.lookup_group(group).await?.ok_or_else(|| {
                ConnectorError::transient(format!(
                    "SCIM group {group:?} conflicts but cannot be found"
                ))
            })?;
            cache.insert(group.to_string(), gid.clone());
            drop(cache);
            return self.patch_add_fresh(&gid, group, user).await;
        }
        let gid = created
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "SCIM POST /Groups for {group:?}: HTTP {status} without the new group's id"
                ))
            })?
            .to_string();
        cache.insert(group.to_string(), gid.clone());
        drop(cache);
        if with_members && self.holds(&gid, user, &created, Proof::PostMembers).await? {
            return Ok(());
        }
        if with_members {
            tracing::warn!(
                group,
                "the SCIM server created the group without its members; adding them by PATCH"
            );
            self.learned().post_ignores_members = true;
        }
        self.patch_add_fresh(&gid, group, user).await
    }

    /// Adds `user` to a group whose id was just looked up.
    async fn patch_add_fresh(
        &self,
        gid: &str,
        group: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        if self.patch_add(gid, user).await? {
            return Ok(());
        }
        self.forget_group(group, gid).await;
        Err(ConnectorError::transient(format!(
            "SCIM group {group:?} was deleted while being granted"
        )))
    }

    /// Removes `user` from the group named `group`, if there is one.
    async fn remove_member(&self, user: &str, group: &str) -> Result<(), ConnectorError> {
        let Some(gid) = self.find_group(group).await? else {
            return Ok(());
        };
        if self.patch_remove(&gid, user).await? {
            return Ok(());
        }
        // Deleted elsewhere since it was resolved: another group may hold the name now.
        self.forget_group(group, &gid).await;
        match self.find_group(group).await? {
            Some(gid) => self.patch_remove(&gid, user).await.map(drop),
            None => Ok(()),
        }
    }

    /// Adds a member; false when the server has no group `gid` (404). A 2xx the read-back
    /// contradicts is a permanent failure: the server did not make the change.
    async fn patch_add(&self, gid: &str, user: &str) -> Result<bool, ConnectorError> {
        let body = add_members_body(user);
        let path = format!("/Groups/{gid}");
        let (status, answer) = self
            .expect(Method::PATCH, &path, Some(&body), &[StatusCode::NOT_FOUND])
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !self.holds(gid, user, &answer, Proof::Add).await? {
            return Err(ignored(&path, status, "add", user));
        }
        Ok(true)
    }

    /// Removes a member; false when the server has no group `gid` (404). With
    /// `memberRemove: auto` the filtered path is tried first and the value array when the
    /// server refuses it (501, or 400 other than noTarget); what worked is remembered.
    async fn patch_remove(&self, gid: &str, user: &str) -> Result<bool, ConnectorError> {
        let shapes = match (self.config.member_remove, self.learned().remove) {
            (MemberRemove::Only(shape), _) | (MemberRemove::Auto, Some(shape)) => vec![shape],
            (MemberRemove::Auto, None) => vec![RemoveShape::Filtered, RemoveShape::ValueArray],
        };
        let path = format!("/Groups/{gid}");
        let mut refused = Vec::new();
        for shape in shapes {
            let body = remove_members_body(shape, user);
            let (status, answer) = self
                .expect(
                    Method::PATCH,
                    &path,
                    Some(&body),
                    &[
                        StatusCode::BAD_REQUEST,
                        StatusCode::NOT_FOUND,
                        StatusCode::NOT_IMPLEMENTED,
                    ],
                )
                .await?;
            let no_target = answer.get("scimType").and_then(Value::as_str) == Some("noTarget");
            match status {
                StatusCode::NOT_FOUND => return Ok(false),
                // Some servers answer so when the member is already gone.
                StatusCode::BAD_REQUEST if no_target => return Ok(true),
                StatusCode::BAD_REQUEST | StatusCode::NOT_IMPLEMENTED => {
                    refused.push(format!("{shape:?}: HTTP {status}{}", detail_json(&answer)));
                    continue;
                }
                _ => {}
            }
            if self.config.member_remove == MemberRemove::Auto {
                self.learned().remove = Some(shape);
            }
            if self.holds(gid, user, &answer, Proof::Remove(shape)).await? {
                return Err(ignored(&path, status, "remove", user));
            }
            return Ok(true);
        }
        Err(ConnectorError::permanent(format!(
            "SCIM PATCH {path}: the server refused to remove a member ({}); set connection.memberRemove to the shape it accepts",
            refused.join("; ")
        )))
    }

    /// Whether group `gid` holds `user` after a change of kind `proof`: from the answer's
    /// body when it carries the group, else read back (`GET /Groups/{gid}`), unless a
    /// change of this kind was read back and found made before. A kind already proven
    /// is reported as made (true for add and POST, false for remove).
    async fn holds(
        &self,
        gid: &str,
        user: &str,
        answer: &Value,
        proof: Proof,
    ) -> Result<bool, ConnectorError> {
        let expected = !matches!(proof, Proof::Remove(_));
        let seen = match member_of(answer, user) {
            Some(seen) => seen,
            None if self.learned().proven.contains(&proof) => return Ok(expected),
            None => {
                let (_, group) = self
                    .expect(
                        Method::GET,
                        &format!("/Groups/{gid}?attributes=members"),
                        None,
                        &[],
                    )
                    .await?;
                member_of(&group, user).unwrap_or(false)
            }
        };
        if seen == expected {
            self.learned().proven.insert(proof);
        }
        Ok(seen)
    }

    fn learned(&self) -> std::sync::MutexGuard<'_, Learned> {
        self.learned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// POSTs a new managed user and caches its id.
    async fn create_user(
        &self,
        email: &str,
        display_name: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let body = user_body(email, display_name);
        let (status, created) = self
            .expect(Method::POST, "/Users", Some(&body), &[StatusCode::CONFLICT])
            .await?;
        if status == StatusCode::CONFLICT {
            // Created meanwhile (a retried POST, or a race): fine if it is ours.
            return match self.find_user(email).await? {
                Some(u) if u.managed => {
                    self.remember_user(email, &u.id);
                    Ok(())
                }
                _ => Err(ConnectorError::permanent(format!(
                    "a SCIM user {email} exists and is not managed by latchkey; it is left alone"
                ))),
            };
        }
        if let Some(id) = created.get("id").and_then(Value::as_str) {
            self.remember_user(email, id);
        }
        Ok(())
    }

    /// Deletes the user `id` after taking it out of its groups; false when the server
    /// has no user `id` (404).
    async fn delete_user(&self, id: &str) -> Result<bool, ConnectorError> {
        // Servers differ on cleaning memberships of deleted users; do it first.
        let filter = urlencoding::encode(&format!("members.value eq {}", quoted(id))).into_owned();
        let path = format!("/Groups?filter={filter}&attributes=displayName");
        if let Ok((_, body)) = self.expect(Method::GET, &path, None, &[]).await {
            for g in body
                .get("Resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(gid) = g.get("id").and_then(Value::as_str) {
                    // A group deleted meanwhile holds nobody.
                    self.patch_remove(gid, id).await?;
                }
            }
        }
        let (status, _) = self
            .expect(
                Method::DELETE,
                &format!("/Users/{id}"),
                None,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(status != StatusCode::NOT_FOUND)
    }
}

#[async_trait]
impl Connector for ScimConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: false,
            max_concurrency: self.config.max_concurrency,
        }
    }

    fn retry(&self) -> Option<Retry> {
        Some(self.retry_policy())
    }

    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        // A read starts a new view: the changes planned from it resolve users afresh.
        self.users.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // Whether the changes planned from it can go in Bulk requests (`batch_size`).
        self.bulk_limits().await;
        let mut users = Vec::new();
        let mut partial = self
            .list(
                "Users",
                "userName,externalId,active,displayName",
                &mut users,
            )
            .await?;
        let mut groups = Vec::new();
        match self
            .list("Groups", "displayName,members", &mut groups)
            .await
        {
            Ok(p) => partial = partial.or(p),
            // Users were read but groups not at all: report what we know, as partial.
            Err(e) if e.class == ErrorClass::Transient => {
                partial = Some(format!("Groups could not be read: {e}"))
            }
            Err(e) => return Err(e),
        }
        let mut by_id: HashMap<String, String> = HashMap::new();
        // Managed and unmanaged users alike, told apart by the marker.
        let mut accounts: BTreeMap<String, (bool, Account)> = BTreeMap::new();
        for u in &users {
            let (Some(id), Some(name)) = (
                u.get("id").and_then(Value::as_str),
                u.get("userName").and_then(Value::as_str),
            ) else {
                continue;
            };
            let identity = super::identity(name);
            by_id.insert(id.to_string(), identity.clone());
            accounts.insert(
                identity.clone(),
                (
                    is_managed(u),
                    Account {
                        identity,
                        display_name: u
                            .get("displayName")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        active: u.get("active").is_none_or(truthy),
                        entitlements: super::EntitlementSet::new(),
                        valid_until: None,
                    },
                ),
            );
        }
        for g in &groups {
            let Some(name) = g.get("displayName").and_then(Value::as_str) else {
                continue;
            };
            let members = g.get("members").and_then(Value::as_array);
            // Members that are not users are dangling: ignored.
            for m in members.into_iter().flatten() {
                let Some(who) = m
                    .get("value")
                    .and_then(Value::as_str)
                    .and_then(|id| by_id.get(id))
                else {
                    continue;
                };
                if let Some((_, a)) = accounts.get_mut(who) {
                    a.entitlements.insert(name.to_string());
                }
            }
        }
        // Grants of existing roles then skip the group lookup. A name held by several
        // groups is left to `lookup_group`, so the choice among them stays the same; a
        // group deleted after this read answers 404 and is resolved again.
        let mut seen: HashMap<&str, Option<&str>> = HashMap::new();
        for g in &groups {
            if let (Some(name), Some(id)) = (
                g.get("displayName").and_then(Value::as_str),
                g.get("id").and_then(Value::as_str),
            ) {
                seen.entry(name)
                    .and_modify(|first| *first = None)
                    .or_insert(Some(id));
            }
        }
        let mut cache = self.groups.lock().await;
        for (name, id) in seen {
            if let Some(id) = id {
                cache.insert(name.to_string(), id.to_string());
            }
        }
        drop(cache);
        let (managed, unmanaged): (BTreeMap<_, _>, BTreeMap<_, _>) =
            accounts.into_iter().partition(|(_, (m, _))| *m);
        Ok(Snapshot {
            managed: managed.into_values().map(|(_, a)| a).collect(),
            unmanaged: unmanaged.into_iter().map(|(k, (_, a))| (k, a)).collect(),
            completeness: partial.map_or(Completeness::Complete, Completeness::Partial),
            foreign_grants: Vec::new(),
            warnings: Vec::new(),
        })
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        self.apply_one(op).await
    }

    fn batch_size(&self) -> usize {
        // Batches only where Bulk carries them: elsewhere the engine's concurrency
        // over single changes is the faster way. Small batches keep several Bulk
        // requests in flight (the engine runs `maxConcurrency` batches at once).
        match self.learned().bulk {
            Some(Some(limits)) => limits.max_operations.min(100),
            _ => 1,
        }
    }

    async fn apply_batch(&self, ops: &[Op]) -> Vec<Result<(), ConnectorError>> {
        if let Some(done) = self.apply_bulk(ops).await {
            return done;
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(self.apply_one(op).await);
        }
        out
    }
}

impl ScimConnector {
    /// One change, with its own requests.
    async fn apply_one(&self, op: &Op) -> Result<(), ConnectorError> {
        let email = op.identity().to_lowercase();
        match op {
            Op::SetExpiry { .. } => Err(ConnectorError::no_native_expiry("scim")),
            Op::AdoptAccount { .. } => Err(ConnectorError::no_adoption("scim")),
            Op::CreateAccount { display_name, .. } => {
                // Resolved by an earlier change: (re)activate it, as for a lookup below.
                if let Some(id) = self.cached_user(&email) {
                    if self.set_active(&id, true).await? {
                        return Ok(());
                    }
                    self.forget_user(&email, &id);
                }
                match self.find_user(&email).await? {
                    Some(u) if u.managed => {
                        self.remember_user(&email, &u.id);
                        if self.set_active(&u.id, true).await? {
                            return Ok(());
                        }
                        self.forget_user(&email, &u.id);
                        Err(ConnectorError::transient(format!(
                            "the SCIM user {email} was deleted while being activated"
                        )))
                    }
                    Some(_) => Err(ConnectorError::permanent(format!(
                        "a SCIM user {email} exists and is not managed by latchkey; it is left alone"
                    ))),
                    None => self.create_user(&email, display_name.as_deref()).await,
                }
            }
            Op::EnableAccount { .. } => {
                match self
                    .with_user(&email, |id| async move {
                        Ok(self.set_active(&id, true).await?.then_some(()))
                    })
                    .await?
                {
                    Some(()) => Ok(()),
                    None => Err(ConnectorError::permanent(format!(
                        "no SCIM user {email} to enable"
                    ))),
                }
            }
            Op::DisableAccount { .. } => self
                .with_user(&email, |id| async move {
                    Ok(self.set_active(&id, false).await?.then_some(()))
                })
                .await
                .map(drop),
            Op::AddEntitlement { entitlement, .. } => {
                // The group PATCH cannot tell a stale user id (servers accept dangling
                // members), hence the cache's short life (see `users`).
                match self
                    .with_user(&email, |id| async move {
                        self.add_member(&id, entitlement).await.map(Some)
                    })
                    .await?
                {
                    Some(()) => Ok(()),
                    None => Err(ConnectorError::permanent(format!(
                        "no SCIM user {email} managed by latchkey to grant {entitlement:?} to"
                    ))),
                }
            }
            Op::RemoveEntitlement { entitlement, .. } => self
                .with_user(&email, |id| async move {
                    self.remove_member(&id, entitlement).await.map(Some)
                })
                .await
                .map(drop),
            Op::DeleteAccount { .. } => {
                let deleted = self
                    .with_user(&email, |id| async move {
                        Ok(self.delete_user(&id).await?.then_some(id))
                    })
                    .await?;
                if let Some(id) = deleted {
                    self.forget_user(&email, &id);
                }
                Ok(())
            }
        }
    }
}

/// A new managed user.
fn user_body(email: &str, display_name: Option<&str>) -> Value {
    let mut body = json!({
        "schemas": [USER_SCHEMA],
        "userName": email,
        "externalId": marker(email),
        "emails": [{"value": email, "primary": true}],
        "active": true,
    });
    if let Some(n) = display_name {
        body["displayName"] = json!(n);
    }
    body
}

/// A group PATCH adding `user`.
fn add_members_body(user: &str) -> Value {
    json!({
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}],
    })
}

/// A group PATCH removing `user`, in the shape `shape`.
fn remove_members_body(shape: RemoveShape, user: &str) -> Value {
    let op = match shape {
        RemoveShape::Filtered => {
            json!({"op": "remove", "path": format!("members[value eq {}]", quoted(user))})
        }
        RemoveShape::ValueArray => {
            json!({"op": "remove", "path": "members", "value": [{"value": user}]})
        }
    };
    json!({"schemas": [PATCH_SCHEMA], "Operations": [op]})
}

/// Whether a Group resource in `body` lists `user` among its members; None when `body`
/// is not a group (an empty 204, or an answer without the resource).
fn member_of(body: &Value, user: &str) -> Option<bool> {
    if body.get("id").is_none() && body.get("members").is_none() {
        return None;
    }
    let members = body.get("members").and_then(Value::as_array);
    Some(members.into_iter().flatten().any(|m| match m.get("value") {
        Some(Value::String(v)) => v == user,
        Some(Value::Number(n)) => n.to_string() == user,
        _ => false,
    }))
}

/// A membership change the server answered 2xx to and did not make.
fn ignored(path: &str, status: StatusCode, op: &str, user: &str) -> ConnectorError {
    ConnectorError::permanent(format!(
        "SCIM PATCH {path}: HTTP {status}, but reading the group back shows the member {op} of user {user} was not made; the server ignored the change"
    ))
}

/// The externalId latchkey writes.
fn marker(email: &str) -> String {
    format!("{MANAGED_MARKER}:{email}")
}

fn is_managed(user: &Value) -> bool {
    user.get("externalId")
        .and_then(Value::as_str)
        .is_some_and(|x| x == MANAGED_MARKER || x.starts_with(&format!("{MANAGED_MARKER}:")))
}

/// SCIM booleans, tolerating servers that send "True"/"False" strings.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => !s.eq_ignore_ascii_case("false") && s != "0",
        Value::Number(n) => n.as_i64() != Some(0),
        _ => true,
    }
}

/// A SCIM filter string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn detail(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .map(|v| detail_json(&v))
        .unwrap_or_default()
}

fn detail_json(v: &Value) -> String {
    match v.get("detail").and_then(Value::as_str) {
        Some(d) => format!(": {d}"),
        None => String::new(),
    }
}

/// A reqwest error without its source chain noise; it never carries headers.
fn plain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_booleans_are_read() {
        assert!(!truthy(&json!("False")));
        assert!(truthy(&json!("True")));
        assert!(!truthy(&json!(false)));
    }

    #[test]
    fn marker_is_recognised() {
        assert!(is_managed(&json!({"externalId": "latchkey:a@b.c"})));
        assert!(!is_managed(&json!({"externalId": "okta-123"})));
        assert!(!is_managed(&json!({})));
    }

    #[test]
    fn filter_literals_are_escaped() {
        assert_eq!(quoted(r#"a"b"#), r#""a\"b""#);
    }
}
