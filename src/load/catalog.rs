//! The documents of a revision gathered by kind and checked against each other. Members
//! are checked one by one (`member.rs`) against what is gathered here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::diagnostic::{Pending, path};
use super::member::{Member, ResolvedGrant, invalid_name};
use super::parse::{AnyDoc, DocLoc};
use crate::model::connection;
use crate::model::{
    ClientSpec, Credentials, GrantDuration, NotifierSpec, PolicySpec, RoleSpec, SystemSpec,
    role::CLIENT_PLACEHOLDER,
};

/// A document's name, spec and location.
#[derive(Clone, Debug)]
pub struct Item<S> {
    pub name: String,
    pub spec: S,
    pub at: DocLoc,
}

/// The connector types that can mark an existing account as latchkey's (`adopt: true`).
pub const ADOPTING: &[&str] = &["sql", "postgres", "ldap"];

/// The connector types latchkey knows.
pub const CONNECTORS: &[&str] = &[
    "sql",
    "scim",
    "postgres",
    "ldap",
    "kubernetes",
    "wordpress",
    "exec",
];

/// What the revision declares, by kind.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub policy: PolicySpec,
    /// Where the Policy document is, if there is one.
    pub policy_at: Option<DocLoc>,
    pub systems: BTreeMap<String, Item<SystemSpec>>,
    pub roles: BTreeMap<String, Item<RoleSpec>>,
    pub clients: BTreeMap<String, Item<ClientSpec>>,
    /// Where notifications go (docs/notifications.md).
    pub notifiers: BTreeMap<String, Item<NotifierSpec>>,
    /// Keyed by identity (lowercase email). Shared with the load cache: an unchanged
    /// member is the same `Arc` from one load to the next. The map itself is shared
    /// with desired state rather than copied.
    pub members: Arc<BTreeMap<String, Arc<Member>>>,
    /// The clients some member who is not offboarded holds a grant for (the
    /// empty-client guard compares them across revisions).
    pub live_clients: Arc<BTreeSet<String>>,
    /// Identifies the Policy, Systems, Roles and Clients above: equal ids, equal
    /// documents (a checked member is only valid against the ones it was checked with).
    pub globals_id: u64,
    /// The Role, Client and System names, each allocated once: every resolved grant
    /// (and every source and account of desired state made from it) shares them.
    pub names: Arc<BTreeMap<String, Arc<str>>>,
}

impl Catalog {
    /// Gathers the Policy, Systems, Roles and Clients, reporting duplicates. Members are
    /// gathered by the load (see `load::assemble`), which checks them one by one.
    pub fn gather_globals<'a>(
        docs: impl IntoIterator<Item = &'a (DocLoc, AnyDoc)>,
        pending: &mut Vec<Pending>,
    ) -> Catalog {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut cat = Catalog {
            globals_id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ..Catalog::default()
        };
        for (at, doc) in docs {
            let at = at.clone();
            match doc {
                AnyDoc::Policy(env) => {
                    if let Some(first) = &cat.policy_at {
                        pending.push(
                            Pending::error(
                                &at.file,
                                at.doc,
                                path("kind"),
                                "a second Policy document",
                            )
                            .help(format!("merge it into the Policy in {}", first.file)),
                        );
                    } else {
                        cat.policy = env.spec.clone();
                        cat.policy_at = Some(at);
                    }
                }
                AnyDoc::System(env) => insert(
                    &mut cat.systems,
                    &env.metadata.name,
                    &env.spec,
                    at,
                    "System",
                    pending,
                ),
                AnyDoc::Role(env) => insert(
                    &mut cat.roles,
                    &env.metadata.name,
                    &env.spec,
                    at,
                    "Role",
                    pending,
                ),
                AnyDoc::Client(env) => insert(
                    &mut cat.clients,
                    &env.metadata.name,
                    &env.spec,
                    at,
                    "Client",
                    pending,
                ),
                AnyDoc::Notifier(env) => insert(
                    &mut cat.notifiers,
                    &env.metadata.name,
                    &env.spec,
                    at,
                    "Notifier",
                    pending,
                ),
                AnyDoc::Member(_) => {}
            }
        }
        cat.names = Arc::new(
            cat.roles
                .keys()
                .chain(cat.clients.keys())
                .chain(cat.systems.keys())
                .map(|n| (n.clone(), Arc::from(n.as_str())))
                .collect(),
        );
        cat
    }

    /// `name` as a shared string: the catalogue's own for a Role, Client or System name.
    pub fn name(&self, name: &str) -> Arc<str> {
        self.names
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }

    /// Every resolved grant, in member (identity) then grant order.
    pub fn grants(&self) -> impl Iterator<Item = &ResolvedGrant> {
        self.members.values().flat_map(|m| m.grants.iter())
    }

    /// Systems a grant of `role` for `client` reaches, with their entitlement patterns.
    pub fn reach<'a>(
        &'a self,
        role: &'a RoleSpec,
        client: &'a str,
    ) -> impl Iterator<Item = (&'a Item<SystemSpec>, &'a Vec<String>)> + 'a {
        role.entitlements.iter().filter_map(move |(sys, ents)| {
            let system = self.systems.get(sys)?;
            match &system.spec.client {
                Some(c) if c != client => None,
                _ => Some((system, ents)),
            }
        })
    }

    /// The agency's client, whose members may hold grants for other clients.
    pub fn agency(&self) -> Option<&str> {
        self.policy.agency_client.as_deref()
    }
}

/// Expands `{client}` in an entitlement pattern.
pub fn expand(pattern: &str, client: &str) -> String {
    pattern.replace(CLIENT_PLACEHOLDER, client)
}

/// The entitlement a pattern names on `system` for `client`, spelt as the system
/// compares names: LDAP compares group names case-insensitively (`Finance` is the group
/// `finance`), so its entitlements are lower case on both sides of the diff (the `ldap`
/// connector reads group names in lower case too) and a Role that says `Finance`
/// converges instead of being granted again on every run.
pub fn entitlement(system: &SystemSpec, pattern: &str, client: &str) -> String {
    let e = expand(pattern, client);
    if system.connector == "ldap" {
        e.to_lowercase()
    } else {
        e
    }
}

fn insert<S: Clone>(
    map: &mut BTreeMap<String, Item<S>>,
    name: &str,
    spec: &S,
    at: DocLoc,
    kind: &str,
    pending: &mut Vec<Pending>,
) {
    match map.get(name) {
        Some(first) => pending.push(duplicate(kind, name, &at, &first.at)),
        None => {
            map.insert(
                name.to_string(),
                Item {
                    name: name.to_string(),
                    spec: spec.clone(),
                    at,
                },
            );
        }
    }
}

/// The finding for a second document of `kind` named `name`.
pub(super) fn duplicate(kind: &str, name: &str, at: &DocLoc, first: &DocLoc) -> Pending {
    Pending::error(
        &at.file,
        at.doc,
        path("metadata.name"),
        format!("duplicate {kind} name {name:?}"),
    )
    .help(format!(
        "it is already defined in {}; rename or remove one",
        first.file
    ))
}

/// Checks the Policy, Systems, Roles and Clients against each other. Every finding is
/// collected; nothing stops at the first.
pub fn check_globals(cat: &Catalog, pending: &mut Vec<Pending>) {
    check_names(cat, pending);
    check_policy(cat, pending);
    check_systems(cat, pending);
    check_roles(cat, pending);
    check_clients(cat, pending);
    check_notifiers(cat, pending);
}

/// Names become table keys, label values and file names: keep them DNS-label-like.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

fn check_names(cat: &Catalog, pending: &mut Vec<Pending>) {
    let names = cat
        .systems
        .values()
        .map(|i| (&i.name, &i.at))
        .chain(cat.roles.values().map(|i| (&i.name, &i.at)))
        .chain(cat.clients.values().map(|i| (&i.name, &i.at)))
        .chain(cat.notifiers.values().map(|i| (&i.name, &i.at)));
    for (name, at) in names {
        if !valid_name(name) {
            pending.push(invalid_name(name, at));
        }
    }
}

fn check_policy(cat: &Catalog, pending: &mut Vec<Pending>) {
    let Some(at) = &cat.policy_at else { return };
    if let Some(agency) = cat.agency()
        && !cat.clients.contains_key(agency)
    {
        pending.push(
            Pending::error(
                &at.file,
                at.doc,
                path("spec.agencyClient"),
                format!("agencyClient {agency:?} is not a Client"),
            )
            .help("add a Client document for the agency, or fix the name"),
        );
    }
    for (env, d) in &cat.policy.max_grant_duration {
        if let Err(e) = GrantDuration::parse(d) {
            pending.push(Pending::error(
                &at.file,
                at.doc,
                path(&format!("spec.maxGrantDuration.{env}")),
                e.to_string(),
            ));
        }
    }
    if let Some(trust) = &cat.policy.trust {
        check_trust(trust, &at.file, at.doc, pending);
    }
    for (field, value) in [
        ("spec.expiredGrace", &cat.policy.expired_grace),
        ("spec.reviewEvery", &cat.policy.review_every),
    ] {
        if let Some(g) = value
            && let Err(e) = GrantDuration::parse(g)
        {
            pending.push(Pending::error(&at.file, at.doc, path(field), e.to_string()));
        }
    }
}

/// Signer keys and path patterns must be usable before a revision may turn trust on.
fn check_trust(trust: &crate::model::Trust, file: &str, doc: usize, pending: &mut Vec<Pending>) {
    if trust.require_signed_commits && trust.signers.is_empty() {
        pending.push(
            Pending::error(file, doc, path("spec.trust.requireSignedCommits"), "requireSignedCommits is on but no signer is listed")
                .help("list at least one signer (an agency admin with paths: [\"**\"]) in spec.trust.signers"),
        );
    }
    for (i, s) in trust.signers.iter().enumerate() {
        let at = |field: &str| path(&format!("spec.trust.signers.{i}.{field}"));
        if !s.pgp_keys.is_empty() {
            pending.push(
                Pending::error(file, doc, at("pgpKeys"), format!("signer {:?}: OpenPGP keys are not supported yet", s.name))
                    .at_key()
                    .help("list SSH public keys in sshKeys and sign commits with `git config gpg.format ssh`"),
            );
        }
        for (j, k) in s.ssh_keys.iter().enumerate() {
            let problem = match ssh_key::PublicKey::from_openssh(k.trim()) {
                Err(e) => Some(format!(
                    "signer {:?}: cannot parse SSH public key: {e}",
                    s.name
                )),
                Ok(key) if key.algorithm() != ssh_key::Algorithm::Ed25519 => Some(format!(
                    "signer {:?}: {} keys are not supported yet, only ssh-ed25519",
                    s.name,
                    key.algorithm()
                )),
                Ok(_) => None,
            };
            if let Some(message) = problem {
                pending.push(
                    Pending::error(file, doc, at(&format!("sshKeys.{j}")), message).help(
                        "paste one line of an ed25519 .pub file: ssh-ed25519 AAAA... comment",
                    ),
                );
            }
        }
        for (j, p) in s.paths.iter().enumerate() {
            if let Err(e) = globset::Glob::new(p.trim_start_matches('!').trim_start_matches('/')) {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        at(&format!("paths.{j}")),
                        format!("signer {:?}: invalid path pattern: {e}", s.name),
                    )
                    .help("write a glob such as clients/acme/** (prefix ! to exclude)"),
                );
            }
        }
    }
}

/// Keys that suggest a secret was pasted inline.
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace(['-', '_'], "");
    if k.ends_with("column") || k.ends_with("table") || k.ends_with("env") || k.ends_with("file") {
        return false;
    }
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "privatekey",
        "bearer",
        "credential",
        "auth",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn check_systems(cat: &Catalog, pending: &mut Vec<Pending>) {
    for sys in cat.systems.values() {
        let (file, doc) = (&*sys.at.file, sys.at.doc);
        for (i, g) in sys.spec.grantable.iter().flatten().enumerate() {
            if let Err(e) = globset::Glob::new(g) {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        vec![
                            super::diagnostic::Seg::Key("spec".into()),
                            super::diagnostic::Seg::Key("grantable".into()),
                            super::diagnostic::Seg::Index(i),
                        ],
                        format!("grantable pattern {g:?} is not a glob: {}", e.kind()),
                    )
                    .help("use names, or * and ? wildcards, e.g. acme:*"),
                );
            }
        }
        if !CONNECTORS.contains(&sys.spec.connector.as_str()) {
            pending.push(
                Pending::error(
                    file,
                    doc,
                    path("spec.type"),
                    format!("unknown connector type {:?}", sys.spec.connector),
                )
                .help(format!("use one of {}", CONNECTORS.join(", "))),
            );
        } else if let Err(e) = connection::check(&sys.spec.connector, &sys.spec.connection) {
            pending.push(setting_finding(file, doc, &sys.spec.connector, e));
        }
        if let Some(c) = &sys.spec.client
            && !cat.clients.contains_key(c)
        {
            pending.push(unknown_client(file, doc, path("spec.client"), c, cat));
        }
        if sys.spec.adopt
            && CONNECTORS.contains(&sys.spec.connector.as_str())
            && !ADOPTING.contains(&sys.spec.connector.as_str())
        {
            pending.push(
                Pending::error(
                    file,
                    doc,
                    path("spec.adopt"),
                    format!(
                        "the {} connector cannot adopt existing accounts (it has no way to mark one as latchkey's)",
                        sys.spec.connector
                    ),
                )
                .help(format!(
                    "remove adopt, or use a connector that can adopt: {}",
                    ADOPTING.join(", ")
                )),
            );
        }
        if let Some(cred) = &sys.spec.credentials {
            check_credentials(cred, file, doc, "spec.credentials", pending);
        }
        use super::diagnostic::Seg;
        let mut stack: Vec<(Vec<Seg>, &serde_json::Value)> = sys
            .spec
            .connection
            .iter()
            .map(|(k, v)| {
                let p = ["spec", "connection", k].map(|s| Seg::Key(s.to_string()));
                (p.to_vec(), v)
            })
            .collect();
        let help =
            "never put secrets in git: remove it and set spec.credentials (env, file or secretKey)";
        while let Some((p, value)) = stack.pop() {
            let key = match p.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => String::new(),
            };
            let shown = super::diagnostic::display_path(&p[2..]);
            match value {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        let mut child = p.clone();
                        child.push(Seg::Key(k.clone()));
                        stack.push((child, v));
                    }
                }
                serde_json::Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        let mut child = p.clone();
                        child.push(Seg::Index(i));
                        stack.push((child, v));
                    }
                    // `[--token, abc]`: the flag names a secret, the next item is it.
                    for (i, pair) in items.windows(2).enumerate() {
                        if let (Some(flag), Some(value)) = (pair[0].as_str(), pair[1].as_str())
                            && secret_flag(flag)
                            && !flag.contains('=')
                            && !value.starts_with('-')
                        {
                            let mut at = p.clone();
                            at.push(Seg::Index(i + 1));
                            let shown = super::diagnostic::display_path(&at[2..]);
                            pending.push(
                                Pending::error(file, doc, at, format!("argument `{flag}` passes a secret in `{shown}` of System {:?}", sys.name))
                                    .help(help),
                            );
                        }
                    }
                }
                serde_json::Value::String(s) if looks_secret(&key) && !s.is_empty() => pending.push(
                    Pending::error(file, doc, p, format!("inline secret-looking value `{key}` in System {:?}", sys.name))
                        .at_key()
                        .help(help),
                ),
                serde_json::Value::String(s) if url_has_password(s) => pending.push(
                    Pending::error(file, doc, p, format!("URL with an inline password in `{shown}` of System {:?}", sys.name))
                        .help("remove the password from the URL and set spec.credentials (env, file or secretKey)"),
                ),
                serde_json::Value::String(s) if let Some(param) = secret_query(s) => pending.push(
                    Pending::error(file, doc, p, format!("URL with a secret in its query (`{param}=`) in `{shown}` of System {:?}", sys.name))
                        .help("remove the parameter and set spec.credentials (env, file or secretKey)"),
                ),
                serde_json::Value::String(s)
                    if s.split_once('=').is_some_and(|(f, v)| secret_flag(f) && !v.is_empty()) =>
                {
                    let flag = s.split('=').next().unwrap_or("");
                    pending.push(
                        Pending::error(file, doc, p, format!("argument `{flag}=` passes a secret in `{shown}` of System {:?}", sys.name))
                            .help(help),
                    );
                }
                _ => {}
            }
        }
    }
}

/// A `connection` setting of the wrong name or type, located at the setting, with the
/// valid names (and the new name of a renamed one).
fn setting_finding(file: &str, doc: usize, kind: &str, e: connection::SettingsError) -> Pending {
    use super::diagnostic::Seg;
    let mut at = path("spec.connection");
    at.extend(e.path.iter().map(|s| match s {
        connection::PathSeg::Key(k) => Seg::Key(k.clone()),
        connection::PathSeg::Index(i) => Seg::Index(*i),
    }));
    let finding = super::parse::serde_finding(file, doc, at, &e.message);
    let renamed = connection::RENAMED
        .iter()
        .find(|(k, old, _)| *k == kind && e.message.contains(&format!("unknown field `{old}`")));
    match renamed {
        Some((_, old, new)) => finding.help(format!(
            "`{old}` was renamed: use {new} (docs/connectors.md lists every setting)"
        )),
        None => finding,
    }
}

/// A command-line flag whose value is a secret: `--password`, `-token`, `--api-key`.
fn secret_flag(arg: &str) -> bool {
    let name = arg.split('=').next().unwrap_or("");
    name.starts_with('-') && looks_secret(name.trim_start_matches('-'))
}

/// The first query parameter of a URL whose name says it holds a secret
/// (`password=`, `access_token=`, `token=`, `secret=`, `apikey=`, any case), with a value.
fn secret_query(s: &str) -> Option<String> {
    let (_, query) = s.split_once("://")?.1.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    query.split(['&', ';']).find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (looks_secret(name) && !value.is_empty()).then(|| name.to_string())
    })
}

fn url_has_password(s: &str) -> bool {
    s.split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn check_roles(cat: &Catalog, pending: &mut Vec<Pending>) {
    for role in cat.roles.values() {
        let (file, doc) = (&*role.at.file, role.at.doc);
        if role.spec.entitlements.is_empty() {
            pending.push(
                Pending::error(
                    file,
                    doc,
                    path("spec.entitlements"),
                    format!("Role {:?} grants nothing", role.name),
                )
                .help("list entitlements per system, e.g. portal: [viewer]"),
            );
        }
        for (sys, ents) in &role.spec.entitlements {
            let at = vec![
                super::diagnostic::Seg::Key("spec".into()),
                super::diagnostic::Seg::Key("entitlements".into()),
                super::diagnostic::Seg::Key(sys.clone()),
            ];
            if !cat.systems.contains_key(sys) {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        at.clone(),
                        format!("Role {:?} names unknown system {sys:?}", role.name),
                    )
                    .at_key()
                    .help(format!(
                        "define a System named {sys:?} or use one of {}",
                        names(&cat.systems)
                    )),
                );
            }
            for (i, e) in ents.iter().enumerate() {
                let mut p = at.clone();
                p.push(super::diagnostic::Seg::Index(i));
                if e.trim().is_empty() {
                    pending.push(
                        Pending::error(file, doc, p, "empty entitlement")
                            .help("remove it or name the entitlement"),
                    );
                } else if let Some(c) = super::member::control_char(e) {
                    let mut f = super::member::control_error(file, doc, "", "entitlement", c);
                    f.path = p;
                    pending.push(f);
                } else if let Some(bad) = unknown_placeholder(e) {
                    pending.push(
                        Pending::error(
                            file,
                            doc,
                            p,
                            format!("unknown placeholder {bad:?} in entitlement {e:?}"),
                        )
                        .help("the only placeholder is {client} (lowercase); braces are not allowed otherwise"),
                    );
                } else if let Some(system) = cat.systems.get(sys)
                    && let Some(finding) = out_of_scope(cat, &system.spec, e)
                {
                    pending.push(
                        Pending::error(file, doc, p, format!("entitlement {e:?} {finding} on system {sys:?}"))
                            .help(match &system.spec.grantable {
                                Some(g) => format!("the System grants only {}; widen its grantable list or use one of those", g.join(", ")),
                                None => "grant a group role made for the purpose instead".to_string(),
                            }),
                    );
                }
            }
        }
    }
}

/// Why an entitlement may not be granted on a system, if it may not: outside the
/// System's `grantable` patterns (both expanded for each client the pattern expands
/// for), or, on `postgres`, a
/// predefined `pg_*` role (the connector also refuses LOGIN, SUPERUSER, CREATEROLE,
/// CREATEDB, REPLICATION and BYPASSRLS roles, and its own, against the live catalogue).
fn out_of_scope(cat: &Catalog, system: &SystemSpec, pattern: &str) -> Option<String> {
    let clients: Vec<&str> = if pattern.contains(CLIENT_PLACEHOLDER) {
        cat.clients.keys().map(String::as_str).collect()
    } else {
        vec![""]
    };
    for client in clients {
        let e = entitlement(system, pattern, client);
        if system.connector == "postgres" && e.starts_with("pg_") {
            return Some("is a PostgreSQL predefined role, which latchkey never grants".into());
        }
        if let Some(allowed) = &system.grantable {
            let matches = allowed.iter().any(|g| {
                globset::Glob::new(&entitlement(system, g, client))
                    .map(|g| g.compile_matcher().is_match(&e))
                    .unwrap_or(false)
            });
            if !matches {
                let r#for = if client.is_empty() {
                    String::new()
                } else {
                    format!(" (for client {client:?})")
                };
                return Some(format!(
                    "is outside the System's grantable list{for}",
                    r#for = r#for
                ));
            }
        }
    }
    None
}

/// A brace group other than `{client}` (`{CLIENT}`, `{clientx}`, `{}`), or a stray
/// brace: a mistyped placeholder would otherwise be granted as literal text.
fn unknown_placeholder(entitlement: &str) -> Option<String> {
    let rest = entitlement.replace("{client}", "");
    let start = rest.find(['{', '}'])?;
    let tail = &rest[start..];
    Some(match (tail.starts_with('{'), tail.find('}')) {
        (true, Some(end)) => tail[..=end].to_string(),
        _ => tail.chars().next().map(String::from).unwrap_or_default(),
    })
}

fn check_clients(cat: &Catalog, pending: &mut Vec<Pending>) {
    for client in cat.clients.values() {
        let (file, doc) = (&*client.at.file, client.at.doc);
        for (i, r) in client.spec.allowed_roles.iter().enumerate() {
            if !cat.roles.contains_key(r) {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        path(&format!("spec.allowedRoles.{i}")),
                        format!("unknown role {r:?} in allowedRoles"),
                    )
                    .help(format!(
                        "define a Role named {r:?} or use one of {}",
                        names(&cat.roles)
                    )),
                );
            }
        }
        for (field, value) in [
            ("spec.maxGrantDuration", &client.spec.max_grant_duration),
            ("spec.reviewEvery", &client.spec.review_every),
        ] {
            if let Some(d) = value
                && let Err(e) = GrantDuration::parse(d)
            {
                pending.push(Pending::error(file, doc, path(field), e.to_string()));
            }
        }
    }
}

/// `credentials`-shaped settings (at `at`) must name exactly one source.
fn check_credentials(
    cred: &Credentials,
    file: &str,
    doc: usize,
    at: &str,
    pending: &mut Vec<Pending>,
) {
    let sources = [
        cred.env.is_some(),
        cred.file.is_some(),
        cred.secret_key.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        pending.push(
            Pending::error(
                file,
                doc,
                path(at),
                format!(
                    "{} must name exactly one source",
                    at.rsplit('.').next().unwrap_or(at)
                ),
            )
            .help("set one of env, file or secretKey"),
        );
    }
}

/// A Notifier's events, durations, clients and credential sources must be usable: a
/// notifier that cannot send is found by `validate`, not by the first missed warning.
fn check_notifiers(cat: &Catalog, pending: &mut Vec<Pending>) {
    use crate::notify::EventKind;
    for n in cat.notifiers.values() {
        let (file, doc) = (&*n.at.file, n.at.doc);
        check_credentials(&n.spec.url, file, doc, "spec.url", pending);
        check_credentials(&n.spec.secret, file, doc, "spec.secret", pending);
        for (i, e) in n.spec.events.iter().flatten().enumerate() {
            if EventKind::parse(e).is_none() {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        path(&format!("spec.events.{i}")),
                        format!("unknown event {e:?}"),
                    )
                    .help(format!("use one of {}", EventKind::names().join(", "))),
                );
            }
        }
        if let Some(d) = &n.spec.expiring_within
            && let Err(e) = GrantDuration::parse(d)
        {
            pending.push(Pending::error(
                file,
                doc,
                path("spec.expiringWithin"),
                e.to_string(),
            ));
        }
        for (i, c) in n.spec.clients.iter().flatten().enumerate() {
            if !cat.clients.contains_key(c) {
                pending.push(unknown_client(
                    file,
                    doc,
                    path(&format!("spec.clients.{i}")),
                    c,
                    cat,
                ));
            }
        }
    }
}

pub(super) fn names<S>(map: &BTreeMap<String, Item<S>>) -> String {
    if map.is_empty() {
        return "(none defined)".into();
    }
    map.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn unknown_client(
    file: &str,
    doc: usize,
    at: super::diagnostic::YamlPath,
    c: &str,
    cat: &Catalog,
) -> Pending {
    Pending::error(file, doc, at, format!("unknown client {c:?}")).help(format!(
        "define a Client named {c:?} or use one of {}",
        names(&cat.clients)
    ))
}

#[cfg(test)]
mod tests {
    use super::{secret_flag, secret_query};

    #[test]
    fn secrets_in_query_strings_and_flags_are_found() {
        assert_eq!(
            secret_query("https://x.example/scim?tenant=a&ACCESS_TOKEN=t").as_deref(),
            Some("ACCESS_TOKEN")
        );
        assert_eq!(
            secret_query("postgres://h/db?apikey=k#x").as_deref(),
            Some("apikey")
        );
        assert_eq!(secret_query("postgres://h/db?sslmode=require"), None);
        assert_eq!(secret_query("postgres://h/db?password="), None);
        assert_eq!(secret_query("not a url?token=x"), None);
        assert!(secret_flag("--password=x") && secret_flag("--token") && secret_flag("-secret"));
        assert!(!secret_flag("--password-file=/run/s") && !secret_flag("--token-env"));
        assert!(!secret_flag("token") && !secret_flag("--db"));
    }
}
