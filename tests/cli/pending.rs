//! A change that failed stays pending with its original reason and is planned again on
//! every run until it succeeds, whatever `prune` says (docs/architecture.md; issue: a refused
//! offboarding revocation became "undeclared drift" and was never retried).

use crate::common::*;

/// The base repository with the portal at `prune: false` (the default).
fn unpruned() -> Env {
    let env = Env::base();
    env.systems();
    let policy = env.file_at(env.head(), "latchkey.yaml").unwrap();
    let portal = "    path: portal.sqlite\n  prune: true\n";
    assert!(policy.contains(portal));
    let policy = policy.replacen(portal, "    path: portal.sqlite\n  prune: false\n", 1);
    env.commit(&[("latchkey.yaml", Some(&policy))], "portal: prune off");
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    env
}

/// The portal refuses every revocation and disable while `refuse` holds a row.
const REFUSE: &str = "CREATE TABLE refuse (x); INSERT INTO refuse VALUES (1); \
    CREATE TRIGGER no_revoke BEFORE DELETE ON user_roles WHEN EXISTS (SELECT 1 FROM refuse) \
      BEGIN SELECT RAISE(ABORT, 'the portal refused the change'); END; \
    CREATE TRIGGER no_disable BEFORE UPDATE ON users WHEN EXISTS (SELECT 1 FROM refuse) \
      BEGIN SELECT RAISE(ABORT, 'the portal refused the change'); END;";

#[test]
fn a_refused_offboarding_is_planned_again_as_offboarded_and_revoked_on_the_next_run() {
    let env = unpruned();
    let portal = env.path("portal.sqlite");
    assert!(roles(&portal).contains(&"erin@acme.example acme:viewer".to_string()));
    rusqlite::Connection::open(&portal)
        .unwrap()
        .execute_batch(REFUSE)
        .unwrap();
    let members = env
        .file_at(env.head(), "clients/acme/members.yaml")
        .unwrap();
    let without_erin = members[..members
        .find("---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: erin")
        .unwrap()]
        .to_string();
    env.commit(
        &[("clients/acme/members.yaml", Some(&without_erin))],
        "erin left",
    );

    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("failed: portal erin@acme.example revoke: ")
            && out.stderr.contains("the portal refused the change"),
        "every failed change is printed with its error: {}",
        out.stderr
    );
    assert!(roles(&portal).contains(&"erin@acme.example acme:viewer".to_string()));

    // The portal accepts changes again: the offboarding is still pending, as offboarded,
    // not as drift left in place.
    rusqlite::Connection::open(&portal)
        .unwrap()
        .execute_batch("DELETE FROM refuse;")
        .unwrap();
    let plan = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(
        plan.code, 2,
        "pending failures are changes: {}",
        plan.stdout
    );
    let line = plan
        .stdout
        .lines()
        .find(|l| l.contains("erin@acme.example") && l.contains("revoke"))
        .unwrap_or_else(|| panic!("{}", plan.stdout));
    assert!(
        line.contains("offboarded")
            && line.contains("(retry; last failed: ")
            && line.contains("refused"),
        "{line}"
    );
    assert!(!plan.stdout.contains("Drift"), "{}", plan.stdout);

    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!roles(&portal).iter().any(|r| r.starts_with("erin@")));
    let erin: Vec<String> = ledger_files(&env, env.head())
        .into_iter()
        .flat_map(|(_, r)| r)
        .filter(|r| r["identity"] == "erin@acme.example" && r["change"] == "revoke")
        .map(|r| {
            format!(
                "{} {}",
                r["reason"].as_str().unwrap(),
                r["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(erin, ["offboarded failed", "offboarded applied"]);
    let plan = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(plan.code, 0, "nothing left: {}", plan.stdout);
}
