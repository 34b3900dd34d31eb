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
    let out = env.run(&["validate", REPO, "--rev", "main", "--now", NOW]);
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
    // The baseline: frank's seeded acme:viewer is in the portal and in sync, so it is on
    // record as observed and his report row is not "not yet applied".
    let report =
        std::fs::read_to_string(work.path().join("demo/access/audit/access/acme.md")).unwrap();
    let frank = report.lines().find(|l| l.contains("Frank Field")).unwrap();
    assert!(!frank.contains("not yet applied"), "{frank}");
    let history = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "history",
            "frank@acme.example",
            "access",
            "--format",
            "json",
        ])
        .current_dir(work.path().join("demo"))
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    let records = history["records"].as_array().unwrap();
    let brief: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["event"].as_str().unwrap(),
                r["change"].as_str().unwrap_or("-"),
                r["entitlement"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert!(
        brief.contains(&"observed grant acme:viewer".to_string()),
        "{brief:?}"
    );
    assert!(
        brief.contains(&"observed grant acme:finance".to_string()),
        "{brief:?}"
    );
    assert!(
        brief.contains(&"change revoke acme:finance".to_string()),
        "{brief:?}"
    );
}
