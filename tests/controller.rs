//! `latchkey run` with a real clock: expiry precision, the last valid revision staying in
//! force, the push webhook, health and metrics, and a clean SIGTERM. These tests wait a
//! few seconds for a real expiry, no more. The controller driven in-process at explicit
//! instants, for what needs no clock.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BASE, Workspace, base_in, controller, member};
use jiff::Timestamp;

/// A running `latchkey run` and its HTTP address.
struct Running {
    child: Child,
    addr: String,
}

impl Running {
    fn start(ws: &Workspace, env: &[(&str, &str)], extra: &[&str]) -> Running {
        let mut args = vec![
            "run",
            "access",
            "--branch",
            "main",
            "--interval",
            "1h",
            "--drift-interval",
            "1h",
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(&args)
            .current_dir(ws.path())
            .envs(env.iter().copied())
            .env("LATCHKEY_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start latchkey run");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("latchkey run exited early")
                .expect("read");
            if let Some(rest) = line.split("serving http://").nth(1) {
                break rest.trim().to_string();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Running { child, addr }
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (
            status,
            resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
        )
    }

    /// SIGTERM, then the exit status must be success.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "latchkey run exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "latchkey run did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_admin(ws: &Workspace) -> bool {
    ws.rows("staging.sqlite")
        .iter()
        .any(|(e, _, roles)| e == "erin@acme.example" && roles.iter().any(|r| r == "acme:admin"))
}

/// A repo where erin's staging grant expires `secs` from now.
fn expiring_repo(secs: i64) -> (Workspace, Timestamp) {
    let ws = Workspace::new();
    let now = Timestamp::now();
    let expires = Timestamp::from_second(now.as_second() + secs).unwrap();
    let grant = format!("    - role: viewer\n    - role: staging-admin\n      expires: {expires}");
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            ("clients/acme/members.yaml", &member("erin", &grant)),
        ],
        now.as_second(),
        "erin",
    );
    (ws, expires)
}

fn assert_revoked_on_time(ws: &Workspace, expires: Timestamp) {
    wait_for("the staging grant", Duration::from_secs(5), || {
        has_admin(ws)
    });
    wait_for("the revocation", Duration::from_secs(10), || !has_admin(ws));
    let lag = Timestamp::now().duration_since(expires).as_secs_f64();
    assert!(lag >= 0.0, "revoked {:.3}s before expires", -lag);
    assert!(lag < 2.0, "revoked {lag:.3}s after expires (target < 2s)");
    wait_for("the expiry's ledger record", Duration::from_secs(5), || {
        ws.ledger().iter().any(|r| {
            r["reason"] == "expired"
                && r["entitlement"] == "acme:admin"
                && r["result"] == "applied"
                && r["trigger"] == "expiry"
        })
    });
}

#[test]
fn run_revokes_within_two_seconds_of_expires_and_commits_the_audit() {
    let (ws, expires) = expiring_repo(4);
    let run = Running::start(&ws, &[], &[]);
    assert_revoked_on_time(&ws, expires);
    assert_eq!(run.http("GET", "/healthz", &[], "").0, 200);
    assert_eq!(run.http("GET", "/readyz", &[], "").0, 200);
    let (status, metrics) = run.http("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("latchkey_expiry_lag_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "latchkey_changes_total{system=\"staging\",change=\"revoke\",result=\"applied\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(
        run.http("POST", "/hooks/push", &[], "").0,
        404,
        "no secret configured: webhook off"
    );
    run.stop();
}

#[test]
fn an_invalid_newest_revision_keeps_the_last_valid_one_in_force_with_its_expiries() {
    let (ws, expires) = expiring_repo(5);
    let (code, _, stderr) = common::out(&ws.latchkey(&["apply", "access", "--rev", "main"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(has_admin(&ws));
    let typo = ws.commit(
        &[(
            "clients/acme/members.yaml",
            &member("erin", "    - role: nope"),
        )],
        Timestamp::now().as_second(),
        "typo",
    );
    let run = Running::start(&ws, &[], &[]);
    wait_for(
        "the invalid-revision record",
        Duration::from_secs(5),
        || ws.ledger().iter().any(|r| r["event"] == "invalid-revision"),
    );
    let (_, metrics) = run.http("GET", "/metrics", &[], "");
    assert!(metrics.contains("latchkey_invalid_revision 1"), "{metrics}");
    assert_revoked_on_time(&ws, expires);
    run.stop();
    // Recorded once, naming the typo's commit: the expiry's wake, on top of latchkey's
    // own audit commit, is the same invalid revision.
    let invalid: Vec<_> = ws
        .ledger()
        .into_iter()
        .filter(|r| r["event"] == "invalid-revision")
        .collect();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0]["revision"], format!("main@sha1:{typo}").as_str());
}

#[test]
fn a_signed_push_webhook_triggers_a_fetch_and_bad_secrets_are_refused() {
    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", BASE),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: viewer"),
            ),
        ],
        Timestamp::now().as_second(),
        "erin",
    );
    let run = Running::start(
        &ws,
        &[("HOOK_SECRET", "s3cret")],
        &["--webhook-secret-env", "HOOK_SECRET"],
    );
    wait_for("the first apply", Duration::from_secs(5), || {
        ws.rows("portal.sqlite").len() == 1
    });
    wait_for("its audit commit", Duration::from_secs(5), || {
        !ws.ledger().is_empty()
    });
    let two = format!(
        "{}---\n{}",
        member("erin", "    - role: viewer"),
        member("dana", "    - role: viewer")
    );
    ws.commit(
        &[("clients/acme/members.yaml", &two)],
        Timestamp::now().as_second(),
        "dana",
    );
    assert_eq!(
        run.http(
            "POST",
            "/hooks/push",
            &[("Authorization", "Bearer wrong")],
            "{}"
        )
        .0,
        401
    );
    assert_eq!(run.http("POST", "/hooks/push", &[], "{}").0, 401);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ws.rows("portal.sqlite").len(),
        1,
        "a refused hook must not trigger a fetch"
    );
    assert_eq!(
        run.http(
            "POST",
            "/hooks/push",
            &[("Authorization", "Bearer s3cret")],
            "{}"
        )
        .0,
        202
    );
    wait_for("dana's account", Duration::from_secs(5), || {
        ws.rows("portal.sqlite").len() == 2
    });
    run.stop();
}

/// Issue 15, item 2: one Latin-1 byte (a `# café` comment) made every reconcile of `run`
/// fail as a source error, so the last applied revision's expiries stopped firing and
/// nothing was recorded. It is an invalid revision like malformed YAML: recorded once, the
/// last applied revision enforced, its expiry revoked on time.
#[tokio::test]
async fn a_revision_that_is_not_utf8_is_invalid_and_the_last_applied_one_still_expires() {
    use latchkey::audit::Trigger;
    use latchkey::controller::run::Tick;
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    let expires: Timestamp = "2025-03-01T12:00:00Z".parse().unwrap();
    let grant = format!("    - role: viewer\n    - role: staging-admin\n      expires: {expires}");
    ws.commit(
        &[
            ("latchkey.yaml", &base_in(&ws)),
            ("clients/acme/members.yaml", &member("erin", &grant)),
        ],
        t0.as_second(),
        "erin",
    );
    let mut c = controller(&ws);
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(has_admin(&ws));

    let mut bytes = member("erin", &grant).into_bytes();
    bytes.extend_from_slice(b"# caf\xe9\n");
    let bad = ws.commit_bytes(
        &[("clients/acme/members.yaml", &bytes)],
        t0.as_second() + 60,
        "a comment in Latin-1",
    );
    let t1 = t0 + jiff::SignedDuration::from_mins(30);
    let tick = c.tick(Trigger::Merge, t1).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(has_admin(&ws), "the last applied revision stays in force");
    let invalid: Vec<_> = ws
        .ledger()
        .into_iter()
        .filter(|r| r["event"] == "invalid-revision")
        .collect();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0]["revision"], format!("main@sha1:{bad}"));
    assert_eq!(
        invalid[0]["note"],
        "1 errors; first: clients/acme/members.yaml:11:6: error: not UTF-8 text: byte 0xE9 is not valid UTF-8"
    );

    // The expiry of the last applied revision fires while the newest one stays invalid,
    // and the invalid revision is not recorded twice.
    let tick = c.tick(Trigger::Expiry, expires).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(!has_admin(&ws), "the expired grant is revoked");
    let ledger = ws.ledger();
    assert_eq!(
        ledger
            .iter()
            .filter(|r| r["event"] == "invalid-revision")
            .count(),
        1
    );
    assert!(
        ledger.iter().any(|r| r["reason"] == "expired"
            && r["entitlement"] == "acme:admin"
            && r["result"] == "applied"
            && r["trigger"] == "expiry"),
        "{ledger:?}"
    );
}

/// Issue 21: after the controller's own audit commit, its next verification walks only
/// the lines that commit appended (it resumes after the last line it verified), not the
/// month; the totals are a verification from genesis's.
#[tokio::test]
async fn after_its_own_commit_the_controller_verifies_only_the_lines_it_appended() {
    use latchkey::audit::Trigger;
    use latchkey::controller::run::Tick;
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    let first: Timestamp = "2025-03-01T11:00:00Z".parse().unwrap();
    let second: Timestamp = "2025-03-01T12:00:00Z".parse().unwrap();
    let grants = format!(
        "    - role: viewer\n      expires: {second}\n    - role: staging-admin\n      expires: {first}"
    );
    ws.commit(
        &[
            ("latchkey.yaml", &base_in(&ws)),
            ("clients/acme/members.yaml", &member("erin", &grants)),
        ],
        t0.as_second(),
        "erin",
    );
    let mut c = controller(&ws);
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    let after_first_apply = ws.ledger().len() as u64;
    // The first expiry's verification walks the month (nothing was verified before it
    // but an empty ledger).
    let tick = c.tick(Trigger::Expiry, first).await;
    assert!(
        matches!(
            tick,
            Tick::Applied {
                changes: 1..,
                failed: 0,
                ..
            }
        ),
        "{tick:?}"
    );
    assert_eq!(
        c.reconciler().ledger_lines_walked(),
        Some(after_first_apply)
    );
    let after_expiry = ws.ledger().len() as u64;
    assert!(after_expiry > after_first_apply);
    // The second walks only what the first expiry's commit appended.
    let tick = c.tick(Trigger::Expiry, second).await;
    assert!(
        matches!(
            tick,
            Tick::Applied {
                changes: 1..,
                failed: 0,
                ..
            }
        ),
        "{tick:?}"
    );
    assert_eq!(
        c.reconciler().ledger_lines_walked(),
        Some(after_expiry - after_first_apply)
    );
    let repo = latchkey::source::SourceRepo::open(
        &latchkey::source::Location::Path(ws.repo_path()),
        &ws.repo_path(),
    )
    .unwrap();
    let full = latchkey::audit::verify::verify(&latchkey::audit::store::LedgerSource::Git {
        rev: repo.resolve("main").unwrap(),
        repo: &repo,
        root: "audit/".into(),
    })
    .unwrap();
    assert!(full.broken.is_none(), "{:?}", full.broken);
    assert_eq!(full.records, ws.ledger().len() as u64);
}

/// Issue 21, item 4: the controller verifies the whole ledger before it applies (from
/// genesis once, then from where the last intact verification ended). A record edited in
/// a commit made to look like one of latchkey's (its trailer forged, only audit/
/// changed), which the anchor check cannot tell, refuses all but expiries.
#[tokio::test]
async fn the_controller_refuses_to_build_on_a_ledger_that_does_not_verify() {
    use latchkey::audit::Trigger;
    use latchkey::controller::run::Tick;
    let ws = Workspace::new();
    let t0: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    ws.commit(
        &[
            ("latchkey.yaml", &base_in(&ws)),
            (
                "clients/acme/members.yaml",
                &member("erin", "    - role: viewer"),
            ),
        ],
        t0.as_second(),
        "erin",
    );
    let mut c = controller(&ws);
    let tick = c.tick(Trigger::Merge, t0).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");

    // A second intact apply verifies incrementally and goes through.
    let more = "    - role: viewer\n    - role: staging-admin\n      expires: 2025-03-08T00:00:00Z";
    ws.commit(
        &[("clients/acme/members.yaml", &member("erin", more))],
        t0.as_second() + 60,
        "admin for erin",
    );
    let t1 = t0 + jiff::SignedDuration::from_mins(2);
    let tick = c.tick(Trigger::Merge, t1).await;
    assert!(matches!(tick, Tick::Applied { failed: 0, .. }), "{tick:?}");
    assert!(has_admin(&ws));

    // Forge: the first record edited, committed with the anchored head's trailer.
    // (Records carry the clock's time when it is later than --now: find the month.)
    let repo = git2::Repository::open(ws.repo_path()).unwrap();
    let months = ws.month_files();
    let (path, id) = months.first().cloned().expect("a month file");
    let path = path.as_str();
    let blob = repo.find_blob(id).unwrap();
    let text = std::str::from_utf8(blob.content()).unwrap().to_string();
    let head = ws.ledger().last().unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let (first, rest) = text.split_once('\n').unwrap();
    let edited = format!(
        "{}\n{rest}",
        first.replacen("\"trigger\":\"merge\"", "\"trigger\":\"manual\"", 1)
    );
    assert_ne!(edited, text);
    ws.commit(
        &[(path, &edited)],
        t0.as_second() + 180,
        &format!("latchkey: run\n\nLatchkey-Ledger-Head: {head}\n"),
    );
    // Then a change that would revoke erin's admin (not an expiry): not applied.
    ws.commit(
        &[(
            "clients/acme/members.yaml",
            &member("erin", "    - role: viewer"),
        )],
        t0.as_second() + 240,
        "no admin for erin",
    );
    let t2 = t0 + jiff::SignedDuration::from_mins(5);
    let _ = c.tick(Trigger::Merge, t2).await;
    assert!(
        has_admin(&ws),
        "nothing but expiries is applied on a broken ledger"
    );
    let refusal = ws
        .ledger()
        .into_iter()
        .find(|r| r["event"] == "refusal")
        .expect("a refusal record");
    let note = refusal["note"].as_str().unwrap();
    assert!(
        note.contains("does not verify") && note.contains(&format!("{path}:1: hash mismatch")),
        "{note}"
    );
}
