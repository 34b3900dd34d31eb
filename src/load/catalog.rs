//! The documents of a revision gathered by kind, checked against each other, with every
//! grant's time window resolved.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use super::diagnostic::{Pending, path};
use super::parse::{AnyDoc, DocLoc};
use crate::model::{
    ClientSpec, Environment, Grant, GrantDuration, MemberSpec, PolicySpec, RoleSpec, SystemSpec,
    role::CLIENT_PLACEHOLDER,
};

/// A document's name, spec and location.
#[derive(Clone, Debug)]
pub struct Item<S> {
    pub name: String,
    pub spec: S,
    pub at: DocLoc,
}

/// A grant with its client and time window resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedGrant {
    /// The member's lowercase email.
    pub identity: String,
    pub role: String,
    pub client: String,
    pub starts: Option<Timestamp>,
    pub expires: Option<Timestamp>,
    pub reason: Option<String>,
    /// The member is marked `offboarded: true`.
    pub offboarded: bool,
    pub at: DocLoc,
    /// The grant's index in the member's `grants`.
    pub index: usize,
}

impl ResolvedGrant {
    /// In force at `now`: started (or no start) and not yet expired.
    pub fn active_at(&self, now: Timestamp) -> bool {
        !self.offboarded
            && self.starts.is_none_or(|s| s <= now)
            && self.expires.is_none_or(|e| now < e)
    }
}

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
    /// Keyed by identity (lowercase email).
    pub members: BTreeMap<String, Item<MemberSpec>>,
    /// Every grant of every member, in member then grant order.
    pub grants: Vec<ResolvedGrant>,
}

/// Inputs that are not in the documents: time is a parameter, never read inside.
pub struct Context<'a> {
    /// The revision's committer time: "merged at" for guardrails.
    pub revision_time: Timestamp,
    /// The clock, for warnings about long-expired grants.
    pub now: Timestamp,
    /// When a grant was merged (for `for:`); `None` falls back to `revision_time`.
    pub merged_at: &'a dyn Fn(&str, &Grant) -> Option<Timestamp>,
}

impl Catalog {
    /// Gathers documents, reporting duplicates.
    pub fn gather(docs: Vec<(DocLoc, AnyDoc)>, pending: &mut Vec<Pending>) -> Catalog {
        let mut cat = Catalog::default();
        // Member name → where it was first defined (members are keyed by email).
        let mut member_names: HashMap<String, DocLoc> = HashMap::new();
        for (at, doc) in docs {
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
                        cat.policy = env.spec;
                        cat.policy_at = Some(at);
                    }
                }
                AnyDoc::System(env) => insert(
                    &mut cat.systems,
                    env.metadata.name,
                    env.spec,
                    at,
                    "System",
                    pending,
                ),
                AnyDoc::Role(env) => insert(
                    &mut cat.roles,
                    env.metadata.name,
                    env.spec,
                    at,
                    "Role",
                    pending,
                ),
                AnyDoc::Client(env) => insert(
                    &mut cat.clients,
                    env.metadata.name,
                    env.spec,
                    at,
                    "Client",
                    pending,
                ),
                AnyDoc::Member(env) => {
                    let identity = env.spec.email.trim().to_lowercase();
                    if let Some(first) = member_names.get(&env.metadata.name) {
                        pending.push(duplicate("Member", &env.metadata.name, &at, first));
                        continue;
                    }
                    match cat.members.entry(identity) {
                        Entry::Occupied(first) => pending.push(
                            Pending::error(
                                &at.file,
                                at.doc,
                                path("spec.email"),
                                format!(
                                    "email {:?} is already used by Member {:?}",
                                    env.spec.email,
                                    first.get().name
                                ),
                            )
                            .help(format!(
                                "one person is one Member: merge the grants into {}",
                                first.get().at.file
                            )),
                        ),
                        Entry::Vacant(slot) => {
                            member_names.insert(env.metadata.name.clone(), at.clone());
                            slot.insert(Item {
                                name: env.metadata.name,
                                spec: env.spec,
                                at,
                            });
                        }
                    }
                }
            }
        }
        cat
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

fn insert<S>(
    map: &mut BTreeMap<String, Item<S>>,
    name: String,
    spec: S,
    at: DocLoc,
    kind: &str,
    pending: &mut Vec<Pending>,
) {
    match map.entry(name) {
        Entry::Occupied(first) => pending.push(duplicate(kind, first.key(), &at, &first.get().at)),
        Entry::Vacant(slot) => {
            let name = slot.key().clone();
            slot.insert(Item { name, spec, at });
        }
    }
}

fn duplicate(kind: &str, name: &str, at: &DocLoc, first: &DocLoc) -> Pending {
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

/// Checks the documents against each other and resolves grants. Every finding is
/// collected; nothing stops at the first.
pub fn check(cat: &mut Catalog, ctx: &Context<'_>, pending: &mut Vec<Pending>) {
    check_names(cat, pending);
    check_policy(cat, pending);
    check_systems(cat, pending);
    check_roles(cat, pending);
    check_clients(cat, pending);
    let grants = check_members(cat, ctx, pending);
    cat.grants = grants;
}

/// Names become table keys, label values and file names: keep them DNS-label-like.
fn check_names(cat: &Catalog, pending: &mut Vec<Pending>) {
    let names = cat
        .systems
        .values()
        .map(|i| (&i.name, &i.at))
        .chain(cat.roles.values().map(|i| (&i.name, &i.at)))
        .chain(cat.clients.values().map(|i| (&i.name, &i.at)))
        .chain(cat.members.values().map(|i| (&i.name, &i.at)));
    for (name, at) in names {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !name.starts_with(['-', '.'])
            && !name.ends_with(['-', '.']);
        if !ok {
            pending.push(
                Pending::error(&at.file, at.doc, path("metadata.name"), format!("invalid name {name:?}"))
                    .help("use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"),
            );
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
    if let Some(g) = &cat.policy.expired_grace
        && let Err(e) = GrantDuration::parse(g)
    {
        pending.push(Pending::error(
            &at.file,
            at.doc,
            path("spec.expiredGrace"),
            e.to_string(),
        ));
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
        }
        if let Some(c) = &sys.spec.client
            && !cat.clients.contains_key(c)
        {
            pending.push(unknown_client(file, doc, path("spec.client"), c, cat));
        }
        if let Some(cred) = &sys.spec.credentials {
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
                        path("spec.credentials"),
                        "credentials must name exactly one source",
                    )
                    .help("set one of env, file or secretKey"),
                );
            }
        }
        let mut stack: Vec<(Vec<String>, &serde_json::Value)> = sys
            .spec
            .connection
            .iter()
            .map(|(k, v)| (vec!["spec".into(), "connection".into(), k.clone()], v))
            .collect();
        while let Some((p, value)) = stack.pop() {
            let key = p.last().cloned().unwrap_or_default();
            let at = p
                .iter()
                .map(|s| super::diagnostic::Seg::Key(s.clone()))
                .collect();
            match value {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        let mut child = p.clone();
                        child.push(k.clone());
                        stack.push((child, v));
                    }
                }
                serde_json::Value::String(s) if looks_secret(&key) && !s.is_empty() => pending.push(
                    Pending::error(file, doc, at, format!("inline secret-looking value `{key}` in System {:?}", sys.name))
                        .at_key()
                        .help("never put secrets in git: remove it and set spec.credentials (env, file or secretKey)"),
                ),
                serde_json::Value::String(s) if url_has_password(s) => pending.push(
                    Pending::error(file, doc, at, format!("URL with an inline password in `{key}` of System {:?}", sys.name))
                        .help("remove the password from the URL and set spec.credentials (env, file or secretKey)"),
                ),
                _ => {}
            }
        }
    }
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
                if e.trim().is_empty() {
                    let mut p = at.clone();
                    p.push(super::diagnostic::Seg::Index(i));
                    pending.push(
                        Pending::error(file, doc, p, "empty entitlement")
                            .help("remove it or name the entitlement"),
                    );
                }
            }
        }
    }
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
        if let Some(d) = &client.spec.max_grant_duration
            && let Err(e) = GrantDuration::parse(d)
        {
            pending.push(Pending::error(
                file,
                doc,
                path("spec.maxGrantDuration"),
                e.to_string(),
            ));
        }
    }
}

fn names<S>(map: &BTreeMap<String, Item<S>>) -> String {
    if map.is_empty() {
        return "(none defined)".into();
    }
    map.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_client(
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

/// Parses an RFC 3339 timestamp with offset.
fn timestamp(s: &str) -> Result<Timestamp, String> {
    s.trim()
        .parse::<Timestamp>()
        .map_err(|_| format!("unparseable timestamp {s:?}"))
}

const TIMESTAMP_HELP: &str = "write RFC 3339 with an offset, e.g. 2026-12-15T18:00:00Z";

fn check_members(
    cat: &Catalog,
    ctx: &Context<'_>,
    pending: &mut Vec<Pending>,
) -> Vec<ResolvedGrant> {
    let mut grants = Vec::new();
    let grace = cat
        .policy
        .expired_grace
        .as_deref()
        .and_then(|g| GrantDuration::parse(g).ok())
        .unwrap_or_else(|| GrantDuration::parse("7d").expect("constant"));
    for (identity, member) in &cat.members {
        let (file, doc) = (&*member.at.file, member.at.doc);
        let spec = &member.spec;
        if !valid_email(&spec.email) {
            pending.push(
                Pending::error(
                    file,
                    doc,
                    path("spec.email"),
                    format!("invalid email {:?}", spec.email),
                )
                .help("the email is the identity across systems: write name@domain"),
            );
        }
        let client_known = cat.clients.contains_key(&spec.client);
        if !client_known {
            pending.push(unknown_client(
                file,
                doc,
                path("spec.client"),
                &spec.client,
                cat,
            ));
        }
        if let Some(folder) = client_folder(file)
            && folder != spec.client
        {
            pending.push(
                Pending::error(
                    file,
                    doc,
                    path("spec.client"),
                    format!(
                        "Member {:?} has client {:?} but lives in clients/{folder}/",
                        member.name, spec.client
                    ),
                )
                .help(format!(
                    "move the file to clients/{}/ or set client: {folder}",
                    spec.client
                )),
            );
        }
        let is_agency = cat.agency() == Some(spec.client.as_str());
        for (i, grant) in spec.grants.iter().enumerate() {
            let g = |field: &str| path(&format!("spec.grants.{i}.{field}"));
            let client = grant.client.clone().unwrap_or_else(|| spec.client.clone());
            let role = cat.roles.get(&grant.role);
            if role.is_none() {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        g("role"),
                        format!("unknown role {:?}", grant.role),
                    )
                    .help(format!("use one of {}", names(&cat.roles))),
                );
            }
            if grant.client.is_some() && !cat.clients.contains_key(&client) {
                pending.push(unknown_client(file, doc, g("client"), &client, cat));
            }
            if client != spec.client && !is_agency {
                let agency = cat.agency().map(|a| format!(" ({a})")).unwrap_or_default();
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        g("client"),
                        format!("Member {:?} of client {:?} cannot hold a grant for client {client:?}", member.name, spec.client),
                    )
                    .help(format!("only members of the agency client{agency} may hold grants for other clients; remove the grant's client")),
                );
            }
            let client_spec = cat.clients.get(&client).map(|c| &c.spec);
            if client == spec.client
                && let (Some(c), Some(_)) = (client_spec, role)
                && !c.allowed_roles.contains(&grant.role)
            {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        g("role"),
                        format!(
                            "role {:?} is not in the allowedRoles of client {client:?}",
                            grant.role
                        ),
                    )
                    .help(format!(
                        "use one of {}, or ask the agency to allow it in the Client",
                        c.allowed_roles.join(", ")
                    )),
                );
            }
            // Time window.
            let mut bad_time = false;
            let starts = grant
                .starts
                .as_deref()
                .map(timestamp)
                .transpose()
                .unwrap_or_else(|e| {
                    pending.push(Pending::error(file, doc, g("starts"), e).help(TIMESTAMP_HELP));
                    bad_time = true;
                    None
                });
            let mut expires = grant
                .expires
                .as_deref()
                .map(timestamp)
                .transpose()
                .unwrap_or_else(|e| {
                    pending.push(Pending::error(file, doc, g("expires"), e).help(TIMESTAMP_HELP));
                    bad_time = true;
                    None
                });
            let mut length = None;
            if let Some(d) = &grant.valid_for {
                if grant.expires.is_some() {
                    pending.push(
                        Pending::error(
                            file,
                            doc,
                            g("for"),
                            "a grant cannot have both `expires` and `for`",
                        )
                        .at_key()
                        .help("keep one of them"),
                    );
                    bad_time = true;
                }
                match GrantDuration::parse(d) {
                    Ok(d) => {
                        let merged = (ctx.merged_at)(identity, grant).unwrap_or(ctx.revision_time);
                        let from = starts.map_or(merged, |s| s.max(merged));
                        expires = from.checked_add(d.as_signed()).ok();
                        length = Some(d);
                    }
                    Err(e) => {
                        pending.push(Pending::error(file, doc, g("for"), e.to_string()));
                        bad_time = true;
                    }
                }
            }
            if let (Some(s), Some(e)) = (starts, expires)
                && s >= e
                && grant.valid_for.is_none()
            {
                pending.push(
                    Pending::error(
                        file,
                        doc,
                        g("starts"),
                        "the grant starts at or after it expires",
                    )
                    .help("make `starts` earlier than `expires`"),
                );
                bad_time = true;
            }
            if let (Some(e), None) = (expires, length) {
                let from = starts.unwrap_or(ctx.revision_time);
                if e > from {
                    length = Some(GrantDuration::from_signed(e.duration_since(from)));
                }
            }
            // Guardrails that depend on the systems the grant reaches.
            if let Some(role) = role {
                let envs: Vec<Environment> = cat
                    .reach(&role.spec, &client)
                    .map(|(s, _)| s.spec.environment)
                    .collect();
                if let Some(c) = client_spec {
                    let needs = envs.iter().find(|e| c.require_expiry.contains(e));
                    if let Some(env) = needs
                        && grant.expires.is_none()
                        && grant.valid_for.is_none()
                    {
                        pending.push(
                            Pending::error(file, doc, g("role"), format!("grant of {:?} reaches {env} systems of client {client:?} but has no expiry", grant.role))
                                .help("add `expires: <RFC 3339>` or `for: 14d` to the grant"),
                        );
                    }
                }
                if !is_agency
                    && let Some(env) = envs
                        .iter()
                        .find(|e| cat.policy.forbidden_for_clients.contains(e))
                {
                    pending.push(
                        Pending::error(file, doc, g("role"), format!("role {:?} reaches {env} systems, which the Policy forbids for client members", grant.role))
                            .help("client members may not reach these environments; pick a role without them"),
                    );
                }
                if let Some(len) = length {
                    let mut limits: Vec<(GrantDuration, String)> = Vec::new();
                    if let Some(max) = client_spec
                        .and_then(|c| c.max_grant_duration.as_deref())
                        .and_then(|d| GrantDuration::parse(d).ok())
                    {
                        limits.push((max, format!("client {client:?}'s maxGrantDuration")));
                    }
                    for env in &envs {
                        if let Some(max) = cat
                            .policy
                            .max_grant_duration
                            .get(env)
                            .and_then(|d| GrantDuration::parse(d).ok())
                        {
                            limits.push((max, format!("the Policy's maxGrantDuration for {env}")));
                        }
                    }
                    if let Some((max, what)) = limits
                        .into_iter()
                        .filter(|(max, _)| len > *max)
                        .min_by_key(|(m, _)| *m)
                    {
                        let field = if grant.valid_for.is_some() {
                            "for"
                        } else {
                            "expires"
                        };
                        pending.push(
                            Pending::error(
                                file,
                                doc,
                                g(field),
                                format!(
                                    "grant of {:?} lasts {len}, longer than {what} ({max})",
                                    grant.role
                                ),
                            )
                            .help(format!("shorten it to at most {max}")),
                        );
                    }
                }
            }
            if let Some(e) = expires
                && let Ok(limit) = ctx.now.checked_sub(grace.as_signed())
                && e < limit
            {
                pending.push(
                    Pending::warning(
                        file,
                        doc,
                        g("expires"),
                        format!(
                            "grant of {:?} expired at {e}, more than {grace} ago",
                            grant.role
                        ),
                    )
                    .help("remove the expired grant from git to keep the repository tidy"),
                );
            }
            if role.is_some() && cat.clients.contains_key(&client) && !bad_time {
                grants.push(ResolvedGrant {
                    identity: identity.clone(),
                    role: grant.role.clone(),
                    client,
                    starts,
                    expires,
                    reason: grant.reason.clone(),
                    offboarded: spec.offboarded,
                    at: member.at.clone(),
                    index: i,
                });
            }
        }
    }
    grants
}

fn valid_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// `clients/<name>/...` → `<name>`.
pub fn client_folder(file: &str) -> Option<&str> {
    let rest = file.strip_prefix("clients/")?;
    let (name, tail) = rest.split_once('/')?;
    (!tail.is_empty()).then_some(name)
}
