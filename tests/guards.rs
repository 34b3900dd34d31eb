//! The safety rules of docs/architecture.md, each tripped and each overridden, on the embedded
//! SQLite portal; plus time windows (`expires`, `starts`, `for:` from the merge commit).

mod common;

use common::{BASE, T0, Workspace, member, out, viewers};

const NOW: &str = "2026-11-20T13:00:00Z";

fn apply(ws: &Workspace, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["apply", "access", "--rev", "main", "--now", NOW];
    args.extend_from_slice(extra);
    out(&ws.latchkey(&args))
}

#[test]
fn deletion_brake_holds_mass_removal_until_overridden_and_records_both() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &viewers(8)),
        ],
        T0,
        "eight viewers",
    );
    assert_eq!(apply(&ws, &[]).0, 0);
    assert_eq!(ws.rows("portal.sqlite").len(), 8);

    // Removing six of eight is above max(5, 25% of 8 = 2).
    ws.commit(
        &[("clients/acme/members.yaml", &viewers(2))],
        T0 + 60,
        "remove six",
    );
    let (code, _, stderr) = apply(&ws, &[]);
    assert_eq!(code, 3, "{stderr}");
    let rows = ws.rows("portal.sqlite");
    assert!(
        rows.iter()
            .all(|(_, active, roles)| *active && roles == &["acme:viewer"]),
        "nothing removed: {rows:?}"
    );
    let holds: Vec<_> = ws
        .ledger()
        .into_iter()
        .filter(|r| r["event"] == "hold")
        .collect();
    assert_eq!(holds.len(), 1);
    assert_eq!(
        holds[0]["note"],
        "6 people would lose access on system \"portal\", above the deletion brake of 5 (max(5, 25% of 8 managed accounts))"
    );

    let (code, _, stderr) = apply(
        &ws,
        &[
            "--allow-mass-revoke",
            "acme team reorganised (ticket OPS-9)",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let active: Vec<_> = ws
        .rows("portal.sqlite")
        .into_iter()
        .filter(|(_, a, _)| *a)
        .map(|(e, ..)| e)
        .collect();
    assert_eq!(active, ["p1@acme.example", "p2@acme.example"]);
    let ledger = ws.ledger();
    let overrides: Vec<_> = ledger.iter().filter(|r| r["event"] == "override").collect();
    assert_eq!(overrides.len(), 1);
    assert!(
        overrides[0]["note"]
            .as_str()
            .unwrap()
            .ends_with("(overridden: acme team reorganised (ticket OPS-9))")
    );
    let offboarded = ledger
        .iter()
        .filter(|r| r["reason"] == "offboarded" && r["result"] == "applied")
        .count();
    assert_eq!(offboarded, 12, "six revocations and six disables");
}

#[test]
fn a_client_emptied_in_git_is_held() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &viewers(2)),
        ],
        T0,
        "two viewers",
    );
    assert_eq!(apply(&ws, &[]).0, 0);
    ws.commit(
        &[("clients/acme/members.yaml", "")],
        T0 + 60,
        "delete the team file",
    );
    let (code, stdout, _) = apply(&ws, &[]);
    assert_eq!(code, 3);
    assert!(
        stdout.contains(
            "HELD: client \"acme\" had grants in the last applied revision and declares none now"
        ),
        "{stdout}"
    );
    assert_eq!(ws.rows("portal.sqlite").iter().filter(|r| r.1).count(), 2);
    let (code, _, _) = apply(&ws, &["--allow-mass-revoke", "acme contract ended"]);
    assert_eq!(code, 0);
    assert_eq!(ws.rows("portal.sqlite").iter().filter(|r| r.1).count(), 0);
}

#[test]
fn a_history_rewrite_is_refused_unless_allowed() {
    let ws = Workspace::new();
    let first = ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &viewers(1)),
        ],
        T0,
        "one",
    );
    ws.commit(
        &[("clients/acme/members.yaml", &viewers(2))],
        T0 + 60,
        "two",
    );
    assert_eq!(apply(&ws, &[]).0, 0);
    // Force main back to the first commit and build a different history on it.
    let repo = git2::Repository::open(ws.repo_path()).unwrap();
    repo.reference("refs/heads/main", first, true, "rewrite")
        .unwrap();
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    ws.commit(
        &[("clients/acme/members.yaml", &viewers(3))],
        T0 + 120,
        "three, rewritten",
    );
    let before = ws.rows("portal.sqlite");
    let (code, _, stderr) = apply(&ws, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("does not descend from the last applied revision"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Pass --allow-rewind \"<reason>\" to accept it"),
        "{stderr}"
    );
    assert_eq!(ws.rows("portal.sqlite"), before, "nothing applied");
    assert!(ws.ledger().iter().any(|r| r["event"] == "refusal"));

    let (code, _, stderr) = apply(&ws, &["--allow-rewind", "restored from backup"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ws.rows("portal.sqlite").iter().filter(|r| r.1).count(), 3);
    assert!(ws.ledger().iter().any(|r| r["event"] == "override"
        && r["note"].as_str().unwrap().contains("restored from backup")));
}

#[test]
fn an_invalid_revision_applies_nothing_and_keeps_the_valid_state() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &viewers(2)),
        ],
        T0,
        "two",
    );
    assert_eq!(apply(&ws, &[]).0, 0);
    let before = ws.rows("portal.sqlite");
    let head = ws.head();
    ws.commit(
        &[(
            "clients/acme/members.yaml",
            &member("p1", "    - role: no-such-role"),
        )],
        T0 + 60,
        "typo",
    );
    let (code, _, stderr) = apply(&ws, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("clients/acme/members.yaml:8:13: error: unknown role \"no-such-role\""),
        "{stderr}"
    );
    assert_eq!(ws.rows("portal.sqlite"), before);
    assert_ne!(ws.head(), head);
    assert_eq!(ws.ledger().len(), 4, "no new record");
}

#[test]
fn undeclared_access_is_drift_without_prune_and_revoked_with_it() {
    let ws = Workspace::new();
    let no_prune = BASE.replacen(
        "  prune: true\n  offboard: disable",
        "  prune: false\n  offboard: disable",
        1,
    );
    ws.commit(
        &[
            ("latchkey.yaml", &no_prune),
            ("clients/acme/members.yaml", &viewers(1)),
        ],
        T0,
        "one",
    );
    assert_eq!(apply(&ws, &[]).0, 0);
    let c = rusqlite::Connection::open(ws.path().join("portal.sqlite")).unwrap();
    c.execute("INSERT INTO user_roles (user_id, role) SELECT id, 'acme:admin' FROM users WHERE email = 'p1@acme.example'", []).unwrap();
    let (code, stdout, _) = out(&ws.latchkey(&["plan", "access", "--now", NOW]));
    assert_eq!(code, 0, "drift is not a change: {stdout}");
    assert!(
        stdout.contains("~ portal       p1@acme.example              revoke acme:admin"),
        "{stdout}"
    );
    ws.commit(&[("latchkey.yaml", BASE)], T0 + 60, "prune");
    assert_eq!(apply(&ws, &[]).0, 0);
    assert_eq!(ws.rows("portal.sqlite")[0].2, ["acme:viewer"]);
    assert!(
        ws.ledger()
            .iter()
            .any(|r| r["reason"] == "undeclared" && r["entitlement"] == "acme:admin")
    );
}

#[test]
fn expiry_is_exact_at_the_instant() {
    let ws = Workspace::new();
    let grant = "    - role: staging-admin\n      expires: 2026-11-25T18:00:00Z";
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &member("erin", grant)),
        ],
        T0,
        "erin",
    );
    let plan = |now: &str| out(&ws.latchkey(&["plan", "access", "--now", now])).1;
    assert_eq!(apply(&ws, &[]).0, 0);
    assert!(plan("2026-11-25T17:59:59Z").contains("0 changes"));
    let after = plan("2026-11-25T18:00:01Z");
    assert!(after.contains("- erin@acme.example            revoke acme:admin                expired  (expired 2026-11-25T18:00:00Z, 1s ago)"), "{after}");
}

#[test]
fn for_counts_from_the_commit_that_merged_the_grant() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: viewer"),
            ),
        ],
        T0,
        "erin",
    );
    let grant = "    - role: viewer\n    - role: staging-admin\n      for: 1d";
    ws.commit(
        &[("clients/acme/members.yaml", &member("erin", grant))],
        T0 + 3_600,
        "erin gets staging for a day",
    );
    // An unrelated later commit must not restart the clock.
    ws.commit(&[("README.md", "hello")], T0 + 7_200, "docs");
    let plan = |now: &str| out(&ws.latchkey(&["plan", "access", "--now", now])).1;
    // Merged at 13:00Z on the 20th: in force until 13:00Z on the 21st.
    assert!(plan("2026-11-21T12:59:59Z").contains(
        "grant acme:admin                 declared  (until 2026-11-21T13:00:00Z, in 1s)"
    ));
    assert!(!plan("2026-11-21T13:00:01Z").contains("acme:admin"));
}

#[test]
fn starts_keeps_a_grant_out_until_its_window_opens() {
    let ws = Workspace::new();
    let grant = "    - role: staging-admin\n      starts: 2026-11-22T09:00:00Z\n      expires: 2026-11-29T09:00:00Z";
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &member("erin", grant)),
        ],
        T0,
        "erin",
    );
    let plan = |now: &str| out(&ws.latchkey(&["plan", "access", "--now", now])).1;
    let before = plan("2026-11-22T08:59:59Z");
    assert!(
        before.contains("0 changes")
            && before.contains("Next time-driven change at 2026-11-22T09:00:00Z (in 1s)"),
        "{before}"
    );
    assert!(plan("2026-11-22T09:00:00Z").contains("grant acme:admin                 started"));
}
