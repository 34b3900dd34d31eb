//! The offboarding record: for a person latchkey offboarded, each system and the instant
//! access ended there, and what is still pending, from the ledger alone (docs/audit.md).
//!
//! An offboarding begins with the person's first change recorded with reason
//! `offboarded`. On each system, access ended at the last applied `revoke`,
//! `disable-account` or `delete-account` recorded with that reason. A failed, skipped or
//! interrupted offboarding change with no later success is pending since it first
//! failed; so is access the ledger still shows held at the end (a system that could not
//! be reached records no change at all): fail closed, an offboarding is complete only
//! when nothing of the person's access is left on record. An applied grant or account
//! creation afterwards (the person came back) ends the record.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::Event;
use super::ledger::Record;
use super::replay::Access;
use crate::plan::render::instant;

/// Where one offboarded person's access ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Offboarding {
    pub identity: String,
    /// The first change recorded for the offboarding.
    pub began: Timestamp,
    /// Every system reports its access ended and nothing is pending.
    pub complete: bool,
    /// By system name.
    pub systems: Vec<SystemEnd>,
}

/// One system of an offboarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemEnd {
    pub system: String,
    /// The last applied offboarding removal on this system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// What is not done yet; empty when access ended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingEnd>,
}

impl Offboarding {
    /// "Offboarding of erin@acme.example, begun 2026-03-20T16:00:00Z: complete" / "…:
    /// pending on 1 of 2 systems".
    pub fn summary(&self) -> String {
        let pending = self
            .systems
            .iter()
            .filter(|s| !s.pending.is_empty())
            .count();
        let state = if self.complete {
            "complete".to_string()
        } else {
            let n = self.systems.len();
            format!(
                "pending on {pending} of {n} system{}",
                if n == 1 { "" } else { "s" }
            )
        };
        format!(
            "Offboarding of {}, begun {}: {state}",
            self.identity,
            instant(self.began)
        )
    }
}

impl SystemEnd {
    /// When the oldest pending part has been pending since.
    pub fn pending_since(&self) -> Option<Timestamp> {
        self.pending.iter().map(|p| p.since).min()
    }

    /// "access ended 2026-03-20T16:00:01Z" / "pending since 2026-03-20T16:00:00Z: revoke
    /// acme:tester (failed: connection refused)".
    pub fn describe(&self) -> String {
        let ended = self.ended.map(|t| format!("access ended {}", instant(t)));
        let Some(since) = self.pending_since() else {
            return ended.unwrap_or_else(|| "access ended".into());
        };
        let what: Vec<String> = self
            .pending
            .iter()
            .map(|p| match &p.error {
                Some(e) => format!("{} ({e})", p.what),
                None => p.what.clone(),
            })
            .collect();
        let mut out = format!("pending since {}: {}", instant(since), what.join("; "));
        if let Some(e) = ended {
            out.push_str(&format!(" (last change applied: {e})"));
        }
        out
    }
}

/// A part of an offboarding not done on a system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingEnd {
    /// `revoke acme:viewer`, `disable-account`, or `holds acme:viewer` for access on
    /// record with no offboarding change.
    pub what: String,
    pub since: Timestamp,
    /// The last failure's result and error, when a change failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Per system while reading: the end, and pending changes by (change, entitlement).
#[derive(Default)]
struct Reading {
    ended: Option<Timestamp>,
    pending: BTreeMap<(String, String), PendingEnd>,
}

fn is_removal(change: &str) -> bool {
    matches!(change, "revoke" | "disable-account" | "delete-account")
}

fn gives_access(change: &str) -> bool {
    matches!(
        change,
        "grant" | "create-account" | "enable-account" | "adopt-account"
    )
}

/// The offboarding record of the person whose ledger records are `records` (oldest
/// first, as `history` returns them), with `held` the access the ledger still shows for
/// them at its end. `None` when the person was never offboarded, or came back since.
pub fn offboarding<'a, 'r>(
    identity: &str,
    records: impl IntoIterator<Item = &'r Record>,
    held: impl IntoIterator<Item = &'a Access>,
) -> Option<Offboarding> {
    let mut began: Option<Timestamp> = None;
    let mut systems: BTreeMap<String, Reading> = BTreeMap::new();
    for r in records.into_iter().filter(|r| r.event == Event::Change) {
        let (Some(system), Some(change)) = (r.system.as_deref(), r.change.as_deref()) else {
            continue;
        };
        let offboarded = r.reason.as_deref() == Some("offboarded");
        let applied = r.result.as_deref() == Some("applied");
        if applied && gives_access(change) && !offboarded {
            // The person came back: an earlier offboarding is history, not this record.
            began = None;
            systems.clear();
            continue;
        }
        if !offboarded || !is_removal(change) {
            continue;
        }
        began.get_or_insert(r.time);
        let entitlement = r.entitlement.clone().unwrap_or_default();
        let s = systems.entry(system.to_string()).or_default();
        if applied {
            s.ended = Some(r.time);
            if change == "revoke" {
                s.pending.remove(&(change.to_string(), entitlement));
            } else {
                // The account is disabled or gone: nothing of it is left to revoke.
                s.pending.clear();
            }
            continue;
        }
        let what = match &r.entitlement {
            Some(e) => format!("{change} {e}"),
            None => change.to_string(),
        };
        let error = Some(match &r.error {
            Some(e) => format!("{}: {e}", r.result.as_deref().unwrap_or("failed")),
            None => r.result.clone().unwrap_or_else(|| "failed".into()),
        });
        s.pending
            .entry((change.to_string(), entitlement))
            .and_modify(|p| p.error = error.clone())
            .or_insert(PendingEnd {
                what,
                since: r.time,
                error,
            });
    }
    let began = began?;
    for a in held {
        let s = systems.entry(a.system.clone()).or_default();
        let revoking = s
            .pending
            .keys()
            .any(|(c, e)| c != "revoke" || *e == a.entitlement);
        if !revoking {
            let what = if a.entitlement.is_empty() {
                "holds the account".to_string()
            } else {
                format!("holds {}", a.entitlement)
            };
            s.pending.insert(
                ("holds".into(), a.entitlement.clone()),
                PendingEnd {
                    what,
                    since: began,
                    error: None,
                },
            );
        }
    }
    let systems: Vec<SystemEnd> = systems
        .into_iter()
        .map(|(system, s)| SystemEnd {
            system,
            ended: s.ended,
            pending: s.pending.into_values().collect(),
        })
        .collect();
    Some(Offboarding {
        identity: identity.to_string(),
        began,
        complete: systems.iter().all(|s| s.pending.is_empty()),
        systems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Trigger;

    fn record(
        time: &str,
        system: &str,
        change: &str,
        ent: &str,
        reason: &str,
        result: &str,
    ) -> Record {
        let mut r = Record::new(
            Event::Change,
            time.parse().unwrap(),
            "run",
            "main@sha1:00",
            Trigger::Manual,
        );
        r.identity = Some("erin@acme.example".into());
        r.system = Some(system.into());
        r.change = Some(change.into());
        r.entitlement = (!ent.is_empty()).then(|| ent.to_string());
        r.reason = Some(reason.into());
        r.result = Some(result.into());
        if result != "applied" {
            r.error = Some("connection refused".into());
        }
        r
    }

    fn held(system: &str, ent: &str) -> Access {
        Access {
            identity: "erin@acme.example".into(),
            system: system.into(),
            entitlement: ent.into(),
            client: None,
            role: None,
            since: "2026-01-01T00:00:00Z".parse().unwrap(),
            expires: None,
            revision: "main@sha1:00".into(),
            run: "run".into(),
        }
    }

    fn ends(o: &Offboarding) -> Vec<String> {
        o.systems
            .iter()
            .map(|s| {
                let ended = s.ended.map(|t| t.to_string()).unwrap_or("-".into());
                let pending: Vec<String> = s
                    .pending
                    .iter()
                    .map(|p| {
                        format!(
                            "{} since {} ({})",
                            p.what,
                            p.since,
                            p.error.as_deref().unwrap_or("-")
                        )
                    })
                    .collect();
                format!(
                    "{} ended {ended} pending [{}]",
                    s.system,
                    pending.join(", ")
                )
            })
            .collect()
    }

    #[test]
    fn each_system_ends_at_its_last_offboarding_removal() {
        let records = [
            record(
                "2026-03-01T00:00:00Z",
                "portal",
                "grant",
                "acme:viewer",
                "declared",
                "applied",
            ),
            record(
                "2026-03-20T16:00:00Z",
                "portal",
                "revoke",
                "acme:viewer",
                "offboarded",
                "applied",
            ),
            record(
                "2026-03-20T16:00:01Z",
                "portal",
                "disable-account",
                "",
                "offboarded",
                "applied",
            ),
            record(
                "2026-03-20T16:00:02Z",
                "staging",
                "delete-account",
                "",
                "offboarded",
                "applied",
            ),
        ];
        let o = offboarding("erin@acme.example", &records, []).unwrap();
        assert_eq!(o.began.to_string(), "2026-03-20T16:00:00Z");
        assert!(o.complete);
        assert_eq!(
            ends(&o),
            [
                "portal ended 2026-03-20T16:00:01Z pending []",
                "staging ended 2026-03-20T16:00:02Z pending []",
            ]
        );
    }

    #[test]
    fn a_failure_with_no_later_success_is_pending_since_it_first_failed() {
        let mut records = vec![
            record(
                "2026-03-20T16:00:00Z",
                "portal",
                "disable-account",
                "",
                "offboarded",
                "applied",
            ),
            record(
                "2026-03-20T16:00:00Z",
                "staging",
                "revoke",
                "acme:tester",
                "offboarded",
                "failed",
            ),
            record(
                "2026-03-20T17:00:00Z",
                "staging",
                "revoke",
                "acme:tester",
                "offboarded",
                "skipped",
            ),
        ];
        let o = offboarding(
            "erin@acme.example",
            &records,
            [&held("staging", "acme:tester")],
        )
        .unwrap();
        assert!(!o.complete);
        assert_eq!(
            ends(&o)[1],
            "staging ended - pending [revoke acme:tester since 2026-03-20T16:00:00Z (skipped: connection refused)]"
        );
        // The retry succeeds: access ended then.
        records.push(record(
            "2026-03-21T09:00:00Z",
            "staging",
            "revoke",
            "acme:tester",
            "offboarded",
            "applied",
        ));
        let o = offboarding("erin@acme.example", &records, []).unwrap();
        assert!(o.complete);
        assert_eq!(ends(&o)[1], "staging ended 2026-03-21T09:00:00Z pending []");
    }

    /// A system that could not be read records nothing: the access still on record is
    /// what is pending.
    #[test]
    fn access_still_on_record_is_pending_since_the_offboarding_began() {
        let records = [record(
            "2026-03-20T16:00:00Z",
            "portal",
            "disable-account",
            "",
            "offboarded",
            "applied",
        )];
        let o = offboarding(
            "erin@acme.example",
            &records,
            [&held("directory", "cn=staff")],
        )
        .unwrap();
        assert!(!o.complete);
        assert_eq!(
            ends(&o),
            [
                "directory ended - pending [holds cn=staff since 2026-03-20T16:00:00Z (-)]",
                "portal ended 2026-03-20T16:00:00Z pending []",
            ]
        );
    }

    #[test]
    fn no_record_for_someone_never_offboarded_or_back_since() {
        let grant = record(
            "2026-03-01T00:00:00Z",
            "portal",
            "grant",
            "acme:viewer",
            "declared",
            "applied",
        );
        assert_eq!(
            offboarding("erin@acme.example", std::slice::from_ref(&grant), []),
            None
        );
        let off = record(
            "2026-03-20T16:00:00Z",
            "portal",
            "disable-account",
            "",
            "offboarded",
            "applied",
        );
        let mut back = record(
            "2026-04-01T00:00:00Z",
            "portal",
            "enable-account",
            "",
            "declared",
            "applied",
        );
        back.entitlement = None;
        assert_eq!(
            offboarding("erin@acme.example", &[grant, off, back], []),
            None
        );
    }
}
