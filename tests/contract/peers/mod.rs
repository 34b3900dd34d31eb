//! Real servers for the contract suite, started on loopback ports and stopped on Drop.

pub mod exec;
pub mod ldap;
pub mod pg;
pub mod postgres;
pub mod scim;
pub mod sqlite;
pub mod tls;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use latchkey::connectors::Connector;

/// One test's isolated view of a real system.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The connector under test, on its own tenant / database / file.
    fn connector(&self) -> &dyn Connector;
    /// Creates an account latchkey does not manage (no marker), holding `entitlement`.
    async fn seed_unmanaged(&self, email: &str, entitlement: &str);
    /// How the system holds that account, read around the connector (None: absent).
    async fn unmanaged_state(&self, email: &str) -> Option<String>;
    /// A connector to the same data whose connection passes through `proxy`.
    async fn via_proxy(&self, proxy: &crate::proxy::CutProxy) -> Option<Box<dyn Connector>>;
    /// The host and port the connector talks to (for the proxy), if it talks over TCP.
    fn upstream(&self) -> Option<std::net::SocketAddr>;
    /// The secret the connector uses, to check it never leaks.
    fn secret(&self) -> Option<&str>;
    /// A connector to the same system with a wrong secret.
    async fn with_wrong_secret(&self, wrong: &str) -> Option<Box<dyn Connector>>;
    /// How many objects on the system carry this entitlement's name, where names need
    /// not be unique (SCIM group displayName); None where the system keys them by name.
    async fn entitlement_objects(&self, _name: &str) -> Option<usize> {
        None
    }
}

/// A kind of real system.
#[async_trait]
pub trait Peer {
    /// A fresh fixture, or None when the server is unavailable and peers are optional.
    async fn fixture() -> Option<Box<dyn Fixture>>;
}

/// Skips (prints a notice) or, in CI, fails when a peer cannot run.
pub fn unavailable(peer: &str, why: &str) -> Option<Box<dyn Fixture>> {
    let required = std::env::var("LATCHKEY_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty());
    if required {
        panic!(
            "{peer} test peer cannot start: {why} (LATCHKEY_REQUIRE_PEERS is set; run scripts/peers/install-*.sh)"
        );
    }
    eprintln!("SKIP {peer}: {why} (set LATCHKEY_REQUIRE_PEERS=1 to make this a failure)");
    None
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// Waits until `port` accepts connections or the timeout passes.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

/// A child process killed when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
