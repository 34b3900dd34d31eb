//! Ledger benchmark (not a timed test): generates 1,000,000 records over 24 months into a
//! temporary git repository through the ledger types (sealed, hash-chained, with month
//! checkpoints and history indexes), in two audit commits (the second appends the last
//! 1,000 records), then times `who --at` at several instants, `history`, `audit verify`
//! and the controller's incremental verification, each against its floor measured in
//! the same run:
//!
//! - verify: every month blob read through libgit2, each line parsed by serde_json into a
//!   `Value` and hashed with SHA-256 (what any verifier of this format must do);
//! - history: `grep -c -F` of the person's `"identity":"…"` over the month files written
//!   out as plain files (a byte scan of the whole ledger, from the page cache).
//!
//!     cargo run --release --example ledger_bench [RECORDS] | tee bench/results/ledger.txt
//!
//! To iterate on one phase: `LEDGER_BENCH_REPO=DIR` generates the ledger into `DIR` once
//! and reuses it on later runs (same `RECORDS`), and `LEDGER_BENCH_ONLY=verify` times
//! `audit verify` alone (with the CPU time of it and of the floor).

use std::time::Instant;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Repository, Signature};
use jiff::{SignedDuration, Timestamp};
use latchkey::audit::index;
use latchkey::audit::replay::{self, AccessState};
use latchkey::audit::store::{LedgerSource, checkpoint_path};
use latchkey::audit::verify::{Incremental, verify};
use latchkey::audit::{Event, GENESIS, Record, State, Trigger, ledger::month_path};
use latchkey::source::{Location, SourceRepo};
use sha2::{Digest, Sha256};

/// A small deterministic generator (xorshift64*): the same ledger on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Peak resident set size (VmHWM) in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds this process used so far, user and system, every thread (100 ticks a
/// second, as Linux reports them in `/proc/self/stat`).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so each phase reports its own peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores available (nproc)")
}

const IDENTITIES: u64 = 20_000;
const SYSTEMS: u64 = 12;
const CLIENTS: u64 = 40;
const ENTITLEMENTS: [&str; 5] = ["viewer", "project", "finance", "admin", "developer"];
/// Grants kept roughly around this many held entitlements.
const TARGET_HELD: usize = 30_000;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("LEDGER_BENCH_REPO").map(std::path::PathBuf::from);
    let only_verify = std::env::var("LEDGER_BENCH_ONLY").is_ok_and(|v| v == "verify");
    let dir = kept.clone().unwrap_or_else(|| tmp.path().join("access"));
    println!("latchkey ledger benchmark");
    println!("machine: {}", machine());
    println!(
        "records: {n} over 24 months, {IDENTITIES} identities, {SYSTEMS} systems, {CLIENTS} clients"
    );
    let git;
    let first = match Repository::open(&dir) {
        // A kept repository from an earlier run (it must have been generated with the
        // same record count): its first audit commit is HEAD's parent.
        Ok(r) if kept.is_some() => {
            git = r;
            println!("reusing the ledger in {}", dir.display());
            let head = git.head().unwrap().peel_to_commit().unwrap();
            head.parent_id(0).ok()
        }
        _ => {
            git = Repository::init(&dir).expect("git init");
            generate(&git, n)
        }
    };
    let repo = SourceRepo::open(&Location::Path(dir.clone()), tmp.path()).expect("open");
    let src = LedgerSource::Git {
        rev: repo.resolve("HEAD").expect("HEAD"),
        repo: &repo,
        root: "audit/".into(),
    };
    let month_blobs = month_blobs(&git);
    if !only_verify {
        queries(&git, &src, tmp.path(), &month_blobs);
    }
    verify_phase(&git, &repo, &src, &month_blobs, first, only_verify);
}

/// Writes the ledger of `n` records into `git` in two audit commits; returns the first
/// (none when there are fewer than 1,001 records).
fn generate(git: &Repository, n: u64) -> Option<git2::Oid> {
    let dir = git.path();
    let t0 = Instant::now();
    let start: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let end: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
    let step = end.duration_since(start).as_nanos() / i128::from(n);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut held: Vec<(u64, u64, &str, u64)> = Vec::new();
    let mut access = AccessState::default();
    let mut update = TreeUpdateBuilder::new();
    let mut prev = GENESIS.to_string();
    let mut month = String::new();
    let mut content = String::new();
    let mut run = String::new();
    let mut revision = String::new();
    let flush = |path: &str, content: &str, update: &mut TreeUpdateBuilder| {
        let blob = git.blob(content.as_bytes()).expect("blob");
        update.upsert(path, blob, FileMode::Blob);
    };
    let split = n.saturating_sub(1000);
    let sig = Signature::now("latchkey", "latchkey@localhost").unwrap();
    let empty = git.treebuilder(None).unwrap().write().unwrap();
    let mut first: Option<git2::Oid> = None;
    for i in 0..n {
        if i == split && i > 0 {
            // The first audit commit: everything but the last 1,000 records.
            flush(&month, &content, &mut update);
            let state = State {
                version: 1,
                ledger_head: prev.clone(),
                ..State::default()
            };
            flush("audit/state.yaml", &state.to_yaml(), &mut update);
            let tree_oid = update
                .create_updated(git, &git.find_tree(empty).unwrap())
                .expect("tree");
            let tree = git.find_tree(tree_oid).unwrap();
            let message = format!("generated ledger\n\nLatchkey-Ledger-Head: {prev}\n");
            first = Some(
                git.commit(Some("HEAD"), &sig, &sig, &message, &tree, &[])
                    .expect("commit"),
            );
            update = TreeUpdateBuilder::new();
        }
        let time = start + SignedDuration::from_nanos(i64::try_from(step * i128::from(i)).unwrap());
        if i % 50 == 0 {
            run = format!("run-{:08}", i / 50);
            revision = format!("main@sha1:{:040x}", rng.next());
        }
        let path = month_path("audit/", time);
        if path != month {
            if !month.is_empty() {
                flush(&month, &content, &mut update);
                let closed = month.trim_start_matches("audit/");
                for (p, text) in index::build(closed, &content).files() {
                    flush(&format!("audit/{p}"), &text, &mut update);
                }
                content.clear();
            }
            let rel = path.trim_start_matches("audit/").to_string();
            let cp = access.checkpoint(&rel, &prev);
            flush(
                &format!("audit/{}", checkpoint_path(&rel)),
                &cp.to_json(),
                &mut update,
            );
            month = path;
        }
        let mut r = Record::new(Event::Change, time, &run, &revision, Trigger::Merge);
        r.author = Some("ops@northwind.example".into());
        let roll = rng.below(1000);
        if held.len() > TARGET_HELD / 2 && roll < 4 {
            // Offboarding: the account goes, with every entitlement on that system.
            let (id, sys, _, client) = held[rng.below(held.len() as u64) as usize];
            held.retain(|h| !(h.0 == id && h.1 == sys));
            r.identity = Some(format!("person{id}@client{client}.example"));
            r.system = Some(format!("system-{sys}"));
            r.client = Some(format!("client-{client}"));
            r.change = Some("disable-account".into());
            r.reason = Some("offboarded".into());
            r.result = Some("applied".into());
        } else if held.len() > TARGET_HELD / 2 && (roll < 450 || held.len() > TARGET_HELD) {
            let k = rng.below(held.len() as u64) as usize;
            let (id, sys, ent, client) = held.swap_remove(k);
            r.identity = Some(format!("person{id}@client{client}.example"));
            r.system = Some(format!("system-{sys}"));
            r.client = Some(format!("client-{client}"));
            r.change = Some("revoke".into());
            r.entitlement = Some(format!("client-{client}:{ent}"));
            r.reason = Some(
                if roll.is_multiple_of(2) {
                    "expired"
                } else {
                    "undeclared"
                }
                .into(),
            );
            r.result = Some("applied".into());
        } else {
            let id = rng.below(IDENTITIES);
            let client = id % CLIENTS;
            let sys = rng.below(SYSTEMS);
            let ent = ENTITLEMENTS[rng.below(ENTITLEMENTS.len() as u64) as usize];
            r.identity = Some(format!("person{id}@client{client}.example"));
            r.system = Some(format!("system-{sys}"));
            r.client = Some(format!("client-{client}"));
            r.change = Some("grant".into());
            r.entitlement = Some(format!("client-{client}:{ent}"));
            r.role = Some(format!("role-{ent}"));
            r.reason = Some("declared".into());
            if roll.is_multiple_of(10) {
                r.expires = Some(time + SignedDuration::from_hours(24 * 21));
            }
            if roll >= 980 {
                r.result = Some("failed".into());
                r.error = Some("connection reset by peer".into());
            } else {
                r.result = Some("applied".into());
                held.push((id, sys, ent, client));
            }
        }
        r.seal(&prev);
        prev = r.hash.clone();
        access.apply(&r);
        content.push_str(&r.to_line());
        content.push('\n');
    }
    flush(&month, &content, &mut update);
    drop(content);
    let state = State {
        version: 1,
        ledger_head: prev.clone(),
        ..State::default()
    };
    flush("audit/state.yaml", &state.to_yaml(), &mut update);
    let parent = first.map(|c| git.find_commit(c).unwrap());
    let base = match &parent {
        Some(c) => c.tree().unwrap(),
        None => git.find_tree(empty).unwrap(),
    };
    let tree_oid = update.create_updated(git, &base).expect("tree");
    let tree = git.find_tree(tree_oid).unwrap();
    let message = format!("appended ledger\n\nLatchkey-Ledger-Head: {prev}\n");
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    git.commit(Some("HEAD"), &sig, &sig, &message, &tree, &parents)
        .expect("commit");
    let ledger_bytes: u64 = walk_size(dir);
    println!(
        "generated in {:.1} s: {} entitlements held at the end, git objects {:.0} MiB",
        t0.elapsed().as_secs_f64(),
        access.len(),
        ledger_bytes as f64 / 1048576.0
    );
    first
}

/// `who --at` and `history`, each against its floor.
fn queries(
    git: &Repository,
    src: &LedgerSource<'_>,
    tmp: &std::path::Path,
    month_blobs: &[(String, git2::Oid)],
) {
    println!();
    println!("who --at (from git objects: month checkpoint + replay of at most one month)");
    for at in [
        "2025-01-15T12:00:00Z",
        "2025-06-30T23:59:59Z",
        "2025-12-31T23:00:00Z",
        "2026-03-15T12:00:00Z",
        "2026-09-01T00:00:00Z",
        "2026-12-31T23:59:59Z",
    ] {
        reset_peak();
        let t = Instant::now();
        let s = replay::state_at(src, at.parse().unwrap()).expect("who --at");
        println!(
            "  at {at}: {:>6} entitlements in {:.3} s, peak RSS {:.0} MiB",
            s.len(),
            t.elapsed().as_secs_f64(),
            peak_rss_mib()
        );
    }
    let person = "person4242@client2.example";
    let plain = tmp.join("plain");
    for (path, oid) in month_blobs {
        let file = plain.join(path.trim_start_matches("audit/"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, git.find_blob(*oid).unwrap().content()).unwrap();
    }

    println!();
    println!("history of one person");
    let t = Instant::now();
    let grep = std::process::Command::new("grep")
        .arg("-c")
        .arg("-F")
        .arg(format!("\"identity\":\"{person}\""))
        .args(
            month_blobs
                .iter()
                .map(|(p, _)| plain.join(p.trim_start_matches("audit/"))),
        )
        .output()
        .expect("grep");
    let grep_s = t.elapsed().as_secs_f64();
    let grep_count: u64 = String::from_utf8_lossy(&grep.stdout)
        .lines()
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
        .sum();
    println!(
        "  floor: grep -c -F over the month files (plain files, page cache): {grep_count} lines in {grep_s:.3} s"
    );
    reset_peak();
    let t = Instant::now();
    let h = replay::history_traced(src, person).expect("history");
    let hist_s = t.elapsed().as_secs_f64();
    println!(
        "  from git with the index: {} records in {hist_s:.3} s ({:.2}x the floor; {} months from their index, {} scanned), peak RSS {:.0} MiB",
        h.records.len(),
        hist_s / grep_s,
        h.indexed,
        h.scanned,
        peak_rss_mib()
    );
    let t = Instant::now();
    let scanned =
        replay::history_traced(&LedgerSource::Dir(plain.clone()), person).expect("history");
    println!(
        "  scan of every month (plain directory, no index): {} records in {:.3} s",
        scanned.records.len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        h.records, scanned.records,
        "history from the index and from a scan differ"
    );
}

/// `audit verify` and the controller's incremental verification against the floor.
fn verify_phase(
    git: &Repository,
    repo: &SourceRepo,
    src: &LedgerSource<'_>,
    month_blobs: &[(String, git2::Oid)],
    first: Option<git2::Oid>,
    show_cpu: bool,
) {
    println!();
    println!("audit verify");
    let (t, cpu) = (Instant::now(), cpu_s());
    let (lines, bytes) = verify_floor(git, month_blobs);
    let (floor_s, floor_cpu) = (t.elapsed().as_secs_f64(), cpu_s() - cpu);
    println!(
        "  floor: libgit2 read + serde_json Value parse + SHA-256 per line: {lines} lines, {:.0} MiB in {floor_s:.2} s",
        bytes as f64 / 1048576.0
    );
    reset_peak();
    let (t, cpu) = (Instant::now(), cpu_s());
    let v = verify(src).expect("verify");
    let (verify_s, verify_cpu) = (t.elapsed().as_secs_f64(), cpu_s() - cpu);
    println!(
        "  audit verify: {} records, {} months, {} checkpoints, {} indexes, {} in {verify_s:.2} s ({:.2}x the floor), peak RSS {:.0} MiB",
        v.records,
        v.months,
        v.checkpoints,
        v.indexes,
        if v.broken.is_none() {
            "intact"
        } else {
            "BROKEN"
        },
        verify_s / floor_s,
        peak_rss_mib()
    );
    if show_cpu {
        // Less sensitive to other load than the wall clock (both threads of verify count).
        println!(
            "  cpu time: floor {floor_cpu:.2} s, audit verify {verify_cpu:.2} s ({:.2}x)",
            verify_cpu / floor_cpu
        );
    }
    if let Some(b) = v.broken {
        println!("  {b}");
        std::process::exit(1);
    }
    if let Some(first) = first {
        let mut inc = Incremental::default();
        let at = |oid| LedgerSource::Git {
            rev: repo.revision(oid, None).expect("revision"),
            repo,
            root: "audit/".into(),
        };
        let t = Instant::now();
        let v1 = inc.verify(&at(first), None).expect("verify");
        let first_s = t.elapsed().as_secs_f64();
        let head = repo.resolve("HEAD").expect("HEAD").oid;
        let t = Instant::now();
        let v2 = inc.verify(&at(head), None).expect("verify");
        let resumed_s = t.elapsed().as_secs_f64();
        assert!(v1.broken.is_none() && v2.broken.is_none());
        println!(
            "  controller, first verification (from genesis, {} records): {first_s:.2} s",
            v1.records
        );
        println!(
            "  controller, after an audit commit appending {} records (resumed at the newest month, {} records skipped): {resumed_s:.3} s",
            v2.records - v1.records,
            inc.resumes_after()
        );
    }
}

/// Every month file's path and blob id at HEAD, oldest first.
fn month_blobs(git: &Repository) -> Vec<(String, git2::Oid)> {
    let tree = git.head().unwrap().peel_to_tree().unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        let name = e.name().unwrap_or("");
        // Month files (`audit/ledger/YYYY/MM.jsonl`), not index buckets.
        if dir.len() == "audit/ledger/YYYY/".len()
            && dir.starts_with("audit/ledger/")
            && name.len() == 8
            && name.ends_with(".jsonl")
        {
            out.push((format!("{dir}{name}"), e.id()));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out.sort();
    out
}

/// The verify floor: read, parse and hash every line, nothing else.
fn verify_floor(git: &Repository, months: &[(String, git2::Oid)]) -> (u64, u64) {
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut sink = 0u8;
    for (_, oid) in months {
        let blob = git.find_blob(*oid).unwrap();
        let content = blob.content();
        bytes += content.len() as u64;
        for line in content.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("json");
            sink ^= Sha256::digest(line)[0] ^ u8::from(v.is_object());
            lines += 1;
        }
    }
    std::hint::black_box(sink);
    (lines, bytes)
}

fn walk_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    };
    rd.flatten().map(|e| walk_size(&e.path())).sum()
}
