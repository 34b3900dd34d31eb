//! `ldap`: staging SSO directories (OpenLDAP and compatible).
//!
//! - A person is an `inetOrgPerson` entry `uid=<email>,<peopleDn>` with `mail` set;
//!   latchkey marks its entries with `employeeType: latchkey` (`latchkey-disabled` once
//!   disabled). Entries without the marker are out of scope.
//! - An entitlement is membership (`member: <person DN>`) of the `groupOfNames`
//!   `cn=<entitlement>,<groupsDn>`, created with its first member when missing.
//! - "Already a member" (result 20) and "no such attribute" (16) count as done. A
//!   groupOfNames needs one member: removing the last swaps in `emptyMember`.
//! - Disable: plain OpenLDAP has no account lock without the ppolicy overlay, so a
//!   disabled person keeps the entry, marked `latchkey-disabled`; the SSO's login filter
//!   should exclude it (`(!(employeeType=latchkey-disabled))`). Delete removes the entry
//!   and its memberships.
//! - Reads use the Simple Paged Results control (`pageSize`).
//!
//! `connection`: `url` (`ldap://sso.staging:389`), `bindDn`, `peopleDn`, `groupsDn`,
//! `pageSize` (200), `maxConcurrency` (4), `emptyMember` (`cn=nobody`).
//! `credentials`: the bind password. TLS (ldaps / StartTLS) needs ldap3's TLS feature,
//! which this build leaves off; use it on loopback or a private network.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};

use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, MANAGED_MARKER, Op, Secret,
    Snapshot, SystemContext,
};

const MARKER_ATTR: &str = "employeeType";
const DISABLED: &str = "latchkey-disabled";
const RC_NO_SUCH_ATTRIBUTE: u32 = 16;
const RC_TYPE_OR_VALUE_EXISTS: u32 = 20;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_OBJECT_CLASS_VIOLATION: u32 = 65;
const RC_ALREADY_EXISTS: u32 = 68;

/// Settings of one directory.
#[derive(Clone, Debug)]
pub struct LdapConfig {
    pub url: String,
    pub bind_dn: String,
    pub people_dn: String,
    pub groups_dn: String,
    pub page_size: i32,
    pub max_concurrency: usize,
    pub empty_member: String,
}

impl LdapConfig {
    fn from_connection(
        conn: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<LdapConfig, String> {
        let s = |k: &str| -> Result<String, String> {
            conn.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("connection.{k} is required for ldap"))
        };
        let n = |k: &str, d: u64| conn.get(k).and_then(|v| v.as_u64()).unwrap_or(d);
        Ok(LdapConfig {
            url: s("url")?,
            bind_dn: s("bindDn")?,
            people_dn: s("peopleDn")?,
            groups_dn: s("groupsDn")?,
            page_size: n("pageSize", 200).clamp(1, 10_000) as i32,
            max_concurrency: n("maxConcurrency", 4).max(1) as usize,
            empty_member: conn
                .get("emptyMember")
                .and_then(|v| v.as_str())
                .unwrap_or("cn=nobody")
                .to_string(),
        })
    }
}

/// Builds the `ldap` connector for a System.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let config =
        LdapConfig::from_connection(&ctx.spec.connection).map_err(ConnectorError::config)?;
    let password = ctx.secret.clone().ok_or_else(|| {
        ConnectorError::config("ldap needs credentials (the bind password of connection.bindDn)")
    })?;
    Ok(Box::new(LdapConnector::new(config, password)))
}

/// The LDAP connector.
pub struct LdapConnector {
    config: LdapConfig,
    password: Secret,
}

fn ldap_error(what: &str, e: LdapError) -> ConnectorError {
    match e {
        LdapError::LdapResult { result } => rc_error(what, result.rc, &result.text),
        // I/O, timeouts, a connection closed mid-operation.
        other => ConnectorError::transient(format!("LDAP {what}: {other}")),
    }
}

fn rc_error(what: &str, rc: u32, text: &str) -> ConnectorError {
    let text = format!(
        "LDAP {what}: result {rc}{}",
        if text.is_empty() {
            String::new()
        } else {
            format!(" ({text})")
        }
    );
    match rc {
        RC_INVALID_CREDENTIALS => ConnectorError::config(format!(
            "{text}; check connection.bindDn and the System's credentials"
        )),
        50 => ConnectorError::config(format!("{text}; the bind DN lacks access")),
        51..=53 | 80 => ConnectorError::transient(text),
        _ => ConnectorError::permanent(text),
    }
}

fn set(v: &str) -> HashSet<String> {
    HashSet::from([v.to_string()])
}

impl LdapConnector {
    /// A connector for `config`, binding with `password`.
    pub fn new(config: LdapConfig, password: Secret) -> LdapConnector {
        LdapConnector { config, password }
    }

    fn person_dn(&self, email: &str) -> String {
        format!("uid={},{}", ldap3::dn_escape(email), self.config.people_dn)
    }

    fn group_dn(&self, name: &str) -> String {
        format!("cn={},{}", ldap3::dn_escape(name), self.config.groups_dn)
    }

    async fn bind(&self) -> Result<Ldap, ConnectorError> {
        let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10));
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| ldap_error("connect", e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(Duration::from_secs(30));
        let r = ldap
            .simple_bind(&self.config.bind_dn, self.password.expose())
            .await
            .map_err(|e| ldap_error("bind", e))?;
        if r.rc != 0 {
            return Err(rc_error("bind", r.rc, &r.text));
        }
        Ok(ldap)
    }

    async fn search_all(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<&'static str>,
    ) -> Result<Vec<SearchEntry>, ConnectorError> {
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.config.page_size)),
        ];
        let mut stream = ldap
            .streaming_search_with(adapters, base, Scope::OneLevel, filter, attrs)
            .await
            .map_err(|e| ldap_error("search", e))?;
        let mut out = Vec::new();
        while let Some(entry) = stream.next().await.map_err(|e| ldap_error("search", e))? {
            out.push(SearchEntry::construct(entry));
        }
        let r = stream.finish().await;
        if r.rc != 0 {
            return Err(rc_error(&format!("search {base}"), r.rc, &r.text));
        }
        Ok(out)
    }

    /// The marker of a person entry: None when absent, Some(value) otherwise.
    async fn marker(
        &self,
        ldap: &mut Ldap,
        email: &str,
    ) -> Result<Option<Option<String>>, ConnectorError> {
        let ldap3::SearchResult(entries, r) = ldap
            .search(
                &self.person_dn(email),
                Scope::Base,
                "(objectClass=*)",
                vec![MARKER_ATTR],
            )
            .await
            .map_err(|e| ldap_error("lookup", e))?;
        match r.rc {
            0 => {}
            RC_NO_SUCH_OBJECT => return Ok(None),
            rc => return Err(rc_error("lookup", rc, &r.text)),
        }
        Ok(entries.into_iter().next().map(|e| {
            SearchEntry::construct(e)
                .attrs
                .get(MARKER_ATTR)
                .and_then(|v| {
                    v.iter()
                        .find(|m| *m == MANAGED_MARKER || *m == DISABLED)
                        .cloned()
                })
        }))
    }

    /// Whether the person is latchkey's; an error when the entry exists unmarked.
    async fn managed(&self, ldap: &mut Ldap, email: &str) -> Result<bool, ConnectorError> {
        match self.marker(ldap, email).await? {
            None => Ok(false),
            Some(Some(_)) => Ok(true),
            Some(None) => Err(ConnectorError::permanent(format!(
                "the LDAP entry for {email} is not managed by latchkey (no {MARKER_ATTR}: {MANAGED_MARKER}); it is left alone"
            ))),
        }
    }

    async fn set_marker(
        &self,
        ldap: &mut Ldap,
        email: &str,
        value: &str,
    ) -> Result<(), ConnectorError> {
        let r = ldap
            .modify(
                &self.person_dn(email),
                vec![Mod::Replace(MARKER_ATTR.to_string(), set(value))],
            )
            .await
            .map_err(|e| ldap_error("modify", e))?;
        if r.rc != 0 {
            return Err(rc_error("modify", r.rc, &r.text));
        }
        Ok(())
    }

    async fn remove_member(
        &self,
        ldap: &mut Ldap,
        group: &str,
        member: &str,
    ) -> Result<(), ConnectorError> {
        let gdn = self.group_dn(group);
        let r = ldap
            .modify(&gdn, vec![Mod::Delete("member".to_string(), set(member))])
            .await
            .map_err(|e| ldap_error("remove member", e))?;
        match r.rc {
            0 | RC_NO_SUCH_ATTRIBUTE | RC_NO_SUCH_OBJECT => Ok(()),
            RC_OBJECT_CLASS_VIOLATION => {
                // The last member: keep the group valid with the placeholder.
                let r = ldap
                    .modify(
                        &gdn,
                        vec![Mod::Replace(
                            "member".to_string(),
                            set(&self.config.empty_member),
                        )],
                    )
                    .await
                    .map_err(|e| ldap_error("remove member", e))?;
                if r.rc != 0 {
                    return Err(rc_error("remove member", r.rc, &r.text));
                }
                Ok(())
            }
            rc => Err(rc_error("remove member", rc, &r.text)),
        }
    }
}

#[async_trait]
impl Connector for LdapConnector {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: false,
            max_concurrency: self.config.max_concurrency,
        }
    }

    async fn read(&self) -> Result<Snapshot, ConnectorError> {
        let mut ldap = self.bind().await?;
        let people = self
            .search_all(
                &mut ldap,
                &self.config.people_dn,
                "(objectClass=inetOrgPerson)",
                vec!["uid", "mail", "cn", MARKER_ATTR],
            )
            .await?;
        let groups = self
            .search_all(
                &mut ldap,
                &self.config.groups_dn,
                "(objectClass=groupOfNames)",
                vec!["cn", "member"],
            )
            .await?;
        let _ = ldap.unbind().await;
        let mut by_dn: HashMap<String, String> = HashMap::new();
        // Managed and unmanaged people alike (by identity), told apart by the marker.
        let mut accounts: BTreeMap<String, (bool, Account)> = BTreeMap::new();
        for p in people {
            let first = |k: &str| p.attrs.get(k).and_then(|v| v.first()).cloned();
            let Some(identity) = first("mail")
                .or_else(|| first("uid"))
                .map(|s| super::identity(&s))
            else {
                continue;
            };
            let marks = p.attrs.get(MARKER_ATTR).cloned().unwrap_or_default();
            let active = marks.iter().any(|m| m == MANAGED_MARKER);
            let managed = active || marks.iter().any(|m| m == DISABLED);
            by_dn.insert(p.dn.to_lowercase(), identity.clone());
            let account = Account {
                identity: identity.clone(),
                display_name: first("cn"),
                // An unmarked entry has no lock in plain OpenLDAP: it is active.
                active: active || !managed,
                entitlements: BTreeSet::new(),
                valid_until: None,
            };
            accounts.insert(identity, (managed, account));
        }
        for g in groups {
            // The directory compares names case-insensitively; so does latchkey
            // (load::entitlement spells LDAP entitlements in lower case).
            let Some(name) = g
                .attrs
                .get("cn")
                .and_then(|v| v.first())
                .map(|n| n.to_lowercase())
            else {
                continue;
            };
            for m in g.attrs.get("member").into_iter().flatten() {
                if let Some(a) = by_dn
                    .get(&m.to_lowercase())
                    .and_then(|id| accounts.get_mut(id))
                {
                    a.1.entitlements.insert(name.clone());
                }
            }
        }
        let (managed, unmanaged): (BTreeMap<_, _>, BTreeMap<_, _>) =
            accounts.into_iter().partition(|(_, (m, _))| *m);
        Ok(Snapshot {
            managed: managed.into_values().map(|(_, a)| a).collect(),
            unmanaged: unmanaged.into_iter().map(|(k, (_, a))| (k, a)).collect(),
            completeness: Completeness::Complete,
            foreign_grants: Vec::new(),
        })
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        let email = op.identity().to_lowercase();
        let mut ldap = self.bind().await?;
        let dn = self.person_dn(&email);
        let result = match op {
            Op::SetExpiry { .. } => Err(ConnectorError::no_native_expiry("ldap")),
            // Adds the marker beside any other employeeType the entry has; only the
            // entry latchkey would manage (uid=<email> under peopleDn) is taken over.
            Op::AdoptAccount { .. } => match self.marker(&mut ldap, &email).await? {
                Some(Some(_)) => Ok(()),
                Some(None) => {
                    let add = vec![Mod::Add(MARKER_ATTR.to_string(), set(MANAGED_MARKER))];
                    let r = ldap
                        .modify(&dn, add)
                        .await
                        .map_err(|e| ldap_error("adopt", e))?;
                    match r.rc {
                        0 => Ok(()),
                        rc => Err(rc_error("adopt", rc, &r.text)),
                    }
                }
                None => Err(ConnectorError::permanent(format!(
                    "no LDAP entry {dn} to adopt (latchkey manages only uid=<email> entries under peopleDn); it stays unmanaged"
                ))),
            },
            Op::CreateAccount { display_name, .. } => match self.marker(&mut ldap, &email).await? {
                Some(Some(_)) => self.set_marker(&mut ldap, &email, MANAGED_MARKER).await,
                Some(None) => Err(ConnectorError::permanent(format!(
                    "an LDAP entry for {email} exists and is not managed by latchkey; it is left alone"
                ))),
                None => {
                    let cn = display_name.clone().unwrap_or_else(|| email.clone());
                    let attrs = vec![
                        (
                            "objectClass".to_string(),
                            HashSet::from(["top".to_string(), "inetOrgPerson".to_string()]),
                        ),
                        ("uid".to_string(), set(&email)),
                        ("mail".to_string(), set(&email)),
                        ("cn".to_string(), set(&cn)),
                        ("sn".to_string(), set(&cn)),
                        (MARKER_ATTR.to_string(), set(MANAGED_MARKER)),
                    ];
                    let r = ldap
                        .add(&dn, attrs)
                        .await
                        .map_err(|e| ldap_error("add", e))?;
                    match r.rc {
                        0 => Ok(()),
                        // Created meanwhile: fine when it is ours.
                        RC_ALREADY_EXISTS if self.managed(&mut ldap, &email).await? => Ok(()),
                        rc => Err(rc_error("add", rc, &r.text)),
                    }
                }
            },
            Op::EnableAccount { .. } => {
                if !self.managed(&mut ldap, &email).await? {
                    return Err(ConnectorError::permanent(format!(
                        "no LDAP entry for {email} to enable"
                    )));
                }
                self.set_marker(&mut ldap, &email, MANAGED_MARKER).await
            }
            Op::DisableAccount { .. } => {
                if !self.managed(&mut ldap, &email).await? {
                    return Ok(());
                }
                self.set_marker(&mut ldap, &email, DISABLED).await
            }
            Op::AddEntitlement { entitlement, .. } => {
                if !self.managed(&mut ldap, &email).await? {
                    return Err(ConnectorError::permanent(format!(
                        "no LDAP entry for {email} managed by latchkey to grant {entitlement:?} to"
                    )));
                }
                let gdn = self.group_dn(entitlement);
                let r = ldap
                    .modify(&gdn, vec![Mod::Add("member".to_string(), set(&dn))])
                    .await
                    .map_err(|e| ldap_error("add member", e))?;
                match r.rc {
                    0 | RC_TYPE_OR_VALUE_EXISTS => Ok(()),
                    RC_NO_SUCH_OBJECT => {
                        let attrs = vec![
                            (
                                "objectClass".to_string(),
                                HashSet::from(["top".to_string(), "groupOfNames".to_string()]),
                            ),
                            ("cn".to_string(), set(entitlement)),
                            ("member".to_string(), set(&dn)),
                        ];
                        let r = ldap
                            .add(&gdn, attrs)
                            .await
                            .map_err(|e| ldap_error("add group", e))?;
                        match r.rc {
                            0 => Ok(()),
                            RC_ALREADY_EXISTS => {
                                let r = ldap
                                    .modify(&gdn, vec![Mod::Add("member".to_string(), set(&dn))])
                                    .await
                                    .map_err(|e| ldap_error("add member", e))?;
                                match r.rc {
                                    0 | RC_TYPE_OR_VALUE_EXISTS => Ok(()),
                                    rc => Err(rc_error("add member", rc, &r.text)),
                                }
                            }
                            rc => Err(rc_error("add group", rc, &r.text)),
                        }
                    }
                    rc => Err(rc_error("add member", rc, &r.text)),
                }
            }
            Op::RemoveEntitlement { entitlement, .. } => {
                if !self.managed(&mut ldap, &email).await? {
                    return Ok(());
                }
                self.remove_member(&mut ldap, entitlement, &dn).await
            }
            Op::DeleteAccount { .. } => {
                if !self.managed(&mut ldap, &email).await? {
                    return Ok(());
                }
                // Directories without the refint overlay keep dangling members: remove first.
                let filter = format!(
                    "(&(objectClass=groupOfNames)(member={}))",
                    ldap3::ldap_escape(&dn)
                );
                let groups = self
                    .search_all(
                        &mut ldap,
                        &self.config.groups_dn.clone(),
                        &filter,
                        vec!["cn"],
                    )
                    .await?;
                for g in groups {
                    if let Some(cn) = g.attrs.get("cn").and_then(|v| v.first()) {
                        self.remove_member(&mut ldap, cn, &dn).await?;
                    }
                }
                let r = ldap
                    .delete(&dn)
                    .await
                    .map_err(|e| ldap_error("delete", e))?;
                match r.rc {
                    0 | RC_NO_SUCH_OBJECT => Ok(()),
                    rc => Err(rc_error("delete", rc, &r.text)),
                }
            }
        };
        let _ = ldap.unbind().await;
        result
    }
}
