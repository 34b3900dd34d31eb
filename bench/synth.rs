//! A synthetic access repository at agency scale, deterministic from a seed, plus an
//! embedded SQLite portal already in sync with it. Shared by `examples/gen_repo.rs`,
//! `examples/bench_plan.rs` and `tests/incremental.rs` (included with `#[path]`).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature, Time};
use jiff::{SignedDuration, Timestamp};

use latchkey::connectors::{Registry, SecretSource};
use latchkey::plan::Desired;
use latchkey::reconcile::Reconciler;
use latchkey::source::{Location, SourceRepo};

/// The shape of the repository to write.
#[derive(Clone, Debug)]
pub struct Spec {
    pub clients: usize,
    pub members_per_client: usize,
    pub grants_per_member: usize,
    /// Share of client members' grants that carry an `expires:` (in the future of `now`).
    pub expiring_share: f64,
    pub agency_staff: usize,
    pub seed: u64,
    /// The instant the portal is in sync at.
    pub now: Timestamp,
    /// `connection.path` of the portal System (relative paths resolve from the cwd).
    pub portal_path: String,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            clients: 1_000,
            members_per_client: 20,
            grants_per_member: 3,
            expiring_share: 0.2,
            agency_staff: 50,
            seed: 42,
            now: "2026-06-01T00:00:00Z".parse().expect("constant"),
            portal_path: "portal.sqlite".into(),
        }
    }
}

/// What was written.
pub struct Generated {
    pub repo: PathBuf,
    pub portal: PathBuf,
    pub commit: Oid,
    pub files: usize,
    pub members: usize,
    pub grants: usize,
}

/// splitmix64: tiny, fast and fully determined by the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// The roles a client's staff may hold (all reach the portal only).
pub const CLIENT_ROLES: [&str; 5] = [
    "client-viewer",
    "client-finance",
    "client-project",
    "client-support",
    "client-reports",
];

const FIRST: [&str; 16] = [
    "ada", "ben", "cleo", "dan", "eve", "finn", "gus", "hana", "ivo", "jo", "kai", "lea", "max",
    "nia", "oto", "pia",
];

const AGENCY: &str = "northwind";

fn policy_and_systems(spec: &Spec) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1
kind: Policy
metadata:
  name: guardrails
spec:
  agencyClient: {AGENCY}
  forbiddenForClients: [production]
  deletionBrake: {{minimum: 5, percent: 25}}
  expiredGrace: 7d
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata:
  name: portal
spec:
  type: sql
  environment: portal
  connection:
    driver: sqlite
    path: {path}
  prune: true
  offboard: disable
",
        path = spec.portal_path
    )
}

fn roles() -> String {
    let mut s = String::new();
    for (i, r) in CLIENT_ROLES.iter().enumerate() {
        let ent = r.trim_start_matches("client-");
        let _ = write!(
            s,
            "{sep}apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata:
  name: {r}
spec:
  description: Portal {ent}
  entitlements:
    portal: [\"{{client}}:{ent}\"]
",
            sep = if i == 0 { "" } else { "---\n" }
        );
    }
    s.push_str(
        "---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata:
  name: agency-account-manager
spec:
  description: Client relationship
  entitlements:
    portal: [\"{client}:finance\", \"{client}:project\"]
",
    );
    s
}

fn client_doc(name: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata:
  name: {name}
spec:
  displayName: Client {name}
  allowedRoles: [{roles}]
  admins: [admin@{name}.example]
",
        roles = CLIENT_ROLES.join(", ")
    )
}

fn member_doc(out: &mut String, name: &str, email: &str, client: &str, grants: &[String]) {
    if !out.is_empty() {
        out.push_str("---\n");
    }
    let _ = write!(
        out,
        "apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: {name}
spec:
  email: {email}
  displayName: {display}
  client: {client}
  grants:
",
        display = name.split('-').next().unwrap_or(name)
    );
    for g in grants {
        out.push_str(g);
    }
}

/// A client's member file; `variant` changes one grant's reason (the incremental edit).
pub fn members_file(spec: &Spec, client: usize, variant: u64) -> (String, usize) {
    let mut rng = Rng::new(spec.seed ^ (client as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let cname = client_name(client);
    let mut out = String::new();
    let mut grants = 0;
    for m in 0..spec.members_per_client {
        let first = FIRST[rng.below(FIRST.len())];
        let name = format!("{first}-{m}-{cname}");
        let email = format!("{first}.{m}@{cname}.example");
        let mut roles: Vec<&str> = CLIENT_ROLES.to_vec();
        let mut lines = Vec::new();
        for g in 0..spec.grants_per_member.min(CLIENT_ROLES.len()) {
            let role = roles.remove(rng.below(roles.len()));
            let mut line = format!("    - role: {role}\n");
            if rng.chance(spec.expiring_share) {
                let days = 1 + rng.below(60) as i64;
                let at = spec.now + SignedDuration::from_hours(24 * days);
                let _ = writeln!(line, "      expires: {at}");
                let _ = writeln!(line, "      reason: Ticket {cname}-{}", rng.below(10_000));
            }
            if variant != 0 && m == 0 && g == 0 {
                let _ = writeln!(
                    line,
                    "      starts: {}",
                    spec.now - SignedDuration::from_hours(variant as i64)
                );
            }
            lines.push(line);
            grants += 1;
        }
        member_doc(&mut out, &name, &email, &cname, &lines);
    }
    (out, grants)
}

fn staff_file(spec: &Spec) -> (String, usize) {
    let mut rng = Rng::new(spec.seed ^ 0x5eed_57af);
    let mut out = String::new();
    let mut grants = 0;
    for s in 0..spec.agency_staff {
        let name = format!("staff-{s}");
        let email = format!("staff.{s}@{AGENCY}.example");
        let mut lines = vec!["    - role: client-viewer\n".to_string()];
        grants += 1;
        let mut picked = Vec::new();
        for _ in 0..spec.grants_per_member.min(spec.clients) {
            let c = rng.below(spec.clients);
            if picked.contains(&c) {
                continue;
            }
            picked.push(c);
            lines.push(format!(
                "    - {{role: agency-account-manager, client: {}}}\n",
                client_name(c)
            ));
            grants += 1;
        }
        member_doc(&mut out, &name, &email, AGENCY, &lines);
    }
    (out, grants)
}

/// `c00042`: fixed width keeps the tree order stable and readable.
pub fn client_name(i: usize) -> String {
    format!("c{i:05}")
}

/// Path of a client's member file.
pub fn members_path(client: usize) -> String {
    format!("clients/{}/members.yaml", client_name(client))
}

fn signature(at: Timestamp) -> Signature<'static> {
    Signature::new(
        "Synth",
        "synth@northwind.example",
        &Time::new(at.as_second(), 0),
    )
    .expect("valid signature")
}

/// Writes (or replaces) `path` with `content` on top of `parent`'s tree and commits it
/// on `refs/heads/main`.
pub fn commit_file(
    repo: &Repository,
    path: &str,
    content: &str,
    message: &str,
    at: Timestamp,
) -> Result<Oid, git2::Error> {
    let head = repo.find_reference("refs/heads/main")?.peel_to_commit()?;
    let blob = repo.blob(content.as_bytes())?;
    let tree = replace(
        repo,
        Some(head.tree()?),
        &path.split('/').collect::<Vec<_>>(),
        blob,
    )?;
    let tree = repo.find_tree(tree)?;
    let sig = signature(at);
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        message,
        &tree,
        &[&head],
    )
}

fn replace(
    repo: &Repository,
    tree: Option<git2::Tree<'_>>,
    parts: &[&str],
    blob: Oid,
) -> Result<Oid, git2::Error> {
    let mut b = repo.treebuilder(tree.as_ref())?;
    if parts.len() == 1 {
        b.insert(parts[0], blob, 0o100644)?;
    } else {
        let sub = tree
            .as_ref()
            .and_then(|t| t.get_name(parts[0]))
            .and_then(|e| repo.find_tree(e.id()).ok());
        let id = replace(repo, sub, &parts[1..], blob)?;
        b.insert(parts[0], id, 0o040000)?;
    }
    b.write()
}

/// Writes the repository (bare, branch `main`) to `out/repo.git` and the portal to
/// `out/portal.sqlite`, in sync at `spec.now`.
pub fn generate(spec: &Spec, out: &Path) -> Result<Generated, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let repo_dir = out.join("repo.git");
    if repo_dir.exists() {
        std::fs::remove_dir_all(&repo_dir)?;
    }
    let repo = Repository::init_bare(&repo_dir)?;
    repo.set_head("refs/heads/main")?;
    let mut members = 0;
    let mut grants = 0;
    let mut files = 0;

    // Clients: one tree per client folder, built bottom-up (no index, no checkout).
    let mut clients_tree = repo.treebuilder(None)?;
    for c in 0..spec.clients {
        let (text, g) = members_file(spec, c, 0);
        grants += g;
        members += spec.members_per_client;
        let mut folder = repo.treebuilder(None)?;
        folder.insert(
            "client.yaml",
            repo.blob(client_doc(&client_name(c)).as_bytes())?,
            0o100644,
        )?;
        folder.insert("members.yaml", repo.blob(text.as_bytes())?, 0o100644)?;
        clients_tree.insert(client_name(c), folder.write()?, 0o040000)?;
        files += 2;
    }
    let (staff, g) = staff_file(spec);
    grants += g;
    members += spec.agency_staff;
    let mut team = repo.treebuilder(None)?;
    team.insert(
        "agency.yaml",
        repo.blob(client_doc(AGENCY).as_bytes())?,
        0o100644,
    )?;
    team.insert("staff.yaml", repo.blob(staff.as_bytes())?, 0o100644)?;
    let mut roles_tree = repo.treebuilder(None)?;
    roles_tree.insert("roles.yaml", repo.blob(roles().as_bytes())?, 0o100644)?;
    let mut root = repo.treebuilder(None)?;
    root.insert(
        "latchkey.yaml",
        repo.blob(policy_and_systems(spec).as_bytes())?,
        0o100644,
    )?;
    root.insert("roles", roles_tree.write()?, 0o040000)?;
    root.insert("team", team.write()?, 0o040000)?;
    root.insert("clients", clients_tree.write()?, 0o040000)?;
    files += 4;
    let tree = repo.find_tree(root.write()?)?;
    let sig = signature(spec.now - SignedDuration::from_hours(24));
    let commit = repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        &format!(
            "Synthetic agency: {} clients, {members} members, {grants} grants (seed {})",
            spec.clients, spec.seed
        ),
        &tree,
        &[],
    )?;

    let portal = out.join("portal.sqlite");
    write_portal(&repo_dir, &portal, spec.now)?;
    Ok(Generated {
        repo: repo_dir,
        portal,
        commit,
        files,
        members,
        grants,
    })
}

/// Writes the portal database holding exactly the desired state at `now` (plus the
/// portal's own unmanaged admin), so a plan against it yields no change.
fn write_portal(
    repo: &Path,
    portal: &Path,
    now: Timestamp,
) -> Result<(), Box<dyn std::error::Error>> {
    let source = SourceRepo::open(&Location::Path(repo.to_path_buf()), repo)?;
    let mut rec = Reconciler::new(source, Registry::builtin(SecretSource::default()));
    let rev = rec.repo.resolve("main")?;
    let loaded = rec.load(&rev, "", now)?;
    if !loaded.is_valid() {
        let errors: Vec<String> = loaded.errors().take(5).map(|d| d.to_string()).collect();
        return Err(format!("generated repository is invalid: {}", errors.join("; ")).into());
    }
    let desired = Desired::at(&loaded.catalog, now);
    if portal.exists() {
        std::fs::remove_file(portal)?;
    }
    let mut db = rusqlite::Connection::open(portal)?;
    db.execute_batch(
        "CREATE TABLE users (
            id           INTEGER PRIMARY KEY,
            email        TEXT NOT NULL UNIQUE,
            display_name TEXT,
            active       BOOLEAN NOT NULL DEFAULT TRUE,
            managed_by   TEXT
        );
        CREATE TABLE user_roles (
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role    TEXT NOT NULL,
            PRIMARY KEY (user_id, role)
        );
        INSERT INTO users (email, display_name, active, managed_by)
            VALUES ('root@portal.example', 'Portal Admin', TRUE, NULL);",
    )?;
    let tx = db.transaction()?;
    {
        let mut user = tx.prepare(
            "INSERT INTO users (email, display_name, active, managed_by) VALUES (?1, ?2, TRUE, 'latchkey')",
        )?;
        let mut role = tx.prepare("INSERT INTO user_roles (user_id, role) VALUES (?1, ?2)")?;
        if let Some(accounts) = desired.systems.get("portal") {
            for (identity, acct) in accounts {
                user.execute(rusqlite::params![identity, acct.display_name()])?;
                let id = tx.last_insert_rowid();
                for ent in acct.entitlements.keys() {
                    role.execute(rusqlite::params![id, ent])?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}
