//! The incremental path (parses reused by blob id across revisions) must give exactly
//! what a cold load gives: same plan, same diagnostics.

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

#[tokio::test]
async fn incremental_plan_equals_cold_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = synth::Spec {
        clients: 12,
        members_per_client: 4,
        grants_per_member: 3,
        expiring_share: 0.3,
        agency_staff: 3,
        seed: 7,
        portal_path: dir.path().join("portal.sqlite").display().to_string(),
        ..synth::Spec::default()
    };
    let now = spec.now;
    let generated = synth::generate(&spec, dir.path()).expect("generate");
    let git = git2::Repository::open_bare(&generated.repo).expect("open");

    let mut warm = reconciler(&generated.repo);
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

    let edit = |path: &str, from: &str, to: &str| {
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
        let text = String::from_utf8(git.find_blob(blob).unwrap().content().to_vec()).unwrap();
        assert!(text.contains(from), "{path} holds {from:?}");
        let edited = text.replacen(from, to, 1);
        synth::commit_file(
            &git,
            path,
            &edited,
            "edit",
            now - SignedDuration::from_hours(1),
        )
        .expect("commit");
    };

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
    let (cold_b, cold_diags_b) = plan_of(&mut reconciler(&generated.repo), now).await;
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
    let (cold_c, cold_diags_c) = plan_of(&mut reconciler(&generated.repo), now).await;
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
