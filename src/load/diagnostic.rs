//! Validation findings: each names a file, line and column, what is wrong and the fix.

use std::fmt;

use serde::Serialize;

/// How bad a finding is. Errors fail `validate` and block `plan`/`apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding in the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error: message` then an indented `help:` line, the format
    /// editors and CI annotations understand.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// A step into a YAML document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into a document, e.g. `spec.grants[1].role`.
pub type YamlPath = Vec<Seg>;

/// Builds a path from `spec.grants.1.role`-style text (numbers are indices).
pub fn path(dotted: &str) -> YamlPath {
    dotted
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(i) => Seg::Index(i),
            Err(_) => Seg::Key(s.to_string()),
        })
        .collect()
}

/// Renders a path the way users write it: `spec.grants[1].role`.
pub fn display_path(p: &[Seg]) -> String {
    let mut out = String::new();
    for seg in p {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Where a finding points before its line and column are looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The value at the path.
    Value,
    /// The key of the path's last segment (for unknown fields).
    Key,
}

/// A finding whose position is resolved later, only for files that have findings:
/// building a position index costs a second parse, so the happy path skips it.
#[derive(Clone, Debug)]
pub struct Pending {
    pub severity: Severity,
    pub file: String,
    pub doc: usize,
    pub path: YamlPath,
    pub anchor: Anchor,
    pub message: String,
    pub help: Option<String>,
}

impl Pending {
    /// An error at the value of `path` in document `doc` of `file`.
    pub fn error(file: &str, doc: usize, path: YamlPath, message: impl Into<String>) -> Pending {
        Pending {
            severity: Severity::Error,
            file: file.to_string(),
            doc,
            path,
            anchor: Anchor::Value,
            message: message.into(),
            help: None,
        }
    }

    /// A warning at the value of `path`.
    pub fn warning(file: &str, doc: usize, path: YamlPath, message: impl Into<String>) -> Pending {
        Pending {
            severity: Severity::Warning,
            ..Pending::error(file, doc, path, message)
        }
    }

    /// Adds the fix.
    pub fn help(mut self, help: impl Into<String>) -> Pending {
        self.help = Some(help.into());
        self
    }

    /// Points at the key rather than the value.
    pub fn at_key(mut self) -> Pending {
        self.anchor = Anchor::Key;
        self
    }
}
