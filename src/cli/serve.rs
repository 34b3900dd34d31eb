//! `latchkey serve`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, Exit};
use crate::connectors::Secret;
use crate::serve::{Forge, ForgeKind, OidcConfig, ServeConfig};
use crate::source::{Location, SourceRepo};

/// Serve the self-service page: client admins manage their own team in the browser.
///
/// Admins sign in with the agency's OpenID Connect issuer and see only the clients
/// whose `admins` list them (the agency client's admins see every client). They invite
/// a person with a role from the client's allowedRoles, change a role, set or extend an
/// end, or remove (offboard) a person. Each action is checked as `latchkey check` checks
/// a pull request, shown as its effective-access review, and once confirmed becomes a
/// commit in clients/<client>/ authored as the admin and committed (and signed, with
/// LATCHKEY_SIGNING_KEY) as latchkey: on a branch with a pull request (--forge), or on
/// --branch itself when the Client sets `directCommits: true`. The page never contacts a
/// managed system: `latchkey run` or the operator applies what lands on the branch.
///
/// The repository is given as a URL (file:///srv/access.git for a bare repository on this
/// host); git credentials as for `run` (LATCHKEY_GIT_TOKEN, LATCHKEY_GIT_SSH_KEY). The
/// OIDC client needs the redirect URI <public-url>/callback. Serves /healthz and /metrics.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey serve file:///srv/access.git --public-url http://127.0.0.1:8080 \\
      --oidc-issuer http://127.0.0.1:9000 --oidc-client-id latchkey
  LATCHKEY_OIDC_CLIENT_SECRET=... LATCHKEY_FORGE_TOKEN=... latchkey serve \\
      https://github.com/agency/access.git --public-url https://access.agency.example \\
      --listen 0.0.0.0:8080 --oidc-issuer https://login.agency.example \\
      --oidc-client-id latchkey --forge github --forge-project agency/access")]
pub struct ServeArgs {
    /// The access repository's URL (file://, https://, ssh://, git://).
    pub repo: String,
    /// The branch changes are made against.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Sub-path of the repository that holds the documents (default: its root).
    #[arg(
        long = "path",
        value_name = "DIR",
        default_value = "",
        hide_default_value = true
    )]
    pub subpath: String,
    /// Where the repository is mirrored (default: ~/.cache/latchkey).
    #[arg(long, value_name = "DIR", env = "LATCHKEY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "LATCHKEY_SERVE_LISTEN")]
    pub listen: SocketAddr,
    /// The page's address as browsers reach it: https, or http on a loopback host.
    #[arg(long, value_name = "URL", env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: url::Url,
    /// The OpenID Connect issuer (its /.well-known/openid-configuration is read).
    #[arg(long, value_name = "URL", env = "LATCHKEY_OIDC_ISSUER")]
    pub oidc_issuer: String,
    /// The OIDC client id registered for the page.
    #[arg(long, value_name = "ID", env = "LATCHKEY_OIDC_CLIENT_ID")]
    pub oidc_client_id: String,
    /// Environment variable holding the OIDC client secret.
    #[arg(
        long,
        value_name = "VAR",
        default_value = "LATCHKEY_OIDC_CLIENT_SECRET"
    )]
    pub oidc_client_secret_env: String,
    /// Which git host opens pull requests for changes that are not committed directly.
    #[arg(long, value_enum, default_value = "none", env = "LATCHKEY_FORGE")]
    pub forge: ForgeKind,
    /// The forge's API root (default: https://api.github.com, https://gitlab.com/api/v4).
    #[arg(long, value_name = "URL", env = "LATCHKEY_FORGE_API")]
    pub forge_api: Option<String>,
    /// The repository on the forge: owner/name (GitHub), group/name or id (GitLab).
    #[arg(long, value_name = "PROJECT", env = "LATCHKEY_FORGE_PROJECT")]
    pub forge_project: Option<String>,
    /// Environment variable holding the forge's API token.
    #[arg(long, value_name = "VAR", default_value = "LATCHKEY_FORGE_TOKEN")]
    pub forge_token_env: String,
}

pub async fn run(args: ServeArgs) -> Result<Exit, CliError> {
    let secret = match std::env::var(&args.oidc_client_secret_env) {
        Ok(v) if !v.is_empty() => Secret::new(v),
        _ => {
            eprintln!(
                "error: the OIDC client secret is not set: put it in ${} (or name another variable with --oidc-client-secret-env)",
                args.oidc_client_secret_env
            );
            return Ok(Exit::Errors);
        }
    };
    let location = Location::parse(&args.repo);
    if !matches!(location, Location::Url(_)) {
        eprintln!(
            "error: serve pushes what it commits, so it needs the repository's URL, not a working copy: use file://{} for a bare repository on this host",
            std::path::absolute(&args.repo)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| args.repo.clone())
        );
        return Ok(Exit::Errors);
    }
    let (api, project) = match args.forge {
        ForgeKind::None => (String::new(), String::new()),
        kind => {
            let Some(project) = args.forge_project.clone() else {
                eprintln!("error: --forge {kind:?} needs --forge-project (owner/name)");
                return Ok(Exit::Errors);
            };
            let api = args.forge_api.clone().unwrap_or_else(|| match kind {
                ForgeKind::Gitlab => "https://gitlab.com/api/v4".into(),
                _ => "https://api.github.com".into(),
            });
            (api, project)
        }
    };
    let forge = Forge {
        kind: args.forge,
        api,
        project,
        token: std::env::var(&args.forge_token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new),
    };
    let redirect_url = args
        .public_url
        .join("/callback")
        .map(|u| u.to_string())
        .unwrap_or_default();
    let cfg = ServeConfig {
        listen: args.listen,
        public_url: args.public_url,
        oidc: OidcConfig {
            issuer: args.oidc_issuer,
            client_id: args.oidc_client_id,
            client_secret: secret,
            redirect_url,
        },
        forge,
        branch: args.branch,
        subpath: args.subpath,
    };
    crate::serve::check_public_url(&cfg.public_url).map_err(std::io::Error::other)?;
    let cache = args.cache_dir.unwrap_or_else(super::default_cache_dir);
    let repo = SourceRepo::open(&location, &cache)?;
    if let Err(e) = crate::serve::run(cfg, repo, super::run::shutdown_signal()).await {
        eprintln!("error: {}", crate::source::error_chain(&e));
        return Ok(Exit::Errors);
    }
    Ok(Exit::Ok)
}
