//! What latchkey tells people: one [`Event`] per fact, derived from the ledger records a
//! run committed and, for grants about to expire, from the declared grants at `now`.
//!
//! Each event's id is a digest of its kind, its subject and the run or instant it is
//! about, so the same fact always has the same id: the outbox delivers an id once.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{self, Record};
use crate::load::Catalog;

/// The kinds of event a Notifier may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A grant's `expires` falls within the notifier's `expiringWithin`.
    GrantExpiring,
    /// Access was revoked because its grant expired.
    GrantExpired,
    /// Every change of an offboarding went through, with when access ended per system.
    OffboardingCompleted,
    /// A guard (the deletion brake, the empty-client guard) held a run.
    Hold,
    /// A check refused a revision (trust, history rewrite, a broken ledger, a boundary).
    Refusal,
    /// The newest revision does not validate; the last valid one stays in force.
    InvalidRevision,
    /// A change failed (or was skipped) on a system; it is retried on the next run.
    ChangeFailed,
    /// A grant's periodic review falls due (fed by the reviews, see [`review_due`]).
    ReviewDue,
}

impl EventKind {
    /// Every kind, in the order documented.
    pub const ALL: [EventKind; 8] = [
        EventKind::GrantExpiring,
        EventKind::GrantExpired,
        EventKind::OffboardingCompleted,
        EventKind::Hold,
        EventKind::Refusal,
        EventKind::InvalidRevision,
        EventKind::ChangeFailed,
        EventKind::ReviewDue,
    ];

    /// The name used in YAML, payloads and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::GrantExpiring => "grant-expiring",
            EventKind::GrantExpired => "grant-expired",
            EventKind::OffboardingCompleted => "offboarding-completed",
            EventKind::Hold => "hold",
            EventKind::Refusal => "refusal",
            EventKind::InvalidRevision => "invalid-revision",
            EventKind::ChangeFailed => "change-failed",
            EventKind::ReviewDue => "review-due",
        }
    }

    /// Parses a name from a Notifier's `events`.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Every name, for help texts.
    pub fn names() -> Vec<&'static str> {
        EventKind::ALL.iter().map(|k| k.as_str()).collect()
    }
}

/// When access ended on one system (an offboarding's completion record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub system: String,
    pub ended: Timestamp,
}

/// One notification: the JSON body a `webhook` Notifier receives. Holds nothing secret:
/// names, instants, revisions and the ledger's own notes only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable across runs and restarts: the receiver's idempotency key.
    pub id: String,
    pub event: EventKind,
    /// When the fact happened (a record's time, or the instant the event was derived).
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The grant's expiry (`grant-expiring`, `grant-expired`) or the review's due
    /// instant (`review-due`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// The revision the fact is about, `main@sha1:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The run whose ledger records it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// `offboarding-completed`: each system and when access ended there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systems: Vec<Ended>,
    /// The agency's client (the Policy's `agencyClient`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// Who should act: the client's `admins` and the agency's.
    pub recipients: Vec<String>,
    /// One line for a person (the Slack text).
    pub message: String,
}

impl Event {
    /// An event of `kind` about `subject` (the parts that make the fact unique).
    fn new(kind: EventKind, time: Timestamp, subject: &[&str]) -> Event {
        let mut h = Sha256::new();
        h.update(kind.as_str().as_bytes());
        for part in subject {
            h.update(b"\0");
            h.update(part.as_bytes());
        }
        Event {
            id: hex::encode(h.finalize()),
            event: kind,
            time,
            client: None,
            identity: None,
            system: None,
            entitlement: None,
            role: None,
            expires: None,
            revision: None,
            run: None,
            systems: Vec::new(),
            agency: None,
            recipients: Vec::new(),
            message: String::new(),
        }
    }

    /// Names the agency and the recipients: the client's admins, then the agency's.
    fn addressed(mut self, catalog: &Catalog) -> Event {
        self.agency = catalog.agency().map(str::to_string);
        let admins = |c: Option<&str>| {
            c.and_then(|c| catalog.clients.get(c))
                .map(|c| c.spec.admins.clone())
                .unwrap_or_default()
        };
        let mut recipients = admins(self.client.as_deref());
        for a in admins(catalog.agency()) {
            if !recipients.contains(&a) {
                recipients.push(a);
            }
        }
        self.recipients = recipients;
        self
    }

    fn from_record(kind: EventKind, r: &Record, message: String) -> Event {
        // A hold, a refusal or a failing change repeats on every run until git or the
        // system changes: one fact per revision, told once. An expiry happens once: its
        // run names it.
        let when = match kind {
            EventKind::Hold | EventKind::Refusal | EventKind::ChangeFailed => "",
            _ => r.run.as_str(),
        };
        let subject = [
            when,
            r.revision.as_str(),
            r.system.as_deref().unwrap_or(""),
            r.identity.as_deref().unwrap_or(""),
            r.change.as_deref().unwrap_or(""),
            r.entitlement.as_deref().unwrap_or(""),
            r.note.as_deref().unwrap_or(""),
        ];
        let mut e = Event::new(kind, r.time, &subject);
        e.client = r.client.clone();
        e.identity = r.identity.clone();
        e.system = r.system.clone();
        e.entitlement = r.entitlement.clone();
        e.role = r.role.clone();
        e.expires = r.expires;
        e.revision = Some(r.revision.clone());
        e.run = Some(r.run.clone());
        e.message = message;
        e
    }
}

/// The events of the records one run committed. `complete` is false when a system could
/// not be read in that run: an offboarding is then never called complete (something may
/// remain on the system not read).
pub fn from_records(records: &[Record], catalog: &Catalog, complete: bool) -> Vec<Event> {
    let mut out = Vec::new();
    // Offboarded changes by identity: complete when every one of them went through.
    let mut offboarded: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        let who = r.identity.as_deref().unwrap_or("?");
        let on = r.system.as_deref().unwrap_or("?");
        let what = r
            .entitlement
            .as_deref()
            .or(r.change.as_deref())
            .unwrap_or("");
        let note = r.note.as_deref().unwrap_or("");
        let event = match r.event {
            audit::Event::Hold => Some(Event::from_record(
                EventKind::Hold,
                r,
                format!("held by a guard, nothing applied: {note}"),
            )),
            audit::Event::Refusal => Some(Event::from_record(
                EventKind::Refusal,
                r,
                format!("refused {}: {note}", r.revision),
            )),
            audit::Event::InvalidRevision => Some(Event::from_record(
                EventKind::InvalidRevision,
                r,
                format!(
                    "{} is invalid; the last valid revision stays in force ({note})",
                    r.revision
                ),
            )),
            audit::Event::Change | audit::Event::Adopted => {
                let result = r.result.as_deref().unwrap_or("");
                let reason = r.reason.as_deref().unwrap_or("");
                if reason == "offboarded" {
                    offboarded.entry(who).or_default().push(r);
                }
                if result != "applied" {
                    Some(Event::from_record(
                        EventKind::ChangeFailed,
                        r,
                        format!(
                            "{} {what} for {who} on {on} {result}: {}",
                            r.change.as_deref().unwrap_or("change"),
                            r.error.as_deref().unwrap_or("")
                        ),
                    ))
                } else if reason == "expired" {
                    Some(Event::from_record(
                        EventKind::GrantExpired,
                        r,
                        format!("{who}'s {what} on {on} was revoked: the grant expired"),
                    ))
                } else {
                    None
                }
            }
            audit::Event::Override | audit::Event::Observed => None,
        };
        out.extend(event.map(|e| e.addressed(catalog)));
    }
    if complete {
        for (who, rs) in offboarded {
            if rs.iter().any(|r| r.result.as_deref() != Some("applied")) {
                continue;
            }
            let mut ended: BTreeMap<&str, Timestamp> = BTreeMap::new();
            for r in &rs {
                let at = ended
                    .entry(r.system.as_deref().unwrap_or("?"))
                    .or_insert(r.time);
                *at = (*at).max(r.time);
            }
            let last = ended.values().max().copied().unwrap_or(rs[0].time);
            let mut e = Event::new(EventKind::OffboardingCompleted, last, &[&rs[0].run, who]);
            e.identity = Some(who.to_string());
            e.client = rs.iter().find_map(|r| r.client.clone());
            e.revision = Some(rs[0].revision.clone());
            e.run = Some(rs[0].run.clone());
            e.systems = ended
                .iter()
                .map(|(s, t)| Ended {
                    system: s.to_string(),
                    ended: *t,
                })
                .collect();
            e.message = format!(
                "offboarding of {who} completed: {}",
                e.systems
                    .iter()
                    .map(|s| format!("{} at {}", s.system, s.ended))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out.push(e.addressed(catalog));
        }
    }
    out
}

/// Grants in force at `now` whose `expires` falls within `within` of it. The id names
/// the grant and its expiry, not `now`: one event per grant and expiry, however many
/// runs see it in the window.
pub fn expiring(catalog: &Catalog, now: Timestamp, within: SignedDuration) -> Vec<Event> {
    catalog
        .grants()
        .filter(|g| g.active_at(now))
        .filter_map(|g| {
            let expires = g.expires?;
            (expires.duration_since(now) <= within).then_some((g, expires))
        })
        .map(|(g, expires)| {
            let at = expires.to_string();
            let mut e = Event::new(
                EventKind::GrantExpiring,
                now,
                &[&g.identity, &g.client, &g.role, &at],
            );
            e.identity = Some(g.identity.to_string());
            e.client = Some(g.client.to_string());
            e.role = Some(g.role.to_string());
            e.expires = Some(expires);
            e.message = format!(
                "{}'s grant of {} for {} expires at {at}",
                g.identity, g.role, g.client
            );
            e.addressed(catalog)
        })
        .collect()
}

/// Grants in force at `now` whose review (`reviewEvery`, docs/reviews.md) falls due
/// within `within` of it, or is overdue. One event per grant and due instant: a review
/// recorded in git moves the instant, and the next due date is a new event.
pub fn reviews_due(catalog: &Catalog, now: Timestamp, within: SignedDuration) -> Vec<Event> {
    catalog
        .grants()
        .filter(|g| g.active_at(now))
        .filter_map(|g| {
            let due = g.review_due?;
            (due.duration_since(now) <= within)
                .then(|| review_due(catalog, &g.identity, &g.client, &g.role, due, now))
        })
        .collect()
}

/// The event for a grant whose review falls due at `due` ([`reviews_due`]).
pub fn review_due(
    catalog: &Catalog,
    identity: &str,
    client: &str,
    role: &str,
    due: Timestamp,
    now: Timestamp,
) -> Event {
    let at = due.to_string();
    let mut e = Event::new(EventKind::ReviewDue, now, &[identity, client, role, &at]);
    e.identity = Some(identity.to_string());
    e.client = Some(client.to_string());
    e.role = Some(role.to_string());
    e.expires = Some(due);
    e.message = format!("{identity}'s grant of {role} for {client} is due for review at {at}");
    e.addressed(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Trigger;

    const REPO: &str = r#"apiVersion: latchkey.dev/v1alpha1
kind: Policy
metadata: {name: policy}
spec: {agencyClient: agency}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: agency}
spec: {allowedRoles: [viewer], admins: [boss@agency.example]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec: {allowedRoles: [viewer], admins: [ann@acme.example, boss@agency.example]}
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: portal}
spec: {type: sql, environment: portal, connection: {path: p.sqlite}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: viewer}
spec: {entitlements: {portal: [viewer]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: erin}
spec:
  email: erin@acme.example
  client: acme
  grants:
    - {role: viewer, expires: "2026-03-05T00:00:00Z"}
"#;

    fn catalog(now: Timestamp) -> Catalog {
        let loaded = crate::load::load_text("repo.yaml", REPO, now);
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        loaded.catalog
    }

    #[test]
    fn a_grant_is_expiring_only_inside_the_window_and_keeps_its_id() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let cat = catalog(t("2026-03-01T00:00:00Z"));
        let window = SignedDuration::from_hours(72);
        assert!(expiring(&cat, t("2026-03-01T00:00:00Z"), window).is_empty());
        let a = expiring(&cat, t("2026-03-02T00:00:00Z"), window);
        let b = expiring(&cat, t("2026-03-04T00:00:00Z"), window);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].id, b[0].id, "one event per grant and expiry");
        assert_eq!(a[0].recipients, ["ann@acme.example", "boss@agency.example"]);
        assert_eq!(a[0].agency.as_deref(), Some("agency"));
        assert!(expiring(&cat, t("2026-03-05T00:00:00Z"), window).is_empty());
    }

    #[test]
    fn a_review_is_due_inside_the_window_and_while_overdue_with_one_id() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let repo = REPO
            .replace(
                "spec: {allowedRoles: [viewer], admins: [ann@acme.example, boss@agency.example]}",
                "spec: {allowedRoles: [viewer], admins: [ann@acme.example, boss@agency.example], reviewEvery: 30d}",
            )
            .replace(
                r#"- {role: viewer, expires: "2026-03-05T00:00:00Z"}"#,
                r#"- {role: viewer, reviewed: {at: "2026-01-01T00:00:00Z", by: ann@acme.example}}"#,
            );
        let loaded = crate::load::load_text("repo.yaml", &repo, t("2026-01-02T00:00:00Z"));
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        let cat = loaded.catalog;
        let window = SignedDuration::from_hours(72);
        assert!(reviews_due(&cat, t("2026-01-20T00:00:00Z"), window).is_empty());
        let soon = reviews_due(&cat, t("2026-01-29T00:00:00Z"), window);
        let overdue = reviews_due(&cat, t("2026-02-10T00:00:00Z"), window);
        assert_eq!(soon.len(), 1);
        assert_eq!(soon[0].event, EventKind::ReviewDue);
        assert_eq!(soon[0].expires, Some(t("2026-01-31T00:00:00Z")));
        assert_eq!(
            soon[0].recipients,
            ["ann@acme.example", "boss@agency.example"]
        );
        assert_eq!(overdue.len(), 1, "an overdue review is still due");
        assert_eq!(
            soon[0].id, overdue[0].id,
            "one event per grant and due instant"
        );
    }

    #[test]
    fn records_become_events_and_an_offboarding_completes_only_when_all_went_through() {
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let cat = catalog(now);
        let change = |system: &str, result: &str, reason: &str| {
            let mut r = Record::new(
                audit::Event::Change,
                now,
                "run-1",
                "main@sha1:ab",
                Trigger::Merge,
            );
            r.identity = Some("erin@acme.example".into());
            r.client = Some("acme".into());
            r.system = Some(system.into());
            r.change = Some("revoke".into());
            r.entitlement = Some("viewer".into());
            r.reason = Some(reason.into());
            r.result = Some(result.into());
            r
        };
        let mut held = Record::new(
            audit::Event::Hold,
            now,
            "run-1",
            "main@sha1:ab",
            Trigger::Merge,
        );
        held.note = Some("2 people would lose access".into());
        let mut again = held.clone();
        again.run = "run-2".into();
        let holds = from_records(&[held, again], &cat, true);
        assert_eq!(
            holds[0].id, holds[1].id,
            "the same hold of the same revision is one fact"
        );
        let ok = [
            change("portal", "applied", "offboarded"),
            change("staging", "applied", "offboarded"),
        ];
        let events = from_records(&ok, &cat, true);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, EventKind::OffboardingCompleted);
        assert_eq!(events[0].systems.len(), 2);
        assert!(
            from_records(&ok, &cat, false).is_empty(),
            "a system unread: not complete"
        );
        let half = [
            change("portal", "applied", "offboarded"),
            change("staging", "failed", "offboarded"),
        ];
        let kinds: Vec<_> = from_records(&half, &cat, true)
            .iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(kinds, [EventKind::ChangeFailed]);
        let expired = [change("portal", "applied", "expired")];
        assert_eq!(
            from_records(&expired, &cat, true)[0].event,
            EventKind::GrantExpired
        );
    }

    #[test]
    fn every_kind_has_a_name_that_parses_back() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
