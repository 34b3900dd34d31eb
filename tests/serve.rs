//! The self-service page (`latchkey serve`) end to end, in a real browser: headless
//! Chromium driven by playwright-core (tests/browser/scenario.mjs) signs in at a real
//! OpenID Connect provider (panva's oidc-provider, tests/browser/oidc-provider.mjs) and
//! uses the page against a bare git remote seeded with examples/agency. The test then
//! reads what landed in git (author, path, signature) and applies it to the example's
//! SQLite portal. A pull request is opened against a receiver speaking GitHub's REST
//! API on loopback (no git host can run here).
//!
//! Needs scripts/peers/install-browser.sh (Chromium, and the npm packages in
//! tests/browser). Without them the tests are skipped, unless LATCHKEY_REQUIRE_PEERS is
//! set (CI), where they fail.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{Oid, Repository};
use latchkey::model::{Signer, Trust};
use latchkey::trust::signature::Signers;

const CLIENT_ID: &str = "latchkey-page";
const CLIENT_SECRET: &str = "page-s3cret-never-shown";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when the browser peers are installed; panics under LATCHKEY_REQUIRE_PEERS when not.
fn browser_available() -> bool {
    let missing: Vec<&str> = [
        ("/usr/bin/chromium", Path::new("/usr/bin/chromium").exists()),
        (
            "tests/browser/node_modules",
            root().join("tests/browser/node_modules").is_dir(),
        ),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(what, _)| what)
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("LATCHKEY_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty()) {
        panic!(
            "LATCHKEY_REQUIRE_PEERS is set but {} missing: run scripts/peers/install-browser.sh",
            missing.join(", ")
        );
    }
    eprintln!(
        "skipped: {} missing (scripts/peers/install-browser.sh)",
        missing.join(", ")
    );
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// examples/agency's YAML files, each through `edit`.
fn example(edit: &dyn Fn(&str, String) -> String) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let base = root().join("examples/agency");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out.into_iter()
        .map(|(p, t)| (p.clone(), edit(&p, t)))
        .collect()
}

/// Everything one test runs against.
struct Page {
    dir: tempfile::TempDir,
    remote: Repository,
    base: String,
    signing_pub: String,
    _idp: Killed,
    _serve: Killed,
}

impl Page {
    /// A bare remote seeded with the example (through `edit`), the provider and the page.
    fn start(edit: &dyn Fn(&str, String) -> String, forge_api: Option<SocketAddr>) -> Page {
        let dir = tempfile::tempdir().unwrap();
        let remote = seed(&dir.path().join("remote.git"), &example(edit));
        let key = dir.path().join("latchkey-signing");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "latchkey", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(keygen.success());
        let signing_pub = std::fs::read_to_string(key.with_extension("pub")).unwrap();

        let idp_port = free_port();
        let page_port = free_port();
        let base = format!("http://127.0.0.1:{page_port}");
        let idp = start_idp(idp_port, &format!("{base}/callback"));

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("serve")
            .arg(format!(
                "file://{}",
                dir.path().join("remote.git").display()
            ))
            .args(["--listen", &format!("127.0.0.1:{page_port}")])
            .args(["--public-url", &base])
            .args(["--oidc-issuer", &format!("http://127.0.0.1:{idp_port}")])
            .args(["--oidc-client-id", CLIENT_ID])
            .args(["--log", "info"])
            .env("LATCHKEY_OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("LATCHKEY_SIGNING_KEY", &key)
            // As in the container image: no ssh-keygen to sign with.
            .env("PATH", "/nonexistent")
            .env("LATCHKEY_CACHE_DIR", dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap());
        if let Some(api) = forge_api {
            cmd.args(["--forge", "github", "--forge-project", "northwind/access"])
                .args(["--forge-api", &format!("http://{api}")])
                .env("LATCHKEY_FORGE_TOKEN", "ghs-forge-token");
        }
        let serve = Killed(cmd.spawn().expect("start latchkey serve"));
        wait_for(&format!("{base}/healthz"), dir.path());
        Page {
            remote,
            base,
            signing_pub,
            _idp: idp,
            _serve: serve,
            dir,
        }
    }

    /// Runs the browser scenario signed in as `login`; returns each step by name.
    fn scenario(&self, login: &str, args: &[&str]) -> Steps {
        let shots = self.dir.path().join("screenshots");
        let out = Command::new("node")
            .arg(root().join("tests/browser/scenario.mjs"))
            .args(["--base", &self.base, "--login", login])
            .arg("--screenshots")
            .arg(&shots)
            .args(args)
            .output()
            .expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "the scenario crashed: {}\n{stdout}\nserve log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        // Regenerates the README's pictures on request.
        if let Ok(to) = std::env::var("LATCHKEY_SCREENSHOTS_OUT") {
            std::fs::create_dir_all(&to).unwrap();
            for e in std::fs::read_dir(&shots).unwrap() {
                let p = e.unwrap().path();
                std::fs::copy(&p, Path::new(&to).join(p.file_name().unwrap())).unwrap();
            }
        }
        Steps {
            steps: stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .collect(),
            log: self.log(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn main_tip(&self) -> Oid {
        self.remote.refname_to_id("refs/heads/main").unwrap()
    }

    fn file_at(&self, at: Oid, path: &str) -> String {
        let tree = self.remote.find_commit(at).unwrap().tree().unwrap();
        let entry = tree.get_path(Path::new(path)).unwrap();
        let blob = self.remote.find_blob(entry.id()).unwrap();
        String::from_utf8(blob.content().to_vec()).unwrap()
    }

    /// The paths a commit changes against its parent.
    fn changed(&self, at: Oid) -> Vec<String> {
        let c = self.remote.find_commit(at).unwrap();
        let parent = c.parent(0).unwrap().tree().unwrap();
        let diff = self
            .remote
            .diff_tree_to_tree(Some(&parent), Some(&c.tree().unwrap()), None)
            .unwrap();
        diff.deltas()
            .map(|d| d.new_file().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// The name of the signer who signed `at` for `paths`, by latchkey's own verifier.
    fn signed_by(&self, at: Oid, paths: &str) -> Result<Option<String>, String> {
        let signers = Signers::compile(&Trust {
            require_signed_commits: true,
            signers: vec![Signer {
                name: "latchkey-page".into(),
                ssh_keys: vec![self.signing_pub.trim().to_string()],
                pgp_keys: vec![],
                paths: vec![paths.into()],
                merges: false,
            }],
        })
        .unwrap();
        signers
            .verify_commit(&self.remote, at, "audit/")
            .map_err(|r| r.reason)
    }

    /// `latchkey apply` of the remote's main onto the example's seeded SQLite portal.
    fn apply(&self) -> (String, String) {
        let con = rusqlite::Connection::open(self.dir.path().join("portal.sqlite")).unwrap();
        let example = root().join("examples/agency");
        con.execute_batch(&std::fs::read_to_string(example.join("schema.sql")).unwrap())
            .unwrap();
        con.execute_batch(&std::fs::read_to_string(example.join("seed.sql")).unwrap())
            .unwrap();
        let staging = rusqlite::Connection::open(self.dir.path().join("staging.sqlite")).unwrap();
        staging
            .execute_batch(&std::fs::read_to_string(example.join("schema.sql")).unwrap())
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .current_dir(self.dir.path())
            .arg("apply")
            .arg(format!(
                "file://{}",
                self.dir.path().join("remote.git").display()
            ))
            .args(["--rev", "main", "--push"])
            .env("LATCHKEY_CACHE_DIR", self.dir.path().join("apply-cache"))
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// (active, roles) of `email` in the portal.
    fn portal(&self, email: &str) -> Option<(bool, Vec<String>)> {
        let con = rusqlite::Connection::open(self.dir.path().join("portal.sqlite")).unwrap();
        let (id, active): (i64, bool) = con
            .query_row(
                "SELECT id, active FROM users WHERE email = ?1",
                [email],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok()?;
        let mut stmt = con
            .prepare("SELECT role FROM user_roles WHERE user_id = ?1 ORDER BY role")
            .unwrap();
        let roles = stmt
            .query_map([id], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        Some((active, roles))
    }
}

/// A bare repository whose main holds `files`, committed by the agency an hour ago.
fn seed(path: &Path, files: &[(String, String)]) -> Repository {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.bare(true).initial_head("main");
    let repo = Repository::init_opts(path, &opts).unwrap();
    {
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (p, text) in files {
            let blob = repo.blob(text.as_bytes()).unwrap();
            update.upsert(p.as_str(), blob, git2::FileMode::Blob);
        }
        let tree = update
            .create_updated(&repo, &repo.find_tree(empty).unwrap())
            .unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let when = jiff::Timestamp::now().as_second() - 3600;
        let sig = git2::Signature::new(
            "Alex Agency",
            "alex@northwind.example",
            &git2::Time::new(when, 0),
        )
        .unwrap();
        repo.commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "the example",
            &tree,
            &[],
        )
        .unwrap();
    }
    repo
}

fn start_idp(port: u16, redirect: &str) -> Killed {
    let mut child = Command::new("node")
        .arg(root().join("tests/browser/oidc-provider.mjs"))
        .args(["--port", &port.to_string()])
        .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .args(["--redirect-uri", redirect])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the OIDC provider");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready ") {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the OIDC provider did not print `ready` within 30 s");
    Killed(child)
}

fn wait_for(url: &str, dir: &Path) {
    let start = Instant::now();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "latchkey serve did not listen within 30 s:\n{}",
        std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
    );
}

/// The scenario's steps, by name.
struct Steps {
    steps: Vec<serde_json::Value>,
    log: String,
}

impl Steps {
    fn get(&self, name: &str) -> &serde_json::Value {
        self.steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| {
                panic!(
                    "no step {name} in {:#?}\nserve log:\n{}",
                    self.steps, self.log
                )
            })
    }

    /// The step, which must have passed.
    fn ok(&self, name: &str) -> &serde_json::Value {
        let s = self.get(name);
        assert_eq!(
            s["ok"], true,
            "step {name} failed: {s:#}\nserve log:\n{}",
            self.log
        );
        s
    }

    fn detail(&self, name: &str) -> String {
        self.ok(name)["detail"].as_str().unwrap_or("").to_string()
    }
}

/// The body of a plain GET (the page's own /metrics).
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out)
}

/// A date `days` from today (UTC), as the page's date field takes it.
fn in_days(days: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days);
    t.strftime("%Y-%m-%d").to_string()
}

fn direct_for_acme(path: &str, text: String) -> String {
    if path == "clients/acme/client.yaml" {
        return text.replace(
            "  admins: [dana@acme.example]\n",
            "  admins: [dana@acme.example]\n  directCommits: true\n",
        );
    }
    text
}

#[test]
fn a_client_admin_invites_and_offboards_in_the_browser_and_apply_makes_it_so() {
    if !browser_available() {
        return;
    }
    let page = Page::start(&direct_for_acme, None);
    let before = page.main_tip();
    let ends = in_days(10);
    let steps = page.scenario(
        "dana@acme.example",
        &[
            "--invite-email",
            "zoe@acme.example",
            "--invite-role",
            "client-finance",
            "--invite-expires",
            &ends,
            "--remove-email",
            "frank@acme.example",
            "--change-email",
            "erin@acme.example",
            "--change-role",
            "client-finance",
            "--change-to",
            "client-viewer",
        ],
    );
    steps.ok("signed-out");
    steps.ok("sign-in");
    let people = steps.detail("client-page");
    assert!(people.contains("erin@acme.example"), "{people}");
    assert!(
        !people.contains("hank@globex.example"),
        "another client's people: {people}"
    );
    let review = steps.detail("invite-review");
    assert!(
        review.contains("zoe@acme.example")
            && review.contains("gains")
            && review.contains("acme:finance"),
        "the review shows the effective access: {review}"
    );
    let invited: Oid = steps.detail("invite-confirm").parse().unwrap();
    let removed: Oid = steps.detail("remove-confirm").parse().unwrap();

    // The invite: one commit on main, in acme's folder, by Dana, signed as latchkey.
    let c = page.remote.find_commit(invited).unwrap();
    assert_eq!(c.parent_id(0).unwrap(), before);
    assert_eq!(c.author().email(), Ok("dana@acme.example"));
    assert_eq!(c.committer().name(), Ok("latchkey"));
    assert_eq!(page.changed(invited), ["clients/acme/members.yaml"]);
    assert_eq!(
        page.signed_by(invited, "clients/acme/**"),
        Ok(Some("latchkey-page".into()))
    );
    assert!(
        page.signed_by(invited, "clients/globex/**").is_err(),
        "the verifier checks the paths, so this test can fail"
    );
    let members = page.file_at(invited, "clients/acme/members.yaml");
    assert!(members.contains("email: zoe@acme.example"), "{members}");
    assert!(
        members.contains(&format!("expires: {ends}T00:00:00Z")),
        "{members}"
    );
    assert!(
        members.contains("New hire, finance onboarding"),
        "{members}"
    );
    // The rest of the file is as the agency wrote it, comments and all.
    let was = page.file_at(before, "clients/acme/members.yaml");
    assert!(
        members.starts_with(&was),
        "the invite only appends:\n{members}"
    );

    // The removal: Frank is offboarded, in a commit on top of the invite.
    assert_eq!(page.main_tip(), removed);
    assert_eq!(
        page.remote
            .find_commit(removed)
            .unwrap()
            .parent_id(0)
            .unwrap(),
        invited
    );
    let after = page.file_at(removed, "clients/acme/members.yaml");
    let frank = after
        .split("---\n")
        .find(|d| d.contains("frank@acme.example"))
        .unwrap();
    assert!(frank.contains("offboarded: true"), "{frank}");

    // A role change and a new end are reviewed as the access they change (and not
    // confirmed: the tip stays at the removal, checked below).
    let change = steps.detail("change-role-review");
    assert!(
        change.contains("erin@acme.example")
            && change.contains("loses")
            && change.contains("acme:finance"),
        "{change}"
    );
    let new_end = steps.detail("set-end-review");
    assert!(
        new_end.contains("erin@acme.example") && new_end.contains("changes"),
        "{new_end}"
    );

    // Refused, each with nothing written.
    let outside = steps.get("role-outside");
    assert_eq!(outside["ok"], true, "{outside:#}");
    assert_eq!(outside["status"], 422);
    assert!(
        outside["detail"]
            .as_str()
            .unwrap()
            .contains("agency-developer")
            && outside["detail"].as_str().unwrap().contains("allowedRoles"),
        "{outside:#}"
    );
    for step in [
        "other-client",
        "forged-post",
        "forged-post-no-token",
        "post-wrong-token",
        "post-no-origin-no-token",
    ] {
        let s = steps.get(step);
        assert_eq!(s["ok"], true, "{step}: {s:#}\n{}", steps.log);
        assert_eq!(s["status"], 403, "{step}: {s:#}");
    }
    assert_eq!(
        page.main_tip(),
        removed,
        "a refused action committed nothing"
    );
    steps.ok("sign-out");
    let metrics = http_get(&format!("{}/metrics", page.base));
    for line in [
        r#"latchkey_serve_actions_total{action="invite",result="proposed"} 1"#,
        r#"latchkey_serve_actions_total{action="confirm",result="committed"} 2"#,
        r#"latchkey_serve_actions_total{action="invite",result="refused"} 1"#,
        r#"latchkey_serve_sign_ins_total{result="ok"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(
        !steps.log.contains(CLIENT_SECRET),
        "the secret is never logged"
    );

    // What landed is applied like any other commit.
    let (stdout, stderr) = page.apply();
    let zoe = page.portal("zoe@acme.example");
    assert_eq!(
        zoe,
        Some((true, vec!["acme:finance".into(), "acme:viewer".into()])),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        page.portal("frank@acme.example").map(|f| f.0),
        Some(false),
        "{stdout}\n{stderr}"
    );

    // The apply pushed its audit commit: the page shows the ledger's answers, for this
    // client only.
    let steps = page.scenario(
        "dana@acme.example",
        &[
            "--only",
            "sign-in,access,history",
            "--history-email",
            "zoe@acme.example",
        ],
    );
    let access = steps.detail("access");
    assert!(
        access.contains("zoe@acme.example") && access.contains("acme:finance"),
        "{access}"
    );
    assert!(
        !access.contains("frank@acme.example"),
        "offboarded: {access}"
    );
    assert!(
        !access.contains("globex"),
        "another client's access: {access}"
    );
    let history = steps.detail("history");
    assert!(
        history.contains("grant") && history.contains("acme:finance"),
        "{history}"
    );
}

/// A GitHub REST receiver: records `POST /repos/{owner}/{repo}/pulls` and answers 201
/// with the `html_url` GitHub would.
async fn github() -> (
    SocketAddr,
    Arc<Mutex<Vec<(String, String, serde_json::Value)>>>,
) {
    use axum::routing::post;
    let got: Arc<Mutex<Vec<(String, String, serde_json::Value)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/repos/{owner}/{repo}/pulls",
        post(
            move |axum::extract::Path((owner, repo)): axum::extract::Path<(String, String)>,
                  headers: axum::http::HeaderMap,
                  axum::Json(body): axum::Json<serde_json::Value>| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock()
                        .unwrap()
                        .push((format!("{owner}/{repo}"), auth, body));
                    (
                        axum::http::StatusCode::CREATED,
                        axum::Json(serde_json::json!({
                            "number": 7,
                            "html_url": format!("https://github.example/{owner}/{repo}/pull/7"),
                        })),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_direct_commits_a_change_is_a_signed_branch_and_a_pull_request() {
    if !browser_available() {
        return;
    }
    let (api, got) = github().await;
    let page = tokio::task::spawn_blocking(move || {
        let page = Page::start(&|_, t| t, Some(api));
        let before = page.main_tip();
        let ends = in_days(5);
        let steps = page.scenario(
            "hank@globex.example",
            &[
                "--client",
                "globex",
                "--invite-email",
                "ivy@globex.example",
                "--invite-role",
                "client-viewer",
                "--invite-expires",
                &ends,
                "--only",
                "sign-in,invite-review,invite-confirm,pending",
            ],
        );
        let commit: Oid = steps.detail("invite-confirm").parse().unwrap();
        // The client page lists the change as waiting for review.
        let pending = steps.detail("pending");
        assert!(
            pending.contains("globex: invite ivy@globex.example as client-viewer")
                && pending.contains("hank@globex.example"),
            "{pending}"
        );
        (page, before, commit)
    })
    .await
    .unwrap();
    let (page, before, commit) = page;
    assert_eq!(page.main_tip(), before, "main is left to the reviewers");
    let branch = format!("refs/heads/latchkey/globex/{}", &commit.to_string()[..12]);
    assert_eq!(page.remote.refname_to_id(&branch).unwrap(), commit);
    assert_eq!(page.changed(commit), ["clients/globex/members.yaml"]);
    assert_eq!(
        page.signed_by(commit, "clients/globex/**"),
        Ok(Some("latchkey-page".into()))
    );
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:#?}");
    let (project, auth, body) = &got[0];
    assert_eq!(project, "northwind/access");
    assert_eq!(auth, "Bearer ghs-forge-token");
    assert_eq!(body["base"], "main");
    assert_eq!(body["head"], branch.trim_start_matches("refs/heads/"));
    assert_eq!(
        body["title"],
        "globex: invite ivy@globex.example as client-viewer"
    );
    let text = body["body"].as_str().unwrap();
    assert!(
        text.contains("ivy@globex.example"),
        "the review is the description: {text}"
    );
}
