//! The page's side of the repository: reading the branch, turning an action into a
//! reviewed commit, and publishing it. Blocking (git and the loader); the handlers call
//! it from `spawn_blocking`, one request at a time.

use std::time::{Duration, Instant};

use git2::{Oid, Signature};
use jiff::Timestamp;

use super::edit::{self, Action, Found, NewPerson};
use super::oidc::Identity;
use super::pages::{AccessRow, ClientLink, GrantRow, HistoryRow, PendingRow, PersonRow};
use crate::audit::{audit_root, replay, store::LedgerSource};
use crate::connectors::{Registry, SecretSource};
use crate::load::{Catalog, Loaded, client_folder};
use crate::model::identity;
use crate::plan::proposed;
use crate::plan::review::Review;
use crate::reconcile::Reconciler;
use crate::source::{Revision, SourceError, SourceRepo, error_chain};
use crate::trust::boundary::BoundaryReport;

/// How stale the branch may be for a page that only shows it; an action always
/// fetches first.
const SHOW_MAX_AGE: Duration = Duration::from_secs(5);

/// The repository as the page uses it.
pub struct Workspace {
    rec: Reconciler,
    subpath: String,
    branch: String,
    fetched: Option<Instant>,
}

/// The branch's tip, loaded at an instant.
pub struct Tip {
    pub rev: Revision,
    pub loaded: Loaded,
}

/// A reviewed commit, not yet on any branch.
pub struct Proposed {
    pub commit: Oid,
    pub base: Oid,
    pub subject: String,
    pub review: Review,
    pub boundary: BoundaryReport,
    pub diff: String,
    pub direct: bool,
}

/// Why an action was not turned into a commit.
#[derive(Debug)]
pub enum Refusal {
    /// Not this person's client (403).
    Forbidden(String),
    /// The change breaks a check (422): each reason says what is wrong.
    Invalid(Vec<String>),
    /// git or the loader failed (503): nothing was changed.
    Failed(String),
}

impl From<SourceError> for Refusal {
    fn from(e: SourceError) -> Refusal {
        Refusal::Failed(error_chain(&e))
    }
}

impl From<git2::Error> for Refusal {
    fn from(e: git2::Error) -> Refusal {
        Refusal::Failed(crate::source::git_message(&e))
    }
}

/// Where a confirmed change went.
pub struct Published {
    pub branch: String,
    pub direct: bool,
}

impl Workspace {
    /// Mirrors `repo` (fetched now) for the page.
    pub fn new(repo: SourceRepo, branch: String, subpath: String) -> Workspace {
        Workspace {
            rec: Reconciler::new(repo, Registry::builtin(SecretSource::default())),
            subpath,
            branch,
            fetched: Some(Instant::now()),
        }
    }

    /// The branch the page commits to.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Loads the branch's tip at `now`, fetching first when the last fetch is older
    /// than `max_age`.
    pub fn tip(&mut self, now: Timestamp, max_age: Duration) -> Result<Tip, SourceError> {
        if self.fetched.is_none_or(|t| t.elapsed() >= max_age) {
            self.rec.repo.fetch()?;
            self.fetched = Some(Instant::now());
        }
        let rev = self.rec.repo.resolve(&self.branch)?;
        let loaded = self.rec.load(&rev, &self.subpath, now)?;
        Ok(Tip { rev, loaded })
    }

    /// The tip for a page that only shows it.
    pub fn tip_to_show(&mut self, now: Timestamp) -> Result<Tip, SourceError> {
        self.tip(now, SHOW_MAX_AGE)
    }

    /// The people of `client` as the tip declares them.
    pub fn people(&self, tip: &Tip, client: &str) -> Vec<PersonRow> {
        let cat = &tip.loaded.catalog;
        let mut rows: Vec<PersonRow> = cat
            .members
            .values()
            .filter(|m| m.spec.client == client)
            .map(|m| PersonRow {
                email: m.spec.email.clone(),
                display_name: m.spec.display_name.clone(),
                offboarded: m.spec.offboarded,
                grants: m
                    .grants
                    .iter()
                    .filter(|g| g.client == client)
                    .map(|g| GrantRow {
                        role: g.role.clone(),
                        starts: g.starts,
                        expires: g.expires,
                        reason: g.reason.clone(),
                        review_due: g.review_due,
                        windowed: m
                            .spec
                            .grants
                            .get(g.index)
                            .is_some_and(|d| d.valid_for.is_some() || d.starts.is_some()),
                    })
                    .collect(),
            })
            .collect();
        rows.sort_by(|a, b| (a.offboarded, &a.email).cmp(&(b.offboarded, &b.email)));
        rows
    }

    /// Changes the page pushed for `client` that the branch does not hold yet.
    pub fn pending(&self, tip: &Tip, client: &str) -> Vec<PendingRow> {
        let git = self.rec.repo.git();
        let prefix = format!("refs/remotes/origin/latchkey/{client}/");
        let Ok(refs) = git.references_glob(&format!("{prefix}*")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in refs.flatten() {
            let (Ok(name), Some(oid)) = (r.name().map(str::to_string), r.target()) else {
                continue;
            };
            let merged =
                oid == tip.rev.oid || git.graph_descendant_of(tip.rev.oid, oid).unwrap_or(false);
            let Ok(c) = git.find_commit(oid) else {
                continue;
            };
            if merged {
                continue;
            }
            out.push(PendingRow {
                branch: name.trim_start_matches("refs/remotes/origin/").to_string(),
                subject: c.summary().ok().flatten().unwrap_or("").to_string(),
                author: c.author().email().unwrap_or("").to_string(),
                when: Timestamp::from_second(c.time().seconds()).unwrap_or_default(),
            });
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.when));
        out
    }

    /// Who had access to `client` at `at`, as the ledger at the tip records it.
    pub fn access_at(
        &self,
        tip: &Tip,
        client: &str,
        at: Timestamp,
    ) -> Result<Vec<AccessRow>, String> {
        let src = self.ledger(tip);
        let state = replay::state_at(&src, at).map_err(|e| error_chain(&e))?;
        Ok(state
            .entries()
            .filter(|a| a.client.as_deref() == Some(client))
            .map(|a| AccessRow {
                identity: a.identity.clone(),
                system: a.system.clone(),
                entitlement: a.entitlement.clone(),
                role: a.role.clone().unwrap_or_default(),
                since: a.since,
                until: a.expires,
            })
            .collect())
    }

    /// The ledger's records of `email` for `client` (never another client's).
    pub fn history(&self, tip: &Tip, client: &str, email: &str) -> Result<Vec<HistoryRow>, String> {
        let src = self.ledger(tip);
        let records = replay::history(&src, email).map_err(|e| error_chain(&e))?;
        Ok(records
            .into_iter()
            .filter(|r| r.client.as_deref() == Some(client))
            .map(|r| HistoryRow {
                time: r.time,
                system: r.system.unwrap_or_default(),
                change: r.change.unwrap_or_default(),
                entitlement: r.entitlement.unwrap_or_default(),
                reason: r.reason.unwrap_or_default(),
                result: r.result.unwrap_or_default(),
            })
            .collect())
    }

    fn ledger(&self, tip: &Tip) -> LedgerSource<'_> {
        LedgerSource::Git {
            repo: &self.rec.repo,
            rev: tip.rev.clone(),
            root: audit_root(&self.subpath),
        }
    }

    /// Turns `action` into a commit on the freshly fetched tip, authored by `who`, and
    /// reviews it exactly as `latchkey check` reviews a pull request: client
    /// boundaries, validation, and the effective-access change. Anything that would
    /// fail there is refused here, before anything is pushed.
    pub fn propose(
        &mut self,
        client: &str,
        action: &Action,
        who: &Identity,
        now: Timestamp,
    ) -> Result<Proposed, Refusal> {
        let tip = self.tip(now, Duration::ZERO)?;
        let cat = &tip.loaded.catalog;
        let Some(c) = cat.clients.get(client) else {
            return Err(Refusal::Forbidden(format!("there is no client {client:?}")));
        };
        if !admin_of(cat, client, &who.email) {
            return Err(Refusal::Forbidden(format!(
                "{} is not an admin of {client}",
                who.email
            )));
        }
        let direct = c.spec.direct_commits;
        let (file, old, new) = self.edit(&tip, client, action).map_err(|e| match e {
            EditOr::Edit(e) => Refusal::Invalid(vec![e.to_string()]),
            EditOr::Source(e) => e.into(),
        })?;
        let full = self.full_path(&file);
        let author = Signature::now(&who.name, &who.email)?;
        let subject = action.subject(client);
        let mut message = format!("{subject}\n\n");
        if let Some(r) = action.reason() {
            message.push_str(&format!("Reason: {r}\n"));
        }
        message.push_str(&format!(
            "Requested by {} on the self-service page (latchkey serve).\n",
            who.email
        ));
        let commit = self.rec.repo.commit_files(
            tip.rev.oid,
            &[(full.clone(), new.clone())],
            &author,
            &message,
        )?;
        let base = tip.rev.oid;
        drop(tip);
        let (boundary, review) = proposed::review_change(
            &mut self.rec,
            &self.subpath,
            &base.to_string(),
            &commit.to_string(),
            now,
        )?;
        let mut reasons: Vec<String> = boundary.violations.iter().map(|v| v.to_string()).collect();
        reasons.extend(review.head_errors.iter().cloned());
        // A boundary and validation may both name one mistake: say it once.
        let mut seen = std::collections::HashSet::new();
        reasons.retain(|r| seen.insert(r.clone()));
        if !reasons.is_empty() {
            return Err(Refusal::Invalid(reasons));
        }
        let diff = similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(4)
            .header(&full, &full)
            .to_string();
        Ok(Proposed {
            commit,
            base,
            subject,
            review,
            boundary,
            diff,
            direct,
        })
    }

    /// The file `action` changes (relative to the documents' root), its text before and
    /// after.
    fn edit(
        &self,
        tip: &Tip,
        client: &str,
        action: &Action,
    ) -> Result<(String, String, String), EditOr> {
        let cat = &tip.loaded.catalog;
        let person = cat.members.get(&identity(action.email()));
        let read = |file: &str| -> Result<String, EditOr> {
            Ok(self
                .rec
                .repo
                .file_at(&tip.rev, &self.full_path(file))
                .map_err(EditOr::Source)?
                .unwrap_or_default())
        };
        match (action, person) {
            (Action::Invite { email, .. }, Some(m)) if m.spec.client != client => {
                Err(EditOr::Edit(edit::EditError::ElsewhereDeclared {
                    email: email.clone(),
                    client: m.spec.client.clone(),
                }))
            }
            (Action::Invite { .. }, None) => {
                let file = members_file(cat, client);
                let text = read(&file)?;
                let taken = |n: &str| cat.members.values().any(|m| m.name == n);
                let new = NewPerson {
                    file: &file,
                    text: &text,
                    name: edit::member_name(action.email(), &taken),
                };
                let out = edit::add_person(&new, client, action).map_err(EditOr::Edit)?;
                Ok((file, text, out))
            }
            (_, Some(m)) if m.spec.client == client => {
                let file = m.at.file.to_string();
                if client_folder(&file) != Some(client) {
                    return Err(EditOr::Edit(edit::EditError::OutsideFolder {
                        email: m.spec.email.clone(),
                        file,
                    }));
                }
                let text = read(&file)?;
                let found = Found {
                    file: &file,
                    doc: m.at.doc,
                    name: &m.name,
                    spec: &m.spec,
                };
                let out = edit::edit_existing(&text, &found, action).map_err(EditOr::Edit)?;
                Ok((file, text, out))
            }
            _ => Err(EditOr::Edit(edit::EditError::NotMember {
                email: action.email().to_string(),
            })),
        }
    }

    fn full_path(&self, file: &str) -> String {
        let sub = self.subpath.trim_matches('/');
        if sub.is_empty() {
            file.to_string()
        } else {
            format!("{sub}/{file}")
        }
    }

    /// Publishes a reviewed commit: on the branch itself when the Client allows direct
    /// commits, else on a new `latchkey/<client>/<commit>` branch for a pull request.
    /// Returns `Ok(None)` when the branch moved since the review: the change must be
    /// reviewed again on the new tip, never pushed over it.
    pub fn publish(
        &mut self,
        client: &str,
        commit: Oid,
        base: Oid,
        now: Timestamp,
    ) -> Result<Option<Published>, Refusal> {
        let tip = self.tip(now, Duration::ZERO)?;
        if tip.rev.oid != base {
            return Ok(None);
        }
        // The setting is read at the tip the change lands on, never at the proposal's.
        let direct = tip
            .loaded
            .catalog
            .clients
            .get(client)
            .is_some_and(|c| c.spec.direct_commits);
        let branch = if direct {
            self.branch.clone()
        } else {
            format!("latchkey/{client}/{}", &commit.to_string()[..12])
        };
        let expected = direct.then_some(base);
        if let Err(e) = self.rec.repo.publish(commit, &branch, expected) {
            // Rejected as a non-fast-forward: somebody pushed in between.
            self.rec.repo.fetch()?;
            if self.rec.repo.resolve(&self.branch)?.oid != base {
                return Ok(None);
            }
            return Err(e.into());
        }
        self.fetched = None;
        Ok(Some(Published { branch, direct }))
    }
}

/// An edit's own refusal, or git failing under it.
enum EditOr {
    Edit(edit::EditError),
    Source(SourceError),
}

/// True when `email` administers `client`, or the agency (whose admins manage every
/// client).
pub fn admin_of(cat: &Catalog, client: &str, email: &str) -> bool {
    let id = identity(email);
    let admins = |c: &str| {
        cat.clients
            .get(c)
            .is_some_and(|c| c.spec.admins.iter().any(|a| identity(a) == id))
    };
    cat.clients.contains_key(client) && (admins(client) || cat.agency().is_some_and(admins))
}

/// The clients `email` may manage on the page (the agency's own team is managed in git).
pub fn clients_of(cat: &Catalog, email: &str) -> Vec<ClientLink> {
    cat.clients
        .iter()
        .filter(|(name, _)| Some(name.as_str()) != cat.agency() && admin_of(cat, name, email))
        .map(|(name, c)| ClientLink {
            name: name.clone(),
            display: c.spec.display_name.clone().unwrap_or_else(|| name.clone()),
        })
        .collect()
}

/// The client's file that holds most of its people, else `clients/<client>/members.yaml`.
fn members_file(cat: &Catalog, client: &str) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for m in cat.members.values() {
        if m.spec.client == client && client_folder(&m.at.file) == Some(client) {
            *counts.entry(&m.at.file).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(f, n)| (*n, std::cmp::Reverse(*f)))
        .map(|(f, _)| f.to_string())
        .unwrap_or_else(|| format!("clients/{client}/members.yaml"))
}
