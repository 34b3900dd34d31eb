//! Ledger benchmark (not a timed test): generates 1,000,000 records over 24 months into a
//! temporary git repository through the ledger types (sealed, hash-chained, with month
//! checkpoints), then times `who --at` at several instants and `audit verify`, printing
//! seconds, peak RSS and the machine.
//!
//!     cargo run --release --example ledger_bench [RECORDS] | tee bench/results/ledger.txt

use std::time::Instant;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Repository, Signature};
use jiff::{SignedDuration, Timestamp};
use latchkey::audit::replay::{self, AccessState};
use latchkey::audit::store::{LedgerSource, checkpoint_path};
use latchkey::audit::verify::verify;
use latchkey::audit::{Event, GENESIS, Record, State, Trigger, ledger::month_path};
use latchkey::source::{Location, SourceRepo};

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
    let dir = tmp.path().join("access");
    println!("latchkey ledger benchmark");
    println!("machine: {}", machine());
    println!(
        "records: {n} over 24 months, {IDENTITIES} identities, {SYSTEMS} systems, {CLIENTS} clients"
    );

    let t0 = Instant::now();
    let git = Repository::init(&dir).expect("git init");
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
    for i in 0..n {
        let time = start + SignedDuration::from_nanos(i64::try_from(step * i128::from(i)).unwrap());
        if i % 50 == 0 {
            run = format!("run-{:08}", i / 50);
            revision = format!("main@sha1:{:040x}", rng.next());
        }
        let path = month_path("audit/", time);
        if path != month {
            if !month.is_empty() {
                flush(&month, &content, &mut update);
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
    let empty = git.treebuilder(None).unwrap().write().unwrap();
    let tree_oid = update
        .create_updated(&git, &git.find_tree(empty).unwrap())
        .expect("tree");
    let tree = git.find_tree(tree_oid).unwrap();
    let sig = Signature::now("latchkey", "latchkey@localhost").unwrap();
    git.commit(Some("HEAD"), &sig, &sig, "generated ledger", &tree, &[])
        .expect("commit");
    let ledger_bytes: u64 = walk_size(&dir.join(".git"));
    println!(
        "generated in {:.1} s: {} entitlements held at the end, git objects {:.0} MiB",
        t0.elapsed().as_secs_f64(),
        access.len(),
        ledger_bytes as f64 / 1048576.0
    );
    drop(held);
    drop(access);

    let repo = SourceRepo::open(&Location::Path(dir.clone()), tmp.path()).expect("open");
    let src = LedgerSource::Git {
        rev: repo.resolve("HEAD").expect("HEAD"),
        repo: &repo,
        root: "audit/".into(),
    };
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
        let s = replay::state_at(&src, at.parse().unwrap()).expect("who --at");
        println!(
            "  at {at}: {:>6} entitlements in {:.3} s, peak RSS {:.0} MiB",
            s.len(),
            t.elapsed().as_secs_f64(),
            peak_rss_mib()
        );
    }
    reset_peak();
    let t = Instant::now();
    let h = replay::history(&src, "person4242@client2.example").expect("history");
    println!(
        "history of one person: {} records in {:.3} s, peak RSS {:.0} MiB",
        h.len(),
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    reset_peak();
    let t = Instant::now();
    let v = verify(&src).expect("verify");
    println!(
        "audit verify: {} records, {} months, {} checkpoints, {} in {:.2} s, peak RSS {:.0} MiB",
        v.records,
        v.months,
        v.checkpoints,
        if v.broken.is_none() {
            "intact"
        } else {
            "BROKEN"
        },
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    if let Some(b) = v.broken {
        println!("  {b}");
        std::process::exit(1);
    }
}

fn walk_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    };
    rd.flatten().map(|e| walk_size(&e.path())).sum()
}
