//! `latchkey serve`: the self-service page for client administrators.
//!
//! An administrator signs in with the agency's OpenID Connect issuer, sees their
//! client's team (and, from the ledger, who had access when), and changes it: each
//! action is validated with the checks `latchkey check` runs on a pull request, shown
//! as its effective-access review, and on confirmation becomes a commit in
//! `clients/<client>/` authored as the administrator and signed as latchkey, pushed as
//! a branch with a pull request, or directly on the branch when the Client sets
//! `directCommits`. The page never contacts a managed system: the controller applies
//! what lands on the branch, as for any other commit.

pub mod edit;
pub mod forge;
mod handlers;
pub mod oidc;
mod pages;
pub mod session;
mod work;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use git2::Oid;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::controller::http::{Limits, serve};
use crate::source::SourceRepo;

pub use edit::Action;
pub use forge::{Forge, ForgeKind};
pub use oidc::OidcConfig;

/// How the page runs.
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The address browsers use, e.g. `https://access.agency.example` (no path).
    pub public_url: url::Url,
    pub oidc: OidcConfig,
    pub forge: Forge,
    /// The branch changes are made against.
    pub branch: String,
    /// The documents' sub-path of the repository.
    pub subpath: String,
}

/// Why the page cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "--public-url {0} is plain http on a host that is not loopback: the session cookie is Secure, so browsers would never send it; serve behind https"
    )]
    PlainHttp(String),
    #[error("--public-url {0} must be an origin (scheme, host, port), without a path")]
    NotAnOrigin(String),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Checks the public URL: https, or http on a loopback host (tests, a port-forward).
pub fn check_public_url(url: &url::Url) -> Result<(), ServeError> {
    if url.path() != "/" || url.query().is_some() {
        return Err(ServeError::NotAnOrigin(url.to_string()));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(ServeError::PlainHttp(url.to_string()));
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// The page's metrics.
struct ServeMetrics {
    registry: Registry,
    actions: Family<ActionLabels, Counter>,
    sign_ins: Family<ResultLabel, Counter>,
}

impl ServeMetrics {
    fn new() -> ServeMetrics {
        let mut registry = Registry::with_prefix("latchkey_serve");
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Actions by kind and outcome: proposed, refused, forbidden, committed, failed",
            actions.clone(),
        );
        let sign_ins = Family::<ResultLabel, Counter>::default();
        registry.register("sign_ins", "Sign-ins by outcome", sign_ins.clone());
        ServeMetrics {
            registry,
            actions,
            sign_ins,
        }
    }

    fn action(&self, action: &str, result: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                action: action.into(),
                result: result.into(),
            })
            .inc();
    }

    fn sign_in(&self, result: &str) {
        self.sign_ins
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A reviewed change waiting for its author's confirmation.
struct Proposal {
    email: String,
    client: String,
    action: Action,
    commit: Oid,
    base: Oid,
    created: Instant,
    /// The commit's subject: the pull request's title.
    subject: String,
    /// The review as Markdown: the pull request's description.
    body: String,
}

/// How long a review stays confirmable.
const PROPOSAL_TTL: std::time::Duration = std::time::Duration::from_secs(1800);

/// What every request shares.
pub struct App {
    cfg: ServeConfig,
    /// Discovered on first use, so the page starts while the IdP is still starting.
    oidc: tokio::sync::OnceCell<oidc::Provider>,
    sessions: Mutex<session::Sessions>,
    proposals: Mutex<HashMap<String, Proposal>>,
    work: Arc<Mutex<work::Workspace>>,
    http: reqwest::Client,
    metrics: ServeMetrics,
}

/// Serves the page until `shutdown` resolves.
pub async fn run(
    cfg: ServeConfig,
    repo: SourceRepo,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    check_public_url(&cfg.public_url)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let work = work::Workspace::new(repo, cfg.branch.clone(), cfg.subpath.clone());
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let app = Arc::new(App {
        cfg,
        oidc: tokio::sync::OnceCell::new(),
        sessions: Mutex::default(),
        proposals: Mutex::default(),
        work: Arc::new(Mutex::new(work)),
        http,
        metrics: ServeMetrics::new(),
    });
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        public = %app.cfg.public_url,
        "serving the self-service page"
    );
    serve(listener, handlers::router(app), Limits::default(), shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_is_https_or_loopback_http_and_an_origin() {
        let ok = |u: &str| check_public_url(&url::Url::parse(u).unwrap());
        for good in [
            "https://access.agency.example",
            "https://access.agency.example:8443/",
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert!(ok(good).is_ok(), "{good}");
        }
        for plain in ["http://access.agency.example", "http://10.0.0.5:8080"] {
            assert!(
                matches!(ok(plain), Err(ServeError::PlainHttp(_))),
                "{plain}"
            );
        }
        for not_origin in [
            "https://agency.example/access",
            "https://agency.example/?x=1",
        ] {
            assert!(
                matches!(ok(not_origin), Err(ServeError::NotAnOrigin(_))),
                "{not_origin}"
            );
        }
    }
}
