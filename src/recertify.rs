//! Access reviews (recertification): which grants fall due for review, per client and
//! person, with who granted them and when (docs/reviews.md).
//!
//! The due instants come from the load (`ResolvedGrant::review_due`): the last
//! `reviewed.at`, or the grant's merge, plus the client's `reviewEvery`. This module
//! only selects and groups them; who granted a grant is the author of the commit that
//! introduced its terms, which history answers.

use jiff::Timestamp;
use serde::Serialize;

use crate::load::{Catalog, review_every};
use crate::model::{Grant, GrantDuration, Review};
use crate::source::history::Introduced;

/// The grants due within a window, by client.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewList {
    /// The instant the list was made for.
    pub now: Timestamp,
    /// Grants due up to `now` + this are listed.
    pub within: String,
    /// Clients with at least one grant listed, by name.
    pub clients: Vec<ClientReview>,
}

impl ReviewList {
    /// True when some listed grant is overdue.
    pub fn any_overdue(&self) -> bool {
        self.clients
            .iter()
            .flat_map(|c| &c.grants)
            .any(|g| g.overdue)
    }

    /// Number of grants listed.
    pub fn len(&self) -> usize {
        self.clients.iter().map(|c| c.grants.len()).sum()
    }

    /// True when nothing is due.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One client's grants to review, and who reviews them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientReview {
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The client's admins: the people a review pull request is for.
    pub admins: Vec<String>,
    /// Ordered by person, then by due instant.
    pub grants: Vec<DueGrant>,
}

/// One grant whose review is due or overdue.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DueGrant {
    /// The person's identity (lowercase email).
    pub identity: String,
    /// The Member document's name and file: where `reviewed` is set.
    pub member: String,
    pub file: String,
    pub role: String,
    /// The grant's index in the member's `grants`.
    pub index: usize,
    pub due: Timestamp,
    pub review_every: String,
    /// `due` is at or before `now`.
    pub overdue: bool,
    /// The due instant ended the grant (Policy `overdueReview: revoke`).
    pub ends_at_review: bool,
    /// The last review; none when the grant was never reviewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<Review>,
    /// The author of the commit that introduced the grant, when history holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
    /// That commit's time: when the grant was merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_in: Option<String>,
}

/// The grants of `cat` (of client `only`, when given) whose review falls due by
/// `now + within`. `introduced` answers which commit introduced a grant.
pub fn due_within(
    cat: &Catalog,
    now: Timestamp,
    within: GrantDuration,
    only: Option<&str>,
    introduced: &dyn Fn(&str, &Grant) -> Option<Introduced>,
) -> ReviewList {
    let horizon = now.checked_add(within.as_signed()).unwrap_or(now);
    let mut clients: std::collections::BTreeMap<&str, ClientReview> = Default::default();
    for m in cat.members.values() {
        for g in &m.grants {
            let Some(due) = g.review_due else { continue };
            if due > horizon || only.is_some_and(|c| *c != *g.client) {
                continue;
            }
            let Some(client) = cat.clients.get(&*g.client) else {
                continue;
            };
            let grant = &m.spec.grants[g.index as usize];
            let from = introduced(&g.identity, grant);
            let every = review_every(cat, &g.client).map(|d| d.to_string());
            clients
                .entry(&client.name)
                .or_insert_with(|| ClientReview {
                    client: client.name.clone(),
                    display_name: client.spec.display_name.clone(),
                    admins: client.spec.admins.clone(),
                    grants: Vec::new(),
                })
                .grants
                .push(DueGrant {
                    identity: g.identity.to_string(),
                    member: m.name.clone(),
                    file: m.at.file.to_string(),
                    role: g.role.to_string(),
                    index: g.index as usize,
                    due,
                    review_every: every.unwrap_or_default(),
                    overdue: due <= now,
                    ends_at_review: g.ends_at_review,
                    reviewed: grant.reviewed.as_deref().cloned(),
                    granted_by: from.as_ref().map(|i| i.author.clone()),
                    granted_at: from.as_ref().map(|i| i.time),
                    granted_in: from.map(|i| i.commit.to_string()),
                });
        }
    }
    let mut clients: Vec<ClientReview> = clients.into_values().collect();
    for c in &mut clients {
        c.grants
            .sort_by(|a, b| (&a.identity, a.due, a.index).cmp(&(&b.identity, b.due, b.index)));
    }
    ReviewList {
        now,
        within: within.to_string(),
        clients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_text;

    /// Acme reviews every 30 days; Erin's grant was reviewed on 2026-10-01, Frank's on
    /// 2026-11-10.
    fn repo() -> String {
        let repo = crate::load::TEST_REPO.replace(
            "spec: {allowedRoles: [viewer]}",
            "spec: {allowedRoles: [viewer], reviewEvery: 30d, admins: [dana@acme.example]}",
        );
        let frank = "---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata: {name: frank}\nspec:\n  email: frank@acme.example\n  client: acme\n  grants:\n";
        let grant = |at: &str| {
            format!("    - {{role: viewer, reviewed: {{at: {at}, by: dana@acme.example}}}}\n")
        };
        format!(
            "{repo}{}{frank}{}",
            grant("2026-10-01T00:00:00Z"),
            grant("2026-11-10T00:00:00Z")
        )
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn lists_what_falls_due_in_the_window_and_marks_what_is_overdue() {
        let l = load_text("latchkey.yaml", &repo(), at("2026-11-20T00:00:00Z"));
        let none = |_: &str, _: &Grant| None;
        let week = GrantDuration::parse("7d").unwrap();
        // Erin's review was due on 2026-10-31: overdue. Frank's falls due on 12-10.
        let list = due_within(&l.catalog, at("2026-11-20T00:00:00Z"), week, None, &none);
        let acme = &list.clients[0];
        assert_eq!(acme.admins, ["dana@acme.example"]);
        let rows: Vec<_> = acme
            .grants
            .iter()
            .map(|g| (g.identity.as_str(), g.due.to_string(), g.overdue))
            .collect();
        assert_eq!(
            rows,
            [("erin@acme.example", "2026-10-31T00:00:00Z".into(), true)]
        );
        assert!(list.any_overdue());
        // Three weeks ahead, Frank's is due too, not yet overdue.
        let list = due_within(
            &l.catalog,
            at("2026-11-20T00:00:00Z"),
            GrantDuration::parse("21d").unwrap(),
            None,
            &none,
        );
        assert_eq!(list.len(), 2);
        assert!(!list.clients[0].grants[1].overdue);
        // Another client: nothing.
        let list = due_within(
            &l.catalog,
            at("2026-11-20T00:00:00Z"),
            week,
            Some("globex"),
            &none,
        );
        assert!(list.is_empty());
    }
}
