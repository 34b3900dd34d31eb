//! YAML in git → validated desired state, with every finding located at file:line:column.

mod catalog;
pub mod diagnostic;
mod parse;
mod position;

pub use catalog::{CONNECTORS, Catalog, Context, Item, ResolvedGrant, client_folder, expand};
pub use diagnostic::{Diagnostic, Severity};
pub use parse::{AnyDoc, DocLoc, ParsedFile, parse_file};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use git2::Oid;

use diagnostic::Pending;
use position::PositionIndex;

use crate::source::{Revision, SourceError, SourceFile, SourceRepo};

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

/// Parsed files keyed by blob id and path: unchanged files are neither read nor parsed
/// again (a tree diff between two revisions is exactly the set of new blob ids).
#[derive(Default)]
pub struct ParseCache {
    parsed: HashMap<(Oid, String), Cached>,
    /// Counts loads, to drop files no recent revision holds.
    generation: u64,
}

struct Cached {
    file: Arc<ParsedFile>,
    used: u64,
}

/// Loads a file's entry survives without being used: enough for the controller's
/// alternation between a revision and the last applied one.
const KEEP_GENERATIONS: u64 = 4;

impl ParseCache {
    /// Starts a load: entries unused for a few loads are dropped.
    fn next_generation(&mut self) {
        self.generation += 1;
        let oldest = self.generation.saturating_sub(KEEP_GENERATIONS);
        self.parsed.retain(|_, c| c.used >= oldest);
    }

    /// The parse of `blob` at `path`, reading the text only when it is not cached.
    fn get_or_parse<E>(
        &mut self,
        path: &str,
        blob: Oid,
        text: impl FnOnce() -> Result<String, E>,
    ) -> Result<Arc<ParsedFile>, E> {
        let generation = self.generation;
        if let Some(c) = self.parsed.get_mut(&(blob, path.to_string())) {
            c.used = generation;
            return Ok(c.file.clone());
        }
        let file = Arc::new(parse_file(path, &text()?));
        self.parsed.insert(
            (blob, path.to_string()),
            Cached {
                file: file.clone(),
                used: generation,
            },
        );
        Ok(file)
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        self.parsed.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.parsed.is_empty()
    }
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
    let blobs = repo.yaml_blobs(rev, subpath)?;
    cache.next_generation();
    let mut parsed = Vec::with_capacity(blobs.len());
    for (path, blob) in &blobs {
        parsed.push(cache.get_or_parse(path, *blob, || repo.blob_text(*blob, path, rev))?);
    }
    let by_path: HashMap<&str, Oid> = blobs.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    let text_of = |path: &str| {
        let blob = by_path.get(path)?;
        repo.blob_text(*blob, path, rev).ok()
    };
    Ok(assemble(rev.clone(), &parsed, ctx, &text_of))
}

/// Validates a set of files (already read from git).
pub fn load_files(
    revision: Revision,
    files: &[SourceFile],
    ctx: &Context<'_>,
    cache: &mut ParseCache,
) -> Loaded {
    cache.next_generation();
    let parsed: Vec<Arc<ParsedFile>> = files
        .iter()
        .map(|f| {
            let ok: Result<_, std::convert::Infallible> =
                cache.get_or_parse(&f.path, f.blob, || Ok(f.text.clone()));
            ok.unwrap_or_else(|never| match never {})
        })
        .collect();
    let texts: HashMap<&str, &str> = files
        .iter()
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect();
    let text_of = |path: &str| texts.get(path).map(|t| t.to_string());
    assemble(revision, &parsed, ctx, &text_of)
}

/// Gathers and checks parsed files; `text_of` reads a file for locating its findings.
fn assemble(
    revision: Revision,
    parsed: &[Arc<ParsedFile>],
    ctx: &Context<'_>,
    text_of: &dyn Fn(&str) -> Option<String>,
) -> Loaded {
    let mut pending: Vec<Pending> = Vec::new();
    let mut diagnostics = Vec::new();
    let mut docs = Vec::new();
    for file in parsed {
        docs.extend(file.docs.iter().cloned());
        pending.extend(file.pending.iter().cloned());
        diagnostics.extend(file.syntax.iter().cloned());
    }
    let mut catalog = Catalog::gather(docs, &mut pending);
    catalog::check(&mut catalog, ctx, &mut pending);
    diagnostics.extend(resolve(pending, text_of));
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
    });
    diagnostics.dedup();
    Loaded {
        revision,
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
