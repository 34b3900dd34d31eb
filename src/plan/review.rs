//! What a change (base → head) does to *effective* access, without touching any system.
//!
//! Both revisions are evaluated with the code apply uses ([`Desired::at`]) at the same
//! instant, and compared per system × person × entitlement × window: an edit to a Role,
//! a System, a Client or the Policy shows every person it reaches, not only edits to
//! Members. The head is evaluated as if merged at that instant, so a `for: 14d` grant the
//! PR adds runs 14 days from the merge, whenever the PR's commit was made.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use super::desired::{Desired, EntKey, Source, WantedAccount};
use super::render::{COMMENT_LIMIT, PLAN_MARKER, code, instant, md, relative};
use crate::load::{Catalog, ResolvedGrant};
use crate::model::Grant;

/// An entitlement's time window, over every grant that yields it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Set only when access has not started at the review instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// The `for:` duration of the grant that sets `expires` when it counts from the
    /// merge of this change (the grant is new in the head): `expires` is then the
    /// instant for a merge at the review instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_merge: Option<String>,
}

/// How one entitlement changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "change")]
pub enum DeltaKind {
    Gains { window: Window },
    Loses { window: Window },
    Changes { before: Window, after: Window },
}

/// Why an entitlement is gained, lost or changes window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    /// A grant the base does not have.
    Granted,
    /// A grant the base has, through a Role that now reaches more.
    RoleWidened,
    /// The System is new.
    SystemAdded,
    /// The base's grant had expired at the review instant; the head's has not.
    Renewed,
    /// The person, or their grant, is gone from git.
    Removed,
    /// The person is marked `offboarded: true`.
    Offboarded,
    /// The grant stays, but its Role no longer reaches the entitlement (or is gone).
    RoleNarrowed,
    /// The System is gone.
    SystemRemoved,
    /// The head's grant has expired at the review instant, or ends sooner.
    ExpiresEarlier,
    /// The head's grant ends later, or has no end.
    ExpiresLater,
    /// The head's grant starts at another instant.
    StartMoved,
}

impl Cause {
    /// The words a reviewer reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Granted => "granted",
            Cause::RoleWidened => "role widened",
            Cause::SystemAdded => "system added",
            Cause::Renewed => "renewed",
            Cause::Removed => "removed",
            Cause::Offboarded => "offboarded",
            Cause::RoleNarrowed => "role narrowed",
            Cause::SystemRemoved => "system removed",
            Cause::ExpiresEarlier => "expires earlier",
            Cause::ExpiresLater => "expires later",
            Cause::StartMoved => "start moved",
        }
    }
}

/// One person's change for one entitlement on one system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    /// The client the access belongs to (the grant's client).
    pub client: String,
    pub identity: String,
    pub system: String,
    pub entitlement: String,
    #[serde(flatten)]
    pub kind: DeltaKind,
    pub cause: Cause,
    /// The roles behind the entitlement: the head's for gains and changes, the base's
    /// for losses.
    pub roles: Vec<String>,
    /// The `reason` text (the ticket) of those grants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The review of a change.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub base: String,
    pub head: String,
    /// The instant both revisions are evaluated at (the head as if merged then).
    pub now: Timestamp,
    /// The head's validation errors: apply refuses an invalid revision, so none of the
    /// deltas would happen until they are fixed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub head_errors: Vec<String>,
    pub deltas: Vec<Delta>,
}

impl Review {
    /// (gains, losses, changed windows).
    pub fn counts(&self) -> (usize, usize, usize) {
        counts(self.deltas.iter())
    }
}

fn counts<'a>(ds: impl Iterator<Item = &'a Delta>) -> (usize, usize, usize) {
    let (mut g, mut l, mut c) = (0, 0, 0);
    for d in ds {
        match d.kind {
            DeltaKind::Gains { .. } => g += 1,
            DeltaKind::Loses { .. } => l += 1,
            DeltaKind::Changes { .. } => c += 1,
        }
    }
    (g, l, c)
}

/// One side of the change.
pub struct Side<'a> {
    pub revision: &'a str,
    pub catalog: &'a Catalog,
    /// The catalogue evaluated at the review instant.
    pub desired: &'a Desired,
}

/// What the review compares.
pub struct Inputs<'a> {
    pub base: Side<'a>,
    pub head: Side<'a>,
    pub now: Timestamp,
    /// The head's validation errors, as printed.
    pub head_errors: Vec<String>,
    /// The head's `for:` grants that count from the merge (absent from the base), by
    /// identity.
    pub from_merge: &'a [(String, Grant)],
}

/// An entitlement someone holds (or will hold) at the review instant, and why.
struct Access<'a> {
    sources: Vec<&'a Source>,
}

/// Every entitlement active or pending at `desired.now`; only those of the identities
/// `only` when it is given.
fn access<'a>(desired: &'a Desired, only: Option<&Changed<'_>>) -> BTreeMap<EntKey, Access<'a>> {
    let mut out: BTreeMap<EntKey, Access<'_>> = BTreeMap::new();
    let mut add = |system: &String, identity: &str, account: &'a WantedAccount| {
        for (ent, sources) in &account.entitlements {
            out.insert(
                (system.clone(), identity.to_string(), ent.clone()),
                Access {
                    sources: sources.iter().collect(),
                },
            );
        }
    };
    for (system, accounts) in &desired.systems {
        match only {
            None => {
                for (identity, account) in accounts {
                    add(system, identity, account);
                }
            }
            Some(ids) => {
                for id in ids {
                    if let Some((identity, account)) = accounts.get_key_value(*id) {
                        add(system, identity, account);
                    }
                }
            }
        }
    }
    for (key, source) in &desired.pending {
        if only.is_some_and(|ids| !ids.contains(key.1.as_str())) {
            continue;
        }
        out.entry(key.clone())
            .or_insert_with(|| Access {
                sources: Vec::new(),
            })
            .sources
            .push(source);
    }
    out
}

/// Identities whose access may differ between the two sides.
type Changed<'a> = BTreeSet<&'a str>;

/// The identities whose member differs between the two catalogues, or `None` (every
/// identity) when their Policy, Systems, Roles or Clients differ. A member that is the
/// same checked `Arc` on both sides, against the same shared documents and evaluated at
/// the same instant, has the same part of desired state on both: it has no delta.
fn changed_identities<'a>(base: &'a Catalog, head: &'a Catalog) -> Option<Changed<'a>> {
    if base.globals_id != head.globals_id {
        return None;
    }
    let mut out = BTreeSet::new();
    let mut b = base.members.iter().peekable();
    let mut h = head.members.iter().peekable();
    loop {
        match (b.peek(), h.peek()) {
            (None, None) => break,
            (Some((bi, _)), None) => {
                out.insert(bi.as_str());
                b.next();
            }
            (None, Some((hi, _))) => {
                out.insert(hi.as_str());
                h.next();
            }
            (Some((bi, bm)), Some((hi, hm))) => match bi.cmp(hi) {
                std::cmp::Ordering::Less => {
                    out.insert(bi.as_str());
                    b.next();
                }
                std::cmp::Ordering::Greater => {
                    out.insert(hi.as_str());
                    h.next();
                }
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(bm, hm) {
                        out.insert(bi.as_str());
                    }
                    b.next();
                    h.next();
                }
            },
        }
    }
    Some(out)
}

impl Access<'_> {
    /// The window over every grant: open from the earliest start (none once started),
    /// until the latest end (none when one grant has none).
    fn window(&self, now: Timestamp, merge: &dyn Fn(&Source) -> Option<String>) -> Window {
        let starts = self
            .sources
            .iter()
            .map(|s| s.starts.filter(|st| *st > now))
            .min()
            .flatten();
        let last = self
            .sources
            .iter()
            .max_by_key(|s| s.expires.map_or((1, Timestamp::MIN), |e| (0, e)));
        let expires = last.and_then(|s| s.expires);
        Window {
            starts,
            expires,
            from_merge: last.filter(|s| s.expires.is_some()).and_then(|s| merge(s)),
        }
    }

    fn roles(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.sources.iter().map(|s| &*s.role).collect();
        set.into_iter().map(str::to_string).collect()
    }

    fn reasons(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .sources
            .iter()
            .filter_map(|s| s.reason.as_deref())
            .collect();
        set.into_iter().map(str::to_string).collect()
    }

    fn client(&self) -> String {
        self.sources
            .first()
            .map(|s| s.client.to_string())
            .unwrap_or_default()
    }
}

/// (identity, role, client) of every grant of members not offboarded; only those of the
/// identities `only` when it is given.
fn grant_keys<'a>(
    cat: &'a Catalog,
    only: Option<&Changed<'_>>,
) -> BTreeSet<(&'a str, &'a str, &'a str)> {
    let key = |g: &'a ResolvedGrant| (&*g.identity, &*g.role, &*g.client);
    match only {
        None => cat.grants().filter(|g| !g.offboarded).map(key).collect(),
        Some(ids) => ids
            .iter()
            .filter_map(|id| cat.members.get(*id))
            .flat_map(|m| m.grants.iter())
            .filter(|g| !g.offboarded)
            .map(key)
            .collect(),
    }
}

/// For the head's grants of `identity`: the `for:` duration when the grant counts from
/// the merge.
fn from_merge<'a>(i: &'a Inputs<'a>, identity: &'a str) -> impl Fn(&Source) -> Option<String> + 'a {
    let client = i
        .head
        .catalog
        .members
        .get(identity)
        .map(|m| m.spec.client.as_str());
    move |s: &Source| {
        i.from_merge
            .iter()
            .find(|(id, g)| {
                id == identity
                    && *g.role == *s.role
                    && g.client.as_deref().or(client) == Some(&*s.client)
            })
            .and_then(|(_, g)| g.valid_for.as_deref().map(String::from))
    }
}

/// Compares the effective access two revisions give at the same instant.
pub fn review(i: &Inputs<'_>) -> Review {
    let now = i.now;
    // Only the identities whose member changed can gain, lose or change access, unless
    // a shared document changed.
    let changed = changed_identities(i.base.catalog, i.head.catalog);
    let only = changed.as_ref();
    let before = access(i.base.desired, only);
    let after = access(i.head.desired, only);
    let base_grants = grant_keys(i.base.catalog, only);
    let head_grants = grant_keys(i.head.catalog, only);
    let head_members = &i.head.catalog.members;
    let no_merge = |_: &Source| None;
    let mut deltas = Vec::new();
    for (key, a) in &after {
        let (system, identity, _) = key;
        let head_merge = from_merge(i, identity);
        let (kind, cause) = match before.get(key) {
            None => {
                let cause = if !i.base.catalog.systems.contains_key(system) {
                    Cause::SystemAdded
                } else if i.base.desired.expired.contains_key(key) {
                    Cause::Renewed
                } else if a
                    .sources
                    .iter()
                    .any(|s| base_grants.contains(&(identity.as_str(), &*s.role, &*s.client)))
                {
                    Cause::RoleWidened
                } else {
                    Cause::Granted
                };
                (
                    DeltaKind::Gains {
                        window: a.window(now, &head_merge),
                    },
                    cause,
                )
            }
            Some(b) => {
                let old = b.window(now, &no_merge);
                let new = a.window(now, &head_merge);
                let same = old.starts == new.starts && old.expires == new.expires;
                if same {
                    continue;
                }
                let cause = match (old.expires, new.expires) {
                    (Some(o), Some(n)) if n < o => Cause::ExpiresEarlier,
                    (None, Some(_)) => Cause::ExpiresEarlier,
                    (o, n) if o != n => Cause::ExpiresLater,
                    _ => Cause::StartMoved,
                };
                (
                    DeltaKind::Changes {
                        before: old,
                        after: new,
                    },
                    cause,
                )
            }
        };
        deltas.push(Delta {
            client: a.client(),
            identity: identity.clone(),
            system: system.clone(),
            entitlement: key.2.clone(),
            kind,
            cause,
            roles: a.roles(),
            reasons: a.reasons(),
        });
    }
    for (key, b) in &before {
        if after.contains_key(key) {
            continue;
        }
        let (system, identity, _) = key;
        let cause = match head_members.get(identity) {
            None => Cause::Removed,
            Some(m) if m.spec.offboarded => Cause::Offboarded,
            Some(_) if !i.head.catalog.systems.contains_key(system) => Cause::SystemRemoved,
            Some(_) if i.head.desired.expired.contains_key(key) => Cause::ExpiresEarlier,
            Some(_)
                if b.sources
                    .iter()
                    .any(|s| head_grants.contains(&(identity.as_str(), &*s.role, &*s.client))) =>
            {
                Cause::RoleNarrowed
            }
            Some(_) => Cause::Removed,
        };
        deltas.push(Delta {
            client: b.client(),
            identity: identity.clone(),
            system: system.clone(),
            entitlement: key.2.clone(),
            kind: DeltaKind::Loses {
                window: b.window(now, &no_merge),
            },
            cause,
            roles: b.roles(),
            reasons: b.reasons(),
        });
    }
    deltas.sort_by(|a, b| {
        (&a.client, &a.identity, &a.system, &a.entitlement).cmp(&(
            &b.client,
            &b.identity,
            &b.system,
            &b.entitlement,
        ))
    });
    Review {
        base: i.base.revision.to_string(),
        head: i.head.revision.to_string(),
        now,
        head_errors: i.head_errors.clone(),
        deltas,
    }
}

/// "no expiry", "until 2026-12-01T18:00:00Z (in 11d 6h)", "14d from merge (until … if
/// merged now)", with "from …" when access has not started.
fn when(w: &Window, now: Timestamp) -> String {
    let mut s = match (&w.from_merge, w.expires) {
        (Some(d), Some(e)) => format!("{d} from merge (until {} if merged now)", instant(e)),
        (_, Some(e)) => format!("until {} ({})", instant(e), relative(e, now)),
        (_, None) => "no expiry".to_string(),
    };
    if let Some(st) = w.starts {
        s = format!("from {} ({}) {s}", instant(st), relative(st, now));
    }
    s
}

impl Delta {
    /// `gains`, `loses` or `changes`.
    pub fn verb(&self) -> &'static str {
        match self.kind {
            DeltaKind::Gains { .. } => "gains",
            DeltaKind::Loses { .. } => "loses",
            DeltaKind::Changes { .. } => "changes",
        }
    }

    /// The window, relative to `now`: "until 2026-12-20T00:00:00Z (in 18d)".
    pub fn when(&self, now: Timestamp) -> String {
        match &self.kind {
            DeltaKind::Gains { window } => when(window, now),
            DeltaKind::Loses { window } => format!("had: {}", when(window, now)),
            DeltaKind::Changes { before, after } => {
                format!("{} → {}", when(before, now), when(after, now))
            }
        }
    }

    /// "granted via finance: UAT of the checkout", "removed (was via viewer)"; the
    /// reasons are the grants' own.
    pub fn why(&self) -> String {
        let roles = self.roles.join(", ");
        let mut s = match self.kind {
            DeltaKind::Loses { .. } => format!("{} (was via {roles})", self.cause.as_str()),
            _ => format!("{} via {roles}", self.cause.as_str()),
        };
        if !self.reasons.is_empty() {
            let _ = write!(s, ": {}", self.reasons.join("; "));
        }
        s
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "1 gain, 0 losses, 0 changed windows".
pub fn tally((g, l, c): (usize, usize, usize)) -> String {
    format!(
        "{}, {}, {}",
        plural(g, "gain", "gains"),
        plural(l, "loss", "losses"),
        plural(c, "changed window", "changed windows")
    )
}

/// Text for a terminal.
pub fn text(r: &Review) -> String {
    let mut out = format!(
        "Effective access from {} to {} at {} (the head as if merged then)\n",
        r.base,
        r.head,
        instant(r.now)
    );
    if !r.head_errors.is_empty() {
        let _ = writeln!(
            out,
            "INVALID: {} is invalid ({}); apply would refuse it and change nothing:",
            r.head,
            plural(r.head_errors.len(), "error", "errors")
        );
        for e in &r.head_errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    for d in &r.deltas {
        let _ = writeln!(
            out,
            "  {:<8} {:<28} {:<7} {:<10} {:<24} {}  [{}]",
            d.client,
            d.identity,
            d.verb(),
            d.system,
            d.entitlement,
            d.when(r.now),
            d.why()
        );
    }
    let _ = writeln!(out, "{}.", tally(r.counts()));
    out
}

/// A PR comment: the hidden marker, the head's errors, `preamble` (the boundary
/// findings), a summary per client, then each client's deltas in `<details>`. Everything
/// people typed is escaped. Kept under [`COMMENT_LIMIT`]: rows that do not fit are left
/// out, and the comment says how many and that `see_all` (a command) shows them all.
pub fn markdown(r: &Review, preamble: &str, see_all: &str) -> String {
    markdown_within(r, preamble, see_all, COMMENT_LIMIT)
}

fn markdown_within(r: &Review, preamble: &str, see_all: &str, limit: usize) -> String {
    let mut out = format!("{PLAN_MARKER}\n### latchkey: access changes in this PR\n\n");
    if !r.head_errors.is_empty() {
        let _ = writeln!(
            out,
            "> ❌ **The head revision is invalid ({}): apply would refuse it and change \
             nothing until they are fixed.**\n>",
            plural(r.head_errors.len(), "error", "errors")
        );
        for e in r.head_errors.iter().take(50) {
            let _ = writeln!(out, "> - {}", md(e));
        }
        if r.head_errors.len() > 50 {
            let _ = writeln!(out, "> - … and {} more", r.head_errors.len() - 50);
        }
        out.push('\n');
    }
    out.push_str(preamble);
    let _ = writeln!(
        out,
        "{} → {}, evaluated at {} as if merged then.\n",
        code(&r.base),
        code(&r.head),
        instant(r.now)
    );
    let people: BTreeSet<&str> = r.deltas.iter().map(|d| d.identity.as_str()).collect();
    let _ = writeln!(
        out,
        "**{}** for {}.\n",
        tally(r.counts()),
        plural(people.len(), "person", "people")
    );
    if r.deltas.is_empty() {
        out.push_str("No access changes.\n");
        return out;
    }
    let mut by_client: BTreeMap<&str, Vec<&Delta>> = BTreeMap::new();
    for d in &r.deltas {
        by_client.entry(&d.client).or_default().push(d);
    }
    out.push_str("| Client | Gains | Losses | Changed windows |\n|---|---|---|---|\n");
    for (client, ds) in &by_client {
        let (g, l, c) = counts(ds.iter().copied());
        let _ = writeln!(out, "| {} | {g} | {l} | {c} |", md(client));
    }
    out.push('\n');
    // Room kept for the closing of a cut section and the note on what was cut.
    let budget = limit.saturating_sub(out.len() + 600);
    let mut details = String::new();
    let mut shown = 0;
    let mut cut_clients = 0;
    'clients: for (client, ds) in &by_client {
        let (g, l, c) = counts(ds.iter().copied());
        let head = format!(
            "<details><summary>{}: {}</summary>\n\n| | Person | System | Entitlement | When | Why |\n|---|---|---|---|---|---|\n",
            md(client),
            tally((g, l, c))
        );
        if details.len() + head.len() > budget {
            cut_clients += 1;
            continue;
        }
        details.push_str(&head);
        for d in ds {
            let sign = match d.kind {
                DeltaKind::Gains { .. } => "➕",
                DeltaKind::Loses { .. } => "➖",
                DeltaKind::Changes { .. } => "✏️",
            };
            let row = format!(
                "| {sign} {} | {} | {} | {} | {} | {} |\n",
                d.verb(),
                md(&d.identity),
                md(&d.system),
                md(&d.entitlement),
                md(&d.when(r.now)),
                md(&d.why())
            );
            if details.len() + row.len() + 14 > budget {
                details.push_str("\n</details>\n\n");
                cut_clients += 1;
                break 'clients;
            }
            details.push_str(&row);
            shown += 1;
        }
        details.push_str("\n</details>\n\n");
    }
    out.push_str(&details);
    let left = r.deltas.len() - shown;
    if left > 0 {
        let _ = writeln!(
            out,
            "⚠️ **{} of {} rows left out** (in {}) to keep this comment under {limit} \
             characters. The summary above counts them all; to see every row, run {}.",
            left,
            r.deltas.len(),
            plural(cut_clients, "client", "clients"),
            code(see_all),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(i: usize) -> Delta {
        Delta {
            client: format!("client{}", i % 7),
            identity: format!("person{i}@example.test"),
            system: "portal".into(),
            entitlement: "viewer".into(),
            kind: DeltaKind::Gains {
                window: Window {
                    starts: None,
                    expires: None,
                    from_merge: None,
                },
            },
            cause: Cause::Granted,
            roles: vec!["viewer".into()],
            reasons: vec![],
        }
    }

    #[test]
    fn a_comment_over_the_limit_is_cut_and_says_what_it_left_out() {
        let r = Review {
            base: "main".into(),
            head: "pr".into(),
            now: "2026-11-20T12:00:00Z".parse().unwrap(),
            head_errors: vec![],
            deltas: (0..500).map(delta).collect(),
        };
        let out = markdown_within(&r, "", "latchkey plan --format json", 10_000);
        assert!(out.len() <= 10_000, "{}", out.len());
        assert!(out.contains("rows left out"), "{out}");
        assert!(out.contains("--format json"), "{out}");
        // Every client is in the summary, cut or not.
        for c in 0..7 {
            assert!(out.contains(&format!("| client{c} |")), "{c}");
        }
        let full = markdown_within(&r, "", "", usize::MAX);
        assert!(!full.contains("left out"));
    }
}
