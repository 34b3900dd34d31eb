//! YAML in git → validated desired state, with every finding located at file:line:column.

mod catalog;
pub mod diagnostic;
mod parse;
mod position;

pub use catalog::{CONNECTORS, Catalog, Context, Item, ResolvedGrant, client_folder, expand};
pub use diagnostic::{Diagnostic, Severity};
pub use parse::{AnyDoc, DocLoc, ParsedFile, parse_file};

use std::collections::{BTreeMap, HashMap};

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

/// Parsed files keyed by blob id: unchanged files are not parsed again (a tree diff
/// between two revisions is exactly the set of new blob ids).
#[derive(Default)]
pub struct ParseCache {
    parsed: HashMap<Oid, ParsedFile>,
}

impl ParseCache {
    fn parse(&mut self, file: &SourceFile) -> ParsedFile {
        if let Some(p) = self.parsed.get(&file.blob)
            && p.docs
                .first()
                .is_none_or(|(loc, _)| *loc.file == *file.path)
        {
            return p.clone();
        }
        let p = parse_file(&file.path, &file.text);
        self.parsed.insert(file.blob, p.clone());
        p
    }
}

/// Reads and validates `rev` under `subpath`.
pub fn load(
    repo: &SourceRepo,
    rev: &Revision,
    subpath: &str,
    ctx: &Context<'_>,
    cache: &mut ParseCache,
) -> Result<Loaded, SourceError> {
    let files = repo.yaml_files(rev, subpath)?;
    Ok(load_files(rev.clone(), &files, ctx, cache))
}

/// Validates a set of files (already read from git).
pub fn load_files(
    revision: Revision,
    files: &[SourceFile],
    ctx: &Context<'_>,
    cache: &mut ParseCache,
) -> Loaded {
    let mut pending: Vec<Pending> = Vec::new();
    let mut diagnostics = Vec::new();
    let mut docs = Vec::new();
    for file in files {
        let parsed = cache.parse(file);
        docs.extend(parsed.docs);
        pending.extend(parsed.pending);
        diagnostics.extend(parsed.syntax);
    }
    let mut catalog = Catalog::gather(docs, &mut pending);
    catalog::check(&mut catalog, ctx, &mut pending);
    diagnostics.extend(resolve(pending, files));
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
fn resolve(pending: Vec<Pending>, files: &[SourceFile]) -> Vec<Diagnostic> {
    let texts: HashMap<&str, &str> = files
        .iter()
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect();
    let mut by_file: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    for p in pending {
        by_file.entry(p.file.clone()).or_default().push(p);
    }
    let mut out = Vec::new();
    for (file, items) in by_file {
        let index = texts
            .get(file.as_str())
            .map(|t| PositionIndex::build(t))
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
