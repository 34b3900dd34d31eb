//! A remote access repository served by a real `git daemon` on loopback: latchkey mirrors
//! it, applies, and pushes the audit back; when the remote moved under it, the audit
//! commit is rebuilt on the new tip and nothing is lost.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BASE, T0, Workspace, member, out, viewers};
use latchkey::source::{AuditCommit, Location, SourceRepo};

struct Daemon {
    child: Child,
    pid_file: std::path::PathBuf,
    url: String,
}

impl Drop for Daemon {
    /// `git daemon` runs the real daemon as a child of its own: stop that one too, or it
    /// outlives the test and holds the test runner's output open.
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `<root>/access.git` (a bare clone of the workspace's repo) with push enabled.
fn serve(ws: &Workspace) -> Daemon {
    let root = ws.path().join("srv");
    std::fs::create_dir_all(&root).unwrap();
    let bare = root.join("access.git");
    let ok = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(ws.repo_path())
        .arg(&bare)
        .status()
        .expect("git");
    assert!(ok.success());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pid_file = ws.path().join("git-daemon.pid");
    let child = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            "--export-all",
            "--enable=receive-pack",
        ])
        .arg(format!("--base-path={}", root.display()))
        .arg(format!("--pid-file={}", pid_file.display()))
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon (install git)");
    let url = format!("git://127.0.0.1:{port}/access.git");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("git")
        .args(["ls-remote", &url])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon {
        child,
        pid_file,
        url,
    }
}

/// Commits to the served repository as another person would: clone, commit, push.
fn push_as_person(ws: &Workspace, url: &str, file: &str, content: &str) {
    let dir = ws.path().join(format!("person-{}", rand_suffix()));
    let git = |args: &[&str], cwd: &Path| {
        let o = Command::new("git")
            .args([
                "-c",
                "user.name=Pat",
                "-c",
                "user.email=pat@northwind.example",
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["clone", "-q", url, dir.to_str().unwrap()], ws.path());
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    git(&["add", "-A"], &dir);
    git(&["commit", "-q", "-m", "person's change"], &dir);
    git(&["push", "-q", "origin", "HEAD:main"], &dir);
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn remote_log(url: &str, ws: &Workspace) -> Vec<String> {
    let dir = ws.path().join(format!("check-{}", rand_suffix()));
    assert!(
        Command::new("git")
            .args(["clone", "-q", url, dir.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let o = Command::new("git")
        .args(["log", "--format=%s", "main"])
        .current_dir(&dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn apply_pushes_the_audit_to_a_git_daemon_and_follows_later_pushes() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &viewers(1)),
        ],
        T0,
        "one viewer",
    );
    let daemon = serve(&ws);
    let cache = ws.path().join("cache");
    let apply = || {
        out(&ws.latchkey(&[
            "apply",
            &daemon.url,
            "--rev",
            "main",
            "--push",
            "--cache-dir",
            cache.to_str().unwrap(),
        ]))
    };
    let (code, _, stderr) = apply();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ws.rows("portal.sqlite").len(), 1);
    let log = remote_log(&daemon.url, &ws);
    assert!(log[0].starts_with("latchkey: apply main@sha1:"), "{log:?}");
    assert_eq!(log[1], "one viewer");

    push_as_person(&ws, &daemon.url, "clients/acme/members.yaml", &viewers(2));
    let (code, _, stderr) = apply();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        ws.rows("portal.sqlite").len(),
        2,
        "the person's push was fetched and applied"
    );
    let log = remote_log(&daemon.url, &ws);
    assert_eq!(&log[1], "person's change", "{log:?}");
    assert!(log[0].starts_with("latchkey: apply"), "{log:?}");

    let (code, _, stderr) = apply();
    assert_eq!(code, 0);
    assert!(
        stderr.contains("no audit commit: nothing changed"),
        "{stderr}"
    );
}

#[test]
fn a_push_rejected_because_the_remote_moved_is_rebuilt_on_the_new_tip() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: viewer"),
            ),
        ],
        T0,
        "erin",
    );
    let daemon = serve(&ws);
    let repo =
        SourceRepo::open(&Location::parse(&daemon.url), &ws.path().join("cache")).expect("mirror");
    let audit = AuditCommit {
        files: vec![("audit/ledger/2026/11.jsonl".into(), "{\"v\":1}\n".into())],
        message: "latchkey: test audit".into(),
    };
    let ours = repo
        .commit_audit("main", &audit)
        .expect("commit")
        .expect("a new commit");
    // Someone pushes before latchkey does.
    push_as_person(&ws, &daemon.url, "README.md", "a person's change");
    repo.push("main", 3)
        .expect("push after rebuilding on the new tip");
    let log = remote_log(&daemon.url, &ws);
    assert_eq!(
        log[..3],
        ["latchkey: test audit", "person's change", "erin"],
        "{log:?}"
    );
    let tip = repo.resolve("main").expect("resolve");
    assert_ne!(tip.oid, ours, "the audit commit was rebuilt on the new tip");
    assert_eq!(
        repo.file_at(&tip, "audit/ledger/2026/11.jsonl")
            .unwrap()
            .as_deref(),
        Some("{\"v\":1}\n")
    );
    assert_eq!(
        repo.file_at(&tip, "README.md").unwrap().as_deref(),
        Some("a person's change")
    );
}

/// The mirror's outcome log under `cache`, wherever the mirror directory is.
fn outcome_lines(cache: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(cache) else {
        return 0;
    };
    dirs.flatten()
        .map(|d| d.path().join("latchkey/journal/main.outcomes.jsonl"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().count())
        .sum()
}

fn remote_refs(url: &str) -> String {
    let o = Command::new("git")
        .args(["ls-remote", url, "refs/latchkey/*"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The operator's pod is replaced mid-apply: the new one (a fresh mirror, no outcome log)
/// fetches the pushed journal and records the changes the old one made.
#[test]
fn a_journal_pushed_by_a_killed_controller_is_finished_from_a_fresh_mirror() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            // More accounts than one batch holds (500 changes), so a kill after the first
            // outcomes always leaves some accounts not made.
            ("clients/acme/members.yaml", &viewers(600)),
        ],
        T0,
        "many viewers",
    );
    let daemon = serve(&ws);
    let apply = |cache: &Path| {
        ws.latchkey_cmd(&[
            "apply",
            &daemon.url,
            "--rev",
            "main",
            "--push",
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
    };
    let old_pod = ws.path().join("cache-old");
    let mut child = apply(&old_pod)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while outcome_lines(&old_pod) < 100 && started.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        remote_refs(&daemon.url).contains("refs/latchkey/journal/main"),
        "the journal was pushed before any change"
    );
    let made = ws.rows("portal.sqlite").len();
    assert!(made > 0 && made < 600, "killed mid-apply: {made} accounts");

    let new_pod = ws.path().join("cache-new");
    let (code, _, stderr) = out(&apply(&new_pod).output().unwrap());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ws.rows("portal.sqlite").len(), 600);
    assert!(
        !remote_refs(&daemon.url).contains("refs/latchkey/journal/"),
        "the journal is finished on the remote too"
    );
    // One applied record per change: the recovered ones plus the rest.
    let dir = ws.path().join("check");
    assert!(
        Command::new("git")
            .args(["clone", "-q", &daemon.url, dir.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["audit", "verify", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let o = Command::new("git")
        .args([
            "grep",
            "-h",
            "-c",
            "\"result\":\"applied\"",
            "main",
            "--",
            "audit/ledger/",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let applied: usize = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<usize>().ok())
        .sum();
    // Each viewer: an account and the viewer entitlement.
    assert_eq!(applied, 1200, "one applied record per change");
}
