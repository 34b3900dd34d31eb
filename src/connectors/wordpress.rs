//! `wordpress`: WordPress users and roles through the REST API (application passwords).
//!
//! People are WordPress users keyed by email; entitlements are role slugs (`editor`,
//! WooCommerce's `shop_manager`, an agency's own `fulfilment`, ...). Core WordPress cannot
//! store arbitrary user meta over REST without a plugin, so the managed marker is a line
//! `latchkey:managed` in the user's `description` (biographical info), which every stock
//! install accepts; a disabled account also carries a `latchkey:disabled` line. WordPress
//! has no "disabled" state: disabling removes every role, so the user can log in but sees
//! nothing of the shop. See docs/wordpress.md.
//!
//! Requests use the `?rest_route=/wp/v2/users...` form, which works with plain permalinks
//! (a fresh install answers `/wp-json/` with a 301).

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, Op, Secret, Snapshot,
    SystemContext,
};
use crate::model::connection::{ReassignTo, WordpressConnection};

/// The description line marking a user as latchkey's.
pub const MARKER_LINE: &str = "latchkey:managed";
/// The description line marking a managed user as disabled (all roles removed).
pub const DISABLED_LINE: &str = "latchkey:disabled";
/// Largest page WordPress serves.
const MAX_PER_PAGE: u64 = 100;
/// Default guard against a server that never stops announcing more pages.
const DEFAULT_MAX_PAGES: u64 = 1000;

/// Builds the `wordpress` connector from `connection.url`, `connection.user` and the
/// application password in `credentials`.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let settings: WordpressConnection = ctx.settings()?;
    let url = Some(settings.url.as_str())
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| {
            ConnectorError::config(
                "connection.url is required for type wordpress: the site's base URL, e.g. https://staging.shop.example",
            )
        })?
        .trim_end_matches('/')
        .to_string();
    let user = Some(settings.user)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ConnectorError::config(
                "connection.user is required for type wordpress: the login owning the application password",
            )
        })?;
    let secret = ctx.secret.clone().ok_or_else(|| {
        ConnectorError::config(
            "type wordpress needs credentials: the application password of connection.user",
        )
    })?;
    let reassign_to = match settings.reassign_to {
        None => None,
        Some(ReassignTo::Id(n)) => Some(n.to_string()),
        Some(ReassignTo::Login(s)) if !s.is_empty() => Some(s),
        Some(ReassignTo::Login(_)) => {
            return Err(ConnectorError::config(
                "connection.reassignTo must be a user id or login",
            ));
        }
    };
    let positive = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(ConnectorError::config(format!(
            "connection.{key} must be a positive number"
        ))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let per_page = positive("perPage", settings.per_page, MAX_PER_PAGE)?.min(MAX_PER_PAGE);
    let max_pages = positive("maxPages", settings.max_pages, DEFAULT_MAX_PAGES)?;
    let concurrency = positive(
        "maxConcurrency",
        settings.max_concurrency.map(|n| n as u64),
        2,
    )? as usize;
    let timeout = settings
        .timeout
        .map_or(Duration::from_secs(30), |t| t.get());
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConnectorError::config(format!("cannot build the HTTP client: {e}")))?;
    Ok(Box::new(WordPress {
        http,
        url,
        user,
        secret,
        reassign_to,
        per_page,
        max_pages,
        concurrency,
    }))
}

/// The username latchkey gives a new user: the email's local part (WordPress-safe
/// characters only) and 6 hex digits of the email's SHA-256, so two people named
/// `sam@` at different domains do not collide.
pub fn username_for(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let local: String = email
        .split('@')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(40)
        .collect();
    let hash = hex::encode(Sha256::digest(email.as_bytes()));
    let local = if local.is_empty() { "user" } else { &local };
    format!("{local}-{}", &hash[..6])
}

/// Whether a description carries the marker line.
fn has_line(description: &str, line: &str) -> bool {
    description.lines().any(|l| l.trim() == line)
}

/// A description with `line` present or absent, other text kept.
fn with_line(description: &str, line: &str, present: bool) -> String {
    let mut lines: Vec<&str> = description.lines().filter(|l| l.trim() != line).collect();
    if present {
        lines.push(line);
    }
    lines.join("\n")
}

/// A user as `context=edit` shows it.
#[derive(Deserialize, Debug, Clone)]
struct WpUser {
    id: u64,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl WpUser {
    fn managed(&self) -> bool {
        has_line(&self.description, MARKER_LINE)
    }
    fn identity(&self) -> String {
        super::identity(&self.email)
    }
}

/// WordPress's error body.
#[derive(Deserialize, Default)]
struct WpError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A failed request, with WordPress's error code kept for the quirks handled by callers.
struct Failure {
    status: Option<StatusCode>,
    code: String,
    error: ConnectorError,
}

impl From<Failure> for ConnectorError {
    fn from(f: Failure) -> ConnectorError {
        f.error
    }
}

/// The WordPress REST API of one site.
pub struct WordPress {
    http: reqwest::Client,
    url: String,
    user: String,
    secret: Secret,
    reassign_to: Option<String>,
    per_page: u64,
    max_pages: u64,
    concurrency: usize,
}

impl WordPress {
    /// Removes the application password from text that came from the server or the
    /// HTTP stack (WordPress may echo credentials in debug output).
    fn redact(&self, text: &str) -> String {
        let s = self.secret.expose();
        let mut out = text.to_string();
        if !s.is_empty() {
            out = out.replace(s, "***");
            // Application passwords are shown with spaces; WordPress accepts both forms.
            let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            if compact.len() >= 8 {
                out = out.replace(&compact, "***");
            }
        }
        out
    }

    /// Sends one request to `route` (below `/wp/v2`) and returns the status, headers and
    /// JSON body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        route: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(reqwest::header::HeaderMap, Value), Failure> {
        let what = format!("{method} {route}");
        let mut req = self
            .http
            .request(method, format!("{}/", self.url))
            .query(&[("rest_route", format!("/wp/v2{route}"))])
            .query(query)
            .basic_auth(&self.user, Some(self.secret.expose()));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            let e = e.without_url();
            Failure {
                status: None,
                code: String::new(),
                error: ConnectorError::transient(self.redact(&format!("{what} failed: {e}"))),
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| Failure {
            status: Some(status),
            code: String::new(),
            error: ConnectorError::transient(self.redact(&format!(
                "{what}: reading the answer failed: {}",
                e.without_url()
            ))),
        })?;
        if status.is_success() {
            let value = serde_json::from_slice(&bytes).map_err(|e| Failure {
                status: Some(status),
                code: String::new(),
                error: ConnectorError::permanent(format!(
                    "{what}: the answer is not JSON ({e}); is connection.url a WordPress site?"
                )),
            })?;
            return Ok((headers, value));
        }
        let err: WpError = serde_json::from_slice(&bytes).unwrap_or_default();
        let detail = if err.code.is_empty() {
            String::new()
        } else {
            format!(" {}: {}", err.code, strip_tags(&err.message))
        };
        let message = self.redact(&format!("{what}: HTTP {}{detail}", status.as_u16()));
        let error = match status.as_u16() {
            401 | 403 => ConnectorError::config(format!(
                "{message} (check connection.user and its application password)"
            )),
            429 | 500..=599 => ConnectorError::transient(message),
            _ => ConnectorError::permanent(message),
        };
        Err(Failure {
            status: Some(status),
            code: err.code,
            error,
        })
    }

    /// Users matching a search (email or login), with roles and email.
    async fn search(&self, term: &str) -> Result<Vec<WpUser>, ConnectorError> {
        let (_, v) = self
            .call(
                Method::GET,
                "/users",
                &[
                    ("context", "edit".into()),
                    ("search", term.to_string()),
                    ("per_page", MAX_PER_PAGE.to_string()),
                ],
                None,
            )
            .await?;
        parse_users(v)
    }

    /// The user with this email, if any.
    async fn find(&self, identity: &str) -> Result<Option<WpUser>, ConnectorError> {
        let mut found: Vec<WpUser> = self
            .search(identity)
            .await?
            .into_iter()
            .filter(|u| u.identity() == identity)
            .collect();
        Ok(found.pop())
    }

    /// The user with this email, which must carry the marker; `None` when absent.
    async fn find_managed(&self, identity: &str) -> Result<Option<WpUser>, ConnectorError> {
        match self.find(identity).await? {
            Some(u) if u.managed() => Ok(Some(u)),
            Some(_) => Err(out_of_scope(identity)),
            None => Ok(None),
        }
    }

    async fn update(&self, id: u64, body: Value) -> Result<(), ConnectorError> {
        self.call(Method::POST, &format!("/users/{id}"), &[], Some(&body))
            .await?;
        Ok(())
    }

    /// The user id content is reassigned to on delete.
    async fn reassign_id(&self) -> Result<u64, ConnectorError> {
        let Some(target) = &self.reassign_to else {
            return Err(ConnectorError::config(
                "connection.reassignTo is required to delete WordPress users: the id or login of the account that keeps their content",
            ));
        };
        if let Ok(id) = target.parse::<u64>() {
            return Ok(id);
        }
        self.search(target)
            .await?
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(target))
            .map(|u| u.id)
            .ok_or_else(|| {
                ConnectorError::config(format!(
                    "connection.reassignTo: no WordPress user with login {target}"
                ))
            })
    }

    async fn create(
        &self,
        identity: &str,
        display_name: Option<&str>,
    ) -> Result<(), ConnectorError> {
        if let Some(u) = self.find_managed(identity).await? {
            // Already there (e.g. a retry after a timeout): make sure it is enabled.
            if has_line(&u.description, DISABLED_LINE) {
                self.update(
                    u.id,
                    json!({"description": with_line(&u.description, DISABLED_LINE, false)}),
                )
                .await?;
            }
            return Ok(());
        }
        let username = username_for(identity);
        let mut body = json!({
            "username": username,
            "email": identity,
            "password": random_password()?,
            "roles": [],
            "description": MARKER_LINE,
        });
        if let Some(name) = display_name {
            body["name"] = json!(name);
        }
        match self.call(Method::POST, "/users", &[], Some(&body)).await {
            Ok(_) => Ok(()),
            // WordPress answers a taken login with HTTP 500, not 409.
            Err(f)
                if f.code == "existing_user_login"
                    || f.code == "existing_user_email"
                    || f.status == Some(StatusCode::CONFLICT) =>
            {
                let taken = self.search(&username).await?.into_iter().find(|u| {
                    u.username.eq_ignore_ascii_case(&username) || u.identity() == identity
                });
                match taken {
                    Some(u) if u.managed() && u.identity() == identity => Ok(()),
                    _ => Err(ConnectorError::permanent(format!(
                        "cannot create {identity}: the WordPress login {username} or the email is taken by an account latchkey does not manage; it is left alone"
                    ))),
                }
            }
            Err(f) => Err(f.into()),
        }
    }

    async fn set_roles(
        &self,
        identity: &str,
        change: impl FnOnce(&mut BTreeSet<String>),
    ) -> Result<bool, ConnectorError> {
        let Some(u) = self.find_managed(identity).await? else {
            return Ok(false);
        };
        let before: BTreeSet<String> = u.roles.iter().cloned().collect();
        let mut roles = before.clone();
        change(&mut roles);
        if roles != before {
            self.update(u.id, json!({ "roles": roles })).await?;
        }
        Ok(true)
    }
}

fn out_of_scope(identity: &str) -> ConnectorError {
    ConnectorError::permanent(format!(
        "the WordPress user {identity} is not managed by latchkey; it is left alone"
    ))
}

/// How many times a read is started again after the users shifted under it.
const READ_ATTEMPTS: usize = 3;

/// One pass over the users.
enum Paged {
    Read(Snapshot),
    /// A user was deleted during the pass (the overlap did not match): what was read.
    Shifted(Snapshot),
}

impl WordPress {
    /// One pass over `/users` (see [`Connector::read`]).
    async fn read_pages(&self) -> Result<Paged, ConnectorError> {
        // The overlap needs two users a page; a page of one would never advance.
        let per_page = self.per_page.max(2);
        let mut snapshot = Snapshot::default();
        let mut offset = 0u64;
        let mut last_id = None;
        let mut pages = 0u64;
        loop {
            pages += 1;
            let answer = self
                .call(
                    Method::GET,
                    "/users",
                    &[
                        ("context", "edit".into()),
                        ("per_page", per_page.to_string()),
                        ("offset", offset.to_string()),
                        ("orderby", "id".into()),
                        ("order", "asc".into()),
                    ],
                    None,
                )
                .await;
            let (headers, body) = match answer {
                Ok(a) => a,
                Err(f) if pages == 1 => return Err(f.into()),
                Err(f) => {
                    // What was read is kept for drift reports; nothing is pruned.
                    snapshot.completeness = Completeness::Partial(format!(
                        "page {pages} of users failed: {}",
                        f.error.message
                    ));
                    return Ok(Paged::Read(snapshot));
                }
            };
            let total_pages = headers
                .get("x-wp-totalpages")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ConnectorError::permanent(
                        "GET /users: the answer has no X-WP-TotalPages header; is connection.url a WordPress site?",
                    )
                })?;
            let users = parse_users(body)?;
            let full = users.len() as u64 >= per_page;
            let next_last = users.last().map(|u| u.id);
            let mut users = users.into_iter();
            if let Some(prev) = last_id {
                match users.next() {
                    Some(u) if u.id == prev => {}
                    _ => return Ok(Paged::Shifted(snapshot)),
                }
            }
            for u in users {
                add_user(&mut snapshot, u);
            }
            if !full {
                return Ok(Paged::Read(snapshot));
            }
            if pages >= self.max_pages {
                snapshot.completeness = Completeness::Partial(format!(
                    "stopped after {pages} pages of users (the site announces {total_pages}; raise connection.maxPages)"
                ));
                return Ok(Paged::Read(snapshot));
            }
            last_id = next_last;
            offset += per_page - 1;
        }
    }
}

/// Adds a user read from `/users` to the snapshot.
fn add_user(snapshot: &mut Snapshot, u: WpUser) {
    let identity = u.identity();
    if identity.is_empty() {
        return;
    }
    let managed = u.managed();
    let account = Account {
        identity: identity.clone(),
        display_name: (!u.name.is_empty()).then(|| u.name.clone()),
        active: !managed || !has_line(&u.description, DISABLED_LINE),
        entitlements: u.roles.into_iter().collect(),
        valid_until: None,
    };
    if managed {
        // Two users with one email (a site's own duplicates) count once.
        if snapshot.managed.iter().any(|a| a.identity == identity) {
            return;
        }
        snapshot.managed.push(account);
    } else {
        snapshot.unmanaged.insert(identity, account);
    }
}

fn parse_users(v: Value) -> Result<Vec<WpUser>, ConnectorError> {
    serde_json::from_value(v)
        .map_err(|e| ConnectorError::permanent(format!("unexpected users answer: {e}")))
}

/// A long random password nobody learns: the person sets their own through
/// "Lost your password?". It is sent once and never logged or stored.
fn random_password() -> Result<String, ConnectorError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ConnectorError::transient(format!("no randomness for a password: {e}")))?;
    Ok(hex::encode(bytes))
}

/// WordPress error messages may contain HTML (`<strong>Error:</strong>`).
fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[async_trait]
impl Connector for WordPress {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: false,
            max_concurrency: self.concurrency,
        }
    }

    /// Users in id order, page by page, each page starting with the last user of the one
    /// before: a user deleted meanwhile from a page already read would shift the rest
    /// back by one and one user would be skipped in silence; the overlap shows the shift
    /// (ids only grow, so users added meanwhile come at the end), and the read starts
    /// again. After [`READ_ATTEMPTS`] shifted reads the snapshot is Partial: nothing is
    /// pruned from a read the site changed under.
    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        let mut shifted = None;
        for _ in 0..READ_ATTEMPTS {
            match self.read_pages().await? {
                Paged::Read(snapshot) => return Ok(snapshot),
                Paged::Shifted(snapshot) => shifted = Some(snapshot),
            }
        }
        let mut snapshot = shifted.unwrap_or_default();
        snapshot.completeness = Completeness::Partial(format!(
            "the site's users changed while they were read ({READ_ATTEMPTS} times): a user on an earlier page was deleted meanwhile"
        ));
        Ok(snapshot)
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        let identity = op.identity().trim().to_lowercase();
        match op {
            Op::SetExpiry { .. } => Err(ConnectorError::no_native_expiry("wordpress")),
            Op::AdoptAccount { .. } => Err(ConnectorError::no_adoption("wordpress")),
            Op::CreateAccount { display_name, .. } => {
                self.create(&identity, display_name.as_deref()).await
            }
            Op::EnableAccount { .. } => match self.find_managed(&identity).await? {
                Some(u) if has_line(&u.description, DISABLED_LINE) => {
                    self.update(
                        u.id,
                        json!({"description": with_line(&u.description, DISABLED_LINE, false)}),
                    )
                    .await
                }
                Some(_) => Ok(()),
                None => Err(ConnectorError::permanent(format!(
                    "no WordPress user managed by latchkey for {identity}"
                ))),
            },
            Op::AddEntitlement { entitlement, .. } => {
                let role = entitlement.clone();
                if self
                    .set_roles(&identity, |r| {
                        r.insert(role);
                    })
                    .await?
                {
                    Ok(())
                } else {
                    Err(ConnectorError::permanent(format!(
                        "no WordPress user managed by latchkey for {identity}"
                    )))
                }
            }
            Op::RemoveEntitlement { entitlement, .. } => {
                // Already gone is the goal: an absent user is fine.
                self.set_roles(&identity, |r| {
                    r.remove(entitlement);
                })
                .await
                .map(|_| ())
            }
            Op::DisableAccount { .. } => match self.find_managed(&identity).await? {
                Some(u) => {
                    if u.roles.is_empty() && has_line(&u.description, DISABLED_LINE) {
                        return Ok(());
                    }
                    self.update(
                        u.id,
                        json!({
                            "roles": [],
                            "description": with_line(&u.description, DISABLED_LINE, true),
                        }),
                    )
                    .await
                }
                None => Ok(()),
            },
            Op::DeleteAccount { .. } => match self.find_managed(&identity).await? {
                Some(u) => {
                    let reassign = self.reassign_id().await?;
                    match self
                        .call(
                            Method::DELETE,
                            &format!("/users/{}", u.id),
                            &[("force", "true".into()), ("reassign", reassign.to_string())],
                            None,
                        )
                        .await
                    {
                        Ok(_) => Ok(()),
                        // Deleted meanwhile (a retry after a timeout).
                        Err(f) if f.status == Some(StatusCode::NOT_FOUND) => Ok(()),
                        Err(f) => Err(f.into()),
                    }
                }
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SystemSpec;

    /// A stand-in for faults a real WordPress cannot be made to produce on demand (a page
    /// failing mid-read, endless paging, 429). The connector's behaviour against a real
    /// WordPress is tested in tests/wordpress.rs.
    async fn faulty_site() -> String {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::http::{StatusCode as S, Uri};
        use axum::response::IntoResponse;
        // Requests `shifting` has answered: its first pass sees a deletion.
        let served = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let served = served.clone();
            async move {
                let mode = uri.path().trim_matches('/').to_string();
                let param = |name: &str| {
                    uri.query()
                        .unwrap_or("")
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let (offset, per_page) = (param("offset"), param("per_page"));
                // Users with ids `from`.. (one page), all latchkey's.
                let page = |from: u64, n: u64| {
                    let users: Vec<Value> = (from..from + n)
                        .map(|id| {
                            json!({"id": id, "email": format!("U{id}@x.example"), "name": "U",
                                "description": "bio\nlatchkey:managed", "roles": ["editor"]})
                        })
                        .collect();
                    Value::Array(users)
                };
                match mode.as_str() {
                    "busy" => (
                        S::TOO_MANY_REQUESTS,
                        "{\"code\":\"rate\",\"message\":\"slow down\"}",
                    )
                        .into_response(),
                    "midway" if offset == 0 => {
                        ([("x-wp-totalpages", "3")], axum::Json(page(1, per_page))).into_response()
                    }
                    "midway" => (
                        S::SERVICE_UNAVAILABLE,
                        "{\"code\":\"busy\",\"message\":\"<b>Try</b> later\"}",
                    )
                        .into_response(),
                    // Five users, ids 1-5; user 1 is deleted after the first page of the
                    // first pass, so that pass's second page starts one user late.
                    "shifting" => {
                        let n = served.fetch_add(1, Ordering::SeqCst);
                        let ids: Vec<u64> = if n == 0 {
                            (1..=5).collect()
                        } else {
                            (2..=5).collect()
                        };
                        let chunk: Vec<Value> = ids
                            .iter()
                            .skip(offset as usize)
                            .take(per_page as usize)
                            .map(|id| page(*id, 1)[0].clone())
                            .collect();
                        ([("x-wp-totalpages", "3")], axum::Json(Value::Array(chunk)))
                            .into_response()
                    }
                    _ => (
                        [("x-wp-totalpages", "1000000")],
                        axum::Json(page(offset + 1, per_page)),
                    )
                        .into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn connector(url: String, extra: Value) -> Box<dyn Connector> {
        let mut connection = json!({"url": url, "user": "admin"});
        for (k, v) in extra.as_object().unwrap() {
            connection[k] = v.clone();
        }
        let spec: SystemSpec = serde_json::from_value(
            json!({"type": "wordpress", "environment": "staging", "connection": connection}),
        )
        .unwrap();
        connect(&SystemContext {
            name: "store",
            spec: &spec,
            secret: Some(Secret::new("app pass word")),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_page_failing_midway_is_partial_endless_paging_stops_and_429_is_transient() {
        let site = faulty_site().await;
        let snap = connector(format!("{site}/midway"), json!({"perPage": 2}))
            .read()
            .await
            .unwrap();
        assert_eq!(
            snap.completeness,
            Completeness::Partial(
                "page 2 of users failed: GET /users: HTTP 503 busy: Try later".into()
            )
        );
        assert_eq!(snap.managed.len(), 2, "what was read is kept");
        assert_eq!(snap.managed[0].identity, "u1@x.example");

        let snap = connector(
            format!("{site}/endless"),
            json!({"perPage": 2, "maxPages": 4}),
        )
        .read()
        .await
        .unwrap();
        assert_eq!(
            snap.managed.len(),
            5,
            "pages overlap by one user, counted once: 1-2, 2-3, 3-4, 4-5"
        );
        assert_eq!(
            snap.completeness,
            Completeness::Partial(
                "stopped after 4 pages of users (the site announces 1000000; raise connection.maxPages)".into()
            )
        );

        let e = connector(format!("{site}/busy"), json!({}))
            .read()
            .await
            .unwrap_err();
        assert_eq!(e.class, super::super::ErrorClass::Transient);
        assert_eq!(e.message, "GET /users: HTTP 429 rate: slow down");
    }

    /// Regression: a user deleted during a paged read (by another admin, or another test
    /// on a shared site) shifted the rest back by one, and the next page skipped a user
    /// in a read called Complete.
    #[tokio::test]
    async fn a_user_deleted_during_the_read_starts_it_again_and_skips_nobody() {
        let site = faulty_site().await;
        let snap = connector(format!("{site}/shifting"), json!({"perPage": 2}))
            .read()
            .await
            .unwrap();
        assert_eq!(snap.completeness, Completeness::Complete);
        let ids: Vec<&str> = snap.managed.iter().map(|a| a.identity.as_str()).collect();
        assert_eq!(
            ids,
            [
                "u2@x.example",
                "u3@x.example",
                "u4@x.example",
                "u5@x.example"
            ],
            "read again after the deletion: every remaining user, none skipped"
        );
    }

    #[test]
    fn usernames_are_safe_and_distinct_per_email() {
        let a = username_for("Sam.O'Neil+shop@acme.example");
        assert!(a.starts_with("sam.oneilshop-"), "{a}");
        assert_eq!(a.len(), "sam.oneilshop-".len() + 6);
        assert_ne!(username_for("sam@a.example"), username_for("sam@b.example"));
        assert_eq!(username_for("SAM@a.example"), username_for("sam@a.example"));
    }

    #[test]
    fn marker_lines_are_added_and_removed_keeping_other_text() {
        let d = with_line("Fulfilment agent", MARKER_LINE, true);
        assert_eq!(d, "Fulfilment agent\nlatchkey:managed");
        let d = with_line(&d, DISABLED_LINE, true);
        assert!(has_line(&d, DISABLED_LINE) && has_line(&d, MARKER_LINE));
        let d = with_line(&d, DISABLED_LINE, false);
        assert_eq!(d, "Fulfilment agent\nlatchkey:managed");
        assert!(!has_line("latchkey:managed-not", MARKER_LINE));
    }

    #[test]
    fn html_is_stripped_from_wordpress_messages() {
        assert_eq!(
            strip_tags("<strong>Error:</strong> Sorry, that username already exists!"),
            "Error: Sorry, that username already exists!"
        );
    }
}
