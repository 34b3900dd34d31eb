//! Client boundaries on a change (base → head): which client each changed file belongs
//! to, and every boundary the change breaks.
//!
//! A file under `clients/<client>/` belongs to that client; anything else belongs to
//! the agency. Most boundaries (a role outside `allowedRoles`, a grant for another
//! client, a duration beyond `maxGrantDuration`, a forbidden environment, a member in
//! the wrong client's folder) are already found by validation, located at file:line:col;
//! they are reported as they are. What validation cannot see is *who* may change a
//! document: Client, Role, System and Policy documents are agency-only, so changing one
//! inside a client's folder (which that client's admins own) is a violation, and a
//! client's Member must live in its client's folder.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use serde::Serialize;

use crate::load::{Catalog, DocLoc, Loaded, client_folder, locate};
use crate::source::{Revision, SourceError, SourceRepo};

/// Who owns a path: a client's admins or the agency.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase", tag = "owner", content = "client")]
pub enum Owner {
    Client(String),
    Agency,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Client(c) => f.write_str(c),
            Owner::Agency => f.write_str("agency"),
        }
    }
}

impl Owner {
    /// The owner of a path relative to the documents' root.
    pub fn of(path: &str) -> Owner {
        match client_folder(path) {
            Some(c) => Owner::Client(c.to_string()),
            None => Owner::Agency,
        }
    }
}

/// A changed file and its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangedFile {
    pub path: String,
    pub owner: Owner,
}

/// One broken boundary, located in the file that breaks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The owner of `file`.
    pub owner: Owner,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl fmt::Display for Violation {
    /// `file:line:col: [owner] message`, then an indented `help:` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: [{}] {}",
            self.file, self.line, self.column, self.owner, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The boundaries of one change.
#[derive(Clone, Debug, Serialize)]
pub struct BoundaryReport {
    pub base: String,
    pub head: String,
    pub files: Vec<ChangedFile>,
    /// Sorted by file, line, column.
    pub violations: Vec<Violation>,
}

impl BoundaryReport {
    /// No violation.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the change from `base` to `head` (both loaded from `repo` under `subpath`).
pub fn check(
    repo: &SourceRepo,
    subpath: &str,
    base: &Loaded,
    head: &Loaded,
) -> Result<BoundaryReport, SourceError> {
    let prefix = prefix(subpath);
    let files: Vec<ChangedFile> = repo
        .changed_paths(base.revision.oid, head.revision.oid)?
        .into_iter()
        .filter_map(|p| p.strip_prefix(&prefix).map(str::to_string))
        .filter(|p| !p.starts_with("audit/"))
        .map(|path| ChangedFile {
            owner: Owner::of(&path),
            path,
        })
        .collect();

    // Validation already locates the boundaries a revision's content breaks.
    let mut violations: Vec<Violation> = head
        .errors()
        .map(|d| Violation {
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            owner: Owner::of(&d.file),
            message: d.message.clone(),
            help: d.help.clone(),
        })
        .collect();

    let agency = head.catalog.agency().or(base.catalog.agency());
    for file in &files {
        let Owner::Client(client) = &file.owner else {
            continue;
        };
        let text = |rev: &Revision| -> Result<String, SourceError> {
            Ok(repo
                .file_at(rev, &format!("{prefix}{}", file.path))?
                .unwrap_or_default())
        };
        let before = agency_docs(&base.catalog, &file.path);
        let after = agency_docs(&head.catalog, &file.path);
        let mut head_text = None;
        for (key, doc) in &after {
            let verb = match before.get(key) {
                None => "adds",
                Some(old) if old.json != doc.json => "changes",
                Some(_) => continue,
            };
            let t = match &head_text {
                Some(t) => t,
                None => head_text.insert(text(&head.revision)?),
            };
            violations.push(agency_only(file, client, t, doc, verb, key));
        }
        let mut base_text = None;
        for (key, doc) in &before {
            if after.contains_key(key) {
                continue;
            }
            let t = match &base_text {
                Some(t) => t,
                None => base_text.insert(text(&base.revision)?),
            };
            violations.push(agency_only(file, client, t, doc, "removes", key));
        }
    }
    for file in &files {
        if file.owner != Owner::Agency {
            continue;
        }
        for m in head.catalog.members.values() {
            if *m.at.file != *file.path || Some(m.spec.client.as_str()) == agency {
                continue;
            }
            let t = repo
                .file_at(&head.revision, &format!("{prefix}{}", file.path))?
                .unwrap_or_default();
            let (line, column) = locate(&t, m.at.doc, "spec.client");
            violations.push(Violation {
                file: file.path.clone(),
                line,
                column,
                owner: Owner::Agency,
                message: format!(
                    "Member {:?} of client {:?} lives outside clients/{}/",
                    m.name, m.spec.client, m.spec.client
                ),
                help: Some(format!(
                    "move the file to clients/{}/, where the client's admins manage it",
                    m.spec.client
                )),
            });
        }
    }
    violations.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
    });
    violations.dedup();
    Ok(BoundaryReport {
        base: base.revision.display(),
        head: head.revision.display(),
        files,
        violations,
    })
}

fn prefix(subpath: &str) -> String {
    let s = subpath.trim_matches('/');
    if s.is_empty() {
        String::new()
    } else {
        format!("{s}/")
    }
}

/// An agency-only document: where it is and its spec as JSON (to tell a change).
struct AgencyDoc {
    at: DocLoc,
    json: serde_json::Value,
}

/// The agency-only documents (kind, name) that `file` declares in `cat`.
fn agency_docs(cat: &Catalog, file: &str) -> BTreeMap<(&'static str, String), AgencyDoc> {
    fn json<T: Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    }
    let mut out = BTreeMap::new();
    // Only the documents of `file` are turned into JSON.
    let mut add =
        |kind: &'static str, name: &str, at: &DocLoc, json: &dyn Fn() -> serde_json::Value| {
            if *at.file == *file {
                out.insert(
                    (kind, name.to_string()),
                    AgencyDoc {
                        at: at.clone(),
                        json: json(),
                    },
                );
            }
        };
    if let Some(at) = &cat.policy_at {
        add("Policy", "", at, &|| json(&cat.policy));
    }
    for i in cat.clients.values() {
        add("Client", &i.name, &i.at, &|| json(&i.spec));
    }
    for i in cat.roles.values() {
        add("Role", &i.name, &i.at, &|| json(&i.spec));
    }
    for i in cat.systems.values() {
        add("System", &i.name, &i.at, &|| json(&i.spec));
    }
    out
}

fn agency_only(
    file: &ChangedFile,
    client: &str,
    text: &str,
    doc: &AgencyDoc,
    verb: &str,
    (kind, name): &(&'static str, String),
) -> Violation {
    let (line, column) = locate(text, doc.at.doc, "kind");
    let what = if name.is_empty() {
        format!("the {kind}")
    } else {
        format!("{kind} {name:?}")
    };
    Violation {
        file: file.path.clone(),
        line,
        column,
        owner: file.owner.clone(),
        message: format!("{verb} {what} in clients/{client}/: {kind} documents are agency-only"),
        help: Some(
            "only the agency may change Client, Role, System and Policy documents; \
             leave them out of a client's change"
                .to_string(),
        ),
    }
}

/// Text for a terminal or a CI log.
pub fn text(r: &BoundaryReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Boundaries of {} → {}", r.base, r.head);
    for f in &r.files {
        let _ = writeln!(out, "  {:<10} {}", f.owner.to_string(), f.path);
    }
    if r.violations.is_empty() {
        out.push_str("No boundary violations.\n");
    } else {
        for v in &r.violations {
            let _ = writeln!(out, "{v}");
        }
        let n = r.violations.len();
        let _ = writeln!(
            out,
            "{n} boundary violation{}.",
            if n == 1 { "" } else { "s" }
        );
    }
    out
}

/// The top of a PR comment: the violations, or that there are none, and the changed
/// files with their owners.
pub fn markdown(r: &BoundaryReport) -> String {
    let mut out = String::new();
    if r.violations.is_empty() {
        let _ = writeln!(
            out,
            "✅ **No boundary violations** in {} changed file{}.\n",
            r.files.len(),
            if r.files.len() == 1 { "" } else { "s" }
        );
        files_markdown(r, &mut out);
        return out;
    }
    let n = r.violations.len();
    let _ = writeln!(
        out,
        "❌ **{n} boundary violation{}: this change must not be merged.**\n",
        if n == 1 { "" } else { "s" }
    );
    out.push_str("| Where | Client | Violation |\n|---|---|---|\n");
    for v in &r.violations {
        let _ = writeln!(
            out,
            "| `{}:{}:{}` | {} | {}{} |",
            v.file,
            v.line,
            v.column,
            v.owner,
            escape(&v.message),
            v.help
                .as_deref()
                .map(|h| format!("<br>_{}_", escape(h)))
                .unwrap_or_default()
        );
    }
    out.push('\n');
    files_markdown(r, &mut out);
    out
}

fn files_markdown(r: &BoundaryReport, out: &mut String) {
    if r.files.is_empty() {
        return;
    }
    out.push_str("<details><summary>Changed files and their owners</summary>\n\n| File | Owner |\n|---|---|\n");
    for f in &r.files {
        let _ = writeln!(out, "| `{}` | {} |", f.path, f.owner);
    }
    out.push_str("\n</details>\n\n");
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_belongs_to_the_client_whose_folder_holds_it() {
        assert_eq!(
            Owner::of("clients/acme/members.yaml"),
            Owner::Client("acme".into())
        );
        assert_eq!(
            Owner::of("clients/acme/sub/x.yaml"),
            Owner::Client("acme".into())
        );
        assert_eq!(Owner::of("clients/acme.yaml"), Owner::Agency);
        assert_eq!(Owner::of("roles/roles.yaml"), Owner::Agency);
        assert_eq!(Owner::of("latchkey.yaml"), Owner::Agency);
    }
}
