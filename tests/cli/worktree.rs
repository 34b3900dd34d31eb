//! `validate` where people edit (issue 18, item 4): a work tree's files as they are, the
//! index with --staged, a plain directory; and CI and tool files never break a
//! repository (item 3).

use std::path::Path;
use std::process::Command;

use crate::common::{Env, NOW, REPO, corpus, read_tree, run_in};

/// A misspelt field in a Member: an error wherever validate reads it.
const TYPO: &str = "apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: zed}
spec:
  emial: zed@acme.example
  client: acme
";

const ZED: &str = "apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: zed}
spec:
  email: zed@acme.example
  client: acme
  grants: [{role: viewer}]
";

/// The base corpus committed and checked out: a work tree as `git clone` leaves it.
fn work_tree() -> Env {
    let env = Env::base();
    env.checkout();
    env
}

fn write(env: &Env, rel: &str, text: &str) {
    let path = env.path(REPO).join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `git add <rel>`.
fn stage(env: &Env, rel: &str) {
    let mut index = env.repo.index().unwrap();
    index.add_path(Path::new(rel)).unwrap();
    index.write().unwrap();
}

/// Every object file under .git/objects: validate must add none.
fn object_files(env: &Env) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| {
                    let p = e.unwrap().path();
                    if p.is_dir() { count(&p) } else { 1 }
                })
                .sum()
            })
            .unwrap_or(0)
    }
    count(&env.path(REPO).join(".git/objects"))
}

#[test]
fn an_uncommitted_typo_is_caught_in_the_working_tree_and_head_stays_valid() {
    let env = work_tree();
    write(&env, "clients/acme/zed.yaml", TYPO);
    let objects = object_files(&env);
    let out = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let mut lines = out.stderr.lines();
    assert_eq!(
        lines.next().unwrap(),
        "validate: the working tree of access (uncommitted changes included; --staged for the index, --rev HEAD for the last commit)"
    );
    assert!(
        out.stderr
            .contains("clients/acme/zed.yaml:5:3: error: unknown field `emial`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with("working tree: 1 error, 0 warnings\n"),
        "{}",
        out.stderr
    );
    // Read into memory: not one object was written to the repository.
    assert_eq!(object_files(&env), objects);

    let head = env.run(&["validate", REPO, "--rev", "HEAD", "--now", NOW]);
    assert_eq!(head.code, 0, "{}", head.stderr);
    assert!(head.stderr.starts_with("main@sha1:"), "{}", head.stderr);
}

#[test]
fn the_working_tree_counts_edits_deletions_and_untracked_files_but_not_ignored_ones() {
    let env = work_tree();
    // Untracked and valid: read (one more member).
    write(&env, "clients/acme/zed.yaml", ZED);
    // Ignored by git: not part of the working tree as git sees it.
    write(&env, ".gitignore", "scratch/\n");
    write(&env, "scratch/broken.yaml", TYPO);
    let out = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.ends_with(
            "working tree: valid (3 systems, 4 roles, 2 clients, 4 members, 6 grants; 0 warnings)\n"
        ),
        "{}",
        out.stderr
    );
    // A tracked file deleted on disk is gone: its members lose their client.
    std::fs::remove_file(env.path(REPO).join("clients/acme/client.yaml")).unwrap();
    let out = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("acme"), "{}", out.stderr);
}

#[test]
fn staged_reads_the_index_not_the_working_tree() {
    let env = work_tree();
    write(&env, "clients/acme/zed.yaml", TYPO);
    stage(&env, "clients/acme/zed.yaml");
    // Fixed on disk, not staged: the commit would still hold the typo.
    write(&env, "clients/acme/zed.yaml", ZED);
    let staged = env.run(&["validate", REPO, "--staged", "--now", NOW]);
    assert_eq!(staged.code, 1, "{}", staged.stderr);
    assert!(
        staged.stderr.starts_with(
            "validate: the index of access (staged changes, as `git commit` would commit them)\n"
        ),
        "{}",
        staged.stderr
    );
    assert!(
        staged
            .stderr
            .contains("clients/acme/zed.yaml:5:3: error: unknown field `emial`"),
        "{}",
        staged.stderr
    );
    assert!(staged.stderr.ends_with("index: 1 error, 0 warnings\n"));
    let tree = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(tree.code, 0, "{}", tree.stderr);

    // And the other way round: a typo on disk that is not staged passes --staged.
    stage(&env, "clients/acme/zed.yaml");
    write(&env, "clients/acme/zed.yaml", TYPO);
    let staged = env.run(&["validate", REPO, "--staged", "--now", NOW]);
    assert_eq!(staged.code, 0, "{}", staged.stderr);
    let tree = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(tree.code, 1, "{}", tree.stderr);
}

#[test]
fn a_plain_directory_is_validated_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access");
    for (rel, text) in read_tree(&corpus().join("base")) {
        let p = access.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let out = run_in(dir.path(), &["validate", "access", "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "validate: the directory access (not a git repository: its files as they are)\n\
         directory: valid (3 systems, 4 roles, 2 clients, 3 members, 5 grants; 0 warnings)\n"
    );
    assert!(!out.stderr.contains("class="), "{}", out.stderr);
    std::fs::write(access.join("clients/acme/zed.yaml"), TYPO).unwrap();
    let out = run_in(dir.path(), &["validate", "access", "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("clients/acme/zed.yaml:5:3: error: unknown field `emial`"),
        "{}",
        out.stderr
    );
    // --staged has no index to read there, and says so.
    let out = run_in(dir.path(), &["validate", "access", "--staged"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("has no working tree") && !out.stderr.contains("class="),
        "{}",
        out.stderr
    );
}

/// Item 3: the CI files of examples/ci/ copied where their own comments say, and a
/// pre-commit config, leave a repository valid (in the working tree and committed).
#[test]
fn a_repository_holding_github_gitlab_and_pre_commit_files_validates() {
    let env = work_tree();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let files = [
        (".github/workflows/latchkey.yml", read("examples/ci/github-actions.yml")),
        (
            ".github/workflows/latchkey-comment.yml",
            read("examples/ci/github-actions-comment.yml"),
        ),
        (".gitlab-ci.yml", read("examples/ci/gitlab-ci.yml")),
        (
            ".pre-commit-config.yaml",
            "repos:\n  - repo: https://github.com/latchkey-dev/latchkey\n    rev: v0.1.0\n    hooks:\n      - id: latchkey-validate\n".to_string(),
        ),
    ];
    for (p, text) in &files {
        write(&env, p, text);
    }
    let out = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("0 warnings"), "{}", out.stderr);
    let edits: Vec<(&str, Option<&str>)> =
        files.iter().map(|(p, t)| (*p, Some(t.as_str()))).collect();
    env.commit(&edits, "ci files");
    let out = env.run(&["validate", REPO, "--rev", "main", "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// The hook .pre-commit-hooks.yaml declares, run as pre-commit runs it (its entry, in
/// the repository, no file names): a staged typo fails the commit, a fixed one passes.
#[test]
fn the_pre_commit_hook_fails_on_a_staged_typo() {
    let hooks: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".pre-commit-hooks.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let hooks = hooks.as_sequence().unwrap();
    assert!(hooks.len() >= 2);
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_latchkey"),
        bin_dir.path().join("latchkey"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for hook in hooks {
        assert_eq!(hook["pass_filenames"], false, "{hook:?}");
        let entry = hook["entry"].as_str().unwrap();
        let run = |env: &Env| {
            Command::new("sh")
                .arg("-c")
                .arg(entry)
                .current_dir(env.path(REPO))
                .env("PATH", &path)
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        };
        let env = work_tree();
        write(&env, "clients/acme/zed.yaml", TYPO);
        stage(&env, "clients/acme/zed.yaml");
        let out = run(&env);
        assert_eq!(out.status.code(), Some(1), "{entry}: {out:?}");
        write(&env, "clients/acme/zed.yaml", ZED);
        stage(&env, "clients/acme/zed.yaml");
        let out = run(&env);
        assert_eq!(out.status.code(), Some(0), "{entry}: {out:?}");
        // The hook's file pattern (Python syntax, as pre-commit reads it) picks YAML
        // files in any case and .latchkeyignore, and nothing else.
        let files = hook["files"].as_str().unwrap();
        let py = Command::new("python3")
            .arg("-c")
            .arg(
                "import re,sys; p=re.compile(sys.argv[1]); \
                 print(' '.join(str(bool(p.search(f))) for f in sys.argv[2:]))",
            )
            .args([
                files,
                "clients/acme/members.yaml",
                "roles/R.YML",
                ".latchkeyignore",
                "README.md",
                "docs/x.latchkeyignore.md",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&py.stdout).trim(),
            "True True True False False"
        );
    }
}
