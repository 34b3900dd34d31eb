//! The history index: for each closed month, the records of each person, so `history`
//! reads a few small blobs per month instead of every month file.
//!
//! Layout (docs/audit.md, "History index"), beside the month's checkpoint:
//!
//! - `ledger/YYYY/MM.index/XX.jsonl`: the month's ledger lines, byte for byte and in
//!   ledger order, of every record whose lower-cased `identity` falls in bucket `XX` (the
//!   first byte of its SHA-256, two hex digits; 256 buckets, empty ones not written);
//! - `ledger/YYYY/MM.index.json`: the manifest: the git blob id of the month file the
//!   index was built from, its record count, and how many lines each bucket holds.
//!
//! A month is indexed once, when the first record of the next month is written (a
//! month file never changes after that), so an apply writes at most one index.
//! `audit verify` rebuilds each index from its month and reports any difference;
//! `history` uses an index only when its manifest names the month file as it is.

use std::collections::{BTreeMap, HashMap};

use git2::{ObjectType, Oid};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ledger::FORMAT_VERSION;
use super::replay::month_label;

/// How many buckets a month's identities are spread over.
pub const BUCKETS: u32 = 256;

/// `ledger/2026/11.jsonl` → `ledger/2026/11.index.json`.
pub fn manifest_path(month: &str) -> String {
    format!("{}.index.json", month.trim_end_matches(".jsonl"))
}

/// `ledger/2026/11.jsonl` → `ledger/2026/11.index` (the buckets' directory).
pub fn bucket_dir(month: &str) -> String {
    format!("{}.index", month.trim_end_matches(".jsonl"))
}

/// The bucket name (`00`…`ff`) of an identity, compared case-insensitively as
/// `history` compares it.
pub fn bucket_of(identity: &str) -> String {
    hex::encode([bucket_number(identity)])
}

/// The bucket of an identity as a number: the first byte of the SHA-256 of its
/// lower-cased form.
fn bucket_number(identity: &str) -> u8 {
    Sha256::digest(identity.to_lowercase().as_bytes())[0]
}

/// The git blob id of `content`: what a month file's tree entry names, so `history` can
/// tell from the tree alone whether an index was built from the month file as it is.
pub fn blob_id(content: &[u8]) -> Oid {
    Oid::hash_object(ObjectType::Blob, content).unwrap_or(Oid::ZERO_SHA1)
}

/// `MM.index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub v: u32,
    /// `2026-11`.
    pub month: String,
    /// The git blob id of the month file indexed.
    pub ledger: String,
    /// Records in the month file.
    pub records: u64,
    /// How many buckets identities are spread over ([`BUCKETS`]).
    pub buckets: u32,
    /// Lines per non-empty bucket, by bucket name.
    pub counts: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// True when this manifest was built from the month file with blob id `ledger`.
    pub fn indexes(&self, ledger: Oid) -> bool {
        self.v == FORMAT_VERSION && self.buckets == BUCKETS && self.ledger == ledger.to_string()
    }
}

/// A month's index as it is built, line by line.
pub struct Builder {
    /// Lines and their count per bucket number.
    buckets: Vec<(u64, String)>,
    /// The bucket of each identity seen (a month names the same people many times).
    known: HashMap<String, u8>,
    records: u64,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            buckets: vec![(0, String::new()); BUCKETS as usize],
            known: HashMap::new(),
            records: 0,
        }
    }
}

impl Builder {
    /// Adds one ledger line (every line of the month, in order) and its identity.
    pub fn add(&mut self, identity: Option<&str>, line: &str) {
        self.records += 1;
        let Some(identity) = identity else {
            return;
        };
        let bucket = match self.known.get(identity) {
            Some(b) => *b,
            None => {
                let b = bucket_number(identity);
                self.known.insert(identity.to_string(), b);
                b
            }
        };
        let (count, text) = &mut self.buckets[usize::from(bucket)];
        *count += 1;
        text.push_str(line);
        text.push('\n');
    }

    /// The manifest and bucket files of `month` (paths relative to the audit root), the
    /// manifest first. `ledger` is the month file's blob id.
    pub fn finish(self, month: &str, ledger: Oid) -> Index {
        // Bucket names in number order are in name order too (two hex digits).
        let used: Vec<(String, u64, String)> = self
            .buckets
            .into_iter()
            .enumerate()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(b, (n, text))| (hex::encode([b as u8]), n, text))
            .collect();
        let manifest = Manifest {
            v: FORMAT_VERSION,
            month: month_label(month),
            ledger: ledger.to_string(),
            records: self.records,
            buckets: BUCKETS,
            counts: used.iter().map(|(b, n, _)| (b.clone(), *n)).collect(),
        };
        let dir = bucket_dir(month);
        Index {
            manifest: (manifest_path(month), manifest.to_json()),
            buckets: used
                .into_iter()
                .map(|(b, _, text)| (format!("{dir}/{b}.jsonl"), text))
                .collect(),
        }
    }
}

/// A month's index files, paths relative to the audit root.
pub struct Index {
    pub manifest: (String, String),
    pub buckets: Vec<(String, String)>,
}

impl Index {
    /// Every file, the manifest first.
    pub fn files(self) -> Vec<(String, String)> {
        std::iter::once(self.manifest).chain(self.buckets).collect()
    }
}

/// Builds the index of a month file from its content (the write path, at the month's
/// close).
pub fn build(month: &str, content: &str) -> Index {
    let mut b = Builder::default();
    for line in content.lines() {
        b.add(identity_of(line).as_deref(), line);
    }
    b.finish(month, blob_id(content.as_bytes()))
}

/// The `identity` a ledger line is indexed under; none for a line that does not parse
/// (verify reports such a line anyway).
pub fn identity_of(line: &str) -> Option<String> {
    serde_json::from_str::<IdentityOnly>(line)
        .ok()
        .and_then(|r| r.identity)
}

/// The one field the index is keyed on.
#[derive(Deserialize)]
struct IdentityOnly {
    #[serde(default)]
    identity: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_ignore_case_and_spread_identities() {
        assert_eq!(
            bucket_of("Erin@Acme.example"),
            bucket_of("erin@acme.example")
        );
        let distinct: std::collections::BTreeSet<String> = (0..2000)
            .map(|i| bucket_of(&format!("p{i}@x.example")))
            .collect();
        assert_eq!(distinct.len(), BUCKETS as usize);
    }

    #[test]
    fn an_index_holds_each_persons_lines_in_order_and_names_its_month_file() {
        let content = "{\"identity\":\"a@x.example\",\"n\":1}\n{\"n\":2}\n{\"identity\":\"A@x.example\",\"n\":3}\n";
        let index = build("ledger/2026/11.jsonl", content);
        let (path, manifest) = &index.manifest;
        assert_eq!(path, "ledger/2026/11.index.json");
        let m: Manifest = serde_json::from_str(manifest).unwrap();
        assert_eq!(m.records, 3);
        assert!(m.indexes(blob_id(content.as_bytes())));
        assert!(!m.indexes(blob_id(b"other")));
        let b = bucket_of("a@x.example");
        assert_eq!(m.counts.get(&b), Some(&2));
        assert_eq!(
            index.buckets,
            [(
                format!("ledger/2026/11.index/{b}.jsonl"),
                "{\"identity\":\"a@x.example\",\"n\":1}\n{\"identity\":\"A@x.example\",\"n\":3}\n"
                    .to_string()
            )]
        );
    }
}
