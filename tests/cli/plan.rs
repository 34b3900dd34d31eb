//! `latchkey plan`: formats, exit codes, and `--base/--head` review without systems.

use crate::common::*;

#[test]
fn markdown_plan_snapshot() {
    let env = Env::base();
    env.systems();
    let out = env.run(&["plan", REPO, "--now", NOW, "--format", "markdown"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    insta::assert_snapshot!("plan_markdown", out.stdout);
}

#[test]
fn json_plan_parses_with_every_change() {
    let env = Env::base();
    env.systems();
    let out = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["changes"].as_array().unwrap().len(), 11);
    assert_eq!(
        plan["revision"],
        format!("main@sha1:{}", env.head()).as_str()
    );
    assert_eq!(plan["now"], NOW);
}

#[test]
fn exit_codes_no_changes_changes_errors() {
    let env = Env::base();
    env.systems();
    assert_eq!(env.run(&["plan", REPO, "--now", NOW]).code, 2);
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    assert_eq!(env.run(&["plan", REPO, "--now", NOW]).code, 0);
    std::fs::remove_file(env.path("shop.sqlite")).unwrap();
    let out = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(!env.path("shop.sqlite").exists());
    env.commit(&[("team/bad.yaml", Some("kind: [\n"))], "bad");
    let out = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("team/bad.yaml:2:1: error: malformed YAML"),
        "{}",
        out.stderr
    );
}

#[test]
fn review_shows_gain_and_loss_without_systems() {
    let env = Env::base();
    let base = env.head();
    let members = std::fs::read_to_string(corpus().join("base/clients/acme/members.yaml")).unwrap();
    // erin trades viewer for finance.
    let changed = members.replace("    - role: viewer\n", "    - role: finance\n");
    assert_ne!(changed, members);
    let head = env.commit(
        &[("clients/acme/members.yaml", Some(&changed))],
        "erin: finance",
    );
    let (b, h) = (base.to_string(), head.to_string());
    let args = ["plan", REPO, "--now", NOW, "--base", &b, "--head", &h];
    let text = env.run(&args);
    assert_eq!(text.code, 2, "{}", text.stderr);
    insta::assert_snapshot!("review_text", text.stdout);
    let md = env.run(&[&args[..], &["--format", "markdown"]].concat());
    assert_eq!(md.code, 2, "{}", md.stderr);
    insta::assert_snapshot!("review_markdown", md.stdout);
    // No system was contacted, and none was created.
    for db in ["portal.sqlite", "staging.sqlite", "shop.sqlite"] {
        assert!(!env.path(db).exists(), "{db}");
    }
    let same = env.run(&["plan", REPO, "--now", NOW, "--base", &h, "--head", &h]);
    assert_eq!(same.code, 0, "{}", same.stdout);
}
