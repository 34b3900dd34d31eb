//! SCIM peers, one process per test: scim2-server (PyPI, in the venv of
//! scripts/peers/install-scim.sh) and django-scim2 (PyPI, in the venv of
//! scripts/peers/install-django-scim.sh, served by the project in peers/django-scim/).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use latchkey::connectors::Connector;
use latchkey::connectors::Secret;
use latchkey::connectors::scim::{ScimConfig, ScimConnector};
use serde_json::{Value, json};

use super::{Child, Fixture, Peer, free_port, unavailable, wait_for_port};
use crate::proxy::CutProxy;

/// The scim2-server executable.
pub fn server_binary() -> PathBuf {
    let venv = std::env::var("LATCHKEY_SCIM_VENV")
        .unwrap_or_else(|_| "/opt/latchkey-peers/scim-venv".into());
    PathBuf::from(venv).join("bin/scim2-server")
}

/// The Python of the django-scim2 venv.
pub fn django_python() -> PathBuf {
    let venv = std::env::var("LATCHKEY_DJANGO_SCIM_VENV")
        .unwrap_or_else(|_| "/opt/latchkey-peers/django-scim-venv".into());
    PathBuf::from(venv).join("bin/python")
}

/// A running SCIM server with a bearer token.
pub struct ScimServer {
    _child: Child,
    pub port: u16,
    pub token: String,
    pub base: String,
    /// django-scim2's SQLite database, removed with the server.
    data: Option<tempfile::TempDir>,
}

impl ScimServer {
    /// Starts the server, or explains why it cannot.
    pub fn start(tenant: &str) -> Result<ScimServer, String> {
        let bin = server_binary();
        if !bin.is_file() {
            return Err(format!("{} not found", bin.display()));
        }
        let port = free_port();
        let token = format!("tok-{port}-{}", std::process::id());
        let child = Command::new(&bin)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", &token, "--tenant", tenant])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let child = Child(child);
        if !wait_for_port(port, Duration::from_secs(30)) {
            return Err(format!("scim2-server did not listen on {port} within 30 s"));
        }
        Ok(ScimServer {
            _child: child,
            port,
            token,
            base: format!("http://127.0.0.1:{port}/{tenant}/v2"),
            data: None,
        })
    }

    /// Starts django-scim2 on a fresh SQLite database, or explains why it cannot.
    pub fn start_django() -> Result<ScimServer, String> {
        let python = django_python();
        if !python.is_file() {
            return Err(format!("{} not found", python.display()));
        }
        let serve = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/contract/peers/django-scim/serve.py");
        let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let port = free_port();
        let token = format!("tok-{port}-{}", std::process::id());
        let child = Command::new(&python)
            .arg(&serve)
            .arg(port.to_string())
            .arg(data.path())
            .arg(&token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", serve.display()))?;
        let child = Child(child);
        if !wait_for_port(port, Duration::from_secs(60)) {
            return Err(format!("django-scim2 did not listen on {port} within 60 s"));
        }
        Ok(ScimServer {
            _child: child,
            port,
            token,
            base: format!("http://127.0.0.1:{port}/scim/v2"),
            data: Some(data),
        })
    }
}

pub struct ScimPeer;

/// The same fixture on django-scim2: another PATCH and filter implementation.
pub struct DjangoScimPeer;

#[async_trait]
impl Peer for DjangoScimPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        match ScimServer::start_django() {
            Ok(server) => Some(Box::new(ScimFixture::new(server))),
            Err(why) => unavailable("django-scim2", &why),
        }
    }
}

pub struct ScimFixture {
    server: ScimServer,
    connector: ScimConnector,
    http: reqwest::Client,
}

fn config(base: &str) -> ScimConfig {
    let mut c = ScimConfig::new(base);
    // Small pages so reads really page; quick retries so cut connections fail fast.
    c.page_size = 7;
    c.max_retries = 2;
    c.retry_base = Duration::from_millis(20);
    c.timeout = Duration::from_secs(10);
    c
}

#[async_trait]
impl Peer for ScimPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        match ScimServer::start("portal") {
            Ok(server) => Some(Box::new(ScimFixture::new(server))),
            Err(why) => unavailable("scim2-server", &why),
        }
    }
}

impl ScimFixture {
    fn new(server: ScimServer) -> ScimFixture {
        let connector = ScimConnector::new(
            config(&server.base),
            Some(Secret::new(server.token.clone())),
        )
        .expect("connector");
        ScimFixture {
            server,
            connector,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.base))
            .bearer_auth(&self.server.token);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("scim request");
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }
}

#[async_trait]
impl Fixture for ScimFixture {
    fn connector(&self) -> &dyn Connector {
        &self.connector
    }
    async fn seed_unmanaged(&self, email: &str, entitlement: &str) {
        let user = self
            .call(
                reqwest::Method::POST,
                "/Users",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": email, "externalId": "okta-00u1", "active": true,
                })),
            )
            .await;
        let group = self
            .call(
                reqwest::Method::POST,
                "/Groups",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": entitlement,
                    // A dangling member too where the server keeps them (scim2-server).
                    "members": if self.server.data.is_none() {
                        json!([{"value": user["id"]}, {"value": "no-such-user"}])
                    } else {
                        json!([{"value": user["id"]}])
                    },
                })),
            )
            .await;
        // django-scim2 ignores members in a POST; both take a PATCH add.
        self.call(
            reqwest::Method::PATCH,
            &format!("/Groups/{}", group["id"].as_str().expect("group id")),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
            })),
        )
        .await;
    }
    async fn unmanaged_state(&self, email: &str) -> Option<String> {
        let filter = urlencoding::encode(&format!("userName eq \"{email}\"")).into_owned();
        let users = self
            .call(
                reqwest::Method::GET,
                &format!("/Users?filter={filter}"),
                None,
            )
            .await;
        let user = users["Resources"].as_array()?.first()?.clone();
        let id = user["id"].as_str()?.to_string();
        // Every group, matched here: not every server filters on members.value.
        let groups = self
            .call(reqwest::Method::GET, "/Groups?count=1000", None)
            .await;
        let mut names: Vec<String> = groups["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                g["members"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["value"] == id.as_str()))
            })
            .filter_map(|g| g["displayName"].as_str().map(str::to_string))
            .collect();
        names.sort();
        Some(format!(
            "{}|{}|{}|{}",
            user["active"],
            user["externalId"],
            user["userName"],
            names.join(",")
        ))
    }
    async fn via_proxy(&self, proxy: &CutProxy) -> Option<Box<dyn Connector>> {
        let base = self.server.base.replace(
            &format!(":{}/", self.server.port),
            &format!(":{}/", proxy.addr.port()),
        );
        Some(Box::new(
            ScimConnector::new(config(&base), Some(Secret::new(self.server.token.clone())))
                .expect("connector"),
        ))
    }
    fn upstream(&self) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], self.server.port)))
    }
    fn secret(&self) -> Option<&str> {
        Some(&self.server.token)
    }
    async fn entitlement_objects(&self, name: &str) -> Option<usize> {
        let f = urlencoding::encode(&format!("displayName eq \"{name}\"")).into_owned();
        let groups = self
            .call(reqwest::Method::GET, &format!("/Groups?filter={f}"), None)
            .await;
        groups["Resources"].as_array().map(Vec::len)
    }
    async fn with_wrong_secret(&self, wrong: &str) -> Option<Box<dyn Connector>> {
        Some(Box::new(
            ScimConnector::new(config(&self.server.base), Some(Secret::new(wrong)))
                .expect("connector"),
        ))
    }
}
