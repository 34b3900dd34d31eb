//! The ledger's guarantees under faults: `kill -9` at several points of an apply, three
//! applies at once, holds that keep the chain verifiable, and records that name the
//! commit (and author) that caused each change.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// `n` acme members with the `finance` role: 3 portal changes each (account, viewer,
/// finance) on the base repository.
fn many(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: m{i}\n\
                 spec:\n  email: m{i}@acme.example\n  client: acme\n  grants:\n    - role: finance\n"
            )
        })
        .collect()
}

fn env_with(n: usize) -> Env {
    let env = Env::base();
    env.systems();
    let members = many(n);
    env.commit(&[("clients/acme/many.yaml", Some(&members))], "add many");
    env
}

/// Every ledger record on main, oldest first.
fn records(env: &Env) -> Vec<serde_json::Value> {
    let all: Vec<_> = ledger_files(env, env.head())
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    assert_chain(&all);
    all
}

/// (system identity change entitlement) → how many `applied` change records.
fn applied_counts(records: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r["event"] == "change" && r["result"] == "applied")
    {
        let key = format!(
            "{} {} {} {}",
            r["system"].as_str().unwrap_or(""),
            r["identity"].as_str().unwrap_or(""),
            r["change"].as_str().unwrap_or(""),
            r["entitlement"].as_str().unwrap_or("-")
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

/// The portal's "email role" rows as the ledger replays them (grants, observed baseline
/// and revokes; disable removes everything of that identity).
fn replayed_portal(records: &[serde_json::Value]) -> Vec<String> {
    let mut held = std::collections::BTreeSet::new();
    for r in records.iter().filter(|r| r["system"] == "portal") {
        let counts =
            (r["event"] == "change" && r["result"] == "applied") || r["event"] == "observed";
        if !counts {
            continue;
        }
        let id = r["identity"].as_str().unwrap().to_string();
        match r["change"].as_str().unwrap() {
            "grant" => {
                held.insert(format!("{id} {}", r["entitlement"].as_str().unwrap()));
            }
            "revoke" => {
                held.remove(&format!("{id} {}", r["entitlement"].as_str().unwrap()));
            }
            "disable-account" | "delete-account" => {
                held.retain(|h| !h.starts_with(&format!("{id} ")))
            }
            _ => {}
        }
    }
    held.into_iter().collect()
}

/// The portal's managed rows.
fn portal_managed(env: &Env) -> Vec<String> {
    roles(&env.path("portal.sqlite"))
        .into_iter()
        .filter(|r| !r.starts_with("root@"))
        .collect()
}

/// Outcome lines logged so far by the running apply.
fn logged(env: &Env) -> usize {
    std::fs::read_to_string(env.path("access/.git/latchkey/journal/main.outcomes.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn journal_exists(env: &Env) -> bool {
    env.repo.refname_to_id("refs/latchkey/journal/main").is_ok()
}

/// Starts `latchkey apply`, waits until `ready` holds, then kills it with SIGKILL.
fn apply_killed_when(env: &Env, ready: impl Fn(&Env) -> bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["apply", REPO, "--now", NOW])
        .current_dir(env.dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !ready(env) && started.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    child.wait().unwrap();
}

/// After a kill, runs apply to convergence and checks the ledger against the portal.
fn converge_and_check(env: &Env, changes: usize) {
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("applied 0 of 0 changes"),
        "{}",
        out.stderr
    );
    assert!(!journal_exists(env), "the journal is finished");
    let all = records(env);
    let counts = applied_counts(&all);
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "doubled records: {doubled:?}");
    let portal: usize = counts.keys().filter(|k| k.starts_with("portal ")).count();
    assert_eq!(portal, changes, "one applied record per change made");
    assert_eq!(replayed_portal(&all), portal_managed(env));
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

const N: usize = 300;
/// Portal changes for N members, plus the base repository's own.
fn portal_changes(env: &Env) -> usize {
    let out = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["system"] == "portal")
        .count()
}

#[test]
fn kill_9_as_the_journal_is_written_loses_no_record() {
    let env = env_with(N);
    let changes = portal_changes(&env);
    apply_killed_when(&env, journal_exists);
    converge_and_check(&env, changes);
}

#[test]
fn kill_9_in_the_middle_of_an_apply_loses_no_record() {
    let env = env_with(N);
    let changes = portal_changes(&env);
    apply_killed_when(&env, |e| logged(e) >= changes / 3);
    assert!(
        journal_exists(&env),
        "killed mid-apply, the journal is left"
    );
    converge_and_check(&env, changes);
    // Changes made before the kill are recorded with the provenance of the commit that
    // asked for them, not the run that found them.
    let all = records(&env);
    let recovered: Vec<_> = all
        .iter()
        .filter(|r| {
            r["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("recovered from the write-ahead journal"))
        })
        .collect();
    assert!(!recovered.is_empty());
    assert!(
        recovered
            .iter()
            .all(|r| r["author"] == "author@example.test")
    );
}

#[test]
fn kill_9_during_the_audit_commit_loses_no_record() {
    let env = env_with(N);
    let changes = portal_changes(&env);
    let total = {
        let out = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
        let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        plan["changes"].as_array().unwrap().len()
    };
    apply_killed_when(&env, |e| logged(e) >= total);
    converge_and_check(&env, changes);
}

#[test]
fn three_applies_at_once_record_each_change_once() {
    for trial in 0..20 {
        let env = env_with(20);
        let changes = portal_changes(&env);
        let children: Vec<_> = (0..3)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_latchkey"))
                    .args(["apply", REPO, "--now", NOW])
                    .current_dir(env.dir.path())
                    .env("NO_COLOR", "1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "trial {trial}: {err}");
        }
        let all = records(&env);
        let counts = applied_counts(&all);
        assert!(
            counts.values().all(|n| *n == 1),
            "trial {trial}: doubled records {counts:?}"
        );
        assert_eq!(
            counts.keys().filter(|k| k.starts_with("portal ")).count(),
            changes,
            "trial {trial}"
        );
        assert_eq!(replayed_portal(&all), portal_managed(&env), "trial {trial}");
        let verify = env.run(&["audit", "verify", REPO]);
        assert_eq!(verify.code, 0, "trial {trial}: {}", verify.stdout);
    }
}

#[test]
fn a_second_writer_names_the_holder_when_it_gives_up() {
    let env = env_with(1);
    // Hold the lock as another process would (flock on the same file).
    let dir = env.path("access/.git/latchkey/locks");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("main.lock"))
        .unwrap();
    file.lock().unwrap();
    std::fs::write(
        dir.join("main.lock"),
        "pid 4242 on builder since 2026-11-20T12:00:00Z (latchkey run)",
    )
    .unwrap();
    let out = env.run(&["apply", REPO, "--now", NOW, "--lock-wait", "1s"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "another latchkey is applying to branch main: pid 4242 on builder since \
             2026-11-20T12:00:00Z (latchkey run); waited 1s"
        ),
        "{}",
        out.stderr
    );
    assert!(
        roles(&env.path("portal.sqlite"))
            .iter()
            .all(|r| r.starts_with("root@")),
        "nothing applied"
    );
}

/// `apply` ends without freeing its plan and caches one by one (the process exit does
/// that), but its writer lock is still released as a drop releases it: the holder line is
/// cleared, so a waiting writer never names a process that is gone, and the next apply
/// takes the lock at once.
#[test]
fn apply_clears_its_holder_line_when_it_ends() {
    let env = env_with(3);
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lock = env.path("access/.git/latchkey/locks/main.lock");
    let held = std::fs::read_to_string(&lock).expect("apply made the lock file");
    assert_eq!(held, "", "the holder line is cleared on exit");
    let again = env.run(&["apply", REPO, "--now", NOW, "--lock-wait", "1s"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
}

#[test]
fn a_held_run_keeps_the_ledger_verifiable_and_its_release_names_the_remover() {
    let env = env_with(12);
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A person removes every extra member: the deletion brake holds the run.
    let remover = env.commit(&[("clients/acme/many.yaml", None)], "offboard the many");
    // plan runs the same checks as apply: it shows the hold and how to release it.
    let plan = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(plan.code, 3, "{}", plan.stdout);
    assert!(
        plan.stdout.contains("HELD: ")
            && plan
                .stdout
                .contains("release with --allow-mass-revoke \"<reason>\""),
        "{}",
        plan.stdout
    );
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(
        verify.code, 0,
        "after a hold: {}{}",
        verify.stdout, verify.stderr
    );
    // The branch tip is now latchkey's own audit commit; the release still names the
    // person's commit and its author, and the host that applied it.
    assert_ne!(env.head(), remover);
    let out = env.run(&[
        "apply",
        REPO,
        "--now",
        NOW,
        "--allow-mass-revoke",
        "project ended",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = records(&env);
    let revokes: Vec<_> = all
        .iter()
        .filter(|r| r["event"] == "change" && r["reason"] == "offboarded")
        .collect();
    assert!(!revokes.is_empty());
    for r in &revokes {
        assert_eq!(r["revision"], format!("main@sha1:{remover}").as_str());
        assert_eq!(r["author"], "author@example.test");
        assert!(r["appliedBy"].as_str().is_some_and(|h| !h.is_empty()));
    }
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

#[test]
fn access_in_place_at_the_first_apply_is_on_record() {
    let env = Env::base();
    // erin already has acme:viewer in the portal, in a latchkey-managed account.
    env.sqlite(
        "portal.sqlite",
        &format!(
            "{UNMANAGED_SEED} INSERT INTO users (email, display_name, active, managed_by) \
             VALUES ('erin@acme.example', 'Erin Acme', TRUE, 'latchkey'); \
             INSERT INTO user_roles VALUES (2, 'acme:viewer');"
        ),
    );
    env.sqlite("staging.sqlite", "");
    env.sqlite("shop.sqlite", "");
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = records(&env);
    let erin: Vec<_> = all
        .iter()
        .filter(|r| r["identity"] == "erin@acme.example")
        .map(|r| {
            format!(
                "{} {}",
                r["event"].as_str().unwrap(),
                r["entitlement"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(erin, ["observed acme:viewer"]);
    assert_eq!(replayed_portal(&all), portal_managed(&env));
    let report = env.file_at(env.head(), "audit/access/acme.md").unwrap();
    let row = report.lines().find(|l| l.contains("Erin Acme")).unwrap();
    assert!(!row.contains("not yet applied"), "{row}");
    // A second apply observes nothing new.
    let before = all.len();
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records(&env).len(), before);
}

/// Every path under audit/ at main.
fn audit_paths(env: &Env) -> Vec<String> {
    let tree = env.repo.find_commit(env.head()).unwrap().tree().unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        let path = format!("{dir}{}", e.name().unwrap());
        if path.starts_with("audit/") && e.kind() == Some(git2::ObjectType::Blob) {
            out.push(path);
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

#[test]
fn deleting_audit_is_caught_by_verify_and_apply_refuses_to_build_on_it() {
    let env = env_with(2);
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let paths = audit_paths(&env);
    let edits: Vec<(&str, Option<&str>)> = paths.iter().map(|p| (p.as_str(), None)).collect();
    env.commit(&edits, "git rm -r audit");
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify
            .stdout
            .contains("audit/ was changed after latchkey's last audit commit"),
        "{}",
        verify.stdout
    );
    // A new member is not granted on top of a laundered ledger.
    let members = many(3);
    env.commit(&[("clients/acme/many.yaml", Some(&members))], "one more");
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the ledger on main cannot be built on: audit/ was changed")
            && out.stderr.contains("--allow-broken-ledger"),
        "{}",
        out.stderr
    );
    assert!(!portal_managed(&env).iter().any(|r| r.starts_with("m2@")));
    // The explicit way out is recorded, and the ledger verifies from there on.
    let out = env.run(&[
        "apply",
        REPO,
        "--now",
        NOW,
        "--allow-broken-ledger",
        "audit/ lost in a bad merge; restored from the backup",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = records(&env);
    // The first refused apply started the new chain: the access it found in place
    // (the deleted ledger no longer held it), then its refusal.
    let events: Vec<&str> = all.iter().map(|r| r["event"].as_str().unwrap()).collect();
    let refusal = events.iter().position(|e| *e == "refusal").unwrap();
    assert!(
        events[..refusal].iter().all(|e| *e == "observed"),
        "{events:?}"
    );
    let over: Vec<_> = all.iter().filter(|r| r["event"] == "override").collect();
    assert_eq!(over.len(), 1);
    assert!(
        over[0]["note"]
            .as_str()
            .unwrap()
            .contains("restored from the backup")
    );
    assert!(portal_managed(&env).iter().any(|r| r.starts_with("m2@")));
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

#[test]
fn removing_the_ledgers_tail_by_hand_is_not_laundered_by_the_next_apply() {
    let env = env_with(2);
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    let members = many(3);
    env.commit(&[("clients/acme/many.yaml", Some(&members))], "one more");
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    // Drop the last record and put state.yaml's head back in line with what is left.
    let files = ledger_files(&env, env.head());
    let (path, records) = files.last().unwrap();
    let kept: Vec<_> = records[..records.len() - 1].to_vec();
    let text: String = kept.iter().map(|r| format!("{r}\n")).collect();
    let state = env.file_at(env.head(), "audit/state.yaml").unwrap();
    let old_head = records.last().unwrap()["hash"].as_str().unwrap();
    let new_head = kept.last().unwrap()["hash"].as_str().unwrap();
    let state = state.replace(old_head, new_head);
    env.commit(
        &[
            (path.as_str(), Some(&text)),
            ("audit/state.yaml", Some(&state)),
        ],
        "tidy the ledger",
    );
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    let out = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be built on"), "{}", out.stderr);
}

/// state.yaml's text → what a person commits instead (None deletes it).
type Tamper = fn(&str) -> Option<String>;

#[test]
fn a_deleted_garbled_or_forged_state_yaml_is_caught_and_refused() {
    let cases: [(&str, Tamper); 3] = [
        ("deleted", |_| None),
        ("garbled", |_| Some("lastAppliedCommit: [\n".to_string())),
        ("moved", |s| {
            let line = s
                .lines()
                .find(|l| l.starts_with("lastAppliedCommit:"))
                .unwrap();
            Some(s.replace(
                line,
                "lastAppliedCommit: 0123456789abcdef0123456789abcdef01234567",
            ))
        }),
    ];
    for (what, tamper) in cases {
        let env = env_with(2);
        assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0, "{what}");
        let state = env.file_at(env.head(), "audit/state.yaml").unwrap();
        let edited = tamper(&state);
        env.commit(&[("audit/state.yaml", edited.as_deref())], what);
        let verify = env.run(&["audit", "verify", REPO]);
        assert_eq!(verify.code, 1, "{what}: {}", verify.stdout);
        assert!(
            verify.stdout.contains("audit/ was changed after"),
            "{what}: {}",
            verify.stdout
        );
        let out = env.run(&["apply", REPO, "--now", NOW]);
        assert_eq!(out.code, 1, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("cannot be built on"),
            "{what}: {}",
            out.stderr
        );
    }
}

#[test]
fn on_a_tampered_ledger_expiries_keep_firing_and_nothing_is_granted() {
    let env = env_with(2);
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    assert_eq!(
        roles(&env.path("shop.sqlite")),
        ["sam@studio.example acme:admin"]
    );
    env.commit(
        &[("audit/state.yaml", Some("lastAppliedCommit: [\n"))],
        "oops",
    );
    let members = many(3);
    env.commit(&[("clients/acme/many.yaml", Some(&members))], "one more");
    let before = records(&env).len();
    // sam's shop-admin grant expires at 2026-11-25T12:00:00Z.
    let after_expiry = "2026-11-25T13:00:00Z";
    let out = env.run(&["apply", REPO, "--now", after_expiry]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be built on"), "{}", out.stderr);
    assert!(
        roles(&env.path("shop.sqlite")).is_empty(),
        "the expiry fired"
    );
    assert!(
        !portal_managed(&env).iter().any(|r| r.starts_with("m2@")),
        "nothing granted"
    );
    let all = records(&env);
    let new: Vec<String> = all[before..]
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["event"].as_str().unwrap(),
                r["identity"].as_str().unwrap_or("-"),
                r["reason"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        new,
        ["refusal - -", "change sam@studio.example expired"],
        "the refusal, once, and the expiry"
    );
    // Our own audit commit does not make the ledger look whole, and the refusal is not
    // recorded again.
    let out = env.run(&["apply", REPO, "--now", after_expiry]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(records(&env).len(), all.len());
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
}

/// One Member document.
fn member(name: &str, grant: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: {name}\n\
         spec:\n  email: {name}@acme.example\n  client: acme\n  grants:\n{grant}"
    )
}

#[test]
fn each_record_names_the_commit_and_author_that_caused_it() {
    let env = Env::base();
    env.systems();
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    // Two people's commits land before the next apply.
    let by_ann = env.commit_as(
        "ann@northwind.example",
        &[(
            "clients/acme/xena.yaml",
            Some(&member("xena", "    - role: viewer\n")),
        )],
        "add xena",
    );
    let by_bob = env.commit_as(
        "bob@northwind.example",
        &[(
            "clients/acme/yuri.yaml",
            Some(&member(
                "yuri",
                "    - role: viewer\n      expires: 2026-11-22T00:00:00Z\n",
            )),
        )],
        "add yuri until the 22nd",
    );
    assert_eq!(env.run(&["apply", REPO, "--now", NOW]).code, 0);
    let cause = |who: &str, change: &str| -> (String, String) {
        let all = records(&env);
        let r = all
            .iter()
            .rev()
            .find(|r| r["identity"] == who && r["change"] == change)
            .unwrap_or_else(|| panic!("no {change} record for {who}"));
        (
            r["revision"].as_str().unwrap().to_string(),
            r["author"].as_str().unwrap().to_string(),
        )
    };
    let rev = |oid: git2::Oid| format!("main@sha1:{oid}");
    assert_eq!(
        cause("xena@acme.example", "grant"),
        (rev(by_ann), "ann@northwind.example".to_string())
    );
    assert_eq!(
        cause("yuri@acme.example", "grant"),
        (rev(by_bob), "bob@northwind.example".to_string())
    );
    // A third person offboards xena; yuri's grant expires on its own: the expiry names
    // the commit that set it, not the newest one.
    let by_cat = env.commit_as(
        "cat@northwind.example",
        &[("clients/acme/xena.yaml", None)],
        "xena left",
    );
    assert_eq!(
        env.run(&["apply", REPO, "--now", "2026-11-23T00:00:00Z"])
            .code,
        0
    );
    assert_eq!(
        cause("xena@acme.example", "revoke"),
        (rev(by_cat), "cat@northwind.example".to_string())
    );
    assert_eq!(
        cause("yuri@acme.example", "revoke"),
        (rev(by_bob), "bob@northwind.example".to_string())
    );
}
