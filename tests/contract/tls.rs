//! TLS against servers that require it: a PostgreSQL that accepts only `hostssl` and a
//! slapd with `olcSecurity: tls=1`, both with a CA made by the test. What crosses the
//! wire is recorded by a relay; every connection error is asserted by its text.

use std::time::Duration;

use latchkey::connectors::ldap::{LdapConfig, LdapConnector};
use latchkey::connectors::postgres::{PgTarget, PostgresConnector};
use latchkey::connectors::{Connector, ConnectorError, ErrorClass, Secret};
use tokio::net::TcpListener;

use crate::peers::ldap::{LdapFixture, Mode};
use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;
use crate::peers::tls::{SERVER_NAME, TestCa};
use crate::peers::{free_port, unavailable};
use crate::proxy::RecordingProxy;

/// A cluster (TLS-only or plain) with latchkey's login, and its password.
async fn cluster(tls: bool) -> Option<(PgCluster, String)> {
    let started = if tls {
        PgCluster::start_tls()
    } else {
        PgCluster::start()
    };
    let cluster = match started {
        Ok(c) => c,
        Err(why) => {
            unavailable("PostgreSQL", &why);
            return None;
        }
    };
    let password = format!("pw-tls-{}", cluster.port);
    cluster
        .superuser("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'",
            verifier(&password)
        ))
        .await
        .unwrap();
    Some((cluster, password))
}

/// Reads through a `postgres` connector at `url` with `password`.
async fn pg_read(
    url: &str,
    password: &str,
    timeout: Option<Duration>,
) -> Result<latchkey::connectors::Snapshot, ConnectorError> {
    let target = PgTarget::from_url(url, Some(&Secret::new(password)), timeout)?;
    PostgresConnector::new(target, 1).read().await
}

/// The error starts with what to do, and the driver's words follow in parentheses.
fn says(e: &ConnectorError, class: ErrorClass, advice: &str) {
    assert_eq!(e.class, class, "{e}");
    assert!(e.message.contains(advice), "{advice:?} not in: {e}");
    let at = e.message.find(advice).unwrap();
    assert!(
        e.message[at..].contains('('),
        "the driver's detail should follow the advice: {e}"
    );
}

/// A listener that accepts and never answers.
async fn silent() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn accept_forever(l: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_sslmode_that_reaches_a_tls_only_server_encrypts() {
    let Some((cluster, password)) = cluster(true).await else {
        return;
    };
    let ca = cluster.ca.as_ref().unwrap().ca.display().to_string();
    let port = cluster.port;
    let base = format!("postgresql://latchkey@127.0.0.1:{port}/postgres");
    let urls = [
        base.clone(), // the default, prefer
        format!("{base}?sslmode=allow"),
        format!("{base}?sslmode=require"),
        format!("{base}?sslmode=verify-ca&sslrootcert={ca}"),
        format!("{base}?sslmode=verify-full&sslrootcert={ca}"),
        // The name the certificate lists, the address pinned by hostaddr.
        format!(
            "postgresql://latchkey@{SERVER_NAME}:{port}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"
        ),
    ];
    for url in &urls {
        let snap = pg_read(url, &password, None)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(snap.warnings.is_empty(), "{url}: {:?}", snap.warnings);
    }
    // The server's own record: every session of latchkey's login was encrypted.
    let log = cluster.log();
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection authorized: user=latchkey"))
        .collect();
    assert!(sessions.len() >= urls.len(), "{log}");
    assert!(
        sessions.iter().all(|l| l.contains("SSL enabled")),
        "{sessions:#?}"
    );
    // And on the wire: the read's SQL never passes in the clear.
    let relay = RecordingProxy::start(cluster.addr()).await;
    let via = format!(
        "postgresql://latchkey@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        relay.addr.port()
    );
    pg_read(&via, &password, None).await.unwrap();
    assert!(relay.bytes() > 0);
    assert!(
        !relay.saw("pg_roles"),
        "the read's SQL crossed the wire in cleartext"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_errors_say_what_to_do() {
    let Some((cluster, password)) = cluster(true).await else {
        return;
    };
    let ca = cluster.ca.as_ref().unwrap().ca.display().to_string();
    let other = tempfile::tempdir().unwrap();
    let other_ca = TestCa::create(other.path(), "other")
        .ca
        .display()
        .to_string();
    let port = cluster.port;
    let base = format!("postgresql://latchkey@127.0.0.1:{port}/postgres");

    let e = pg_read(&format!("{base}?sslmode=disable"), &password, None)
        .await
        .unwrap_err();
    says(
        &e,
        ErrorClass::Config,
        "requires TLS: set sslmode=verify-full",
    );

    let untrusted = format!("{base}?sslmode=verify-full&sslrootcert={other_ca}");
    let e = pg_read(&untrusted, &password, None).await.unwrap_err();
    says(
        &e,
        ErrorClass::Config,
        "the server's certificate is not trusted: set sslrootcert",
    );

    let wrong_name = format!(
        "postgresql://latchkey@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    );
    let e = pg_read(&wrong_name, &password, None).await.unwrap_err();
    says(&e, ErrorClass::Config, "not valid for the host name");

    let trusted = format!("{base}?sslmode=verify-full&sslrootcert={ca}");
    let e = pg_read(&trusted, "not-the-password", None)
        .await
        .unwrap_err();
    says(
        &e,
        ErrorClass::Config,
        "rejected the password: check the System's credentials",
    );
    assert!(!e.message.contains("not-the-password"));

    let nobody = free_port();
    let e = pg_read(
        &format!("postgresql://latchkey@127.0.0.1:{nobody}/postgres"),
        &password,
        None,
    )
    .await
    .unwrap_err();
    says(
        &e,
        ErrorClass::Transient,
        &format!("cannot reach PostgreSQL at 127.0.0.1:{nobody}"),
    );

    let (listener, mute) = silent().await;
    let held = accept_forever(listener);
    let e = pg_read(
        &format!("postgresql://latchkey@127.0.0.1:{mute}/postgres"),
        &password,
        Some(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(
        e.message.contains(&format!(
            "PostgreSQL at 127.0.0.1:{mute} did not answer in time"
        )),
        "{e}"
    );
    assert!(e.message.contains("raise connection.timeout"), "{e}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plain_session_off_loopback_is_a_warning() {
    let Some((cluster, password)) = cluster(false).await else {
        return;
    };
    let port = cluster.port;
    // A real name, as an agency's URL has one; the address pinned to this machine.
    let remote = format!("postgresql://latchkey@{SERVER_NAME}:{port}/postgres?hostaddr=127.0.0.1");
    let snap = pg_read(&remote, &password, None).await.unwrap();
    assert_eq!(snap.warnings.len(), 1, "{:?}", snap.warnings);
    assert!(
        snap.warnings[0].contains(&format!(
            "the PostgreSQL session to {SERVER_NAME}:{port} is not encrypted"
        )),
        "{:?}",
        snap.warnings
    );
    let local = format!("postgresql://latchkey@127.0.0.1:{port}/postgres");
    assert!(
        pg_read(&local, &password, None)
            .await
            .unwrap()
            .warnings
            .is_empty()
    );
    // A server without TLS where the System requires it.
    let e = pg_read(&format!("{local}?sslmode=require"), &password, None)
        .await
        .unwrap_err();
    says(&e, ErrorClass::Config, "does not offer TLS");
}

/// A connector to the fixture's directory through `relay` (or directly at `port`).
fn ldap(fixture: &LdapFixture, mode: Mode, port: u16, password: &str) -> LdapConnector {
    LdapConnector::new(fixture.config(mode, port), Secret::new(password))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_binds_over_tls_and_never_sends_the_password_in_cleartext() {
    let Some(dir) = LdapFixture::start(Mode::StartTls) else {
        return;
    };
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], dir.port));
    let tls_upstream = std::net::SocketAddr::from(([127, 0, 0, 1], dir.tls_port));

    // The control: a plain bind (allowed on loopback) puts the password on the wire, and
    // this directory refuses it, saying TLS is required. The relay sees what it should.
    let plain = RecordingProxy::start(upstream).await;
    let e = ldap(&dir, Mode::Plain, plain.addr.port(), &dir.password)
        .read()
        .await
        .unwrap_err();
    says(
        &e,
        ErrorClass::Config,
        "the directory requires TLS: use an ldaps:// URL or set connection.startTls: true",
    );
    assert!(
        plain.saw(&dir.password),
        "the relay must see a cleartext bind"
    );

    for (mode, to) in [(Mode::StartTls, upstream), (Mode::Ldaps, tls_upstream)] {
        let relay = RecordingProxy::start(to).await;
        ldap(&dir, mode, relay.addr.port(), &dir.password)
            .read()
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(relay.bytes() > 0, "{mode:?}");
        assert!(
            !relay.saw(&dir.password),
            "{mode:?}: the bind password crossed the wire in cleartext"
        );
    }

    // A host that is not loopback, without TLS: refused before anything is sent.
    let mut remote = LdapConfig::new(
        "ldap://sso.staging.internal:389",
        "cn=admin,dc=example,dc=org",
        "ou=people,dc=example,dc=org",
        "ou=groups,dc=example,dc=org",
    );
    let e = LdapConnector::new(remote.clone(), Secret::new(dir.password.clone()))
        .read()
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Config, "{e}");
    assert!(
        e.message.contains(
            "refusing to send the bind password in cleartext to sso.staging.internal: use an ldaps:// URL or set connection.startTls: true"
        ),
        "{e}"
    );
    // StartTLS to the same name is not refused up front (it fails to resolve instead).
    remote.start_tls = true;
    remote.timeout = Duration::from_secs(2);
    let e = LdapConnector::new(remote, Secret::new(dir.password.clone()))
        .read()
        .await
        .unwrap_err();
    assert!(!e.message.contains("refusing"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_connection_errors_say_what_to_do() {
    let Some(dir) = LdapFixture::start(Mode::StartTls) else {
        return;
    };
    let other = tempfile::tempdir().unwrap();
    let other_ca = TestCa::create(other.path(), "other")
        .ca
        .display()
        .to_string();

    let mut untrusted = dir.config(Mode::Ldaps, dir.tls_port);
    untrusted.ca_file = Some(other_ca);
    let e = LdapConnector::new(untrusted, Secret::new(dir.password.clone()))
        .read()
        .await
        .unwrap_err();
    says(
        &e,
        ErrorClass::Config,
        "the server's certificate is not trusted: set connection.caFile",
    );

    let mut wrong_name = dir.config(Mode::Ldaps, dir.tls_port);
    wrong_name.url = format!("ldaps://localhost:{}", dir.tls_port);
    let e = LdapConnector::new(wrong_name, Secret::new(dir.password.clone()))
        .read()
        .await
        .unwrap_err();
    says(&e, ErrorClass::Config, "not valid for the host name");

    let e = ldap(&dir, Mode::StartTls, dir.port, "not-the-password")
        .read()
        .await
        .unwrap_err();
    says(
        &e,
        ErrorClass::Config,
        "the directory rejected the bind: check connection.bindDn and the System's credentials",
    );
    assert!(!e.message.contains("not-the-password"));

    let nobody = free_port();
    let e = ldap(&dir, Mode::StartTls, nobody, &dir.password)
        .read()
        .await
        .unwrap_err();
    says(&e, ErrorClass::Transient, "cannot reach the directory");

    let (listener, mute) = silent().await;
    let held = accept_forever(listener);
    let mut slow = dir.config(Mode::Ldaps, mute);
    slow.timeout = Duration::from_millis(500);
    let e = LdapConnector::new(slow, Secret::new(dir.password.clone()))
        .read()
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(e.message.contains("did not answer in time"), "{e}");
    assert!(e.message.contains("raise connection.timeout"), "{e}");
    held.abort();
}
