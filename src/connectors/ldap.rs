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
//! `connection` ([`LdapConnection`]): `url` (`ldaps://sso.staging:636`, or
//! `ldap://sso.staging:389` with `startTls: true`), `bindDn`, `peopleDn`, `groupsDn`,
//! `caFile` (else the system's roots; the host name is always verified),
//! `allowCleartextBind`, `pageSize` (200), `maxConcurrency` (4), `emptyMember`
//! (`cn=nobody`), `timeout` (10s). `credentials`: the bind password.
//!
//! **The bind password never crosses a network in the clear.** A System whose `url` is
//! `ldap://` without `startTls` to a host that is not loopback (`localhost`, 127.0.0.0/8,
//! `::1`, as written) is refused before anything is sent, unless it says
//! `allowCleartextBind: true`; then each session logs a warning and the plan shows it.
//! Plain `ldap://` to loopback binds without TLS (the bytes stay on this machine).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};

use super::{
    Account, Capabilities, Completeness, Connector, ConnectorError, MANAGED_MARKER, Op, Secret,
    Snapshot, SystemContext, tls,
};
use crate::model::connection::LdapConnection;

const MARKER_ATTR: &str = "employeeType";
const DISABLED: &str = "latchkey-disabled";
const RC_NO_SUCH_ATTRIBUTE: u32 = 16;
const RC_TYPE_OR_VALUE_EXISTS: u32 = 20;
const RC_CONFIDENTIALITY_REQUIRED: u32 = 13;
const RC_STRONGER_AUTH_REQUIRED: u32 = 8;
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
    /// Upgrade `ldap://` with StartTLS before binding.
    pub start_tls: bool,
    /// PEM file of the CA(s) to trust instead of the system's roots.
    pub ca_file: Option<String>,
    /// Bind in cleartext to a host that is not loopback.
    pub allow_cleartext_bind: bool,
    /// Time to connect, TLS included.
    pub timeout: Duration,
}

impl LdapConfig {
    /// Plain defaults for a directory at `url` (tests and tools); Systems use
    /// [`LdapConfig::from_settings`].
    pub fn new(url: &str, bind_dn: &str, people_dn: &str, groups_dn: &str) -> LdapConfig {
        LdapConfig {
            url: url.to_string(),
            bind_dn: bind_dn.to_string(),
            people_dn: people_dn.to_string(),
            groups_dn: groups_dn.to_string(),
            page_size: 200,
            max_concurrency: 4,
            empty_member: "cn=nobody".to_string(),
            start_tls: false,
            ca_file: None,
            allow_cleartext_bind: false,
            timeout: Duration::from_secs(10),
        }
    }

    /// The config of a System's typed settings.
    pub fn from_settings(s: LdapConnection) -> LdapConfig {
        let mut c = LdapConfig::new(&s.url, &s.bind_dn, &s.people_dn, &s.groups_dn);
        c.page_size = s.page_size.unwrap_or(200).clamp(1, 10_000) as i32;
        c.max_concurrency = s.max_concurrency.unwrap_or(4).max(1);
        if let Some(m) = s.empty_member {
            c.empty_member = m;
        }
        c.start_tls = s.start_tls;
        c.ca_file = s.ca_file;
        c.allow_cleartext_bind = s.allow_cleartext_bind;
        if let Some(t) = s.timeout {
            c.timeout = t.get();
        }
        c
    }
}

/// How a session reaches the directory, worked out before connecting.
struct Transport {
    /// The warning of a cleartext bind the System allowed to a remote host.
    warning: Option<String>,
    settings: LdapConnSettings,
}

impl LdapConfig {
    /// Checks the URL against the TLS settings and builds the connection settings.
    /// Fails closed: a cleartext bind to a remote host is refused here, before any byte
    /// is sent, unless `allowCleartextBind` says otherwise.
    fn transport(&self) -> Result<Transport, ConnectorError> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            ConnectorError::config(format!(
                "connection.url {:?} is not a URL ({e}); write ldaps://host:636 or ldap://host:389",
                self.url
            ))
        })?;
        let host = url.host_str().unwrap_or("").to_string();
        let encrypted = match url.scheme() {
            "ldaps" if self.start_tls => {
                return Err(ConnectorError::config(
                    "connection.startTls applies to ldap:// URLs; ldaps:// is TLS already: remove startTls",
                ));
            }
            "ldaps" => true,
            "ldap" => self.start_tls,
            other => {
                return Err(ConnectorError::config(format!(
                    "connection.url scheme {other}:// is not supported: use ldaps:// or ldap:// (with startTls: true)"
                )));
            }
        };
        let loopback = tls::is_loopback(&host);
        let warning = match (encrypted, loopback, self.allow_cleartext_bind) {
            (true, _, _) | (false, true, _) => None,
            (false, false, true) => Some(format!(
                "the LDAP bind to {host} is not encrypted (allowCleartextBind: true): the bind password crosses the network in cleartext; use ldaps:// or startTls: true"
            )),
            (false, false, false) => {
                return Err(ConnectorError::config(format!(
                    "refusing to send the bind password in cleartext to {host}: use an ldaps:// URL or set connection.startTls: true (or, knowingly, connection.allowCleartextBind: true)"
                )));
            }
        };
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.start_tls);
        if encrypted {
            let roots = tls::roots(self.ca_file.as_deref(), "connection.caFile")?;
            let config = tls::client_config(tls::Verify::Full, roots, None)?;
            settings = settings.set_config(std::sync::Arc::new(config));
        }
        Ok(Transport { warning, settings })
    }
}

/// Builds the `ldap` connector for a System.
pub fn connect(ctx: &SystemContext<'_>) -> Result<Box<dyn Connector>, ConnectorError> {
    let config = LdapConfig::from_settings(ctx.settings()?);
    let password = ctx.secret.clone().ok_or_else(|| {
        ConnectorError::config("ldap needs credentials (the bind password of connection.bindDn)")
    })?;
    // A System that would bind in cleartext fails here already, on `validate`-like paths.
    config.transport()?;
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
        other => {
            let detail = super::error_chain(&other);
            if let Some(advice) = tls::advice(&other, "connection.caFile") {
                return ConnectorError::config(format!("LDAP {what}: {advice} ({detail})"));
            }
            if let LdapError::Timeout { .. } = other {
                return ConnectorError::transient(format!(
                    "LDAP {what}: the directory did not answer in time: check the host and port in connection.url and the network, or raise connection.timeout ({detail})"
                ));
            }
            if let LdapError::Io { source } = &other {
                use std::io::ErrorKind as K;
                match source.kind() {
                    K::TimedOut => {
                        return ConnectorError::transient(format!(
                            "LDAP {what}: the directory did not answer in time: check the host and port in connection.url and the network, or raise connection.timeout ({detail})"
                        ));
                    }
                    K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable => {
                        return ConnectorError::transient(format!(
                            "LDAP {what}: cannot reach the directory: check the host and port in connection.url and that the server is up ({detail})"
                        ));
                    }
                    _ => {}
                }
            }
            // I/O, a connection closed mid-operation.
            ConnectorError::transient(format!("LDAP {what}: {detail}"))
        }
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
            "the directory rejected the bind: check connection.bindDn and the System's credentials ({text})"
        )),
        RC_CONFIDENTIALITY_REQUIRED | RC_STRONGER_AUTH_REQUIRED => ConnectorError::config(format!(
            "the directory requires TLS: use an ldaps:// URL or set connection.startTls: true ({text})"
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

    /// Connects (TLS as configured) and binds. The transport is checked first, so a
    /// refused cleartext bind sends nothing.
    async fn bind(&self) -> Result<(Ldap, Option<String>), ConnectorError> {
        let transport = self.config.transport()?;
        // ldap3's connect timeout covers the TCP connect; this bounds TLS too.
        let connecting = LdapConnAsync::with_settings(transport.settings, &self.config.url);
        let (conn, mut ldap) = tokio::time::timeout(self.config.timeout, connecting)
            .await
            .map_err(|_| {
                ConnectorError::transient(format!(
                    "LDAP connect: the directory did not answer in time (within {:?}): check the host and port in connection.url and the network, or raise connection.timeout",
                    self.config.timeout
                ))
            })?
            .map_err(|e| ldap_error("connect", e))?;
        ldap3::drive!(conn);
        if let Some(w) = &transport.warning {
            tracing::warn!("{w}");
        }
        ldap.with_timeout(Duration::from_secs(30));
        let r = ldap
            .simple_bind(&self.config.bind_dn, self.password.expose())
            .await
            .map_err(|e| ldap_error("bind", e))?;
        if r.rc != 0 {
            return Err(rc_error("bind", r.rc, &r.text));
        }
        Ok((ldap, transport.warning))
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
                // The last member: keep the group valid with the placeholder, added and
                // the member deleted in one modify, so a member another change adds
                // meanwhile is never replaced away.
                let r = ldap
                    .modify(
                        &gdn,
                        vec![
                            Mod::Add("member".to_string(), set(&self.config.empty_member)),
                            Mod::Delete("member".to_string(), set(member)),
                        ],
                    )
                    .await
                    .map_err(|e| ldap_error("remove member", e))?;
                match r.rc {
                    0 | RC_NO_SUCH_ATTRIBUTE => Ok(()),
                    // The placeholder came back meanwhile: a plain delete now keeps the
                    // group valid.
                    RC_TYPE_OR_VALUE_EXISTS => {
                        let r = ldap
                            .modify(&gdn, vec![Mod::Delete("member".to_string(), set(member))])
                            .await
                            .map_err(|e| ldap_error("remove member", e))?;
                        match r.rc {
                            0 | RC_NO_SUCH_ATTRIBUTE => Ok(()),
                            rc => Err(rc_error("remove member", rc, &r.text)),
                        }
                    }
                    rc => Err(rc_error("remove member", rc, &r.text)),
                }
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
        let (mut ldap, warning) = self.bind().await?;
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
                entitlements: super::EntitlementSet::new(),
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
            warnings: warning.into_iter().collect(),
        })
    }

    async fn apply(&self, op: &Op) -> Result<(), ConnectorError> {
        let (mut ldap, _) = self.bind().await?;
        let result = self.apply_on(&mut ldap, op).await;
        let _ = ldap.unbind().await;
        result
    }

    fn batch_size(&self) -> usize {
        // One bound connection per batch: a connect and bind cost more than the change.
        500
    }

    /// One bound connection, on which each identity's changes run in order while the
    /// identities' chains run concurrently (ldap3 multiplexes operations on one
    /// connection by message id). A failure fails its change alone; a dropped connection
    /// fails the rest transiently, and the engine retries them one by one.
    async fn apply_batch(&self, ops: &[Op]) -> Vec<Result<(), ConnectorError>> {
        let mut ldap = match self.bind().await {
            Ok((ldap, _)) => ldap,
            Err(e) => return vec![Err(e); ops.len()],
        };
        let mut chains: BTreeMap<String, Vec<(usize, &Op)>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            chains
                .entry(op.identity().to_lowercase())
                .or_default()
                .push((i, op));
        }
        let done = futures::future::join_all(chains.into_values().map(|chain| {
            let mut ldap = ldap.clone();
            async move {
                let mut out = Vec::with_capacity(chain.len());
                for (i, op) in chain {
                    out.push((i, self.apply_on(&mut ldap, op).await));
                }
                out
            }
        }))
        .await;
        let _ = ldap.unbind().await;
        super::in_plan_order(ops.len(), done.into_iter().flatten())
    }
}

impl LdapConnector {
    /// One change on a bound connection.
    async fn apply_on(&self, ldap: &mut Ldap, op: &Op) -> Result<(), ConnectorError> {
        let email = op.identity().to_lowercase();
        let dn = self.person_dn(&email);
        match op {
            Op::SetExpiry { .. } => Err(ConnectorError::no_native_expiry("ldap")),
            // Adds the marker beside any other employeeType the entry has; only the
            // entry latchkey would manage (uid=<email> under peopleDn) is taken over.
            Op::AdoptAccount { .. } => match self.marker(ldap, &email).await? {
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
            Op::CreateAccount { display_name, .. } => match self.marker(ldap, &email).await? {
                Some(Some(_)) => self.set_marker(ldap, &email, MANAGED_MARKER).await,
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
                        RC_ALREADY_EXISTS if self.managed(ldap, &email).await? => Ok(()),
                        rc => Err(rc_error("add", rc, &r.text)),
                    }
                }
            },
            Op::EnableAccount { .. } => {
                if !self.managed(ldap, &email).await? {
                    return Err(ConnectorError::permanent(format!(
                        "no LDAP entry for {email} to enable"
                    )));
                }
                self.set_marker(ldap, &email, MANAGED_MARKER).await
            }
            Op::DisableAccount { .. } => {
                if !self.managed(ldap, &email).await? {
                    return Ok(());
                }
                self.set_marker(ldap, &email, DISABLED).await
            }
            Op::AddEntitlement { entitlement, .. } => {
                if !self.managed(ldap, &email).await? {
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
                if !self.managed(ldap, &email).await? {
                    return Ok(());
                }
                self.remove_member(ldap, entitlement, &dn).await
            }
            Op::DeleteAccount { .. } => {
                if !self.managed(ldap, &email).await? {
                    return Ok(());
                }
                // Directories without the refint overlay keep dangling members: remove first.
                let filter = format!(
                    "(&(objectClass=groupOfNames)(member={}))",
                    ldap3::ldap_escape(&dn)
                );
                let groups = self
                    .search_all(ldap, &self.config.groups_dn.clone(), &filter, vec!["cn"])
                    .await?;
                for g in groups {
                    if let Some(cn) = g.attrs.get("cn").and_then(|v| v.first()) {
                        self.remove_member(ldap, cn, &dn).await?;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(url: &str) -> LdapConfig {
        LdapConfig::new(url, "cn=latchkey", "ou=people", "ou=groups")
    }

    #[test]
    fn a_cleartext_bind_off_loopback_needs_the_named_setting() {
        let e = at("ldap://sso.staging:389").transport().err().unwrap();
        assert_eq!(e.class, crate::connectors::ErrorClass::Config);
        assert!(
            e.message
                .contains("refusing to send the bind password in cleartext to sso.staging")
        );
        let mut allowed = at("ldap://sso.staging:389");
        allowed.allow_cleartext_bind = true;
        let warning = allowed.transport().unwrap().warning.unwrap();
        assert!(
            warning.contains("the LDAP bind to sso.staging is not encrypted"),
            "{warning}"
        );
        assert!(
            at("ldap://127.0.0.1:389")
                .transport()
                .unwrap()
                .warning
                .is_none()
        );
        assert!(
            at("ldap://localhost")
                .transport()
                .unwrap()
                .warning
                .is_none()
        );
    }

    #[test]
    fn tls_settings_must_agree_with_the_url() {
        let mut both = at("ldaps://sso.staging:636");
        both.start_tls = true;
        assert!(
            both.transport()
                .err()
                .unwrap()
                .message
                .contains("remove startTls")
        );
        let e = at("ldapi://%2frun%2fslapd").transport().err().unwrap();
        assert!(e.message.contains("ldapi:// is not supported"), "{e}");
        let mut ca = at("ldaps://sso.staging:636");
        ca.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(
            ca.transport()
                .err()
                .unwrap()
                .message
                .contains("cannot read connection.caFile")
        );
    }
}
