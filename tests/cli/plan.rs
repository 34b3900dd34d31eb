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
    assert_eq!(plan["systems"][0]["system"], "portal");
    assert_eq!(plan["systems"][0]["managedAccounts"], 0);
    let last = &plan["changes"][10];
    assert_eq!(last["op"], "addEntitlement");
    assert_eq!(last["identity"], "dana@acme.example");
    assert_eq!(last["grant"]["expires"], "2026-12-01T18:00:00Z");
}

#[test]
fn for_grant_runs_from_the_commit_that_added_it() {
    let env = Env::base();
    env.systems();
    let zed = "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: zed\nspec:\n  \
               email: zed@acme.example\n  client: acme\n  grants:\n    - {role: tester, for: 7d}\n";
    env.commit(
        &[("clients/acme/zed.yaml", Some(zed))],
        "zed tests for a week",
    );
    let out = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let zed: Vec<_> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["identity"] == "zed@acme.example" && c["op"] == "addEntitlement")
        .collect();
    assert_eq!(zed.len(), 1, "{zed:?}");
    // Committed at 2026-11-20T12:00:00Z, so 7 days run until the 27th.
    assert_eq!(zed[0]["grant"]["expires"], "2026-11-27T12:00:00Z");
    let after = env.run(&[
        "plan",
        REPO,
        "--now",
        "2026-11-27T12:00:01Z",
        "--format",
        "json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert!(
        !plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["identity"] == "zed@acme.example"),
        "{}",
        after.stdout
    );
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

#[test]
fn a_usage_error_exits_1_not_2() {
    // 2 means "there are changes" to a CI script; a typo must not read as that.
    let env = Env::base();
    let out = env.run(&["plan", REPO, "--now", "tomorrow"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "error: invalid value 'tomorrow' for '--now <TIME>': \"tomorrow\" is not an RFC 3339 \
         timestamp with offset, e.g. 2026-12-15T18:00:00Z\n\nFor more information, try '--help'.\n"
    );
    let out = env.run(&["plan", REPO, "--base", "HEAD"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// Regression (issue 16): with every system unreachable, the Markdown plan said "No
/// changes: the systems match git"; only the exit code said otherwise.
#[test]
fn unreachable_systems_are_stated_at_the_top_of_the_markdown() {
    let env = Env::base();
    // No database exists: no system can be read.
    let out = env.run(&["plan", REPO, "--now", NOW, "--format", "markdown"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        !out.stdout.contains("the systems match git"),
        "{}",
        out.stdout
    );
    let top: Vec<&str> = out.stdout.lines().take(4).collect();
    assert_eq!(top[0], "<!-- latchkey-plan -->");
    assert!(
        top[3].starts_with("> ❌ **3 of 3 systems could not be read"),
        "{}",
        out.stdout
    );
    insta::assert_snapshot!("plan_markdown_unreachable", out.stdout);
}

#[test]
fn fail_on_drift_exits_2_on_drift_without_changes() {
    let env = Env::base();
    env.systems();
    let policy = std::fs::read_to_string(corpus().join("base/latchkey.yaml")).unwrap();
    // The portal keeps undeclared access (drift) instead of revoking it.
    let keep = policy.replacen("  prune: true\n", "  prune: false\n", 1);
    assert_ne!(keep, policy);
    env.commit(&[("latchkey.yaml", Some(&keep))], "portal: no prune");
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    let con = rusqlite::Connection::open(env.path("portal.sqlite")).unwrap();
    con.execute(
        "INSERT INTO user_roles SELECT id, 'acme:legacy' FROM users WHERE email = 'erin@acme.example'",
        [],
    )
    .unwrap();
    let plain = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(plain.code, 0, "{}", plain.stdout);
    assert!(plain.stdout.contains("0 changes"), "{}", plain.stdout);
    assert!(plain.stdout.contains("1 drift"), "{}", plain.stdout);
    let strict = env.run(&["plan", REPO, "--now", NOW, "--fail-on-drift"]);
    assert_eq!(strict.code, 2, "{}", strict.stdout);
    assert_eq!(strict.stdout, plain.stdout);
    // Without drift, the flag changes nothing.
    con.execute("DELETE FROM user_roles WHERE role = 'acme:legacy'", [])
        .unwrap();
    let clean = env.run(&["plan", REPO, "--now", NOW, "--fail-on-drift"]);
    assert_eq!(clean.code, 0, "{}", clean.stdout);
    // It is for plans against the systems, not for reviews.
    let h = env.head().to_string();
    let review = env.run(&["plan", REPO, "--base", &h, "--head", &h, "--fail-on-drift"]);
    assert_eq!(review.code, 1, "{}", review.stderr);
}
