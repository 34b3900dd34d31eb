//! `latchkey audit verify`: walks every month file in order, recomputes each record's
//! hash and `prev` link, checks each month checkpoint against a replay, and checks that
//! `state.yaml`'s `ledgerHead` is the last record (so a truncated tail is noticed too).

use std::fmt;

use serde::Serialize;

use super::ledger::{FORMAT_VERSION, GENESIS, Record, hash_of_owned};
use super::replay::{AccessState, Checkpoint, month_label};
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
    /// Hash of the last record verified.
    pub head: String,
    /// The first break, if any (verification stops there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<Broken>,
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
    let mut seen_anchor = anchor.is_none_or(|a| a.head == GENESIS);
    let v = verify_chain(src, anchor.map(|a| a.head.as_str()), &mut seen_anchor)?;
    if v.broken.is_some() {
        return Ok(v);
    }
    let Some(a) = anchor else {
        return Ok(v);
    };
    if let Some(problem) = a.problem() {
        return Ok(Verification {
            broken: Some(Broken {
                file: src.display_path(""),
                line: None,
                kind: BreakKind::EditedOutside,
                detail: problem,
            }),
            ..v
        });
    }
    if seen_anchor {
        return Ok(v);
    }
    Ok(Verification {
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
    })
}

fn verify_chain(
    src: &LedgerSource<'_>,
    anchor: Option<&str>,
    seen_anchor: &mut bool,
) -> Result<Verification, LedgerError> {
    let months = src.months()?;
    let mut out = Verification {
        records: 0,
        months: months.len(),
        checkpoints: 0,
        head: GENESIS.to_string(),
        broken: None,
    };
    let mut state = AccessState::default();
    let mut prev_month: Option<&str> = None;
    for month in &months {
        let file = src.display_path(month);
        let text = src.read(month)?.unwrap_or_default();
        let broken = |line: usize, kind, detail: String| Broken {
            file: file.clone(),
            line: Some(line),
            kind,
            detail,
        };
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let value: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    out.broken = Some(broken(
                        n,
                        BreakKind::Unparseable,
                        format!("not a ledger record ({e})"),
                    ));
                    return Ok(out);
                }
            };
            let v = value.get("v").and_then(|v| v.as_u64());
            if v != Some(u64::from(FORMAT_VERSION)) {
                out.broken = Some(broken(
                    n,
                    BreakKind::UnknownVersion,
                    format!(
                        "unknown ledger format version {} (this latchkey reads v={FORMAT_VERSION})",
                        v.map(|v| v.to_string())
                            .unwrap_or_else(|| "(missing)".into())
                    ),
                ));
                return Ok(out);
            }
            let prev = value.get("prev").and_then(|p| p.as_str()).unwrap_or("");
            if prev != out.head {
                let before = match (n, prev_month) {
                    (1, Some(pm)) => format!(
                        "the last record of {} (its tail was removed, or a month file between was removed)",
                        src.display_path(pm)
                    ),
                    (1, None) => "the genesis (records before it were removed)".to_string(),
                    _ => format!("line {}", n - 1),
                };
                out.broken = Some(broken(
                    n,
                    BreakKind::BrokenLink,
                    format!(
                        "broken link: prev is {} but the record before is {} ({}): a record was deleted, reordered or truncated before this line",
                        short(prev),
                        short(&out.head),
                        before
                    ),
                ));
                return Ok(out);
            }
            // The checkpoint is checked once the month's first link holds, so a removed
            // tail is reported at the line that no longer follows, not at the checkpoint.
            if n == 1
                && let Some(b) =
                    check_checkpoint(src, month, &out.head, &state, &mut out.checkpoints)?
            {
                out.broken = Some(b);
                return Ok(out);
            }
            let hash = value
                .get("hash")
                .and_then(|p| p.as_str())
                .unwrap_or("")
                .to_string();
            let expected = hash_of_owned(value);
            if hash != expected {
                out.broken = Some(broken(
                    n,
                    BreakKind::Edited,
                    format!(
                        "hash mismatch: the record says {} but its content hashes to {}: the record was edited",
                        short(&hash),
                        short(&expected)
                    ),
                ));
                return Ok(out);
            }
            if anchor == Some(expected.as_str()) {
                *seen_anchor = true;
            }
            out.head = expected;
            out.records += 1;
            if super::replay::may_change_access(line) {
                match serde_json::from_str::<Record>(line) {
                    Ok(r) => state.apply(&r),
                    Err(e) => {
                        out.broken = Some(broken(
                            n,
                            BreakKind::Unparseable,
                            format!("not a ledger record ({e})"),
                        ));
                        return Ok(out);
                    }
                }
            } else {
                state.records += 1;
            }
        }
        prev_month = Some(month);
    }
    if let Some(text) = src.read("state.yaml")?
        && let Ok(s) = State::parse(&text)
        && !s.ledger_head.is_empty()
        && s.ledger_head != out.head
    {
        let last = prev_month
            .map(|m| src.display_path(m))
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
    }
    Ok(out)
}

/// Checks a month's checkpoint, if it has one, against the chain and the replay so far.
fn check_checkpoint(
    src: &LedgerSource<'_>,
    month: &str,
    head: &str,
    state: &AccessState,
    count: &mut usize,
) -> Result<Option<Broken>, LedgerError> {
    let path = checkpoint_path(month);
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
    let c: Checkpoint = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => return Ok(broken(format!("not a ledger checkpoint ({e})"))),
    };
    let expected = state.checkpoint(month, head);
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
