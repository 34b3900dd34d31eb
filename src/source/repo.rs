//! Opening a repository and reading revisions.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, ObjectType, Oid, Repository};
use jiff::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::SourceError;

/// Where the access repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local repository (bare or not).
    Path(PathBuf),
    /// A remote, mirrored into the cache directory.
    Url(String),
}

impl Location {
    /// Anything with a scheme (`file://`, `git://`, `https://`, `ssh://`) or scp-style
    /// `user@host:path` is a URL; everything else a local path.
    pub fn parse(s: &str) -> Location {
        let scp_like = !s.contains("://") && s.contains('@') && s.contains(':');
        if s.contains("://") || scp_like {
            Location::Url(s.to_string())
        } else {
            Location::Path(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Url(u) => f.write_str(&redact_url(u)),
        }
    }
}

/// Removes a password or token embedded in a URL, so it never reaches a log or error.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && !userinfo.contains('/')
    {
        let user = userinfo.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

/// A resolved commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub oid: Oid,
    /// The branch it was resolved from, if any (where the audit is committed).
    pub branch: Option<String>,
    /// Committer time: "merged at" for `for:` grants and guardrails.
    pub time: Timestamp,
    pub author: String,
    pub summary: String,
}

impl Revision {
    /// `main@sha1:<hex>` as Flux writes revisions, or `sha1:<hex>` without a branch.
    pub fn display(&self) -> String {
        match &self.branch {
            Some(b) => format!("{b}@sha1:{}", self.oid),
            None => format!("sha1:{}", self.oid),
        }
    }
}

/// One YAML file of a revision.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the configured sub-path, with `/` separators.
    pub path: String,
    /// The blob id: identical content has the same id, so parses can be reused.
    pub blob: Oid,
    pub text: String,
}

/// An opened access repository.
pub struct SourceRepo {
    pub(super) repo: Repository,
    pub(super) location: Location,
    /// True when `repo` is a cache mirror of a remote.
    pub(super) mirrored: bool,
    /// For fetch and push.
    pub(super) creds: super::write::GitCredentials,
    /// The YAML files under each tree already listed, by tree id: a tree id names its
    /// whole content, so an unchanged directory is never walked again and listing a
    /// new revision reads only the trees that changed (a tree diff).
    pub(super) listings: Mutex<HashMap<Oid, Listing>>,
    /// The last large blobs read as text, by blob id: one run reads the ledger's month
    /// file at its audit base for several things (the anchor, pending failures, access,
    /// the next audit commit), and inflating it once is enough.
    pub(super) texts: Mutex<Vec<(Oid, Arc<str>)>>,
}

/// Blobs at least this large are kept in [`SourceRepo`]'s text cache, up to
/// [`TEXT_CACHE_ENTRIES`] of them (documents are small and read once; month files are not).
const TEXT_CACHE_MIN: usize = 64 * 1024;
const TEXT_CACHE_ENTRIES: usize = 4;

/// The files under a tree that are read or that may hold documents: (path relative to
/// it, what it is).
type Listing = Arc<Vec<(String, Found)>>;

/// A file of the documents tree as the listing classifies it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Found {
    /// `.yaml` or `.yml` in any letter case: read.
    Yaml(Oid),
    /// May hold documents but is not read.
    NotRead(NotRead),
    /// A name that is not UTF-8 (a file, or a folder not walked): its raw bytes, relative
    /// like the path, so `.latchkeyignore` can still match it.
    BadName(Vec<u8>),
}

/// Why a file that may hold documents is not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotRead {
    /// `.json`: documents must be in `.yaml`/`.yml` files.
    Json,
    /// A backup or editor copy of a YAML file (`members.yaml.bak`, `roles.yml~`).
    Backup,
}

/// What a revision's documents tree holds, after the tool-file rule and `.latchkeyignore`.
#[derive(Clone, Debug, Default)]
pub struct Documents {
    /// The files read, sorted by path, with their blob ids.
    pub blobs: Vec<(String, Oid)>,
    /// Files that may hold documents but are not read, sorted by path.
    pub not_read: Vec<(String, NotRead)>,
    /// Names that are not UTF-8 (shown with U+FFFD), sorted.
    pub bad_names: Vec<String>,
}

/// The ignore file, at the repository root, in gitignore syntax.
pub const IGNORE_FILE: &str = ".latchkeyignore";

/// Listings kept before the memo is dropped and rebuilt (each load adds only the trees
/// that changed, so this is reached only by long-running processes).
const MAX_LISTINGS: usize = 100_000;

/// The remote-tracking namespace a mirrored remote is fetched into.
pub(super) const REMOTE_REFS: &str = "refs/remotes/origin";

impl SourceRepo {
    /// Opens a local repository, or mirrors a remote into `cache_dir` and fetches it,
    /// with git credentials from the environment.
    pub fn open(location: &Location, cache_dir: &Path) -> Result<SourceRepo, SourceError> {
        Self::open_with(
            location,
            cache_dir,
            super::write::GitCredentials::from_env(),
        )
    }

    /// Like [`SourceRepo::open`], with explicit git credentials (the operator's `secretRef`).
    pub fn open_with(
        location: &Location,
        cache_dir: &Path,
        creds: super::write::GitCredentials,
    ) -> Result<SourceRepo, SourceError> {
        match location {
            Location::Path(p) => {
                let repo = Repository::open(p).map_err(|source| SourceError::Open {
                    location: location.to_string(),
                    source,
                })?;
                Ok(SourceRepo {
                    listings: Mutex::default(),
                    texts: Mutex::default(),
                    repo,
                    location: location.clone(),
                    mirrored: false,
                    creds,
                })
            }
            Location::Url(url) => {
                let dir = cache_dir.join(cache_name(url));
                std::fs::create_dir_all(&dir).map_err(|source| SourceError::Cache {
                    path: dir.clone(),
                    source,
                })?;
                let repo = match Repository::open_bare(&dir) {
                    Ok(r) => r,
                    Err(_) => Repository::init_bare(&dir).map_err(|source| SourceError::Open {
                        location: location.to_string(),
                        source,
                    })?,
                };
                if repo.find_remote("origin").is_err() {
                    repo.remote_with_fetch("origin", url, "+refs/heads/*:refs/remotes/origin/*")
                        .map_err(|source| SourceError::Open {
                            location: location.to_string(),
                            source,
                        })?;
                }
                let me = SourceRepo {
                    listings: Mutex::default(),
                    texts: Mutex::default(),
                    repo,
                    location: location.clone(),
                    mirrored: true,
                    creds,
                };
                me.fetch()?;
                Ok(me)
            }
        }
    }

    /// Fetches the remote of a mirrored repository; a no-op for local paths.
    pub fn fetch(&self) -> Result<(), SourceError> {
        if !self.mirrored {
            return Ok(());
        }
        let url = self.location.to_string();
        let mut remote = self.repo.find_remote("origin")?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(super::write::callbacks(&self.creds));
        // Branches, and the write-ahead journals pushed by a latchkey that may have run
        // elsewhere (a replaced pod): the next run here finishes them.
        let specs = [
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/latchkey/journal/*:refs/latchkey/journal/*",
        ];
        remote
            .fetch(&specs, Some(&mut opts), None)
            .map_err(|source| SourceError::Fetch { url, source })
    }

    /// Replaces the credentials fetch and push use (a rotated Secret).
    pub fn set_credentials(&mut self, creds: super::write::GitCredentials) {
        self.creds = creds;
    }

    /// The location as given (secrets redacted).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The underlying git2 repository, for read-only helpers elsewhere (trust, audit).
    pub fn git(&self) -> &Repository {
        &self.repo
    }

    /// Resolves a branch, tag, commit or `HEAD` to a commit. For a mirrored remote,
    /// branch names resolve to the fetched remote branch.
    pub fn resolve(&self, rev: &str) -> Result<Revision, SourceError> {
        let resolve_err = |source| SourceError::Resolve {
            rev: rev.to_string(),
            location: self.location.to_string(),
            source,
        };
        let (object, branch) = if self.mirrored {
            let rev = if rev == "HEAD" {
                self.remote_default_branch()?
            } else {
                rev.to_string()
            };
            match self.repo.revparse_single(&format!("{REMOTE_REFS}/{rev}")) {
                Ok(o) => (o, Some(rev.clone())),
                Err(_) => (self.repo.revparse_single(&rev).map_err(resolve_err)?, None),
            }
        } else {
            let object = self.repo.revparse_single(rev).map_err(resolve_err)?;
            (object, self.local_branch_of(rev))
        };
        let commit = object.peel_to_commit().map_err(resolve_err)?;
        Ok(revision_of(&commit, branch))
    }

    /// The branch name a local revision string names, if it names one.
    fn local_branch_of(&self, rev: &str) -> Option<String> {
        if rev == "HEAD" {
            let head = self.repo.find_reference("HEAD").ok()?;
            let target = head.symbolic_target().ok()??;
            return target.strip_prefix("refs/heads/").map(str::to_string);
        }
        let name = rev.strip_prefix("refs/heads/").unwrap_or(rev);
        self.repo
            .find_branch(name, git2::BranchType::Local)
            .ok()
            .map(|_| name.to_string())
    }

    /// The branch the remote's HEAD points at, or `main`.
    fn remote_default_branch(&self) -> Result<String, SourceError> {
        for candidate in ["main", "master"] {
            if self
                .repo
                .find_reference(&format!("{REMOTE_REFS}/{candidate}"))
                .is_ok()
            {
                return Ok(candidate.to_string());
            }
        }
        Ok("main".to_string())
    }

    /// Looks up a commit by id.
    pub fn revision(&self, oid: Oid, branch: Option<String>) -> Result<Revision, SourceError> {
        let commit = self.repo.find_commit(oid)?;
        Ok(revision_of(&commit, branch))
    }

    /// Every document file under `subpath` at `rev` (see [`SourceRepo::documents`]).
    pub fn yaml_files(
        &self,
        rev: &Revision,
        subpath: &str,
    ) -> Result<Vec<SourceFile>, SourceError> {
        self.yaml_blobs(rev, subpath)?
            .into_iter()
            .map(|(path, blob)| {
                let text = self.blob_text(blob, &path, rev)?;
                Ok(SourceFile { path, blob, text })
            })
            .collect()
    }

    /// The paths and blob ids of the files [`SourceRepo::documents`] reads.
    pub fn yaml_blobs(
        &self,
        rev: &Revision,
        subpath: &str,
    ) -> Result<Vec<(String, Oid)>, SourceError> {
        Ok(self.documents(rev, subpath)?.blobs)
    }

    /// The files of `subpath` at `rev` read as documents, sorted by path, without
    /// reading their content (callers that cache by blob id read only the new blobs),
    /// and those that may hold documents but are not read, so they can be reported.
    ///
    /// Read: every `.yaml`/`.yml` file, the extension in any letter case. Never read, by
    /// rule: `audit/` at the top (latchkey's own output) and any dot-file or dot-folder
    /// (`.github/`, `.gitlab-ci.yml`, `.pre-commit-config.yaml`: other tools' files), and
    /// whatever `.latchkeyignore` at the repository root matches. Reported: `.json`
    /// files, backup copies of YAML files and names that are not UTF-8.
    pub fn documents(&self, rev: &Revision, subpath: &str) -> Result<Documents, SourceError> {
        let commit = self.repo.find_commit(rev.oid)?;
        let root = commit.tree()?;
        let mut tree = root.clone();
        let subpath = subpath.trim_matches('/');
        if !subpath.is_empty() {
            let entry = tree
                .get_path(Path::new(subpath))
                .map_err(|source| SourceError::Read {
                    path: subpath.to_string(),
                    revision: rev.display(),
                    source,
                })?;
            tree = self.repo.find_tree(entry.id())?;
        }
        let ignore = self.ignore_rules(&root, rev)?;
        let found = {
            let mut listings = self.listings.lock().unwrap_or_else(|e| e.into_inner());
            if listings.len() > MAX_LISTINGS {
                listings.clear();
            }
            // The audit trail is latchkey's own output, never desired state.
            self.entries(&tree, |dir| dir == "audit", &mut listings)?
        };
        let prefix = if subpath.is_empty() {
            String::new()
        } else {
            format!("{subpath}/")
        };
        let ignored = |rel: &[u8]| {
            let Some(rules) = &ignore else { return false };
            let mut full = prefix.as_bytes().to_vec();
            full.extend_from_slice(rel);
            rules
                .matched_path_or_any_parents(bytes_path(&full), false)
                .is_ignore()
        };
        let mut docs = Documents::default();
        for (path, found) in found {
            match found {
                Found::BadName(raw) if !ignored(&raw) => docs.bad_names.push(path),
                Found::BadName(_) => {}
                _ if ignored(path.as_bytes()) => {}
                Found::Yaml(blob) => docs.blobs.push((path, blob)),
                Found::NotRead(why) => docs.not_read.push((path, why)),
            }
        }
        docs.blobs.sort();
        docs.not_read.sort();
        docs.bad_names.sort();
        Ok(docs)
    }

    /// The rules of `.latchkeyignore` at the root of `root`, if there is one.
    fn ignore_rules(
        &self,
        root: &git2::Tree<'_>,
        rev: &Revision,
    ) -> Result<Option<ignore::gitignore::Gitignore>, SourceError> {
        let Some(entry) = root.get_name(IGNORE_FILE) else {
            return Ok(None);
        };
        let text = self.blob_text(entry.id(), IGNORE_FILE, rev)?;
        let mut builder = ignore::gitignore::GitignoreBuilder::new("");
        for (i, line) in text.lines().enumerate() {
            builder
                .add_line(None, line)
                .map_err(|e| SourceError::Ignore {
                    line: i + 1,
                    message: e.to_string(),
                })?;
        }
        builder.build().map(Some).map_err(|e| SourceError::Ignore {
            line: 1,
            message: e.to_string(),
        })
    }

    /// The files under tree `id`, relative to it, from `memo` when listed before.
    fn listing(&self, id: Oid, memo: &mut HashMap<Oid, Listing>) -> Result<Listing, git2::Error> {
        if let Some(l) = memo.get(&id) {
            return Ok(l.clone());
        }
        let out = Arc::new(self.entries(&self.repo.find_tree(id)?, |_| false, memo)?);
        memo.insert(id, out.clone());
        Ok(out)
    }

    /// The files in `tree` and, through `listing`, in its subtrees except those `skip`
    /// names and dot-folders.
    fn entries(
        &self,
        tree: &git2::Tree<'_>,
        skip: impl Fn(&str) -> bool,
        memo: &mut HashMap<Oid, Listing>,
    ) -> Result<Vec<(String, Found)>, git2::Error> {
        let mut out = Vec::new();
        for entry in tree.iter() {
            let kind = entry.kind();
            if !matches!(kind, Some(ObjectType::Tree | ObjectType::Blob)) {
                continue;
            }
            let raw = entry.name_bytes();
            // Other tools' files (CI, pre-commit, editors, git itself) are dot-files.
            if raw.starts_with(b".") {
                continue;
            }
            let Ok(name) = entry.name() else {
                let shown = String::from_utf8_lossy(raw).into_owned();
                out.push((shown, Found::BadName(raw.to_vec())));
                continue;
            };
            match kind {
                Some(ObjectType::Tree) if !skip(name) => {
                    let sub = self.listing(entry.id(), memo)?;
                    out.extend(sub.iter().map(|(p, f)| {
                        let f = match f {
                            Found::BadName(b) => {
                                let mut full = format!("{name}/").into_bytes();
                                full.extend_from_slice(b);
                                Found::BadName(full)
                            }
                            other => other.clone(),
                        };
                        (format!("{name}/{p}"), f)
                    }));
                }
                Some(ObjectType::Blob) => {
                    if let Some(found) = classify(name, entry.id()) {
                        out.push((name.to_string(), found));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Reads a blob as UTF-8.
    pub fn blob_text(&self, blob: Oid, path: &str, rev: &Revision) -> Result<String, SourceError> {
        if let Ok(texts) = self.texts.lock()
            && let Some((_, text)) = texts.iter().find(|(id, _)| *id == blob)
        {
            return Ok(text.to_string());
        }
        let text = self.read_blob_text(blob, path, rev)?;
        if text.len() >= TEXT_CACHE_MIN
            && let Ok(mut texts) = self.texts.lock()
        {
            if texts.len() >= TEXT_CACHE_ENTRIES {
                texts.remove(0);
            }
            texts.push((blob, Arc::from(text.as_str())));
        }
        Ok(text)
    }

    fn read_blob_text(&self, blob: Oid, path: &str, rev: &Revision) -> Result<String, SourceError> {
        read_blob_text(&self.repo, blob, path, rev)
    }

    /// Where a [`BlobReader`] opens this repository, for reading its blobs on other
    /// threads: a `Repository` handle is not shared between threads.
    pub fn reader_dir(&self) -> &Path {
        self.repo.path()
    }

    /// Reads one file at a revision, if it exists.
    pub fn file_at(&self, rev: &Revision, path: &str) -> Result<Option<String>, SourceError> {
        let tree = self.repo.find_commit(rev.oid)?.tree()?;
        match tree.get_path(Path::new(path)) {
            Ok(entry) => self.blob_text(entry.id(), path, rev).map(Some),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(source) => Err(SourceError::Read {
                path: path.to_string(),
                revision: rev.display(),
                source,
            }),
        }
    }

    /// True when `new` is `old` or descends from it.
    pub fn descends_from(&self, new: Oid, old: Oid) -> Result<bool, SourceError> {
        Ok(new == old || self.repo.graph_descendant_of(new, old)?)
    }

    /// The commit whose content `rev` holds: `rev` itself, or, when `rev` is an audit
    /// commit (it changes only paths under `root`, as latchkey's own do), the first
    /// commit down its first parents that changed something else. Ledger records name
    /// it, and its author, as what caused a change, never latchkey's own commit.
    pub fn content_revision(&self, rev: &Revision, root: &str) -> Result<Revision, SourceError> {
        self.content_revision_after(rev, root, None)
    }

    /// [`SourceRepo::content_revision`], stopping at `known`: a commit (under the same
    /// `root`) whose content revision is already known. A controller passes the last
    /// one it asked about, so the walk down its own audit commits is one step per
    /// commit since, not one per audit commit on the branch.
    pub fn content_revision_after(
        &self,
        rev: &Revision,
        root: &str,
        known: Option<(Oid, &Revision)>,
    ) -> Result<Revision, SourceError> {
        let mut commit = self.repo.find_commit(rev.oid)?;
        // Bounded: a branch of nothing but audit commits ends at its first commit.
        for _ in 0..10_000 {
            if let Some((at, content)) = known
                && commit.id() == at
            {
                let mut content = content.clone();
                content.branch = rev.branch.clone();
                return Ok(content);
            }
            let Ok(parent) = commit.parent(0) else { break };
            let paths = diff_paths(&self.repo, Some(&parent.tree()?), &commit.tree()?)?;
            if paths.is_empty() || !paths.iter().all(|p| p.starts_with(root)) {
                break;
            }
            commit = parent;
        }
        Ok(revision_of(&commit, rev.branch.clone()))
    }

    /// Paths changed between two commits (both sides of renames).
    pub fn changed_paths(&self, old: Oid, new: Oid) -> Result<Vec<String>, SourceError> {
        let old_tree = self.repo.find_commit(old)?.tree()?;
        let new_tree = self.repo.find_commit(new)?.tree()?;
        Ok(diff_paths(&self.repo, Some(&old_tree), &new_tree)?)
    }
}

/// Paths that differ between two trees (both sides of renames), sorted; `old: None`
/// lists every path of `new`.
pub fn diff_paths(
    repo: &Repository,
    old: Option<&git2::Tree<'_>>,
    new: &git2::Tree<'_>,
) -> Result<Vec<String>, git2::Error> {
    let diff = repo.diff_tree_to_tree(old, Some(new), None)?;
    let mut paths = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path().and_then(|p| p.to_str()) {
                paths.push(p.to_string());
            }
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// Reads the blobs of a repository on a thread of its own (see [`SourceRepo::reader_dir`]).
pub struct BlobReader {
    repo: Repository,
}

impl BlobReader {
    /// Opens the repository at `dir` (a [`SourceRepo::reader_dir`]).
    pub fn open(dir: &Path) -> Result<BlobReader, SourceError> {
        Repository::open(dir)
            .map(|repo| BlobReader { repo })
            .map_err(|source| SourceError::Open {
                location: dir.display().to_string(),
                source,
            })
    }

    /// Reads a blob as UTF-8, like [`SourceRepo::blob_text`].
    pub fn blob_text(&self, blob: Oid, path: &str, rev: &Revision) -> Result<String, SourceError> {
        read_blob_text(&self.repo, blob, path, rev)
    }
}

/// Reads blob `blob` (the file `path` of `rev`) as UTF-8; bytes that are not UTF-8 are
/// an error naming the first one and its line and column.
fn read_blob_text(
    repo: &Repository,
    blob: Oid,
    path: &str,
    rev: &Revision,
) -> Result<String, SourceError> {
    let b = repo.find_blob(blob).map_err(|source| SourceError::Read {
        path: path.to_string(),
        revision: rev.display(),
        source,
    })?;
    String::from_utf8(b.content().to_vec()).map_err(|e| {
        let bytes = e.as_bytes();
        let valid = e.utf8_error().valid_up_to();
        let (line, column) = position_of(&bytes[..valid]);
        SourceError::NotText {
            path: path.to_string(),
            revision: rev.display(),
            byte: bytes[valid],
            line,
            column,
        }
    })
}

/// The 1-based line and column just after `valid` (UTF-8 text), the column counted in
/// characters as the YAML parser counts them.
fn position_of(valid: &[u8]) -> (usize, usize) {
    let text = std::str::from_utf8(valid).unwrap_or_default();
    let line = text.matches('\n').count() + 1;
    let last = text.rsplit('\n').next().unwrap_or("");
    (line, last.chars().count() + 1)
}

/// A stable directory name for a remote's mirror.
fn cache_name(url: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(url.as_bytes());
    let tail: String = redact_url(url)
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    format!("{tail}-{}", &hex::encode(digest)[..12])
}

pub(super) fn revision_of(commit: &git2::Commit<'_>, branch: Option<String>) -> Revision {
    let when = commit.committer().when();
    Revision {
        oid: commit.id(),
        branch,
        time: Timestamp::from_second(when.seconds()).unwrap_or(Timestamp::UNIX_EPOCH),
        author: commit.author().email().unwrap_or("unknown").to_string(),
        summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
    }
}

/// What a file named `name` is to the listing: read, reported, or nothing (`None`).
fn classify(name: &str, blob: Oid) -> Option<Found> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        Some(Found::Yaml(blob))
    } else if lower.ends_with(".json") {
        Some(Found::NotRead(NotRead::Json))
    } else if lower.contains(".yaml") || lower.contains(".yml") {
        // `members.yaml.bak`, `roles.yml~`, `team.yaml.orig`: a copy, possibly the one
        // that was meant to be read.
        Some(Found::NotRead(NotRead::Backup))
    } else {
        None
    }
}

/// A path from raw bytes: git names need not be UTF-8, and neither do unix paths.
#[cfg(unix)]
pub(super) fn bytes_path(bytes: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
pub(super) fn bytes_path(bytes: &[u8]) -> &Path {
    Path::new(std::str::from_utf8(bytes).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert_eq!(
            Location::parse("./access"),
            Location::Path("./access".into())
        );
        assert!(matches!(
            Location::parse("git://127.0.0.1/a.git"),
            Location::Url(_)
        ));
        assert!(matches!(
            Location::parse("git@github.com:org/access.git"),
            Location::Url(_)
        ));
    }

    #[test]
    fn the_first_byte_that_is_not_utf8_is_located_in_characters() {
        assert_eq!(position_of(b""), (1, 1));
        assert_eq!(position_of(b"a: 1\n# caf"), (2, 6));
        assert_eq!(position_of("x: é".as_bytes()), (1, 5));
    }

    #[test]
    fn files_are_read_reported_or_left_by_their_names() {
        let b = Oid::ZERO_SHA1;
        for read in ["m.yaml", "M.YAML", "roles.Yml", "a.b.yaml"] {
            assert_eq!(classify(read, b), Some(Found::Yaml(b)), "{read}");
        }
        assert_eq!(classify("x.JSON", b), Some(Found::NotRead(NotRead::Json)));
        for backup in ["members.yaml.bak", "roles.yml~", "team.YAML.orig"] {
            assert_eq!(
                classify(backup, b),
                Some(Found::NotRead(NotRead::Backup)),
                "{backup}"
            );
        }
        for other in ["README.md", "schema.sql", "yaml"] {
            assert_eq!(classify(other, b), None, "{other}");
        }
    }

    #[test]
    fn tokens_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://bot:ghp_secret@git.example/a.git"),
            "https://bot:***@git.example/a.git"
        );
        assert_eq!(redact_url("file:///tmp/a"), "file:///tmp/a");
    }
}
