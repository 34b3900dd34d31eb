//! The ledger: append-only JSON Lines under `audit/ledger/YYYY/MM.jsonl`, hash-chained.
//!
//! Each record holds `prev`, the hash of the record before it (across month files), and
//! `hash` = SHA-256 of `prev` + "\n" + the record's canonical JSON without `hash`
//! (keys sorted, no whitespace). Editing, deleting or reordering a line breaks the chain
//! at that line. Format version 1; see the README and `schemas/ledger-record.json`.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The format version written in `v`.
pub const FORMAT_VERSION: u32 = 1;

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// One change applied (or failed) on a system.
    Change,
    /// A run held by a guard.
    Hold,
    /// A guard released by an explicit override.
    Override,
    /// A revision refused (history rewrite, untrusted commit).
    Refusal,
    /// A newest revision that did not validate; the last valid one stays in force.
    InvalidRevision,
    /// An unmarked account taken over (`adopt: true`): latchkey's marker was put on it
    /// (`change: adopt-account`, with the result). Access found on it is `observed`.
    Adopted,
    /// Access found in place when latchkey first read an account it manages (the first
    /// apply, a newly adopted account): the baseline `who --at` and reports start from.
    Observed,
}

/// What started the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A new revision was merged.
    Merge,
    /// A grant's `starts` or `expires` passed.
    Expiry,
    /// A periodic re-read found drift.
    Drift,
    /// A person ran `latchkey apply`.
    Manual,
}

/// One ledger line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Format version.
    pub v: u32,
    /// When it happened (RFC 3339, UTC); the record is in that month's file.
    pub time: Timestamp,
    /// What the record is about.
    pub event: Event,
    /// The run that wrote it.
    pub run: String,
    /// The applied revision, `main@sha1:<hex>`.
    pub revision: String,
    /// What started the run.
    pub trigger: Trigger,
    /// The System changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The Client the access is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The person (email) whose access changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `create-account`, `adopt-account`, `enable-account`, `grant`, `revoke`, `disable-account`, `delete-account`,
    /// `set-expiry`, `clear-expiry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The entitlement granted or revoked (absent for account changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// The Role that grants it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When the grant expires, if it does; for `set-expiry`, the expiry the system was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// `declared`, `started`, `expired`, `review-overdue`, `offboarded`, `undeclared`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `applied`, `failed`, `skipped`, or `interrupted`: a journalled change a crash cut
    /// off and the next run did not find in place (it was never made). A change the
    /// next run found in place is `applied`, with a note naming the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why a change failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Free text: a hold's reason, an override's justification, a refusal's cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Author of the commit whose content caused the change (never latchkey's audit commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Verified signer of the applied commit, when signatures are required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The host or controller that applied it (records before this field have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
    /// Hash of the previous record.
    pub prev: String,
    /// Hash of this record (see the module docs).
    pub hash: String,
}

impl Record {
    /// A record with the run-level fields set and everything else empty.
    pub fn new(
        event: Event,
        time: Timestamp,
        run: &str,
        revision: &str,
        trigger: Trigger,
    ) -> Record {
        Record {
            v: FORMAT_VERSION,
            time,
            event,
            run: run.to_string(),
            revision: revision.to_string(),
            trigger,
            system: None,
            client: None,
            identity: None,
            change: None,
            entitlement: None,
            role: None,
            expires: None,
            reason: None,
            result: None,
            error: None,
            note: None,
            author: None,
            signer: None,
            applied_by: None,
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// Links the record after `prev` and computes its hash.
    pub fn seal(&mut self, prev: &str) {
        self.prev = prev.to_string();
        self.hash = String::new();
        self.hash = hash_of(&serde_json::to_value(&*self).unwrap_or_default());
    }

    /// The JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The hash a record's JSON value should carry (its `hash` field is ignored).
pub fn hash_of(value: &serde_json::Value) -> String {
    hash_of_owned(value.clone())
}

/// [`hash_of`] for a value the caller no longer needs (no copy).
pub fn hash_of_owned(mut v: serde_json::Value) -> String {
    if let Some(map) = v.as_object_mut() {
        map.remove("hash");
    }
    let prev = v
        .get("prev")
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string();
    // serde_json's map is ordered by key, so this is canonical.
    let canonical = serde_json::to_string(&v).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// The canonical JSON of a record without `hash`, written straight from the typed record
/// with its keys in sorted order: the same bytes [`hash_of_owned`] gets from a
/// `serde_json::Value` (whose map sorts keys), without building one. `audit verify` uses
/// it only for a line that is byte for byte what [`Record::to_line`] writes for the
/// record it parses to (see [`fast_hash`]); every other line takes the `Value` path.
struct Canonical<'a>(&'a Record);

impl Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        // Keys in byte order, as serde_json's `BTreeMap` sorts them; `None`s are absent,
        // as `skip_serializing_if` leaves them out of the line.
        macro_rules! some {
            ($key:literal, $field:expr) => {
                if let Some(v) = &$field {
                    m.serialize_entry($key, v)?;
                }
            };
        }
        some!("appliedBy", r.applied_by);
        some!("author", r.author);
        some!("change", r.change);
        some!("client", r.client);
        some!("entitlement", r.entitlement);
        some!("error", r.error);
        m.serialize_entry("event", &r.event)?;
        some!("expires", r.expires);
        some!("identity", r.identity);
        some!("note", r.note);
        m.serialize_entry("prev", &r.prev)?;
        some!("reason", r.reason);
        some!("result", r.result);
        m.serialize_entry("revision", &r.revision)?;
        some!("role", r.role);
        m.serialize_entry("run", &r.run)?;
        some!("signer", r.signer);
        some!("system", r.system);
        m.serialize_entry("time", &r.time)?;
        m.serialize_entry("trigger", &r.trigger)?;
        m.serialize_entry("v", &r.v)?;
        m.end()
    }
}

/// Reusable buffers for [`fast_hash`], so a walk over a million lines allocates them once.
#[derive(Default)]
pub struct HashBuffers {
    line: Vec<u8>,
    canonical: Vec<u8>,
}

/// The record a ledger line holds and the hash its content gives, when the line is
/// exactly what latchkey writes for that record (field order, no whitespace, no unknown
/// field, no explicit `null`, no duplicate key, numbers and times as serde writes them).
/// Then the canonical form follows from the typed record, which is much cheaper than a
/// `serde_json::Value`. `None` for any other line: the caller takes the `Value` path
/// ([`hash_of_owned`]), which decides what such a line means, so this never accepts
/// anything that path would not.
pub fn fast_hash(line: &str, buf: &mut HashBuffers) -> Option<(Record, String)> {
    let record: Record = serde_json::from_str(line).ok()?;
    buf.line.clear();
    serde_json::to_writer(&mut buf.line, &record).ok()?;
    if buf.line != line.as_bytes() {
        return None;
    }
    let hash = canonical_hash(&record, &mut buf.canonical)?;
    Some((record, hash))
}

/// True when `record` hashes to the `hash` it carries (its own content, not its link).
pub fn seal_holds(record: &Record) -> bool {
    canonical_hash(record, &mut Vec::new()).is_some_and(|h| h == record.hash)
}

/// SHA-256 of `prev` + "\n" + [`Canonical`], written through `buf`.
fn canonical_hash(record: &Record, buf: &mut Vec<u8>) -> Option<String> {
    buf.clear();
    serde_json::to_writer(&mut *buf, &Canonical(record)).ok()?;
    let mut h = Sha256::new();
    h.update(record.prev.as_bytes());
    h.update(b"\n");
    h.update(&*buf);
    Some(hex::encode(h.finalize()))
}

/// `audit/ledger/2026/11.jsonl` for a record's time.
pub fn month_path(audit_root: &str, time: Timestamp) -> String {
    let dt = time.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{audit_root}ledger/{:04}/{:02}.jsonl",
        dt.year(),
        dt.month()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_chains_and_any_edit_changes_the_hash() {
        let t: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut a = Record::new(Event::Change, t, "run-1", "main@sha1:ab", Trigger::Manual);
        a.identity = Some("erin@acme.example".into());
        a.seal(GENESIS);
        let mut b = Record::new(Event::Change, t, "run-1", "main@sha1:ab", Trigger::Manual);
        b.seal(&a.hash);
        assert_eq!(b.prev, a.hash);
        let value: serde_json::Value = serde_json::from_str(&a.to_line()).unwrap();
        assert_eq!(hash_of(&value), a.hash);
        let tampered = a.to_line().replace("erin@", "mallory@");
        let value: serde_json::Value = serde_json::from_str(&tampered).unwrap();
        assert_ne!(hash_of(&value), a.hash);
    }
}
