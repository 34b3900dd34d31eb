//! `latchkey audit verify`: walks every month file in order, recomputes each record's
//! hash and `prev` link, checks each month checkpoint against a replay, and checks that
//! `state.yaml`'s `ledgerHead` is the last record (so a truncated tail is noticed too),
//! and checks each closed month's history index against its month file.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::mpsc::SyncSender;

use git2::Oid;
use jiff::Timestamp;
use serde::Serialize;

use super::index;
use super::ledger::{
    FORMAT_VERSION, GENESIS, HashBuffers, PlainRecord, Record, fast_hash, hash_of_owned,
};
use super::replay::{AccessState, Applied, Checkpoint, counts, month_label};
use super::state::State;
use super::store::{LedgerError, LedgerSource, checkpoint_path};

/// What is wrong at the first broken place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakKind {
    /// The line is not a JSON record.
    Unparseable,
    /// The record's `v` is a format this latchkey does not know.
    UnknownVersion,
    /// `hash` does not match the record's content: the record was edited.
    Edited,
    /// `prev` is not the hash of the record before: a record was deleted, reordered or
    /// truncated before this line (or a month file removed).
    BrokenLink,
    /// A month checkpoint does not match the ledger before it.
    Checkpoint,
    /// `state.yaml`'s `ledgerHead` is not the last record, or the chain lacks the head
    /// anchored in latchkey's last audit commit: the tail (or audit/) was removed.
    Truncated,
    /// A commit that is not latchkey's audit commit changed audit/ after the last one.
    EditedOutside,
    /// A month's history index does not match the index its month file gives.
    Index,
}

/// The first broken place in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// Path relative to the repository root (or the directory given).
    pub file: String,
    /// 1-based line, when the problem is on a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub kind: BreakKind,
    pub detail: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.detail),
            None => write!(f, "{}: {}", self.file, self.detail),
        }
    }
}

/// The outcome of a verification.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub records: u64,
    pub months: usize,
    pub checkpoints: usize,
    /// Month history indexes checked against their month files.
    pub indexes: usize,
    /// Hash of the last record verified.
    pub head: String,
    /// The first break, if any (verification stops there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<Broken>,
    /// Lines this verification walked (the rest were verified before and resumed after).
    #[serde(skip)]
    pub walked: u64,
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// Verifies the whole ledger of `src`. I/O failures are errors; tampering is reported
/// in [`Verification::broken`].
pub fn verify(src: &LedgerSource<'_>) -> Result<Verification, LedgerError> {
    verify_anchored(src, None)
}

/// [`verify`], also checking that the chain holds the record `anchor` names (the last
/// one latchkey wrote, from outside `audit/`): a deleted `audit/` or a removed tail is
/// then reported even when what is left links up.
pub fn verify_anchored(
    src: &LedgerSource<'_>,
    anchor: Option<&super::anchor::Anchor>,
) -> Result<Verification, LedgerError> {
    Ok(verify_from(src, anchor, None)?.0)
}

/// Where an intact verification of a git revision ended: everything before the newest
/// month file then (by git object id) and the replay at its start. A later verification
/// resumes there when none of those objects changed, and verifies from genesis when any
/// did, so a break anywhere is still found.
#[derive(Clone, Debug)]
pub struct Resume {
    root: String,
    /// Every `ledger/YYYY/<name>` entry of the months before `from`, with its object id.
    closed: BTreeMap<String, Oid>,
    /// The month file verification resumes at (the newest one when this was made).
    from: String,
    /// The month before `from` (for messages).
    before: Option<String>,
    head: String,
    state: AccessState,
    records: u64,
    checkpoints: usize,
    indexes: usize,
    /// How far into `from` the verification got (all of it then).
    open: Option<Progress>,
}

/// Where an intact verification ended inside the newest month file: after every line
/// of its blob then. A later one resumes after that line only when the month's blob now
/// is that blob followed by lines this process appended ([`Incremental::appended`]),
/// which it knows without reading the month; any other blob (an edit, another writer's
/// append) is walked from the month's first line, as before.
#[derive(Clone, Debug)]
struct Progress {
    /// The month file's blob that was verified.
    blob: Oid,
    /// Its lines (the next one is line `lines + 1`).
    lines: usize,
    head: String,
    state: AccessState,
    records: u64,
    checkpoints: usize,
    indexes: usize,
}

/// Month blobs this process wrote by appending lines to another: blob → (the blob it
/// extends, the lines appended).
type Grown = HashMap<Oid, (Oid, String)>;

/// How many appends [`Incremental`] remembers between verifications (a controller
/// verifies before each apply, so it needs one or two); past that it forgets them and
/// walks the month from its start once.
const GROWN_LIMIT: usize = 64;

/// Where a walk starts: genesis, or a [`Resume`].
struct Start {
    skip: usize,
    head: String,
    state: AccessState,
    before: Option<String>,
    records: u64,
    checkpoints: usize,
    indexes: usize,
    /// The resumed point inside the month at `skip`, with the lines appended since.
    open: Option<(Progress, String)>,
    /// The month-start fields of the resume this start came from (kept for the next).
    closed: Option<BTreeMap<String, Oid>>,
}

/// The controller's verification: the first from genesis, each later one from where the
/// last intact one ended (see [`Resume`]), and none again for a revision already
/// verified. A broken result is always the one a verification from genesis gives.
#[derive(Default)]
pub struct Incremental {
    resume: Option<Resume>,
    last: Option<(Oid, String, Option<String>, Verification)>,
    grown: Grown,
}

impl Incremental {
    /// [`verify_anchored`] of `src`, resumed where the last intact verification ended.
    pub fn verify(
        &mut self,
        src: &LedgerSource<'_>,
        anchor: Option<&super::anchor::Anchor>,
    ) -> Result<Verification, LedgerError> {
        let key = match src {
            LedgerSource::Git { rev, root, .. } => {
                Some((rev.oid, root.clone(), anchor.map(|a| a.head.clone())))
            }
            LedgerSource::Dir(_) => None,
        };
        if let (Some((oid, root, head)), Some((l_oid, l_root, l_head, v))) = (&key, &self.last)
            && oid == l_oid
            && root == l_root
            && head == l_head
        {
            return Ok(v.clone());
        }
        // The resume point is consumed (its replay continues in place rather than being
        // copied); a walk that does not end intact leaves none, and the next starts
        // from genesis, as a broken result always does.
        let resumed = self.resume.take();
        let had = resumed.is_some();
        let (mut v, mut resume) = verify_owned(src, anchor, resumed, &self.grown)?;
        if v.broken.is_some() && had {
            // Report exactly what a verification from genesis reports (the first break,
            // an anchor that lies before the resumed part).
            (v, resume) = verify_owned(src, anchor, None, &Grown::new())?;
        }
        self.resume = resume;
        self.grown.clear();
        self.last = key.map(|(oid, root, head)| (oid, root, head, v.clone()));
        Ok(v)
    }

    /// Tells the verifier that this process wrote month blob `to` as blob `from`
    /// followed by `lines` (whole lines, each ending in a newline): the next
    /// verification of `to` then walks `lines` only, after what it verified of `from`.
    /// Lines that do not end in a newline are not remembered (the month is walked).
    pub fn appended(&mut self, from: Oid, to: Oid, lines: &str) {
        if !lines.is_empty() && !lines.ends_with('\n') {
            return;
        }
        if self.grown.len() >= GROWN_LIMIT {
            self.grown.clear();
        }
        self.grown.insert(to, (from, lines.to_string()));
    }

    /// How many records the last intact verification replayed before the month it
    /// resumes at (0 before any): what the next one skips.
    pub fn resumes_after(&self) -> u64 {
        self.resume.as_ref().map_or(0, |r| r.records)
    }
}

/// [`verify_anchored`], resuming at `resume` when it still applies to `src`; also
/// returns where this verification ended, for the next (git sources, intact ledgers).
pub fn verify_from(
    src: &LedgerSource<'_>,
    anchor: Option<&super::anchor::Anchor>,
    resume: Option<&Resume>,
) -> Result<(Verification, Option<Resume>), LedgerError> {
    verify_owned(src, anchor, resume.cloned(), &Grown::new())
}

/// [`verify_from`] consuming the resume point, with the appends `grown` knows of.
fn verify_owned(
    src: &LedgerSource<'_>,
    anchor: Option<&super::anchor::Anchor>,
    resume: Option<Resume>,
    grown: &Grown,
) -> Result<(Verification, Option<Resume>), LedgerError> {
    let mut seen_anchor = anchor.is_none_or(|a| a.head == GENESIS);
    let (v, resume) = verify_chain(
        src,
        anchor.map(|a| a.head.as_str()),
        &mut seen_anchor,
        resume,
        grown,
    )?;
    if v.broken.is_some() {
        return Ok((v, None));
    }
    let Some(a) = anchor else {
        return Ok((v, resume));
    };
    if let Some(problem) = a.problem() {
        let v = Verification {
            broken: Some(Broken {
                file: src.display_path(""),
                line: None,
                kind: BreakKind::EditedOutside,
                detail: problem,
            }),
            ..v
        };
        return Ok((v, None));
    }
    if seen_anchor {
        return Ok((v, resume));
    }
    let v = Verification {
        broken: Some(Broken {
            file: src.display_path("ledger/"),
            line: None,
            kind: BreakKind::Truncated,
            detail: format!(
                "the ledger does not hold the last record latchkey wrote ({}, audit commit {}): \
                 audit/ was deleted or records were removed from its end",
                short(&a.head),
                a.commit
            ),
        }),
        ..v
    };
    Ok((v, None))
}

/// The start a [`Resume`] gives on `src`, when nothing it covers changed: after its
/// [`Progress`] when the newest month only grew by lines `grown` knows of, else at the
/// start of the month it names.
fn resumed_start(
    src: &LedgerSource<'_>,
    ids: Option<&BTreeMap<String, Oid>>,
    months: &[String],
    resume: Option<Resume>,
    grown: &Grown,
) -> Option<Start> {
    let (r, ids, LedgerSource::Git { root, .. }) = (resume?, ids?, src) else {
        return None;
    };
    if *root != r.root {
        return None;
    }
    let prefix = r.from.trim_end_matches(".jsonl");
    let closed = ids.range::<str, _>((Bound::Unbounded, Bound::Excluded(prefix)));
    if !closed.eq(r.closed.iter()) {
        return None;
    }
    let skip = months.iter().position(|m| *m == r.from)?;
    let still_newest = skip + 1 == months.len();
    let open = r
        .open
        .filter(|_| still_newest)
        .and_then(|p| Some((appended_since(ids.get(&r.from)?, &p, grown)?, p)))
        .map(|(lines, p)| (p, lines));
    Some(Start {
        skip,
        head: r.head,
        state: r.state,
        before: r.before,
        records: r.records,
        checkpoints: r.checkpoints,
        indexes: r.indexes,
        open,
        closed: Some(r.closed),
    })
}

/// The lines appended to the blob `p` verified to give blob `now`, oldest first, when
/// `grown` links them (`now` itself, with none appended); `None` otherwise.
fn appended_since(now: &Oid, p: &Progress, grown: &Grown) -> Option<String> {
    let mut at = *now;
    let mut parts = Vec::new();
    while at != p.blob {
        if parts.len() > grown.len() {
            return None;
        }
        let (from, lines) = grown.get(&at)?;
        parts.push(lines.as_str());
        at = *from;
    }
    Some(parts.into_iter().rev().collect())
}

/// Blob comparisons handed to a second thread while the walk goes on: each text must
/// be the content of the blob id its tree names (a checkpoint as the replay gives it, an
/// index bucket as its month gives it). Hashing them is a large part of a verification,
/// and it needs nothing but the bytes.
struct Later {
    tx: SyncSender<Vec<(String, Oid)>>,
    /// A batch could not be handed over (the thread stopped at a difference).
    failed: Cell<bool>,
}

impl Later {
    fn same(&self, batch: Vec<(String, Oid)>) {
        if self.tx.send(batch).is_err() {
            self.failed.set(true);
        }
    }
}

/// What a walk knows of the objects: the tree's ids (git sources) and where deferred
/// comparisons go (none: compare in place).
#[derive(Clone, Copy)]
struct Objects<'a> {
    ids: Option<&'a BTreeMap<String, Oid>>,
    later: Option<&'a Later>,
}

/// Walks the ledger of a git source with its blob comparisons on a second thread
/// ([`Later`]). That walk only decides "intact": when it finds a break, or any deferred
/// comparison differs, the ledger is walked again in order with every comparison in
/// place, so the break reported is exactly the first one, as before.
fn verify_chain(
    src: &LedgerSource<'_>,
    anchor: Option<&str>,
    seen_anchor: &mut bool,
    resume: Option<Resume>,
    grown: &Grown,
) -> Result<(Verification, Option<Resume>), LedgerError> {
    let seen_before = *seen_anchor;
    if matches!(src, LedgerSource::Git { .. }) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(String, Oid)>>(4);
        let later = Later {
            tx,
            failed: Cell::new(false),
        };
        let deferred = std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("verify-blobs".into())
                .spawn_scoped(s, move || {
                    rx.iter().all(|batch| {
                        batch
                            .iter()
                            .all(|(text, id)| index::blob_id(text.as_bytes()) == *id)
                    })
                })
                .ok()?;
            let walked = walk(src, anchor, seen_anchor, resume, grown, Some(&later));
            let failed = later.failed.get();
            drop(later);
            let same = worker.join().unwrap_or(false);
            Some((walked, same && !failed))
        });
        if let Some((Ok(walked), true)) = deferred
            && walked.0.broken.is_none()
        {
            return Ok(walked);
        }
        // The resume point went into the first walk: the walk in order starts from
        // genesis (it reports the first break, as a verification from genesis does).
        *seen_anchor = seen_before;
        return walk(src, anchor, seen_anchor, None, grown, None);
    }
    walk(src, anchor, seen_anchor, resume, grown, None)
}

fn walk(
    src: &LedgerSource<'_>,
    anchor: Option<&str>,
    seen_anchor: &mut bool,
    resume: Option<Resume>,
    grown: &Grown,
    later: Option<&Later>,
) -> Result<(Verification, Option<Resume>), LedgerError> {
    let months = src.months()?;
    let ids = src.ledger_ids()?;
    let objs = Objects {
        ids: ids.as_ref(),
        later,
    };
    let mut start = resumed_start(src, ids.as_ref(), &months, resume, grown).unwrap_or(Start {
        skip: 0,
        head: GENESIS.to_string(),
        state: AccessState::default(),
        before: None,
        records: 0,
        checkpoints: 0,
        indexes: 0,
        open: None,
        closed: None,
    });
    let mut out = Verification {
        records: start.records,
        months: months.len(),
        checkpoints: start.checkpoints,
        indexes: start.indexes,
        head: start.head,
        broken: None,
        walked: 0,
    };
    let mut state = start.state;
    let mut prev_month: Option<String> = start.before;
    let mut buf = HashBuffers::default();
    let mut next: Option<Resume> = None;
    let mut pending: Option<Broken> = None;
    // Lines of the month resumed in that are already verified.
    let mut skipped_lines;
    // The lines of the newest month, when a later walk may resume after them.
    let mut open_end: Option<usize> = None;
    for (mi, month) in months.iter().enumerate().skip(start.skip) {
        let closed = mi + 1 < months.len();
        // Resumed inside this month: its start is the resume's, moved on as it is; the
        // walk continues after the verified lines, with the lines appended since.
        let resumed = match start.open.take() {
            Some((p, lines)) if mi == start.skip && !closed => Some((p, lines)),
            _ => None,
        };
        if !closed && let (Some(ids), LedgerSource::Git { root, .. }) = (&ids, src) {
            let prefix = month.trim_end_matches(".jsonl");
            let (head, month_state) = match &resumed {
                Some(_) => (std::mem::take(&mut out.head), std::mem::take(&mut state)),
                None => (out.head.clone(), state.clone()),
            };
            next = Some(Resume {
                root: root.clone(),
                closed: match (resumed.is_some(), start.closed.take()) {
                    (true, Some(c)) => c,
                    _ => ids
                        .range::<str, _>((Bound::Unbounded, Bound::Excluded(prefix)))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                },
                from: month.clone(),
                before: prev_month.clone(),
                head,
                state: month_state,
                records: out.records,
                checkpoints: out.checkpoints,
                indexes: out.indexes,
                open: None,
            });
        }
        let blob;
        let owned;
        let text: &str = match resumed {
            Some((p, lines)) => {
                skipped_lines = p.lines;
                out.head = p.head;
                state = p.state;
                out.records = p.records;
                out.checkpoints = p.checkpoints;
                out.indexes = p.indexes;
                owned = lines;
                &owned
            }
            None => match month_blob(src, ids.as_ref(), month)? {
                // Read in place from the object (no copy); a month that is not UTF-8 is
                // read the ordinary way, which reports it.
                Some(b) if std::str::from_utf8(b.content()).is_ok() => {
                    skipped_lines = 0;
                    blob = b;
                    std::str::from_utf8(blob.content()).unwrap_or_default()
                }
                _ => {
                    skipped_lines = 0;
                    owned = src.read(month)?.unwrap_or_default();
                    &owned
                }
            },
        };
        let mut index = closed.then(index::Builder::default);
        let mut lines = skipped_lines;
        for (i, line) in text.lines().enumerate() {
            let n = skipped_lines + i + 1;
            lines = n;
            out.walked += 1;
            // The fast path accepts a line only when it is a plain record (see
            // `PlainRecord`) that links and hashes; anything else is decided by the
            // `Value` path below, as before.
            let fast = fast_hash(line, &mut buf)
                .filter(|(r, h)| {
                    r.v == FORMAT_VERSION && r.prev == out.head && *h == r.hash.as_bytes()
                })
                .and_then(|(r, _)| Some((applied(&r, line)?, r)));
            let (record, plain) = match fast {
                Some((change, r)) => {
                    if n == 1
                        && let Some(b) = pending.take().map_or_else(
                            || {
                                check_checkpoint(
                                    src,
                                    objs,
                                    month,
                                    &out.head,
                                    &state,
                                    &mut out.checkpoints,
                                )
                            },
                            |b| Ok(Some(b)),
                        )?
                    {
                        out.broken = Some(b);
                        return Ok((out, None));
                    }
                    out.head.clear();
                    out.head.push_str(r.hash);
                    (None, Some((r, change)))
                }
                None => {
                    let at = At {
                        month,
                        n,
                        head: &out.head,
                        prev_month: prev_month.as_deref(),
                    };
                    match slow_line(
                        src,
                        objs,
                        &at,
                        line,
                        &state,
                        &mut out.checkpoints,
                        &mut pending,
                    )? {
                        Ok((expected, record)) => {
                            out.head = expected;
                            (record, None)
                        }
                        Err(b) => {
                            out.broken = Some(b);
                            return Ok((out, None));
                        }
                    }
                }
            };
            if anchor == Some(out.head.as_str()) {
                *seen_anchor = true;
            }
            out.records += 1;
            if let Some(ix) = &mut index {
                match (&plain, &record) {
                    (Some((r, _)), _) => ix.add(r.identity, line),
                    (None, Some(r)) => ix.add(r.identity.as_deref(), line),
                    (None, None) => ix.add(index::identity_of(line).as_deref(), line),
                }
            }
            match (plain, record) {
                (Some((_, Some(change))), _) => {
                    state.records += 1;
                    state.apply_change(&change);
                }
                (_, Some(r)) => state.apply(&r),
                _ => state.records += 1,
            }
        }
        if let Some(b) = pending.take() {
            // The month after held no line to report it at.
            out.broken = Some(b);
            return Ok((out, None));
        }
        if let Some(ix) = index {
            // Reported once the next month's first link holds, so a removed tail is
            // reported as the broken link it is, not as an index that no longer matches.
            pending = check_index(src, objs, month, text, ix, &mut out.indexes)?;
        }
        if !closed {
            // Resumable after its last line only when that line is whole: appended
            // lines then are lines of their own.
            open_end = (text.is_empty() || text.ends_with('\n')).then_some(lines);
        }
        prev_month = Some(month.clone());
    }
    if let (Some(r), Some(lines), Some(blob)) = (
        next.as_mut(),
        open_end,
        ids.as_ref()
            .and_then(|ids| months.last().and_then(|m| ids.get(m))),
    ) {
        r.open = Some(Progress {
            blob: *blob,
            lines,
            head: out.head.clone(),
            state: std::mem::take(&mut state),
            records: out.records,
            checkpoints: out.checkpoints,
            indexes: out.indexes,
        });
    }
    if let Some(text) = src.read("state.yaml")?
        && let Ok(s) = State::parse(&text)
        && !s.ledger_head.is_empty()
        && s.ledger_head != out.head
    {
        let last = prev_month
            .map(|m| src.display_path(&m))
            .unwrap_or_else(|| "the ledger".into());
        out.broken = Some(Broken {
            file: src.display_path("state.yaml"),
            line: None,
            kind: BreakKind::Truncated,
            detail: format!(
                "ledgerHead is {} but the ledger ends with {}: records were removed from the end of {last} (or later months removed)",
                short(&s.ledger_head),
                short(&out.head)
            ),
        });
        return Ok((out, None));
    }
    Ok((out, next))
}

/// A month file's blob from a git source, by the id its tree gives (`None` from a
/// directory source or when the tree has no such entry).
fn month_blob<'r>(
    src: &LedgerSource<'r>,
    ids: Option<&BTreeMap<String, Oid>>,
    month: &str,
) -> Result<Option<git2::Blob<'r>>, LedgerError> {
    let (LedgerSource::Git { repo, .. }, Some(id)) = (src, ids.and_then(|ids| ids.get(month)))
    else {
        return Ok(None);
    };
    Ok(repo.git().find_blob(*id).ok())
}

/// What replaying a plain line does: `Some(None)` when it changes nothing (counted only),
/// `Some(Some(change))` for an applied change, and `None` when the line must take the
/// `Value` path (its times do not parse, which that path reports). A line replays
/// exactly as there: only when [`may_change_access`] finds it and the record counts.
fn applied<'a>(r: &PlainRecord<'a>, line: &str) -> Option<Option<Applied<'a>>> {
    let counted = counts(r.event, r.result);
    if !(counted && result_written_plainly(r, line) || super::replay::may_change_access(line)) {
        return Some(None);
    }
    // The `Value` path parses the whole typed record here, so both times must parse.
    let time: Timestamp = r.time.parse().ok()?;
    let expires: Option<Timestamp> = match r.expires {
        Some(e) => Some(e.parse().ok()?),
        None => None,
    };
    let (true, Some(identity), Some(system)) = (counts(r.event, r.result), r.identity, r.system)
    else {
        return Some(None);
    };
    Some(Some(Applied {
        change: r.change,
        identity,
        system,
        entitlement: r.entitlement.unwrap_or_default(),
        client: r.client,
        role: r.role,
        time,
        expires,
        revision: r.revision,
        run: r.run,
    }))
}

/// True when `line` holds `"result":"applied"` at the plain record's `result`: then
/// [`may_change_access`](super::replay::may_change_access) finds it, without a search
/// through the whole line (the value is borrowed from the line, so where it starts is
/// known).
fn result_written_plainly(r: &PlainRecord<'_>, line: &str) -> bool {
    const KEY: &str = "\"result\":\"";
    let Some(value) = r.result.filter(|v| *v == "applied") else {
        return false;
    };
    let at = (value.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
    at <= line.len()
        && line.as_bytes()[..at].ends_with(KEY.as_bytes())
        && line.as_bytes()[at..].starts_with(b"applied\"")
}

/// Where a line is: month file, 1-based line, the hash of the record before it.
struct At<'a> {
    month: &'a str,
    n: usize,
    head: &'a str,
    prev_month: Option<&'a str>,
}

/// One line the fast path did not accept, checked as the ledger defines it: parsed to a
/// `serde_json::Value`, re-serialised with sorted keys and without `hash`, hashed. The
/// hash it gives, and the record when the line may change access; or the break.
type Line = Result<(String, Option<Record>), Broken>;

fn slow_line(
    src: &LedgerSource<'_>,
    objs: Objects<'_>,
    at: &At<'_>,
    line: &str,
    state: &AccessState,
    checkpoints: &mut usize,
    pending_index: &mut Option<Broken>,
) -> Result<Line, LedgerError> {
    let (n, head) = (at.n, at.head);
    let fail = |kind, detail| {
        Ok(Err(Broken {
            file: src.display_path(at.month),
            line: Some(n),
            kind,
            detail,
        }))
    };
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return fail(BreakKind::Unparseable, format!("not a ledger record ({e})")),
    };
    let v = value.get("v").and_then(|v| v.as_u64());
    if v != Some(u64::from(FORMAT_VERSION)) {
        return fail(
            BreakKind::UnknownVersion,
            format!(
                "unknown ledger format version {} (this latchkey reads v={FORMAT_VERSION})",
                v.map(|v| v.to_string())
                    .unwrap_or_else(|| "(missing)".into())
            ),
        );
    }
    let prev = value.get("prev").and_then(|p| p.as_str()).unwrap_or("");
    if prev != head {
        let before = match (n, at.prev_month) {
            (1, Some(pm)) => format!(
                "the last record of {} (its tail was removed, or a month file between was removed)",
                src.display_path(pm)
            ),
            (1, None) => "the genesis (records before it were removed)".to_string(),
            _ => format!("line {}", n - 1),
        };
        return fail(
            BreakKind::BrokenLink,
            format!(
                "broken link: prev is {} but the record before is {} ({}): a record was deleted, reordered or truncated before this line",
                short(prev),
                short(head),
                before
            ),
        );
    }
    // The checkpoint (and the index of the month before) is checked once the month's
    // first link holds, so a removed tail is reported at the line that no longer
    // follows, not at the checkpoint.
    if n == 1 {
        if let Some(b) = pending_index.take() {
            return Ok(Err(b));
        }
        if let Some(b) = check_checkpoint(src, objs, at.month, head, state, checkpoints)? {
            return Ok(Err(b));
        }
    }
    let hash = value
        .get("hash")
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string();
    let expected = hash_of_owned(value);
    if hash != expected {
        return fail(
            BreakKind::Edited,
            format!(
                "hash mismatch: the record says {} but its content hashes to {}: the record was edited",
                short(&hash),
                short(&expected)
            ),
        );
    }
    if !super::replay::may_change_access(line) {
        return Ok(Ok((expected, None)));
    }
    match serde_json::from_str::<Record>(line) {
        Ok(r) => Ok(Ok((expected, Some(r)))),
        Err(e) => fail(BreakKind::Unparseable, format!("not a ledger record ({e})")),
    }
}

/// Checks a closed month's history index, if it has one, against the index its month
/// file gives (see [`index`]). A month without an index is not a break (ledgers written
/// before indexes; `history` scans it).
fn check_index(
    src: &LedgerSource<'_>,
    objs: Objects<'_>,
    month: &str,
    text: &str,
    built: index::Builder,
    count: &mut usize,
) -> Result<Option<Broken>, LedgerError> {
    let manifest_path = index::manifest_path(month);
    let dir = index::bucket_dir(month);
    let stored_manifest = src.read(&manifest_path)?;
    let stored = src.list(&dir)?;
    if stored_manifest.is_none() && stored.is_empty() {
        return Ok(None);
    }
    *count += 1;
    let broken = |path: &str, detail: String| {
        Some(Broken {
            file: src.display_path(path),
            line: None,
            kind: BreakKind::Index,
            detail,
        })
    };
    let month_id = objs
        .ids
        .and_then(|ids| ids.get(month).copied())
        .unwrap_or_else(|| index::blob_id(text.as_bytes()));
    let expected = built.finish(month, month_id);
    let Some(manifest) = stored_manifest else {
        return Ok(broken(
            &manifest_path,
            format!(
                "is missing but {dir}/ holds an index of {}",
                month_label(month)
            ),
        ));
    };
    if manifest != expected.manifest.1 {
        return Ok(broken(
            &manifest_path,
            format!(
                "does not match the month file: the index of {} was edited, or the month \
                 file changed after it was indexed",
                month_label(month)
            ),
        ));
    }
    let mut want: BTreeMap<String, String> = expected
        .buckets
        .into_iter()
        .map(|(p, text)| (p.rsplit('/').next().unwrap_or(&p).to_string(), text))
        .collect();
    let mut deferred = Vec::new();
    for (name, id) in &stored {
        let path = format!("{dir}/{name}");
        let Some(text) = want.remove(name) else {
            return Ok(broken(
                &path,
                "is not part of the index the month file gives: it was added".into(),
            ));
        };
        let same = match (id, objs.later) {
            (Some(id), Some(_)) => {
                deferred.push((text, *id));
                true
            }
            (Some(id), None) => *id == index::blob_id(text.as_bytes()),
            (None, _) => src.read(&path)?.as_deref() == Some(text.as_str()),
        };
        if !same {
            return Ok(broken(
                &path,
                format!(
                    "does not hold the lines of {} whose identity falls in this bucket: the \
                     index was edited",
                    month_label(month)
                ),
            ));
        }
    }
    if let Some(name) = want.keys().next() {
        return Ok(broken(
            &format!("{dir}/{name}"),
            "is missing from the index: it was deleted".into(),
        ));
    }
    if let Some(later) = objs.later {
        later.same(deferred);
    }
    Ok(None)
}

/// Checks a month's checkpoint, if it has one, against the chain and the replay so far.
fn check_checkpoint(
    src: &LedgerSource<'_>,
    objs: Objects<'_>,
    month: &str,
    head: &str,
    state: &AccessState,
    count: &mut usize,
) -> Result<Option<Broken>, LedgerError> {
    let path = checkpoint_path(month);
    if let (Some(later), Some(id)) = (objs.later, objs.ids.and_then(|ids| ids.get(&path))) {
        // Checked by blob id on the other thread: what latchkey writes for this replay.
        *count += 1;
        later.same(vec![(state.checkpoint_json(month, head), *id)]);
        return Ok(None);
    }
    let Some(text) = src.read(&path)? else {
        return Ok(None);
    };
    *count += 1;
    let broken = |detail: String| {
        Some(Broken {
            file: src.display_path(&path),
            line: None,
            kind: BreakKind::Checkpoint,
            detail,
        })
    };
    // What latchkey writes for this replay, byte for byte, needs no parse (the parse
    // below accepts the same content written another way, as before).
    if text == state.checkpoint_json(month, head) {
        return Ok(None);
    }
    let expected = state.checkpoint(month, head);
    let c: Checkpoint = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => return Ok(broken(format!("not a ledger checkpoint ({e})"))),
    };
    if c.after != expected.after {
        return Ok(broken(format!(
            "follows record {} but the ledger before {} ends with {}",
            short(&c.after),
            month_label(month),
            short(head)
        )));
    }
    if c.records != expected.records {
        return Ok(broken(format!(
            "counts {} records before {} but the ledger has {}",
            c.records,
            month_label(month),
            expected.records
        )));
    }
    if c.access != expected.access || c.month != expected.month {
        let diff = c
            .access
            .iter()
            .find(|a| !expected.access.contains(a))
            .map(|a| {
                format!(
                    "it lists {} on {} {:?} which the replay does not",
                    a.identity, a.system, a.entitlement
                )
            })
            .or_else(|| {
                expected
                    .access
                    .iter()
                    .find(|a| !c.access.contains(a))
                    .map(|a| {
                        format!(
                            "it omits {} on {} {:?}",
                            a.identity, a.system, a.entitlement
                        )
                    })
            })
            .unwrap_or_else(|| "its month or order differs".into());
        return Ok(broken(format!(
            "does not match a replay of the ledger: {diff}"
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Event, Trigger};

    /// Three sealed records about erin, as latchkey writes them.
    fn lines() -> Vec<String> {
        let mut prev = GENESIS.to_string();
        (0..3)
            .map(|i| {
                let at = format!("2026-03-0{}T10:00:00Z", i + 1).parse().unwrap();
                let mut r = Record::new(Event::Change, at, "run-1", "main@sha1:ab", Trigger::Merge);
                r.identity = Some("erin@acme.example".into());
                r.system = Some("portal".into());
                r.change = Some("grant".into());
                r.entitlement = Some(format!("acme:e{i}"));
                r.result = Some("applied".into());
                r.seal(&prev);
                prev = r.hash.clone();
                r.to_line()
            })
            .collect()
    }

    /// Verifies a one-month ledger directory holding `lines`.
    fn verify_lines(lines: &[String]) -> Verification {
        let tmp = tempfile::tempdir().unwrap();
        let month = tmp.path().join("ledger/2026");
        std::fs::create_dir_all(&month).unwrap();
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(month.join("03.jsonl"), text).unwrap();
        verify(&LedgerSource::Dir(tmp.path().to_path_buf())).unwrap()
    }

    /// The ledger with line 2 (1-based) replaced by `edit` of it.
    fn with_line_2(edit: impl Fn(&str) -> String) -> Verification {
        let mut l = lines();
        let edited = edit(&l[1]);
        assert_ne!(edited, l[1], "the edit must change the bytes");
        l[1] = edited;
        verify_lines(&l)
    }

    fn kind(v: &Verification) -> Option<(Option<usize>, BreakKind)> {
        v.broken.as_ref().map(|b| (b.line, b.kind))
    }

    #[test]
    fn latchkeys_own_lines_take_the_fast_path_and_verify() {
        let l = lines();
        let mut buf = HashBuffers::default();
        for line in &l {
            let (r, h) = fast_hash(line, &mut buf).expect("fast path");
            assert_eq!(&h[..], r.hash.as_bytes());
        }
        let v = verify_lines(&l);
        assert_eq!(kind(&v), None);
        assert_eq!(v.records, 3);
    }

    #[test]
    fn content_edits_that_change_the_canonical_form_are_edited() {
        let edited = Some((Some(2), BreakKind::Edited));
        // A changed value.
        assert_eq!(
            kind(&with_line_2(|l| l.replace("acme:e1", "acme:e9"))),
            edited
        );
        // An added unknown field (ignored by the typed parse, kept by the Value one).
        assert_eq!(
            kind(&with_line_2(|l| l.replacen("{", "{\"extra\":\"x\",", 1))),
            edited
        );
        // An explicit null where latchkey leaves the field out.
        assert_eq!(
            kind(&with_line_2(|l| l.replacen("{", "{\"role\":null,", 1))),
            edited
        );
        // A duplicate key with another value (the last one wins in the Value).
        assert_eq!(
            kind(&with_line_2(|l| l.replacen(
                "\"prev\"",
                "\"identity\":\"mallory@evil.example\",\"prev\"",
                1
            ))),
            edited
        );
        // The same instant written another way.
        assert_eq!(
            kind(&with_line_2(|l| l.replace("T10:00:00Z", "T10:00:00+00:00"))),
            edited
        );
        // A number written as a string.
        assert_eq!(
            kind(&with_line_2(|l| l.replacen("\"v\":1", "\"v\":\"1\"", 1))),
            Some((Some(2), BreakKind::UnknownVersion))
        );
    }

    #[test]
    fn odd_bytes_hash_as_the_value_path_hashes_them_or_take_it() {
        let mut buf = HashBuffers::default();
        let value_hash = |l: &str| hash_of_owned(serde_json::from_str(l).unwrap());
        // Keys reordered and whitespace added: still plain, and the fast path gives the
        // hash the Value path gives.
        let same: [fn(&str) -> String; 2] = [
            |l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::to_string(&v).unwrap()
            },
            |l| l.replace(",\"", ", \""),
        ];
        // A duplicate key with the same value, the version as 1.0, an escape that
        // decodes to the same text, an explicit null, an unknown field: not plain, so the
        // fast path declines each and the Value path decides.
        let declined: [fn(&str) -> String; 5] = [
            |l| l.replacen("\"prev\"", "\"system\":\"portal\",\"prev\"", 1),
            |l| l.replacen("\"v\":1", "\"v\":1.0", 1),
            |l| l.replacen("portal", "p\\u006frtal", 1),
            |l| l.replacen("{", "{\"role\":null,", 1),
            |l| l.replacen("{", "{\"extra\":\"x\",", 1),
        ];
        for edit in same {
            let odd = edit(&lines()[1]);
            let (_, h) = fast_hash(&odd, &mut buf).expect("plain");
            assert_eq!(std::str::from_utf8(&h).unwrap(), value_hash(&odd));
        }
        for edit in declined {
            assert!(fast_hash(&edit(&lines()[1]), &mut buf).is_none());
        }
        let outcomes: Vec<_> = same
            .iter()
            .chain(&declined[..3])
            .map(|edit| kind(&with_line_2(edit)))
            .collect();
        assert_eq!(
            outcomes,
            [
                None,
                None,
                // The canonical form holds, but an access-changing line with a duplicate
                // field is not a record latchkey can replay (as before).
                Some((Some(2), BreakKind::Unparseable)),
                Some((Some(2), BreakKind::UnknownVersion)),
                // The escape decodes to the same value: the Value path accepts it.
                None,
            ]
        );
        // Both paths replay access: the reordered and the escaped line still grant.
        for edit in [same[0], declined[2]] {
            let mut l = lines();
            l[1] = edit(&l[1]);
            let v = verify_lines(&l);
            assert_eq!((kind(&v), v.records), (None, 3));
        }
    }

    #[test]
    fn the_sorted_writer_gives_the_value_paths_canonical_form_for_every_field() {
        // Every property the schema lists, set: a field added to Record but not to the
        // sorted writer fails here.
        let schema = serde_json::to_value(schemars::schema_for!(Record)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        let mut obj = serde_json::Map::new();
        for name in props.keys() {
            let value = match name.as_str() {
                "v" => serde_json::json!(1),
                "time" | "expires" => serde_json::json!("2026-03-01T10:00:00Z"),
                "event" => serde_json::json!("change"),
                "trigger" => serde_json::json!("merge"),
                other => serde_json::json!(format!("{other} é/✓")),
            };
            obj.insert(name.clone(), value);
        }
        let mut r: Record = serde_json::from_value(serde_json::Value::Object(obj)).unwrap();
        r.seal(GENESIS);
        let line = r.to_line();
        let (parsed, hash) = fast_hash(&line, &mut HashBuffers::default()).expect("fast path");
        assert_eq!(std::str::from_utf8(&hash).unwrap(), r.hash);
        assert_eq!(parsed.applied_by, r.applied_by.as_deref());
        assert!(crate::audit::ledger::seal_holds(&r));
        // A string with an escape is not plain: the Value path seals it.
        r.note = Some("a \"quoted\" note".into());
        r.seal(GENESIS);
        assert!(fast_hash(&r.to_line(), &mut HashBuffers::default()).is_none());
        assert!(crate::audit::ledger::seal_holds(&r));
        r.note = Some("edited".into());
        assert!(!crate::audit::ledger::seal_holds(&r));
    }
}
