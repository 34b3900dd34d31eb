//! Path → (line, column) for every node of a YAML file, from saphyr's marked events.
//!
//! serde_yaml reports positions only for syntax and type errors; semantic findings
//! (an unknown role, a grant that is too long) carry a path, resolved here.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

use super::diagnostic::{Anchor, Seg, YamlPath};

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    key: Option<Pos>,
    value: Pos,
}

/// Positions of every node of every document in one file.
#[derive(Default)]
pub struct PositionIndex {
    docs: Vec<HashMap<YamlPath, Node>>,
    doc_starts: Vec<Pos>,
}

enum Frame {
    Map { key: Option<(String, Pos)> },
    Seq { next: usize },
}

impl PositionIndex {
    /// Indexes `text`. A syntax error stops indexing there; what came before stays usable.
    pub fn build(text: &str) -> PositionIndex {
        let mut index = PositionIndex::default();
        let mut stack: Vec<(Frame, YamlPath)> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let at = Pos {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            match event {
                Event::DocumentStart(_) => {
                    index.docs.push(HashMap::new());
                    index.doc_starts.push(at);
                    stack.clear();
                }
                Event::Scalar(value, ..) => {
                    if let Some((Frame::Map { key }, _)) = stack.last_mut()
                        && key.is_none()
                    {
                        *key = Some((value.to_string(), at));
                        continue;
                    }
                    index.record(&mut stack, at);
                }
                Event::Alias(_) => {
                    index.record(&mut stack, at);
                }
                Event::MappingStart(..) => {
                    let path = index.record(&mut stack, at);
                    stack.push((Frame::Map { key: None }, path));
                }
                Event::SequenceStart(..) => {
                    let path = index.record(&mut stack, at);
                    stack.push((Frame::Seq { next: 0 }, path));
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// Records a node at the current position of the stack and returns its path.
    fn record(&mut self, stack: &mut [(Frame, YamlPath)], at: Pos) -> YamlPath {
        let (path, key) = match stack.last_mut() {
            None => (Vec::new(), None),
            Some((Frame::Map { key }, parent)) => {
                let (k, kpos) = key.take().unwrap_or_default_key();
                let mut p = parent.clone();
                p.push(Seg::Key(k));
                (p, Some(kpos))
            }
            Some((Frame::Seq { next }, parent)) => {
                let mut p = parent.clone();
                p.push(Seg::Index(*next));
                *next += 1;
                (p, None)
            }
        };
        if let Some(doc) = self.docs.last_mut() {
            doc.insert(path.clone(), Node { key, value: at });
        }
        path
    }

    /// The position of `path` in document `doc`; falls back to the nearest ancestor
    /// that exists (a missing field points at its parent mapping).
    pub fn find(&self, doc: usize, path: &[Seg], anchor: Anchor) -> Pos {
        let Some(nodes) = self.docs.get(doc) else {
            return Pos { line: 1, column: 1 };
        };
        for len in (0..=path.len()).rev() {
            if let Some(node) = nodes.get(&path[..len]) {
                return match (anchor, node.key) {
                    (Anchor::Key, Some(k)) if len == path.len() => k,
                    _ => node.value,
                };
            }
        }
        self.doc_starts
            .get(doc)
            .copied()
            .unwrap_or(Pos { line: 1, column: 1 })
    }
}

trait DefaultKey {
    fn unwrap_or_default_key(self) -> (String, Pos);
}

impl DefaultKey for Option<(String, Pos)> {
    /// A complex (non-scalar) key has no text; index its value under an empty key.
    fn unwrap_or_default_key(self) -> (String, Pos) {
        self.unwrap_or((String::new(), Pos { line: 1, column: 1 }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::diagnostic::path;

    const TEXT: &str = "\
kind: Member
metadata:
  name: erin
spec:
  grants:
    - role: client-finance
    - role: client-staging-admin
      expires: 2026-12-15T18:00:00Z
---
kind: Role
metadata: {name: viewer}
";

    #[test]
    fn finds_values_keys_and_documents() {
        let index = PositionIndex::build(TEXT);
        let role = index.find(0, &path("spec.grants.1.role"), Anchor::Value);
        assert_eq!(
            role,
            Pos {
                line: 7,
                column: 13
            }
        );
        let key = index.find(0, &path("spec.grants.1.expires"), Anchor::Key);
        assert_eq!(key, Pos { line: 8, column: 7 });
        let name = index.find(1, &path("metadata.name"), Anchor::Value);
        assert_eq!(
            name,
            Pos {
                line: 11,
                column: 18
            }
        );
    }

    #[test]
    fn missing_paths_fall_back_to_the_parent() {
        let index = PositionIndex::build(TEXT);
        let missing = index.find(0, &path("spec.grants.0.client"), Anchor::Value);
        assert_eq!(missing, Pos { line: 6, column: 7 });
    }
}
