//! What a change (base → head) does to *desired* state, without touching any system:
//! who gains and who loses which role for which client, and until when.

use std::collections::BTreeMap;
use std::fmt::Write;

use jiff::Timestamp;
use serde::Serialize;

use super::render::{instant, relative};
use crate::load::Catalog;

/// A grant's time window as declared (resolved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
}

/// How one grant changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "change")]
pub enum DeltaKind {
    Gains { window: Window },
    Loses { window: Window },
    Changes { before: Window, after: Window },
}

/// One person's change for one role and client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub client: String,
    pub identity: String,
    pub role: String,
    /// `systems: entitlements` the role reaches for that client.
    pub reaches: Vec<String>,
    #[serde(flatten)]
    pub kind: DeltaKind,
    /// The file in head (or base, for losses) that declares it.
    pub file: String,
}

/// The review of a change.
#[derive(Clone, Debug, Serialize)]
pub struct Review {
    pub base: String,
    pub head: String,
    pub now: Timestamp,
    pub deltas: Vec<Delta>,
}

type Key = (String, String, String);

fn grants(cat: &Catalog) -> BTreeMap<Key, (Window, String)> {
    cat.grants()
        .filter(|g| !g.offboarded)
        .map(|g| {
            (
                (g.client.clone(), g.identity.clone(), g.role.clone()),
                (
                    Window {
                        starts: g.starts,
                        expires: g.expires,
                    },
                    g.at.file.to_string(),
                ),
            )
        })
        .collect()
}

fn reaches(cat: &Catalog, role: &str, client: &str) -> Vec<String> {
    let Some(r) = cat.roles.get(role) else {
        return Vec::new();
    };
    cat.reach(&r.spec, client)
        .map(|(s, ents)| {
            let ents: Vec<String> = ents
                .iter()
                .map(|e| crate::load::entitlement(&s.spec, e, client))
                .collect();
            format!("{}: {}", s.name, ents.join(", "))
        })
        .collect()
}

/// Compares the grants two revisions declare.
pub fn review(
    base: &Catalog,
    head: &Catalog,
    base_rev: &str,
    head_rev: &str,
    now: Timestamp,
) -> Review {
    let before = grants(base);
    let after = grants(head);
    let mut deltas = Vec::new();
    for (key, (window, file)) in &after {
        let kind = match before.get(key) {
            None => DeltaKind::Gains {
                window: window.clone(),
            },
            Some((old, _)) if old != window => DeltaKind::Changes {
                before: old.clone(),
                after: window.clone(),
            },
            Some(_) => continue,
        };
        deltas.push(Delta {
            client: key.0.clone(),
            identity: key.1.clone(),
            role: key.2.clone(),
            reaches: reaches(head, &key.2, &key.0),
            kind,
            file: file.clone(),
        });
    }
    for (key, (window, file)) in &before {
        if !after.contains_key(key) {
            deltas.push(Delta {
                client: key.0.clone(),
                identity: key.1.clone(),
                role: key.2.clone(),
                reaches: reaches(base, &key.2, &key.0),
                kind: DeltaKind::Loses {
                    window: window.clone(),
                },
                file: file.clone(),
            });
        }
    }
    deltas
        .sort_by(|a, b| (&a.client, &a.identity, &a.role).cmp(&(&b.client, &b.identity, &b.role)));
    Review {
        base: base_rev.to_string(),
        head: head_rev.to_string(),
        now,
        deltas,
    }
}

fn until(w: &Window, now: Timestamp) -> String {
    let mut s = match w.expires {
        Some(e) => format!("until {} ({})", instant(e), relative(e, now)),
        None => "no expiry".to_string(),
    };
    if let Some(st) = w.starts {
        s = format!("from {} {s}", instant(st));
    }
    s
}

impl Delta {
    fn describe(&self, now: Timestamp) -> (&'static str, String) {
        match &self.kind {
            DeltaKind::Gains { window } => ("gains", until(window, now)),
            DeltaKind::Loses { .. } => ("loses", String::new()),
            DeltaKind::Changes { before, after } => (
                "changes",
                format!("{} → {}", until(before, now), until(after, now)),
            ),
        }
    }
}

/// Text for a terminal.
pub fn text(r: &Review) -> String {
    let mut out = format!("Changes from {} to {}\n", r.base, r.head);
    for d in &r.deltas {
        let (verb, when) = d.describe(r.now);
        let _ = writeln!(
            out,
            "  {:<8} {:<28} {verb:<7} {:<22} {when}  [{}]",
            d.client,
            d.identity,
            d.role,
            d.reaches.join("; ")
        );
    }
    let _ = writeln!(
        out,
        "{} access change{}.",
        r.deltas.len(),
        if r.deltas.len() == 1 { "" } else { "s" }
    );
    out
}

/// A PR comment: per client, a table of who gains and who loses what, until when.
pub fn markdown(r: &Review) -> String {
    let mut out = format!(
        "### latchkey: access changes in this PR\n\n`{}` → `{}`\n\n",
        r.base, r.head
    );
    let gains = r
        .deltas
        .iter()
        .filter(|d| matches!(d.kind, DeltaKind::Gains { .. }))
        .count();
    let loses = r
        .deltas
        .iter()
        .filter(|d| matches!(d.kind, DeltaKind::Loses { .. }))
        .count();
    let _ = writeln!(
        out,
        "**{gains} gain{}, {loses} loss{}, {} changed window{}.**\n",
        if gains == 1 { "" } else { "s" },
        if loses == 1 { "" } else { "es" },
        r.deltas.len() - gains - loses,
        if r.deltas.len() - gains - loses == 1 {
            ""
        } else {
            "s"
        }
    );
    let mut by_client: BTreeMap<&str, Vec<&Delta>> = BTreeMap::new();
    for d in &r.deltas {
        by_client.entry(&d.client).or_default().push(d);
    }
    for (client, ds) in by_client {
        let _ = writeln!(
            out,
            "#### {client}\n\n| | Person | Role | Reaches | When |\n|---|---|---|---|---|"
        );
        for d in ds {
            let (verb, when) = d.describe(r.now);
            let sign = match verb {
                "gains" => "➕",
                "loses" => "➖",
                _ => "✏️",
            };
            let _ = writeln!(
                out,
                "| {sign} {verb} | {} | {} | {} | {when} |",
                d.identity,
                d.role,
                d.reaches.join("<br>")
            );
        }
        out.push('\n');
    }
    if r.deltas.is_empty() {
        out.push_str("No access changes.\n");
    }
    out
}
