//! One file → typed documents, or findings that point at the offending node.

use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::diagnostic::{Diagnostic, Pending, Seg, Severity, YamlPath, path};
use crate::model::{
    API_VERSION, ClientSpec, Envelope, Kind, MemberSpec, NotifierSpec, PolicySpec, RoleSpec,
    SystemSpec,
};

/// Where a document sits: its file and its index among the file's documents.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DocLoc {
    pub file: Arc<str>,
    pub doc: usize,
}

/// A parsed document of any kind. Members are by far the most numerous (tens of
/// thousands, kept in the parse cache), so every other kind is boxed: the enum is then
/// the size of a Member, not of the largest spec.
#[derive(Clone, Debug)]
pub enum AnyDoc {
    System(Box<Envelope<SystemSpec>>),
    Role(Box<Envelope<RoleSpec>>),
    Client(Box<Envelope<ClientSpec>>),
    /// The spec is shared with the checked [`crate::load::Member`] (not copied).
    Member(Envelope<Arc<MemberSpec>>),
    Policy(Box<Envelope<PolicySpec>>),
    Notifier(Box<Envelope<NotifierSpec>>),
}

/// The documents of one file and what was wrong with the rest.
#[derive(Clone, Debug, Default)]
pub struct ParsedFile {
    pub docs: Vec<(DocLoc, AnyDoc)>,
    /// Findings located by path (resolved to positions later).
    pub pending: Vec<Pending>,
    /// Syntax errors, already located by the YAML parser.
    pub syntax: Vec<Diagnostic>,
}

/// Parses every document of `text`. Never stops at the first bad document: the others
/// are still parsed, so all findings are reported at once.
pub fn parse_file(file: &str, text: &str) -> ParsedFile {
    let file_arc: Arc<str> = Arc::from(file);
    let mut out = ParsedFile::default();
    let mut roles = RoleNames::default();
    for (doc, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = match serde_yaml::Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                out.syntax.push(Diagnostic {
                    severity: Severity::Error,
                    file: file.to_string(),
                    line,
                    column,
                    message: format!("malformed YAML: {}", strip_location(&e.to_string())),
                    help: Some("fix the YAML syntax; check indentation and quoting".into()),
                });
                // The parser cannot resynchronise after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let loc = DocLoc {
            file: file_arc.clone(),
            doc,
        };
        if let Some(mut parsed) = parse_doc(file, doc, value, &mut out.pending) {
            if let AnyDoc::Member(env) = &mut parsed {
                roles.share(env);
            }
            out.docs.push((loc, parsed));
        }
    }
    // Kept in the parse cache for as long as the file is unchanged.
    out.docs.shrink_to_fit();
    out
}

/// The role names of a file's grants, each kept once: a file of members names a few
/// roles over and over, and the parse cache holds every grant of the repository.
#[derive(Default)]
struct RoleNames(Vec<Arc<str>>);

impl RoleNames {
    /// Points each grant of a freshly parsed member at the file's one copy of its role.
    fn share(&mut self, env: &mut Envelope<Arc<MemberSpec>>) {
        let Some(spec) = Arc::get_mut(&mut env.spec) else {
            return;
        };
        for g in &mut spec.grants {
            match self.0.iter().find(|r| **r == g.role) {
                Some(r) => g.role = r.clone(),
                None => self.0.push(g.role.clone()),
            }
        }
    }
}

fn parse_doc(
    file: &str,
    doc: usize,
    value: serde_yaml::Value,
    pending: &mut Vec<Pending>,
) -> Option<AnyDoc> {
    let Some(map) = value.as_mapping() else {
        pending.push(
            Pending::error(file, doc, vec![], "a document must be a mapping")
                .help("start each document with apiVersion, kind, metadata and spec"),
        );
        return None;
    };
    match map.get("apiVersion").and_then(|v| v.as_str()) {
        Some(API_VERSION) => {}
        Some(other) => {
            pending.push(
                Pending::error(
                    file,
                    doc,
                    path("apiVersion"),
                    format!("unsupported apiVersion {other:?}"),
                )
                .help(format!("use apiVersion: {API_VERSION}")),
            );
            return None;
        }
        None => {
            pending.push(
                Pending::error(file, doc, vec![], "missing field `apiVersion`")
                    .help(format!("add apiVersion: {API_VERSION}")),
            );
            return None;
        }
    }
    let kinds = Kind::ALL.map(|k| k.as_str()).join(", ");
    let kind = match map.get("kind").and_then(|v| v.as_str()) {
        Some(k) => match Kind::parse(k) {
            Some(kind) => kind,
            None => {
                pending.push(
                    Pending::error(file, doc, path("kind"), format!("unknown kind {k:?}"))
                        .help(format!("use one of {kinds}")),
                );
                return None;
            }
        },
        None => {
            pending.push(
                Pending::error(file, doc, vec![], "missing field `kind`")
                    .help(format!("add kind: one of {kinds}")),
            );
            return None;
        }
    };
    match kind {
        Kind::System => typed(file, doc, value, pending).map(|e| AnyDoc::System(Box::new(e))),
        Kind::Role => typed(file, doc, value, pending).map(|e| AnyDoc::Role(Box::new(e))),
        Kind::Client => typed(file, doc, value, pending).map(|e| AnyDoc::Client(Box::new(e))),
        Kind::Member => typed(file, doc, value, pending).map(AnyDoc::Member),
        Kind::Policy => typed(file, doc, value, pending).map(|e| AnyDoc::Policy(Box::new(e))),
        Kind::Notifier => typed(file, doc, value, pending).map(|e| AnyDoc::Notifier(Box::new(e))),
    }
}

/// Deserializes a whole document into its typed envelope, turning serde's error into a
/// finding at the exact path.
fn typed<S: DeserializeOwned>(
    file: &str,
    doc: usize,
    value: serde_yaml::Value,
    pending: &mut Vec<Pending>,
) -> Option<Envelope<S>> {
    match serde_path_to_error::deserialize::<_, Envelope<S>>(value) {
        Ok(env) => Some(env),
        Err(err) => {
            let at: YamlPath = err
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { variant } => {
                        Some(Seg::Key(variant.clone()))
                    }
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            let message = strip_location(&err.into_inner().to_string());
            pending.push(serde_finding(file, doc, at, &message));
            None
        }
    }
}

/// serde's message about the value at `at` as a finding: an unknown field at its key with
/// the valid names, a missing field at its mapping, a wrong type at the value.
pub(super) fn serde_finding(file: &str, doc: usize, mut at: YamlPath, message: &str) -> Pending {
    let unknown = backticked(message, "unknown field `");
    // The path names the unknown key itself; the message names the mapping.
    let parent = match &unknown {
        Some(f) if at.last() == Some(&Seg::Key(f.clone())) => &at[..at.len() - 1],
        _ => &at[..],
    };
    let where_ = if parent.is_empty() {
        "the document".to_string()
    } else {
        super::diagnostic::display_path(parent)
    };
    if let Some(field) = unknown {
        if at.last() != Some(&Seg::Key(field.clone())) {
            at.push(Seg::Key(field.clone()));
        }
        let expected = message
            .split_once(", expected ")
            .map(|(_, e)| e.to_string());
        let finding = Pending::error(
            file,
            doc,
            at,
            format!("unknown field `{field}` in {where_}"),
        )
        .at_key();
        match expected {
            Some(e) => finding.help(format!("remove it, or use {e}")),
            None => finding.help("remove it"),
        }
    } else if let Some(field) = backticked(message, "missing field `") {
        Pending::error(
            file,
            doc,
            at,
            format!("missing field `{field}` in {where_}"),
        )
        .help(format!("add `{field}:`"))
    } else {
        Pending::error(file, doc, at, format!("{message} at {where_}"))
            .help("fix the value's type; quote strings that look like numbers or booleans")
    }
}

/// The text between `prefix` and the next backtick.
fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split('`').next()?.to_string())
}

/// serde_yaml appends " at line X column Y" to messages; positions are reported separately.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_documents_and_keeps_going_after_a_bad_one() {
        let text = "\
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: viewer}
spec: {entitlements: {portal: [viewer]}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Rolle
metadata: {name: x}
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: finance}
spec: {entitlements: {portal: [finance]}, colour: red}
";
        let parsed = parse_file("roles.yaml", text);
        assert_eq!(parsed.docs.len(), 1);
        let messages: Vec<_> = parsed.pending.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            ["unknown kind \"Rolle\"", "unknown field `colour` in spec"]
        );
        assert_eq!(parsed.pending[1].path, path("spec.colour"));
    }

    #[test]
    fn syntax_errors_carry_the_parser_position() {
        let parsed = parse_file("bad.yaml", "kind: Role\nmetadata: {name: x\n");
        assert_eq!(parsed.syntax.len(), 1);
        assert!(
            parsed.syntax[0].message.starts_with("malformed YAML"),
            "{:?}",
            parsed.syntax
        );
        assert_eq!(parsed.syntax[0].line, 3);
    }

    #[test]
    fn the_grants_of_a_file_share_one_copy_of_each_role_name() {
        let member = |name: &str, roles: &str| {
            format!(
                "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata: {{name: {name}}}\n\
                 spec: {{email: {name}@acme.example, client: acme, grants: [{roles}]}}\n"
            )
        };
        let text = [
            member("erin", "{role: viewer}, {role: finance}"),
            member("dana", "{role: finance}, {role: viewer}, {role: viewer}"),
        ]
        .join("---\n");
        let parsed = parse_file("clients/acme/members.yaml", &text);
        assert!(parsed.pending.is_empty(), "{:?}", parsed.pending);
        let roles: Vec<&Arc<str>> = parsed
            .docs
            .iter()
            .flat_map(|(_, d)| match d {
                AnyDoc::Member(env) => env.spec.grants.iter().map(|g| &g.role).collect(),
                _ => Vec::new(),
            })
            .collect();
        let names: Vec<&str> = roles.iter().map(|r| &***r).collect();
        assert_eq!(names, ["viewer", "finance", "finance", "viewer", "viewer"]);
        for (r, name) in roles.iter().zip(&names) {
            let first = roles[names.iter().position(|n| n == name).expect("itself")];
            assert!(Arc::ptr_eq(r, first), "{name} is shared");
        }
    }
}
