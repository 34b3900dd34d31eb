//! OpenLDAP slapd with a throwaway cn=config (tests/contract/peers/slapd-config.ldif),
//! one server per test.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use latchkey::connectors::ldap::{LdapConfig, LdapConnector};
use latchkey::connectors::{Connector, Secret, tls};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::tls::TestCa;
use super::{Child, Fixture, Peer, free_port, unavailable, wait_for_port};
use crate::proxy::CutProxy;

const CONFIG: &str = include_str!("slapd-config.ldif");
const SUFFIX: &str = "dc=example,dc=org";
const ADMIN: &str = "cn=admin,dc=example,dc=org";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";
const BASE: &str = "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n\
dn: ou=groups,dc=example,dc=org\nobjectClass: organizationalUnit\nou: groups\n";

/// A plain directory (`ldap://` on loopback).
pub struct LdapPeer;
/// A directory that requires TLS (`olcSecurity: tls=1`), reached with StartTLS.
pub struct LdapStartTlsPeer;
/// The same, reached over `ldaps://`.
pub struct LdapsPeer;

/// How the connector reaches the directory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Plain,
    StartTls,
    Ldaps,
}

pub struct LdapFixture {
    _dir: tempfile::TempDir,
    _slapd: Child,
    /// The `ldap://` port (StartTLS or plain).
    pub port: u16,
    /// The `ldaps://` port of a TLS directory.
    pub tls_port: u16,
    pub mode: Mode,
    /// The CA of a TLS directory.
    pub ca: Option<TestCa>,
    pub password: String,
    connector: LdapConnector,
}

impl LdapFixture {
    /// The connector's settings for `mode`, at `port` (the server's or a relay's).
    pub fn config(&self, mode: Mode, port: u16) -> LdapConfig {
        settings(mode, port, self.ca.as_ref())
    }

    /// The port the fixture's mode talks to.
    fn mode_port(&self) -> u16 {
        if self.mode == Mode::Ldaps {
            self.tls_port
        } else {
            self.port
        }
    }
}

/// The connector's settings for `mode` at `port`, trusting `ca`.
fn settings(mode: Mode, port: u16, ca: Option<&TestCa>) -> LdapConfig {
    {
        let scheme = if mode == Mode::Ldaps { "ldaps" } else { "ldap" };
        let mut c = LdapConfig::new(
            &format!("{scheme}://127.0.0.1:{port}"),
            ADMIN,
            PEOPLE,
            GROUPS,
        );
        // Small pages so reads really page.
        c.page_size = 5;
        c.start_tls = mode == Mode::StartTls;
        c.ca_file = ca.map(|ca| ca.ca.display().to_string());
        c
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start(dir: &Path, password: &str, ca: Option<&TestCa>) -> Result<(Child, u16, u16), String> {
    for bin in ["/usr/sbin/slapd", "/usr/sbin/slapadd"] {
        if !Path::new(bin).is_file() {
            return Err(format!("{bin} not found"));
        }
    }
    let (conf_dir, db) = (dir.join("slapd.d"), dir.join("db"));
    std::fs::create_dir_all(&conf_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&db).map_err(|e| e.to_string())?;
    let mut ldif = CONFIG
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PASSWORD@", password);
    if let Some(ca) = ca {
        // TLS on both listeners, and no operation without it (binds included).
        let tls = format!(
            "olcTLSCertificateFile: {}\nolcTLSCertificateKeyFile: {}\nolcTLSCACertificateFile: {}\nolcSecurity: tls=1\n",
            ca.cert.display(),
            ca.key.display(),
            ca.ca.display()
        );
        let at = ldif.find("\n\n").ok_or("slapd config without entries")?;
        ldif.insert_str(at + 1, &tls);
    }
    std::fs::write(dir.join("config.ldif"), ldif).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("base.ldif"), BASE).map_err(|e| e.to_string())?;
    run(Command::new("/usr/sbin/slapadd")
        .args(["-q", "-n", "0", "-F"])
        .arg(&conf_dir)
        .arg("-l")
        .arg(dir.join("config.ldif")))?;
    run(Command::new("/usr/sbin/slapadd")
        .args(["-q", "-b", SUFFIX, "-F"])
        .arg(&conf_dir)
        .arg("-l")
        .arg(dir.join("base.ldif")))?;
    let (port, tls_port) = (free_port(), free_port());
    let urls = if ca.is_some() {
        format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/")
    } else {
        format!("ldap://127.0.0.1:{port}/")
    };
    let child = Command::new("/usr/sbin/slapd")
        .args(["-d", "0", "-h", &urls, "-F"])
        .arg(&conf_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start slapd: {e}"))?;
    let child = Child(child);
    if !wait_for_port(port, Duration::from_secs(20)) {
        return Err(format!("slapd did not listen on {port} within 20 s"));
    }
    if ca.is_some() && !wait_for_port(tls_port, Duration::from_secs(20)) {
        return Err(format!("slapd did not listen on {tls_port} within 20 s"));
    }
    Ok((child, port, tls_port))
}

impl LdapFixture {
    /// A fresh directory for `mode` (TLS required unless Plain), or None when slapd is
    /// unavailable and peers are optional.
    pub fn start(mode: Mode) -> Option<LdapFixture> {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = format!("ldap-{}-{}", std::process::id(), free_port());
        let ca = (mode != Mode::Plain).then(|| TestCa::create(dir.path(), "ldap"));
        let (slapd, port, tls_port) = match start(dir.path(), &password, ca.as_ref()) {
            Ok(s) => s,
            Err(why) => {
                unavailable("slapd", &why);
                return None;
            }
        };
        let at = if mode == Mode::Ldaps { tls_port } else { port };
        let connector = LdapConnector::new(
            settings(mode, at, ca.as_ref()),
            Secret::new(password.clone()),
        );
        Some(LdapFixture {
            _dir: dir,
            _slapd: slapd,
            port,
            tls_port,
            mode,
            ca,
            password,
            connector,
        })
    }
}

#[async_trait]
impl Peer for LdapPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        Some(Box::new(LdapFixture::start(Mode::Plain)?))
    }
}

#[async_trait]
impl Peer for LdapStartTlsPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        Some(Box::new(LdapFixture::start(Mode::StartTls)?))
    }
}

#[async_trait]
impl Peer for LdapsPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        Some(Box::new(LdapFixture::start(Mode::Ldaps)?))
    }
}

impl LdapFixture {
    /// The harness's own admin session: StartTLS with the test CA on a TLS directory.
    async fn admin(&self) -> ldap3::Ldap {
        let mut settings = LdapConnSettings::new();
        if let Some(ca) = &self.ca {
            let roots = tls::roots(Some(&ca.ca.display().to_string()), "caFile").unwrap();
            let config = tls::client_config(tls::Verify::Full, roots, None).unwrap();
            settings = settings
                .set_starttls(true)
                .set_config(std::sync::Arc::new(config));
        }
        let (conn, mut ldap) =
            LdapConnAsync::with_settings(settings, &format!("ldap://127.0.0.1:{}", self.port))
                .await
                .expect("connect");
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN, &self.password)
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }
}

fn s(v: &str) -> HashSet<String> {
    HashSet::from([v.to_string()])
}

#[async_trait]
impl Fixture for LdapFixture {
    fn connector(&self) -> &dyn Connector {
        &self.connector
    }
    async fn seed_unmanaged(&self, email: &str, entitlement: &str) {
        let mut ldap = self.admin().await;
        let dn = format!("uid={email},{PEOPLE}");
        ldap.add(
            &dn,
            vec![
                ("objectClass".to_string(), s("inetOrgPerson")),
                ("uid".to_string(), s(email)),
                ("mail".to_string(), s(email)),
                ("cn".to_string(), s("Owner")),
                ("sn".to_string(), s("Owner")),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let gdn = format!("cn={entitlement},{GROUPS}");
        ldap.add(
            &gdn,
            vec![
                ("objectClass".to_string(), s("groupOfNames")),
                ("cn".to_string(), s(entitlement)),
                ("member".to_string(), s(&dn)),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }
    async fn unmanaged_state(&self, email: &str) -> Option<String> {
        let mut ldap = self.admin().await;
        let dn = format!("uid={email},{PEOPLE}");
        let (people, _) = ldap
            .search(&dn, Scope::Base, "(objectClass=*)", vec!["*"])
            .await
            .ok()?
            .success()
            .ok()?;
        let person = SearchEntry::construct(people.into_iter().next()?);
        let mut attrs: Vec<String> = person
            .attrs
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.sort();
                format!("{k}={v:?}")
            })
            .collect();
        attrs.sort();
        let (groups, _) = ldap
            .search(
                GROUPS,
                Scope::OneLevel,
                &format!("(member={dn})"),
                vec!["cn"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let mut names: Vec<String> = groups
            .into_iter()
            .map(|g| SearchEntry::construct(g).attrs["cn"][0].clone())
            .collect();
        names.sort();
        Some(format!("{}|{}", attrs.join(";"), names.join(",")))
    }
    async fn via_proxy(&self, proxy: &CutProxy) -> Option<Box<dyn Connector>> {
        Some(Box::new(LdapConnector::new(
            self.config(self.mode, proxy.addr.port()),
            Secret::new(self.password.clone()),
        )))
    }
    fn upstream(&self) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], self.mode_port())))
    }
    fn secret(&self) -> Option<&str> {
        Some(&self.password)
    }
    async fn with_wrong_secret(&self, wrong: &str) -> Option<Box<dyn Connector>> {
        Some(Box::new(LdapConnector::new(
            self.config(self.mode, self.mode_port()),
            Secret::new(wrong.to_string()),
        )))
    }
}
