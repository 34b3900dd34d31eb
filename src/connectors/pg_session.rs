//! Opening a PostgreSQL session for `postgres` and `sql` (driver postgres): the URL with
//! libpq's TLS parameters, rustls, and connection errors that say what to do.
//!
//! `sslmode` is libpq's: `disable`, `allow` (plain, TLS if the server insists),
//! `prefer` (the default: TLS when offered), `require` (TLS, the certificate unchecked
//! unless `sslrootcert` is set, then as `verify-ca`), `verify-ca` (the chain) and
//! `verify-full` (the chain and the host name). `sslrootcert` names the CA file, else
//! the system's roots; `sslcert` + `sslkey` a client certificate. tokio-postgres knows
//! only some of these, so they are taken out of the URL before it is parsed.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::{Host, SslMode as DriverSslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{self, ClientCert, Verify};
use super::{ConnectorError, Secret};

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, ConnectorError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnectorError::config(format!(
                    "connection.url: sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

/// Where and how to connect: the driver config plus the TLS latchkey set up for it.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    mode: SslMode,
    /// None for `disable`.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `host:port` as the URL gives it, for messages.
    shown: String,
    /// Every host is loopback (or a Unix socket): nothing crosses a network.
    loopback: bool,
    /// Bounds the whole connect: TCP, TLS and authentication (the driver's own
    /// `connect_timeout` covers only the TCP connect).
    timeout: Duration,
}

/// A session and whether it is encrypted.
pub struct Session {
    pub client: Client,
    pub encrypted: bool,
}

/// libpq parameters latchkey handles itself (tokio-postgres refuses or ignores them).
const TLS_PARAMS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];
/// libpq TLS parameters latchkey does not implement: refused rather than ignored.
const UNSUPPORTED: &[&str] = &[
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
];

impl PgTarget {
    /// Reads `url` (`postgresql://user@host:port/db?sslmode=...`, no password) and sets
    /// the System's secret as the password; `timeout` bounds connecting (default 10s).
    pub fn from_url(
        url: &str,
        secret: Option<&Secret>,
        timeout: Option<Duration>,
    ) -> Result<PgTarget, ConnectorError> {
        let Some(rest) = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
        else {
            return Err(ConnectorError::config(
                "connection.url must be a postgresql:// URL (postgresql://user@host:port/dbname, without a password)",
            ));
        };
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut kept = Vec::new();
        let mut params = std::collections::BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if UNSUPPORTED.contains(&k) {
                return Err(ConnectorError::config(format!(
                    "connection.url: {k} is not supported by latchkey (supported TLS parameters: {})",
                    TLS_PARAMS.join(", ")
                )));
            }
            if TLS_PARAMS.contains(&k) {
                let v = urlencoding::decode(v).map_err(|_| {
                    ConnectorError::config(format!("connection.url: {k} is not valid UTF-8"))
                })?;
                params.insert(k, v.into_owned());
            } else {
                kept.push(pair);
            }
        }
        let driver_url = if kept.is_empty() {
            format!("postgresql://{base}")
        } else {
            format!("postgresql://{base}?{}", kept.join("&"))
        };
        let mut config = Config::from_str(&driver_url)
            // The parse error may quote the URL; it has no password if it fails below.
            .map_err(|e| {
                ConnectorError::config(format!(
                    "connection.url is not a valid PostgreSQL URL ({})",
                    without_url(&e.to_string())
                ))
            })?;
        if config.get_password().is_some() {
            return Err(ConnectorError::config(
                "connection.url must not contain a password; put it in the System's credentials",
            ));
        }
        if let Some(s) = secret {
            config.password(s.expose());
        }
        let timeout = timeout
            .or(config.get_connect_timeout().copied())
            .unwrap_or(Duration::from_secs(10));
        config.connect_timeout(timeout);
        let rootcert = params.get("sslrootcert").map(String::as_str);
        let mode = match params.get("sslmode") {
            Some(m) => SslMode::parse(m)?,
            None => SslMode::Prefer,
        };
        let verify = match mode {
            SslMode::Disable => None,
            SslMode::Allow | SslMode::Prefer => Some(Verify::Nothing),
            // libpq: `require` with a root certificate behaves as `verify-ca`.
            SslMode::Require if rootcert.is_some() => Some(Verify::Chain),
            SslMode::Require => Some(Verify::Nothing),
            SslMode::VerifyCa => Some(Verify::Chain),
            SslMode::VerifyFull => Some(Verify::Full),
        };
        let client = match (params.get("sslcert"), params.get("sslkey")) {
            (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConnectorError::config(
                    "connection.url: sslcert and sslkey go together (the client certificate and its key)",
                ));
            }
        };
        let tls = match verify {
            None => None,
            Some(v) => {
                let roots = match (v, rootcert) {
                    (Verify::Nothing, _) => rustls::RootCertStore::empty(),
                    (_, Some("system")) | (_, None) => tls::roots(None, "sslrootcert")?,
                    (_, Some(path)) => tls::roots(Some(path), "sslrootcert")?,
                };
                Some(Arc::new(tls::client_config(v, roots, client)?))
            }
        };
        config.ssl_mode(match mode {
            SslMode::Disable | SslMode::Allow => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            _ => DriverSslMode::Require,
        });
        let hosts = config.get_hosts();
        let loopback = !hosts.is_empty()
            && hosts.iter().all(|h| match h {
                Host::Tcp(name) => tls::is_loopback(name),
                Host::Unix(_) => true,
            });
        let shown = shown(&config);
        Ok(PgTarget {
            config,
            mode,
            tls,
            shown,
            loopback,
            timeout,
        })
    }

    /// The `sslmode` in effect.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// True when the server is on this machine (loopback or a Unix socket).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Opens one session; the connection task ends with the client. A session to a
    /// host that is not loopback that ends up unencrypted is logged as a warning.
    pub async fn connect(&self) -> Result<Session, ConnectorError> {
        let attempt = async {
            match self.try_connect(&self.config).await {
                // libpq `allow`: plain first, TLS when the server turns a plain session away.
                Err(e) if self.mode == SslMode::Allow && requires_tls(&e) => {
                    let mut config = self.config.clone();
                    config.ssl_mode(DriverSslMode::Require);
                    self.try_connect(&config).await
                }
                other => other,
            }
        };
        let session = tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| {
                ConnectorError::transient(format!(
                    "PostgreSQL at {} did not answer in time (within {:?}): check the host and port in connection.url and the network, or raise connection.timeout",
                    self.shown, self.timeout
                ))
            })?
            .map_err(|e| connect_error(&self.shown, &e))?;
        if let Some(w) = self.unencrypted_warning(session.encrypted) {
            tracing::warn!("{w}");
        }
        Ok(session)
    }

    /// The warning for a session that crosses a network in the clear.
    pub fn unencrypted_warning(&self, encrypted: bool) -> Option<String> {
        (!encrypted && !self.loopback).then(|| {
            format!(
                "the PostgreSQL session to {} is not encrypted (sslmode={}): the password and all data cross the network in cleartext; set sslmode=verify-full (with sslrootcert) in connection.url",
                self.shown,
                match self.mode {
                    SslMode::Disable => "disable",
                    SslMode::Allow => "allow",
                    _ => "prefer",
                }
            )
        })
    }

    async fn try_connect(&self, config: &Config) -> Result<Session, tokio_postgres::Error> {
        let used = Arc::new(AtomicBool::new(false));
        let (client, connection) = match &self.tls {
            Some(tls) => {
                let make = Tracked {
                    inner: MakeRustlsConnect::new((**tls).clone()),
                    used: used.clone(),
                };
                let (client, conn) = config.connect(make).await?;
                (client, tokio::spawn(conn))
            }
            None => {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                (client, tokio::spawn(conn))
            }
        };
        // The task's result is only logged: the client reports a lost connection itself.
        tokio::spawn(async move {
            if let Ok(Err(e)) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(Session {
            client,
            encrypted: used.load(Ordering::SeqCst),
        })
    }
}

/// `host:port` of the (first) server, never the user or password.
fn shown(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// tokio-postgres' parse errors may quote the text; keep only their reason.
fn without_url(message: &str) -> String {
    message
        .split_once(": ")
        .map_or(message, |(head, _)| head)
        .to_string()
}

/// The server turned the session away for lack of encryption (a `hostssl`-only pg_hba).
fn requires_tls(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && db.message().contains("no encryption")
    })
}

/// A failed connect as what to do, then the driver's words.
pub fn connect_error(at: &str, e: &tokio_postgres::Error) -> ConnectorError {
    let detail = super::error_chain(e);
    if requires_tls(e) {
        return ConnectorError::config(format!(
            "PostgreSQL at {at} requires TLS: set sslmode=verify-full and sslrootcert=<CA file> (or sslmode=require) in connection.url ({detail})"
        ));
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD {
            return ConnectorError::config(format!(
                "PostgreSQL at {at} rejected the password: check the System's credentials ({detail})"
            ));
        }
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return ConnectorError::config(format!(
                "PostgreSQL at {at} refused the login: check the user in connection.url, the System's credentials and the server's pg_hba.conf ({detail})"
            ));
        }
        return super::postgres::pg_error("connect", e);
    }
    if let Some(advice) = tls::advice(e, "sslrootcert in connection.url") {
        return ConnectorError::config(format!("PostgreSQL at {at}: {advice} ({detail})"));
    }
    if detail.contains("server does not support TLS") {
        return ConnectorError::config(format!(
            "PostgreSQL at {at} does not offer TLS, and sslmode requires it: enable ssl on the server, or lower sslmode in connection.url ({detail})"
        ));
    }
    if let Some(io) = io_cause(e) {
        use std::io::ErrorKind as K;
        return match io.kind() {
            K::TimedOut => ConnectorError::transient(format!(
                "PostgreSQL at {at} did not answer in time: check the host and port in connection.url and the network, or raise connection.timeout ({detail})"
            )),
            K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::NotFound => {
                ConnectorError::transient(format!(
                    "cannot reach PostgreSQL at {at}: check the host and port in connection.url and that the server is up ({detail})"
                ))
            }
            _ => {
                ConnectorError::transient(format!("PostgreSQL at {at}: connect failed ({detail})"))
            }
        };
    }
    if detail.contains("timed out") || detail.contains("timeout") {
        return ConnectorError::transient(format!(
            "PostgreSQL at {at} did not answer in time: check the host and port in connection.url and the network, or raise connection.timeout ({detail})"
        ));
    }
    ConnectorError::transient(format!("PostgreSQL at {at}: connect failed ({detail})"))
}

/// The first `io::Error` in the chain.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// A TLS connector that records whether the server accepted TLS: tokio-postgres calls
/// it only then (`prefer` falls back to a plain session silently otherwise).
struct Tracked {
    inner: MakeRustlsConnect,
    used: Arc<AtomicBool>,
}

impl<S> MakeTlsConnect<S> for Tracked
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = TrackedConnect<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(TrackedConnect {
            inner: MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, host)?,
            used: self.used.clone(),
        })
    }
}

struct TrackedConnect<T> {
    inner: T,
    used: Arc<AtomicBool>,
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for TrackedConnect<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: S) -> Self::Future {
        self.used.store(true, Ordering::SeqCst);
        self.inner.connect(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_the_url() {
        let t = PgTarget::from_url(
            "postgresql://latchkey@db.staging:5433/postgres?sslmode=require&application_name=lk",
            None,
            None,
        )
        .unwrap();
        assert_eq!(t.mode(), SslMode::Require);
        assert!(!t.is_loopback());
        assert_eq!(t.shown, "db.staging:5433");
        assert_eq!(t.config.get_application_name(), Some("lk"));
    }

    #[test]
    fn the_default_is_prefer_and_bad_values_are_named() {
        let t = PgTarget::from_url("postgresql://u@127.0.0.1/db", None, None).unwrap();
        assert_eq!(t.mode(), SslMode::Prefer);
        assert!(t.is_loopback());
        let e = PgTarget::from_url("postgresql://u@h/db?sslmode=verify", None, None)
            .err()
            .unwrap();
        assert!(e.message.contains("sslmode=verify is not one of"), "{e}");
        let e = PgTarget::from_url("postgresql://u@h/db?sslcrl=x", None, None)
            .err()
            .unwrap();
        assert!(e.message.contains("sslcrl is not supported"), "{e}");
        let e = PgTarget::from_url(
            "postgresql://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
            None,
            None,
        )
        .err()
        .unwrap();
        assert!(
            e.message
                .contains("cannot read sslrootcert /nonexistent.pem"),
            "{e}"
        );
    }

    #[test]
    fn plain_sessions_warn_only_off_loopback() {
        let remote = PgTarget::from_url("postgresql://u@db.staging/db", None, None).unwrap();
        assert!(
            remote
                .unencrypted_warning(false)
                .unwrap()
                .contains("not encrypted")
        );
        assert!(remote.unencrypted_warning(true).is_none());
        let local = PgTarget::from_url("postgresql://u@localhost/db", None, None).unwrap();
        assert!(local.unencrypted_warning(false).is_none());
    }

    #[test]
    fn password_in_url_is_refused() {
        let e = PgTarget::from_url("postgresql://u:hunter2@127.0.0.1/db", None, None)
            .err()
            .unwrap();
        assert!(!e.message.contains("hunter2"));
        assert!(e.message.contains("must not contain a password"));
    }
}
