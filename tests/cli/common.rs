//! Shared helpers: a deterministic repo builder, a run helper and SQLite helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{Oid, Repository, Signature, Time};
use tempfile::TempDir;

/// The instant every test commit is made at: 2026-11-20T12:00:00Z.
pub const COMMIT_TIME: i64 = 1_795_176_000;
/// The `--now` most tests evaluate at (matches the commit time).
pub const NOW: &str = "2026-11-20T12:00:00Z";

/// The repository's directory name inside a test's temp dir.
pub const REPO: &str = "access";

/// tests/corpus/ in the source tree.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every file under `dir`, as (relative path with `/`, contents), sorted.
pub fn read_tree(dir: &Path) -> Vec<(String, String)> {
    read_tree_bytes(dir)
        .into_iter()
        .map(|(p, c)| (p, String::from_utf8(c).unwrap()))
        .collect()
}

/// Like [`read_tree`], the contents as bytes (some corpus cases are not UTF-8 on purpose).
pub fn read_tree_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A temp dir holding a git repository at `access/`; systems' SQLite files live beside it.
pub struct Env {
    pub dir: TempDir,
    pub repo: Repository,
}

impl Env {
    /// An empty repository on branch `main`.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(dir.path().join(REPO), &opts).unwrap();
        Env { dir, repo }
    }

    /// A repository whose first commit is tests/corpus/base.
    pub fn base() -> Env {
        let env = Env::new();
        env.commit_tree(&corpus().join("base"), "base");
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Commits the files of `dir` over the current tree.
    pub fn commit_tree(&self, dir: &Path, msg: &str) -> Oid {
        let files = read_tree(dir);
        let edits: Vec<(&str, Option<&str>)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), Some(c.as_str())))
            .collect();
        self.commit(&edits, msg)
    }

    /// Commits on HEAD: `Some(text)` writes a file, `None` deletes it. Fixed signature and
    /// time, so commit ids are stable.
    pub fn commit(&self, edits: &[(&str, Option<&str>)], msg: &str) -> Oid {
        self.commit_as("author@example.test", edits, msg)
    }

    /// [`Env::commit`] authored by `email`.
    pub fn commit_as(&self, email: &str, edits: &[(&str, Option<&str>)], msg: &str) -> Oid {
        let edits: Vec<(&[u8], Option<&[u8]>)> = edits
            .iter()
            .map(|(p, c)| (p.as_bytes(), c.map(str::as_bytes)))
            .collect();
        self.commit_bytes_as(email, &edits, msg)
    }

    /// Like [`Env::commit`], with paths and contents as bytes: neither need be UTF-8.
    pub fn commit_bytes(&self, edits: &[(&[u8], Option<&[u8]>)], msg: &str) -> Oid {
        self.commit_bytes_as("author@example.test", edits, msg)
    }

    fn commit_bytes_as(&self, email: &str, edits: &[(&[u8], Option<&[u8]>)], msg: &str) -> Oid {
        let mut index = self.repo.index().unwrap();
        let head = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        if let Some(c) = &head {
            index.read_tree(&c.tree().unwrap()).unwrap();
        }
        for (path, content) in edits {
            match content {
                Some(bytes) => {
                    let blob = self.repo.blob(bytes).unwrap();
                    let entry = git2::IndexEntry {
                        ctime: git2::IndexTime::new(0, 0),
                        mtime: git2::IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode: 0o100644,
                        uid: 0,
                        gid: 0,
                        file_size: bytes.len() as u32,
                        id: blob,
                        flags: 0,
                        flags_extended: 0,
                        path: path.to_vec(),
                    };
                    index.add(&entry).unwrap();
                }
                None => index
                    .remove_path(Path::new(std::str::from_utf8(path).unwrap()))
                    .unwrap(),
            }
        }
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::new("Test Author", email, &Time::new(COMMIT_TIME, 0)).unwrap();
        let parents: Vec<&git2::Commit> = head.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, msg, &tree, &parents)
            .unwrap()
    }

    /// examples/agency's documents committed by `author`, each (path, text) through
    /// `edit` first, with its systems seeded as its demo seeds them.
    pub fn agency_example(author: &str, edit: impl Fn(&str, String) -> String) -> Env {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency");
        let env = Env::new();
        let files: Vec<(String, String)> = read_tree(&example)
            .into_iter()
            .filter(|(p, _)| p.ends_with(".yaml"))
            .map(|(p, c)| {
                let c = edit(&p, c);
                (p, c)
            })
            .collect();
        let edits: Vec<(&str, Option<&str>)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), Some(c.as_str())))
            .collect();
        env.commit_as(author, &edits, "the example");
        let seed = std::fs::read_to_string(example.join("seed.sql")).unwrap();
        env.sqlite("portal.sqlite", &seed);
        env.sqlite("staging.sqlite", "");
        env
    }

    /// Checks HEAD out into the working tree and the index, as `git clone` leaves them
    /// (commits are made from objects alone and leave both as they were).
    pub fn checkout(&self) {
        self.repo
            .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .unwrap();
    }

    /// The commit `main` points at.
    pub fn head(&self) -> Oid {
        self.repo.refname_to_id("refs/heads/main").unwrap()
    }

    /// Contents of `path` in commit `at`.
    pub fn file_at(&self, at: Oid, path: &str) -> Option<String> {
        let tree = self.repo.find_commit(at).unwrap().tree().unwrap();
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = self.repo.find_blob(entry.id()).unwrap();
        Some(String::from_utf8(blob.content().to_vec()).unwrap())
    }

    /// Runs latchkey in the temp dir.
    pub fn run(&self, args: &[&str]) -> Out {
        run_in(self.dir.path(), args)
    }

    /// Creates a SQLite system database from examples/agency/schema.sql, then runs `seed`.
    pub fn sqlite(&self, file: &str, seed: &str) {
        let con = rusqlite::Connection::open(self.path(file)).unwrap();
        con.execute_batch(&schema()).unwrap();
        con.execute_batch(seed).unwrap();
    }

    /// Creates empty portal, staging and shop databases (the base repo's systems).
    pub fn systems(&self) {
        self.sqlite("portal.sqlite", UNMANAGED_SEED);
        self.sqlite("staging.sqlite", "");
        self.sqlite("shop.sqlite", "");
    }
}

/// An account the portal had before latchkey: never changed by it.
pub const UNMANAGED_SEED: &str = "INSERT INTO users (email, display_name, active, managed_by) \
     VALUES ('root@portal.example', 'Portal Admin', TRUE, NULL); \
     INSERT INTO user_roles VALUES (1, 'superuser');";

pub fn schema() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency/schema.sql"),
    )
    .unwrap()
}

/// What a run printed and returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real binary with `dir` as its working directory.
pub fn run_in(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("LATCHKEY_LOG")
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS")
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `users` rows: (email, active, managed_by), by email.
pub fn users(db: &Path) -> Vec<(String, bool, Option<String>)> {
    let con = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = con
        .prepare("SELECT email, active, managed_by FROM users ORDER BY email")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `user_roles` rows joined to emails: "email role", sorted.
pub fn roles(db: &Path) -> Vec<String> {
    let con = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = con
        .prepare(
            "SELECT u.email || ' ' || r.role FROM user_roles r JOIN users u ON u.id = r.user_id \
             ORDER BY 1",
        )
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Parses the JSON Lines ledger file.
pub fn ledger(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A managed, active user row.
pub fn managed(email: &str) -> (String, bool, Option<String>) {
    (email.to_string(), true, Some("latchkey".to_string()))
}

/// The ledger files a commit holds under audit/ledger/: (path, records).
pub fn ledger_files(env: &Env, at: Oid) -> Vec<(String, Vec<serde_json::Value>)> {
    let tree = env.repo.find_commit(at).unwrap().tree().unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let path = format!("{dir}{}", entry.name().unwrap());
        if path.starts_with("audit/ledger/") && path.ends_with(".jsonl") {
            let blob = env.repo.find_blob(entry.id()).unwrap();
            out.push((path, ledger(std::str::from_utf8(blob.content()).unwrap())));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// Checks every record's `hash` (sha256 of prev, "\n", the record's canonical JSON without
/// `hash`) and that each `prev` is the hash before it, starting from zeros.
pub fn assert_chain(records: &[serde_json::Value]) {
    use sha2::{Digest, Sha256};
    let mut prev = "0".repeat(64);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["prev"], prev.as_str(), "record {i}'s prev");
        let mut body = r.clone();
        body.as_object_mut().unwrap().remove("hash");
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update(b"\n");
        h.update(serde_json::to_string(&body).unwrap().as_bytes());
        let hash = hex::encode(h.finalize());
        assert_eq!(r["hash"], hash.as_str(), "record {i}'s hash");
        prev = hash;
    }
}

/// A record as "system identity change entitlement reason result" (missing fields: `-`).
pub fn brief(r: &serde_json::Value) -> String {
    [
        "system",
        "identity",
        "change",
        "entitlement",
        "reason",
        "result",
    ]
    .iter()
    .map(|k| r[*k].as_str().unwrap_or("-"))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Paths a commit changed against its first parent.
pub fn changed_paths(env: &Env, at: Oid) -> Vec<String> {
    let c = env.repo.find_commit(at).unwrap();
    let parent = c.parent(0).unwrap().tree().unwrap();
    let diff = env
        .repo
        .diff_tree_to_tree(Some(&parent), Some(&c.tree().unwrap()), None)
        .unwrap();
    diff.deltas()
        .map(|d| d.new_file().path().unwrap().to_string_lossy().to_string())
        .collect()
}
