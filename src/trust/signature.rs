//! Signed commits with per-path signers.
//!
//! When `trust.requireSignedCommits` is on, every commit between the last applied
//! revision (excluded) and the new one (included) must carry a valid SSH signature
//! (an SSHSIG in the `gpgsig` header, namespace `git`) by a key of a signer allowed
//! for every path the commit changes against its first parent. Anything else refuses
//! the whole range.
//!
//! Merge commits (two or more parents), as made by a git host's merge button, carry no
//! change of their own to check path by path: the merged commits are in the range and
//! are verified one by one. The merge commit itself must be signed by a signer with
//! `merges: true` (the host's key, or an agency admin's), who vouches for the merge.
//!
//! Commits that change only `audit/` (latchkey's own audit commits) are not desired
//! state and are skipped; the ledger is hash-chained, so tampering with it is
//! detectable by `latchkey audit verify` instead.
//!
//! OpenPGP signatures are not verified yet: a PGP-signed commit is refused with a
//! reason that says so.

use std::collections::BTreeMap;
use std::fmt;

use git2::{Oid, Repository};
use globset::{GlobSet, GlobSetBuilder};
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::model::Trust;

/// The SSHSIG namespace git signs commits with.
const NAMESPACE: &str = "git";

/// Why a commit cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The full commit id.
    pub commit: String,
    /// The path the signer may not change, when that is the reason.
    pub path: Option<String>,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "commit {}", &self.commit[..self.commit.len().min(12)])?;
        if let Some(p) = &self.path {
            write!(f, ": {p}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A trust section that cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("signer {signer:?}: cannot parse SSH key {index}: {message}")]
    Key {
        signer: String,
        index: usize,
        message: String,
    },
    #[error("signer {signer:?}: invalid path pattern {pattern:?}: {source}")]
    Pattern {
        signer: String,
        pattern: String,
        source: globset::Error,
    },
    #[error("git: {}", crate::source::git_message(.0))]
    Git(#[from] git2::Error),
}

/// A signer ready to verify: parsed keys and compiled path patterns.
struct Signer {
    name: String,
    keys: Vec<PublicKey>,
    include: GlobSet,
    /// Patterns written `!pattern`: excluded even when an include matches.
    exclude: GlobSet,
    merges: bool,
}

impl Signer {
    fn allows(&self, path: &str) -> bool {
        self.include.is_match(path) && !self.exclude.is_match(path)
    }

    fn holds(&self, key: &ssh_key::public::KeyData) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.key_data() == key)
    }
}

/// The signers of a trust section, compiled.
pub struct Signers {
    signers: Vec<Signer>,
}

impl Signers {
    /// Parses every key and pattern; the first bad one is an error.
    pub fn compile(trust: &Trust) -> Result<Signers, TrustError> {
        let mut signers = Vec::new();
        for s in &trust.signers {
            let keys = s
                .ssh_keys
                .iter()
                .enumerate()
                .map(|(index, k)| {
                    PublicKey::from_openssh(k.trim()).map_err(|e| TrustError::Key {
                        signer: s.name.clone(),
                        index,
                        message: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut include = GlobSetBuilder::new();
            let mut exclude = GlobSetBuilder::new();
            for pattern in &s.paths {
                let (set, p) = match pattern.strip_prefix('!') {
                    Some(p) => (&mut exclude, p),
                    None => (&mut include, pattern.as_str()),
                };
                let glob = globset::GlobBuilder::new(p.trim_start_matches('/'))
                    .literal_separator(true)
                    .build()
                    .map_err(|source| TrustError::Pattern {
                        signer: s.name.clone(),
                        pattern: pattern.clone(),
                        source,
                    })?;
                set.add(glob);
            }
            let build = |b: GlobSetBuilder| {
                b.build().map_err(|source| TrustError::Pattern {
                    signer: s.name.clone(),
                    pattern: s.paths.join(", "),
                    source,
                })
            };
            signers.push(Signer {
                name: s.name.clone(),
                keys,
                include: build(include)?,
                exclude: build(exclude)?,
                merges: s.merges,
            });
        }
        Ok(Signers { signers })
    }

    /// Verifies one commit; returns the signer's name.
    pub fn verify_commit(
        &self,
        repo: &Repository,
        oid: Oid,
        audit_root: &str,
    ) -> Result<Option<String>, Refusal> {
        let refuse = |path: Option<String>, reason: String| Refusal {
            commit: oid.to_string(),
            path,
            reason,
        };
        let git = |e: git2::Error| refuse(None, format!("cannot read the commit: {e}"));
        let commit = repo.find_commit(oid).map_err(git)?;
        let paths = changed_paths(repo, &commit).map_err(git)?;
        let is_merge = commit.parent_count() > 1;
        if !is_merge && !paths.is_empty() && paths.iter().all(|p| p.starts_with(audit_root)) {
            return Ok(None);
        }
        let (sig, data) = match repo.extract_signature(&oid, None) {
            Ok(s) => s,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Err(refuse(None, "the commit is not signed".into()));
            }
            Err(e) => return Err(git(e)),
        };
        let sig_text = String::from_utf8_lossy(&sig);
        if sig_text.trim_start().starts_with("-----BEGIN PGP") {
            return Err(refuse(
                None,
                "OpenPGP signatures are not supported yet; sign with an SSH key (gpg.format=ssh)"
                    .into(),
            ));
        }
        let sshsig = SshSig::from_pem(sig_text.trim().as_bytes())
            .map_err(|e| refuse(None, format!("unreadable SSH signature: {e}")))?;
        let key = sshsig.public_key();
        let holders: Vec<(&Signer, &PublicKey)> = self
            .signers
            .iter()
            .filter_map(|s| s.holds(key).map(|k| (s, k)))
            .collect();
        let Some((_, public)) = holders.first() else {
            return Err(refuse(
                None,
                format!(
                    "signed by a key no signer holds ({})",
                    key.fingerprint(HashAlg::Sha256)
                ),
            ));
        };
        let names = holders
            .iter()
            .map(|(s, _)| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if sshsig.namespace() != NAMESPACE {
            return Err(refuse(
                None,
                format!(
                    "signature by {names} is for namespace {:?}, not \"git\"",
                    sshsig.namespace()
                ),
            ));
        }
        if public.verify(NAMESPACE, &data, &sshsig).is_err() {
            return Err(refuse(
                None,
                format!("the signature by {names} does not match the commit's content"),
            ));
        }
        if is_merge {
            return match holders.iter().find(|(s, _)| s.merges) {
                Some((s, _)) => Ok(Some(s.name.clone())),
                None => Err(refuse(
                    None,
                    format!("merge commit signed by {names}, who may not sign merges"),
                )),
            };
        }
        for path in &paths {
            if !holders.iter().any(|(s, _)| s.allows(path)) {
                return Err(refuse(
                    Some(path.clone()),
                    format!("{names} may not change this path"),
                ));
            }
        }
        Ok(Some(holders[0].0.name.clone()))
    }

    /// Verifies every commit in (`last`, `new`], oldest first. Without a last applied
    /// revision only `new` itself is verified (history before trust was set up is the
    /// agency's). Returns each commit's signer, or every refusal.
    pub fn verify_range(
        &self,
        repo: &Repository,
        last: Option<Oid>,
        new: Oid,
        audit_root: &str,
    ) -> Result<BTreeMap<Oid, String>, Vec<Refusal>> {
        let commits = match commits_between(repo, last, new) {
            Ok(c) => c,
            Err(e) => {
                return Err(vec![Refusal {
                    commit: new.to_string(),
                    path: None,
                    reason: format!("cannot list the commits to verify: {e}"),
                }]);
            }
        };
        let mut signers = BTreeMap::new();
        let mut refusals = Vec::new();
        for oid in commits {
            match self.verify_commit(repo, oid, audit_root) {
                Ok(Some(name)) => {
                    signers.insert(oid, name);
                }
                Ok(None) => {}
                Err(r) => refusals.push(r),
            }
        }
        if refusals.is_empty() {
            Ok(signers)
        } else {
            Err(refusals)
        }
    }
}

fn commits_between(
    repo: &Repository,
    last: Option<Oid>,
    new: Oid,
) -> Result<Vec<Oid>, git2::Error> {
    let Some(last) = last else {
        return Ok(vec![new]);
    };
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    walk.push(new)?;
    walk.hide(last)?;
    walk.collect()
}

/// Paths a commit changes against its first parent (every path of a root commit).
fn changed_paths(repo: &Repository, commit: &git2::Commit<'_>) -> Result<Vec<String>, git2::Error> {
    let tree = commit.tree()?;
    let parent_tree = match commit.parents().next() {
        Some(p) => Some(p.tree()?),
        None => None,
    };
    crate::source::diff_paths(repo, parent_tree.as_ref(), &tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Signer as SignerSpec;

    fn signers(paths: &[&str]) -> Signers {
        let trust = Trust {
            require_signed_commits: true,
            signers: vec![SignerSpec {
                name: "dana".into(),
                ssh_keys: Vec::new(),
                pgp_keys: Vec::new(),
                paths: paths.iter().map(|p| p.to_string()).collect(),
                merges: false,
            }],
        };
        Signers::compile(&trust).expect("compile")
    }

    #[test]
    fn a_double_star_crosses_folders_and_a_single_star_does_not() {
        let s = signers(&["clients/acme/**", "team/*.yaml"]);
        let allows = |p: &str| s.signers[0].allows(p);
        assert!(allows("clients/acme/members.yaml"));
        assert!(allows("clients/acme/sub/more.yaml"));
        assert!(!allows("clients/acme-evil/members.yaml"));
        assert!(!allows("clients/beta/members.yaml"));
        assert!(allows("team/staff.yaml"));
        assert!(!allows("team/sub/staff.yaml"));
    }

    #[test]
    fn an_exclusion_wins_over_an_inclusion() {
        let s = signers(&["/clients/acme/**", "!clients/acme/client.yaml"]);
        assert!(s.signers[0].allows("clients/acme/members.yaml"));
        assert!(!s.signers[0].allows("clients/acme/client.yaml"));
    }

    #[test]
    fn an_unparseable_key_names_the_signer() {
        let trust = Trust {
            require_signed_commits: true,
            signers: vec![SignerSpec {
                name: "dana".into(),
                ssh_keys: vec!["ssh-ed25519 nope".into()],
                pgp_keys: Vec::new(),
                paths: vec!["**".into()],
                merges: false,
            }],
        };
        let err = Signers::compile(&trust).err().expect("an error");
        assert!(
            err.to_string()
                .starts_with("signer \"dana\": cannot parse SSH key 0: "),
            "{err}"
        );
    }
}
