//! The audit ledger: a scripted history committed through the real audit path
//! (`build_commit` + `commit_audit` into a git repository), then `who --at` answers,
//! tamper detection and the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Repository, Signature};
use jiff::Timestamp;
use latchkey::audit::replay::{self, Checkpoint};
use latchkey::audit::store::LedgerSource;
use latchkey::audit::verify::{BreakKind, verify};
use latchkey::audit::{
    Event, LedgerTail, Record, RunAudit, State, Trigger, build_commit, build_commit_on,
};
use latchkey::source::{Location, SourceRepo};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// One change record as the apply path writes it.
struct Ch<'a> {
    at: &'a str,
    who: &'a str,
    system: &'a str,
    change: &'a str,
    ent: Option<&'a str>,
    role: Option<&'a str>,
    client: &'a str,
    reason: &'a str,
    result: &'a str,
    expires: Option<&'a str>,
}

fn ch<'a>(at: &'a str, who: &'a str, system: &'a str, change: &'a str) -> Ch<'a> {
    Ch {
        at,
        who,
        system,
        change,
        ent: None,
        role: None,
        client: "acme",
        reason: "declared",
        result: "applied",
        expires: None,
    }
}

impl Ch<'_> {
    fn record(&self, run: &str, rev: &str) -> Record {
        let mut r = Record::new(Event::Change, t(self.at), run, rev, Trigger::Merge);
        r.system = Some(self.system.into());
        r.client = Some(self.client.into());
        r.identity = Some(self.who.into());
        r.change = Some(self.change.into());
        r.entitlement = self.ent.map(Into::into);
        r.role = self.role.map(Into::into);
        r.expires = self.expires.map(t);
        r.reason = Some(self.reason.into());
        r.result = Some(self.result.into());
        r.author = Some("ops@northwind.example".into());
        r
    }
}

/// A repository with a scripted five-run history over January–April 2026.
struct Scripted {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn rev(n: u8) -> String {
    format!("main@sha1:{}", format!("{n:x}").repeat(40))
}

fn scripted() -> Scripted {
    scripted_with(false).0
}

/// The scripted history; with `carry`, each commit builds on the tail the previous one
/// left (as a controller does), and the last tail is returned.
fn scripted_with(carry: bool) -> (Scripted, Option<LedgerTail>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("access");
    let git = Repository::init(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "access\n").unwrap();
    let mut idx = git.index().unwrap();
    idx.add_path(Path::new("README.md")).unwrap();
    let tree = git.find_tree(idx.write_tree().unwrap()).unwrap();
    let sig = Signature::now("Dana Ops", "ops@northwind.example").unwrap();
    git.commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
        .unwrap();
    let branch = git.head().unwrap().shorthand().unwrap().to_string();
    let repo = SourceRepo::open(&Location::Path(dir.clone()), tmp.path()).unwrap();

    let grant = |at, who, system, ent, role, client| Ch {
        ent: Some(ent),
        role: Some(role),
        client,
        ..ch(at, who, system, "grant")
    };
    let runs: Vec<(&str, Vec<Ch>)> = vec![
        (
            "2026-01-10T09:00:00Z",
            vec![
                ch(
                    "2026-01-10T09:00:01Z",
                    "alice@acme.example",
                    "portal",
                    "create-account",
                ),
                grant(
                    "2026-01-10T09:00:02Z",
                    "alice@acme.example",
                    "portal",
                    "acme:finance",
                    "client-finance",
                    "acme",
                ),
                Ch {
                    expires: Some("2026-03-01T00:00:00Z"),
                    ..grant(
                        "2026-01-10T09:00:03Z",
                        "bob@northwind.example",
                        "portal",
                        "acme:project",
                        "agency-developer",
                        "acme",
                    )
                },
                grant(
                    "2026-01-10T09:00:04Z",
                    "carol@acme.example",
                    "staging",
                    "acme:admin",
                    "client-staging-admin",
                    "acme",
                ),
            ],
        ),
        (
            "2026-02-05T10:00:00Z",
            vec![
                grant(
                    "2026-02-05T10:00:01Z",
                    "dave@globex.example",
                    "portal",
                    "globex:viewer",
                    "client-viewer",
                    "globex",
                ),
                Ch {
                    result: "failed",
                    ..grant(
                        "2026-02-05T10:00:02Z",
                        "eve@globex.example",
                        "portal",
                        "globex:finance",
                        "client-finance",
                        "globex",
                    )
                },
            ],
        ),
        (
            "2026-03-01T00:05:00Z",
            vec![Ch {
                reason: "expired",
                ent: Some("acme:project"),
                ..ch(
                    "2026-03-01T00:05:01Z",
                    "bob@northwind.example",
                    "portal",
                    "revoke",
                )
            }],
        ),
        (
            "2026-03-20T16:00:00Z",
            vec![Ch {
                reason: "offboarded",
                ..ch(
                    "2026-03-20T16:00:01Z",
                    "alice@acme.example",
                    "portal",
                    "disable-account",
                )
            }],
        ),
        (
            "2026-04-02T08:00:00Z",
            vec![
                ch(
                    "2026-04-02T08:00:01Z",
                    "alice@acme.example",
                    "portal",
                    "enable-account",
                ),
                grant(
                    "2026-04-02T08:00:02Z",
                    "alice@acme.example",
                    "portal",
                    "acme:viewer",
                    "client-viewer",
                    "acme",
                ),
            ],
        ),
    ];
    let mut left: Option<(git2::Oid, LedgerTail)> = None;
    for (i, (now, changes)) in runs.into_iter().enumerate() {
        let run = format!("run-{}", i + 1);
        let revision = rev(i as u8 + 1);
        let records = changes.iter().map(|c| c.record(&run, &revision)).collect();
        let (commit, tail) = build_commit_on(
            &repo,
            &branch,
            "audit/",
            RunAudit {
                catalog: None,
                all_reports: false,
                revision: revision.clone(),
                now: t(now),
                records,
                state: Some(State::default()),
                summary: format!("run {}", i + 1),
                run: run.clone(),
                broken: None,
            },
            left.as_ref()
                .filter(|_| carry)
                .map(|(oid, tail)| (*oid, tail)),
        )
        .unwrap()
        .unwrap();
        let oid = repo.commit_audit(&branch, &commit).unwrap().unwrap();
        left = Some((oid, tail));
    }
    (Scripted { _tmp: tmp, dir }, left.map(|(_, tail)| tail))
}

/// A controller's audit commit builds on the tail its previous commit left instead of
/// reading and replaying the month again (issue 21: the expiry path proportional to the
/// change): across month boundaries, checkpoints and indexes, the ledger it writes is
/// byte for byte the one read afresh gives, and so is the access it carries.
#[test]
fn commits_on_a_carried_tail_write_what_a_fresh_read_writes() {
    let (fresh, _) = scripted_with(false);
    let (carried, tail) = scripted_with(true);
    let audit_tree = |s: &Scripted| {
        let git = Repository::open(&s.dir).unwrap();
        let tree = git.head().unwrap().peel_to_tree().unwrap();
        tree.get_path(Path::new("audit")).unwrap().id()
    };
    assert_eq!(audit_tree(&fresh), audit_tree(&carried));
    let repo = carried.repo();
    let src = LedgerSource::Git {
        rev: repo.resolve("HEAD").unwrap(),
        repo: &repo,
        root: "audit/".into(),
    };
    let (replayed, _) = replay::state_at_end(&src).unwrap();
    assert_eq!(tail.unwrap().access(), &replayed);
}

/// A run of `records` at `now` as the tests' audit commits write it.
fn run_audit(now: &str, run: &str, revision: String, records: Vec<Record>) -> RunAudit<'static> {
    RunAudit {
        catalog: None,
        all_reports: false,
        revision,
        now: t(now),
        records,
        state: Some(State::default()),
        summary: run.replace('-', " "),
        run: run.to_string(),
        broken: None,
    }
}

/// Pending failures and the anchor check come from the tail a controller carries
/// (issue 21: an expiry does not scan the month for them): after each commit on a
/// carried tail they are what a fresh read of the ledger gives, through a failure, its
/// retry and a month whose failure leaves the two-month window.
#[test]
fn pending_failures_and_the_anchor_on_a_carried_tail_are_what_a_fresh_read_gives() {
    let (s, tail) = scripted_with(true);
    let repo = s.repo();
    let branch = repo.resolve("HEAD").unwrap().branch.unwrap();
    let mut left = (repo.resolve("HEAD").unwrap().oid, tail.unwrap());
    let failed = |at| Ch {
        result: "failed",
        ent: Some("globex:finance"),
        role: Some("client-finance"),
        client: "globex",
        ..ch(at, "eve@globex.example", "portal", "grant")
    };
    let retried = |at| Ch {
        result: "applied",
        ..failed(at)
    };
    let runs: [(&str, Ch); 3] = [
        ("2026-04-20T08:00:00Z", failed("2026-04-20T08:00:01Z")),
        ("2026-05-02T08:00:00Z", retried("2026-05-02T08:00:01Z")),
        ("2026-06-02T08:00:00Z", failed("2026-06-02T08:00:01Z")),
    ];
    let mut seen = Vec::new();
    for (i, (now, change)) in runs.into_iter().enumerate() {
        let run = format!("run-{}", 10 + i);
        let revision = rev(10 + i as u8);
        let records = vec![change.record(&run, &revision)];
        let (commit, tail) = build_commit_on(
            &repo,
            &branch,
            "audit/",
            run_audit(now, &run, revision, records),
            Some((left.0, &left.1)),
        )
        .unwrap()
        .unwrap();
        let oid = repo.commit_audit(&branch, &commit).unwrap().unwrap();
        latchkey::audit::anchor::set(&repo, &branch, oid).unwrap();
        let fresh = latchkey::audit::pending_failures(&repo, &branch, "audit/").unwrap();
        assert_eq!(tail.pending(), &fresh, "after {run}");
        seen.push(fresh.len());
        let carried =
            latchkey::audit::check_anchor_on(&repo, &branch, "audit/", Some(&tail)).unwrap();
        let read = latchkey::audit::check_anchor(&repo, &branch, "audit/").unwrap();
        assert_eq!(carried, read, "after {run}");
        assert_eq!(carried, Ok(()));
        left = (oid, tail);
    }
    // The failure is pending, its retry clears it, a new one is pending again.
    assert_eq!(seen, [1, 0, 1]);
}

/// Carol's staging account disabled at `at`, as run 9.
fn carol_off(at: &str) -> Record {
    ch(at, "carol@acme.example", "staging", "disable-account").record("run-9", &rev(9))
}

/// What a controller's commit tells its verifier: for each month blob it wrote, the
/// blob it appended to and the lines it appended.
fn note_appended(
    inc: &mut latchkey::audit::verify::Incremental,
    s: &Scripted,
    oid: git2::Oid,
    tail: &LedgerTail,
) {
    let git = Repository::open(&s.dir).unwrap();
    let commit = git.find_commit(oid).unwrap();
    let (tree, parent) = (
        commit.tree().unwrap(),
        commit.parent(0).unwrap().tree().unwrap(),
    );
    for (path, lines) in tail.appended() {
        let path = Path::new(path);
        if let (Ok(from), Ok(to)) = (parent.get_path(path), tree.get_path(path)) {
            inc.appended(from.id(), to.id(), lines);
        }
    }
}

/// A controller's verification resumes after the last line it verified when the newest
/// month only grew by the lines its own commits appended (issue 21), and walks the month
/// from its first line on any other change: an edited record that was already verified
/// is still caught, also when the controller appended on top of the edit.
#[test]
fn verification_resumes_after_the_last_verified_line_and_still_catches_an_edit_before_it() {
    use latchkey::audit::verify::Incremental;
    let (s, tail) = scripted_with(true);
    let repo = s.repo();
    let branch = repo.resolve("HEAD").unwrap().branch.unwrap();
    let mut inc = Incremental::default();
    let first = inc.verify(&s.git_src(&repo), None).unwrap();
    assert!(first.broken.is_none(), "{:?}", first.broken);
    let mut left = (repo.resolve("HEAD").unwrap().oid, tail.unwrap());
    let append = |left: &(git2::Oid, LedgerTail), at: &str| {
        let repo = s.repo();
        let (commit, tail) = build_commit_on(
            &repo,
            &branch,
            "audit/",
            run_audit(at, "run-9", rev(9), vec![carol_off(at)]),
            Some((left.0, &left.1)),
        )
        .unwrap()
        .unwrap();
        (repo.commit_audit(&branch, &commit).unwrap().unwrap(), tail)
    };

    // Two of the controller's own appends, noted: only their two lines are walked, and
    // the totals are a verification from genesis's.
    for at in ["2026-04-20T08:00:00Z", "2026-04-21T08:00:00Z"] {
        left = append(&left, at);
        note_appended(&mut inc, &s, left.0, &left.1);
    }
    let resumed = inc.verify(&s.git_src(&repo), None).unwrap();
    let full = verify(&s.git_src(&repo)).unwrap();
    assert!(resumed.broken.is_none(), "{:?}", resumed.broken);
    assert_eq!(resumed.walked, 2);
    assert_eq!(
        (
            resumed.records,
            resumed.checkpoints,
            resumed.indexes,
            &resumed.head
        ),
        (full.records, full.checkpoints, full.indexes, &full.head)
    );

    // An append the verifier was not told of (another writer's): the whole month is
    // walked again, and verifies.
    s.append_run(
        "2026-04-22T08:00:00Z",
        &[ch(
            "2026-04-22T08:00:01Z",
            "carol@acme.example",
            "staging",
            "disable-account",
        )],
    );
    let repo = s.repo();
    let april = std::fs::read_to_string(s.dir.join("audit/ledger/2026/04.jsonl")).unwrap();
    let again = inc.verify(&s.git_src(&repo), None).unwrap();
    assert!(again.broken.is_none(), "{:?}", again.broken);
    assert_eq!(again.walked, april.lines().count() as u64);

    // A verified record edited in the newest month, then the controller's own append on
    // top of the edit (noted): the edit is not the blob the verifier verified, so the
    // month is walked and the edit is reported at its line.
    s.forge_april_admin();
    let repo = s.repo();
    let at = repo.resolve("HEAD").unwrap().oid;
    let at23 = "2026-04-23T08:00:00Z";
    let fresh = build_commit_on(
        &repo,
        &branch,
        "audit/",
        run_audit(at23, "run-9", rev(9), vec![carol_off(at23)]),
        None,
    )
    .unwrap()
    .unwrap();
    let oid = repo.commit_audit(&branch, &fresh.0).unwrap().unwrap();
    assert_ne!(oid, at);
    note_appended(&mut inc, &s, oid, &fresh.1);
    let b = inc
        .verify(&s.git_src(&repo), None)
        .unwrap()
        .broken
        .expect("an edited verified record was not caught");
    assert_eq!(
        (b.file.as_str(), b.line, b.kind),
        ("audit/ledger/2026/04.jsonl", Some(2), BreakKind::Edited)
    );
}

impl Scripted {
    fn repo(&self) -> SourceRepo {
        SourceRepo::open(&Location::Path(self.dir.clone()), &self.dir).unwrap()
    }

    /// (identity, system, entitlement) held at `at`, from git objects.
    fn who(&self, at: &str) -> Vec<(String, String, String)> {
        let repo = self.repo();
        let src = LedgerSource::Git {
            rev: repo.resolve("HEAD").unwrap(),
            repo: &repo,
            root: "audit/".into(),
        };
        let state = replay::state_at(&src, t(at)).unwrap();
        state
            .entries()
            .map(|a| (a.identity.clone(), a.system.clone(), a.entitlement.clone()))
            .collect()
    }

    /// Rewrites a file under the repository as a human commit on the branch.
    fn tamper(&self, path: &str, f: impl FnOnce(Vec<&str>) -> Option<Vec<String>>) {
        let git = Repository::open(&self.dir).unwrap();
        let head = git.head().unwrap().peel_to_commit().unwrap();
        let tree = head.tree().unwrap();
        let text = std::fs::read_to_string(self.dir.join(path)).unwrap();
        let mut update = TreeUpdateBuilder::new();
        match f(text.lines().collect()) {
            Some(lines) => {
                let mut content = lines.join("\n");
                content.push('\n');
                std::fs::write(self.dir.join(path), &content).unwrap();
                let blob = git.blob(content.as_bytes()).unwrap();
                update.upsert(path, blob, FileMode::Blob);
            }
            None => {
                std::fs::remove_file(self.dir.join(path)).unwrap();
                update.remove(path);
            }
        }
        let new_tree = git
            .find_tree(update.create_updated(&git, &tree).unwrap())
            .unwrap();
        let sig = Signature::now("Mallory", "mallory@example.com").unwrap();
        git.commit(
            Some("HEAD"),
            &sig,
            &sig,
            "tidy the ledger",
            &new_tree,
            &[&head],
        )
        .unwrap();
    }

    fn verify_git(&self) -> latchkey::audit::verify::Verification {
        let repo = self.repo();
        let src = LedgerSource::Git {
            rev: repo.resolve("HEAD").unwrap(),
            repo: &repo,
            root: "audit/".into(),
        };
        verify(&src).unwrap()
    }

    /// Asserts the first break is at `file`:`line` of `kind`, in git objects and in the
    /// checkout directory alike.
    fn assert_broken(&self, file: &str, line: Option<usize>, kind: BreakKind) -> String {
        let v = self.verify_git();
        let b = v.broken.expect("tampering not detected");
        assert_eq!((b.file.as_str(), b.line, b.kind), (file, line, kind), "{b}");
        let d = verify(&LedgerSource::Dir(self.dir.join("audit"))).unwrap();
        let db = d.broken.expect("tampering not detected in the directory");
        assert_eq!((db.line, db.kind), (line, kind), "{db}");
        assert!(db.file.ends_with(file.trim_start_matches("audit/")), "{db}");
        b.to_string()
    }
}

fn triple(who: &str, system: &str, ent: &str) -> (String, String, String) {
    (who.into(), system.into(), ent.into())
}

#[test]
fn who_at_answers_the_scripted_history() {
    let s = scripted();
    let alice_fin = triple("alice@acme.example", "portal", "acme:finance");
    let alice_view = triple("alice@acme.example", "portal", "acme:viewer");
    let bob = triple("bob@northwind.example", "portal", "acme:project");
    let carol = triple("carol@acme.example", "staging", "acme:admin");
    let dave = triple("dave@globex.example", "portal", "globex:viewer");
    assert_eq!(s.who("2025-12-31T00:00:00Z"), vec![]);
    assert_eq!(s.who("2026-01-10T09:00:01Z"), vec![]);
    assert_eq!(s.who("2026-01-10T09:00:02Z"), vec![alice_fin.clone()]);
    assert_eq!(
        s.who("2026-01-15T00:00:00Z"),
        vec![alice_fin.clone(), bob.clone(), carol.clone()]
    );
    // dave granted; eve's grant failed and gives nothing.
    assert_eq!(
        s.who("2026-02-10T00:00:00Z"),
        vec![alice_fin.clone(), bob.clone(), carol.clone(), dave.clone()]
    );
    // bob's grant expired at midnight but access lasts until the revocation is recorded.
    assert_eq!(
        s.who("2026-03-01T00:03:00Z"),
        vec![alice_fin.clone(), bob.clone(), carol.clone(), dave.clone()]
    );
    assert_eq!(
        s.who("2026-03-01T12:00:00Z"),
        vec![alice_fin.clone(), carol.clone(), dave.clone()]
    );
    // alice offboarded: disabling the account removes all her portal entitlements.
    assert_eq!(
        s.who("2026-03-25T00:00:00Z"),
        vec![carol.clone(), dave.clone()]
    );
    assert_eq!(
        s.who("2026-04-10T00:00:00Z"),
        vec![alice_view.clone(), carol.clone(), dave.clone()]
    );
    assert_eq!(s.who("2027-06-01T00:00:00Z"), vec![alice_view, carol, dave]);
}

#[test]
fn checkpoints_are_written_at_month_boundaries_and_queries_work_without_them() {
    let s = scripted();
    let cp: Checkpoint = serde_json::from_str(
        &std::fs::read_to_string(s.dir.join("audit/ledger/2026/03.checkpoint.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cp.month, "2026-03");
    assert_eq!(cp.records, 6);
    let feb = std::fs::read_to_string(s.dir.join("audit/ledger/2026/02.jsonl")).unwrap();
    let last_feb: Record = serde_json::from_str(feb.lines().last().unwrap()).unwrap();
    assert_eq!(cp.after, last_feb.hash);
    let held: Vec<(&str, &str)> = cp
        .access
        .iter()
        .map(|a| (a.identity.as_str(), a.entitlement.as_str()))
        .collect();
    assert_eq!(
        held,
        vec![
            ("alice@acme.example", "acme:finance"),
            ("bob@northwind.example", "acme:project"),
            ("carol@acme.example", "acme:admin"),
            ("dave@globex.example", "globex:viewer"),
        ]
    );
    assert_eq!(cp.access[1].revision, rev(1));
    assert_eq!(cp.access[1].since, t("2026-01-10T09:00:03Z"));
    for m in ["01", "02", "03", "04"] {
        assert!(
            s.dir
                .join(format!("audit/ledger/2026/{m}.checkpoint.json"))
                .exists()
        );
    }
    // Without checkpoints the query replays from the start and agrees.
    let with: Vec<_> = [
        "2026-02-10T00:00:00Z",
        "2026-03-25T00:00:00Z",
        "2026-04-10T00:00:00Z",
    ]
    .iter()
    .map(|at| s.who(at))
    .collect();
    for m in ["01", "02", "03", "04"] {
        std::fs::remove_file(s.dir.join(format!("audit/ledger/2026/{m}.checkpoint.json"))).unwrap();
    }
    let dir = LedgerSource::Dir(s.dir.join("audit"));
    for (at, expected) in [
        "2026-02-10T00:00:00Z",
        "2026-03-25T00:00:00Z",
        "2026-04-10T00:00:00Z",
    ]
    .iter()
    .zip(with)
    {
        let got: Vec<_> = replay::state_at(&dir, t(at))
            .unwrap()
            .entries()
            .map(|a| (a.identity.clone(), a.system.clone(), a.entitlement.clone()))
            .collect();
        assert_eq!(got, expected, "at {at}");
    }
}

#[test]
fn an_untouched_ledger_verifies() {
    let s = scripted();
    let v = s.verify_git();
    assert!(v.broken.is_none(), "{:?}", v.broken);
    assert_eq!((v.records, v.months, v.checkpoints), (10, 4, 4));
}

#[test]
fn editing_a_field_is_detected_at_its_line() {
    let s = scripted();
    s.tamper("audit/ledger/2026/01.jsonl", |lines| {
        Some(
            lines
                .iter()
                .map(|l| l.replace("acme:finance", "acme:viewer"))
                .collect(),
        )
    });
    let msg = s.assert_broken("audit/ledger/2026/01.jsonl", Some(2), BreakKind::Edited);
    assert!(msg.contains("the record was edited"), "{msg}");
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
    let s = scripted();
    s.tamper("audit/ledger/2026/01.jsonl", |lines| {
        Some(
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i != 1 {
                        return l.to_string();
                    }
                    let mut r: Record = serde_json::from_str(l).unwrap();
                    r.entitlement = Some("acme:viewer".into());
                    let prev = r.prev.clone();
                    r.seal(&prev);
                    r.to_line()
                })
                .collect(),
        )
    });
    s.assert_broken("audit/ledger/2026/01.jsonl", Some(3), BreakKind::BrokenLink);
}

#[test]
fn deleting_a_line_is_detected_at_the_line_after() {
    let s = scripted();
    s.tamper("audit/ledger/2026/01.jsonl", |mut lines| {
        lines.remove(2);
        Some(lines.into_iter().map(String::from).collect())
    });
    let msg = s.assert_broken("audit/ledger/2026/01.jsonl", Some(3), BreakKind::BrokenLink);
    assert!(msg.contains("deleted, reordered or truncated"), "{msg}");
}

#[test]
fn swapping_two_lines_is_detected_at_the_first_of_them() {
    let s = scripted();
    s.tamper("audit/ledger/2026/01.jsonl", |mut lines| {
        lines.swap(1, 2);
        Some(lines.into_iter().map(String::from).collect())
    });
    s.assert_broken("audit/ledger/2026/01.jsonl", Some(2), BreakKind::BrokenLink);
}

#[test]
fn truncating_a_month_is_detected_at_the_next_month() {
    let s = scripted();
    s.tamper("audit/ledger/2026/01.jsonl", |lines| {
        Some(lines[..2].iter().map(|l| l.to_string()).collect())
    });
    let msg = s.assert_broken("audit/ledger/2026/02.jsonl", Some(1), BreakKind::BrokenLink);
    assert!(msg.contains("01.jsonl (its tail was removed"), "{msg}");
}

#[test]
fn removing_a_whole_month_is_detected_at_the_next_month() {
    let s = scripted();
    s.tamper("audit/ledger/2026/02.jsonl", |_| None);
    s.assert_broken("audit/ledger/2026/03.jsonl", Some(1), BreakKind::BrokenLink);
}

#[test]
fn truncating_the_last_month_is_detected_by_the_ledger_head() {
    let s = scripted();
    s.tamper("audit/ledger/2026/04.jsonl", |lines| {
        Some(lines[..1].iter().map(|l| l.to_string()).collect())
    });
    let msg = s.assert_broken("audit/state.yaml", None, BreakKind::Truncated);
    assert!(
        msg.contains("removed from the end of audit/ledger/2026/04.jsonl"),
        "{msg}"
    );
}

#[test]
fn an_unparseable_line_is_reported() {
    let s = scripted();
    s.tamper("audit/ledger/2026/03.jsonl", |mut lines| {
        lines.insert(1, "{not json");
        Some(lines.into_iter().map(String::from).collect())
    });
    s.assert_broken(
        "audit/ledger/2026/03.jsonl",
        Some(2),
        BreakKind::Unparseable,
    );
}

#[test]
fn a_forged_checkpoint_is_detected() {
    let s = scripted();
    s.tamper("audit/ledger/2026/04.checkpoint.json", |lines| {
        let mut cp: Checkpoint = serde_json::from_str(&lines.join("\n")).unwrap();
        // Hide that dave had access.
        cp.access.retain(|a| a.identity != "dave@globex.example");
        Some(vec![cp.to_json().trim_end().to_string()])
    });
    let msg = s.assert_broken(
        "audit/ledger/2026/04.checkpoint.json",
        None,
        BreakKind::Checkpoint,
    );
    assert!(msg.contains("it omits dave@globex.example"), "{msg}");
}

fn latchkey(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_verify_who_and_history() {
    let s = scripted();
    let repo = s.dir.to_str().unwrap();
    let (code, out, _) = latchkey(&["audit", "verify", repo]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ledger intact: 10 records in 4 month files, 4 checkpoints"),
        "{out}"
    );

    let (code, out, err) = latchkey(&[
        "who",
        repo,
        "--at",
        "2026-02-10T00:00:00Z",
        "--client",
        "acme",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let who: Vec<&str> = v["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identity"].as_str().unwrap())
        .collect();
    assert_eq!(
        who,
        vec![
            "alice@acme.example",
            "bob@northwind.example",
            "carol@acme.example"
        ]
    );

    let (_, out, _) = latchkey(&[
        "who",
        repo,
        "--at",
        "2026-02-10T00:00:00Z",
        "--system",
        "staging",
        "--format",
        "markdown",
    ]);
    assert!(
        out.contains("| carol@acme.example | staging | acme:admin | client-staging-admin | acme | 2026-01-10T09:00:04Z | no expiry | `main@111111111111` |"),
        "{out}"
    );
    assert!(!out.contains("alice"), "{out}");

    let (_, out, _) = latchkey(&[
        "who",
        repo,
        "--at",
        "2026-01-15T00:00:00Z",
        "--role",
        "agency-developer",
    ]);
    assert!(
        out.contains("Access at 2026-01-15T00:00:00Z (1 entitlements)"),
        "{out}"
    );
    assert!(
        out.contains("bob@northwind.example  portal  acme:project  role agency-developer"),
        "{out}"
    );

    let (code, out, _) = latchkey(&["history", "ALICE@acme.example", repo]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "History of ALICE@acme.example (5 records)");
    assert!(
        lines[3]
            .starts_with("2026-03-20T16:00:01Z  disable account  on portal  (offboarded)  applied"),
        "{out}"
    );
    assert!(lines[3].contains("main@444444444444  run run-4"), "{out}");

    let (_, out, _) = latchkey(&[
        "history",
        "eve@globex.example",
        repo,
        "--format",
        "markdown",
    ]);
    assert!(
        out.contains("| grant globex:finance | portal | client-finance | declared | failed |"),
        "{out}"
    );

    s.tamper("audit/ledger/2026/01.jsonl", |mut lines| {
        lines.swap(1, 2);
        Some(lines.into_iter().map(String::from).collect())
    });
    let (code, out, err) = latchkey(&["audit", "verify", repo]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("audit/ledger/2026/01.jsonl:2: broken link: prev is "),
        "{out}"
    );
    assert!(
        err.contains("error: the ledger is broken at audit/ledger/2026/01.jsonl:2"),
        "{err}"
    );
    // A plain directory (the checkout's audit/) is verified the same way.
    let audit_dir = s.dir.join("audit");
    let (code, out, _) = latchkey(&[
        "audit",
        "verify",
        audit_dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["broken"]["kind"], "broken-link", "{out}");
    assert_eq!(v["broken"]["line"], 2, "{out}");
    assert!(
        v["broken"]["file"]
            .as_str()
            .unwrap()
            .ends_with("ledger/2026/01.jsonl"),
        "{out}"
    );
    // The revision before the tampering still verifies.
    let (code, _, _) = latchkey(&["audit", "verify", repo, "--rev", "HEAD~1"]);
    assert_eq!(code, 0);
}

/// A repository holding the example agency, committed at a fixed time.
fn example_repo(dir: &Path) -> SourceRepo {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency");
    let git = Repository::init(dir).unwrap();
    let mut idx = git.index().unwrap();
    for sub in ["latchkey.yaml", "roles", "clients", "team"] {
        let from = src.join(sub);
        let mut stack = vec![from];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                let rel = p.strip_prefix(&src).unwrap();
                std::fs::create_dir_all(dir.join(rel).parent().unwrap()).unwrap();
                std::fs::copy(&p, dir.join(rel)).unwrap();
                idx.add_path(rel).unwrap();
            }
        }
    }
    let tree = git.find_tree(idx.write_tree().unwrap()).unwrap();
    let when = git2::Time::new(t("2026-11-20T10:00:00Z").as_second(), 0);
    let sig = Signature::new("Dana Ops", "ops@northwind.example", &when).unwrap();
    git.commit(Some("HEAD"), &sig, &sig, "access", &tree, &[])
        .unwrap();
    SourceRepo::open(&Location::Path(dir.to_path_buf()), dir).unwrap()
}

#[test]
fn client_report_lists_since_until_and_granting_commit() {
    use latchkey::audit::replay::AccessState;
    use latchkey::connectors::{Registry, SecretSource};
    let tmp = tempfile::tempdir().unwrap();
    let repo = example_repo(&tmp.path().join("access"));
    let mut rec =
        latchkey::reconcile::Reconciler::new(repo, Registry::builtin(SecretSource::default()));
    let head = rec.repo.resolve("HEAD").unwrap();
    let now = t("2026-12-10T12:00:00Z");
    let loaded = rec.load(&head, "", now).unwrap();
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);

    let g = |at, who, system, ent, role| Ch {
        ent: Some(ent),
        role: Some(role),
        ..ch(at, who, system, "grant")
    };
    let first = [
        g(
            "2026-11-20T10:05:00Z",
            "alex@northwind.example",
            "portal",
            "acme:finance",
            "agency-account-manager",
        ),
        g(
            "2026-11-20T10:05:01Z",
            "alex@northwind.example",
            "portal",
            "acme:project",
            "agency-account-manager",
        ),
        g(
            "2026-11-20T10:05:02Z",
            "dana@acme.example",
            "portal",
            "acme:project",
            "client-project",
        ),
        g(
            "2026-11-20T10:05:03Z",
            "dana@acme.example",
            "portal",
            "acme:finance",
            "client-finance",
        ),
        g(
            "2026-11-20T10:05:04Z",
            "erin@acme.example",
            "portal",
            "acme:finance",
            "client-finance",
        ),
        g(
            "2026-11-20T10:05:05Z",
            "erin@acme.example",
            "staging",
            "acme:admin",
            "client-staging-admin",
        ),
    ];
    let second = [
        g(
            "2026-12-01T09:00:00Z",
            "dana@acme.example",
            "portal",
            "acme:viewer",
            "client-project",
        ),
        g(
            "2026-12-01T09:00:01Z",
            "erin@acme.example",
            "portal",
            "acme:viewer",
            "client-finance",
        ),
        Ch {
            ent: Some("acme:finance"),
            reason: "undeclared",
            ..ch(
                "2026-12-05T08:00:00Z",
                "frank@acme.example",
                "portal",
                "revoke",
            )
        },
    ];
    let mut access = AccessState::default();
    let mut recent = Vec::new();
    for c in &first {
        access.apply(&c.record("run-1", &rev(1)));
    }
    for c in &second {
        let r = c.record("run-2", &rev(2));
        access.apply(&r);
        recent.push(r);
    }
    use latchkey::audit::report::{Scope, client_reports};
    let recent: Vec<&Record> = recent.iter().collect();
    let reports = client_reports(&loaded.catalog, now, &rev(2), &recent, &access, Scope::All);
    insta::assert_snapshot!("acme_report", reports["acme"]);
    // Scoped to one client (an apply whose records concern only it): that page alone,
    // the same as in a full rebuild.
    let only = std::collections::BTreeSet::from(["acme".to_string()]);
    let scoped = client_reports(
        &loaded.catalog,
        now,
        &rev(2),
        &recent,
        &access,
        Scope::Only(&only),
    );
    assert_eq!(scoped.keys().collect::<Vec<_>>(), ["acme"]);
    assert_eq!(scoped["acme"], reports["acme"]);
    assert!(reports.len() > 1, "the fixture has more than one client");
    // A scoped report indexes only the people its client's page lists (issue 21): with
    // an offboarding on record, every client's scoped page is still its full one.
    let off = Ch {
        reason: "offboarded",
        ..ch(
            "2026-12-06T08:00:00Z",
            "dana@acme.example",
            "portal",
            "disable-account",
        )
    }
    .record("run-3", &rev(3));
    let mut with_off = recent.clone();
    with_off.push(&off);
    let mut after = access.clone();
    after.apply(&off);
    let all = client_reports(&loaded.catalog, now, &rev(3), &with_off, &after, Scope::All);
    let offboarded = all["acme"].split("## Offboarded").nth(1).unwrap_or("");
    assert!(offboarded.contains("dana@acme.example"), "{}", all["acme"]);
    for client in all.keys() {
        let only = std::collections::BTreeSet::from([client.clone()]);
        let scoped = client_reports(
            &loaded.catalog,
            now,
            &rev(3),
            &with_off,
            &after,
            Scope::Only(&only),
        );
        assert_eq!(scoped[client], all[client], "{client}");
    }
}

/// Run by `audit_commits_are_signed_with_the_configured_ssh_key` in a child process (so
/// `LATCHKEY_SIGNING_KEY` is set for it alone): one audit commit into
/// `LATCHKEY_TEST_REPO`, printing `committed <oid>` or `error: <chain>`.
#[test]
#[ignore = "helper run in a child process by audit_commits_are_signed_with_the_configured_ssh_key"]
fn signing_child() {
    let Some(dir) = std::env::var_os("LATCHKEY_TEST_REPO") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let git = Repository::init(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "access\n").unwrap();
    let mut idx = git.index().unwrap();
    idx.add_path(Path::new("README.md")).unwrap();
    let tree = git.find_tree(idx.write_tree().unwrap()).unwrap();
    let sig = Signature::now("Dana Ops", "ops@northwind.example").unwrap();
    git.commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
        .unwrap();
    let branch = git.head().unwrap().shorthand().unwrap().to_string();
    let repo = SourceRepo::open(&Location::Path(dir.clone()), &dir).unwrap();
    let record = ch(
        "2026-01-10T09:00:01Z",
        "alice@acme.example",
        "portal",
        "create-account",
    )
    .record("run-1", &rev(1));
    let commit = build_commit(
        &repo,
        &branch,
        "audit/",
        RunAudit {
            catalog: None,
            all_reports: false,
            revision: rev(1),
            now: t("2026-01-10T09:00:00Z"),
            records: vec![record],
            state: Some(State::default()),
            summary: "1 change".into(),
            run: "run-1".into(),
            broken: None,
        },
    )
    .unwrap()
    .unwrap();
    match repo.commit_audit(&branch, &commit) {
        Ok(oid) => println!("committed {}", oid.unwrap()),
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            println!("error: {msg}");
        }
    }
}

fn run_signing_child(repo: &Path, key: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "signing_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LATCHKEY_TEST_REPO", repo)
        .env("LATCHKEY_SIGNING_KEY", key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // libtest prints `test signing_child ... ` before the child's own line.
    stdout
        .lines()
        .find_map(|l| {
            l.find("committed ")
                .or_else(|| l.find("error: "))
                .map(|i| l[i..].to_string())
        })
        .unwrap_or_else(|| panic!("no result from the child: {stdout}"))
}

#[test]
fn audit_commits_are_signed_with_the_configured_ssh_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("latchkey_ed25519");
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "latchkey@agency",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(st.success());
    let repo = tmp.path().join("access");
    let line = run_signing_child(&repo, &key);
    let oid = line
        .strip_prefix("committed ")
        .unwrap_or_else(|| panic!("{line}"));

    let git = Repository::open(&repo).unwrap();
    let (sig, _) = git
        .extract_signature(&git2::Oid::from_str(oid).unwrap(), None)
        .unwrap();
    assert!(
        std::str::from_utf8(&sig)
            .unwrap()
            .starts_with("-----BEGIN SSH SIGNATURE-----")
    );
    let msg = git.find_commit(git2::Oid::from_str(oid).unwrap()).unwrap();
    let msg = msg.message().unwrap();
    assert!(
        msg.contains("\n\nLatchkey-Run: run-1\nLatchkey-Revision: main@sha1:1111"),
        "{msg}"
    );

    // git itself accepts the signature for the configured signer.
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = tmp.path().join("allowed_signers");
    std::fs::write(&allowed, format!("latchkey@agency {pubkey}")).unwrap();
    let out = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", oid])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Good \"git\" signature for latchkey@agency"),
        "{err}"
    );

    // A configured key that cannot sign stops the commit (fail closed).
    let line = run_signing_child(&tmp.path().join("access2"), &tmp.path().join("missing_key"));
    assert!(
        line.starts_with("error: cannot commit the audit to branch"),
        "{line}"
    );
    assert!(
        line.contains("cannot sign the commit with LATCHKEY_SIGNING_KEY="),
        "{line}"
    );
}

#[test]
fn an_unknown_format_version_is_reported() {
    let s = scripted();
    s.tamper("audit/ledger/2026/02.jsonl", |lines| {
        Some(
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i == 1 {
                        l.replacen("{\"v\":1,", "{\"v\":2,", 1)
                    } else {
                        l.to_string()
                    }
                })
                .collect(),
        )
    });
    let msg = s.assert_broken(
        "audit/ledger/2026/02.jsonl",
        Some(2),
        BreakKind::UnknownVersion,
    );
    assert!(
        msg.contains("unknown ledger format version 2 (this latchkey reads v=1)"),
        "{msg}"
    );
}

impl Scripted {
    fn git_src<'a>(&self, repo: &'a SourceRepo) -> LedgerSource<'a> {
        LedgerSource::Git {
            rev: repo.resolve("HEAD").unwrap(),
            repo,
            root: "audit/".into(),
        }
    }

    /// Appends one run through the real audit path (build_commit + commit_audit).
    fn append_run(&self, now: &str, changes: &[Ch]) {
        let repo = self.repo();
        let branch = repo.resolve("HEAD").unwrap().branch.unwrap();
        let records = changes.iter().map(|c| c.record("run-9", &rev(9))).collect();
        let commit = build_commit(
            &repo,
            &branch,
            "audit/",
            RunAudit {
                catalog: None,
                all_reports: false,
                revision: rev(9),
                now: t(now),
                records,
                state: Some(State::default()),
                summary: "run 9".into(),
                run: "run-9".into(),
                broken: None,
            },
        )
        .unwrap()
        .unwrap();
        repo.commit_audit(&branch, &commit).unwrap();
    }

    /// Rewrites a file as [`Scripted::tamper`] does, in a commit that passes for one of
    /// latchkey's (a forged `Latchkey-Ledger-Head` trailer, only audit/ changed): what
    /// the anchor cannot catch, so verify and history must.
    fn forge(&self, path: &str, f: impl FnOnce(Vec<&str>) -> Option<Vec<String>>) {
        self.tamper(path, f);
        let git = Repository::open(&self.dir).unwrap();
        let head = git.head().unwrap().peel_to_commit().unwrap();
        let state = std::fs::read_to_string(self.dir.join("audit/state.yaml")).unwrap();
        let ledger_head = State::parse(&state).unwrap().ledger_head;
        let message = format!("latchkey: run\n\nLatchkey-Ledger-Head: {ledger_head}\n");
        head.amend(Some("HEAD"), None, None, None, Some(&message), None)
            .unwrap();
    }

    /// Forges April's viewer grant into an admin grant (see [`Scripted::forge`]).
    fn forge_april_admin(&self) {
        self.forge("audit/ledger/2026/04.jsonl", |lines| {
            Some(
                lines
                    .iter()
                    .map(|l| l.replace("acme:viewer", "acme:admin"))
                    .collect(),
            )
        });
    }

    fn history(&self, who: &str) -> replay::History {
        let repo = self.repo();
        replay::history_traced(&self.git_src(&repo), who).unwrap()
    }
}

/// The bucket file of `who` in a month's index.
fn bucket_file(month: &str, who: &str) -> String {
    format!(
        "audit/ledger/2026/{month}.index/{}.jsonl",
        latchkey::audit::index::bucket_of(who)
    )
}

#[test]
fn closed_months_are_indexed_and_history_from_the_index_agrees_with_a_scan() {
    let s = scripted();
    for m in ["01", "02", "03"] {
        assert!(
            s.dir
                .join(format!("audit/ledger/2026/{m}.index.json"))
                .exists()
        );
    }
    // The open month is indexed when the next one starts.
    assert!(!s.dir.join("audit/ledger/2026/04.index.json").exists());
    let v = s.verify_git();
    assert!(v.broken.is_none(), "{:?}", v.broken);
    assert_eq!(v.indexes, 3);
    let dir = LedgerSource::Dir(s.dir.join("audit"));
    for who in [
        "alice@acme.example",
        "Bob@Northwind.example",
        "dave@globex.example",
    ] {
        let h = s.history(who);
        assert_eq!((h.indexed, h.scanned), (3, 1), "{who}");
        let scan = replay::history_traced(&dir, who).unwrap();
        assert_eq!((scan.indexed, scan.scanned), (0, 4));
        assert!(!h.records.is_empty());
        assert_eq!(h.records, scan.records, "{who}");
    }
    let alice = s.history("alice@acme.example");
    assert_eq!(alice.records.len(), 5);
    // A new month indexes the one it closes.
    s.append_run(
        "2026-05-02T08:00:00Z",
        &[ch(
            "2026-05-02T08:00:01Z",
            "alice@acme.example",
            "portal",
            "disable-account",
        )],
    );
    assert!(s.dir.join("audit/ledger/2026/04.index.json").exists());
    let h = s.history("alice@acme.example");
    assert_eq!((h.indexed, h.scanned, h.records.len()), (4, 1, 6));
    assert_eq!(s.verify_git().indexes, 4);
}

#[test]
fn an_index_edited_in_a_human_commit_is_reported_and_history_scans() {
    let s = scripted();
    let who = "alice@acme.example";
    let honest = s.history(who).records;
    // Hide alice's January grant from the index.
    let path = bucket_file("01", who);
    s.tamper(&path, |lines| {
        Some(
            lines
                .iter()
                .filter(|l| !l.contains("acme:finance"))
                .map(|l| l.to_string())
                .collect(),
        )
    });
    let b = s.verify_git().broken.expect("edited index not detected");
    assert_eq!(
        (b.file.as_str(), b.kind),
        (path.as_str(), BreakKind::Index),
        "{b}"
    );
    let d = verify(&LedgerSource::Dir(s.dir.join("audit"))).unwrap();
    assert_eq!(d.broken.map(|b| b.kind), Some(BreakKind::Index));
    // A commit that is not latchkey's changed audit/: no index is trusted.
    let h = s.history(who);
    assert_eq!((h.indexed, h.scanned), (0, 4));
    assert_eq!(h.records, honest);
}

#[test]
fn a_forged_index_or_a_stale_one_never_gives_a_wrong_history() {
    let who = "alice@acme.example";
    // A bucket missing a line its manifest counts.
    let s = scripted();
    let honest = s.history(who).records;
    let path = bucket_file("01", who);
    s.forge(&path, |lines| {
        Some(
            lines
                .iter()
                .filter(|l| !l.contains("acme:finance"))
                .map(|l| l.to_string())
                .collect(),
        )
    });
    assert_eq!(
        s.verify_git().broken.map(|b| b.kind),
        Some(BreakKind::Index)
    );
    let h = s.history(who);
    assert_eq!((h.indexed, h.scanned), (2, 2), "January is scanned");
    assert_eq!(h.records, honest);

    // A record edited in the bucket (its hash no longer holds).
    let s = scripted();
    s.forge(&path, |lines| {
        Some(
            lines
                .iter()
                .map(|l| l.replace("acme:finance", "acme:viewer"))
                .collect(),
        )
    });
    assert_eq!(
        s.verify_git().broken.map(|b| b.kind),
        Some(BreakKind::Index)
    );
    let h = s.history(who);
    assert_eq!((h.indexed, h.scanned), (2, 2));
    assert_eq!(h.records, honest);

    // The month file edited after it was indexed: the index is stale, history reads the
    // month as it is now (verify reports the edit).
    let s = scripted();
    s.forge("audit/ledger/2026/02.jsonl", |lines| {
        Some(
            lines
                .iter()
                .map(|l| l.replace("globex:", "globex-"))
                .collect(),
        )
    });
    let b = s.verify_git().broken.expect("edit not detected");
    assert_eq!(
        (b.file.as_str(), b.kind),
        ("audit/ledger/2026/02.jsonl", BreakKind::Edited)
    );
    let h = s.history(who);
    assert_eq!((h.indexed, h.scanned), (2, 2), "February is scanned");
    let scan = replay::history_traced(&LedgerSource::Dir(s.dir.join("audit")), who).unwrap();
    assert_eq!(h.records, scan.records);
}

#[test]
fn a_deleted_or_added_index_file_is_reported() {
    let s = scripted();
    let path = bucket_file("02", "dave@globex.example");
    s.forge(&path, |_| None);
    let b = s.verify_git().broken.expect("deleted bucket not detected");
    assert_eq!(
        (b.file.as_str(), b.kind),
        (path.as_str(), BreakKind::Index),
        "{b}"
    );
    assert!(b.detail.contains("deleted"), "{b}");

    let s = scripted();
    let path = "audit/ledger/2026/02.index/zz.jsonl";
    std::fs::write(s.dir.join(path), "{}\n").unwrap();
    s.forge(path, |l| Some(l.into_iter().map(String::from).collect()));
    let b = s.verify_git().broken.expect("added bucket not detected");
    assert_eq!((b.file.as_str(), b.kind), (path, BreakKind::Index), "{b}");
}

#[test]
fn incremental_verification_resumes_at_the_newest_month_and_still_finds_every_break() {
    use latchkey::audit::verify::{Incremental, verify_from};
    let s = scripted();
    let repo = s.repo();
    let (v, resume) = verify_from(&s.git_src(&repo), None, None).unwrap();
    assert!(v.broken.is_none());
    let resume = resume.expect("an intact git ledger gives a resume point");

    // Appended records are verified from the resume point, with the same totals a
    // verification from genesis gives.
    s.append_run(
        "2026-04-20T08:00:00Z",
        &[ch(
            "2026-04-20T08:00:01Z",
            "carol@acme.example",
            "portal",
            "disable-account",
        )],
    );
    let repo = s.repo();
    let (resumed, _) = verify_from(&s.git_src(&repo), None, Some(&resume)).unwrap();
    let full = verify(&s.git_src(&repo)).unwrap();
    assert!(resumed.broken.is_none(), "{:?}", resumed.broken);
    assert_eq!(
        (
            resumed.records,
            resumed.months,
            resumed.checkpoints,
            resumed.indexes,
            &resumed.head
        ),
        (
            full.records,
            full.months,
            full.checkpoints,
            full.indexes,
            &full.head
        )
    );

    // A break after the resume point is found by the resumed pass itself.
    s.forge_april_admin();
    let repo = s.repo();
    let (v, _) = verify_from(&s.git_src(&repo), None, Some(&resume)).unwrap();
    let b = v.broken.expect("break after the resume point not found");
    assert_eq!(
        (b.file.as_str(), b.line, b.kind),
        ("audit/ledger/2026/04.jsonl", Some(2), BreakKind::Edited)
    );

    // A break before it (an edited closed month, its checkpoint or its index) changes
    // an object the resume point names: verification starts from genesis again.
    for (path, from, to, kind) in [
        (
            "audit/ledger/2026/01.jsonl",
            "acme:finance",
            "acme:viewer",
            BreakKind::Edited,
        ),
        (
            "audit/ledger/2026/03.checkpoint.json",
            "acme:admin",
            "acme:viewer",
            BreakKind::Checkpoint,
        ),
    ] {
        let s = scripted();
        let repo = s.repo();
        let resume = verify_from(&s.git_src(&repo), None, None)
            .unwrap()
            .1
            .unwrap();
        let mut inc = Incremental::default();
        assert!(
            inc.verify(&s.git_src(&repo), None)
                .unwrap()
                .broken
                .is_none()
        );
        assert!(inc.resumes_after() > 0);
        s.forge(path, |lines| {
            Some(lines.iter().map(|l| l.replace(from, to)).collect())
        });
        let repo = s.repo();
        let b = verify_from(&s.git_src(&repo), None, Some(&resume))
            .unwrap()
            .0
            .broken
            .expect("break before the resume point not found");
        assert_eq!((b.file.as_str(), b.kind), (path, kind), "{b}");
        let b = inc.verify(&s.git_src(&repo), None).unwrap().broken.unwrap();
        assert_eq!((b.file.as_str(), b.kind), (path, kind), "{b}");
    }
}
