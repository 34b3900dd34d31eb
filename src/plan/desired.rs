//! Desired state at an instant: which entitlements each identity should hold on each
//! system, and why.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use crate::load::{Catalog, Member, ResolvedGrant};

/// A grant that yields an entitlement (for plans, reports and the audit): the checked
/// member and the grant's place among its resolved grants, so a plan holds two words
/// per entitlement instead of a copy of the grant's terms (it reads them through
/// `Deref`). Compared and serialised by those terms ([`Terms`]).
#[derive(Clone)]
pub struct Source {
    member: Arc<Member>,
    grant: u32,
}

/// What a [`Source`] is compared and serialised as: the grant's role, client and window.
#[derive(PartialEq, Eq, Serialize)]
struct Terms<'a> {
    role: &'a str,
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    starts: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// `expires` is the grant's review deadline (Policy `overdueReview: revoke`).
    #[serde(rename = "endsAtReview", skip_serializing_if = "std::ops::Not::not")]
    ends_at_review: bool,
}

impl std::ops::Deref for Source {
    type Target = ResolvedGrant;
    fn deref(&self) -> &ResolvedGrant {
        &self.member.grants[self.grant as usize]
    }
}

impl PartialEq for Source {
    fn eq(&self, other: &Source) -> bool {
        self.terms() == other.terms()
    }
}

impl Eq for Source {}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.terms();
        f.debug_struct("Source")
            .field("role", &t.role)
            .field("client", &t.client)
            .field("starts", &t.starts)
            .field("expires", &t.expires)
            .field("reason", &t.reason)
            .field("ends_at_review", &t.ends_at_review)
            .finish()
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.terms().serialize(s)
    }
}

impl Source {
    /// The member's grant at `index` of its resolved grants.
    fn of(member: &Arc<Member>, index: usize) -> Source {
        Source {
            member: member.clone(),
            grant: u32::try_from(index).expect("a member has fewer than 2^32 grants"),
        }
    }

    fn terms(&self) -> Terms<'_> {
        Terms {
            role: &self.role,
            client: &self.client,
            starts: self.starts,
            expires: self.expires,
            reason: self.reason.as_deref(),
            ends_at_review: self.ends_at_review,
        }
    }

    /// Why the grant's access ends once it has passed: its review was overdue, or it
    /// expired.
    pub fn end_reason(&self) -> super::Reason {
        if self.ends_at_review {
            super::Reason::ReviewOverdue
        } else {
            super::Reason::Expired
        }
    }
}

/// One identity's wanted account on one system. Its display name is the member's, read
/// through the grants behind it (a wanted account has at least one), not copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WantedAccount {
    /// Entitlement → the grants that yield it now.
    pub entitlements: Entitlements,
}

/// Entitlement → the grants that yield it, sorted by entitlement. An account holds a
/// few entitlements, so a sorted `Vec` (exactly as long as it is) replaces a `BTreeMap`,
/// whose first node reserves room for eleven: at 20,000 accounts that was 11 MB of a
/// plan's peak.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entitlements(Vec<(String, Sources)>);

/// The grants behind one entitlement: nearly always one, held inline.
pub type Sources = smallvec::SmallVec<[Source; 1]>;

impl Entitlements {
    fn find(&self, ent: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(e, _)| e.as_str().cmp(ent))
    }

    /// Adds `source` behind `ent`.
    pub fn add(&mut self, ent: String, source: Source) {
        match self.find(&ent) {
            Ok(i) => self.0[i].1.push(source),
            Err(i) => self.0.insert(i, (ent, smallvec::smallvec![source])),
        }
    }

    pub fn contains_key(&self, ent: &str) -> bool {
        self.find(ent).is_ok()
    }

    pub fn get(&self, ent: &str) -> Option<&[Source]> {
        self.find(ent).ok().map(|i| &self.0[i].1[..])
    }

    /// In entitlement order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &[Source])> {
        self.into_iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(e, _)| e)
    }

    pub fn values(&self) -> impl Iterator<Item = &[Source]> {
        self.0.iter().map(|(_, s)| &s[..])
    }

    /// Gives back the room a growing account reserved.
    fn shrink(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl<'a> IntoIterator for &'a Entitlements {
    type Item = (&'a String, &'a [Source]);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Sources)>,
        fn(&'a (String, Sources)) -> (&'a String, &'a [Source]),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(e, s)| (e, &s[..]))
    }
}

impl WantedAccount {
    /// The member's `displayName`, which a new account is created with.
    pub fn display_name(&self) -> Option<&str> {
        let source = self.entitlements.values().next()?.first()?;
        source.member.spec.display_name.as_deref()
    }

    /// The earliest `expires` among the grants behind the wanted entitlements (grants
    /// without one are ignored); None when none has one. Pushed down as the system's
    /// native expiry.
    pub fn earliest_expiry(&self) -> Option<Timestamp> {
        self.entitlements
            .values()
            .flatten()
            .filter_map(|s| s.expires)
            .min()
    }
}

/// Key of an entitlement anywhere: (system, identity, entitlement).
pub type EntKey = (String, String, String);

/// Desired state at `now`, plus what is declared regardless of time (to tell an
/// expired grant from undeclared drift).
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub now: Option<Timestamp>,
    /// System → identity → account. Accounts are shared with the [`DesiredCache`].
    pub systems: BTreeMap<String, BTreeMap<Arc<str>, Arc<WantedAccount>>>,
    /// Declared by a grant whose window has passed at `now`, with the grant.
    pub expired: BTreeMap<EntKey, Source>,
    /// Declared by a grant that has not started at `now`.
    pub pending: BTreeMap<EntKey, Source>,
    /// Every member declared (offboarded included), by identity: the catalogue's own
    /// map, shared rather than copied into sets.
    pub members: Arc<BTreeMap<String, Arc<Member>>>,
    /// The earliest future `starts` or `expires`: when desired state next changes.
    pub next_change: Option<Timestamp>,
    /// The latest `starts` or `expires` at or before `now`: desired state is the same
    /// for every instant from here up to `next_change`.
    pub since: Option<Timestamp>,
}

/// A shared name (an identity or a system) and the account wanted under it.
type Wanted = (Arc<str>, Arc<WantedAccount>);

/// One member's part of desired state, and the span of `now` over which it holds.
#[derive(Debug)]
struct MemberPart {
    /// System → account (the catalogue's shared name of the system).
    accounts: Vec<Wanted>,
    expired: Vec<(EntKey, Source)>,
    pending: Vec<(EntKey, Source)>,
    next_change: Option<Timestamp>,
    /// The part holds for `since <= now < next_change`: between the grant instants
    /// around `now`, every window test comes out the same.
    since: Option<Timestamp>,
}

impl MemberPart {
    fn holds_at(&self, now: Timestamp) -> bool {
        between(self.since, self.next_change, now)
    }
}

/// `since <= now < next_change`, an absent bound being open: the span between the grant
/// instants around the `now` something was evaluated at, where no window test flips.
fn between(since: Option<Timestamp>, next_change: Option<Timestamp>, now: Timestamp) -> bool {
    since.is_none_or(|s| s <= now) && next_change.is_none_or(|n| now < n)
}

/// Members' parts of desired state from earlier evaluations: a member whose checked
/// document is unchanged (the same `Arc` from the load cache) and whose grant windows
/// have not opened or closed since is not evaluated again.
#[derive(Default)]
pub struct DesiredCache {
    parts: HashMap<usize, CachedPart>,
    generation: u64,
}

struct CachedPart {
    /// Held so that the address in the key cannot be reused by another member.
    member: Arc<Member>,
    globals_id: u64,
    part: Arc<MemberPart>,
    used: u64,
}

/// Evaluations a part survives unused (the controller alternates between a revision
/// and the last applied one).
const KEEP_GENERATIONS: u64 = 4;

impl Desired {
    /// Evaluates the catalogue at `now`.
    pub fn at(cat: &Catalog, now: Timestamp) -> Desired {
        Desired::at_cached(cat, now, &mut DesiredCache::default())
    }

    /// Evaluates the catalogue at `now`, reusing the parts of unchanged members.
    pub fn at_cached(cat: &Catalog, now: Timestamp, cache: &mut DesiredCache) -> Desired {
        cache.generation += 1;
        let generation = cache.generation;
        let mut d = Desired {
            now: Some(now),
            members: cat.members.clone(),
            ..Desired::default()
        };
        // Per system, (identity, account) in identity order: built in bulk at the end
        // rather than inserted one by one.
        let mut systems: BTreeMap<String, Vec<Wanted>> = BTreeMap::new();
        for m in cat.members.values() {
            let key = Arc::as_ptr(m) as usize;
            let part = match cache.parts.get_mut(&key) {
                Some(c)
                    if Arc::ptr_eq(&c.member, m)
                        && c.globals_id == cat.globals_id
                        && c.part.holds_at(now) =>
                {
                    c.used = generation;
                    c.part.clone()
                }
                _ => {
                    let part = Arc::new(MemberPart::of(cat, m, now));
                    cache.parts.insert(
                        key,
                        CachedPart {
                            member: m.clone(),
                            globals_id: cat.globals_id,
                            part: part.clone(),
                            used: generation,
                        },
                    );
                    part
                }
            };
            for (system, account) in &part.accounts {
                // Look up before inserting: the system key is cloned only once.
                let accounts = match systems.get_mut(&**system) {
                    Some(a) => a,
                    None => systems.entry(system.to_string()).or_default(),
                };
                accounts.push((m.identity.clone(), account.clone()));
            }
            d.add(&part);
        }
        d.systems = systems
            .into_iter()
            .map(|(system, accounts)| (system, accounts.into_iter().collect()))
            .collect();
        let oldest = generation.saturating_sub(KEEP_GENERATIONS);
        cache.parts.retain(|_, c| c.used >= oldest);
        d
    }

    /// Adds one member's expired and pending grants and the span it holds for.
    fn add(&mut self, part: &MemberPart) {
        self.expired.extend(part.expired.iter().cloned());
        self.pending.extend(part.pending.iter().cloned());
        if let Some(n) = part.next_change {
            self.next_change = Some(self.next_change.map_or(n, |c| c.min(n)));
        }
        if let Some(s) = part.since {
            self.since = Some(self.since.map_or(s, |c| c.max(s)));
        }
    }

    /// True when evaluating the same catalogue at `now` gives this desired state again
    /// (`self.now` aside): no grant window opens or closes between the two instants.
    pub fn holds_at(&self, now: Timestamp) -> bool {
        between(self.since, self.next_change, now)
    }

    /// True when `identity` is declared by a Member (offboarded or not).
    pub fn declares_identity(&self, identity: &str) -> bool {
        self.members.contains_key(identity)
    }

    /// True when `identity` is declared and marked `offboarded: true`.
    pub fn is_offboarded(&self, identity: &str) -> bool {
        self.members
            .get(identity)
            .is_some_and(|m| m.spec.offboarded)
    }

    /// The client a declared identity belongs to.
    pub fn client_of(&self, identity: &str) -> Option<&String> {
        self.members.get(identity).map(|m| &m.spec.client)
    }

    /// True when the entitlement is declared, whatever the time.
    pub fn declares(&self, key: &EntKey) -> bool {
        let (system, identity, ent) = key;
        self.expired.contains_key(key)
            || self.pending.contains_key(key)
            || self
                .systems
                .get(system)
                .and_then(|a| a.get(identity.as_str()))
                .is_some_and(|a| a.entitlements.contains_key(ent))
    }
}

impl MemberPart {
    /// Evaluates one member's grants at `now`.
    fn of(cat: &Catalog, m: &Arc<Member>, now: Timestamp) -> MemberPart {
        let mut accounts: BTreeMap<&str, WantedAccount> = BTreeMap::new();
        let mut part = MemberPart {
            accounts: Vec::new(),
            expired: Vec::new(),
            pending: Vec::new(),
            next_change: None,
            since: None,
        };
        for (gi, g) in m.grants.iter().enumerate() {
            for instant in [g.starts, g.expires].into_iter().flatten() {
                if g.offboarded {
                    continue;
                }
                if instant > now {
                    part.next_change = Some(part.next_change.map_or(instant, |n| n.min(instant)));
                } else {
                    part.since = Some(part.since.map_or(instant, |s| s.max(instant)));
                }
            }
            let Some(role) = cat.roles.get(&*g.role) else {
                continue;
            };
            if g.offboarded {
                continue;
            }
            let active = g.active_at(now);
            for (system, patterns) in cat.reach(&role.spec, &g.client) {
                for p in patterns {
                    let ent = crate::load::entitlement(&system.spec, p, &g.client);
                    if active {
                        let acct = accounts.entry(&system.name).or_default();
                        acct.entitlements.add(ent, Source::of(m, gi));
                    } else {
                        let key = (system.name.clone(), g.identity.to_string(), ent);
                        if g.expires.is_some_and(|e| e <= now) {
                            part.expired.push((key, Source::of(m, gi)));
                        } else {
                            part.pending.push((key, Source::of(m, gi)));
                        }
                    }
                }
            }
        }
        part.accounts = accounts
            .into_iter()
            .map(|(system, mut a)| {
                a.entitlements.shrink();
                (cat.name(system), Arc::new(a))
            })
            .collect();
        part
    }
}
