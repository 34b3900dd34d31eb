//! `latchkey import`: the accounts a system holds, as Member documents.
//!
//! Pure: catalogue × snapshots → proposed Members and findings. Each identity becomes one
//! Member, under the client it can infer (from the email domains of the repository's
//! Members and Client admins, from a System that belongs to one client, or from the
//! clients its entitlements name), with grants of the Roles whose entitlements on the
//! imported systems it holds exactly: the smallest set of Roles whose entitlements there
//! add up to what the account holds, no more. Whatever cannot be mapped that way is a
//! finding, never a guess that grants more: committing the Members then plans no change
//! on the imported systems for what was mapped.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use crate::connectors::{Account, Snapshot};
use crate::load::{Catalog, entitlement};
use crate::model::{ApiVersion, Envelope, Grant, Kind, MemberSpec, Metadata};

/// An entitlement on a system: (system, entitlement).
type Held = (String, String);

/// A Member the import proposes, and the file it belongs in.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposed {
    /// Where to commit it: `clients/<client>/members.yaml` (`team/members.yaml` for the
    /// agency's own staff).
    pub file: String,
    pub document: Envelope<MemberSpec>,
}

/// What the import could not map, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub identity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub problem: Problem,
    pub message: String,
}

/// The kinds of finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// A Member already declares the identity: nothing is proposed for it.
    AlreadyDeclared,
    /// No client could be inferred: no Member is proposed.
    NoClient,
    /// An entitlement no Role grants (for the inferred client).
    Unmapped,
    /// Several equally small sets of Roles match; the first is proposed.
    Ambiguous,
    /// A proposed grant's Role also reaches systems that were not imported.
    ReachesElsewhere,
    /// A Role that fits needs an expiry the system does not know: not proposed.
    NeedsExpiry,
    /// The account is disabled: not imported.
    Disabled,
    /// The account is not latchkey's: out of scope until the System sets `adopt: true`.
    Unmarked,
}

/// What an import found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Imported {
    pub members: Vec<Proposed>,
    pub findings: Vec<Finding>,
}

/// A Role granted for one client (or for any: a Role without `{client}`), and what it
/// gives on the imported systems.
#[derive(Clone, Debug)]
struct Candidate {
    role: String,
    client: Option<String>,
    gives: BTreeSet<Held>,
    /// Systems it reaches that were not imported.
    elsewhere: Vec<String>,
}

/// One identity as the systems hold it.
#[derive(Default)]
struct Person {
    display_name: Option<String>,
    held: BTreeSet<Held>,
    /// Earliest native expiry (PostgreSQL `VALID UNTIL`) among its accounts.
    valid_until: Option<Timestamp>,
    systems: BTreeSet<String>,
}

/// The largest number of fitting Roles searched exhaustively for the smallest cover.
const MAX_SEARCH: usize = 16;

/// Turns what `reads` hold into Members for `cat` (see the module docs).
pub fn import(cat: &Catalog, reads: &BTreeMap<String, Snapshot>) -> Imported {
    let mut out = Imported::default();
    let mut people: BTreeMap<String, Person> = BTreeMap::new();
    for (system, snap) in reads {
        let accounts = snap
            .managed
            .iter()
            .map(|a| (a, true))
            .chain(snap.unmanaged.values().map(|a| (a, false)));
        for (account, marked) in accounts {
            note_account(&mut out, &mut people, system, account, marked);
        }
    }
    let candidates = candidates(cat, reads);
    let domains = domains(cat);
    let mut names: BTreeSet<String> = cat.members.values().map(|m| m.name.clone()).collect();
    for (identity, person) in people {
        if let Some(m) = cat.members.get(&identity) {
            out.findings.push(finding(
                &identity,
                None,
                Problem::AlreadyDeclared,
                format!("already declared by Member {:?} ({})", m.name, m.at.file),
            ));
            continue;
        }
        if let Some(mut p) = propose(cat, &candidates, &domains, &identity, &person, &mut out) {
            p.document.metadata.name = unique_name(&identity, &mut names);
            out.members.push(p);
        }
    }
    out.members.sort_by(|a, b| {
        (&a.file, &a.document.metadata.name).cmp(&(&b.file, &b.document.metadata.name))
    });
    out.findings.sort_by(|a, b| {
        (&a.identity, &a.system, a.problem).cmp(&(&b.identity, &b.system, b.problem))
    });
    out
}

fn note_account(
    out: &mut Imported,
    people: &mut BTreeMap<String, Person>,
    system: &str,
    account: &Account,
    marked: bool,
) {
    if !account.active {
        out.findings.push(finding(
            &account.identity,
            Some(system),
            Problem::Disabled,
            "the account is disabled; not imported".into(),
        ));
        return;
    }
    if !marked {
        out.findings.push(finding(
            &account.identity,
            Some(system),
            Problem::Unmarked,
            format!(
                "the account is not latchkey's: plan reports it out of scope until System {system:?} sets adopt: true"
            ),
        ));
    }
    let p = people.entry(account.identity.clone()).or_default();
    if p.display_name.is_none() {
        p.display_name = account.display_name.clone();
    }
    p.systems.insert(system.to_string());
    p.held.extend(
        account
            .entitlements
            .iter()
            .map(|e| (system.to_string(), e.to_string())),
    );
    if let Some(v) = account.valid_until {
        p.valid_until = Some(p.valid_until.map_or(v, |u| u.min(v)));
    }
}

/// Every Role × client and what it gives on the imported systems; a Role without
/// `{client}` gives the same for every client and is one candidate.
fn candidates(cat: &Catalog, reads: &BTreeMap<String, Snapshot>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (role, item) in &cat.roles {
        let per_client = item
            .spec
            .entitlements
            .values()
            .flatten()
            .any(|p| p.contains(crate::model::role::CLIENT_PLACEHOLDER));
        let clients: Vec<Option<&String>> = if per_client {
            cat.clients.keys().map(Some).collect()
        } else {
            vec![None]
        };
        for client in clients {
            let mut gives = BTreeSet::new();
            let mut elsewhere = Vec::new();
            for (system, patterns) in &item.spec.entitlements {
                let Some(sys) = cat.systems.get(system) else {
                    continue;
                };
                if let (Some(own), Some(c)) = (&sys.spec.client, client)
                    && own != c
                {
                    continue;
                }
                if !reads.contains_key(system) {
                    elsewhere.push(system.clone());
                    continue;
                }
                let c = client.map(String::as_str).unwrap_or_default();
                gives.extend(
                    patterns
                        .iter()
                        .map(|p| (system.clone(), entitlement(&sys.spec, p, c))),
                );
            }
            if !gives.is_empty() {
                out.push(Candidate {
                    role: role.clone(),
                    client: client.cloned(),
                    gives,
                    elsewhere,
                });
            }
        }
    }
    out
}

/// Email domain → the clients of the repository's Members and Client admins there.
fn domains(cat: &Catalog) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let pairs = cat
        .members
        .values()
        .map(|m| (m.spec.email.as_str(), m.spec.client.clone()))
        .chain(cat.clients.iter().flat_map(|(name, c)| {
            c.spec
                .admins
                .iter()
                .map(move |a| (a.as_str(), name.clone()))
        }));
    for (email, client) in pairs {
        if let Some(d) = domain(email) {
            out.entry(d).or_default().insert(client);
        }
    }
    out
}

fn domain(email: &str) -> Option<String> {
    email.rsplit_once('@').map(|(_, d)| d.to_lowercase())
}

/// The Member for one identity, or `None` with a finding saying why not.
fn propose(
    cat: &Catalog,
    candidates: &[Candidate],
    domains: &BTreeMap<String, BTreeSet<String>>,
    identity: &str,
    person: &Person,
    out: &mut Imported,
) -> Option<Proposed> {
    // The client: the domain's, else the one client the systems belong to.
    let by_domain = domain(identity)
        .and_then(|d| domains.get(&d))
        .filter(|c| c.len() == 1);
    let by_system: BTreeSet<&String> = person
        .systems
        .iter()
        .filter_map(|s| cat.systems.get(s).and_then(|s| s.spec.client.as_ref()))
        .collect();
    let mut client = by_domain
        .and_then(|c| c.iter().next().cloned())
        .or_else(|| {
            (by_system.len() == 1).then(|| by_system.iter().next().map(|c| c.to_string()))?
        });
    // Else the one client the fitting Roles name.
    if client.is_none() {
        let (cover, _) = cover(&fitting(cat, candidates, person, None));
        let named: BTreeSet<&String> = cover.iter().filter_map(|c| c.client.as_ref()).collect();
        if named.len() == 1 {
            client = named.into_iter().next().cloned();
        }
    }
    let Some(client) = client else {
        let why = match domain(identity).and_then(|d| domains.get(&d)) {
            Some(many) => format!(
                "no client could be inferred: the domain is used by several clients ({})",
                many.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => "no client could be inferred: no Member or Client admin shares the email domain, and the entitlements name no single client".into(),
        };
        out.findings.push(finding(
            identity,
            None,
            Problem::NoClient,
            format!("{why}; add the Member by hand"),
        ));
        return None;
    };
    let fits = fitting(cat, candidates, person, Some(&client));
    let (chosen, alternatives) = cover(&fits);
    let covered: BTreeSet<&Held> = chosen.iter().flat_map(|c| c.gives.iter()).collect();
    for (system, ent) in person.held.iter().filter(|h| !covered.contains(h)) {
        out.findings.push(finding(
            identity,
            Some(system),
            Problem::Unmapped,
            format!(
                "{ent:?}: no Role the client {client:?} may hold grants exactly this; with prune: true a plan would revoke it (add a Role, or grant it by hand)"
            ),
        ));
    }
    if alternatives > 0 {
        out.findings.push(finding(
            identity,
            None,
            Problem::Ambiguous,
            format!(
                "{} other equally small set(s) of Roles match; proposed {}",
                alternatives,
                chosen
                    .iter()
                    .map(|c| c.role.as_str())
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        ));
    }
    let mut grants = Vec::new();
    for c in chosen {
        let grant_client = c.client.clone().unwrap_or_else(|| client.clone());
        let needs_expiry = cat.clients.get(&grant_client).is_some_and(|cl| {
            cat.reach(&cat.roles[&c.role].spec, &grant_client)
                .any(|(s, _)| cl.spec.require_expiry.contains(&s.spec.environment))
        });
        let expires = match (needs_expiry, person.valid_until) {
            (false, _) => None,
            (true, Some(v)) => Some(v.to_string()),
            (true, None) => {
                out.findings.push(finding(
                    identity,
                    None,
                    Problem::NeedsExpiry,
                    format!(
                        "role {:?} fits, but client {grant_client:?} requires an expiry where it reaches and the system keeps none; not proposed (add the grant with expires:)",
                        c.role
                    ),
                ));
                continue;
            }
        };
        if !c.elsewhere.is_empty() {
            out.findings.push(finding(
                identity,
                None,
                Problem::ReachesElsewhere,
                format!(
                    "role {:?} also grants on {}, which was not imported: a plan would add it there",
                    c.role,
                    c.elsewhere.join(", ")
                ),
            ));
        }
        grants.push(Grant {
            role: c.role.as_str().into(),
            client: c.client.as_deref().filter(|g| *g != client).map(Into::into),
            expires: expires.map(Into::into),
            valid_for: None,
            starts: None,
            reason: None,
            reviewed: None,
        });
    }
    let file = if cat.agency() == Some(client.as_str()) {
        "team/members.yaml".to_string()
    } else {
        format!("clients/{client}/members.yaml")
    };
    Some(Proposed {
        file,
        document: Envelope {
            api_version: ApiVersion,
            kind: Kind::Member,
            metadata: Metadata {
                name: String::new(),
                ..Metadata::default()
            },
            spec: MemberSpec {
                email: identity.to_string(),
                display_name: person.display_name.clone(),
                client,
                offboarded: false,
                grants,
            },
        },
    })
}

/// The candidates a person may hold: everything they give is held, and, once the
/// Member's client is known, the grant is one validation accepts (the client's own
/// allowedRoles; another client's Roles only for the agency's staff).
fn fitting<'a>(
    cat: &Catalog,
    candidates: &'a [Candidate],
    person: &Person,
    client: Option<&String>,
) -> Vec<&'a Candidate> {
    let agency = client.is_some_and(|c| cat.agency() == Some(c.as_str()));
    candidates
        .iter()
        .filter(|c| c.gives.is_subset(&person.held))
        .filter(|c| {
            let Some(m) = client else { return true };
            match &c.client {
                Some(g) if g != m => agency,
                _ => cat
                    .clients
                    .get(m)
                    .is_some_and(|cl| cl.spec.allowed_roles.contains(&c.role)),
            }
        })
        .collect()
}

/// The smallest set of candidates that together give everything any of them gives
/// (what the person holds, less what no candidate grants), preferring sets that reach no
/// other system; and how many other sets tie with it.
fn cover<'a>(fits: &[&'a Candidate]) -> (Vec<&'a Candidate>, usize) {
    let target: BTreeSet<&Held> = fits.iter().flat_map(|c| c.gives.iter()).collect();
    if target.is_empty() {
        return (Vec::new(), 0);
    }
    if fits.len() > MAX_SEARCH {
        return (greedy(fits, &target), 0);
    }
    for k in 1..=fits.len() {
        let mut best: Option<(usize, Vec<&Candidate>)> = None;
        let mut ties = 0;
        for set in combinations(fits, k) {
            let union: BTreeSet<&Held> = set.iter().flat_map(|c| c.gives.iter()).collect();
            if union != target {
                continue;
            }
            let elsewhere = set.iter().map(|c| c.elsewhere.len()).sum::<usize>();
            match &best {
                Some((e, _)) if *e < elsewhere => {}
                Some((e, _)) if *e == elsewhere => ties += 1,
                _ => {
                    best = Some((elsewhere, set));
                    ties = 0;
                }
            }
        }
        if let Some((_, set)) = best {
            return (set, ties);
        }
    }
    (greedy(fits, &target), 0)
}

/// Picks the candidate giving the most still missing, until nothing is missing.
fn greedy<'a>(fits: &[&'a Candidate], target: &BTreeSet<&Held>) -> Vec<&'a Candidate> {
    let mut missing = target.clone();
    let mut out = Vec::new();
    while !missing.is_empty() {
        let Some(best) = fits
            .iter()
            .max_by_key(|c| c.gives.iter().filter(|g| missing.contains(g)).count())
        else {
            break;
        };
        if !best.gives.iter().any(|g| missing.contains(g)) {
            break;
        }
        missing.retain(|m| !best.gives.contains(*m));
        out.push(*best);
    }
    out
}

/// Every `k`-element subset of `items`, in order.
fn combinations<'a, T>(items: &[&'a T], k: usize) -> Vec<Vec<&'a T>> {
    fn go<'a, T>(
        items: &[&'a T],
        k: usize,
        start: usize,
        cur: &mut Vec<&'a T>,
        out: &mut Vec<Vec<&'a T>>,
    ) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..items.len() {
            cur.push(items[i]);
            go(items, k, i + 1, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(items, k, 0, &mut Vec::new(), &mut out);
    out
}

/// A document name from the email's local part, unique among `taken`.
fn unique_name(identity: &str, taken: &mut BTreeSet<String>) -> String {
    let local = identity.split('@').next().unwrap_or(identity);
    let mut base: String = local
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            _ => '-',
        })
        .collect();
    base = base.trim_matches(['-', '.']).chars().take(56).collect();
    if base.is_empty() {
        base = "member".into();
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

fn finding(identity: &str, system: Option<&str>, problem: Problem, message: String) -> Finding {
    Finding {
        identity: identity.to_string(),
        system: system.map(str::to_string),
        problem,
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Two Roles that give the same on the portal (ambiguous), one that reaches a
    /// staging system acme requires expiries on, and a Member already in git.
    const REPO: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: portal}
spec: {type: sql, environment: portal}
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: staging}
spec: {type: sql, environment: staging}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: reports}
spec: {entitlements: {portal: [\"{client}:reports\"]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: viewer}
spec: {entitlements: {portal: [\"{client}:reports\"]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: uat}
spec: {entitlements: {portal: [\"{client}:uat\"], staging: [\"{client}:admin\"]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec: {allowedRoles: [reports, viewer, uat], requireExpiry: [staging]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: dana}
spec: {email: dana@acme.example, client: acme, grants: [{role: viewer}]}
";

    fn catalog() -> Catalog {
        let loaded = crate::load::load_text(
            "latchkey.yaml",
            REPO,
            "2026-11-20T12:00:00Z".parse().unwrap(),
        );
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        loaded.catalog
    }

    fn portal(accounts: &[(&str, &[&str])]) -> BTreeMap<String, Snapshot> {
        let managed = accounts
            .iter()
            .map(|(id, ents)| Account {
                identity: id.to_string(),
                display_name: None,
                active: true,
                entitlements: ents.iter().map(|e| e.to_string()).collect(),
                valid_until: None,
            })
            .collect();
        BTreeMap::from([(
            "portal".to_string(),
            Snapshot {
                managed,
                ..Snapshot::default()
            },
        )])
    }

    fn problems(i: &Imported) -> Vec<(&str, Problem)> {
        i.findings
            .iter()
            .map(|f| (f.identity.as_str(), f.problem))
            .collect()
    }

    #[test]
    fn equally_good_roles_are_reported_and_the_first_proposed() {
        let i = import(
            &catalog(),
            &portal(&[("erin@acme.example", &["acme:reports"])]),
        );
        assert_eq!(i.members.len(), 1);
        let grants: Vec<&str> = i.members[0]
            .document
            .spec
            .grants
            .iter()
            .map(|g| &*g.role)
            .collect();
        assert_eq!(grants, ["reports"]);
        assert_eq!(problems(&i), [("erin@acme.example", Problem::Ambiguous)]);
    }

    #[test]
    fn a_role_needing_an_expiry_the_system_lacks_is_not_proposed() {
        let i = import(&catalog(), &portal(&[("erin@acme.example", &["acme:uat"])]));
        assert!(i.members[0].document.spec.grants.is_empty());
        assert_eq!(problems(&i), [("erin@acme.example", Problem::NeedsExpiry)]);
    }

    #[test]
    fn declared_identities_are_left_out_and_nothing_is_guessed_for_the_rest() {
        let i = import(
            &catalog(),
            &portal(&[
                ("dana@acme.example", &["acme:reports"]),
                // No client by domain or system; the entitlements name none either.
                ("x@elsewhere.example", &["superuser"]),
                // A client by domain, holding something no Role grants: no grant for it.
                ("zoe@acme.example", &["acme:reports", "acme:root"]),
            ]),
        );
        let names: Vec<&str> = i
            .members
            .iter()
            .map(|m| m.document.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["zoe"]);
        assert_eq!(
            problems(&i),
            [
                ("dana@acme.example", Problem::AlreadyDeclared),
                ("x@elsewhere.example", Problem::NoClient),
                // Per identity, findings about the person come before those per system.
                ("zoe@acme.example", Problem::Ambiguous),
                ("zoe@acme.example", Problem::Unmapped),
            ]
        );
    }

    #[test]
    fn names_are_unique_and_valid() {
        let mut taken = BTreeSet::from(["dana".to_string()]);
        assert_eq!(unique_name("Dana@x.example", &mut taken), "dana-2");
        assert_eq!(unique_name("dana@y.example", &mut taken), "dana-3");
        assert_eq!(unique_name("_o'neil_@x.example", &mut taken), "o-neil");
        assert_eq!(unique_name("@x.example", &mut taken), "member");
    }
}
