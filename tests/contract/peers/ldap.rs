//! OpenLDAP slapd with a throwaway cn=config (tests/contract/peers/slapd-config.ldif),
//! one server per test.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use latchkey::connectors::ldap::{LdapConfig, LdapConnector};
use latchkey::connectors::{Connector, Secret};
use ldap3::{LdapConnAsync, Scope, SearchEntry};

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

pub struct LdapPeer;

pub struct LdapFixture {
    _dir: tempfile::TempDir,
    _slapd: Child,
    port: u16,
    password: String,
    connector: LdapConnector,
}

fn config(port: u16) -> LdapConfig {
    LdapConfig {
        url: format!("ldap://127.0.0.1:{port}"),
        bind_dn: ADMIN.into(),
        people_dn: PEOPLE.into(),
        groups_dn: GROUPS.into(),
        // Small pages so reads really page.
        page_size: 5,
        max_concurrency: 4,
        empty_member: "cn=nobody".into(),
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

fn start(dir: &Path, password: &str) -> Result<(Child, u16), String> {
    for bin in ["/usr/sbin/slapd", "/usr/sbin/slapadd"] {
        if !Path::new(bin).is_file() {
            return Err(format!("{bin} not found"));
        }
    }
    let (conf_dir, db) = (dir.join("slapd.d"), dir.join("db"));
    std::fs::create_dir_all(&conf_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&db).map_err(|e| e.to_string())?;
    let ldif = CONFIG
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PASSWORD@", password);
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
    let port = free_port();
    let child = Command::new("/usr/sbin/slapd")
        .args(["-d", "0", "-h", &format!("ldap://127.0.0.1:{port}/"), "-F"])
        .arg(&conf_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start slapd: {e}"))?;
    let child = Child(child);
    if !wait_for_port(port, Duration::from_secs(20)) {
        return Err(format!("slapd did not listen on {port} within 20 s"));
    }
    Ok((child, port))
}

#[async_trait]
impl Peer for LdapPeer {
    async fn fixture() -> Option<Box<dyn Fixture>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = format!("ldap-{}-{}", std::process::id(), free_port());
        let (slapd, port) = match start(dir.path(), &password) {
            Ok(s) => s,
            Err(why) => return unavailable("slapd", &why),
        };
        let connector = LdapConnector::new(config(port), Secret::new(password.clone()));
        Some(Box::new(LdapFixture {
            _dir: dir,
            _slapd: slapd,
            port,
            password,
            connector,
        }))
    }
}

impl LdapFixture {
    async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&format!("ldap://127.0.0.1:{}", self.port))
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
            config(proxy.addr.port()),
            Secret::new(self.password.clone()),
        )))
    }
    fn upstream(&self) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], self.port)))
    }
    fn secret(&self) -> Option<&str> {
        Some(&self.password)
    }
    async fn with_wrong_secret(&self, wrong: &str) -> Option<Box<dyn Connector>> {
        Some(Box::new(LdapConnector::new(
            config(self.port),
            Secret::new(wrong.to_string()),
        )))
    }
}
