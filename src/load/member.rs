//! One Member checked against the rest of the revision, with its grants resolved.
//!
//! The check of a member depends on its document, on the revision's Policy, Systems,
//! Roles and Clients, and on time. It records how it depended on time ([`TimeDeps`]), so
//! a load can reuse the result for an unchanged document while those inputs hold: this is
//! what makes a re-plan after a one-file change cost the changed file, not the repository.

use std::sync::Arc;

use jiff::Timestamp;

use super::catalog::{Catalog, names, unknown_client, valid_name};
use super::diagnostic::{Pending, path};
use super::parse::DocLoc;
use crate::model::{
    Environment, GrantDuration, LATEST, MemberSpec, OverdueReview, ParseInstantError, parse_instant,
};

/// A member with every usable grant resolved.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    /// The lowercase email (the catalogue's key), shared with the grants and with
    /// desired state's accounts.
    pub identity: Arc<str>,
    /// The document's spec, shared with the parse cache.
    pub spec: Arc<MemberSpec>,
    pub at: DocLoc,
    /// The grants that resolved (known role and client, a valid time window), in the
    /// order of `spec.grants`.
    pub grants: Vec<ResolvedGrant>,
    /// The clients of those grants, sorted and without repeats; none when offboarded.
    /// The catalogue's shared names, exactly as many as there are.
    pub live_clients: Box<[Arc<str>]>,
}

/// A grant with its client and time window resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedGrant {
    /// The member's lowercase email, shared by the member's grants.
    pub identity: Arc<str>,
    /// Shared with the plan's sources ([`crate::plan::desired`]), which are made for
    /// every entitlement a grant yields: a clone is a count, not a copy.
    pub role: Arc<str>,
    pub client: Arc<str>,
    pub starts: Option<Timestamp>,
    /// When the grant ends: its `expires` or `for:`, or under Policy `overdueReview:
    /// revoke` its review's due instant when that comes first.
    pub expires: Option<Timestamp>,
    pub reason: Option<Arc<str>>,
    /// When the grant's next review falls due (its client has a `reviewEvery`).
    pub review_due: Option<Timestamp>,
    /// `expires` is the review's due instant (Policy `overdueReview: revoke`): ending
    /// there is `review-overdue`, not `expired`.
    pub ends_at_review: bool,
    /// The member is marked `offboarded: true`.
    pub offboarded: bool,
    /// The grant's index in the member's `grants` (its document is the member's `at`).
    /// Six hundred thousand of these are live in a large plan: 144 bytes each.
    pub index: u32,
}

impl ResolvedGrant {
    /// In force at `now`: started (or no start) and not yet expired.
    pub fn active_at(&self, now: Timestamp) -> bool {
        !self.offboarded
            && self.starts.is_none_or(|s| s <= now)
            && self.expires.is_none_or(|e| now < e)
    }
}

/// Inputs that are not in the documents: time is a parameter, never read inside.
pub struct Context<'a> {
    /// The revision's committer time: "merged at" for guardrails.
    pub revision_time: Timestamp,
    /// The clock, for warnings about long-expired grants.
    pub now: Timestamp,
    /// When a grant was merged (for `for:`); `None` falls back to `revision_time`.
    pub merged_at: &'a dyn Fn(&str, &crate::model::Grant) -> Option<Timestamp>,
}

/// How a member's check depended on time: the same document checked against the same
/// Policy, Systems, Roles and Clients gives the same result under another [`Context`]
/// when [`TimeDeps::holds`] says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeDeps {
    /// The result holds for `now` strictly after this instant...
    after: Option<Timestamp>,
    /// ...and up to and including this one (the grace-period warning flips there).
    until: Option<Timestamp>,
    /// The revision time the check used, if it used one.
    revision_time: Option<Timestamp>,
    /// A `for:` grant counts from its merge commit, which history decides: never reused.
    volatile: bool,
}

impl TimeDeps {
    /// True when a check under `ctx` would give the same result.
    pub fn holds(&self, ctx: &Context<'_>) -> bool {
        !self.volatile
            && self.after.is_none_or(|a| ctx.now > a)
            && self.until.is_none_or(|u| ctx.now <= u)
            && self.revision_time.is_none_or(|t| t == ctx.revision_time)
    }

    /// Records a "`now` is past `threshold`" decision.
    fn compared_now(&mut self, threshold: Timestamp, now: Timestamp) {
        if now > threshold {
            self.after = Some(self.after.map_or(threshold, |a| a.max(threshold)));
        } else {
            self.until = Some(self.until.map_or(threshold, |u| u.min(threshold)));
        }
    }
}

/// What checking one member found.
pub struct Checked {
    pub member: Member,
    pub pending: Vec<Pending>,
    pub deps: TimeDeps,
}

/// Parses an RFC 3339 timestamp with offset, before [`LATEST`]; the error is the
/// message and its help.
fn timestamp(s: &str) -> Result<Timestamp, (String, &'static str)> {
    parse_instant(s).map_err(|e| {
        let help = match e {
            ParseInstantError::Syntax(_) => {
                "write RFC 3339 with an offset, e.g. 2026-12-15T18:00:00Z"
            }
            ParseInstantError::TooLate { .. } => {
                "write an earlier instant, or leave the field out for a grant without one"
            }
        };
        (e.to_string(), help)
    })
}

/// How long an expired grant may stay in git before `validate` warns (Policy
/// `expiredGrace`, default 7 days).
pub fn expired_grace(cat: &Catalog) -> GrantDuration {
    cat.policy
        .expired_grace
        .as_deref()
        .and_then(|g| GrantDuration::parse(g).ok())
        .unwrap_or_else(|| GrantDuration::parse("7d").expect("constant"))
}

/// Checks one member (keyed by `identity`) against the catalogue's Policy, Systems, Roles
/// and Clients. Every finding is collected; nothing stops at the first.
pub fn check_member(
    cat: &Catalog,
    grace: GrantDuration,
    identity: &str,
    doc: (&str, &Arc<MemberSpec>, &DocLoc),
    ctx: &Context<'_>,
) -> Checked {
    let (name, spec, at) = doc;
    let mut pending = Vec::new();
    let mut deps = TimeDeps::default();
    let mut grants = Vec::with_capacity(spec.grants.len());
    let shared_identity: Arc<str> = Arc::from(identity);
    let (file, doc) = (&*at.file, at.doc);
    if !valid_name(name) {
        pending.push(invalid_name(name, at));
    }
    if let Some(c) = control_char(&spec.email) {
        pending.push(control_error(file, doc, "spec.email", "email", c));
    } else if !valid_email(&spec.email) {
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
    if identity.len() > MAX_EMAIL_BYTES {
        pending.push(
            Pending::error(
                file,
                doc,
                path("spec.email"),
                format!(
                    "email is {} bytes long, more than the {MAX_EMAIL_BYTES} an address may have",
                    identity.len()
                ),
            )
            .help("write the person's real address"),
        );
    } else if identity.len() > POSTGRES_MAX_NAME
        && let Some(sys) = reached_postgres(cat, spec)
    {
        // The postgres connector's login role is named after the email.
        pending.push(
            Pending::error(
                file,
                doc,
                path("spec.email"),
                format!(
                    "email is {} bytes long: the login role on postgres System {sys:?} would \
                     exceed PostgreSQL's {POSTGRES_MAX_NAME}-byte role names",
                    identity.len()
                ),
            )
            .help("use a shorter address for this person, or grant them no role on that system"),
        );
    }
    if let Some(c) = spec.display_name.as_deref().and_then(control_char) {
        pending.push(control_error(
            file,
            doc,
            "spec.displayName",
            "displayName",
            c,
        ));
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
                    name, spec.client
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
        let client: &str = grant.client.as_deref().unwrap_or(&spec.client);
        let role = cat.roles.get(&*grant.role);
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
        if grant.client.is_some() && !cat.clients.contains_key(client) {
            pending.push(unknown_client(file, doc, g("client"), client, cat));
        }
        if client != spec.client && !is_agency {
            let agency = cat.agency().map(|a| format!(" ({a})")).unwrap_or_default();
            pending.push(
                Pending::error(
                    file,
                    doc,
                    g("client"),
                    format!("Member {:?} of client {:?} cannot hold a grant for client {client:?}", name, spec.client),
                )
                .help(format!("only members of the agency client{agency} may hold grants for other clients; remove the grant's client")),
            );
        }
        let client_spec = cat.clients.get(client).map(|c| &c.spec);
        if client == spec.client
            && let (Some(c), Some(_)) = (client_spec, role)
            && !c.allowed_roles.iter().any(|r| **r == *grant.role)
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
                pending.push(Pending::error(file, doc, g("starts"), e.0).help(e.1));
                bad_time = true;
                None
            });
        let mut expires = grant
            .expires
            .as_deref()
            .map(timestamp)
            .transpose()
            .unwrap_or_else(|e| {
                pending.push(Pending::error(file, doc, g("expires"), e.0).help(e.1));
                bad_time = true;
                None
            });
        let mut length = None;
        if let Some(d) = &grant.valid_for {
            deps.volatile = true;
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
                    // An end past the bound (or past jiff's range) is an error: taken as
                    // "no end", an overflow would grant for ever (issue 15).
                    match from.checked_add(d.as_signed()) {
                        Ok(end) if end < LATEST => {
                            expires = Some(end);
                            length = Some(d);
                        }
                        _ => {
                            pending.push(
                                Pending::error(
                                    file,
                                    doc,
                                    g("for"),
                                    format!(
                                        "a grant for {d} from {from} would end after {LATEST}, the latest instant latchkey accepts"
                                    ),
                                )
                                .help("write a shorter duration"),
                            );
                            bad_time = true;
                        }
                    }
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
        // Guardrails that depend on the systems the grant reaches.
        if let Some(role) = role {
            let envs: Vec<Environment> = cat
                .reach(&role.spec, client)
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
            // An `expires` grant lasts from its start, or from the revision that carries
            // it: only then does the check depend on the revision's time.
            if !limits.is_empty()
                && length.is_none()
                && let Some(e) = expires
            {
                let from = starts.unwrap_or_else(|| {
                    deps.revision_time = Some(ctx.revision_time);
                    ctx.revision_time
                });
                if e > from {
                    length = Some(GrantDuration::from_signed(e.duration_since(from)));
                }
            }
            if let Some(len) = length
                && let Some((max, what)) = limits
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
        if let Some(e) = expires {
            // Warn once the grant has been expired for longer than the grace period.
            // Beyond the end of time (no limit): never warned about, whatever `now` is.
            if let Ok(limit) = e.checked_add(grace.as_signed()) {
                deps.compared_now(limit, ctx.now);
                if ctx.now > limit {
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
            }
        }
        // A grant that ends before its review falls due, or an offboarded person's,
        // needs no review.
        let due = review_due(cat, identity, grant, client, ctx, &mut deps)
            .unwrap_or_else(|p| {
                pending.push(p.into_pending(file, doc, i));
                bad_time = true;
                None
            })
            .filter(|d| !spec.offboarded && expires.is_none_or(|e| d.at < e));
        if let Some(due) = due {
            deps.compared_now(due.at, ctx.now);
            if ctx.now > due.at {
                pending.push(due.overdue(cat, file, doc, i, grant));
            }
        }
        let ends_at_review = cat.policy.overdue_review == OverdueReview::Revoke && due.is_some();
        if ends_at_review {
            expires = due.map(|d| d.at);
        }
        if role.is_some() && cat.clients.contains_key(client) && !bad_time {
            grants.push(ResolvedGrant {
                identity: shared_identity.clone(),
                role: cat.name(&grant.role),
                client: cat.name(client),
                starts,
                expires,
                reason: grant.reason.as_deref().map(Arc::from),
                review_due: due.map(|d| d.at),
                ends_at_review,
                offboarded: spec.offboarded,
                index: u32::try_from(i).expect("a member has fewer than 2^32 grants"),
            });
        }
    }
    let mut live_clients: Vec<Arc<str>> = grants
        .iter()
        .filter(|g| !g.offboarded)
        .map(|g| g.client.clone())
        .collect();
    live_clients.sort_unstable();
    live_clients.dedup();
    let live_clients = live_clients.into_boxed_slice();
    Checked {
        member: Member {
            name: name.to_string(),
            identity: shared_identity,
            spec: Arc::clone(spec),
            at: at.clone(),
            grants,
            live_clients,
        },
        pending,
        deps,
    }
}

/// How often grants for `client` are reviewed: its `reviewEvery`, else the Policy's
/// (an unparseable one is an error of the Client or Policy, and no review here).
pub fn review_every(cat: &Catalog, client: &str) -> Option<GrantDuration> {
    cat.clients
        .get(client)
        .and_then(|c| c.spec.review_every.as_deref())
        .or(cat.policy.review_every.as_deref())
        .and_then(|d| GrantDuration::parse(d).ok())
}

/// A grant's next review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReviewDue {
    /// The due instant: the last review (or the merge) plus `every`.
    pub at: Timestamp,
    pub every: GrantDuration,
}

impl ReviewDue {
    /// The warning for a review overdue at the check's `now`.
    fn overdue(
        &self,
        cat: &Catalog,
        file: &str,
        doc: usize,
        i: usize,
        grant: &crate::model::Grant,
    ) -> Pending {
        let field = if grant.reviewed.is_some() {
            "reviewed"
        } else {
            "role"
        };
        let then = match cat.policy.overdue_review {
            OverdueReview::Warn => "",
            OverdueReview::Revoke => ": the grant ended then (Policy overdueReview: revoke)",
        };
        Pending::warning(
            file,
            doc,
            path(&format!("spec.grants.{i}.{field}")),
            format!(
                "the review of grant {:?} was due at {} (reviewEvery {}){then}",
                grant.role, self.at, self.every
            ),
        )
        .help("review the grant and set reviewed: {at, by}")
    }
}

/// Why a grant's `reviewed` was refused: the field and the message with its help.
#[derive(Debug)]
struct BadReview {
    field: &'static str,
    message: String,
    help: &'static str,
}

impl BadReview {
    fn into_pending(self, file: &str, doc: usize, i: usize) -> Pending {
        Pending::error(
            file,
            doc,
            path(&format!("spec.grants.{i}.reviewed.{}", self.field)),
            self.message,
        )
        .help(self.help)
    }
}

/// When the grant's next review falls due, if its client reviews grants: `reviewEvery`
/// after `reviewed.at`, or after the grant was merged (the revision's time when history
/// does not say) when it was never reviewed. A `reviewed` that is malformed, names no
/// email or lies after the revision is an error: a review cannot be recorded ahead.
fn review_due(
    cat: &Catalog,
    identity: &str,
    grant: &crate::model::Grant,
    client: &str,
    ctx: &Context<'_>,
    deps: &mut TimeDeps,
) -> Result<Option<ReviewDue>, BadReview> {
    let last = match &grant.reviewed {
        Some(r) => {
            if !valid_email(&r.by) || control_char(&r.by).is_some() {
                return Err(BadReview {
                    field: "by",
                    message: format!("invalid reviewer email {:?}", r.by),
                    help: "name who reviewed the grant by email: name@domain",
                });
            }
            let at = timestamp(&r.at).map_err(|(message, help)| BadReview {
                field: "at",
                message,
                help,
            })?;
            deps.revision_time = Some(ctx.revision_time);
            if at > ctx.revision_time {
                return Err(BadReview {
                    field: "at",
                    message: format!(
                        "reviewed at {at}, after this revision ({})",
                        ctx.revision_time
                    ),
                    help: "write when the review happened, not later than the commit that records it",
                });
            }
            Some(at)
        }
        None => None,
    };
    let Some(every) = review_every(cat, client) else {
        return Ok(None);
    };
    let from = last.unwrap_or_else(|| {
        // History decides when the grant was merged: never reused (like `for:`).
        deps.volatile = true;
        deps.revision_time = Some(ctx.revision_time);
        (ctx.merged_at)(identity, grant).unwrap_or(ctx.revision_time)
    });
    // A due instant past the bound is no due instant: there is nothing to review then.
    Ok(from
        .checked_add(every.as_signed())
        .ok()
        .filter(|at| *at < LATEST)
        .map(|at| ReviewDue { at, every }))
}

/// The finding for a name that is not DNS-label-like.
pub fn invalid_name(name: &str, at: &DocLoc) -> Pending {
    Pending::error(
        &at.file,
        at.doc,
        path("metadata.name"),
        format!("invalid name {name:?}"),
    )
    .help("use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit")
}

/// RFC 5321's limit on a forward path, the longest address any system accepts.
const MAX_EMAIL_BYTES: usize = 254;

/// PostgreSQL's NAMEDATALEN - 1: longer role names are truncated, two people could
/// share one login.
pub(super) const POSTGRES_MAX_NAME: usize = 63;

/// The first postgres System a grant of `spec` reaches, if any.
fn reached_postgres<'a>(cat: &'a Catalog, spec: &MemberSpec) -> Option<&'a str> {
    spec.grants
        .iter()
        .filter_map(|g| cat.roles.get(&*g.role))
        .flat_map(|r| r.spec.entitlements.keys())
        .find(|sys| {
            cat.systems
                .get(*sys)
                .is_some_and(|s| s.spec.connector == "postgres")
        })
        .map(String::as_str)
}

/// The first control character (NUL, newline, escape, …) in `s`: never part of a
/// name, and raw on a terminal it can rewrite what is shown.
pub(super) fn control_char(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

/// A finding for control character `c` in the value at `at`.
pub(super) fn control_error(file: &str, doc: usize, at: &str, what: &str, c: char) -> Pending {
    Pending::error(
        file,
        doc,
        path(at),
        format!("{what} contains the control character U+{:04X}", c as u32),
    )
    .help("remove it: names and entitlements are plain text on one line")
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

#[cfg(test)]
mod tests {
    use crate::load::{Context, Loaded, ParseCache, load_files};
    use crate::source::{Revision, SourceFile};

    use crate::load::TEST_REPO as REPO;

    /// Loads REPO with erin's one grant `grant` (a flow mapping), merged at 2026-11-20.
    fn load_grant(grant: &str) -> Loaded {
        let t: jiff::Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
        let rev = Revision {
            oid: git2::Oid::ZERO_SHA1,
            branch: None,
            time: t,
            author: String::new(),
            summary: String::new(),
        };
        let file = SourceFile {
            path: "latchkey.yaml".into(),
            blob: git2::Oid::ZERO_SHA1,
            text: format!("{REPO}    - {grant}\n"),
        };
        let none = |_: &str, _: &crate::model::Grant| None;
        let ctx = Context {
            revision_time: t,
            now: t,
            merged_at: &none,
        };
        load_files(rev, &[file], &ctx, &mut ParseCache::default())
    }

    fn findings(l: &Loaded) -> Vec<String> {
        l.diagnostics.iter().map(|d| d.to_string()).collect()
    }

    fn erins_grants(l: &Loaded) -> usize {
        l.catalog.members.values().map(|m| m.grants.len()).sum()
    }

    /// Issue 15: `for: 3000000d` overflowed jiff's range and became a grant without
    /// expiry. It is an error at the duration, and the grant is not resolved.
    #[test]
    fn a_for_that_ends_past_the_bound_is_an_error_never_no_expiry() {
        for d in ["3000000d", "400000w", "2562047788015215s"] {
            let l = load_grant(&format!("{{role: viewer, for: {d}}}"));
            assert_eq!(
                findings(&l),
                [format!(
                    "latchkey.yaml:23:27: error: a grant for {} from 2026-11-20T12:00:00Z would end after 9000-01-01T00:00:00Z, the latest instant latchkey accepts\n  help: write a shorter duration",
                    crate::model::GrantDuration::parse(d).unwrap()
                )],
                "{d}"
            );
            assert_eq!(erins_grants(&l), 0, "{d}: no grant without its expiry");
        }
        // Long but representable: a grant with an end.
        let l = load_grant("{role: viewer, for: 2000000d}");
        assert!(l.is_valid(), "{:?}", findings(&l));
        let m = l.catalog.members.values().next().unwrap();
        assert_eq!(
            m.grants[0].expires.map(|e| e.to_string()).as_deref(),
            Some("7502-09-14T12:00:00Z")
        );
    }

    #[test]
    fn a_for_counted_from_a_late_start_is_bounded_too() {
        let l = load_grant("{role: viewer, starts: 8999-12-31T00:00:00Z, for: 2d}");
        assert_eq!(
            findings(&l),
            [
                "latchkey.yaml:23:57: error: a grant for 2d from 8999-12-31T00:00:00Z would end after 9000-01-01T00:00:00Z, the latest instant latchkey accepts\n  help: write a shorter duration"
            ]
        );
        assert_eq!(erins_grants(&l), 0);
    }

    /// Issue 15: the last second of RFC 3339 was called unparseable.
    #[test]
    fn an_instant_past_the_bound_is_refused_for_what_it_is() {
        for field in ["expires", "starts"] {
            let l = load_grant(&format!("{{role: viewer, {field}: 9999-12-31T23:59:59Z}}"));
            let col = 24 + field.len();
            assert_eq!(
                findings(&l),
                [format!(
                    "latchkey.yaml:23:{col}: error: timestamp \"9999-12-31T23:59:59Z\" is not before 9000-01-01T00:00:00Z, the latest instant latchkey accepts\n  help: write an earlier instant, or leave the field out for a grant without one"
                )],
                "{field}"
            );
            assert_eq!(erins_grants(&l), 0, "{field}");
        }
    }

    /// REPO with acme reviewing every 30 days, `policy` as the Policy's spec (a flow
    /// mapping), erin's grant `grant`, merged at `merged` (history), loaded at `now` with
    /// the revision at 2026-11-20T12:00:00Z.
    fn load_reviewed(
        policy: &str,
        grant: &str,
        merged: Option<&str>,
        now: &str,
        cache: &mut ParseCache,
    ) -> Loaded {
        let t: jiff::Timestamp = "2026-11-20T12:00:00Z".parse().unwrap();
        let rev = Revision {
            oid: git2::Oid::ZERO_SHA1,
            branch: None,
            time: t,
            author: String::new(),
            summary: String::new(),
        };
        let repo = REPO.replace(
            "spec: {allowedRoles: [viewer]}",
            "spec: {allowedRoles: [viewer], reviewEvery: 30d}",
        );
        let file = SourceFile {
            path: "latchkey.yaml".into(),
            blob: git2::Oid::ZERO_SHA1,
            text: format!(
                "apiVersion: latchkey.dev/v1alpha1\nkind: Policy\nmetadata: {{name: p}}\nspec: {policy}\n---\n{repo}    - {grant}\n"
            ),
        };
        let merged = merged.map(|m| m.parse::<jiff::Timestamp>().unwrap());
        let merged_at = |_: &str, _: &crate::model::Grant| merged;
        let ctx = Context {
            revision_time: t,
            now: now.parse().unwrap(),
            merged_at: &merged_at,
        };
        load_files(rev, &[file], &ctx, cache)
    }

    fn erins_grant(l: &Loaded) -> crate::load::ResolvedGrant {
        l.catalog.members.values().next().unwrap().grants[0].clone()
    }

    const REVIEWED: &str =
        "{role: viewer, reviewed: {at: 2026-11-01T00:00:00Z, by: dana@acme.example}}";

    #[test]
    fn a_review_falls_due_review_every_after_the_last_one() {
        let l = load_reviewed(
            "{}",
            REVIEWED,
            None,
            "2026-11-20T12:00:00Z",
            &mut ParseCache::default(),
        );
        assert!(findings(&l).is_empty(), "{:?}", findings(&l));
        let g = erins_grant(&l);
        assert_eq!(g.review_due.unwrap().to_string(), "2026-12-01T00:00:00Z");
        assert_eq!(
            (g.expires, g.ends_at_review),
            (None, false),
            "warn: no expiry"
        );
    }

    #[test]
    fn a_grant_never_reviewed_falls_due_after_its_merge() {
        let l = load_reviewed(
            "{}",
            "{role: viewer}",
            Some("2026-10-01T00:00:00Z"),
            "2026-11-20T12:00:00Z",
            &mut ParseCache::default(),
        );
        assert_eq!(
            findings(&l),
            [
                "latchkey.yaml:28:14: warning: the review of grant \"viewer\" was due at 2026-10-31T00:00:00Z (reviewEvery 30d)\n  help: review the grant and set reviewed: {at, by}"
            ]
        );
        // Without history, the revision's time stands in for the merge.
        let l = load_reviewed(
            "{}",
            "{role: viewer}",
            None,
            "2026-11-20T12:00:00Z",
            &mut ParseCache::default(),
        );
        assert_eq!(
            erins_grant(&l).review_due.unwrap().to_string(),
            "2026-12-20T12:00:00Z"
        );
    }

    /// The check of an unchanged document is reused from the cache only while `now` stays
    /// on the same side of the due instant.
    #[test]
    fn an_overdue_review_is_a_warning_once_now_passes_the_due_instant() {
        let mut cache = ParseCache::default();
        let before = load_reviewed("{}", REVIEWED, None, "2026-11-30T23:59:59Z", &mut cache);
        assert!(findings(&before).is_empty(), "{:?}", findings(&before));
        let after = load_reviewed("{}", REVIEWED, None, "2026-12-01T00:00:01Z", &mut cache);
        assert_eq!(
            findings(&after),
            [
                "latchkey.yaml:28:32: warning: the review of grant \"viewer\" was due at 2026-12-01T00:00:00Z (reviewEvery 30d)\n  help: review the grant and set reviewed: {at, by}"
            ]
        );
        let again = load_reviewed("{}", REVIEWED, None, "2026-11-25T00:00:00Z", &mut cache);
        assert!(findings(&again).is_empty(), "{:?}", findings(&again));
    }

    #[test]
    fn under_overdue_review_revoke_the_due_instant_is_the_expiry() {
        let revoke = "{overdueReview: revoke}";
        let l = load_reviewed(
            revoke,
            REVIEWED,
            None,
            "2026-11-20T12:00:00Z",
            &mut ParseCache::default(),
        );
        let g = erins_grant(&l);
        assert_eq!(g.expires.unwrap().to_string(), "2026-12-01T00:00:00Z");
        assert!(g.ends_at_review);
        assert!(g.active_at("2026-11-30T23:59:59Z".parse().unwrap()));
        assert!(!g.active_at("2026-12-01T00:00:00Z".parse().unwrap()));
        let l = load_reviewed(
            revoke,
            REVIEWED,
            None,
            "2026-12-02T00:00:00Z",
            &mut ParseCache::default(),
        );
        assert_eq!(
            findings(&l),
            [
                "latchkey.yaml:28:32: warning: the review of grant \"viewer\" was due at 2026-12-01T00:00:00Z (reviewEvery 30d): the grant ended then (Policy overdueReview: revoke)\n  help: review the grant and set reviewed: {at, by}"
            ]
        );
        // An expiry before the review keeps its own reason, and needs no review.
        let l = load_reviewed(
            revoke,
            "{role: viewer, expires: 2026-11-25T00:00:00Z, reviewed: {at: 2026-11-01T00:00:00Z, by: dana@acme.example}}",
            None,
            "2026-11-20T12:00:00Z",
            &mut ParseCache::default(),
        );
        let g = erins_grant(&l);
        assert_eq!(g.expires.unwrap().to_string(), "2026-11-25T00:00:00Z");
        assert_eq!((g.review_due, g.ends_at_review), (None, false));
    }

    #[test]
    fn a_bad_review_record_is_an_error_at_its_field() {
        for (grant, want) in [
            (
                "{role: viewer, reviewed: {at: yesterday, by: dana@acme.example}}",
                "latchkey.yaml:28:37: error: unparseable timestamp \"yesterday\"\n  help: write RFC 3339 with an offset, e.g. 2026-12-15T18:00:00Z",
            ),
            (
                "{role: viewer, reviewed: {at: 2026-11-21T00:00:00Z, by: dana@acme.example}}",
                "latchkey.yaml:28:37: error: reviewed at 2026-11-21T00:00:00Z, after this revision (2026-11-20T12:00:00Z)\n  help: write when the review happened, not later than the commit that records it",
            ),
            (
                "{role: viewer, reviewed: {at: 2026-11-01T00:00:00Z, by: dana}}",
                "latchkey.yaml:28:63: error: invalid reviewer email \"dana\"\n  help: name who reviewed the grant by email: name@domain",
            ),
        ] {
            let l = load_reviewed(
                "{}",
                grant,
                None,
                "2026-11-20T12:00:00Z",
                &mut ParseCache::default(),
            );
            assert_eq!(findings(&l), [want], "{grant}");
            assert_eq!(
                erins_grants(&l),
                0,
                "{grant}: a grant with a bad review is not resolved"
            );
        }
    }

    #[test]
    fn a_bad_review_every_is_an_error_of_its_document() {
        let l = load_reviewed(
            "{reviewEvery: 3 months}",
            "{role: viewer}",
            None,
            "2026-11-20T12:00:00Z",
            &mut ParseCache::default(),
        );
        assert_eq!(
            findings(&l),
            [
                "latchkey.yaml:4:21: error: invalid duration \"3 months\": unknown unit (write e.g. 14d, 36h, 2w or 1d12h)"
            ]
        );
    }
}
