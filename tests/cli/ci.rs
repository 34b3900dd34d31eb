//! What latchkey ships for CI (issue 18, item 5): the GitHub Action, the release
//! workflow, the CI examples and the pre-commit hook are checked by the tools that read
//! them (their published schemas, pre-commit), since none can run here; the installer and
//! the comment script run for real against loopback fakes of a release download and of
//! the GitHub and GitLab APIs (which cannot run here either).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, patch, put};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(rel: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The checkers from scripts/peers/install-ci-linters.sh; in CI they must be there.
fn linter(name: &str) -> Option<PathBuf> {
    let venv = std::env::var("LATCHKEY_CI_LINTERS_VENV")
        .unwrap_or_else(|_| "/opt/latchkey-peers/ci-linters-venv".into());
    let bin = Path::new(&venv).join("bin").join(name);
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("LATCHKEY_REQUIRE_PEERS").is_none(),
        "{name} missing: run scripts/peers/install-ci-linters.sh"
    );
    eprintln!("skipped {name}: run scripts/peers/install-ci-linters.sh");
    None
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const WORKFLOWS: [&str; 3] = [
    ".github/workflows/release.yml",
    "examples/ci/github-actions.yml",
    "examples/ci/github-actions-comment.yml",
];

#[test]
fn the_shipped_ci_files_pass_their_tools_checks() {
    // Each is YAML, whatever else is missing here.
    for f in WORKFLOWS.iter().chain(&[
        "action.yml",
        "examples/ci/gitlab-ci.yml",
        ".pre-commit-hooks.yaml",
    ]) {
        yaml(f);
    }
    if let Some(check) = linter("check-jsonschema") {
        for (schema, files) in [
            ("vendor.github-workflows", &WORKFLOWS[..]),
            ("vendor.github-actions", &["action.yml"][..]),
            ("vendor.gitlab-ci", &["examples/ci/gitlab-ci.yml"][..]),
        ] {
            let out = Command::new(&check)
                .arg("--builtin-schema")
                .arg(schema)
                .args(files)
                .current_dir(root())
                .output()
                .unwrap();
            ok(&out, schema);
        }
    }
    if let Some(pre_commit) = linter("pre-commit") {
        let out = Command::new(pre_commit)
            .args(["validate-manifest", ".pre-commit-hooks.yaml"])
            .current_dir(root())
            .output()
            .unwrap();
        ok(&out, "pre-commit validate-manifest");
    }
}

/// What a schema cannot see: a composite action's run steps need a shell, its inputs
/// must be declared, the scripts it calls must exist, and it keeps no check from
/// failing on a review that only changes access (exit 2).
#[test]
fn the_action_is_a_consistent_composite() {
    let action = yaml("action.yml");
    assert_eq!(action["runs"]["using"], "composite");
    let inputs = action["inputs"].as_mapping().unwrap();
    let text = std::fs::read_to_string(root().join("action.yml")).unwrap();
    for used in text.split("inputs.").skip(1) {
        let name: String = used
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        assert!(
            inputs.contains_key(serde_yaml::Value::from(name.as_str())),
            "inputs.{name} is not declared"
        );
    }
    let steps = action["runs"]["steps"].as_sequence().unwrap();
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    for s in steps {
        if let Some(run) = s["run"].as_str() {
            assert!(
                s["shell"].is_string(),
                "a composite run step needs a shell: {run}"
            );
            for script in ["scripts/ci/install.sh", "scripts/ci/upsert-comment.py"] {
                if run.contains(script) {
                    assert!(root().join(script).exists(), "{script}");
                }
            }
        }
    }
    for used in text.split("steps.").skip(1) {
        let id: String = used
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(ids.contains(&id.as_str()), "steps.{id} has no step");
    }
    assert!(
        text.contains(r#"if [ "$REVIEW" = 1 ]"#),
        "only exit 1 fails the review"
    );
    // The comment mode, which holds a write token, never checks out code.
    assert!(!text.contains("actions/checkout"));
}

/// The release's archive names are what install.sh downloads, for every target it knows.
#[test]
fn the_release_builds_what_the_installer_downloads() {
    let release = yaml(".github/workflows/release.yml");
    let targets: Vec<&str> = release["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["target"].as_str().unwrap())
        .collect();
    let install = std::fs::read_to_string(root().join("scripts/ci/install.sh")).unwrap();
    for target in [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
    ] {
        assert!(targets.contains(&target), "release builds {target}");
        assert!(
            install.contains(&format!("target={target}")),
            "install.sh knows {target}"
        );
    }
    let text = serde_yaml::to_string(&release).unwrap();
    assert!(text.contains(r#"name="latchkey-$VERSION-${{ matrix.target }}""#));
    assert!(install.contains(r#"archive="latchkey-$version-$target.tar.gz""#));
    assert!(text.contains("sha256sum latchkey-*.tar.gz > SHA256SUMS"));
    assert!(text.contains("dist/latchkey-*.tar.gz dist/SHA256SUMS"));
}

/// A loopback HTTP server on a runtime of its own, alive as long as the value.
struct Fake {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn serve(app: Router) -> Fake {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    Fake { addr, _rt: rt }
}

/// The machine's release target, as install.sh names it.
fn target() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    }
}

#[test]
fn install_sh_installs_a_release_only_when_its_checksum_matches() {
    let work = tempfile::tempdir().unwrap();
    let releases = work.path().join("releases/v0.1.0");
    let name = format!("latchkey-0.1.0-{}", target());
    let staging = work.path().join(&name);
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::create_dir_all(&releases).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_latchkey"), staging.join("latchkey")).unwrap();
    let archive = format!("{name}.tar.gz");
    let out = Command::new("tar")
        .arg("-czf")
        .arg(releases.join(&archive))
        .arg("-C")
        .arg(work.path())
        .arg(&name)
        .output()
        .unwrap();
    ok(&out, "tar");
    let sums = Command::new("sha256sum")
        .arg(&archive)
        .current_dir(&releases)
        .output()
        .unwrap();
    ok(&sums, "sha256sum");
    let good = String::from_utf8(sums.stdout).unwrap();
    let files: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let put_file = |name: &str, bytes: Vec<u8>| {
        files
            .lock()
            .unwrap()
            .insert(format!("/v0.1.0/{name}"), bytes);
    };
    put_file(&archive, std::fs::read(releases.join(&archive)).unwrap());
    put_file("SHA256SUMS", good.clone().into_bytes());
    let shared = files.clone();
    let fake = serve(Router::new().fallback(move |uri: Uri| {
        let files = shared.clone();
        async move {
            match files.lock().unwrap().get(uri.path()) {
                Some(b) => (StatusCode::OK, b.clone()),
                None => (StatusCode::NOT_FOUND, Vec::new()),
            }
        }
    }));
    let install = |dir: &Path| {
        Command::new("sh")
            .arg(root().join("scripts/ci/install.sh"))
            .arg("0.1.0")
            .arg(dir)
            .env("LATCHKEY_RELEASES_URL", format!("http://{}", fake.addr))
            .output()
            .unwrap()
    };

    let dir = work.path().join("good");
    let out = install(&dir);
    ok(&out, "install.sh");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("latchkey {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(dir.join("bin/latchkey").exists());

    // A corrupted download (or a tampered SHA256SUMS) installs nothing.
    let wrong = format!("{}{}", "0".repeat(64), &good[64..]);
    put_file("SHA256SUMS", wrong.into_bytes());
    let dir = work.path().join("tampered");
    let out = install(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match its checksum"));
    assert!(!dir.join("bin/latchkey").exists());

    // A SHA256SUMS without this archive's line is no pass either.
    put_file("SHA256SUMS", b"abc  latchkey-0.1.0-other.tar.gz\n".to_vec());
    let dir = work.path().join("unlisted");
    let out = install(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no line for"));
    assert!(!dir.join("bin/latchkey").exists());
}

/// A forge's comments on one pull request: (id, body), the calls that changed them, and
/// the header (name, value) a caller must send.
struct Thread {
    comments: Vec<(u64, String)>,
    writes: Vec<String>,
    auth: (&'static str, &'static str),
}

type Shared = Arc<Mutex<Thread>>;

fn page(uri: &Uri, comments: &[(u64, String)]) -> String {
    let q: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let per: usize = q.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
    let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
    let items: Vec<serde_json::Value> = comments
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .map(|(id, body)| serde_json::json!({"id": id, "body": body}))
        .collect();
    serde_json::Value::from(items).to_string()
}

fn body_of(bytes: &Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v["body"].as_str().unwrap().to_string()
}

fn authorised(t: &Thread, h: &HeaderMap) -> bool {
    h.get(t.auth.0).and_then(|v| v.to_str().ok()) == Some(t.auth.1)
}

async fn list(State(t): State<Shared>, h: HeaderMap, uri: Uri) -> (StatusCode, String) {
    let t = t.lock().unwrap();
    if !authorised(&t, &h) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    (StatusCode::OK, page(&uri, &t.comments))
}

async fn create(State(t): State<Shared>, h: HeaderMap, b: Bytes) -> StatusCode {
    let mut t = t.lock().unwrap();
    if !authorised(&t, &h) {
        return StatusCode::UNAUTHORIZED;
    }
    let id = 10_000 + t.comments.len() as u64;
    t.comments.push((id, body_of(&b)));
    t.writes.push(format!("POST {id}"));
    StatusCode::CREATED
}

async fn edit(
    State(t): State<Shared>,
    method: axum::http::Method,
    UrlPath(ids): UrlPath<Vec<(String, String)>>,
    h: HeaderMap,
    b: Bytes,
) -> StatusCode {
    let mut t = t.lock().unwrap();
    if !authorised(&t, &h) {
        return StatusCode::UNAUTHORIZED;
    }
    let id: u64 = ids
        .iter()
        .find(|(k, _)| k == "id")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let Some(c) = t.comments.iter_mut().find(|c| c.0 == id) else {
        return StatusCode::NOT_FOUND;
    };
    c.1 = body_of(&b);
    t.writes.push(format!("{method} {id}"));
    StatusCode::OK
}

/// GitHub's issue comments (PATCH to edit) or GitLab's merge-request notes (PUT).
fn forge(kind: &str, thread: Shared) -> Router {
    let router = if kind == "github" {
        Router::new()
            .route(
                "/repos/{owner}/{name}/issues/{n}/comments",
                get(list).post(create),
            )
            .route("/repos/{owner}/{name}/issues/comments/{id}", patch(edit))
    } else {
        Router::new()
            .route(
                "/api/v4/projects/{project}/merge_requests/{iid}/notes",
                get(list).post(create),
            )
            .route(
                "/api/v4/projects/{project}/merge_requests/{iid}/notes/{id}",
                put(edit),
            )
    };
    router.with_state(thread)
}

/// Runs upsert-comment.py three times against a fake forge whose pull request already
/// has 150 other comments (the marker's lands on the second page): one comment is
/// created, then updated in place; the others are never touched.
fn one_comment_updated_in_place(kind: &str) {
    let thread: Shared = Arc::new(Mutex::new(Thread {
        comments: (1..=150)
            .map(|i| (i, format!("a reviewer's comment {i}")))
            .collect(),
        writes: Vec::new(),
        auth: if kind == "github" {
            ("authorization", "Bearer t0k3n")
        } else {
            ("private-token", "t0k3n")
        },
    }));
    let fake = serve(forge(kind, thread.clone()));
    let work = tempfile::tempdir().unwrap();
    let run = |body: &str| {
        let file = work.path().join("review.md");
        std::fs::write(&file, body).unwrap();
        let mut c = Command::new("python3");
        c.arg(root().join("scripts/ci/upsert-comment.py"))
            .arg(kind)
            .arg(&file)
            .args(["--number", "7"]);
        if kind == "github" {
            c.args(["--repo", "agency/access"])
                .env("GITHUB_API_URL", format!("http://{}", fake.addr))
                .env("GITHUB_TOKEN", "t0k3n");
        } else {
            c.args(["--project", "42"])
                .env("CI_API_V4_URL", format!("http://{}/api/v4", fake.addr))
                .env("LATCHKEY_NOTE_TOKEN", "t0k3n");
        }
        let out = c.output().unwrap();
        ok(&out, "upsert-comment.py");
    };
    run("<!-- latchkey-plan -->\n## first push\n");
    run("<!-- latchkey-plan -->\n## second push\n");
    // An error text latchkey did not write gets the marker, and replaces the same one.
    run("### latchkey: this change cannot be reviewed\n");
    let t = thread.lock().unwrap();
    let ours: Vec<&(u64, String)> = t
        .comments
        .iter()
        .filter(|c| c.1.contains("<!-- latchkey-plan -->"))
        .collect();
    assert_eq!(ours.len(), 1, "{kind}: one latchkey comment");
    assert_eq!(
        ours[0].1,
        "<!-- latchkey-plan -->\n### latchkey: this change cannot be reviewed\n"
    );
    let edit = if kind == "github" { "PATCH" } else { "PUT" };
    assert_eq!(
        t.writes,
        vec![
            "POST 10150".to_string(),
            format!("{edit} 10150"),
            format!("{edit} 10150")
        ]
    );
    assert_eq!(t.comments.len(), 151);
    assert!(
        t.comments[..150]
            .iter()
            .all(|c| c.1.starts_with("a reviewer's comment"))
    );
}

#[test]
fn the_github_comment_is_created_once_then_updated() {
    one_comment_updated_in_place("github");
}

#[test]
fn the_gitlab_note_is_created_once_then_updated() {
    one_comment_updated_in_place("gitlab");
}
