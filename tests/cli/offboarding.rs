//! The offboarding record on examples/agency's SQLite portal: Milton (offboarded in git,
//! seeded on the portal) loses his access there, and `history` and initech's report say
//! when; while the portal refuses to disable accounts (a trigger, a real SQLite error),
//! the disable is pending since it first failed, until a later apply succeeds.

use crate::common::*;

const MILTON: &str = "milton@initech.example";

fn agency() -> Env {
    Env::agency_example("author@example.test", |_, text| text)
}

fn history_json(env: &Env) -> serde_json::Value {
    let out = env.run(&["history", MILTON, REPO, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

/// The time of Milton's `change` record on the portal with `result`, last first.
fn record_time(env: &Env, change: &str, result: &str) -> String {
    ledger_files(env, env.head())
        .into_iter()
        .flat_map(|(_, rs)| rs)
        .filter(|r| r["identity"] == MILTON && r["change"] == change && r["result"] == result)
        .map(|r| r["time"].as_str().unwrap().to_string())
        .next_back()
        .unwrap_or_else(|| panic!("no {change} {result} record"))
}

/// `2026-12-02T04:18:24.123Z` → `2026-12-02T04:18:24Z`, as reports print instants.
fn to_second(t: &str) -> String {
    let t: jiff::Timestamp = t.parse().unwrap();
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[test]
fn history_and_the_report_show_when_access_ended_and_what_is_pending() {
    let env = agency();
    let portal = env.path("portal.sqlite");
    let con = rusqlite::Connection::open(&portal).unwrap();
    con.execute_batch(
        "CREATE TRIGGER refuse_disable BEFORE UPDATE OF active ON users \
         BEGIN SELECT RAISE(ABORT, 'accounts are locked for maintenance'); END;",
    )
    .unwrap();
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(
        out.code, 1,
        "a change failed: {}\n{}",
        out.stdout, out.stderr
    );
    let failed = record_time(&env, "disable-account", "failed");
    let o = &history_json(&env)["offboarding"];
    assert_eq!(o["complete"], false, "{o:#}");
    assert_eq!(o["systems"][0]["system"], "portal");
    assert_eq!(o["systems"][0]["pending"][0]["what"], "disable-account");
    assert_eq!(o["systems"][0]["pending"][0]["since"], failed.as_str());
    let error = o["systems"][0]["pending"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("accounts are locked for maintenance"),
        "{error}"
    );
    let out = env.run(&["history", MILTON, REPO]);
    assert!(
        out.stdout.contains(&format!(
            "\nOffboarding of {MILTON}, begun {}: pending on 1 of 1 system\n  portal  pending since {}: disable-account (failed: ",
            to_second(&record_time(&env, "revoke", "applied")),
            to_second(&failed)
        )),
        "{}",
        out.stdout
    );
    let report = env.file_at(env.head(), "audit/access/initech.md").unwrap();
    assert!(
        report.contains(&format!(
            "  - portal: pending since {}: disable-account",
            to_second(&failed)
        )),
        "{report}"
    );

    // The portal accepts again: the retry applies, and access ended then.
    con.execute_batch("DROP TRIGGER refuse_disable").unwrap();
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let ended = record_time(&env, "disable-account", "applied");
    let o = &history_json(&env)["offboarding"];
    assert_eq!(o["complete"], true, "{o:#}");
    assert_eq!(o["systems"][0]["ended"], ended.as_str());
    assert!(o["systems"][0].get("pending").is_none(), "{o:#}");
    let out = env.run(&["history", MILTON, REPO]);
    assert!(
        out.stdout.contains(&format!(
            ": complete\n  portal  access ended {}\n",
            to_second(&ended)
        )),
        "{}",
        out.stdout
    );
    let report = env.file_at(env.head(), "audit/access/initech.md").unwrap();
    assert!(
        report.contains(&format!("  - portal: access ended {}", to_second(&ended))),
        "{report}"
    );
    // Someone never offboarded has no offboarding record.
    let out = env.run(&["history", "frank@acme.example", REPO, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v["offboarding"].is_null(), "{v:#}");
}
