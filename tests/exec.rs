//! The `exec` connector through the CLI, against tests/exec/fake-store.py, a small store
//! back office that keeps its state in a JSON file.

mod common;

use common::{T0, Workspace, member, out};

const NOW: &str = "2026-11-20T13:00:00Z";

fn repo(mode: &str, prune: bool, timeout: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/exec/fake-store.py");
    format!(
        r#"apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {{name: shop}}
spec:
  type: exec
  environment: staging
  connection:
    command: [python3, "{script}"]
    timeout: {timeout}
    settings:
      stateFile: store.json
      mode: "{mode}"
  credentials: {{env: STORE_TOKEN}}
  prune: {prune}
  offboard: delete
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {{name: fulfilment}}
spec:
  entitlements: {{shop: [shop_manager]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {{name: acme}}
spec:
  allowedRoles: [fulfilment]
"#
    )
}

fn run(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .current_dir(ws.path())
        .env("STORE_TOKEN", "tok-9f8e7d")
        .env("FAKE_STORE_EXPECT", "tok-9f8e7d")
        .env("LATCHKEY_LOG", "info")
        .output()
        .expect("run");
    out(&o)
}

fn store(ws: &Workspace) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(ws.path().join("store.json")).expect("state file"),
    )
    .expect("json")
}

fn seed(ws: &Workspace, users: serde_json::Value) {
    std::fs::write(
        ws.path().join("store.json"),
        serde_json::json!({ "users": users }).to_string(),
    )
    .unwrap();
}

#[test]
fn applies_through_the_program_idempotently_and_never_leaks_the_token() {
    let ws = Workspace::new();
    seed(
        &ws,
        serde_json::json!({"owner@acme.example": {"managed": false, "active": true, "roles": ["administrator"]}}),
    );
    let members = format!(
        "{}---\n{}",
        member("erin", "    - role: fulfilment"),
        member("dana", "    - role: fulfilment")
    );
    ws.commit(
        &[
            ("latchkey.yaml", &repo("", true, "10s")),
            ("clients/acme/members.yaml", &members),
        ],
        T0,
        "shop",
    );
    let (code, stdout, stderr) = run(&ws, &["apply", "access", "--rev", "main", "--now", NOW]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let state = store(&ws);
    assert_eq!(
        state["users"]["erin@acme.example"]["roles"],
        serde_json::json!(["shop_manager"])
    );
    assert_eq!(state["users"]["dana@acme.example"]["managed"], true);
    assert_eq!(
        state["users"]["owner@acme.example"]["roles"],
        serde_json::json!(["administrator"]),
        "out of scope, untouched"
    );
    assert!(
        !stdout.contains("tok-9f8e7d") && !stderr.contains("tok-9f8e7d"),
        "the token leaked:\n{stderr}"
    );
    assert!(
        stderr.contains("fake-store: apply with token ***"),
        "stderr is logged, redacted:\n{stderr}"
    );
    let (code, stdout, _) = run(&ws, &["plan", "access", "--now", NOW]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 changes"));
}

#[test]
fn a_failing_program_is_an_error_naming_the_system_and_never_a_prune() {
    for (mode, timeout, expected) in [
        (
            "exit",
            "10s",
            "error: system shop: read exited with exit status: 7: crashed while holding ***",
        ),
        (
            "malformed",
            "10s",
            "error: system shop: read answered malformed JSON (expected ident at line 1 column 2); see docs/exec.md for the protocol",
        ),
        ("sleep", "1s", "error: system shop: read timed out after 1s"),
    ] {
        let ws = Workspace::new();
        seed(
            &ws,
            serde_json::json!({"ghost@acme.example": {"managed": true, "active": true, "roles": ["shop_manager"]}}),
        );
        ws.commit(
            &[
                ("latchkey.yaml", &repo(mode, true, timeout)),
                (
                    "clients/acme/members.yaml",
                    &member("erin", "    - role: fulfilment"),
                ),
            ],
            T0,
            "shop",
        );
        let (code, stdout, stderr) = run(&ws, &["apply", "access", "--rev", "main", "--now", NOW]);
        assert_eq!(code, 1, "{mode}: {stdout}{stderr}");
        assert!(stdout.contains(expected), "{mode}:\n{stdout}");
        assert!(
            !stdout.contains("tok-9f8e7d") && !stderr.contains("tok-9f8e7d"),
            "{mode}: token leaked"
        );
        assert_eq!(
            store(&ws)["users"]["ghost@acme.example"]["roles"],
            serde_json::json!(["shop_manager"]),
            "{mode}: nothing pruned"
        );
    }
}

#[test]
fn a_partial_read_reports_drift_instead_of_pruning() {
    let ws = Workspace::new();
    seed(
        &ws,
        serde_json::json!({"ghost@acme.example": {"managed": true, "active": true, "roles": ["shop_manager"]}}),
    );
    ws.commit(
        &[
            ("latchkey.yaml", &repo("partial", true, "10s")),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: fulfilment"),
            ),
        ],
        T0,
        "shop",
    );
    let (_, stdout, _) = run(&ws, &["plan", "access", "--now", NOW]);
    assert!(
        stdout.contains(
            "partial read of system shop: page 2 of users timed out (nothing is pruned there)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("~ shop         ghost@acme.example"),
        "{stdout}"
    );
    assert!(!stdout.contains("- ghost@acme.example"), "{stdout}");
}

#[test]
fn a_refused_change_is_recorded_as_failed_and_the_others_still_apply() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", &repo("deny", true, "10s")),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: fulfilment"),
            ),
        ],
        T0,
        "shop",
    );
    let (code, _, stderr) = run(&ws, &["apply", "access", "--rev", "main", "--now", NOW]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        store(&ws)["users"]["erin@acme.example"]["managed"],
        true,
        "the account was still created"
    );
    let failed: Vec<_> = ws
        .ledger()
        .into_iter()
        .filter(|r| r["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error"], "role not allowed on this plan");
}

/// Every blob of the repository's head tree that holds `needle`, by path.
fn blobs_containing(ws: &Workspace, needle: &str) -> Vec<String> {
    let repo = git2::Repository::open(ws.repo_path()).expect("open");
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let mut hits = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if let Ok(blob) = repo.find_blob(e.id())
            && String::from_utf8_lossy(blob.content()).contains(needle)
        {
            hits.push(format!("{dir}{}", e.name().unwrap_or("")));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    hits
}

/// Issue 15: the program's partial-read reason reached plan text, JSON and markdown
/// unredacted. Everything it prints (reason, names, apply errors; escaped or not) is
/// redacted of the credential before the plan, the log and the ledger.
#[test]
fn the_token_echoed_in_a_reason_a_name_or_an_error_is_redacted_everywhere() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", &repo("leak", true, "10s")),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: fulfilment"),
            ),
        ],
        T0,
        "shop",
    );
    for format in ["text", "json", "markdown"] {
        let (code, stdout, stderr) =
            run(&ws, &["plan", "access", "--now", NOW, "--format", format]);
        assert_eq!(code, 2, "{format}: {stdout}{stderr}");
        assert!(
            !stdout.contains("tok-9f8e7d") && !stderr.contains("tok-9f8e7d"),
            "{format}: the token leaked:\n{stdout}{stderr}"
        );
        // The markdown plan does not name partial reads; the other two do.
        if format != "markdown" {
            assert!(
                stdout.contains("page 2 refused token ***"),
                "{format}:\n{stdout}"
            );
        }
    }
    let (code, stdout, stderr) = run(&ws, &["apply", "access", "--rev", "main", "--now", NOW]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        !stdout.contains("tok-9f8e7d") && !stderr.contains("tok-9f8e7d"),
        "the token leaked:\n{stdout}{stderr}"
    );
    let failed: Vec<_> = ws
        .ledger()
        .into_iter()
        .filter(|r| r["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        failed[0]["error"],
        "shop rejected token *** for erin@acme.example"
    );
    assert_eq!(blobs_containing(&ws, "tok-9f8e7d"), Vec::<String>::new());
    assert_ne!(blobs_containing(&ws, "***"), Vec::<String>::new());
}

/// serde quotes a value of the wrong type in its error: the token there is redacted too.
#[test]
fn the_token_in_a_mistyped_answer_is_redacted_from_the_error() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", &repo("leak-type", true, "10s")),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: fulfilment"),
            ),
        ],
        T0,
        "shop",
    );
    let (code, stdout, stderr) = run(&ws, &["plan", "access", "--now", NOW]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "error: system shop: read answered malformed JSON (invalid type: string \"***\", expected a boolean); see docs/exec.md for the protocol"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("tok-9f8e7d") && !stderr.contains("tok-9f8e7d"),
        "the token leaked:\n{stdout}{stderr}"
    );
}
