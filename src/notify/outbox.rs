//! The durable outbox: `<git dir>/latchkey/notify/<branch>.jsonl`, next to the journal's
//! outcome log, so a restart neither loses a notification nor sends one twice.
//!
//! One JSON line per change of state, appended and flushed to disk (`fsync`) before the
//! state counts: `queued` (with the whole delivery, which holds no secret), then
//! `delivered`, `failed` (after its attempts) or `dropped` (the queue was full). Read
//! back, the last line of a key wins; a torn last line (a crash mid-write) is skipped,
//! which leaves that delivery in its previous state.
//!
//! It is kept small: on open and every [`COMPACT_EVERY`] appends it is rewritten (to a
//! temporary file, synced, renamed over) with the queued deliveries in full and, for
//! finished ones, only their key, state and how long the key is needed to recognise the
//! event again (`keepUntil`: a grant's expiry for `grant-expiring`, a week otherwise).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind};

/// Appends between two compactions.
pub const COMPACT_EVERY: usize = 4096;

/// How long a finished delivery of an event that cannot come back is remembered.
const REMEMBER: SignedDuration = SignedDuration::from_hours(7 * 24);

/// One event for one notifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The Notifier's name.
    pub notifier: String,
    pub event: Event,
}

impl Delivery {
    /// The outbox key: one delivery per notifier and event id.
    pub fn key(&self) -> String {
        format!("{}/{}", self.notifier, self.event.id)
    }

    /// Until when its key must be kept to recognise the same event derived again.
    fn keep_until(&self) -> Timestamp {
        match (self.event.event, self.event.expires) {
            (EventKind::GrantExpiring | EventKind::ReviewDue, Some(at)) => at.max(self.event.time),
            _ => self.event.time,
        }
        .saturating_add(REMEMBER)
        .unwrap_or(Timestamp::MAX)
    }
}

/// Where a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Accepted; not yet answered with a 2xx.
    Queued,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed (or the notifier cannot be used).
    Failed,
    /// The queue was full when it was offered: never sent.
    Dropped,
}

impl State {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Dropped => "dropped",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    key: String,
    state: State,
    at: Timestamp,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    keep_until: Timestamp,
    /// Set on `queued` lines only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery: Option<Delivery>,
    /// Why it failed (never a URL or a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why the outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("notification outbox {}: {source}", path.display())]
pub struct OutboxError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The outbox of one branch.
pub struct Outbox {
    path: PathBuf,
    entries: BTreeMap<String, Line>,
    file: std::fs::File,
    appended: usize,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`, compacted at `now`.
    pub fn open(path: &Path, now: Timestamp) -> Result<Outbox, OutboxError> {
        let io = |source| OutboxError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut entries: BTreeMap<String, Line> = BTreeMap::new();
        for line in text.lines() {
            let Ok(l) = serde_json::from_str::<Line>(line) else {
                continue;
            };
            let delivery = l.delivery.clone();
            let slot = entries.entry(l.key.clone()).or_insert(l.clone());
            // A finished line carries no delivery: keep the queued line's.
            *slot = Line {
                delivery: delivery.or(slot.delivery.take()),
                ..l
            };
        }
        let mut outbox = Outbox {
            path: path.to_path_buf(),
            entries,
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io)?,
            appended: 0,
        };
        outbox.compact(now)?;
        Ok(outbox)
    }

    /// True when the delivery is known in any state: it is never offered again.
    pub fn knows(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The state of a delivery.
    pub fn state(&self, key: &str) -> Option<State> {
        self.entries.get(key).map(|l| l.state)
    }

    /// The deliveries still queued (to send again after a restart), oldest first.
    pub fn queued(&self) -> Vec<Delivery> {
        let mut out: Vec<(Timestamp, Delivery)> = self
            .entries
            .values()
            .filter(|l| l.state == State::Queued)
            .filter_map(|l| Some((l.at, l.delivery.clone()?)))
            .collect();
        out.sort_by_key(|(at, _)| *at);
        out.into_iter().map(|(_, d)| d).collect()
    }

    /// Records `d` as queued (durably) at `now`.
    pub fn queue(&mut self, d: &Delivery, now: Timestamp) -> Result<(), OutboxError> {
        self.append(Line {
            key: d.key(),
            state: State::Queued,
            at: now,
            attempts: 0,
            keep_until: d.keep_until(),
            delivery: Some(d.clone()),
            error: None,
        })
    }

    /// Records how a delivery ended.
    pub fn settle(
        &mut self,
        d: &Delivery,
        state: State,
        attempts: u32,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<(), OutboxError> {
        self.append(Line {
            key: d.key(),
            state,
            at: now,
            attempts,
            keep_until: d.keep_until(),
            delivery: None,
            error,
        })?;
        if self.appended >= COMPACT_EVERY {
            self.compact(now)?;
        }
        Ok(())
    }

    fn append(&mut self, mut line: Line) -> Result<(), OutboxError> {
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| OutboxError {
                path: self.path.clone(),
                source,
            })?;
        self.appended += 1;
        if line.delivery.is_none()
            && let Some(old) = self.entries.get_mut(&line.key)
        {
            line.delivery = old.delivery.take();
        }
        self.entries.insert(line.key.clone(), line);
        Ok(())
    }

    /// Rewrites the file with what is still needed at `now`: queued deliveries in full,
    /// finished ones by key until their `keepUntil`.
    fn compact(&mut self, now: Timestamp) -> Result<(), OutboxError> {
        let io = |source| OutboxError {
            path: self.path.clone(),
            source,
        };
        self.entries
            .retain(|_, l| l.state == State::Queued || l.keep_until >= now);
        let mut text = String::new();
        for l in self.entries.values() {
            let mut l = l.clone();
            if l.state != State::Queued {
                l.delivery = None;
            }
            text.push_str(&serde_json::to_string(&l).unwrap_or_default());
            text.push('\n');
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.appended = 0;
        Ok(())
    }

    /// The number of deliveries the outbox remembers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it remembers none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, kind: EventKind, time: Timestamp) -> Delivery {
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": id, "event": kind.as_str(), "time": time.to_string(),
            "recipients": [], "message": "m",
        }))
        .unwrap();
        Delivery {
            notifier: "ops".into(),
            event,
        }
    }

    #[test]
    fn a_reopened_outbox_resends_queued_never_delivered_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify").join("main.jsonl");
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let (a, b) = (
            delivery("a", EventKind::Hold, now),
            delivery("b", EventKind::Refusal, now),
        );
        let mut o = Outbox::open(&path, now).unwrap();
        o.queue(&a, now).unwrap();
        o.queue(&b, now).unwrap();
        o.settle(&a, State::Delivered, 2, None, now).unwrap();
        drop(o);
        // A crash mid-write leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"key\":\"ops/b\",\"sta").unwrap();
        let o = Outbox::open(&path, now).unwrap();
        assert_eq!(o.state(&a.key()), Some(State::Delivered));
        assert_eq!(o.queued(), vec![b.clone()]);
    }

    #[test]
    fn compaction_forgets_finished_deliveries_once_they_cannot_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.jsonl");
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let d = delivery("a", EventKind::Hold, now);
        let q = delivery("q", EventKind::Hold, now);
        let mut o = Outbox::open(&path, now).unwrap();
        o.queue(&d, now).unwrap();
        o.settle(&d, State::Delivered, 1, None, now).unwrap();
        o.queue(&q, now).unwrap();
        drop(o);
        let soon = now + SignedDuration::from_hours(24);
        assert!(Outbox::open(&path, soon).unwrap().knows(&d.key()));
        let later = now + SignedDuration::from_hours(8 * 24);
        let o = Outbox::open(&path, later).unwrap();
        assert!(!o.knows(&d.key()));
        assert_eq!(o.queued(), vec![q], "a queued delivery is never forgotten");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
