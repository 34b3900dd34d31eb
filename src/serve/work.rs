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
#[derive(Debug)]
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
                    .filter(|g| *g.client == *client)
                    .map(|g| GrantRow {
                        role: g.role.to_string(),
                        starts: g.starts,
                        expires: g.expires,
                        reason: g.reason.as_deref().map(str::to_string),
                        review_due: g.review_due,
                        windowed: m
                            .spec
                            .grants
                            .get(g.index as usize)
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
    /// `email` must still administer the client at the tip (the agency may have
    /// removed them since the review).
    pub fn publish(
        &mut self,
        client: &str,
        email: &str,
        commit: Oid,
        base: Oid,
        now: Timestamp,
    ) -> Result<Option<Published>, Refusal> {
        let tip = self.tip(now, Duration::ZERO)?;
        if !admin_of(&tip.loaded.catalog, client, email) {
            return Err(Refusal::Forbidden(format!(
                "{email} is no longer an admin of {client}"
            )));
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::source::Location;

    /// A bare remote holding examples/agency, and a page's workspace mirroring it.
    fn remote() -> (tempfile::TempDir, git2::Repository, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).initial_head("main");
        let repo = git2::Repository::init_opts(dir.path().join("remote.git"), &opts).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency");
        let mut files = Vec::new();
        for sub in [
            "",
            "team",
            "roles",
            "clients/acme",
            "clients/globex",
            "clients/initech",
        ] {
            for e in std::fs::read_dir(example.join(sub)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "yaml") {
                    let rel = p
                        .strip_prefix(&example)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    files.push((rel, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        commit_on(&repo, None, &files, "the example");
        let ws = Workspace::new(
            SourceRepo::open(
                &Location::parse(&format!(
                    "file://{}",
                    dir.path().join("remote.git").display()
                )),
                &dir.path().join("cache"),
            )
            .unwrap(),
            "main".into(),
            String::new(),
        );
        (dir, repo, ws)
    }

    /// Commits `files` on the remote's main (as the agency would push).
    fn commit_on(
        repo: &git2::Repository,
        parent: Option<Oid>,
        files: &[(String, String)],
        msg: &str,
    ) -> Oid {
        let base = match parent {
            Some(p) => repo.find_commit(p).unwrap().tree().unwrap(),
            None => repo
                .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
                .unwrap(),
        };
        let mut up = git2::build::TreeUpdateBuilder::new();
        for (p, t) in files {
            up.upsert(
                p.as_str(),
                repo.blob(t.as_bytes()).unwrap(),
                git2::FileMode::Blob,
            );
        }
        let tree = repo
            .find_tree(up.create_updated(repo, &base).unwrap())
            .unwrap();
        let sig = git2::Signature::now("Alex", "alex@northwind.example").unwrap();
        let parents: Vec<git2::Commit> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("refs/heads/main"), &sig, &sig, msg, &tree, &refs)
            .unwrap()
    }

    fn dana() -> Identity {
        Identity {
            email: "dana@acme.example".into(),
            name: "Dana".into(),
        }
    }

    fn invite(email: &str, role: &str) -> Action {
        Action::Invite {
            email: email.into(),
            display_name: None,
            role: role.into(),
            expires: Some(Timestamp::now() + jiff::SignedDuration::from_hours(48)),
            reason: Some("onboarding".into()),
        }
    }

    fn main_of(repo: &git2::Repository) -> Oid {
        repo.refname_to_id("refs/heads/main").unwrap()
    }

    #[test]
    fn a_branch_that_moved_since_the_review_is_never_pushed_over() {
        let (_dir, repo, mut ws) = remote();
        let now = Timestamp::now();
        let p = ws
            .propose(
                "acme",
                &invite("zoe@acme.example", "client-viewer"),
                &dana(),
                now,
            )
            .unwrap();
        // The agency pushes between Dana's review and her confirmation.
        let theirs = commit_on(
            &repo,
            Some(main_of(&repo)),
            &[("team/notes.yaml".into(), "# a note\n".into())],
            "agency change",
        );
        let published = ws
            .publish("acme", "dana@acme.example", p.commit, p.base, now)
            .unwrap();
        assert!(published.is_none(), "a moved branch asks for a new review");
        assert_eq!(main_of(&repo), theirs, "the agency's commit stays");
        assert!(
            repo.find_commit(p.commit).is_err(),
            "the proposal never reached the remote"
        );
        // Reviewed again on the new tip, it lands on top of the agency's commit (as a
        // branch: acme has no directCommits).
        let again = ws
            .propose(
                "acme",
                &invite("zoe@acme.example", "client-viewer"),
                &dana(),
                now,
            )
            .unwrap();
        assert_eq!(again.base, theirs);
        let published = ws
            .publish("acme", "dana@acme.example", again.commit, again.base, now)
            .unwrap()
            .unwrap();
        assert!(!published.direct);
        let branch = repo
            .refname_to_id(&format!("refs/heads/{}", published.branch))
            .unwrap();
        assert_eq!(branch, again.commit);
        assert_eq!(main_of(&repo), theirs, "main is left for the reviewers");
    }

    #[test]
    fn only_the_clients_admins_and_the_agencys_may_propose() {
        let (_dir, _repo, mut ws) = remote();
        let now = Timestamp::now();
        let hank = Identity {
            email: "hank@globex.example".into(),
            name: "Hank".into(),
        };
        let r = ws.propose(
            "acme",
            &invite("zoe@acme.example", "client-viewer"),
            &hank,
            now,
        );
        assert!(matches!(r, Err(Refusal::Forbidden(_))), "{r:?}");
        let r = ws.propose(
            "nosuch",
            &invite("zoe@acme.example", "client-viewer"),
            &dana(),
            now,
        );
        assert!(matches!(r, Err(Refusal::Forbidden(_))), "{r:?}");
        // The agency client's admins manage every client.
        let tip = ws.tip(now, Duration::ZERO).unwrap();
        let agency = tip.loaded.catalog.agency().unwrap().to_string();
        let admin = tip.loaded.catalog.clients[&agency].spec.admins[0].clone();
        drop(tip);
        let who = Identity {
            email: admin.to_uppercase(),
            name: "Agency".into(),
        };
        assert!(
            ws.propose(
                "acme",
                &invite("zoe@acme.example", "client-viewer"),
                &who,
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn a_role_change_and_a_new_end_are_reviewed_as_the_access_they_change() {
        let (_dir, _repo, mut ws) = remote();
        let now = Timestamp::now();
        let p = ws
            .propose(
                "acme",
                &Action::ChangeRole {
                    email: "erin@acme.example".into(),
                    from: "client-finance".into(),
                    to: "client-viewer".into(),
                    reason: Some("moved to reporting".into()),
                },
                &dana(),
                now,
            )
            .unwrap();
        let rows: Vec<String> = p
            .review
            .deltas
            .iter()
            .map(|d| format!("{} {} {}", d.identity, d.verb(), d.entitlement))
            .collect();
        assert!(
            rows.contains(&"erin@acme.example loses acme:finance".to_string()),
            "{rows:?}"
        );
        assert!(p.diff.contains("-    - role: client-finance"), "{}", p.diff);
        let end = now + jiff::SignedDuration::from_hours(24 * 3);
        let p = ws
            .propose(
                "acme",
                &Action::SetExpiry {
                    email: "erin@acme.example".into(),
                    role: "client-finance".into(),
                    expires: Some(end),
                    reason: None,
                },
                &dana(),
                now,
            )
            .unwrap();
        assert!(
            p.review.deltas.iter().all(|d| d.verb() == "changes"),
            "{:?}",
            p.review.deltas
        );
        assert!(
            p.diff
                .contains(&format!("expires: {}", crate::plan::render::instant(end))),
            "{}",
            p.diff
        );
    }

    #[test]
    fn an_admin_removed_after_the_review_cannot_confirm() {
        let (_dir, repo, mut ws) = remote();
        let now = Timestamp::now();
        let p = ws
            .propose(
                "acme",
                &invite("zoe@acme.example", "client-viewer"),
                &dana(),
                now,
            )
            .unwrap();
        let client = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency/clients/acme/client.yaml"),
        )
        .unwrap()
        .replace("admins: [dana@acme.example]", "admins: [erin@acme.example]");
        let theirs = commit_on(
            &repo,
            Some(main_of(&repo)),
            &[("clients/acme/client.yaml".into(), client)],
            "dana is no longer acme's admin",
        );
        let r = ws.publish("acme", "dana@acme.example", p.commit, p.base, now);
        assert!(
            matches!(r, Err(Refusal::Forbidden(_))),
            "{:?}",
            r.map(|_| ())
        );
        assert_eq!(main_of(&repo), theirs);
        assert_eq!(repo.references().unwrap().count(), 1, "nothing was pushed");
    }

    #[test]
    fn another_clients_people_and_roles_are_refused_with_the_reason() {
        let (_dir, repo, mut ws) = remote();
        let now = Timestamp::now();
        let before = main_of(&repo);
        let reasons = |r: Result<Proposed, Refusal>| match r {
            Err(Refusal::Invalid(v)) => v.join("\n"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted"),
        };
        let why = reasons(ws.propose(
            "acme",
            &Action::Remove {
                email: "hank@globex.example".into(),
                reason: None,
            },
            &dana(),
            now,
        ));
        assert!(why.contains("not on this client's team"), "{why}");
        let why = reasons(ws.propose(
            "acme",
            &invite("HANK@globex.example", "client-viewer"),
            &dana(),
            now,
        ));
        assert!(why.contains("declared for the client globex"), "{why}");
        let why = reasons(ws.propose(
            "acme",
            &invite("zoe@acme.example", "agency-developer"),
            &dana(),
            now,
        ));
        assert!(why.contains("agency-developer"), "{why}");
        // Longer than acme's maxGrantDuration (30d).
        let long = Action::Invite {
            email: "zoe@acme.example".into(),
            display_name: None,
            role: "client-staging-admin".into(),
            expires: Some(now + jiff::SignedDuration::from_hours(24 * 40)),
            reason: None,
        };
        let why = reasons(ws.propose("acme", &long, &dana(), now));
        assert!(why.contains("30d"), "{why}");
        // A staging role needs an end (requireExpiry).
        let open = Action::Invite {
            email: "zoe@acme.example".into(),
            display_name: None,
            role: "client-staging-admin".into(),
            expires: None,
            reason: None,
        };
        let why = reasons(ws.propose("acme", &open, &dana(), now));
        assert!(why.to_lowercase().contains("expir"), "{why}");
        assert_eq!(main_of(&repo), before);
        assert_eq!(repo.references().unwrap().count(), 1, "nothing was pushed");
    }
}
