//! examples/agency: it validates, and its demo script runs green against the debug binary.

use std::path::Path;
use std::process::Command;

use crate::common::{Env, NOW, REPO, read_tree};

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency")
}

#[test]
fn example_agency_validates() {
    let env = Env::new();
    let files: Vec<_> = read_tree(&example())
        .into_iter()
        .filter(|(p, _)| p.ends_with(".yaml"))
        .collect();
    let edits: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    let head = env.commit(&edits, "example");
    let out = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "main@sha1:{head}: valid (2 systems, 6 roles, 4 clients, 9 members, 14 grants; 0 warnings)\n"
        )
    );
}

/// Needs bash, git and python3 (scripts/peers/install-demo-tools.sh installs them in CI).
#[test]
fn demo_script_runs_green() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(example().join("demo.sh"))
        .arg(work.path().join("demo"))
        .env("LATCHKEY_BIN", env!("CARGO_BIN_EXE_latchkey"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("\naudit committed: "), "{stderr}");
    let last_plan = &stdout[stdout
        .rfind("latchkey plan access   (exit 0: in sync)")
        .unwrap()..];
    assert!(
        last_plan.contains("\n0 changes: 0 to grant, 0 to revoke; 0 drift.\n"),
        "{last_plan}"
    );
    assert!(
        work.path()
            .join("demo/access/audit/access/acme.md")
            .exists()
    );
}
