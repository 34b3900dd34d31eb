//! Revisions that are not commits yet: a work tree's files or its index, and a plain
//! directory. Each is written as a commit into memory (a mempack object database in front
//! of the repository's own), so the one loader that reads commits reads it too, and
//! nothing is written to the repository: no object, no ref, no index.

use std::path::Path;
use std::sync::Mutex;

use git2::{IndexEntry, IndexTime, Odb, Oid, Repository, Signature, Status, StatusOptions, Time};
use jiff::Timestamp;

use super::repo::{Location, Revision, SourceRepo, bytes_path, revision_of};
use super::{GitCredentials, SourceError};

/// Higher than the loose and packed backends (1 and 2), so every write lands in memory.
const IN_MEMORY: i32 = 1_000;

/// File modes as git stores them.
const FILE: u32 = 0o100_644;
const EXECUTABLE: u32 = 0o100_755;
const SYMLINK: u32 = 0o120_000;

impl SourceRepo {
    /// A plain directory that is not a repository, as one commit (at `now`) of a
    /// repository held in memory. Dot-folders are left out: other tools' state, never
    /// read as documents.
    pub fn from_directory(
        dir: &Path,
        now: Timestamp,
    ) -> Result<(SourceRepo, Revision), SourceError> {
        let snapshot = |source| SourceError::Snapshot {
            what: format!("the directory {}", dir.display()),
            source,
        };
        let odb = Odb::new().map_err(snapshot)?;
        odb.add_new_mempack_backend(IN_MEMORY).map_err(snapshot)?;
        let repo = Repository::from_odb(odb).map_err(snapshot)?;
        let rev = {
            let tree = repo.find_tree(write_dir(&repo, dir)?).map_err(snapshot)?;
            let sig = signature("latchkey", now).map_err(snapshot)?;
            let oid = repo
                .commit(None, &sig, &sig, "the directory", &tree, &[])
                .map_err(snapshot)?;
            revision_of(&repo.find_commit(oid).map_err(snapshot)?, None)
        };
        let source = SourceRepo {
            listings: Mutex::default(),
            texts: Mutex::default(),
            repo,
            location: Location::Path(dir.to_path_buf()),
            mirrored: false,
            creds: GitCredentials::default(),
        };
        Ok((source, rev))
    }

    /// True when this is a repository with a working tree (not bare, not a mirror).
    pub fn has_work_tree(&self) -> bool {
        !self.mirrored && self.repo.workdir().is_some()
    }

    /// The working tree as `git add --all` would stage it (tracked files as they are on
    /// disk, deletions, untracked files that are not ignored), as a commit on HEAD made
    /// at `now`, in memory.
    pub fn snapshot_work_tree(&self, now: Timestamp) -> Result<Revision, SourceError> {
        let snapshot = |source| SourceError::Snapshot {
            what: "the working tree".into(),
            source,
        };
        let workdir = self
            .repo
            .workdir()
            .ok_or_else(|| SourceError::NoWorkTree {
                location: self.location.to_string(),
            })?
            .to_path_buf();
        self.write_in_memory().map_err(snapshot)?;
        // A copy of the index: the repository's own is left as it is.
        let mut index = git2::Index::new().map_err(snapshot)?;
        let mut current = self.repo.index().map_err(snapshot)?;
        current.read(false).map_err(snapshot)?;
        for entry in current.iter().filter(|e| stage(e) == 0) {
            index.add(&entry).map_err(snapshot)?;
        }
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false)
            .exclude_submodules(true);
        let statuses = self.repo.statuses(Some(&mut opts)).map_err(snapshot)?;
        for s in statuses.iter() {
            let path = s.path_bytes().to_vec();
            let st = s.status();
            if st.contains(Status::WT_DELETED) {
                index.remove_path(bytes_path(&path)).map_err(snapshot)?;
            } else if st.intersects(
                Status::WT_NEW | Status::WT_MODIFIED | Status::WT_TYPECHANGE | Status::CONFLICTED,
            ) {
                let on_disk = workdir.join(bytes_path(&path));
                if let Some((mode, content)) = read_file(&on_disk)? {
                    let id = self.repo.blob(&content).map_err(snapshot)?;
                    index
                        .add(&entry(path, id, mode, content.len()))
                        .map_err(snapshot)?;
                }
            }
        }
        let tree = index.write_tree_to(&self.repo).map_err(snapshot)?;
        self.commit_on_head(tree, now, "the working tree")
            .map_err(snapshot)
    }

    /// The index (what `git commit` would commit), as a commit on HEAD made at `now`, in
    /// memory: for a pre-commit hook.
    pub fn snapshot_index(&self, now: Timestamp) -> Result<Revision, SourceError> {
        let snapshot = |source| SourceError::Snapshot {
            what: "the index".into(),
            source,
        };
        if !self.has_work_tree() {
            return Err(SourceError::NoWorkTree {
                location: self.location.to_string(),
            });
        }
        self.write_in_memory().map_err(snapshot)?;
        let mut index = self.repo.index().map_err(snapshot)?;
        index.read(false).map_err(snapshot)?;
        if index.has_conflicts() {
            return Err(SourceError::Conflicts {
                location: self.location.to_string(),
            });
        }
        let tree = index.write_tree_to(&self.repo).map_err(snapshot)?;
        self.commit_on_head(tree, now, "the index")
            .map_err(snapshot)
    }

    /// From here on, objects this process writes stay in memory.
    fn write_in_memory(&self) -> Result<(), git2::Error> {
        self.repo.odb()?.add_new_mempack_backend(IN_MEMORY)?;
        Ok(())
    }

    /// A commit of `tree` whose parent is HEAD (none on an unborn branch), by the user git
    /// would commit as, at `now`: a grant it adds counts `for:` from now.
    fn commit_on_head(
        &self,
        tree: Oid,
        now: Timestamp,
        what: &str,
    ) -> Result<Revision, git2::Error> {
        let tree = self.repo.find_tree(tree)?;
        let head = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let who = self.repo.signature().ok();
        let email = who
            .as_ref()
            .and_then(|w| w.email().ok())
            .unwrap_or("latchkey");
        let sig = signature(email, now)?;
        let parents: Vec<&git2::Commit<'_>> = head.iter().collect();
        let oid = self.repo.commit(None, &sig, &sig, what, &tree, &parents)?;
        Ok(revision_of(&self.repo.find_commit(oid)?, None))
    }
}

fn signature(email: &str, now: Timestamp) -> Result<Signature<'static>, git2::Error> {
    Signature::new("latchkey", email, &Time::new(now.as_second(), 0))
}

/// The merge stage of an index entry (0 unless conflicted).
fn stage(e: &IndexEntry) -> u16 {
    (e.flags >> 12) & 0x3
}

fn entry(path: Vec<u8>, id: Oid, mode: u32, len: usize) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: u32::try_from(len).unwrap_or(u32::MAX),
        id,
        flags: 0,
        flags_extended: 0,
        path,
    }
}

/// A file's mode and content as git would store them (a symlink as its target), or
/// `None` for what git does not store as a blob (a directory, a socket).
fn read_file(path: &Path) -> Result<Option<(u32, Vec<u8>)>, SourceError> {
    let read = |source| SourceError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(read)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(read)?;
        return Ok(Some((SYMLINK, path_bytes(&target))));
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let content = std::fs::read(path).map_err(read)?;
    Ok(Some((mode_of(&meta), content)))
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 != 0 {
        EXECUTABLE
    } else {
        FILE
    }
}

#[cfg(not(unix))]
fn mode_of(_: &std::fs::Metadata) -> u32 {
    FILE
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

/// Writes `dir` as a tree: every file (names kept as bytes, so one that is not UTF-8 is
/// still reported), every folder but dot-folders.
fn write_dir(repo: &Repository, dir: &Path) -> Result<Oid, SourceError> {
    let read = |source| SourceError::ReadFile {
        path: dir.to_path_buf(),
        source,
    };
    let snapshot = |source| SourceError::Snapshot {
        what: format!("the directory {}", dir.display()),
        source,
    };
    let mut builder = repo.treebuilder(None).map_err(snapshot)?;
    for e in std::fs::read_dir(dir).map_err(read)? {
        let e = e.map_err(read)?;
        let name = e.file_name();
        let path = e.path();
        let kind = e.file_type().map_err(read)?;
        if kind.is_dir() {
            if path_bytes(Path::new(&name)).starts_with(b".") {
                continue;
            }
            let sub = write_dir(repo, &path)?;
            if repo.find_tree(sub).map_err(snapshot)?.is_empty() {
                continue;
            }
            builder
                .insert(name.as_os_str(), sub, 0o040_000)
                .map_err(snapshot)?;
        } else if let Some((mode, content)) = read_file(&path)? {
            let blob = repo.blob(&content).map_err(snapshot)?;
            builder
                .insert(name.as_os_str(), blob, mode as i32)
                .map_err(snapshot)?;
        }
    }
    builder.write().map_err(snapshot)
}
