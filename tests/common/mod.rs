//! Shared by the guard and controller tests: local git repositories and the embedded
//! SQLite portal, built the way a user would have them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use git2::{Repository, Signature, Time};

pub const SCHEMA: &str = include_str!("../../examples/agency/schema.sql");

/// A temp dir holding `access/` (the git repo) and the SQLite files.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let ws = Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        Repository::init_opts(
            ws.repo_path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init");
        for db in ["portal.sqlite", "staging.sqlite"] {
            let c = rusqlite::Connection::open(ws.path().join(db)).expect("sqlite");
            c.execute_batch(SCHEMA).expect("schema");
        }
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo_path(&self) -> PathBuf {
        self.dir.path().join("access")
    }

    /// Writes files (path, content; empty content deletes) and commits them at `time`.
    pub fn commit(&self, files: &[(&str, &str)], time: i64, message: &str) -> git2::Oid {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
        self.commit_bytes(&files, time, message)
    }

    /// Like [`Workspace::commit`], the contents as bytes (not necessarily UTF-8).
    pub fn commit_bytes(&self, files: &[(&str, &[u8])], time: i64, message: &str) -> git2::Oid {
        let repo = Repository::open(self.repo_path()).expect("open");
        for (path, content) in files {
            let full = self.repo_path().join(path);
            if content.is_empty() {
                let _ = std::fs::remove_file(&full);
            } else {
                std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
                std::fs::write(&full, content).expect("write");
            }
        }
        // Only the given paths change, on top of HEAD's tree: a running latchkey may have
        // just committed audit/ and not yet refreshed the working tree, and committing
        // the stale copy would be an edit of audit/ by hand.
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let mut index = repo.index().expect("index");
        if let Some(p) = &parent {
            index
                .read_tree(&p.tree().expect("tree"))
                .expect("read tree");
        }
        for (path, content) in files {
            if content.is_empty() {
                let _ = index.remove_path(Path::new(path));
            } else {
                index.add_path(Path::new(path)).expect("add");
            }
        }
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig =
            Signature::new("Dana Ops", "ops@northwind.example", &Time::new(time, 0)).expect("sig");
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
    }

    /// Runs the latchkey binary in the workspace.
    pub fn latchkey(&self, args: &[&str]) -> Output {
        self.latchkey_cmd(args).output().expect("run latchkey")
    }

    /// The latchkey command [`Workspace::latchkey`] runs, to spawn or adjust.
    pub fn latchkey_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        c.args(args).current_dir(self.path()).env("NO_COLOR", "1");
        c
    }

    /// (email, active, sorted roles) of every managed user of a SQLite system.
    pub fn rows(&self, db: &str) -> Vec<(String, bool, Vec<String>)> {
        let c = rusqlite::Connection::open(self.path().join(db)).expect("sqlite");
        let mut stmt = c
            .prepare(
                "SELECT u.email, u.active, COALESCE(group_concat(r.role, ','), '') FROM users u \
                 LEFT JOIN (SELECT * FROM user_roles ORDER BY role) r ON r.user_id = u.id \
                 WHERE u.managed_by = 'latchkey' GROUP BY u.id ORDER BY u.email",
            )
            .expect("prepare");
        stmt.query_map([], |r| {
            let roles: String = r.get(2)?;
            let mut roles: Vec<String> = roles
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            roles.sort();
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0, roles))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
    }

    /// The ledger's month files at the branch tip (`audit/ledger/YYYY/MM.jsonl`, not the
    /// history index's buckets), oldest first, with their blob ids.
    pub fn month_files(&self) -> Vec<(String, git2::Oid)> {
        let repo = Repository::open(self.repo_path()).expect("open");
        let tree = repo.head().expect("head").peel_to_tree().expect("tree");
        let mut files = Vec::new();
        let Ok(ledger) = tree.get_path(Path::new("audit/ledger")) else {
            return files;
        };
        repo.find_tree(ledger.id())
            .expect("ledger tree")
            .walk(git2::TreeWalkMode::PreOrder, |dir, e| {
                if e.kind() == Some(git2::ObjectType::Blob)
                    && !dir.contains(".index/")
                    && e.name().is_ok_and(|n| n.ends_with(".jsonl"))
                {
                    files.push((
                        format!("audit/ledger/{dir}{}", e.name().unwrap_or("")),
                        e.id(),
                    ));
                }
                git2::TreeWalkResult::Ok
            })
            .expect("walk");
        files.sort();
        files
    }

    /// The ledger lines at the branch tip, parsed.
    pub fn ledger(&self) -> Vec<serde_json::Value> {
        let repo = Repository::open(self.repo_path()).expect("open");
        let mut out = Vec::new();
        for (_, id) in self.month_files() {
            let blob = repo.find_blob(id).expect("blob");
            for line in std::str::from_utf8(blob.content()).expect("utf8").lines() {
                out.push(serde_json::from_str(line).expect("json line"));
            }
        }
        out
    }

    pub fn head(&self) -> git2::Oid {
        Repository::open(self.repo_path())
            .expect("open")
            .head()
            .expect("head")
            .target()
            .expect("oid")
    }
}

/// Exit code, stdout and stderr as text.
pub fn out(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The systems, roles and clients most tests share: a portal (prune on, disable on
/// offboarding) and a staging store (delete on offboarding), client acme, agency studio.
pub const BASE: &str = r#"apiVersion: latchkey.dev/v1alpha1
kind: Policy
metadata: {name: policy}
spec:
  agencyClient: studio
  maxGrantDuration: {staging: 30d}
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: portal}
spec:
  type: sql
  environment: portal
  connection: {path: portal.sqlite}
  prune: true
  offboard: disable
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: staging}
spec:
  type: sql
  environment: staging
  connection: {path: staging.sqlite}
  prune: true
  offboard: delete
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: viewer}
spec:
  entitlements: {portal: ["{client}:viewer"]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: staging-admin}
spec:
  entitlements: {staging: ["{client}:admin"]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec:
  allowedRoles: [viewer, staging-admin]
  maxGrantDuration: 30d
  requireExpiry: [staging]
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: studio}
spec:
  allowedRoles: [viewer]
"#;

/// A Member document of acme with the given grants (YAML list items, indented 4).
pub fn member(name: &str, grants: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata: {{name: {name}}}\nspec:\n  email: {name}@acme.example\n  client: acme\n  grants:\n{grants}\n"
    )
}

/// Members named `p1..=pn`, each with the viewer role, in one file.
pub fn viewers(n: usize) -> String {
    (1..=n)
        .map(|i| member(&format!("p{i}"), "    - role: viewer"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// 2026-11-20T12:00:00Z, the time most test commits are made at.
pub const T0: i64 = 1_795_176_000;

/// A controller on the workspace's repository, driven in-process with explicit instants.
pub fn controller(ws: &Workspace) -> latchkey::controller::run::Controller {
    use latchkey::controller::http::Shared;
    use latchkey::controller::run::{Controller, RunConfig};
    let repo = latchkey::source::SourceRepo::open(
        &latchkey::source::Location::Path(ws.repo_path()),
        &ws.path().join("cache"),
    )
    .expect("open");
    let registry = latchkey::connectors::Registry::builtin(Default::default());
    let shared = std::sync::Arc::new(Shared {
        metrics: latchkey::controller::metrics::Metrics::new(),
        ready: Default::default(),
        push: Default::default(),
        webhook_secret: None,
    });
    let cfg = RunConfig {
        branch: "main".into(),
        subpath: String::new(),
        interval: std::time::Duration::from_secs(3600),
        drift_interval: std::time::Duration::from_secs(3600),
        push: false,
    };
    Controller::new(
        latchkey::reconcile::Reconciler::new(repo, registry),
        cfg,
        shared,
    )
}

/// [`BASE`] with the SQLite paths made absolute: an in-process controller runs in the
/// test's working directory, not the workspace.
pub fn base_in(ws: &Workspace) -> String {
    let mut base = BASE.to_string();
    for db in ["portal.sqlite", "staging.sqlite"] {
        let abs = ws.path().join(db);
        base = base.replace(&format!("path: {db}"), &format!("path: {}", abs.display()));
    }
    base
}
