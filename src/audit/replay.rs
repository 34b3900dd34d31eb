//! Effective access rebuilt from the ledger alone: replay of applied change records,
//! starting from the month checkpoint so a query replays at most one month.
//!
//! Rules: `grant` adds (identity, system, entitlement); `revoke` removes it;
//! `disable-account` and `delete-account` remove all of that identity's entitlements on
//! that system. Failed and skipped changes, holds and refusals change nothing.

use std::collections::HashMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::index;
use super::ledger::{GENESIS, Record, month_path};
use super::store::{LedgerError, LedgerSource, checkpoint_path};

/// One entitlement someone held on a system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub identity: String,
    pub system: String,
    /// Empty for systems without entitlements (the account is the access).
    #[serde(default)]
    pub entitlement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When it was first granted (continuously held since).
    pub since: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// The revision whose apply granted it, `main@sha1:<hex>`.
    pub revision: String,
    /// The run that granted it.
    pub run: String,
}

/// Effective access at an instant, keyed by (identity, system, entitlement).
///
/// Held per identity, each identity's entries sorted by (system, entitlement): replay
/// finds a record's entries with one hash lookup and a search of a few entries, where an
/// ordered map of every entry compared long, shared-prefix names a dozen times per
/// record. Sorted order is built only when the entries are listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessState {
    /// Never holds an empty list (so equal states compare equal).
    by_identity: HashMap<String, Vec<Access>>,
    len: usize,
    /// Ledger records replayed to get here (all events, not only changes).
    pub records: u64,
}

/// One applied change (or observed baseline) as replay reads it, borrowed from the record.
pub struct Applied<'a> {
    /// `grant`, `revoke`, `disable-account`, ...
    pub change: Option<&'a str>,
    pub identity: &'a str,
    pub system: &'a str,
    /// Empty for systems without entitlements.
    pub entitlement: &'a str,
    pub client: Option<&'a str>,
    pub role: Option<&'a str>,
    pub time: Timestamp,
    pub expires: Option<Timestamp>,
    pub revision: &'a str,
    pub run: &'a str,
}

/// True when a record of `event` with `result` may change access: an applied change, or
/// access found in place when latchkey first read the account (the baseline).
pub fn counts(event: super::Event, result: Option<&str>) -> bool {
    match event {
        super::Event::Change => result == Some("applied"),
        super::Event::Observed => true,
        _ => false,
    }
}

/// Sets `to` to `from`, reusing its allocation.
fn set(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

/// [`set`] for an optional field.
fn set_opt(to: &mut Option<String>, from: Option<&str>) {
    match (to.as_mut(), from) {
        (Some(t), Some(f)) => set(t, f),
        (_, f) => *to = f.map(str::to_string),
    }
}

/// Where (system, entitlement) is in one identity's sorted entries (or would go).
fn find(held: &[Access], system: &str, entitlement: &str) -> Result<usize, usize> {
    held.binary_search_by(|a| {
        (a.system.as_str(), a.entitlement.as_str()).cmp(&(system, entitlement))
    })
}

impl AccessState {
    /// Applies one record (anything but an applied change is ignored).
    pub fn apply(&mut self, r: &Record) {
        self.records += 1;
        if !counts(r.event, r.result.as_deref()) {
            return;
        }
        let (Some(identity), Some(system)) = (&r.identity, &r.system) else {
            return;
        };
        self.apply_change(&Applied {
            change: r.change.as_deref(),
            identity,
            system,
            entitlement: r.entitlement.as_deref().unwrap_or_default(),
            client: r.client.as_deref(),
            role: r.role.as_deref(),
            time: r.time,
            expires: r.expires,
            revision: &r.revision,
            run: &r.run,
        });
    }

    /// Applies one change that [`counts`] (the caller counted its record).
    pub fn apply_change(&mut self, c: &Applied<'_>) {
        match c.change {
            Some("grant") => {
                let held = match self.by_identity.get_mut(c.identity) {
                    Some(held) => held,
                    None => self.by_identity.entry(c.identity.to_string()).or_default(),
                };
                match find(held, c.system, c.entitlement) {
                    Ok(i) => {
                        // Held since the first grant; the rest is the newest grant's.
                        let a = &mut held[i];
                        set_opt(&mut a.client, c.client);
                        set_opt(&mut a.role, c.role);
                        a.expires = c.expires;
                        set(&mut a.revision, c.revision);
                        set(&mut a.run, c.run);
                    }
                    Err(i) => {
                        held.insert(
                            i,
                            Access {
                                identity: c.identity.to_string(),
                                system: c.system.to_string(),
                                entitlement: c.entitlement.to_string(),
                                client: c.client.map(str::to_string),
                                role: c.role.map(str::to_string),
                                since: c.time,
                                expires: c.expires,
                                revision: c.revision.to_string(),
                                run: c.run.to_string(),
                            },
                        );
                        self.len += 1;
                    }
                }
            }
            Some("revoke") => self.remove(c.identity, |a| {
                a.system == c.system && a.entitlement == c.entitlement
            }),
            Some("disable-account" | "delete-account") => {
                self.remove(c.identity, |a| a.system == c.system);
            }
            _ => {}
        }
    }

    /// Removes `identity`'s entries that `gone` picks.
    fn remove(&mut self, identity: &str, gone: impl Fn(&Access) -> bool) {
        let Some(held) = self.by_identity.get_mut(identity) else {
            return;
        };
        let before = held.len();
        held.retain(|a| !gone(a));
        self.len -= before - held.len();
        if held.is_empty() {
            self.by_identity.remove(identity);
        }
    }

    /// True when `identity` holds `entitlement` on `system`.
    pub fn holds(&self, identity: &str, system: &str, entitlement: &str) -> bool {
        self.by_identity
            .get(identity)
            .is_some_and(|held| find(held, system, entitlement).is_ok())
    }

    /// Every entitlement held, sorted by identity, system, entitlement.
    pub fn entries(&self) -> impl Iterator<Item = &Access> {
        let mut ids: Vec<(&String, &Vec<Access>)> = self.by_identity.iter().collect();
        ids.sort_unstable_by_key(|(identity, _)| *identity);
        ids.into_iter().flat_map(|(_, held)| held.iter())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn from_checkpoint(c: Checkpoint) -> AccessState {
        let mut state = AccessState {
            records: c.records,
            ..AccessState::default()
        };
        for a in c.access {
            let held = match state.by_identity.get_mut(&a.identity) {
                Some(held) => held,
                None => state.by_identity.entry(a.identity.clone()).or_default(),
            };
            // A checkpoint lists each entry once, in order; one that does not is read as
            // the ordered map read it (the last of equal keys wins).
            match find(held, &a.system, &a.entitlement) {
                Ok(i) => held[i] = a,
                Err(i) => {
                    held.insert(i, a);
                    state.len += 1;
                }
            }
        }
        state
    }

    /// The checkpoint of this state at the start of `month`, after record `after`.
    pub fn checkpoint(&self, month: &str, after: &str) -> Checkpoint {
        Checkpoint {
            v: super::ledger::FORMAT_VERSION,
            month: month_label(month),
            after: after.to_string(),
            records: self.records,
            access: self.entries().cloned().collect(),
        }
    }

    /// `self.checkpoint(month, after).to_json()`, written from the state without copying it.
    ///
    /// Written here in serde_json's pretty layout, byte for byte (a checkpoint is checked
    /// by blob id, so these bytes are the format; a test holds them to `to_json`): a
    /// month's checkpoint is megabytes of names, and serde_json's escaper looks at each
    /// byte of them, where a name that needs no escape is copied whole.
    pub fn checkpoint_json(&self, month: &str, after: &str) -> String {
        let mut out = Vec::with_capacity(256 + self.len * 320);
        out.extend_from_slice(b"{\n  \"v\": ");
        out.extend_from_slice(super::ledger::FORMAT_VERSION.to_string().as_bytes());
        out.extend_from_slice(b",\n  \"month\": ");
        json_str(&mut out, &month_label(month));
        out.extend_from_slice(b",\n  \"after\": ");
        json_str(&mut out, after);
        out.extend_from_slice(b",\n  \"records\": ");
        out.extend_from_slice(self.records.to_string().as_bytes());
        out.extend_from_slice(b",\n  \"access\": [");
        let key = |out: &mut Vec<u8>, name: &str| {
            out.extend_from_slice(b",\n      \"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\": ");
        };
        let mut any = false;
        for a in self.entries() {
            out.extend_from_slice(if any { b",\n    {" } else { b"\n    {" });
            any = true;
            // The fields in `Access`'s order, absent options left out as serde leaves them.
            out.extend_from_slice(b"\n      \"identity\": ");
            json_str(&mut out, &a.identity);
            for (name, value) in [
                ("system", Some(&a.system)),
                ("entitlement", Some(&a.entitlement)),
                ("client", a.client.as_ref()),
                ("role", a.role.as_ref()),
            ] {
                if let Some(v) = value {
                    key(&mut out, name);
                    json_str(&mut out, v);
                }
            }
            for (name, value) in [("since", Some(&a.since)), ("expires", a.expires.as_ref())] {
                if let Some(t) = value {
                    key(&mut out, name);
                    // Writing to a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut out, t);
                }
            }
            key(&mut out, "revision");
            json_str(&mut out, &a.revision);
            key(&mut out, "run");
            json_str(&mut out, &a.run);
            out.extend_from_slice(b"\n    }");
        }
        out.extend_from_slice(if any { b"\n  ]\n}\n" } else { b"]\n}\n" });
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Appends `s` as a JSON string, as serde_json writes it: copied whole when it holds
/// nothing serde_json escapes (control characters, `"` and `\`).
fn json_str(out: &mut Vec<u8>, s: &str) {
    // A fold rather than `all`: no early exit, so the compiler checks many bytes at once.
    let escaped = s
        .bytes()
        .fold(false, |e, b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escaped {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Effective access at the start of a month, written next to its month file as
/// `ledger/YYYY/MM.checkpoint.json`. `audit verify` checks it against a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Format version.
    pub v: u32,
    /// `2026-11`.
    pub month: String,
    /// Hash of the last record before this month (the chain's genesis for the first).
    pub after: String,
    /// How many records come before this month.
    pub records: u64,
    /// Every entitlement held at the start of the month.
    pub access: Vec<Access>,
}

impl Checkpoint {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// True for a JSON line that may change access (an applied change or an observed
/// baseline); other lines are counted without a full parse. serde_json writes
/// `"result":"applied"` and `"event":"observed"` exactly.
pub fn may_change_access(line: &str) -> bool {
    line.contains("\"result\":\"applied\"") || line.contains("\"event\":\"observed\"")
}

/// `ledger/2026/11.jsonl` → `2026-11`.
pub fn month_label(month: &str) -> String {
    let m = month
        .trim_start_matches("ledger/")
        .trim_end_matches(".jsonl");
    m.replace('/', "-")
}

/// The month file a time falls in, relative to the audit root.
pub fn month_of(time: Timestamp) -> String {
    month_path("", time)
}

/// Reads a checkpoint if present.
pub fn read_checkpoint(
    src: &LedgerSource<'_>,
    month: &str,
) -> Result<Option<Checkpoint>, LedgerError> {
    let path = checkpoint_path(month);
    match src.read(&path)? {
        None => Ok(None),
        Some(text) => {
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| LedgerError::Checkpoint {
                    file: src.display_path(&path),
                    source,
                })
        }
    }
}

/// Replays the records of one month file up to `until` (inclusive). Lines that cannot
/// change access are skipped without a full parse.
fn replay_month(
    src: &LedgerSource<'_>,
    month: &str,
    state: &mut AccessState,
    until: Option<Timestamp>,
) -> Result<(), LedgerError> {
    let text = src.read(month)?.unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !may_change_access(line) {
            state.records += 1;
            continue;
        }
        // Records after the instant are skipped on their `time` alone (written second).
        if let Some(t) = until
            && let Some(time) = line_time(line)
            && time > t
        {
            continue;
        }
        let r: Record = serde_json::from_str(line).map_err(|source| LedgerError::Parse {
            file: src.display_path(month),
            line: i + 1,
            source,
        })?;
        if let Some(t) = until
            && r.time > t
        {
            continue;
        }
        state.apply(&r);
    }
    Ok(())
}

/// Effective access at the start of `month` (a `ledger/YYYY/MM.jsonl` name, which need
/// not exist): from the nearest checkpoint at or before it, replaying the months between.
pub fn state_before(
    src: &LedgerSource<'_>,
    months: &[String],
    month: &str,
) -> Result<AccessState, LedgerError> {
    let earlier: Vec<&String> = months.iter().filter(|m| m.as_str() < month).collect();
    if months.iter().any(|m| m == month)
        && let Some(c) = read_checkpoint(src, month)?
    {
        return Ok(AccessState::from_checkpoint(c));
    }
    let mut start = 0;
    let mut state = AccessState::default();
    for (i, m) in earlier.iter().enumerate().rev() {
        if let Some(c) = read_checkpoint(src, m)? {
            state = AccessState::from_checkpoint(c);
            start = i;
            break;
        }
    }
    for m in &earlier[start..] {
        replay_month(src, m, &mut state, None)?;
    }
    Ok(state)
}

/// Effective access at instant `at`, from the ledger alone.
pub fn state_at(src: &LedgerSource<'_>, at: Timestamp) -> Result<AccessState, LedgerError> {
    let months = src.months()?;
    let month = month_of(at);
    let mut state = state_before(src, &months, &month)?;
    if months.contains(&month) {
        replay_month(src, &month, &mut state, Some(at))?;
    }
    Ok(state)
}

/// Effective access after the last record, and that record's hash.
pub fn state_at_end(src: &LedgerSource<'_>) -> Result<(AccessState, String), LedgerError> {
    let months = src.months()?;
    let Some(last) = months.last() else {
        return Ok((AccessState::default(), GENESIS.to_string()));
    };
    let mut state = state_before(src, &months, last)?;
    let text = src.read(last)?.unwrap_or_default();
    let mut head = GENESIS.to_string();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line).map_err(|source| LedgerError::Parse {
            file: src.display_path(last),
            line: i + 1,
            source,
        })?;
        head = r.hash.clone();
        state.apply(&r);
    }
    Ok((state, head))
}

/// Every record about one person (identity compared case-insensitively), oldest first.
pub fn history(src: &LedgerSource<'_>, identity: &str) -> Result<Vec<Record>, LedgerError> {
    Ok(history_traced(src, identity)?.records)
}

/// A person's history and how it was read.
#[derive(Clone, Debug)]
pub struct History {
    pub records: Vec<Record>,
    /// Closed months read from their history index (super::index).
    pub indexed: usize,
    /// Months scanned line by line: the newest (open) month, months without an index,
    /// and months whose index does not match (never trusted blindly).
    pub scanned: usize,
}

/// [`history`], reading each closed month from its index when the index can be trusted:
/// the source is git, no commit but latchkey's changed `audit/` since its last audit
/// commit (the anchor), the month's manifest names the month file as it is (by blob id),
/// the person's bucket has the lines the manifest counts and each of its records still
/// hashes to its `hash`. Any other month is scanned, so a stale or edited index never
/// gives a wrong history; `audit verify` reports it.
pub fn history_traced(src: &LedgerSource<'_>, identity: &str) -> Result<History, LedgerError> {
    let needle = identity.to_lowercase();
    let months = src.months()?;
    let ids = if index_trusted(src) {
        src.ledger_ids()?
    } else {
        None
    };
    let bucket = index::bucket_of(&needle);
    let mut out = History {
        records: Vec::new(),
        indexed: 0,
        scanned: 0,
    };
    for (i, month) in months.iter().enumerate() {
        let closed = i + 1 < months.len();
        if closed
            && let Some(month_id) = ids.as_ref().and_then(|ids| ids.get(month))
            && let Some(records) = from_index(src, month, *month_id, &bucket, &needle)?
        {
            out.records.extend(records);
            out.indexed += 1;
            continue;
        }
        scan_month(src, month, &needle, &mut out.records)?;
        out.scanned += 1;
    }
    Ok(out)
}

/// True when indexes of `src` may be read: a git source whose `audit/` no commit but
/// latchkey's changed since its last audit commit.
fn index_trusted(src: &LedgerSource<'_>) -> bool {
    let LedgerSource::Git { repo, rev, root } = src else {
        return false;
    };
    super::anchor::find(repo, rev, root).is_some_and(|a| a.problem().is_none())
}

/// A month's records about `needle` from its index, or `None` when the index is absent
/// or does not match the month file (the caller scans the month).
fn from_index(
    src: &LedgerSource<'_>,
    month: &str,
    month_id: git2::Oid,
    bucket: &str,
    needle: &str,
) -> Result<Option<Vec<Record>>, LedgerError> {
    let Some(text) = src.read(&index::manifest_path(month))? else {
        return Ok(None);
    };
    let Ok(manifest) = serde_json::from_str::<index::Manifest>(&text) else {
        return Ok(None);
    };
    if !manifest.indexes(month_id) {
        return Ok(None);
    }
    let want = manifest.counts.get(bucket).copied().unwrap_or(0);
    let lines = if want == 0 {
        String::new()
    } else {
        let path = format!("{}/{bucket}.jsonl", index::bucket_dir(month));
        match src.read(&path)? {
            Some(t) => t,
            None => return Ok(None),
        }
    };
    let mut out = Vec::new();
    let mut count = 0;
    for line in lines.lines() {
        count += 1;
        let Ok(r) = serde_json::from_str::<Record>(line) else {
            return Ok(None);
        };
        if !super::ledger::seal_holds(&r) {
            return Ok(None);
        }
        if r.identity.as_deref().map(str::to_lowercase).as_deref() == Some(needle) {
            out.push(r);
        }
    }
    Ok((count == want).then_some(out))
}

/// Appends the records of `month` about `needle` (lower-cased), read line by line.
fn scan_month(
    src: &LedgerSource<'_>,
    month: &str,
    needle: &str,
    out: &mut Vec<Record>,
) -> Result<(), LedgerError> {
    let text = src.read(month)?.unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        // A cheap pre-filter on the `identity` value, without parsing the line.
        if !line_identity(line).is_some_and(|i| i.eq_ignore_ascii_case(needle)) {
            continue;
        }
        let r: Record = serde_json::from_str(line).map_err(|source| LedgerError::Parse {
            file: src.display_path(month),
            line: i + 1,
            source,
        })?;
        if r.identity.as_deref().map(str::to_lowercase).as_deref() == Some(needle) {
            out.push(r);
        }
    }
    Ok(())
}

/// The `time` of a ledger line as serde_json writes it (`{"v":1,"time":"…",`), if the
/// line has that shape; otherwise the caller parses the whole line.
fn line_time(line: &str) -> Option<Timestamp> {
    let rest = line.strip_prefix("{\"v\":1,\"time\":\"")?;
    rest[..rest.find('"')?].parse().ok()
}

/// The raw `identity` value of a ledger line (addresses hold no JSON escapes).
fn line_identity(line: &str) -> Option<&str> {
    let start = line.find("\"identity\":\"")? + "\"identity\":\"".len();
    let rest = &line[start..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Event, Trigger};

    fn applied(change: &str, identity: &str, system: &str, ent: &str) -> Record {
        let mut r = Record::new(
            Event::Change,
            "2026-03-01T00:00:00Z".parse().unwrap(),
            "run",
            "main@sha1:00",
            Trigger::Manual,
        );
        r.change = Some(change.into());
        r.identity = Some(identity.into());
        r.system = Some(system.into());
        r.entitlement = (!ent.is_empty()).then(|| ent.to_string());
        r.result = Some("applied".into());
        r
    }

    #[test]
    fn an_offboarding_removes_that_persons_access_on_that_system_only() {
        let mut s = AccessState::default();
        for (i, sys, e) in [
            ("a@x.example", "s1", "e1"),
            ("a@x.example", "s1", "e2"),
            ("a@x.example", "s10", "e1"),
            ("a@x.example", "s2", "e1"),
            ("a@x.examplez", "s1", "e1"),
            ("a@x.exampl", "s1", "e1"),
            ("b@x.example", "s1", "e1"),
        ] {
            s.apply(&applied("grant", i, sys, e));
        }
        s.apply(&applied("disable-account", "a@x.example", "s1", ""));
        let left: Vec<(&str, &str, &str)> = s
            .entries()
            .map(|a| {
                (
                    a.identity.as_str(),
                    a.system.as_str(),
                    a.entitlement.as_str(),
                )
            })
            .collect();
        assert_eq!(
            left,
            [
                ("a@x.exampl", "s1", "e1"),
                ("a@x.example", "s10", "e1"),
                ("a@x.example", "s2", "e1"),
                ("a@x.examplez", "s1", "e1"),
                ("b@x.example", "s1", "e1"),
            ]
        );
        s.apply(&applied("delete-account", "a@x.example", "s2", ""));
        assert!(!s.holds("a@x.example", "s2", "e1"));
        assert!(s.holds("a@x.example", "s10", "e1"));
    }

    #[test]
    fn the_checkpoint_written_from_the_state_is_the_checkpoints_json() {
        let mut s = AccessState::default();
        assert_eq!(
            s.checkpoint_json("ledger/2026/03.jsonl", GENESIS),
            s.checkpoint("ledger/2026/03.jsonl", GENESIS).to_json()
        );
        s.apply(&applied("grant", "a@x.example", "s1", "e1"));
        s.apply(&applied("grant", "b@x.example", "s1", ""));
        assert_eq!(
            s.checkpoint_json("ledger/2026/03.jsonl", "ab"),
            s.checkpoint("ledger/2026/03.jsonl", "ab").to_json()
        );
        // Every optional field, and names that serde_json escapes (or does not: DEL and
        // non-ASCII are written as they are).
        let mut odd = applied("grant", "c\"q\"@x.example", "s\\1", "e\n\t\u{1}\u{7f}é✓");
        odd.client = Some("client-\u{1f}".into());
        odd.role = Some("role é".into());
        odd.expires = Some("2026-04-01T00:00:00.5Z".parse().unwrap());
        odd.run = "run \"1\"".into();
        s.apply(&odd);
        let mut plain = applied("grant", "d@x.example", "s1", "e1");
        plain.role = Some("viewer".into());
        s.apply(&plain);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s.checkpoint_json("ledger/2026/03.jsonl", "a\"b"),
            s.checkpoint("ledger/2026/03.jsonl", "a\"b").to_json()
        );
    }

    #[test]
    fn access_granted_and_revoked_again_leaves_the_state_it_found() {
        let mut s = AccessState::default();
        s.apply(&applied("grant", "a@x.example", "s1", "e1"));
        let before = s.clone();
        s.apply(&applied("grant", "a@x.example", "s2", "e1"));
        s.apply(&applied("grant", "b@x.example", "s1", "e1"));
        s.apply(&applied("revoke", "a@x.example", "s2", "e1"));
        s.apply(&applied("disable-account", "b@x.example", "s1", ""));
        s.records = before.records;
        assert_eq!((s.len(), &s), (1, &before));
        s.apply(&applied("revoke", "a@x.example", "s1", "e1"));
        assert!(s.is_empty());
    }
}
