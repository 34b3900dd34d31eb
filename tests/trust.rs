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
                "clients/acme/members.yaml:10:16: [acme] grant of \"client-staging\" lasts 59d, longer than client \"acme\"'s maxGrantDuration (14d)\n  help: shorten it to at most 14d"
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
        "<!-- latchkey-plan -->
### latchkey: access changes in this PR

> ❌ **The head revision is invalid (1 error): apply would refuse it and change nothing until they are fixed.**
>
> - clients/acme/members.yaml:9:13: error: role \"portal-admin\" is not in the allowedRoles of client \"acme\"   help: use one of client-viewer, client-staging, prod-admin, or ask the agency to allow it in the Client

❌ **1 boundary violation: this change must not be merged.**

| Where | Client | Violation |
|---|---|---|
| `clients/acme/members.yaml:9:13` | acme | role \"portal-admin\" is not in the allowedRoles of client \"acme\"<br>_use one of client-viewer, client-staging, prod-admin, or ask the agency to allow it in the Client_ |

<details><summary>Changed files and their owners</summary>

| File | Owner |
|---|---|
| `clients/acme/members.yaml` | acme |
| `clients/beta/members.yaml` | beta |

</details>

`sha1:BASE` → `sha1:HEAD`, evaluated at 2026-11-02T00:00:00Z as if merged then.

**2 gains, 0 losses, 0 changed windows** for 2 people.

| Client | Gains | Losses | Changed windows |
|---|---|---|---|
| acme | 1 | 0 | 0 |
| beta | 1 | 0 | 0 |

<details><summary>acme: 1 gain, 0 losses, 0 changed windows</summary>

| | Person | System | Entitlement | When | Why |
|---|---|---|---|---|---|
| ➕ gains | dana@acme.example | portal | admin | no expiry | granted via portal-admin |

</details>

<details><summary>beta: 1 gain, 0 losses, 0 changed windows</summary>

| | Person | System | Entitlement | When | Why |
|---|---|---|---|---|---|
| ➕ gains | bob@beta.example | portal | beta:viewer | no expiry | granted via client-viewer |

</details>

"
    );
    assert_eq!(code, 1);
}

// ---------------------------------------------------------------------------
// Signed commits

/// An ed25519 key generated for the test; returns the private key path and the public key.
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (
        key.to_str().expect("utf-8").to_string(),
        public.trim().to_string(),
    )
}

impl Repo {
    /// Commits everything, signed with the SSH key at `key`.
    fn commit_signed(&self, message: &str, key: &str) -> String {
        self.git(&["add", "-A"]);
        let out = self
            .git_cmd(&[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={key}"),
                "commit",
                "-q",
                "-S",
                "-m",
                message,
            ])
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "signed commit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.git(&["rev-parse", "HEAD"])
    }

    /// Brings the working tree up to the branch after latchkey committed the audit.
    fn sync(&self) {
        self.git(&["reset", "-q", "--hard", "HEAD"]);
    }
}

/// A repository whose Policy requires signed commits, with systems on SQLite files.
struct Signed {
    repo: Repo,
    db: tempfile::TempDir,
    agency_key: String,
    dana_key: String,
    keys: tempfile::TempDir,
}

fn signed_repo() -> Signed {
    let keys = tempfile::tempdir().expect("tempdir");
    let (agency_key, agency_pub) = keygen(keys.path(), "ann");
    let (dana_key, dana_pub) = keygen(keys.path(), "dana");
    let db = tempfile::tempdir().expect("tempdir");
    let schema = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/agency/schema.sql"
    ))
    .expect("schema");
    for name in ["portal", "staging", "prod"] {
        let conn =
            rusqlite::Connection::open(db.path().join(format!("{name}.sqlite"))).expect("sqlite");
        conn.execute_batch(&schema).expect("schema");
    }
    let trust = format!(
        "  trust:
    requireSignedCommits: true
    signers:
      - name: ann
        sshKeys: [\"{agency_pub}\"]
        paths: [\"**\"]
        merges: true
      - name: dana
        sshKeys: [\"{dana_pub}\"]
        paths: [\"clients/acme/**\", \"!clients/acme/client.yaml\"]
"
    );
    let repo = Repo::new();
    repo.write(
        "latchkey.yaml",
        &format!("{POLICY}{trust}{}", systems(db.path())),
    );
    repo.write("roles/roles.yaml", ROLES);
    repo.write(
        "agency/client.yaml",
        &client("agency", "ann@agency.example"),
    );
    repo.write(
        "clients/acme/client.yaml",
        &client("acme", "dana@acme.example"),
    );
    repo.write(
        "clients/beta/client.yaml",
        &client("beta", "bob@beta.example"),
    );
    repo.write("clients/acme/members.yaml", ACME_MEMBERS);
    repo.write("team/staff.yaml", STAFF);
    repo.commit_signed("base", &agency_key);
    let s = Signed {
        repo,
        db,
        agency_key,
        dana_key,
        keys,
    };
    let (code, _, err) = s.apply();
    assert_eq!(code, 0, "first apply: {err}");
    s
}

impl Signed {
    fn apply(&self) -> (i32, String, String) {
        let r = latchkey(&[
            "apply",
            self.repo.path().to_str().expect("utf-8"),
            "--rev",
            "main",
            "--now",
            NOW,
        ]);
        self.repo.sync();
        r
    }

    /// `email role` rows of the portal.
    fn portal(&self) -> Vec<String> {
        let conn =
            rusqlite::Connection::open(self.db.path().join("portal.sqlite")).expect("sqlite");
        let mut stmt = conn
            .prepare("SELECT u.email || ' ' || r.role FROM users u JOIN user_roles r ON r.user_id = u.id ORDER BY 1")
            .expect("query");
        stmt.query_map([], |row| row.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
    }

    /// Every ledger file on main, in path order. Records are stamped with the wall
    /// clock when it is later than `--now`, so the month file cannot be named here.
    fn ledger(&self) -> String {
        let files = self
            .repo
            .git(&["ls-tree", "-r", "--name-only", "main", "audit/ledger/"]);
        let mut files: Vec<&str> = files.lines().filter(|f| f.ends_with(".jsonl")).collect();
        files.sort();
        assert!(!files.is_empty(), "no ledger file on main");
        files
            .iter()
            .map(|f| self.repo.git(&["show", &format!("main:{f}")]))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const FRANK: &str = "---
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata: {name: frank}
spec:
  email: frank@acme.example
  client: acme
  grants:
    - role: client-viewer
";

#[test]
fn a_client_admins_signed_change_inside_their_folder_applies() {
    let s = signed_repo();
    assert_eq!(s.portal(), ["dana@acme.example acme:viewer"]);
    s.repo.write(
        "clients/acme/members.yaml",
        &format!("{ACME_MEMBERS}{FRANK}"),
    );
    s.repo.commit_signed("add frank", &s.dana_key);
    let (code, _, err) = s.apply();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        s.portal(),
        [
            "dana@acme.example acme:viewer",
            "frank@acme.example acme:viewer"
        ]
    );
    let frank = s
        .ledger()
        .lines()
        .find(|l| l.contains("frank@acme.example"))
        .map(str::to_string)
        .expect("ledger record");
    assert!(frank.contains(r#""signer":"dana""#), "{frank}");
}

/// Applies a refused range and checks nothing changed and the refusal was recorded.
fn assert_refused(s: &Signed, expected: &[String]) {
    let before = s.portal();
    let head = s.repo.git(&["rev-parse", "main"]);
    // plan runs the same checks: it shows the refusal apply is about to make.
    let (code, out, _) = latchkey(&[
        "plan",
        s.repo.path().to_str().expect("utf-8"),
        "--rev",
        "main",
        "--now",
        NOW,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "REFUSED: signatures check: {}; apply would apply nothing",
            expected.join("; ")
        )),
        "{out}"
    );
    let (code, _, err) = s.apply();
    assert_eq!(code, 1);
    let mut want =
        format!("error: revision main@sha1:{head} is not trusted; nothing was applied:\n");
    for line in expected {
        want.push_str(&format!("  {line}\n"));
    }
    assert_eq!(err, want);
    assert_eq!(s.portal(), before, "nothing applied");
    let refusal = s
        .ledger()
        .lines()
        .last()
        .map(str::to_string)
        .unwrap_or_default();
    assert!(refusal.contains(r#""event":"refusal""#), "{refusal}");
    let note = format!("unsigned or untrusted commits: {}", expected.join("; "));
    assert!(refusal.contains(&note), "{refusal} lacks {note}");
    assert_eq!(
        s.repo.git(&["log", "-1", "--format=%s"]).lines().next(),
        Some("latchkey: refused unsigned or untrusted commits"),
    );
}

fn short(oid: &str) -> &str {
    &oid[..12]
}

/// A member file for beta.
static BOB: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ACME_MEMBERS.replace("dana", "bob").replace("acme", "beta"));

#[test]
fn a_client_admins_key_on_another_clients_folder_is_refused() {
    let s = signed_repo();
    s.repo.write("clients/beta/members.yaml", &BOB);
    let c = s.repo.commit_signed("dana edits beta", &s.dana_key);
    assert_refused(
        &s,
        &[format!(
            "commit {}: clients/beta/members.yaml: dana may not change this path",
            short(&c)
        )],
    );
}

#[test]
fn a_client_admins_key_on_a_role_is_refused() {
    let s = signed_repo();
    s.repo.write(
        "clients/acme/members.yaml",
        &format!("{ACME_MEMBERS}{FRANK}"),
    );
    s.repo.write(
        "roles/roles.yaml",
        &ROLES.replace("[admin]\n---", "[admin, root]\n---"),
    );
    let c = s.repo.commit_signed("dana widens a role", &s.dana_key);
    assert_refused(
        &s,
        &[format!(
            "commit {}: roles/roles.yaml: dana may not change this path",
            short(&c)
        )],
    );
}

#[test]
fn a_client_admins_key_on_their_client_document_is_refused() {
    let s = signed_repo();
    s.repo.write(
        "clients/acme/client.yaml",
        &client("acme", "dana@acme.example").replace("14d", "90d"),
    );
    let c = s
        .repo
        .commit_signed("dana lengthens her limit", &s.dana_key);
    assert_refused(
        &s,
        &[format!(
            "commit {}: clients/acme/client.yaml: dana may not change this path",
            short(&c)
        )],
    );
}

#[test]
fn an_unsigned_commit_in_the_range_is_refused() {
    let s = signed_repo();
    s.repo.write(
        "clients/acme/members.yaml",
        &format!("{ACME_MEMBERS}{FRANK}"),
    );
    s.repo.commit_signed("add frank", &s.dana_key);
    s.repo.write("clients/acme/members.yaml", ACME_MEMBERS);
    let c = s.repo.commit("unsigned: remove frank again");
    assert_refused(
        &s,
        &[format!("commit {}: the commit is not signed", short(&c))],
    );
}

#[test]
fn a_signature_by_an_unknown_key_is_refused() {
    let s = signed_repo();
    let (mallory, mallory_pub) = keygen(s.keys.path(), "mallory");
    s.repo.write(
        "clients/acme/members.yaml",
        &format!("{ACME_MEMBERS}{FRANK}"),
    );
    let c = s.repo.commit_signed("mallory adds frank", &mallory);
    let key = ssh_key::PublicKey::from_openssh(&mallory_pub).expect("key");
    assert_refused(
        &s,
        &[format!(
            "commit {}: signed by a key no signer holds ({})",
            short(&c),
            key.fingerprint(ssh_key::HashAlg::Sha256)
        )],
    );
}

#[test]
fn a_commit_edited_after_signing_is_refused() {
    let s = signed_repo();
    let main = s.repo.git(&["rev-parse", "HEAD"]);
    // The tree dana would like to have signed: a grant for beta's folder.
    s.repo.write("clients/beta/members.yaml", &BOB);
    s.repo.commit("evil");
    let evil_tree = s.repo.git(&["rev-parse", "HEAD^{tree}"]);
    s.repo.git(&["reset", "-q", "--hard", &main]);
    // What dana really signed: a change inside her folder.
    s.repo.write(
        "clients/acme/members.yaml",
        &format!("{ACME_MEMBERS}{FRANK}"),
    );
    let good = s.repo.commit_signed("add frank", &s.dana_key);
    let object = s.repo.git(&["cat-file", "commit", &good]);
    let good_tree = s.repo.git(&["rev-parse", "HEAD^{tree}"]);
    let forged = object.replacen(
        &format!("tree {good_tree}"),
        &format!("tree {evil_tree}"),
        1,
    ) + "\n";
    let path = s.repo.path().join("forged");
    std::fs::write(&path, forged).expect("write");
    let oid = s.repo.git(&[
        "hash-object",
        "-t",
        "commit",
        "-w",
        path.to_str().expect("utf-8"),
    ]);
    std::fs::remove_file(path).expect("remove");
    s.repo.git(&["update-ref", "refs/heads/main", &oid]);
    s.repo.sync();
    assert_refused(
        &s,
        &[format!(
            "commit {}: the signature by dana does not match the commit's content",
            short(&oid)
        )],
    );
}

#[test]
fn a_host_merge_signed_by_a_merge_signer_applies_and_by_a_client_admin_is_refused() {
    let s = signed_repo();
    s.repo.git(&["checkout", "-q", "-b", "pr"]);
    s.repo.write(
        "clients/acme/members.yaml",
        &format!("{ACME_MEMBERS}{FRANK}"),
    );
    s.repo.commit_signed("add frank", &s.dana_key);
    s.repo.git(&["checkout", "-q", "main"]);
    let merge = |key: &str| {
        let out = s
            .repo
            .git_cmd(&[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={key}"),
                "merge",
                "-q",
                "--no-ff",
                "-S",
                "-m",
                "merge pr",
                "pr",
            ])
            .output()
            .expect("git merge");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.repo.git(&["rev-parse", "HEAD"])
    };
    let before = s.repo.git(&["rev-parse", "HEAD"]);
    let by_dana = merge(&s.dana_key);
    assert_refused(
        &s,
        &[format!(
            "commit {}: merge commit signed by dana, who may not sign merges",
            short(&by_dana)
        )],
    );
    // The host merges again, this time with its own key.
    s.repo.git(&["reset", "-q", "--hard", &before]);
    merge(&s.agency_key);
    let (code, _, err) = s.apply();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        s.portal(),
        [
            "dana@acme.example acme:viewer",
            "frank@acme.example acme:viewer"
        ]
    );
}

#[test]
fn pgp_signers_and_unusable_keys_are_validation_errors() {
    let keys = tempfile::tempdir().expect("tempdir");
    let ecdsa = keys.path().join("ecdsa");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-C", "ecdsa", "-f"])
        .arg(&ecdsa)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let ecdsa_pub = std::fs::read_to_string(ecdsa.with_extension("pub")).expect("pub");
    let db = tempfile::tempdir().expect("tempdir");
    let r = base_repo(
        db.path(),
        &format!(
            "  trust:
    requireSignedCommits: true
    signers:
      - name: ann
        pgpKeys: [\"-----BEGIN PGP PUBLIC KEY BLOCK-----\"]
        sshKeys: [\"ssh-ed25519 not-base64\", \"{}\"]
        paths: [\"clients/{{acme\"]
",
            ecdsa_pub.trim()
        ),
    );
    let head = r.git(&["rev-parse", "HEAD"]);
    let (code, _, err) = latchkey(&[
        "validate",
        r.path().to_str().expect("utf-8"),
        "--rev",
        "HEAD",
        "--now",
        NOW,
    ]);
    assert_eq!(
        err.replace(&head, "HEAD"),
        "latchkey.yaml:12:9: error: signer \"ann\": OpenPGP keys are not supported yet
  help: list SSH public keys in sshKeys and sign commits with `git config gpg.format ssh`
latchkey.yaml:13:19: error: signer \"ann\": cannot parse SSH public key: Base64 encoding error: invalid Base64 encoding
  help: paste one line of an ed25519 .pub file: ssh-ed25519 AAAA... comment
latchkey.yaml:13:45: error: signer \"ann\": ecdsa-sha2-nistp256 keys are not supported yet, only ssh-ed25519
  help: paste one line of an ed25519 .pub file: ssh-ed25519 AAAA... comment
latchkey.yaml:14:17: error: signer \"ann\": invalid path pattern: error parsing glob 'clients/{acme': unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)
  help: write a glob such as clients/acme/** (prefix ! to exclude)
main@sha1:HEAD: 4 errors, 0 warnings
"
    );
    assert_eq!(code, 1);
}

#[test]
fn codeowners_gives_each_client_folder_to_its_admins_and_the_rest_to_the_agency() {
    let db = tempfile::tempdir().expect("tempdir");
    let r = base_repo(db.path(), "");
    r.write(
        "clients/acme/client.yaml",
        &client("acme", "dana@acme.example, erin@acme.example"),
    );
    r.write("clients/gamma/client.yaml", &client("gamma", ""));
    r.commit("more admins");
    let (code, out, err) = latchkey(&["codeowners", r.path().to_str().expect("utf-8")]);
    assert_eq!(err, "");
    assert_eq!(
        out,
        "# Generated by `latchkey codeowners` from the Client documents: do not edit by hand.
# The agency's admins own everything; each client's admins own their client's folder,
# except files holding agency-only documents (Client, Role, System, Policy).
* ann@agency.example
/clients/acme/ dana@acme.example erin@acme.example
/clients/acme/client.yaml ann@agency.example
/clients/beta/ bob@beta.example
/clients/beta/client.yaml ann@agency.example
"
    );
    assert_eq!(code, 0);
}

// ---------------------------------------------------------------------------
// CI examples

/// The review jobs validate and review (boundaries included: the review exits 1 on a
/// violation) with no secret in reach and keep one comment; only the apply job on the
/// default branch sees system credentials. latchkey is installed, never built.
#[test]
fn ci_examples_review_without_credentials_and_apply_on_merge() {
    let read = |name: &str| -> serde_yaml::Value {
        let path = format!("{}/examples/ci/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml")
    };
    let text = |v: &serde_yaml::Value| serde_yaml::to_string(v).expect("yaml");

    let gh = read("github-actions.yml");
    let review = text(&gh["jobs"]["review"]);
    assert!(review.contains("uses: latchkey-dev/latchkey@v"), "{review}");
    assert!(!review.contains("secrets."), "{review}");
    assert!(!review.contains("cargo install"), "{review}");
    let apply = text(&gh["jobs"]["apply"]);
    assert!(apply.contains("mode: install"), "{apply}");
    assert!(apply.contains("latchkey apply . --rev main --push"));
    assert!(!apply.contains("cargo install"), "{apply}");
    assert_eq!(gh["jobs"]["apply"]["environment"], "access-production");
    let comment = read("github-actions-comment.yml");
    assert_eq!(comment["on"]["workflow_run"]["workflows"][0], "latchkey");
    let job = text(&comment["jobs"]["comment"]);
    assert!(job.contains("mode: comment"), "{job}");
    // It runs with a write token: it must never check out the pull request's code.
    assert!(!job.contains("actions/checkout"), "{job}");

    let gl = read("gitlab-ci.yml");
    let review = text(&gl["latchkey-review"]);
    assert!(review.contains("latchkey validate ."), "{review}");
    assert!(review.contains("--format markdown > review.md"), "{review}");
    assert!(
        review.contains("upsert-comment.py gitlab review.md"),
        "{review}"
    );
    assert!(!review.contains("environment"), "{review}");
    let install = text(&gl["default"]);
    assert!(install.contains("scripts/ci/install.sh"), "{install}");
    assert!(!install.contains("cargo install"), "{install}");
    let apply = text(&gl["latchkey-apply"]);
    assert!(apply.contains("latchkey apply . --rev \"$CI_DEFAULT_BRANCH\" --push"));
    assert!(apply.contains("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"));
}

#[test]
fn changes_that_landed_on_the_base_branch_since_are_not_the_prs() {
    let db = tempfile::tempdir().expect("tempdir");
    let r = base_repo(db.path(), "");
    r.git(&["checkout", "-q", "-b", "pr"]);
    r.write(
        "clients/acme/members.yaml",
        &format!("{ACME_MEMBERS}{FRANK}"),
    );
    r.commit("acme adds frank");
    r.git(&["checkout", "-q", "main"]);
    r.write(
        "clients/acme/client.yaml",
        &client("acme", "dana@acme.example").replace("14d", "21d"),
    );
    r.commit("the agency lengthens acme's limit");
    let (code, out, err) = latchkey(&[
        "check",
        r.path().to_str().expect("utf-8"),
        "--base",
        "main",
        "--head",
        "pr",
        "--now",
        NOW,
    ]);
    assert_eq!(err, "");
    let fork = r.git(&["merge-base", "main", "pr"]);
    let pr = r.git(&["rev-parse", "pr"]);
    assert_eq!(
        out,
        format!(
            "Boundaries of sha1:{fork} → pr@sha1:{pr}\n  acme       clients/acme/members.yaml\nNo boundary violations.\n"
        )
    );
    assert_eq!(code, 0);
}
