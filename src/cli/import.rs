//! `latchkey import`

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::{Args, ValueEnum};
use jiff::Timestamp;

use super::{CliError, Exit, SourceArgs};
use crate::connectors::{Completeness, Registry, SecretSource, Snapshot};
use crate::import::{Imported, Problem};

/// Turn a system's existing accounts into Member documents.
///
/// Reads the accounts of --system (or of every System with --all), managed by latchkey
/// or not, and prints one Member per identity on stdout: under the client it can infer
/// (from the email domains of the repository's Members and Client admins, a System that
/// belongs to one client, or the client its entitlements name), with grants of the
/// Roles whose entitlements on the imported systems it holds exactly. What it could not
/// map (an entitlement no Role grants, no inferable client, several equally good sets
/// of Roles, an account that is not latchkey's) is reported on stderr, with why.
///
/// Identities a Member already declares are left out, so the output can be committed
/// beside the repository's Systems, Roles and Clients; a plan then shows no change on
/// the imported systems for what was mapped. Accounts without latchkey's marker stay
/// out of scope until their System sets `adopt: true`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  latchkey import access --system portal > imported.yaml
  latchkey import . --all --format json | jq '.findings'")]
#[command(group = clap::ArgGroup::new("which").required(true).args(["system", "all"]))]
pub struct ImportArgs {
    /// Where the Systems, Roles and Clients are read (`--rev` default: HEAD).
    #[command(flatten)]
    pub source: SourceArgs,
    /// The System to import (repeatable).
    #[arg(long, value_name = "NAME")]
    pub system: Vec<String>,
    /// Import every System.
    #[arg(long)]
    pub all: bool,
    /// Output: yaml documents, or json ({"members": [...], "findings": [...]}) for scripts.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: ImportFormat,
}

/// Output formats of `import`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Yaml,
    Json,
}

/// Exit codes: 0 the documents were printed (findings or not), 1 errors (an invalid
/// revision, an unknown System, a system that could not be read).
pub async fn run(args: ImportArgs) -> Result<Exit, CliError> {
    let source = args.source.open()?;
    let rev = source.resolve(args.source.rev())?;
    let mut rec =
        crate::reconcile::Reconciler::new(source, Registry::builtin(SecretSource::default()));
    // Members' grant windows are checked at the present, as validate does.
    let now = Timestamp::now();
    let loaded = rec.load(&rev, &args.source.subpath, now)?;
    super::print_diagnostics(&loaded.diagnostics);
    if !loaded.is_valid() {
        eprintln!(
            "error: revision {} is invalid; fix it before importing into it",
            rev.display()
        );
        return Ok(Exit::Errors);
    }
    let cat = &loaded.catalog;
    let names: Vec<String> = if args.all {
        cat.systems.keys().cloned().collect()
    } else {
        args.system.clone()
    };
    let registry = Registry::builtin(SecretSource::default());
    let mut reads: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut failed = false;
    for name in &names {
        let Some(system) = cat.systems.get(name) else {
            eprintln!(
                "error: no System {name:?} in {} (Systems: {})",
                rev.display(),
                cat.systems.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            failed = true;
            continue;
        };
        let read = match registry.connect(name, &system.spec) {
            Ok(c) => c.read().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(snap) => {
                if let Completeness::Partial(why) = &snap.completeness {
                    eprintln!(
                        "warning: system {name} was read only in part ({why}); accounts not read are missing from the import"
                    );
                }
                reads.insert(name.clone(), snap);
            }
            Err(e) => {
                eprintln!("error: cannot read system {name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return Ok(Exit::Errors);
    }
    let imported = crate::import::import(cat, &reads);
    let header = format!(
        "# latchkey import of {} at {}, read {}",
        names.join(", "),
        rev.display(),
        now
    );
    match args.format {
        ImportFormat::Yaml => print!("{}", yaml(&header, &imported)),
        ImportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&imported).unwrap_or_default()
        ),
    }
    eprint!("{}", report(&imported));
    Ok(Exit::Ok)
}

/// The Members as YAML documents, each preceded by the file it belongs in.
fn yaml(header: &str, imported: &Imported) -> String {
    let mut out = format!("{header}\n");
    for p in &imported.members {
        let mut doc = serde_json::to_value(&p.document).unwrap_or_default();
        // `offboarded: false` is the default; leave it out as people write it.
        if let Some(spec) = doc.get_mut("spec").and_then(|s| s.as_object_mut()) {
            spec.remove("offboarded");
        }
        let text = serde_yaml::to_string(&doc).unwrap_or_default();
        let _ = write!(out, "---\n# {}\n{text}", p.file);
    }
    out
}

/// The findings for stderr, one line each, with a summary.
fn report(imported: &Imported) -> String {
    let mut out = String::new();
    for f in &imported.findings {
        let level = match f.problem {
            Problem::AlreadyDeclared | Problem::Unmarked => "note",
            _ => "warning",
        };
        let at = f
            .system
            .as_ref()
            .map(|s| format!(" on {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "{level}: {}{at}: {}", f.identity, f.message);
    }
    let unmapped = imported
        .findings
        .iter()
        .filter(|f| !matches!(f.problem, Problem::AlreadyDeclared | Problem::Unmarked))
        .count();
    let _ = writeln!(
        out,
        "imported {}; {}",
        super::count(imported.members.len(), "member"),
        if unmapped == 0 {
            "everything was mapped".to_string()
        } else {
            format!(
                "{} not mapped (see above)",
                super::count(unmapped, "finding")
            )
        }
    );
    out
}
