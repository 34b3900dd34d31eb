//! The operator against the kube-rs mock API server, over a real git repository and a
//! real SQLite portal (only the Kubernetes API is mocked).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use latchkey::controller::operator::{self, Context};
use latchkey::controller::operator_http::Metrics;
use latchkey::controller::{AccessRepository, AccessRepositorySpec, AccessRepositoryStatus};
use serde_json::Value;
use support::{Call, mock_client};

const NS: &str = "agency";
const STATUS_PATH: &str =
    "/apis/latchkey.dev/v1alpha1/namespaces/agency/accessrepositories/access/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/agency/events";

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    db: PathBuf,
    now: Timestamp,
}

fn members(names: &[&str], expires: Timestamp) -> String {
    let mut out = String::new();
    for (i, n) in names.iter().enumerate() {
        // The first member's grant expires soon: the operator must requeue for it.
        let expiry = if i == 0 {
            format!("\n      expires: {expires}")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: {n}\n\
             spec:\n  email: {n}@acme.example\n  client: acme\n  grants:\n    - role: viewer{expiry}\n"
        ));
    }
    out
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("access");
        let db = dir.path().join("portal.sqlite");
        let schema = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency/schema.sql"),
        )
        .unwrap();
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(&schema)
            .unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
        let f = Fixture {
            _dir: dir,
            repo,
            db,
            now,
        };
        git2::Repository::init_opts(
            &f.repo,
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .unwrap();
        f.write(
            "latchkey.yaml",
            &format!(
                "apiVersion: latchkey.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: guardrails\n\
                 spec:\n  deletionBrake: {{minimum: 1, percent: 0}}\n---\n\
                 apiVersion: latchkey.dev/v1alpha1\nkind: System\nmetadata:\n  name: portal\n\
                 spec:\n  type: sql\n  environment: portal\n  connection:\n    path: {}\n  prune: true\n---\n\
                 apiVersion: latchkey.dev/v1alpha1\nkind: Role\nmetadata:\n  name: viewer\n\
                 spec:\n  entitlements:\n    portal: [\"{{client}}:viewer\"]\n---\n\
                 apiVersion: latchkey.dev/v1alpha1\nkind: Client\nmetadata:\n  name: acme\n\
                 spec:\n  allowedRoles: [viewer]\n",
                f.db.display()
            ),
        );
        f.write("members.yaml", &members(&["ann", "bob", "cy"], f.expiry()));
        f.commit("three members");
        f
    }

    fn expiry(&self) -> Timestamp {
        self.now + jiff::SignedDuration::from_secs(600)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.repo.join(name), text).unwrap();
    }

    /// Commits the work tree on top of `main` (which latchkey's audit commits move).
    fn commit(&self, message: &str) -> String {
        let repo = git2::Repository::open(&self.repo).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Dana Ops", "ops@northwind.example").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap();
        oid.to_string()
    }

    /// Brings latchkey's audit commits into the work tree before the next change.
    fn sync(&self) {
        let repo = git2::Repository::open(&self.repo).unwrap();
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .unwrap();
    }

    /// Every ledger record at HEAD, oldest first.
    fn ledger(&self) -> Vec<Value> {
        let repo = git2::Repository::open(&self.repo).unwrap();
        let tree = repo.head().unwrap().peel_to_tree().unwrap();
        let mut files = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
            let path = format!("{dir}{}", e.name().unwrap_or(""));
            if path.starts_with("audit/ledger/") && path.ends_with(".jsonl") {
                files.push((path, e.id()));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
        files.sort();
        files
            .iter()
            .flat_map(|(_, id)| {
                let blob = repo.find_blob(*id).unwrap();
                String::from_utf8_lossy(blob.content())
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    fn head(&self) -> String {
        let repo = git2::Repository::open(&self.repo).unwrap();
        repo.head().unwrap().target().unwrap().to_string()
    }

    fn resource(&self, status: Option<AccessRepositoryStatus>) -> AccessRepository {
        let spec: AccessRepositorySpec = serde_json::from_value(serde_json::json!({
            "url": self.repo.display().to_string(),
            "interval": "1h",
        }))
        .unwrap();
        let mut obj = AccessRepository::new("access", spec);
        obj.metadata.namespace = Some(NS.into());
        obj.metadata.generation = Some(3);
        obj.metadata.uid = Some("0b7e2d1c-0000-4000-8000-000000000001".into());
        obj.status = status;
        obj
    }

    /// Active managed users of the portal and their roles.
    fn portal(&self) -> Vec<(String, bool, String)> {
        let db = rusqlite::Connection::open(&self.db).unwrap();
        let mut stmt = db
            .prepare(
                "SELECT u.email, u.active, COALESCE(group_concat(r.role), '') FROM users u \
                 LEFT JOIN user_roles r ON r.user_id = u.id GROUP BY u.id ORDER BY u.email",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// Runs one reconcile against a mock API server that answers the status patch with the
/// object and echoes Events.
async fn reconcile(
    f: &Fixture,
    obj: AccessRepository,
) -> (Result<Action, operator::Error>, Vec<Call>, Arc<Context>) {
    let echo = serde_json::to_value(&obj).unwrap();
    let (client, calls, task) = mock_client(move |method, uri, body| {
        let path = uri.split('?').next().unwrap_or("");
        match (method.clone(), path) {
            (Method::PATCH, STATUS_PATH) => {
                let mut o = echo.clone();
                o["status"] = body["status"].clone();
                (200, o)
            }
            (Method::POST, EVENTS_PATH) => (201, body.clone()),
            _ => support::status_error(404, "NotFound"),
        }
    });
    let now = f.now;
    let ctx = Arc::new(Context::new(
        client,
        f.repo.parent().unwrap().join("cache"),
        Some("latchkey-0".into()),
        Arc::new(Metrics::default()),
        Arc::new(move || now),
    ));
    let result = operator::reconcile(Arc::new(obj), ctx.clone()).await;
    task.abort();
    (result, calls.all(), ctx)
}

fn status_patch(calls: &[Call]) -> &Call {
    let patches: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == Method::PATCH && c.path() == STATUS_PATH)
        .collect();
    assert_eq!(patches.len(), 1, "one status patch: {calls:#?}");
    patches[0]
}

fn condition<'a>(status: &'a Value, ty: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} condition in {status:#}"))
}

fn event_reasons(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method == Method::POST && c.path() == EVENTS_PATH)
        .map(|c| c.body["reason"].as_str().unwrap().to_string())
        .collect()
}

fn status_of(call: &Call) -> AccessRepositoryStatus {
    serde_json::from_value(call.body["status"].clone()).unwrap()
}

#[tokio::test]
async fn new_access_repository_applies_and_writes_the_expected_status_patch() {
    let f = Fixture::new();
    let head = f.head();
    let (result, calls, ctx) = reconcile(&f, f.resource(None)).await;
    // Requeued at the first expiry (10 minutes), earlier than the 1h interval.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));

    let patch = status_patch(&calls);
    assert!(
        patch.uri.contains("fieldManager=latchkey-operator"),
        "{}",
        patch.uri
    );
    assert!(patch.uri.contains("force=true"), "{}", patch.uri);
    assert_eq!(patch.body["apiVersion"], "latchkey.dev/v1alpha1");
    assert_eq!(patch.body["kind"], "AccessRepository");
    let status = &patch.body["status"];
    let revision = format!("main@sha1:{head}");
    assert_eq!(status["lastAppliedRevision"], revision.as_str());
    assert_eq!(status["lastAttemptedRevision"], revision.as_str());
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["managedAccounts"], 3);
    assert_eq!(status["pendingChanges"], 0);
    assert_eq!(status["nextExpiry"], f.expiry().to_string().as_str());
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "ReconciliationSucceeded");
    assert_eq!(ready["observedGeneration"], 3);
    assert_eq!(ready["lastTransitionTime"], f.now.to_string().as_str());
    assert_eq!(condition(status, "Stalled")["status"], "False");
    assert_eq!(condition(status, "Held")["status"], "False");
    assert_eq!(condition(status, "Reconciling")["status"], "False");
    assert_eq!(event_reasons(&calls), ["Applied"]);

    // The portal really holds the three accounts, and the audit was committed.
    let portal = f.portal();
    assert_eq!(
        portal,
        [
            (
                "ann@acme.example".to_string(),
                true,
                "acme:viewer".to_string()
            ),
            (
                "bob@acme.example".to_string(),
                true,
                "acme:viewer".to_string()
            ),
            (
                "cy@acme.example".to_string(),
                true,
                "acme:viewer".to_string()
            ),
        ]
    );
    assert_ne!(f.head(), head, "an audit commit was made on main");
    assert!(
        ctx.metrics
            .encode()
            .contains("latchkey_operator_reconciles_total{result=\"applied\"} 1")
    );
}

#[tokio::test]
async fn a_brake_hold_sets_held_and_keeps_the_last_applied_revision() {
    let f = Fixture::new();
    let first = format!("main@sha1:{}", f.head());
    let (result, calls, _) = reconcile(&f, f.resource(None)).await;
    result.unwrap();
    let applied = status_of(status_patch(&calls));

    f.sync();
    f.write("members.yaml", &members(&["ann"], f.expiry()));
    let second = format!("main@sha1:{}", f.commit("remove bob and cy"));
    let (result, calls, ctx) = reconcile(&f, f.resource(Some(applied))).await;
    result.unwrap();
    let status = &status_patch(&calls).body["status"];
    let held = condition(status, "Held");
    assert_eq!(held["status"], "True");
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .starts_with("2 people would lose access on system \"portal\""),
        "{held:#}"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(condition(status, "Ready")["reason"], "Held");
    assert_eq!(status["lastAppliedRevision"], first.as_str());
    assert_eq!(status["lastAttemptedRevision"], second.as_str());
    // Two people, each losing the entitlement and the (disabled) account.
    assert_eq!(status["pendingChanges"], 4);
    assert_eq!(event_reasons(&calls), ["Held"]);
    // Nobody lost access.
    assert!(
        f.portal()
            .iter()
            .all(|(_, active, role)| *active && role == "acme:viewer")
    );
    assert_eq!(f.portal().len(), 3);
    assert!(
        ctx.metrics
            .encode()
            .contains("latchkey_operator_reconciles_total{result=\"held\"} 1")
    );
}

#[tokio::test]
async fn an_invalid_revision_stalls_and_keeps_the_last_applied_revision() {
    let f = Fixture::new();
    let first = format!("main@sha1:{}", f.head());
    let (result, calls, _) = reconcile(&f, f.resource(None)).await;
    result.unwrap();
    let applied = status_of(status_patch(&calls));

    f.sync();
    f.write(
        "members.yaml",
        "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata:\n  name: ann\n\
         spec:\n  email: ann@acme.example\n  client: acme\n  grants:\n    - role: no-such-role\n",
    );
    let bad = format!("main@sha1:{}", f.commit("a typo"));
    let obj = f.resource(Some(applied));
    let (result, calls, ctx) = reconcile(&f, obj.clone()).await;
    let err = result.unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("revision {bad} is invalid")),
        "{err}"
    );
    // A user error is retried at the interval, not backed off.
    assert_eq!(
        operator::error_policy(Arc::new(obj.clone()), &err, ctx),
        Action::requeue(Duration::from_secs(3600))
    );

    let status = &status_patch(&calls).body["status"];
    let stalled = condition(status, "Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "InvalidRevision");
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(status["lastAppliedRevision"], first.as_str());
    assert_eq!(status["lastAttemptedRevision"], bad.as_str());
    assert_eq!(event_reasons(&calls), ["Refused"]);
    // The systems keep the last valid revision's access.
    assert_eq!(f.portal().len(), 3);

    // The same story as `latchkey run`'s (the driver is shared): the next reconcile, on
    // top of latchkey's own audit commit, records nothing again.
    let _ = reconcile(&f, obj).await;
    let invalid: Vec<Value> = f
        .ledger()
        .into_iter()
        .filter(|r| r["event"] == "invalid-revision")
        .collect();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0]["revision"], bad.as_str());
}

#[tokio::test]
async fn transient_errors_back_off() {
    let f = Fixture::new();
    let mut obj = f.resource(None);
    obj.spec.url = f.repo.join("missing").display().to_string();
    let (result, calls, ctx) = reconcile(&f, obj.clone()).await;
    let err = result.unwrap_err();
    assert!(!err.is_user_error(), "{err}");
    let status = &status_patch(&calls).body["status"];
    assert_eq!(condition(status, "Stalled")["status"], "False");
    assert_eq!(condition(status, "Reconciling")["status"], "True");
    assert_eq!(condition(status, "Ready")["reason"], "SourceFailed");
    let obj = Arc::new(obj);
    let first = operator::error_policy(obj.clone(), &err, ctx.clone());
    let second = operator::error_policy(obj, &err, ctx);
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
}

/// Adds a second System whose credentials come from the `systemsSecretRef` Secret.
fn add_secret_system(f: &Fixture) {
    let db = f.db.with_file_name("staging.sqlite");
    let schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency/schema.sql"),
    )
    .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&schema)
        .unwrap();
    f.write(
        "staging.yaml",
        &format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: System\nmetadata:\n  name: staging\n\
             spec:\n  type: sql\n  environment: staging\n  connection:\n    path: {}\n\
             \x20 credentials:\n    secretKey: staging-password\n",
            db.display()
        ),
    );
    f.commit("a staging system with credentials");
}

async fn reconcile_with_secret(
    f: &Fixture,
    data: Value,
) -> (Result<Action, operator::Error>, Vec<Call>) {
    let mut obj = f.resource(None);
    obj.spec.systems_secret_ref = Some(latchkey::controller::resource::LocalObjectReference {
        name: "systems".into(),
    });
    let echo = serde_json::to_value(&obj).unwrap();
    let (client, calls, task) = mock_client(move |method, uri, body| {
        let path = uri.split('?').next().unwrap_or("");
        match (method.clone(), path) {
            (Method::GET, "/api/v1/namespaces/agency/secrets/systems") => (
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "systems", "namespace": NS}, "data": data}),
            ),
            (Method::PATCH, STATUS_PATH) => {
                let mut o = echo.clone();
                o["status"] = body["status"].clone();
                (200, o)
            }
            (Method::POST, EVENTS_PATH) => (201, body.clone()),
            _ => support::status_error(404, "NotFound"),
        }
    });
    let now = f.now;
    let ctx = Arc::new(Context::new(
        client,
        f.repo.parent().unwrap().join("cache"),
        None,
        Arc::new(Metrics::default()),
        Arc::new(move || now),
    ));
    let result = operator::reconcile(Arc::new(obj), ctx).await;
    task.abort();
    (result, calls.all())
}

#[tokio::test]
async fn systems_secret_keys_reach_system_credentials() {
    let f = Fixture::new();
    add_secret_system(&f);
    // "czNjcjN0" is base64 of "s3cr3t".
    let (result, calls) =
        reconcile_with_secret(&f, serde_json::json!({"staging-password": "czNjcjN0"})).await;
    result.unwrap();
    assert!(calls.iter().any(
        |c| c.method == Method::GET && c.path() == "/api/v1/namespaces/agency/secrets/systems"
    ));
    let status = &status_patch(&calls).body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status:#}");
    // The secret's value never leaves in a status or an Event.
    for c in calls.iter().filter(|c| c.method != Method::GET) {
        assert!(!c.body.to_string().contains("s3cr3t"), "{c:?}");
    }
}

#[tokio::test]
async fn a_system_whose_secret_key_is_missing_is_not_ready() {
    let f = Fixture::new();
    add_secret_system(&f);
    let (result, calls) = reconcile_with_secret(&f, serde_json::json!({"other": "eA=="})).await;
    result.unwrap();
    let status = &status_patch(&calls).body["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "SystemUnreadable");
    assert!(
        ready["message"].as_str().unwrap().ends_with(
            "not reconciled: staging: key staging-password is not in the systems Secret"
        ),
        "{ready:#}"
    );
    assert_eq!(event_reasons(&calls), ["Applied", "SystemUnreadable"]);
    // The readable portal was still reconciled.
    assert_eq!(f.portal().len(), 3);
}

#[tokio::test]
async fn the_git_secret_ref_is_read_for_credentials_and_never_echoed() {
    let f = Fixture::new();
    let mut obj = f.resource(None);
    obj.spec.secret_ref =
        Some(latchkey::controller::resource::LocalObjectReference { name: "git".into() });
    let echo = serde_json::to_value(&obj).unwrap();
    let (client, calls, task) = mock_client(move |method, uri, body| {
        let path = uri.split('?').next().unwrap_or("");
        match (method.clone(), path) {
            // "Z2hwX3Rva2Vu" is base64 of "ghp_token".
            (Method::GET, "/api/v1/namespaces/agency/secrets/git") => (
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "git", "namespace": NS}, "data": {"token": "Z2hwX3Rva2Vu"}}),
            ),
            (Method::PATCH, STATUS_PATH) => {
                let mut o = echo.clone();
                o["status"] = body["status"].clone();
                (200, o)
            }
            (Method::POST, EVENTS_PATH) => (201, body.clone()),
            _ => support::status_error(404, "NotFound"),
        }
    });
    let now = f.now;
    let ctx = Arc::new(Context::new(
        client,
        f.repo.parent().unwrap().join("cache"),
        None,
        Arc::new(Metrics::default()),
        Arc::new(move || now),
    ));
    let result = operator::reconcile(Arc::new(obj), ctx).await;
    task.abort();
    result.unwrap();
    let calls = calls.all();
    assert!(calls.iter().any(|c| c.method == Method::GET && c.path() == "/api/v1/namespaces/agency/secrets/git"));
    assert_eq!(
        condition(&status_patch(&calls).body["status"], "Ready")["status"],
        "True"
    );
    for c in calls.iter().filter(|c| c.method != Method::GET) {
        assert!(!c.body.to_string().contains("ghp_token"), "{c:?}");
    }
}
