//! `latchkey validate` on the base repository and on each bad overlay of tests/corpus/bad.
//! Each bad case's stderr must equal its expected.txt; UPDATE_EXPECT=1 rewrites them.

use crate::common::{Env, NOW, REPO, corpus, read_tree_bytes};

#[test]
fn base_is_valid() {
    let env = Env::base();
    let out = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.ends_with(
            ": valid (3 systems, 4 roles, 2 clients, 3 members, 5 grants; 0 warnings)\n"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn each_bad_repository_is_rejected_with_exact_diagnostics() {
    check_cases("bad", 1, 15);
}

/// Validates the base with each overlay of tests/corpus/`dir` committed on top; the exit
/// code must be `code` and stderr the case's expected.txt.
fn check_cases(dir: &str, code: i32, at_least: usize) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(corpus().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= at_least,
        "the corpus has {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let env = Env::base();
        let overlay: Vec<_> = read_tree_bytes(case)
            .into_iter()
            .filter(|(p, _)| p != "expected.txt")
            .collect();
        assert!(!overlay.is_empty(), "{name}: no overlay files");
        let edits: Vec<(&[u8], Option<&[u8]>)> = overlay
            .iter()
            .map(|(p, c)| (p.as_bytes(), Some(c.as_slice())))
            .collect();
        env.commit_bytes(&edits, &name);
        let out = env.run(&["validate", REPO, "--now", NOW]);
        let expected_path = case.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &out.stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if out.code != code {
            failures.push(format!(
                "{name}: exit {} (want {code})\n{}",
                out.code, out.stderr
            ));
        } else if out.stderr != expected {
            failures.push(format!(
                "{name}: stderr differs\n--- expected\n{expected}--- actual\n{}",
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
