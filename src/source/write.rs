//! Committing the audit back: a commit that touches only `audit/`, pushed to the remote.
//!
//! When the remote moved, the audit commit is rebuilt on the new tip. That is safe
//! because latchkey is the only writer of `audit/`: the new tip's `audit/` must equal the
//! one our commit started from, otherwise we stop rather than lose a record.

use git2::build::TreeUpdateBuilder;
use git2::{Cred, FileMode, Oid, PushOptions, RemoteCallbacks, Signature};

use super::repo::REMOTE_REFS;
use super::{SourceError, SourceRepo};

/// Files to write under `audit/` and the message to commit them with.
#[derive(Clone, Debug, Default)]
pub struct AuditCommit {
    /// (path relative to the repository root, full new content).
    pub files: Vec<(String, String)>,
    pub message: String,
}

/// Credentials for fetch and push. Values are never shown by `Debug`.
#[derive(Clone, Default)]
pub struct GitCredentials {
    /// HTTPS user for `token` (default `x-access-token`).
    pub username: Option<String>,
    /// HTTPS token or password.
    pub token: Option<String>,
    /// An OpenSSH private key, in memory.
    pub ssh_key: Option<String>,
    /// A path to an OpenSSH private key.
    pub ssh_key_file: Option<String>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ssh_key", &self.ssh_key.as_ref().map(|_| "***"))
            .field("ssh_key_file", &self.ssh_key_file)
            .finish()
    }
}

impl GitCredentials {
    /// From the environment: `LATCHKEY_GIT_TOKEN` (HTTPS, user `LATCHKEY_GIT_USER` or
    /// `x-access-token`) or `LATCHKEY_GIT_SSH_KEY` (a key file).
    pub fn from_env() -> GitCredentials {
        GitCredentials {
            username: std::env::var("LATCHKEY_GIT_USER").ok(),
            token: std::env::var("LATCHKEY_GIT_TOKEN").ok(),
            ssh_key: None,
            ssh_key_file: std::env::var("LATCHKEY_GIT_SSH_KEY").ok(),
        }
    }
}

/// Remote callbacks answering credential requests from `creds`.
pub(super) fn callbacks(creds: &GitCredentials) -> RemoteCallbacks<'static> {
    let creds = creds.clone();
    let mut cb = RemoteCallbacks::new();
    cb.credentials(move |_url, username, allowed| {
        let user = username.unwrap_or("git");
        if allowed.is_ssh_key() {
            if let Some(key) = &creds.ssh_key {
                return Cred::ssh_key_from_memory(user, None, key, None);
            }
            if let Some(file) = &creds.ssh_key_file {
                return Cred::ssh_key(user, None, file.as_ref(), None);
            }
        }
        if allowed.is_user_pass_plaintext()
            && let Some(token) = &creds.token
        {
            let user = creds.username.as_deref().unwrap_or("x-access-token");
            return Cred::userpass_plaintext(user, token);
        }
        Cred::default()
    });
    cb
}

impl SourceRepo {
    /// The ref the audit is committed to: the local branch, or for a mirror the
    /// local branch that tracks the remote one (pushed from there).
    fn branch_ref(branch: &str) -> String {
        format!("refs/heads/{branch}")
    }

    /// Commits `audit` on top of `branch` and returns the new commit, or `None` when the
    /// files already hold that content (nothing to commit).
    pub fn commit_audit(
        &self,
        branch: &str,
        audit: &AuditCommit,
    ) -> Result<Option<Oid>, SourceError> {
        self.commit_audit_with(branch, || Ok(Some(audit.clone())))
    }

    /// Commits what `build` returns on top of `branch`. `build` is called again for
    /// every attempt, after the branch moved or its ref was locked by another writer, so
    /// the audit files are always rebuilt from the tip they are committed on, never from
    /// a stale ledger tail (which would drop the records another run appended).
    pub fn commit_audit_with(
        &self,
        branch: &str,
        mut build: impl FnMut() -> Result<Option<AuditCommit>, SourceError>,
    ) -> Result<Option<Oid>, SourceError> {
        let err = |source| SourceError::Commit {
            branch: branch.to_string(),
            source,
        };
        let refname = Self::branch_ref(branch);
        // Compare-and-swap on the branch: a commit landing between our read of the tip
        // and our write must never be dropped. Retry on the new tip instead.
        let mut delay = std::time::Duration::from_millis(5);
        for _ in 0..ATTEMPTS {
            let current = self.repo.refname_to_id(&refname).ok();
            let parent_oid = self.audit_base(branch).map_err(err)?;
            let Some(audit) = build()? else {
                return Ok(None);
            };
            let parent = self.repo.find_commit(parent_oid).map_err(err)?;
            let base_tree = parent.tree().map_err(err)?;
            let tree_oid = self.tree_with(&base_tree, &audit.files).map_err(err)?;
            if tree_oid == base_tree.id() {
                return Ok(None);
            }
            let tree = self.repo.find_tree(tree_oid).map_err(err)?;
            let sig = signature().map_err(err)?;
            let oid = self
                .create_commit(&sig, &sig, &audit.message, &tree, &[&parent])
                .map_err(err)?;
            let moved = match current {
                Some(cur) => {
                    self.repo
                        .reference_matching(&refname, oid, true, cur, "latchkey: audit")
                }
                None => self.repo.reference(&refname, oid, false, "latchkey: audit"),
            };
            match moved {
                Ok(_) => {
                    self.refresh_worktree(branch);
                    return Ok(Some(oid));
                }
                Err(e) if is_contended(&e) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_millis(200));
                }
                Err(e) => return Err(err(e)),
            }
        }
        Err(SourceError::Commit {
            branch: branch.to_string(),
            source: git2::Error::from_str("the branch kept moving while the audit was committed"),
        })
    }

    /// Points `refname` at `oid`, retrying while another process holds the ref's lock
    /// file (`failed to lock file '…/refs/heads/main.lock'`).
    pub fn set_ref(&self, refname: &str, oid: Oid, log: &str) -> Result<(), git2::Error> {
        let mut delay = std::time::Duration::from_millis(5);
        for _ in 0..ATTEMPTS {
            match self.repo.reference(refname, oid, true, log) {
                Ok(_) => return Ok(()),
                Err(e) if is_contended(&e) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
        self.repo.reference(refname, oid, true, log).map(|_| ())
    }

    /// The commit the next audit commit goes on: the local branch, which for a mirror
    /// starts at the remote branch and may hold audit commits not pushed yet.
    pub(crate) fn audit_base(&self, branch: &str) -> Result<Oid, git2::Error> {
        let local = self.repo.refname_to_id(&Self::branch_ref(branch));
        if !self.mirrored {
            return local;
        }
        let remote = self
            .repo
            .refname_to_id(&format!("{REMOTE_REFS}/{branch}"))?;
        match local {
            Ok(l) if l != remote && self.repo.graph_descendant_of(l, remote)? => Ok(l),
            _ => Ok(remote),
        }
    }

    /// Keeps a checked-out working tree in step with the audit commit, so `git status`
    /// stays clean for a person looking at the repository.
    fn refresh_worktree(&self, branch: &str) {
        if self.mirrored || self.repo.is_bare() {
            return;
        }
        let on_branch = self
            .repo
            .find_reference("HEAD")
            .ok()
            .and_then(|h| {
                h.symbolic_target()
                    .ok()
                    .flatten()
                    .map(|t| t == Self::branch_ref(branch))
            })
            .unwrap_or(false);
        if on_branch {
            let mut opts = git2::build::CheckoutBuilder::new();
            opts.force().path("audit");
            if let Err(e) = self.repo.checkout_head(Some(&mut opts)) {
                tracing::warn!(error = %e, "audit committed, but the working tree was not refreshed");
            }
        }
    }

    /// Pushes the local branch to origin; when the remote moved (only `audit/` may have
    /// changed underneath us), rebuilds the audit commit on its tip and retries.
    pub fn push(&self, branch: &str, attempts: u32) -> Result<(), SourceError> {
        let url = self.location.to_string();
        let refname = Self::branch_ref(branch);
        let mut last = String::new();
        for _ in 0..attempts.max(1) {
            match self.push_once(&refname) {
                Ok(()) => {
                    if self.mirrored {
                        let oid = self.repo.refname_to_id(&refname)?;
                        self.repo.reference(
                            &format!("{REMOTE_REFS}/{branch}"),
                            oid,
                            true,
                            "pushed",
                        )?;
                    }
                    return Ok(());
                }
                Err(message) => last = message,
            }
            self.fetch()?;
            self.rebase_audit(branch)?;
        }
        Err(SourceError::Push {
            branch: branch.to_string(),
            url,
            message: last,
        })
    }

    /// Pushes one refspec to origin (`+ref:ref` to force, `:ref` to delete); a no-op
    /// for a repository without an `origin` remote.
    pub fn push_refspec(&self, spec: &str) -> Result<(), SourceError> {
        if self.repo.find_remote("origin").is_err() {
            return Ok(());
        }
        self.push_spec(spec).map_err(|message| SourceError::Push {
            branch: spec.to_string(),
            url: self.location.to_string(),
            message,
        })
    }

    fn push_once(&self, refname: &str) -> Result<(), String> {
        self.push_spec(&format!("{refname}:{refname}"))
    }

    fn push_spec(&self, spec: &str) -> Result<(), String> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|e| e.message().to_string())?;
        let rejected = std::cell::RefCell::new(None::<String>);
        let mut cb = callbacks(&self.creds);
        cb.push_update_reference(|_name, status| {
            if let Some(s) = status {
                *rejected.borrow_mut() = Some(s.to_string());
            }
            Ok(())
        });
        let mut opts = PushOptions::new();
        opts.remote_callbacks(cb);
        remote
            .push(&[spec], Some(&mut opts))
            .map_err(|e| e.message().to_string())?;
        drop(opts);
        match rejected.into_inner() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Moves our unpushed audit commit onto the fetched remote tip.
    fn rebase_audit(&self, branch: &str) -> Result<(), SourceError> {
        let err = |source| SourceError::Commit {
            branch: branch.to_string(),
            source,
        };
        let refname = Self::branch_ref(branch);
        let ours = self.repo.find_commit(self.repo.refname_to_id(&refname)?)?;
        let remote_ref = if self.mirrored {
            format!("{REMOTE_REFS}/{branch}")
        } else {
            format!("refs/remotes/origin/{branch}")
        };
        let Ok(theirs_oid) = self.repo.refname_to_id(&remote_ref) else {
            return Ok(());
        };
        if self.repo.graph_descendant_of(ours.id(), theirs_oid)? {
            return Ok(());
        }
        let theirs = self.repo.find_commit(theirs_oid)?;
        let audit_of = |c: &git2::Commit<'_>| -> Option<Oid> {
            c.tree()
                .ok()?
                .get_path(std::path::Path::new("audit"))
                .ok()
                .map(|e| e.id())
        };
        let our_base = ours.parent(0).ok().and_then(|p| audit_of(&p));
        if audit_of(&theirs) != our_base {
            return Err(SourceError::Push {
                branch: branch.to_string(),
                url: self.location.to_string(),
                message: "the remote's audit/ changed under us; our audit commit is kept \
                          locally and retried on the next run"
                    .into(),
            });
        }
        let mut update = TreeUpdateBuilder::new();
        match audit_of(&ours) {
            Some(a) => update.upsert("audit", a, FileMode::Tree),
            None => update.remove("audit"),
        };
        let tree_oid = update
            .create_updated(&self.repo, &theirs.tree()?)
            .map_err(err)?;
        let tree = self.repo.find_tree(tree_oid)?;
        let msg = ours.message().unwrap_or("latchkey: audit");
        let oid = self
            .create_commit(&ours.author(), &ours.committer(), msg, &tree, &[&theirs])
            .map_err(err)?;
        self.repo
            .reference(&refname, oid, true, "latchkey: rebase audit")?;
        Ok(())
    }
}

impl SourceRepo {
    /// Writes `files` (paths relative to the repository root, full new content) on top
    /// of `parent` as one commit by `author`, committed (and signed, see
    /// [`SourceRepo::create_commit`]) as latchkey, so the history shows who asked and
    /// which tool wrote it. Moves no ref.
    pub fn commit_files(
        &self,
        parent: Oid,
        files: &[(String, String)],
        author: &Signature<'_>,
        message: &str,
    ) -> Result<Oid, git2::Error> {
        let parent = self.repo.find_commit(parent)?;
        let tree = self.tree_with(&parent.tree()?, files)?;
        let tree = self.repo.find_tree(tree)?;
        self.create_commit(author, &signature()?, message, &tree, &[&parent])
    }

    /// `base` with each of `files` (path, full content) written over it.
    fn tree_with(
        &self,
        base: &git2::Tree<'_>,
        files: &[(String, String)],
    ) -> Result<Oid, git2::Error> {
        let mut update = TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = self.repo.blob(content.as_bytes())?;
            update.upsert(path.as_str(), blob, FileMode::Blob);
        }
        update.create_updated(&self.repo, base)
    }

    /// Makes `commit` the remote's `branch`, only as a fast-forward of `expected` (the
    /// tip the change was reviewed on): a branch that moved since is left as it is and
    /// reported, never overwritten. Without `expected`, `branch` must be new. A local
    /// repository (no mirror) has its own branch moved instead.
    pub fn publish(
        &self,
        commit: Oid,
        branch: &str,
        expected: Option<Oid>,
    ) -> Result<(), SourceError> {
        let refname = Self::branch_ref(branch);
        if !self.mirrored {
            let log = "latchkey serve";
            let moved = match expected {
                Some(cur) => self
                    .repo
                    .reference_matching(&refname, commit, true, cur, log),
                None => self.repo.reference(&refname, commit, false, log),
            };
            return moved.map(|_| ()).map_err(|source| SourceError::Commit {
                branch: branch.to_string(),
                source,
            });
        }
        // libgit2 pushes refs, not bare commit ids: stage it under a private ref.
        let staged = format!("refs/latchkey/serve/{commit}");
        self.repo
            .reference(&staged, commit, true, "latchkey serve")?;
        let pushed = self.push_spec(&format!("{staged}:{refname}"));
        let _ = self
            .repo
            .find_reference(&staged)
            .and_then(|mut r| r.delete());
        pushed.map_err(|message| SourceError::Push {
            branch: branch.to_string(),
            url: self.location.to_string(),
            message,
        })?;
        self.repo.reference(
            &format!("{REMOTE_REFS}/{branch}"),
            commit,
            true,
            "pushed by latchkey serve",
        )?;
        Ok(())
    }

    /// Writes a commit object (no ref moves), signed with the SSH key in
    /// `LATCHKEY_SIGNING_KEY` when that is set, so a reader can tell latchkey's commits
    /// from human ones (`git log --show-signature` with `gpg.format=ssh`). Fails closed:
    /// with a key configured, a signing failure is an error, never an unsigned commit.
    fn create_commit(
        &self,
        author: &Signature<'_>,
        committer: &Signature<'_>,
        message: &str,
        tree: &git2::Tree<'_>,
        parents: &[&git2::Commit<'_>],
    ) -> Result<Oid, git2::Error> {
        let Some(key) = std::env::var_os("LATCHKEY_SIGNING_KEY").filter(|k| !k.is_empty()) else {
            return self
                .repo
                .commit(None, author, committer, message, tree, parents);
        };
        let buffer = self
            .repo
            .commit_create_buffer(author, committer, message, tree, parents)?;
        let content = std::str::from_utf8(&buffer)
            .map_err(|_| git2::Error::from_str("commit buffer is not UTF-8"))?;
        let signature = ssh_sign(std::path::Path::new(&key), &buffer)?;
        self.repo.commit_signed(content, &signature, Some("gpgsig"))
    }
}

/// Signs `data` as git does for `gpg.format=ssh` (`ssh-keygen -Y sign -n git -f KEY`).
/// An unencrypted private key file is signed with in process, so the container image
/// (which has no ssh-keygen) can sign; any other key file (a public key whose private
/// half is in the ssh-agent, an encrypted key, an algorithm not built in) goes through
/// ssh-keygen. Returns the armored signature.
fn ssh_sign(key: &std::path::Path, data: &[u8]) -> Result<String, git2::Error> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let fail = |what: String| {
        git2::Error::from_str(&format!(
            "cannot sign the commit with LATCHKEY_SIGNING_KEY={}: {what}",
            key.display()
        ))
    };
    if let Ok(private) = ssh_key::PrivateKey::read_openssh_file(key)
        && !private.is_encrypted()
        && let Ok(sig) = private.sign("git", ssh_key::HashAlg::Sha512, data)
    {
        return sig
            .to_pem(ssh_key::LineEnding::LF)
            .map_err(|e| fail(e.to_string()));
    }
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "git", "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run ssh-keygen: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(data)
            .map_err(|e| fail(format!("cannot write to ssh-keygen: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("ssh-keygen failed: {e}")))?;
    let sig = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !sig.contains("BEGIN SSH SIGNATURE") {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(sig)
}

/// How often a contended ref update is tried before giving up.
const ATTEMPTS: usize = 20;

/// The ref moved under us, or another process holds its lock file: worth another try.
fn is_contended(e: &git2::Error) -> bool {
    matches!(
        e.code(),
        git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
    )
}

/// latchkey's committer identity; overridable with the usual git settings.
fn signature() -> Result<Signature<'static>, git2::Error> {
    let name = std::env::var("LATCHKEY_COMMIT_NAME").unwrap_or_else(|_| "latchkey".into());
    let email =
        std::env::var("LATCHKEY_COMMIT_EMAIL").unwrap_or_else(|_| "latchkey@localhost".into());
    Signature::now(&name, &email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_credentials_never_show_their_values() {
        let c = GitCredentials {
            username: Some("bot".into()),
            token: Some("ghp_secret".into()),
            ssh_key: Some("-----BEGIN OPENSSH PRIVATE KEY-----".into()),
            ssh_key_file: None,
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("ghp_secret") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert!(shown.contains("bot"));
    }
}
