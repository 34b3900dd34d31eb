//! YAML in git → validated desired state, with every finding located at file:line:column.

mod catalog;
pub mod diagnostic;
mod member;
mod parse;
mod position;
mod workers;

pub use catalog::{CONNECTORS, Catalog, Item, entitlement, expand};
pub use diagnostic::{Diagnostic, Severity};
pub use member::{Context, Member, ResolvedGrant, client_folder, review_every};
pub use parse::{AnyDoc, DocLoc, ParsedFile, parse_file};

use std::collections::{BTreeMap, HashMap, btree_map};
use std::sync::Arc;

use git2::Oid;
use rustc_hash::{FxHashMap, FxHashSet};

use diagnostic::{Pending, path};
use member::TimeDeps;
use position::PositionIndex;

use crate::source::{
    BlobReader, Documents, IGNORE_FILE, NotRead, Revision, SourceError, SourceFile, SourceRepo,
};

/// A repository of one sql System, one Role, Client acme and Member erin, whose
/// `grants:` list ends the text: tests append grant lines (and documents) to it.
#[cfg(test)]
pub(crate) const TEST_REPO: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: portal}
spec: {type: sql, environment: portal, prune: true, offboard: delete}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: viewer}
spec: {entitlements: {portal: [viewer]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {name: acme}
spec: {allowedRoles: [viewer]}
---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: erin}
spec:
  email: erin@acme.example
  client: acme
  grants:
";

/// A loaded revision: the catalogue and every finding.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub revision: Revision,
    pub catalog: Catalog,
    /// Sorted by file, line, column.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// No errors (warnings allowed).
    pub fn is_valid(&self) -> bool {
        !self
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

/// What earlier loads worked out, keyed by git blob id and path: unchanged files are
/// neither read nor parsed again, and their members are not checked again while the
/// Policy, Systems, Roles and Clients and the time inputs they depended on hold. A tree
/// diff between two revisions is exactly the set of new blob ids, so a load after a
/// one-file change does the work of that file plus a pass over the others' results.
#[derive(Default)]
pub struct ParseCache {
    files: FxHashMap<(Oid, String), Cached>,
    /// The Policy, Systems, Roles and Clients of the last load, and what checking them
    /// found, keyed by the (path, blob) of every file that holds one of them.
    globals: Option<Globals>,
    /// Counts loads, to drop files no recent revision holds.
    generation: u64,
}

struct Cached {
    file: Arc<ParsedFile>,
    used: u64,
    /// The blob could not be read this time: read it again next time.
    reread: bool,
    /// Checked members by document index.
    members: Vec<Option<CheckedMember>>,
}

struct CheckedMember {
    /// The `globals_id` of the catalogue the member was checked against.
    globals_id: u64,
    deps: TimeDeps,
    member: Arc<Member>,
    pending: Vec<Pending>,
}

struct Globals {
    key: Vec<(Oid, String)>,
    catalog: Catalog,
    pending: Vec<Pending>,
}

/// Loads a file's entry survives without being used: enough for the controller's
/// alternation between a revision and the last applied one.
const KEEP_GENERATIONS: u64 = 4;

impl ParseCache {
    /// Starts a load: entries unused for a few loads are dropped.
    fn next_generation(&mut self) {
        self.generation += 1;
        let oldest = self.generation.saturating_sub(KEEP_GENERATIONS);
        self.files.retain(|_, c| c.used >= oldest);
    }

    /// Parses the files `keys` (blob id, path) that are not cached, on every core,
    /// reading the text of those only. A blob that cannot be read becomes a file whose
    /// only finding says so; one that may read next time (a missing object, not bad
    /// bytes) is read again then.
    fn parse_missing(&mut self, keys: &[(Oid, String)], texts: Texts<'_>) {
        let generation = self.generation;
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.files.get_mut(key) {
                Some(c) if !c.reread => c.used = generation,
                _ => missing.push(i),
            }
        }
        let workers = workers::count(missing.len());
        // The blob of key `i` parsed from what reading it gave.
        let parse_blob = |i: usize, text: Result<String, SourceError>| {
            let path = &keys[i].1;
            parse_text(path, text.as_deref().map_err(|e| unreadable(path, e)))
        };
        let parsed: Vec<(ParsedFile, bool)> = match texts {
            Texts::Files(files) => workers::map(
                &missing,
                workers,
                || (),
                |(), &i| parse_text(&keys[i].1, Ok(&files[i].text)),
            ),
            // A handful of files (a re-plan after an edit) reads through this handle.
            Texts::Git { repo, rev } if workers == 1 => missing
                .iter()
                .map(|&i| parse_blob(i, repo.blob_text(keys[i].0, &keys[i].1, rev)))
                .collect(),
            Texts::Git { repo, rev } => {
                let dir = repo.reader_dir();
                workers::map(
                    &missing,
                    workers,
                    || BlobReader::open(dir),
                    |reader, &i| {
                        let (blob, path) = &keys[i];
                        let text = match reader {
                            Ok(r) => r.blob_text(*blob, path, rev),
                            // Unreadable this time, not lasting: read again next time.
                            Err(e) => Err(SourceError::Read {
                                path: path.clone(),
                                revision: rev.display(),
                                source: git2::Error::from_str(&format!("{e} on a parse worker")),
                            }),
                        };
                        parse_blob(i, text)
                    },
                )
            }
        };
        for (&i, (file, reread)) in missing.iter().zip(parsed) {
            self.files.insert(
                keys[i].clone(),
                Cached {
                    file: Arc::new(file),
                    used: generation,
                    reread,
                    members: Vec::new(),
                },
            );
        }
    }

    /// The parsed files of the blobs `blobs` (blob id, path) that are cached and were
    /// read, by blob id.
    pub fn parsed<'a>(
        &self,
        blobs: impl IntoIterator<Item = &'a (String, Oid)>,
    ) -> HashMap<Oid, Arc<ParsedFile>> {
        blobs
            .into_iter()
            .filter_map(|(path, blob)| {
                let c = self.files.get(&(*blob, path.clone()))?;
                (!c.reread).then(|| (*blob, c.file.clone()))
            })
            .collect()
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The Policy, Systems, Roles and Clients of `files` (gathered and checked), from the
    /// last load when the files holding them are the same.
    fn globals(&mut self, keys: &[(Oid, String)]) -> (Catalog, Vec<Pending>) {
        let files: Vec<&Arc<ParsedFile>> = keys.iter().map(|k| &self.files[k].file).collect();
        let key: Vec<(Oid, String)> = keys
            .iter()
            .zip(&files)
            .filter(|(_, f)| f.docs.iter().any(|(_, d)| !matches!(d, AnyDoc::Member(_))))
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(g) = &self.globals
            && g.key == key
        {
            return (g.catalog.clone(), g.pending.clone());
        }
        let mut pending = Vec::new();
        let catalog =
            Catalog::gather_globals(files.iter().flat_map(|f| f.docs.iter()), &mut pending);
        catalog::check_globals(&catalog, &mut pending);
        self.globals = Some(Globals {
            key,
            catalog: catalog.clone(),
            pending: pending.clone(),
        });
        (catalog, pending)
    }
}

/// A revision listed and parsed, with its Policy, Systems, Roles and Clients gathered
/// and checked: the first half of a load. It is enough to connect to the systems, so a
/// plan can start reading them while the members are checked.
pub struct Staged {
    revision: Revision,
    keys: Vec<(Oid, String)>,
    globals: Catalog,
    globals_pending: Vec<Pending>,
    /// What listing the revision's files found: files not read, names that are not
    /// UTF-8, or why the files could not be listed at all.
    listing: Vec<Diagnostic>,
    /// An error was found already: in a file's syntax or shape, or in the shared documents.
    failed: bool,
}

impl Staged {
    /// The revision staged.
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The Systems the revision declares.
    pub fn systems(&self) -> &BTreeMap<String, Item<crate::model::SystemSpec>> {
        &self.globals.systems
    }

    /// False when an error is known before the members are checked (a file that does
    /// not parse, a document of the wrong shape, a bad System, Role or Client): the
    /// revision is invalid, and nothing it names is connected to.
    pub fn valid_so_far(&self) -> bool {
        !self.failed
    }
}

impl ParseCache {
    /// Stages the parsed files `keys` (all in the cache).
    fn stage(
        &mut self,
        revision: Revision,
        keys: Vec<(Oid, String)>,
        listing: Vec<Diagnostic>,
    ) -> Staged {
        let (globals, globals_pending) = self.globals(&keys);
        let error = |p: &Pending| p.severity == Severity::Error;
        let failed = listing.iter().any(|d| d.severity == Severity::Error)
            || globals_pending.iter().any(error)
            || keys.iter().any(|k| {
                let f = &self.files[k].file;
                f.pending.iter().any(error)
                    || f.syntax.iter().any(|d| d.severity == Severity::Error)
            });
        Staged {
            revision,
            keys,
            globals,
            globals_pending,
            listing,
            failed,
        }
    }
}

/// Lists `rev` under `subpath`, parses the blobs missing from `cache` and checks the
/// shared documents: the first half of [`load`]. A revision whose files cannot be listed
/// or read is staged as invalid, with a finding naming the file (and the line of a byte
/// that is not UTF-8), exactly like one that does not parse: it is never a reason to
/// stop enforcing the last valid revision.
pub fn stage(
    repo: &SourceRepo,
    rev: &Revision,
    subpath: &str,
    cache: &mut ParseCache,
) -> Result<Staged, SourceError> {
    cache.next_generation();
    let (blobs, listing) = match repo.documents(rev, subpath) {
        Ok(docs) => {
            let listing = listing_findings(&docs);
            (docs.blobs, listing)
        }
        Err(e) => (Vec::new(), vec![unreadable(subpath, &e).diagnostic]),
    };
    let keys: Vec<(Oid, String)> = blobs.into_iter().map(|(p, b)| (b, p)).collect();
    cache.parse_missing(&keys, Texts::Git { repo, rev });
    Ok(cache.stage(rev.clone(), keys, listing))
}

/// A file that could not be read, as a finding.
struct Unreadable {
    diagnostic: Diagnostic,
    /// The finding is the blob's own (its bytes), not the repository's state right now.
    lasting: bool,
}

/// Where the texts of the files to parse come from.
enum Texts<'a> {
    /// The blobs of a git revision.
    Git {
        repo: &'a SourceRepo,
        rev: &'a Revision,
    },
    /// Files already read, in the order of the keys.
    Files(&'a [SourceFile]),
}

/// The file `path` parsed from its text, or holding only the finding that it cannot be
/// read; and whether to read it again next time.
fn parse_text(path: &str, text: Result<&str, Unreadable>) -> (ParsedFile, bool) {
    match text {
        Ok(text) => (parse_file(path, text), false),
        Err(u) => (
            ParsedFile {
                syntax: vec![u.diagnostic],
                ..ParsedFile::default()
            },
            !u.lasting,
        ),
    }
}

/// `err` as a finding on the file it names, or on `reading` (the file or folder read).
fn unreadable(reading: &str, err: &SourceError) -> Unreadable {
    let shown = |p: &str| if p.is_empty() { "." } else { p }.to_string();
    let at = |file: String, line, column, message: String, help: &str| Diagnostic {
        severity: Severity::Error,
        file,
        line,
        column,
        message,
        help: Some(help.to_string()),
    };
    match err {
        SourceError::NotText {
            path,
            byte,
            line,
            column,
            ..
        } => Unreadable {
            diagnostic: at(
                shown(path),
                *line,
                *column,
                format!("not UTF-8 text: byte 0x{byte:02X} is not valid UTF-8"),
                "save the file as UTF-8 (a Latin-1 or Windows-1252 editor writes such bytes)",
            ),
            lasting: true,
        },
        SourceError::Ignore { line, message } => Unreadable {
            diagnostic: at(
                IGNORE_FILE.to_string(),
                *line,
                1,
                format!("not a gitignore pattern: {message}"),
                "fix the pattern (gitignore syntax)",
            ),
            lasting: true,
        },
        other => {
            let file = match other {
                SourceError::Read { path, .. } => shown(path),
                _ => shown(reading),
            };
            Unreadable {
                diagnostic: at(
                    file,
                    1,
                    1,
                    format!(
                        "cannot read this revision: {}",
                        crate::source::error_chain(other)
                    ),
                    "check the repository (git fsck) or fetch it again",
                ),
                lasting: false,
            }
        }
    }
}

/// Files the listing did not read though they may hold documents: a `.json` file or a
/// backup copy is a warning (a leftover, by convention, and the revision stays
/// appliable); a name that is not UTF-8 is an error, like bytes that are not UTF-8: it
/// may be the only copy of its documents and cannot be named faithfully.
fn listing_findings(docs: &Documents) -> Vec<Diagnostic> {
    let finding = |severity, file: &str, message: &str, help: &str| Diagnostic {
        severity,
        file: file.to_string(),
        line: 1,
        column: 1,
        message: message.to_string(),
        help: Some(help.to_string()),
    };
    let mut out = Vec::new();
    for (path, why) in &docs.not_read {
        out.push(match why {
            NotRead::Json => finding(
                Severity::Warning,
                path,
                "not read: documents are read from .yaml and .yml files only",
                "rename it to .yaml if it holds documents (JSON is YAML), \
                 or list it in .latchkeyignore",
            ),
            NotRead::Backup => finding(
                Severity::Warning,
                path,
                "not read: a backup copy of a YAML file",
                "delete it, rename it to .yaml if it is the copy meant to be read, \
                 or list it in .latchkeyignore",
            ),
        });
    }
    for path in &docs.bad_names {
        out.push(finding(
            Severity::Error,
            path,
            "the name is not UTF-8: not read",
            "rename it in UTF-8, or list it in .latchkeyignore",
        ));
    }
    out
}

/// Checks the members of a staged revision: the second half of [`load`]. Only the text
/// of files with a finding is read again, to locate it.
pub fn finish(
    repo: &SourceRepo,
    staged: Staged,
    ctx: &Context<'_>,
    cache: &mut ParseCache,
) -> Loaded {
    let by_path: HashMap<&str, Oid> = staged.keys.iter().map(|(b, p)| (p.as_str(), *b)).collect();
    let rev = &staged.revision;
    let text_of = |path: &str| {
        let blob = by_path.get(path)?;
        repo.blob_text(*blob, path, rev).ok()
    };
    assemble(&staged, ctx, cache, &text_of)
}

/// Reads and validates `rev` under `subpath`. Only blobs missing from `cache` are read
/// and parsed; the text of other files is read only to locate a finding in them.
pub fn load(
    repo: &SourceRepo,
    rev: &Revision,
    subpath: &str,
    ctx: &Context<'_>,
    cache: &mut ParseCache,
) -> Result<Loaded, SourceError> {
    let staged = stage(repo, rev, subpath, cache)?;
    Ok(finish(repo, staged, ctx, cache))
}

/// Validates one file's text as the whole repository at `at` (revision and evaluation
/// time alike, no merge history): for tests and examples that declare a repository inline.
pub fn load_text(path: &str, text: &str, at: jiff::Timestamp) -> Loaded {
    let rev = Revision {
        oid: Oid::ZERO_SHA1,
        branch: None,
        time: at,
        author: String::new(),
        summary: String::new(),
    };
    let file = SourceFile {
        path: path.into(),
        blob: Oid::ZERO_SHA1,
        text: text.into(),
    };
    let none = |_: &str, _: &crate::model::Grant| None;
    let ctx = Context {
        revision_time: at,
        now: at,
        merged_at: &none,
    };
    load_files(rev, &[file], &ctx, &mut ParseCache::default())
}

/// Validates a set of files (already read from git).
pub fn load_files(
    revision: Revision,
    files: &[SourceFile],
    ctx: &Context<'_>,
    cache: &mut ParseCache,
) -> Loaded {
    cache.next_generation();
    let keys: Vec<(Oid, String)> = files.iter().map(|f| (f.blob, f.path.clone())).collect();
    cache.parse_missing(&keys, Texts::Files(files));
    let texts: HashMap<&str, &str> = files
        .iter()
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect();
    let text_of = |path: &str| texts.get(path).map(|t| t.to_string());
    let staged = cache.stage(revision, keys, Vec::new());
    assemble(&staged, ctx, cache, &text_of)
}

/// Gathers and checks the parsed files `keys` (all in `cache`), in order; `text_of` reads
/// a file for locating its findings. Members are checked one by one, reusing the check
/// of an unchanged member document when nothing it depended on moved.
fn assemble(
    staged: &Staged,
    ctx: &Context<'_>,
    cache: &mut ParseCache,
    text_of: &dyn Fn(&str) -> Option<String>,
) -> Loaded {
    let files: Vec<(&(Oid, String), Arc<ParsedFile>)> = staged
        .keys
        .iter()
        .map(|k| (k, cache.files[k].file.clone()))
        .collect();
    let mut pending: Vec<Pending> = Vec::new();
    let mut diagnostics: Vec<Diagnostic> = staged.listing.clone();
    for (_, file) in &files {
        pending.extend(file.pending.iter().cloned());
        diagnostics.extend(file.syntax.iter().cloned());
    }
    let mut catalog = staged.globals.clone();
    pending.extend(staged.globals_pending.iter().cloned());
    let grace = member::expired_grace(&catalog);
    // Member name → where it was first defined (members are keyed by email).
    let mut names: FxHashMap<&str, &DocLoc> = FxHashMap::default();
    let mut members: BTreeMap<String, Arc<Member>> = BTreeMap::new();
    let mut live_clients: FxHashSet<String> = FxHashSet::default();
    for (key, file) in &files {
        let memo = &mut cache.files.get_mut(*key).expect("parsed above").members;
        // One slot per document up to the last member: reserved exactly, since growing
        // by doubling left up to half of it empty for every file of the parse cache.
        if let Some((last, _)) = file.docs.last() {
            memo.reserve_exact((last.doc + 1).saturating_sub(memo.len()));
        }
        for (at, doc) in &file.docs {
            let AnyDoc::Member(env) = doc else { continue };
            let name = env.metadata.name.as_str();
            if let Some(first) = names.get(name) {
                pending.push(catalog::duplicate("Member", name, at, first));
                continue;
            }
            let identity = crate::model::identity(&env.spec.email);
            let slot = match members.entry(identity) {
                btree_map::Entry::Vacant(slot) => slot,
                btree_map::Entry::Occupied(first) => {
                    let first = first.get();
                    pending.push(
                        Pending::error(
                            &at.file,
                            at.doc,
                            path("spec.email"),
                            format!(
                                "email {:?} is already used by Member {:?}",
                                env.spec.email, first.name
                            ),
                        )
                        .help(format!(
                            "one person is one Member: merge the grants into {}",
                            first.at.file
                        )),
                    );
                    continue;
                }
            };
            names.insert(name, at);
            if memo.len() <= at.doc {
                memo.resize_with(at.doc + 1, || None);
            }
            let memoised = &mut memo[at.doc];
            let reusable = memoised
                .as_ref()
                .is_some_and(|c| c.globals_id == catalog.globals_id && c.deps.holds(ctx));
            if !reusable {
                let checked =
                    member::check_member(&catalog, grace, slot.key(), (name, &env.spec, at), ctx);
                *memoised = Some(CheckedMember {
                    globals_id: catalog.globals_id,
                    deps: checked.deps,
                    member: Arc::new(checked.member),
                    pending: checked.pending,
                });
            }
            let checked = memoised.as_ref().expect("checked above");
            pending.extend(checked.pending.iter().cloned());
            for client in &checked.member.live_clients {
                if !live_clients.contains(&**client) {
                    live_clients.insert(client.to_string());
                }
            }
            slot.insert(checked.member.clone());
        }
    }
    catalog.members = Arc::new(members);
    catalog.live_clients = Arc::new(live_clients.into_iter().collect());
    diagnostics.extend(resolve(pending, text_of));
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
    });
    diagnostics.dedup();
    Loaded {
        revision: staged.revision.clone(),
        catalog,
        diagnostics,
    }
}

/// The line and column of the value at `dotted` (e.g. `kind`) in document `doc` of `text`.
pub fn locate(text: &str, doc: usize, dotted: &str) -> (usize, usize) {
    let pos =
        PositionIndex::build(text).find(doc, &diagnostic::path(dotted), diagnostic::Anchor::Value);
    (pos.line, pos.column)
}

/// Looks up the line and column of each finding; indexes only files that have one.
fn resolve(pending: Vec<Pending>, text_of: &dyn Fn(&str) -> Option<String>) -> Vec<Diagnostic> {
    let mut by_file: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    for p in pending {
        by_file.entry(p.file.clone()).or_default().push(p);
    }
    let mut out = Vec::new();
    for (file, items) in by_file {
        let index = text_of(&file)
            .map(|t| PositionIndex::build(&t))
            .unwrap_or_default();
        for p in items {
            let pos = index.find(p.doc, &p.path, p.anchor);
            out.push(Diagnostic {
                severity: p.severity,
                file: p.file,
                line: pos.line,
                column: pos.column,
                message: p.message,
                help: p.help,
            });
        }
    }
    out
}
