//! The entitlements an account holds, as a sorted `Vec` of exactly their number.
//!
//! A snapshot holds one set per account, and an account holds a few entitlements: a
//! `BTreeSet` reserves a node for eleven at the first insert (5.6 MB of a 20,000-account
//! plan's peak for three each). Lookups are binary searches; inserting keeps the order.

use serde::{Deserialize, Serialize};

/// A set of entitlement names, in order, without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct EntitlementSet(Vec<String>);

impl EntitlementSet {
    pub fn new() -> EntitlementSet {
        EntitlementSet(Vec::new())
    }

    /// Adds `e`; false when it was there already.
    pub fn insert(&mut self, e: String) -> bool {
        match self.0.binary_search(&e) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, e);
                true
            }
        }
    }

    pub fn contains(&self, e: &str) -> bool {
        self.0.binary_search_by(|x| x.as_str().cmp(e)).is_ok()
    }

    /// Removes `e`; false when it was not there.
    pub fn remove(&mut self, e: &str) -> bool {
        match self.0.binary_search_by(|x| x.as_str().cmp(e)) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves every entitlement of `other` into this set, leaving `other` empty.
    pub fn append(&mut self, other: &mut EntitlementSet) {
        let theirs = std::mem::take(&mut other.0);
        self.extend(theirs);
    }

    /// In order.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<String>> for EntitlementSet {
    fn from(mut v: Vec<String>) -> EntitlementSet {
        v.sort_unstable();
        v.dedup();
        EntitlementSet(v)
    }
}

impl<const N: usize> From<[String; N]> for EntitlementSet {
    fn from(a: [String; N]) -> EntitlementSet {
        EntitlementSet::from(Vec::from(a))
    }
}

impl From<EntitlementSet> for Vec<String> {
    fn from(s: EntitlementSet) -> Vec<String> {
        s.0
    }
}

impl FromIterator<String> for EntitlementSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> EntitlementSet {
        EntitlementSet::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl Extend<String> for EntitlementSet {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        self.0.extend(iter);
        self.0.sort_unstable();
        self.0.dedup();
    }
}

impl IntoIterator for EntitlementSet {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a EntitlementSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_a_set_in_order() {
        let mut s: EntitlementSet = ["b", "a", "b"].map(String::from).into_iter().collect();
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(s.insert("c".into()));
        assert!(!s.insert("a".into()));
        assert!(s.contains("c") && !s.contains("d"));
        assert!(s.remove("a") && !s.remove("a"));
        let mut other: EntitlementSet = ["a", "c"].map(String::from).into_iter().collect();
        s.append(&mut other);
        assert!(other.is_empty());
        assert_eq!(s.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(s.len(), 3);
        // Read back from JSON (the exec protocol) in any order, with repeats: a set.
        let read: EntitlementSet = serde_json::from_str(r#"["z", "a", "z"]"#).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), r#"["a","z"]"#);
    }
}
