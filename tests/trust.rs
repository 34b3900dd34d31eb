//! Delegated administration and trust: client boundaries on a change, signed commits
//! with per-path signers, and CODEOWNERS. Repositories are built with the `git` CLI in
//! temporary directories; SSH keys are generated at test time with `ssh-keygen`.

use std::path::Path;
use std::process::Command;

const NOW: &str = "2026-11-02T00:00:00Z";

/// A git repository in a temporary directory.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Repo { dir };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.current_dir(self.path())
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2026-11-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-11-01T00:00:00Z")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1");
        c
    }

    fn git(&self, args: &[&str]) -> String {
        let out = self.git_cmd(args).output().expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    fn remove(&self, path: &str) {
        std::fs::remove_file(self.path().join(path)).expect("remove");
    }

    /// Commits everything, unsigned; returns the commit id.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

fn latchkey(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env_remove("LATCHKEY_LOG")
        .env("XDG_CACHE_HOME", std::env::temp_dir())
        .output()
        .expect("run latchkey");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const POLICY: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: Policy
metadata: {name: guardrails}
spec:
  agencyClient: agency
  maxGrantDuration: {staging: 30d}
  forbiddenForClients: [production]
";

fn systems(db_dir: &Path) -> String {
    let mut out = String::new();
    for (name, env) in [
        ("portal", "portal"),
        ("staging", "staging"),
        ("prod", "production"),
    ] {
        out.push_str(&format!(
            "---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {{name: {name}}}
spec:
  type: sql
  environment: {env}
  connection: {{driver: sqlite, path: {}}}
  prune: true
",
            db_dir.join(format!("{name}.sqlite")).display()
        ));
    }
    out
}

const ROLES: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: client-viewer}
spec:
  entitlements:
    portal: [\"{client}:viewer\"]
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: client-staging}
spec:
  entitlements:
    staging: [\"{client}:admin\"]
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: prod-admin}
spec:
  entitlements:
    prod: [admin]
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {name: portal-admin}
spec:
  entitlements:
    portal: [admin]
";

fn client(name: &str, admins: &str) -> String {
    // The agency allowed acme a production role by mistake: the Policy still forbids it.
    let roles = match name {
        "agency" => "client-viewer, client-staging, prod-admin, portal-admin",
        "acme" => "client-viewer, client-staging, prod-admin",
        _ => "client-viewer, client-staging",
    };
    format!(
        "apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {{name: {name}}}
spec:
  allowedRoles: [{roles}]
  maxGrantDuration: 14d
  admins: [{admins}]
"
    )
}

const ACME_MEMBERS: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: dana}
spec:
  email: dana@acme.example
  client: acme
  grants:
    - role: client-viewer
";

const STAFF: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: ann}
spec:
  email: ann@agency.example
  client: agency
  grants:
    - role: prod-admin
";

/// The base repository: a Policy, three systems, roles, the agency and two clients.
fn base_repo(db_dir: &Path, policy_extra: &str) -> Repo {
    let r = Repo::new();
    r.write(
        "latchkey.yaml",
        &format!("{POLICY}{policy_extra}{}", systems(db_dir)),
    );
    r.write("roles/roles.yaml", ROLES);
    r.write(
        "agency/client.yaml",
        &client("agency", "ann@agency.example"),
    );
    r.write(
        "clients/acme/client.yaml",
        &client("acme", "dana@acme.example"),
    );
    r.write(
        "clients/beta/client.yaml",
        &client("beta", "bob@beta.example"),
    );
    r.write("clients/acme/members.yaml", ACME_MEMBERS);
    r.write("team/staff.yaml", STAFF);
    r.commit("base");
    r
}

/// Applies `change` on top of the base repository and runs `latchkey check`.
fn check_change(change: impl FnOnce(&Repo)) -> (i32, String) {
    let db = tempfile::tempdir().expect("tempdir");
    let r = base_repo(db.path(), "");
    let base = r.git(&["rev-parse", "HEAD"]);
    change(&r);
    let head = r.commit("change");
    let repo = r.path().to_str().expect("utf-8");
    let (code, out, err) = latchkey(&[
        "check", repo, "--base", &base, "--head", &head, "--now", NOW,
    ]);
    assert!(err.is_empty(), "stderr: {err}");
    (code, out.replace(&base, "BASE").replace(&head, "HEAD"))
}

fn boundary_output(files: &[(&str, &str)], violations: &[&str]) -> String {
    let mut out = String::from("Boundaries of sha1:BASE → sha1:HEAD\n");
    for (owner, path) in files {
        out.push_str(&format!("  {owner:<10} {path}\n"));
    }
    for v in violations {
        out.push_str(v);
        out.push('\n');
    }
    out.push_str(&format!(
        "{} boundary violation{}.\n",
        violations.len(),
        if violations.len() == 1 { "" } else { "s" }
    ));
    out
}

#[test]
fn a_change_inside_the_clients_boundaries_passes() {
    let (code, out) = check_change(|r| {
        r.write(
            "clients/acme/members.yaml",
            &format!("{ACME_MEMBERS}    - role: client-staging\n      for: 7d\n"),
        );
    });
    assert_eq!(
        out,
        "Boundaries of sha1:BASE → sha1:HEAD\n  acme       clients/acme/members.yaml\nNo boundary violations.\n"
    );
    assert_eq!(code, 0);
}

#[test]
fn an_agency_change_outside_client_folders_passes() {
    let (code, out) = check_change(|r| {
        r.write(
            "roles/roles.yaml",
            &ROLES.replace("[admin]\n---", "[admin, audit]\n---"),
        );
    });
    assert_eq!(
        out,
        "Boundaries of sha1:BASE → sha1:HEAD\n  agency     roles/roles.yaml\nNo boundary violations.\n"
    );
    assert_eq!(code, 0);
}

fn acme_grant(grant: &str) -> impl FnOnce(&Repo) {
    let text = format!("{ACME_MEMBERS}{grant}");
    move |r: &Repo| r.write("clients/acme/members.yaml", &text)
}

#[test]
fn a_role_outside_allowed_roles_is_a_violation() {
    let (code, out) = check_change(acme_grant("    - role: portal-admin\n"));
    assert_eq!(
        out,
        boundary_output(
            &[("acme", "clients/acme/members.yaml")],
            &[
                "clients/acme/members.yaml:9:13: [acme] role \"portal-admin\" is not in the allowedRoles of client \"acme\"\n  help: use one of client-viewer, client-staging, prod-admin, or ask the agency to allow it in the Client"
            ]
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn a_grant_for_another_clients_systems_is_a_violation() {
    let (code, out) = check_change(acme_grant(
        "    - role: client-viewer\n      client: beta\n",
    ));
    assert_eq!(
        out,
        boundary_output(
            &[("acme", "clients/acme/members.yaml")],
            &[
                "clients/acme/members.yaml:10:15: [acme] Member \"dana\" of client \"acme\" cannot hold a grant for client \"beta\"\n  help: only members of the agency client (agency) may hold grants for other clients; remove the grant's client"
            ]
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn a_duration_beyond_max_grant_duration_is_a_violation() {
    let (code, out) = check_change(acme_grant(
        "    - role: client-staging\n      expires: 2026-12-31T00:00:00Z\n",
    ));
    assert_eq!(
        out,
        boundary_output(
            &[("acme", "clients/acme/members.yaml")],
            &[
                "clients/acme/members.yaml:10:16: [acme] grant of \"client-staging\" lasts 60d, longer than client \"acme\"'s maxGrantDuration (14d)\n  help: shorten it to at most 14d"
            ]
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn a_production_grant_for_a_client_member_is_a_violation() {
    let (code, out) = check_change(acme_grant("    - role: prod-admin\n"));
    assert_eq!(
        out,
        boundary_output(
            &[("acme", "clients/acme/members.yaml")],
            &[
                "clients/acme/members.yaml:9:13: [acme] role \"prod-admin\" reaches production systems, which the Policy forbids for client members\n  help: client members may not reach these environments; pick a role without them"
            ]
        )
    );
    assert_eq!(code, 1);
}

const AGENCY_ONLY_HELP: &str = "  help: only the agency may change Client, Role, System and Policy documents; leave them out of a client's change";

#[test]
fn a_client_document_changed_in_the_clients_folder_is_a_violation() {
    let (code, out) = check_change(|r| {
        r.write(
            "clients/acme/client.yaml",
            &client("acme", "dana@acme.example").replace("14d", "90d"),
        );
    });
    assert_eq!(
        out,
        boundary_output(
            &[("acme", "clients/acme/client.yaml")],
            &[&format!(
                "clients/acme/client.yaml:2:7: [acme] changes Client \"acme\" in clients/acme/: Client documents are agency-only\n{AGENCY_ONLY_HELP}"
            )]
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn a_role_added_in_a_clients_folder_is_a_violation() {
    let (code, out) = check_change(|r| {
        r.write(
            "clients/acme/roles.yaml",
            "apiVersion: latchkey.dev/v1alpha1\nkind: Role\nmetadata: {name: acme-god}\nspec:\n  entitlements:\n    prod: [admin]\n",
        );
    });
    assert_eq!(
        out,
        boundary_output(
            &[("acme", "clients/acme/roles.yaml")],
            &[&format!(
                "clients/acme/roles.yaml:2:7: [acme] adds Role \"acme-god\" in clients/acme/: Role documents are agency-only\n{AGENCY_ONLY_HELP}"
            )]
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn a_system_or_policy_removed_from_a_clients_folder_is_a_violation() {
    let db = tempfile::tempdir().expect("tempdir");
    let r = base_repo(db.path(), "");
    r.write(
        "clients/acme/system.yaml",
        &systems(db.path()).replace("name: portal", "name: acme-portal"),
    );
    let base = r.commit("agency adds a system in acme's folder");
    r.remove("clients/acme/system.yaml");
    let head = r.commit("acme removes it");
    let (code, out, _) = latchkey(&[
        "check",
        r.path().to_str().expect("utf-8"),
        "--base",
        &base,
        "--head",
        &head,
        "--now",
        NOW,
    ]);
    let out = out.replace(&base, "BASE").replace(&head, "HEAD");
    assert!(
        out.contains(&format!("clients/acme/system.yaml:3:7: [acme] removes System \"acme-portal\" in clients/acme/: System documents are agency-only\n{AGENCY_ONLY_HELP}\n")),
        "{out}"
    );
    assert_eq!(code, 1);
}

const ERIN: &str = "\
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: erin}
spec:
  email: erin@acme.example
  client: acme
";

#[test]
fn a_member_in_another_clients_folder_is_a_violation() {
    let (code, out) = check_change(|r| r.write("clients/beta/erin.yaml", ERIN));
    assert_eq!(
        out,
        boundary_output(
            &[("beta", "clients/beta/erin.yaml")],
            &[
                "clients/beta/erin.yaml:6:11: [beta] Member \"erin\" has client \"acme\" but lives in clients/beta/\n  help: move the file to clients/acme/ or set client: beta"
            ]
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn a_client_member_outside_client_folders_is_a_violation() {
    let (code, out) = check_change(|r| r.write("people/erin.yaml", ERIN));
    assert_eq!(
        out,
        boundary_output(
            &[("agency", "people/erin.yaml")],
            &[
                "people/erin.yaml:6:11: [agency] Member \"erin\" of client \"acme\" lives outside clients/acme/\n  help: move the file to clients/acme/, where the client's admins manage it"
            ]
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn plan_markdown_puts_violations_above_the_access_table() {
    let db = tempfile::tempdir().expect("tempdir");
    let r = base_repo(db.path(), "");
    let base = r.git(&["rev-parse", "HEAD"]);
    acme_grant("    - role: portal-admin\n")(&r);
    r.write(
        "clients/beta/members.yaml",
        &ACME_MEMBERS.replace("dana", "bob").replace("acme", "beta"),
    );
    let head = r.commit("change");
    let (code, out, _) = latchkey(&[
        "plan",
        r.path().to_str().expect("utf-8"),
        "--base",
        &base,
        "--head",
        &head,
        "--now",
        NOW,
        "--format",
        "markdown",
    ]);
    let out = out.replace(&base, "BASE").replace(&head, "HEAD");
    assert_eq!(
        out,
        "### latchkey: access changes in this PR

❌ **1 boundary violation: this change must not be merged.**

| Where | Client | Violation |
|---|---|---|
| `clients/acme/members.yaml:9:13` | acme | role \"portal-admin\" is not in the allowedRoles of client \"acme\"<br>_use one of client-viewer, client-staging, prod-admin, or ask the agency to allow it in the Client_ |

`sha1:BASE` → `sha1:HEAD`

**2 gains, 0 losses, 0 changed windows.**

#### acme

| | Person | Role | Reaches | When |
|---|---|---|---|---|
| ➕ gains | dana@acme.example | portal-admin | portal: admin | no expiry |

#### beta

| | Person | Role | Reaches | When |
|---|---|---|---|---|
| ➕ gains | bob@beta.example | client-viewer | portal: beta:viewer | no expiry |

"
    );
    assert_eq!(code, 1);
}
