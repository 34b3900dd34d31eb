//! exec: tests/exec/fake-store.py, a store back office speaking latchkey.exec/v1 that
//! keeps its state in a JSON file (a real program run per call; nothing to start).

use async_trait::async_trait;
use latchkey::connectors::{Connector, Secret, SystemContext};
use latchkey::model::{Environment, OffboardMode, SystemSpec};

use super::{Fixture, Peer};
use crate::proxy::CutProxy;

const TOKEN: &str = "exec-contract-Qw3";

pub struct ExecPeer;

pub struct ExecFixture {
    dir: tempfile::TempDir,
    connector: Box<dyn Connector>,
}

fn connect(dir: &std::path::Path, secret: &str) -> Box<dyn Connector> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/exec/fake-store.py");
    let connection = serde_json::json!({
        "command": ["python3", script],
        "maxConcurrency": 4,
        "settings": {
            "stateFile": dir.join("store.json"),
            "expectTokenFile": dir.join("expected-token"),
        },
    });
    let spec = SystemSpec {
        adopt: false,
        connector: "exec".into(),
        environment: Environment::Staging,
        client: None,
        connection: connection.as_object().cloned().unwrap_or_default(),
        credentials: None,
        prune: true,
        offboard: OffboardMode::Delete,
        grantable: None,
    };
    let ctx = SystemContext {
        name: "shop",
        spec: &spec,
        secret: Some(Secret::new(secret)),
    };
    latchkey::connectors::exec::connect(&ctx).expect("exec connector")
}

impl ExecFixture {
    fn state(&self) -> serde_json::Value {
        std::fs::read_to_string(self.dir.path().join("store.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| serde_json::json!({"users": {}}))
    }
}

#[async_trait]
impl Peer for ExecPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        if std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_err()
        {
            return super::unavailable("exec", "python3 is not installed");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("expected-token"), TOKEN).expect("token file");
        let connector = connect(dir.path(), TOKEN);
        Some(Box::new(ExecFixture { dir, connector }))
    }
}

#[async_trait]
impl Fixture for ExecFixture {
    fn connector(&self) -> &dyn Connector {
        self.connector.as_ref()
    }
    async fn seed_unmanaged(&self, email: &str, entitlement: &str) {
        let mut state = self.state();
        state["users"][email] =
            serde_json::json!({"managed": false, "active": true, "roles": [entitlement]});
        std::fs::write(self.dir.path().join("store.json"), state.to_string()).expect("seed");
    }
    async fn unmanaged_state(&self, email: &str) -> Option<String> {
        let user = self.state()["users"].get(email).cloned()?;
        Some(user.to_string())
    }
    async fn via_proxy(&self, _: &CutProxy) -> Option<Box<dyn Connector>> {
        None
    }
    fn upstream(&self) -> Option<std::net::SocketAddr> {
        None
    }
    fn secret(&self) -> Option<&str> {
        Some(TOKEN)
    }
    async fn with_wrong_secret(&self, wrong: &str) -> Option<Box<dyn Connector>> {
        Some(connect(self.dir.path(), wrong))
    }
}
