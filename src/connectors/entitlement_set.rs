//! The entitlements an account holds, as a sorted `Vec` of exactly their number.
//!
//! A snapshot holds one set per account, and an account holds a few entitlements: a
//! `BTreeSet` reserves a node for eleven at the first insert (5.6 MB of a 20,000-account
//! plan's peak for three each). Lookups are binary searches; inserting keeps the order.
//! The names are shared strings: a connector reading a large system hands the same
//! `Arc<str>` to every account holding one entitlement ([`EntitlementSet::insert_shared`]),
//! as a portal's 600,000 role rows name a few tens of thousands of entitlements.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A set of entitlement names, in order, without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct EntitlementSet(Vec<Arc<str>>);

impl EntitlementSet {
    pub fn new() -> EntitlementSet {
        EntitlementSet(Vec::new())
    }

    /// Adds `e`; false when it was there already.
    pub fn insert(&mut self, e: String) -> bool {
        self.insert_shared(Arc::from(e))
    }

    /// Adds `e`, keeping this copy of the name; false when it was there already.
    pub fn insert_shared(&mut self, e: Arc<str>) -> bool {
        match self.find(&e) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, e);
                true
            }
        }
    }

    fn find(&self, e: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|x| (**x).cmp(e))
    }

    pub fn contains(&self, e: &str) -> bool {
        self.find(e).is_ok()
    }

    /// Removes `e`; false when it was not there.
    pub fn remove(&mut self, e: &str) -> bool {
        match self.find(e) {
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
        self.absorb(theirs);
    }

    /// Adds every name of `names`, then puts the set back in order without repeats.
    fn absorb(&mut self, names: impl IntoIterator<Item = Arc<str>>) {
        self.0.extend(names);
        self.0.sort_unstable();
        self.0.dedup();
    }

    /// In order.
    pub fn iter(&self) -> Iter<'_> {
        self.0.iter().map(|e| &**e)
    }

    /// Frees the room kept for more entitlements than the set holds.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The names of a set, in order.
pub type Iter<'a> = std::iter::Map<std::slice::Iter<'a, Arc<str>>, fn(&Arc<str>) -> &str>;

impl From<Vec<String>> for EntitlementSet {
    fn from(v: Vec<String>) -> EntitlementSet {
        let mut set = EntitlementSet::new();
        set.extend(v);
        set
    }
}

impl<const N: usize> From<[String; N]> for EntitlementSet {
    fn from(a: [String; N]) -> EntitlementSet {
        EntitlementSet::from(Vec::from(a))
    }
}

impl From<EntitlementSet> for Vec<String> {
    fn from(s: EntitlementSet) -> Vec<String> {
        s.0.iter().map(|e| e.to_string()).collect()
    }
}

impl FromIterator<String> for EntitlementSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> EntitlementSet {
        EntitlementSet::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl Extend<String> for EntitlementSet {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        self.absorb(iter.into_iter().map(Arc::from));
    }
}

impl IntoIterator for EntitlementSet {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        Vec::from(self).into_iter()
    }
}

impl<'a> IntoIterator for &'a EntitlementSet {
    type Item = &'a str;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
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

    #[test]
    fn a_shared_name_is_kept_not_copied() {
        let name: Arc<str> = Arc::from("acme-viewers");
        let mut s = EntitlementSet::new();
        assert!(s.insert_shared(name.clone()));
        assert!(!s.insert_shared(name.clone()) && !s.insert("acme-viewers".into()));
        assert_eq!(
            Arc::strong_count(&name),
            2,
            "one copy in the set, none made"
        );
        assert_eq!(s.iter().collect::<Vec<_>>(), ["acme-viewers"]);
    }
}
