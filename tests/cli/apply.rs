//! `latchkey apply` against the embedded SQLite portal: rows, ledger, audit commit,
//! idempotence, invalid revisions, unreachable systems, expiry and offboarding.

use crate::common::*;

/// Rows the base repository declares on the portal, with the unmanaged admin untouched.
fn base_portal_roles() -> Vec<String> {
    [
        "dana@acme.example acme:finance",
        "dana@acme.example acme:viewer",
        "erin@acme.example acme:viewer",
        "root@portal.example superuser",
        "sam@studio.example acme:viewer",
    ]
    .map(String::from)
    .to_vec()
}

fn unmanaged_root() -> (String, bool, Option<String>) {
    ("root@portal.example".to_string(), true, None)
}

/// The base repo, its systems created, applied once at NOW.
fn applied_base() -> Env {
    let env = Env::base();
    env.systems();
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    env
}

#[test]
fn apply_writes_rows_ledger_and_audit_commit() {
    let env = Env::base();
    env.systems();
    let applied = env.head();
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let audit = env.head();
    assert_ne!(audit, applied);
    assert!(
        out.stderr.contains(&format!(
            "applied 11 of 11 changes\naudit committed: {audit}\n"
        )),
        "{}",
        out.stderr
    );

    let portal = env.path("portal.sqlite");
    assert_eq!(
        users(&portal),
        vec![
            managed("dana@acme.example"),
            managed("erin@acme.example"),
            unmanaged_root(),
            managed("sam@studio.example"),
        ]
    );
    assert_eq!(roles(&portal), base_portal_roles());
    assert_eq!(
        users(&env.path("staging.sqlite")),
        vec![managed("dana@acme.example")]
    );
    assert_eq!(
        roles(&env.path("staging.sqlite")),
        vec!["dana@acme.example acme:tester"]
    );
    assert_eq!(
        users(&env.path("shop.sqlite")),
        vec![managed("sam@studio.example")]
    );
    assert_eq!(
        roles(&env.path("shop.sqlite")),
        vec!["sam@studio.example acme:admin"]
    );

    // The audit commit: child of the applied commit, only audit/, with trailers.
    let commit = env.repo.find_commit(audit).unwrap();
    assert_eq!(commit.parent_ids().collect::<Vec<_>>(), vec![applied]);
    let revision = format!("main@sha1:{applied}");
    let msg = commit.message().unwrap();
    assert!(msg.starts_with(&format!(
        "latchkey: apply {revision} (11 applied, 0 failed)\n"
    )));
    assert!(
        msg.contains(&format!("\nLatchkey-Revision: {revision}\n")),
        "{msg}"
    );
    let run = format!("20261120T120000Z-{}", &applied.to_string()[..8]);
    assert!(msg.contains(&format!("\nLatchkey-Run: {run}\n")), "{msg}");
    let mut paths = changed_paths(&env, audit);
    paths.sort();
    let ledgers = ledger_files(&env, audit);
    assert_eq!(ledgers.len(), 1);
    let (ledger_path, records) = &ledgers[0];
    assert!(
        ledger_path.starts_with("audit/ledger/")
            && ledger_path.len() == "audit/ledger/2026/11.jsonl".len(),
        "{ledger_path}"
    );
    let mut want = vec![
        "audit/access/acme.md".to_string(),
        "audit/access/studio.md".to_string(),
        ledger_path.clone(),
        // The first record of a month comes with that month's checkpoint.
        ledger_path.replace(".jsonl", ".checkpoint.json"),
        "audit/state.yaml".to_string(),
    ];
    want.sort();
    assert_eq!(paths, want);

    // The ledger: one record per change, hash-chained from zero.
    assert_eq!(
        records.iter().map(brief).collect::<Vec<_>>(),
        vec![
            "portal dana@acme.example create-account - declared applied",
            "portal dana@acme.example grant acme:finance declared applied",
            "portal dana@acme.example grant acme:viewer declared applied",
            "portal erin@acme.example create-account - declared applied",
            "portal erin@acme.example grant acme:viewer declared applied",
            "portal sam@studio.example create-account - declared applied",
            "portal sam@studio.example grant acme:viewer declared applied",
            "shop sam@studio.example create-account - declared applied",
            "shop sam@studio.example grant acme:admin declared applied",
            "staging dana@acme.example create-account - declared applied",
            "staging dana@acme.example grant acme:tester declared applied",
        ]
    );
    for r in records {
        assert_eq!(r["run"], run.as_str());
        assert_eq!(r["revision"], revision.as_str());
        assert_eq!(r["event"], "change");
    }
    assert_eq!(records[8]["expires"], "2026-11-25T12:00:00Z");
    assert_chain(records);

    let state = env.file_at(audit, "audit/state.yaml").unwrap();
    assert!(
        state.contains(&format!("\nlastAppliedRevision: {revision}\n")),
        "{state}"
    );
    assert!(state.contains(&format!(
        "\nledgerHead: {}\n",
        records[10]["hash"].as_str().unwrap()
    )));
    let report = env.file_at(audit, "audit/access/acme.md").unwrap();
    assert!(
        report.starts_with("# Access report: ACME Ltd\n"),
        "{report}"
    );
    assert!(
        report.contains(
            "| Dana Acme <dana@acme.example> | client | tester | staging (acme:tester) |"
        ),
        "{report}"
    );
}

#[test]
fn second_apply_changes_nothing() {
    let env = applied_base();
    let head = env.head();
    let before = (
        roles(&env.path("portal.sqlite")),
        users(&env.path("portal.sqlite")),
    );

    let plan = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("\n0 changes: 0 to grant, 0 to revoke; 0 drift.\n"),
        "{}",
        plan.stdout
    );

    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .ends_with("applied 0 of 0 changes\nno audit commit: nothing changed\n"),
        "{}",
        out.stderr
    );
    assert_eq!(env.head(), head);
    assert_eq!(
        before,
        (
            roles(&env.path("portal.sqlite")),
            users(&env.path("portal.sqlite"))
        )
    );
}

#[test]
fn invalid_revision_applies_nothing() {
    let env = applied_base();
    let members = std::fs::read_to_string(corpus().join("base/clients/acme/members.yaml")).unwrap();
    // Turns erin's viewer grant into an unknown role: erin must keep acme:viewer.
    let broken = members.replace("role: viewer", "role: admin");
    let bad = env.commit(&[("clients/acme/members.yaml", Some(&broken))], "broken");
    let before = roles(&env.path("portal.sqlite"));

    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "clients/acme/members.yaml:24:13: error: unknown role \"admin\"\n  help: use one of finance, shop-admin, tester, viewer\n\
             error: revision main@sha1:{bad} is invalid (1 error); nothing was applied\n"
        )
    );
    assert_eq!(roles(&env.path("portal.sqlite")), before);
    assert_eq!(env.head(), bad);
}

/// Issue 15, item 2: a byte that is not UTF-8 was a source error (exit 1 with no file or
/// line, and `run` stopped enforcing); it is an invalid revision like malformed YAML.
#[test]
fn a_latin1_byte_is_an_invalid_revision_for_plan_and_apply() {
    let env = applied_base();
    let mut members = std::fs::read(corpus().join("base/clients/acme/members.yaml")).unwrap();
    members.extend_from_slice(b"# caf\xe9\n");
    let bad = env.commit_bytes(
        &[(&b"clients/acme/members.yaml"[..], Some(members.as_slice()))],
        "latin-1",
    );
    let before = roles(&env.path("portal.sqlite"));
    let finding = "clients/acme/members.yaml:25:6: error: not UTF-8 text: byte 0xE9 is not valid UTF-8\n  \
                   help: save the file as UTF-8 (a Latin-1 or Windows-1252 editor writes such bytes)\n";
    let plan = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(plan.code, 1, "{}", plan.stderr);
    assert!(plan.stderr.starts_with(finding), "{}", plan.stderr);
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "{finding}error: revision main@sha1:{bad} is invalid (1 error); nothing was applied\n"
        )
    );
    assert_eq!(roles(&env.path("portal.sqlite")), before);
}

/// A `--path` the revision does not hold is an invalid revision, not a source error:
/// `run` keeps the last applied revision in force when a folder is renamed.
#[test]
fn a_missing_subpath_is_an_invalid_revision() {
    let env = applied_base();
    let out = env.run(&["apply", REPO, "--now", NOW, "--path", "nope"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "nope:1:1: error: cannot read this revision: cannot read nope at main@sha1:"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .ends_with("is invalid (1 error); nothing was applied\n"),
        "{}",
        out.stderr
    );
}

/// Applies the base repo with portal.sqlite prepared by `prepare`; asserts that the portal
/// fails with `error` (named on stdout and stderr), exit 1, while the other systems apply.
fn unreadable_portal(prepare: impl Fn(&Env), error: &str) -> Env {
    let env = Env::base();
    prepare(&env);
    env.sqlite("staging.sqlite", "");
    env.sqlite("shop.sqlite", "");
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let line = format!("error: system portal: {error}");
    assert!(
        out.stdout.contains(&format!("\n{line}\n")),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr,
        format!(
            "applied 4 of 4 changes\n{line}; nothing was applied to it\naudit committed: {}\n",
            env.head()
        )
    );
    // A failure on one system does not stop the others (docs/architecture.md); the portal is
    // neither changed nor recorded as changed.
    assert_eq!(
        roles(&env.path("shop.sqlite")),
        vec!["sam@studio.example acme:admin"]
    );
    let (_, records) = ledger_files(&env, env.head()).remove(0);
    assert_eq!(records.len(), 4);
    assert!(
        records.iter().all(|r| r["system"] != "portal"),
        "{records:?}"
    );
    env
}

#[test]
fn missing_system_database_is_an_error_and_is_not_created() {
    let env = unreadable_portal(
        |_| {},
        "SQLite database portal.sqlite does not exist (a relative path is resolved from the working directory; latchkey never creates it)",
    );
    assert!(!env.path("portal.sqlite").exists());
}

#[test]
fn malformed_system_database_is_an_error() {
    let text = "this is not a database\n";
    let env = unreadable_portal(
        |env| std::fs::write(env.path("portal.sqlite"), text).unwrap(),
        "portal.sqlite is not a SQLite database (file is not a database)",
    );
    assert_eq!(
        std::fs::read_to_string(env.path("portal.sqlite")).unwrap(),
        text
    );
}

/// The records the last audit commit added (the ledger is one month file here).
fn new_records(env: &Env, before: usize) -> Vec<serde_json::Value> {
    // Every month file in order: records are stamped with the wall clock when it is
    // later than --now, so the month they land in is not the test's to choose.
    let records: Vec<_> = ledger_files(env, env.head())
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    assert_chain(&records);
    records[before..].to_vec()
}

#[test]
fn grant_is_kept_until_expires_and_revoked_after() {
    let env = applied_base();
    let shop = env.path("shop.sqlite");
    let head = env.head();
    // sam's shop-admin grant expires at 2026-11-25T12:00:00Z.
    let out = env.run(&["apply", REPO, "--now", "2026-11-25T11:59:59Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.head(), head, "one second before expiry nothing changes");
    assert_eq!(roles(&shop), vec!["sam@studio.example acme:admin"]);

    let out = env.run(&["apply", REPO, "--now", "2026-11-25T12:00:01Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_ne!(env.head(), head);
    assert_eq!(roles(&shop), Vec::<String>::new());
    assert_eq!(
        new_records(&env, 11).iter().map(brief).collect::<Vec<_>>(),
        vec!["shop sam@studio.example revoke acme:admin expired applied"]
    );
}

#[test]
fn deleted_member_is_offboarded_and_disabled() {
    let env = applied_base();
    let members = std::fs::read_to_string(corpus().join("base/clients/acme/members.yaml")).unwrap();
    let without_erin = &members[..members
        .find("---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: erin")
        .unwrap()];
    env.commit(
        &[("clients/acme/members.yaml", Some(without_erin))],
        "erin left",
    );
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let portal = env.path("portal.sqlite");
    // The portal's offboard mode is `disable`: the row stays, inactive and without roles.
    assert!(users(&portal).contains(&(
        "erin@acme.example".to_string(),
        false,
        Some("latchkey".to_string())
    )));
    assert!(!roles(&portal).iter().any(|r| r.starts_with("erin@")));
    assert_eq!(
        new_records(&env, 11).iter().map(brief).collect::<Vec<_>>(),
        vec![
            "portal erin@acme.example revoke acme:viewer offboarded applied",
            "portal erin@acme.example disable-account - offboarded applied",
        ]
    );
}

#[test]
fn offboarded_member_is_deleted_where_the_system_says_delete() {
    let env = applied_base();
    let members = std::fs::read_to_string(corpus().join("base/clients/acme/members.yaml")).unwrap();
    let offboarded = members.replacen(
        "  client: acme\n",
        "  client: acme\n  offboarded: true\n",
        1,
    );
    env.commit(
        &[("clients/acme/members.yaml", Some(&offboarded))],
        "dana left",
    );
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // staging's offboard mode is `delete`; the portal's is `disable`.
    assert_eq!(users(&env.path("staging.sqlite")), vec![]);
    assert_eq!(roles(&env.path("staging.sqlite")), Vec::<String>::new());
    let portal = env.path("portal.sqlite");
    assert!(users(&portal).contains(&(
        "dana@acme.example".to_string(),
        false,
        Some("latchkey".to_string())
    )));
    assert!(!roles(&portal).iter().any(|r| r.starts_with("dana@")));
    assert_eq!(
        new_records(&env, 11).iter().map(brief).collect::<Vec<_>>(),
        vec![
            "portal dana@acme.example revoke acme:finance offboarded applied",
            "portal dana@acme.example revoke acme:viewer offboarded applied",
            "portal dana@acme.example disable-account - offboarded applied",
            "staging dana@acme.example revoke acme:tester offboarded applied",
            "staging dana@acme.example delete-account - offboarded applied",
        ]
    );
}

#[test]
fn dry_run_changes_nothing_and_drift_is_planned_as_undeclared() {
    let env = Env::base();
    // An account latchkey manages but git no longer declares, and the unmanaged admin.
    let seed = format!(
        "{UNMANAGED_SEED} INSERT INTO users (email, display_name, active, managed_by) \
         VALUES ('old@acme.example', 'Old', TRUE, 'latchkey'); \
         INSERT INTO user_roles VALUES (2, 'acme:viewer');"
    );
    env.sqlite("portal.sqlite", &seed);
    env.sqlite("staging.sqlite", "");
    env.sqlite("shop.sqlite", "");
    let head = env.head();
    let out = env.run(&["apply", REPO, "--now", NOW, "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "dry run: nothing was applied\n");
    assert!(
        out.stdout
            .contains("\n13 changes: 11 to grant, 2 to revoke; 0 drift.\n"),
        "{}",
        out.stdout
    );
    assert_eq!(env.head(), head);
    assert_eq!(
        roles(&env.path("portal.sqlite")),
        vec![
            "old@acme.example acme:viewer",
            "root@portal.example superuser"
        ]
    );

    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = new_records(&env, 0);
    let old: Vec<_> = records
        .iter()
        .map(brief)
        .filter(|r| r.contains("old@"))
        .collect();
    assert_eq!(
        old,
        vec![
            // The baseline: access found in place before latchkey changed it.
            "portal old@acme.example grant acme:viewer - -",
            "portal old@acme.example revoke acme:viewer undeclared applied",
            "portal old@acme.example disable-account - undeclared applied",
        ]
    );
    assert!(users(&env.path("portal.sqlite")).contains(&unmanaged_root()));
}

/// Issue 15: `apply --now <a future instant>` revoked grants before their time and wrote
/// the future instant into the ledger. `apply` and `run` refuse it; `plan` and
/// `apply --dry-run` look ahead as before. The instant is an hour past the wall clock,
/// whatever its date.
#[test]
fn a_future_now_is_refused_by_apply_and_run_but_not_by_plan_or_dry_run() {
    let env = Env::base();
    env.systems();
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1))
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    let head = env.head();

    let out = env.run(&["plan", REPO, "--now", &future]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = env.run(&["apply", REPO, "--dry-run", "--now", &future]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.ends_with("dry run: nothing was applied\n"),
        "{}",
        out.stderr
    );

    for args in [
        &["apply", REPO, "--now", &future][..],
        &["run", REPO, "--once", "--now", &future][..],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}: nothing planned");
        let want = format!("error: --now {future} is in the future (the clock says ");
        assert!(out.stderr.starts_with(&want), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.ends_with(
                "); apply and run act at the present, use plan or apply --dry-run to look ahead\n"
            ),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    assert_eq!(env.head(), head, "no audit commit");
    assert_eq!(
        roles(&env.path("portal.sqlite")),
        ["root@portal.example superuser"]
    );
    assert_eq!(users(&env.path("staging.sqlite")), []);

    // A past instant, as every other test passes, still applies.
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn an_expiry_rewrites_only_the_reports_of_the_clients_it_concerns() {
    let env = applied_base();
    // The documents changed at the first apply: every client's page was written.
    let first = changed_paths(&env, env.head());
    for page in ["audit/access/acme.md", "audit/access/studio.md"] {
        assert!(first.iter().any(|p| p == page), "{first:?}");
    }
    // Dana (acme) loses her tester grant at 18:00; sam's expiry passed first, so this
    // apply's only record concerns acme.
    let out = env.run(&["apply", REPO, "--now", "2026-11-25T12:00:01Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = env.run(&["apply", REPO, "--now", "2026-12-01T18:00:01Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let changed = changed_paths(&env, env.head());
    assert!(
        changed.iter().any(|p| p == "audit/access/acme.md"),
        "{changed:?}"
    );
    assert!(
        !changed.iter().any(|p| p == "audit/access/studio.md"),
        "studio's page does not change with acme's expiry: {changed:?}"
    );
    // Nothing left to do: no commit at all.
    let head = env.head();
    let out = env.run(&["apply", REPO, "--now", "2026-12-01T18:00:02Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.head(), head);
}
