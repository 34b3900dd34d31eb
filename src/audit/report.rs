//! `audit/access/<client>.md`: who has which role on which system until when, for a
//! client; a Markdown page an agency can hand to its client as is.
//!
//! Built after every apply that records something, so it must stay proportional: grants,
//! ledger access and recent records are each indexed once (by client, and by identity
//! and system), never scanned per client or per grant.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use jiff::{SignedDuration, Timestamp};

use super::ledger::Record;
use super::offboarding::offboarding;
use super::replay::{Access, AccessState};
use crate::load::{Catalog, ResolvedGrant};
use crate::plan::render::{instant, relative};

/// Which clients' reports to build.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Every client (the documents changed: names, roles or reach may differ).
    All,
    /// Only these clients (the same documents; only their access changed).
    Only(&'a BTreeSet<String>),
}

/// Renders the reports of the clients in `scope`. `recent` are ledger records of the last
/// 30 days (revocations are listed from them); `access` is the ledger's effective access,
/// which says since when someone holds an entitlement and which commit granted it.
///
/// Only what the clients in scope need is indexed: the access and records of the people
/// their reports list, so an expiry's report costs that client's rows plus one look at
/// each entry, not an index of everyone.
pub fn client_reports(
    cat: &Catalog,
    now: Timestamp,
    revision: &str,
    recent: &[&Record],
    access: &AccessState,
    scope: Scope<'_>,
) -> BTreeMap<String, String> {
    let wanted = |client: &str| match scope {
        Scope::All => true,
        Scope::Only(set) => set.contains(client),
    };
    // One pass over each input; every lookup below is by key.
    let mut grants: HashMap<&str, Vec<&ResolvedGrant>> = HashMap::new();
    for g in cat
        .grants()
        .filter(|g| wanted(&g.client) && g.active_at(now))
    {
        grants.entry(&*g.client).or_default().push(g);
    }
    // People offboarded from a client: those the catalogue marks `offboarded`, and
    // those with a recent offboarding record for it (a Member removed from git).
    let mut offboarded: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for r in recent {
        if r.reason.as_deref() == Some("offboarded")
            && let (Some(c), Some(identity)) = (r.client.as_deref(), r.identity.as_deref())
            && wanted(c)
        {
            offboarded
                .entry(c)
                .or_default()
                .insert(crate::model::identity(identity));
        }
    }
    for m in cat
        .members
        .values()
        .filter(|m| m.spec.offboarded && wanted(&m.spec.client))
    {
        offboarded
            .entry(m.spec.client.as_str())
            .or_default()
            .insert(crate::model::identity(&m.spec.email));
    }
    let ended: HashSet<&str> = offboarded.values().flatten().map(String::as_str).collect();
    // Whose rows the reports in scope list (everyone's for all).
    let listed: Option<HashSet<String>> = match scope {
        Scope::All => None,
        Scope::Only(_) => Some(
            grants
                .values()
                .flatten()
                .map(|g| g.identity.to_ascii_lowercase())
                .collect(),
        ),
    };
    let mut held: HashMap<(String, &str), Vec<&Access>> = HashMap::new();
    let mut held_by: HashMap<String, Vec<&Access>> = HashMap::new();
    for a in access.entries() {
        // Copied only when it has upper case: most entries are passed over.
        let lower = match a.identity.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Cow::Owned(a.identity.to_ascii_lowercase()),
            false => Cow::Borrowed(a.identity.as_str()),
        };
        if let Some(rows) = &listed
            && !rows.contains(lower.as_ref())
            && (ended.is_empty() || !ended.contains(identity_key(&a.identity, &lower).as_str()))
        {
            continue;
        }
        held_by
            .entry(identity_key(&a.identity, &lower))
            .or_default()
            .push(a);
        held.entry((lower.into_owned(), a.system.as_str()))
            .or_default()
            .push(a);
    }
    let mut revoked_by_client: HashMap<&str, Vec<&Record>> = HashMap::new();
    for r in recent.iter().filter(|r| {
        r.result.as_deref() == Some("applied")
            && matches!(
                r.change.as_deref(),
                Some("revoke" | "disable-account" | "delete-account")
            )
    }) {
        if let Some(c) = r.client.as_deref().filter(|c| wanted(c)) {
            revoked_by_client.entry(c).or_default().push(r);
        }
    }
    // The records of the offboarded people (only theirs are looked up).
    let mut by_identity: HashMap<String, Vec<&Record>> = HashMap::new();
    if !ended.is_empty() {
        for r in recent {
            let Some(identity) = r.identity.as_deref() else {
                continue;
            };
            let identity = identity_key(identity, &identity.to_ascii_lowercase());
            if ended.contains(identity.as_str()) {
                by_identity.entry(identity).or_default().push(r);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (client, item) in cat.clients.iter().filter(|(c, _)| wanted(c)) {
        let title = item
            .spec
            .display_name
            .clone()
            .unwrap_or_else(|| client.clone());
        let mut rows: Vec<[String; 7]> = Vec::new();
        let mut expiring = Vec::new();
        for g in grants.get(client.as_str()).into_iter().flatten() {
            let Some(role) = cat.roles.get(&*g.role) else {
                continue;
            };
            let member = cat.members.get(&*g.identity);
            let who = member
                .and_then(|m| m.spec.display_name.clone())
                .unwrap_or_else(|| g.identity.to_string());
            let staff = member
                .map(|m| {
                    if &m.spec.client == client {
                        "client"
                    } else {
                        "agency"
                    }
                })
                .unwrap_or("");
            for (system, ents) in cat.reach(&role.spec, client) {
                let ents: Vec<String> = ents
                    .iter()
                    .map(|e| crate::load::entitlement(&system.spec, e, client))
                    .collect();
                let until = g.expires.map(instant).unwrap_or_else(|| "no expiry".into());
                // The ledger's record of this access on this system: the earliest grant
                // still held, and the commit whose apply granted it.
                let held = held
                    .get(&(g.identity.to_ascii_lowercase(), system.name.as_str()))
                    .into_iter()
                    .flatten()
                    .filter(|a| a.entitlement.is_empty() || ents.contains(&a.entitlement))
                    .min_by_key(|a| a.since);
                let since = held
                    .map(|a| instant(a.since))
                    .or_else(|| g.starts.map(instant))
                    .unwrap_or_else(|| "–".into());
                let granted_by = held
                    .map(|a| format!("`{}`", short_revision(&a.revision)))
                    .unwrap_or_else(|| "not yet applied".into());
                rows.push([
                    format!("{who} <{}>", g.identity),
                    staff.to_string(),
                    g.role.to_string(),
                    format!("{} ({})", system.name, ents.join(", ")),
                    since,
                    until,
                    granted_by,
                ]);
            }
            if let Some(e) = g.expires
                && e.duration_since(now) <= SignedDuration::from_hours(24 * 7)
            {
                expiring.push(format!(
                    "- {} <{}>: {} expires {} ({})",
                    who,
                    g.identity,
                    g.role,
                    instant(e),
                    relative(e, now)
                ));
            }
        }
        rows.sort();
        let mut md = String::new();
        let _ = writeln!(md, "# Access report: {title}\n");
        let _ = writeln!(
            md,
            "Generated by latchkey from `{revision}` at {}. Do not edit: this file is rewritten after each apply.\n",
            instant(now)
        );
        let _ = writeln!(md, "## Who has access\n");
        if rows.is_empty() {
            let _ = writeln!(md, "Nobody has access to {title}'s systems.\n");
        } else {
            let _ = writeln!(
                md,
                "| Person | Staff | Role | System (entitlements) | Since | Until | Granted by |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|");
            for r in &rows {
                let _ = writeln!(md, "| {} |", r.join(" | "));
            }
            md.push('\n');
        }
        let _ = writeln!(md, "## Expiring within 7 days\n");
        if expiring.is_empty() {
            let _ = writeln!(md, "None.\n");
        } else {
            let _ = writeln!(md, "{}\n", expiring.join("\n"));
        }
        let _ = writeln!(md, "## Recently revoked (30 days)\n");
        let revoked: Vec<String> = revoked_by_client
            .get(client.as_str())
            .into_iter()
            .flatten()
            .map(|r| {
                format!(
                    "- {}: {} {} on {} ({})",
                    instant(r.time),
                    r.identity.as_deref().unwrap_or(""),
                    r.change.as_deref().unwrap_or("").replace('-', " ")
                        + &r.entitlement
                            .as_deref()
                            .map(|e| format!(" {e}"))
                            .unwrap_or_default(),
                    r.system.as_deref().unwrap_or(""),
                    r.reason.as_deref().unwrap_or("")
                )
            })
            .collect();
        if revoked.is_empty() {
            let _ = writeln!(md, "None.");
        } else {
            let _ = writeln!(md, "{}", revoked.join("\n"));
        }
        let _ = writeln!(md, "\n## Offboarded\n");
        let ends: Vec<String> = offboarded
            .get(client.as_str())
            .into_iter()
            .flatten()
            .filter_map(|identity| {
                let records = by_identity.get(identity).into_iter().flatten().copied();
                let held = held_by.get(identity).into_iter().flatten().copied();
                offboarding(identity, records, held)
            })
            .map(|o| {
                let systems: Vec<String> = o
                    .systems
                    .iter()
                    .map(|s| format!("  - {}: {}", s.system, s.describe()))
                    .collect();
                format!("- {}\n{}", o.summary(), systems.join("\n"))
            })
            .collect();
        if ends.is_empty() {
            let _ = writeln!(md, "None in the last 30 days.");
        } else {
            let _ = writeln!(md, "{}", ends.join("\n"));
        }
        out.insert(client.clone(), md);
    }
    out
}

/// [`crate::model::identity`] of `raw`, given its ASCII lower case: the same string,
/// without the Unicode normalisation when `raw` is ASCII (where it changes nothing).
fn identity_key(raw: &str, lower: &str) -> String {
    if raw.is_ascii() {
        lower.trim().to_string()
    } else {
        crate::model::identity(raw)
    }
}

/// `main@sha1:0123456789ab…` → `main@0123456789ab`: enough to find the commit.
pub fn short_revision(revision: &str) -> String {
    match revision.split_once("@sha1:") {
        Some((branch, hex)) => format!("{branch}@{}", hex.get(..12).unwrap_or(hex)),
        None => revision
            .strip_prefix("sha1:")
            .map(|h| h.get(..12).unwrap_or(h).to_string())
            .unwrap_or_else(|| revision.to_string()),
    }
}
