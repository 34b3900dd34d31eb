//! Times validate, a full plan against an in-sync portal, and a re-plan after a one-file
//! change within one process (the controller's incremental path). Prints figures and the
//! process's peak memory (VmHWM). Run from the generated directory so the portal's
//! relative path resolves: see bench/run.sh.
//!
//! `bench_plan --repo repo.git --now 2026-06-01T00:00:00Z --mode validate|plan|incremental`

#[path = "../bench/synth.rs"]
mod synth;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use jiff::{SignedDuration, Timestamp};

use latchkey::audit::Trigger;
use latchkey::connectors::{Registry, SecretSource};
use latchkey::reconcile::{Options, Reconciler};
use latchkey::source::{Location, SourceRepo};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Load and validate HEAD (cold cache).
    Validate,
    /// Full plan of HEAD against the portal (cold cache).
    Plan,
    /// Plan HEAD, then commit a one-file change and plan again, several times.
    Incremental,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    repo: PathBuf,
    #[arg(long, default_value = "2026-06-01T00:00:00Z")]
    now: Timestamp,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Re-plans after one-file changes (incremental mode).
    #[arg(long, default_value_t = 5)]
    edits: usize,
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn opts(now: Timestamp) -> Options {
    Options {
        rev: "main".into(),
        branch: None,
        subpath: String::new(),
        now,
        dry_run: true,
        push: false,
        allow_mass_revoke: None,
        allow_rewind: None,
        allow_broken_ledger: None,
        trigger: Trigger::Manual,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let open = || {
        SourceRepo::open(&Location::Path(a.repo.clone()), &a.repo)
            .map(|r| Reconciler::new(r, Registry::builtin(SecretSource::default())))
    };
    let mut rec = open()?;
    match a.mode {
        Mode::Validate => {
            let t = Instant::now();
            let rev = rec.repo.resolve("main")?;
            let loaded = rec.load(&rev, "", a.now)?;
            let took = t.elapsed();
            println!(
                "validate: {:.0} ms, {} members, {} grants, {} diagnostics, valid={}, peak RSS {:.0} MB",
                ms(took),
                loaded.catalog.members.len(),
                loaded.catalog.grants().count(),
                loaded.diagnostics.len(),
                loaded.is_valid(),
                peak_rss_mb()
            );
        }
        Mode::Plan => {
            let t = Instant::now();
            let planned = rec.plan(&opts(a.now)).await?;
            let took = t.elapsed();
            println!(
                "plan: {:.0} ms, {} members, {} grants, {} changes, peak RSS {:.0} MB",
                ms(took),
                planned.loaded.catalog.members.len(),
                planned.loaded.catalog.grants().count(),
                planned.plan.changes.len(),
                peak_rss_mb()
            );
        }
        Mode::Incremental => {
            let t = Instant::now();
            let first = rec.plan(&opts(a.now)).await?;
            let cold = t.elapsed();
            let clients = first.loaded.catalog.clients.len().saturating_sub(1).max(1);
            // As the controller after applying it: each re-plan below also uses the
            // last applied revision, to tell removals in git from drift.
            rec.repo.git().reference(
                "refs/latchkey/applied/main",
                first.loaded.revision.oid,
                true,
                "bench: the generated revision is applied",
            )?;
            drop(first);
            println!("incremental: first (cold) plan {:.0} ms", ms(cold));
            let mut times = Vec::new();
            for i in 0..a.edits {
                // One member file changes: its first member is offboarded (a change planned).
                let path = synth::members_path((i * 7919) % clients);
                let head = rec.repo.resolve("main")?;
                let text = rec.repo.file_at(&head, &path)?.ok_or("no members file")?;
                let edited = text.replacen("  grants:\n", "  offboarded: true\n  grants:\n", 1);
                synth::commit_file(
                    rec.repo.git(),
                    &path,
                    &edited,
                    &format!("Edit {path}"),
                    a.now - SignedDuration::from_hours(1),
                )?;
                let t = Instant::now();
                let planned = rec.plan(&opts(a.now)).await?;
                let took = t.elapsed();
                // The same steps again, one by one, for the profile: what a re-plan of
                // an unchanged revision costs in each (every cache warm).
                let t = Instant::now();
                let loaded = rec.load(&planned.loaded.revision, "", a.now)?;
                let load_took = t.elapsed();
                let t = Instant::now();
                let desired = latchkey::plan::Desired::at_cached(
                    &loaded.catalog,
                    a.now,
                    &mut rec.desired_cache,
                );
                let desired_took = t.elapsed();
                let t = Instant::now();
                let system = &loaded.catalog.systems["portal"];
                let snapshot = rec.registry.connect("portal", &system.spec)?.read().await?;
                let read_took = t.elapsed();
                let t = Instant::now();
                let actual =
                    std::collections::BTreeMap::from([("portal".to_string(), Ok(snapshot))]);
                let plan = latchkey::plan::diff(&latchkey::plan::Inputs {
                    pending: &latchkey::plan::Pending::new(),
                    catalog: &loaded.catalog,
                    desired: &desired,
                    actual: &actual,
                    previous: None,
                    revision: String::new(),
                    native_expiry: Default::default(),
                });
                let diff_took = t.elapsed();
                drop((loaded, desired, actual, plan));
                println!(
                    "incremental: re-plan after editing {path}: {:.0} ms, {} changes \
                     (steps: load {:.0} ms, desired state {:.0} ms, read portal {:.0} ms, diff {:.0} ms)",
                    ms(took),
                    planned.plan.changes.len(),
                    ms(load_took),
                    ms(desired_took),
                    ms(read_took),
                    ms(diff_took)
                );
                times.push(took);
            }
            times.sort();
            println!(
                "incremental: re-plan median {:.0} ms (min {:.0}, max {:.0}) over {} one-file edits, peak RSS {:.0} MB",
                ms(times[times.len() / 2]),
                ms(times[0]),
                ms(times[times.len() - 1]),
                times.len(),
                peak_rss_mb()
            );
        }
    }
    Ok(())
}
