//! The incremental path (parses, member checks and members' desired state reused by blob
//! id across revisions and across time) must give exactly what a cold load gives: same
//! plan, same diagnostics.

#[path = "../bench/synth.rs"]
mod synth;

use jiff::{SignedDuration, Timestamp};

use latchkey::audit::Trigger;
use latchkey::connectors::{Registry, SecretSource};
use latchkey::reconcile::{Options, ReconcileError, Reconciler};
use latchkey::source::{Location, SourceRepo};

fn reconciler(repo: &std::path::Path) -> Reconciler {
    let source = SourceRepo::open(&Location::Path(repo.to_path_buf()), repo).expect("open repo");
    Reconciler::new(source, Registry::builtin(SecretSource::default()))
}

fn opts(now: Timestamp) -> Options {
    Options {
        rev: "main".into(),
        branch: None,
        subpath: String::new(),
        now,
        dry_run: true,
        push: false,
        allow_mass_revoke: None,
        allow_rewind: None,
        allow_broken_ledger: None,
        trigger: Trigger::Manual,
    }
}

/// The plan as JSON (Plan is compared through its serialised form) and the diagnostics.
async fn plan_of(rec: &mut Reconciler, now: Timestamp) -> (serde_json::Value, Vec<String>) {
    match rec.plan(&opts(now)).await {
        Ok(p) => (
            serde_json::to_value(&p.plan).expect("plan serialises"),
            p.loaded.diagnostics.iter().map(|d| d.to_string()).collect(),
        ),
        Err(ReconcileError::Invalid { errors, .. }) => (
            serde_json::Value::Null,
            errors.iter().map(|d| d.to_string()).collect(),
        ),
        Err(e) => panic!("plan failed: {e}"),
    }
}

/// The text of `path` at the tip of `main`.
fn file_text(git: &git2::Repository, path: &str) -> String {
    let head = git
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let blob = head
        .tree()
        .unwrap()
        .get_path(std::path::Path::new(path))
        .unwrap()
        .id();
    String::from_utf8(git.find_blob(blob).unwrap().content().to_vec()).unwrap()
}

/// Commits `path` with the first `from` replaced by `to`.
fn edit_file(git: &git2::Repository, now: Timestamp, path: &str, from: &str, to: &str) {
    let text = file_text(git, path);
    assert!(text.contains(from), "{path} holds {from:?}");
    let edited = text.replacen(from, to, 1);
    synth::commit_file(
        git,
        path,
        &edited,
        "edit",
        now - SignedDuration::from_hours(1),
    )
    .expect("commit");
}

/// Plans with the warm reconciler and a cold one and checks they agree.
async fn same_as_cold(
    warm: &mut Reconciler,
    repo: &std::path::Path,
    now: Timestamp,
) -> (serde_json::Value, Vec<String>) {
    let (plan, diags) = plan_of(warm, now).await;
    let (cold, cold_diags) = plan_of(&mut reconciler(repo), now).await;
    assert_eq!(plan, cold, "plan at {now}");
    assert_eq!(diags, cold_diags, "diagnostics at {now}");
    (plan, diags)
}

/// A small generated repository with its in-sync portal: the directory holding both,
/// the generator's `now`, and the bare repository.
fn small_repo() -> (tempfile::TempDir, Timestamp, git2::Repository) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = small_spec(dir.path());
    let generated = synth::generate(&spec, dir.path()).expect("generate");
    let git = git2::Repository::open_bare(&generated.repo).expect("open");
    (dir, spec.now, git)
}

fn small_spec(dir: &std::path::Path) -> synth::Spec {
    synth::Spec {
        clients: 12,
        members_per_client: 4,
        grants_per_member: 3,
        expiring_share: 0.3,
        agency_staff: 3,
        seed: 7,
        portal_path: dir.join("portal.sqlite").display().to_string(),
        ..synth::Spec::default()
    }
}

#[tokio::test]
async fn incremental_plan_equals_cold_plan() {
    let (_dir, now, git) = small_repo();

    let mut warm = reconciler(git.path());
    let (plan_a, diags_a) = plan_of(&mut warm, now).await;
    assert_eq!(
        plan_a["changes"],
        serde_json::json!([]),
        "generated portal is in sync"
    );
    assert!(
        diags_a.is_empty(),
        "generated repository is clean: {diags_a:?}"
    );

    let edit = |path: &str, from: &str, to: &str| edit_file(&git, now, path, from, to);

    // B: one member offboarded (a change), one grant added that expired long ago
    // (a warning).
    edit(
        &synth::members_path(3),
        "  grants:\n",
        "  grants:\n    - {role: client-viewer, expires: 2026-01-01T00:00:00Z}\n",
    );
    edit(
        &synth::members_path(5),
        "  grants:\n",
        "  offboarded: true\n  grants:\n",
    );
    let (plan_b, diags_b) = plan_of(&mut warm, now).await;
    let (cold_b, cold_diags_b) = plan_of(&mut reconciler(git.path()), now).await;
    assert_eq!(plan_b, cold_b);
    assert_eq!(diags_b, cold_diags_b);
    assert!(
        diags_b
            .iter()
            .any(|d| d.contains("expired at") && d.contains("c00003")),
        "the stale grant is reported: {diags_b:?}"
    );
    assert_ne!(
        plan_b["changes"],
        serde_json::json!([]),
        "the offboarding is planned"
    );

    // C: an invalid edit; its errors are located the same way warm and cold.
    edit(&synth::members_path(8), "role: client-", "role: no-such-");
    let (plan_c, diags_c) = plan_of(&mut warm, now).await;
    let (cold_c, cold_diags_c) = plan_of(&mut reconciler(git.path()), now).await;
    assert_eq!(
        plan_c,
        serde_json::Value::Null,
        "an invalid revision is not planned"
    );
    assert_eq!(plan_c, cold_c);
    assert_eq!(diags_c, cold_diags_c);
    assert!(
        diags_c
            .iter()
            .any(|d| d.contains("clients/c00008/members.yaml:") && d.contains("unknown role")),
        "{diags_c:?}"
    );
}

/// Reused member checks and desired state follow time and the shared documents: grants
/// expire, stale grants start to warn, a Role or Client edit re-checks every member, and
/// an email moved onto another member's is caught, all as a cold plan sees them.
#[tokio::test]
async fn reuse_follows_time_and_shared_documents() {
    let (_dir, now, git) = small_repo();
    let repo = git.path();
    let mut warm = reconciler(repo);
    let days = |d: i64| now + SignedDuration::from_hours(24 * d);

    let (at_now, _) = same_as_cold(&mut warm, repo, now).await;
    assert_eq!(at_now["changes"], serde_json::json!([]));
    // Every expiring grant ends within 60 days: the same revision later revokes them,
    // and warns about those expired for longer than the 7-day grace period.
    let (later, later_diags) = same_as_cold(&mut warm, repo, days(61)).await;
    let revokes = later["changes"].as_array().expect("changes").len();
    assert!(revokes > 0, "expired grants are revoked: {later}");
    let (_, stale) = same_as_cold(&mut warm, repo, days(70)).await;
    assert!(
        stale.len() > later_diags.len() && stale.iter().all(|d| d.contains("more than 7d ago")),
        "more grants pass the grace period: {} then {stale:?}",
        later_diags.len()
    );
    // Back to `now`: nothing reused from the later evaluations leaks.
    let (again, again_diags) = same_as_cold(&mut warm, repo, now).await;
    assert_eq!(again, at_now);
    assert!(again_diags.is_empty(), "{again_diags:?}");

    // A Role edit changes what every holder should have.
    edit_file(
        &git,
        now,
        "roles/roles.yaml",
        "{client}:finance",
        "{client}:ledger",
    );
    let (renamed, _) = same_as_cold(&mut warm, repo, now).await;
    assert!(
        renamed.to_string().contains(":ledger"),
        "the new entitlement is granted: {renamed}"
    );
    // A Client that stops allowing a role makes its members' grants invalid.
    edit_file(
        &git,
        now,
        "clients/c00004/client.yaml",
        "client-finance, ",
        "",
    );
    let (held, errors) = same_as_cold(&mut warm, repo, now).await;
    assert_eq!(held, serde_json::Value::Null, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|d| d.contains("c00004") && d.contains("not in the allowedRoles")),
        "{errors:?}"
    );
    edit_file(
        &git,
        now,
        "clients/c00004/client.yaml",
        "allowedRoles: [",
        "allowedRoles: [client-finance, ",
    );
    same_as_cold(&mut warm, repo, now).await;

    // An email moved onto another file's member: the later file's is the duplicate.
    let first_email = |path: &str| {
        file_text(&git, path)
            .lines()
            .find_map(|l| l.trim().strip_prefix("email: ").map(str::to_string))
            .expect("an email")
    };
    let mine = synth::members_path(9);
    let (theirs, own) = (first_email(&synth::members_path(2)), first_email(&mine));
    edit_file(
        &git,
        now,
        &mine,
        &format!("email: {own}"),
        &format!("email: {theirs}"),
    );
    let (_, dup) = same_as_cold(&mut warm, repo, now).await;
    assert!(
        dup.iter()
            .any(|d| d.contains(&mine) && d.contains("is already used by Member")),
        "{dup:?}"
    );
}

/// Reasons for the removals of `identity` in a plan, changes and drift alike.
fn reasons_for(plan: &serde_json::Value, identity: &str) -> Vec<String> {
    ["changes", "drift"]
        .iter()
        .flat_map(|k| plan[k].as_array().cloned().unwrap_or_default())
        .filter(|c| c["identity"] == identity)
        .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The controller plans against the last applied revision many times between applies:
/// its catalogue and desired state are kept, and must follow the applied ref when it
/// moves and time when windows open and close, as a cold plan sees them.
#[tokio::test]
async fn last_applied_revision_is_reused_only_while_it_is_the_same() {
    let (_dir, now, git) = small_repo();
    let repo = git.path();
    let head = || git.refname_to_id("refs/heads/main").expect("main");
    let mark_applied = |oid| {
        git.reference("refs/latchkey/applied/main", oid, true, "test: applied")
            .expect("applied ref");
    };
    mark_applied(head());
    let mut warm = reconciler(repo);
    let (in_sync, _) = same_as_cold(&mut warm, repo, now).await;
    assert_eq!(in_sync["changes"], serde_json::json!([]));

    // The first member of c00003 is deleted from git: the last applied revision still
    // declares them, so losing their access is an offboarding.
    let path = synth::members_path(3);
    let text = file_text(&git, &path);
    let (first, rest) = text.split_once("---\n").expect("several members");
    let gone = first
        .lines()
        .find_map(|l| l.trim().strip_prefix("email: "))
        .expect("an email")
        .to_string();
    synth::commit_file(
        &git,
        &path,
        rest,
        "remove",
        now - SignedDuration::from_hours(1),
    )
    .expect("commit");
    let (removed, _) = same_as_cold(&mut warm, repo, now).await;
    let reasons = reasons_for(&removed, &gone);
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r == "offboarded"),
        "{gone}: {reasons:?} in {removed}"
    );
    // Reused across time, until grant windows move; the reasons stay the same.
    for day in [1, 61, 0] {
        let (later, _) =
            same_as_cold(&mut warm, repo, now + SignedDuration::from_hours(24 * day)).await;
        assert!(reasons_for(&later, &gone).iter().all(|r| r == "offboarded"));
    }

    // The removal is applied: the last applied revision no longer declares them, so an
    // account still there is undeclared (as a cold plan says), not an offboarding.
    mark_applied(head());
    let (after, _) = same_as_cold(&mut warm, repo, now).await;
    let reasons = reasons_for(&after, &gone);
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r == "undeclared"),
        "{gone}: {reasons:?} in {after}"
    );
}

/// A cold load reads and parses its files on every core (one repository handle per
/// worker). A blob missing from the object store is a finding on its file, as on one
/// core; the other files still parse; and once the object is back, the same reconciler
/// reads it again (a missing object is not cached as the file's parse) and plans as a
/// cold load does.
#[tokio::test]
async fn a_missing_blob_in_a_cold_load_is_a_finding_and_is_read_again_when_back() {
    let (_dir, now, git) = small_repo();
    let repo = git.path();
    let path = synth::members_path(4);
    let text = file_text(&git, &path);
    let blob = git.blob(text.as_bytes()).expect("blob id");
    let hex = blob.to_string();
    let loose = repo.join("objects").join(&hex[..2]).join(&hex[2..]);
    let saved = std::fs::read(&loose).expect("the generator writes loose objects");
    std::fs::remove_file(&loose).expect("remove the object");

    let mut warm = reconciler(repo);
    let (plan, diags) = plan_of(&mut warm, now).await;
    assert_eq!(plan, serde_json::Value::Null, "not planned: {diags:?}");
    assert_eq!(
        diags.len(),
        1,
        "only the missing file is reported: {diags:?}"
    );
    assert!(
        diags[0].starts_with(&format!("{path}:1:1: error: cannot read this revision")),
        "{diags:?}"
    );

    std::fs::write(&loose, saved).expect("put the object back");
    let (plan, diags) = same_as_cold(&mut warm, repo, now).await;
    assert_eq!(plan["changes"], serde_json::json!([]), "{diags:?}");
    assert!(diags.is_empty(), "{diags:?}");
}
