//! `latchkey import` and `adopt: true` on examples/agency's seeded portal (real SQLite):
//! the imported Members validate and plan to zero changes; adoption marks the unmarked
//! account, records it, and re-plans to zero; without the setting nothing unmarked is
//! touched.

use std::path::Path;

use crate::common::*;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agency")
}

/// What the portal held before latchkey (examples/agency/seed.sql: root unmarked, Milton
/// and Frank latchkey's), plus two accounts a real portal has: Peter, unmarked, and Alex,
/// agency staff with per-client access.
const MORE: &str = "
    INSERT INTO users (email, display_name, active, managed_by) VALUES
        ('Peter@Initech.example', 'Peter Gibbons', TRUE, NULL),
        ('alex@northwind.example', 'Alex Account', TRUE, 'latchkey');
    INSERT INTO user_roles (user_id, role) VALUES
        (4, 'initech:viewer'), (4, 'initech:project'),
        (5, 'acme:finance'), (5, 'acme:project');";

/// The example's Systems, Roles and Clients (no Members), committed; its portal seeded
/// as the demo seeds it, plus [`MORE`].
fn agency_without_members() -> Env {
    let env = Env::new();
    let files: Vec<_> = read_tree(&example())
        .into_iter()
        .filter(|(p, _)| p.ends_with(".yaml"))
        .filter(|(p, _)| !p.ends_with("members.yaml") && p != "team/staff.yaml")
        .collect();
    let edits: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    env.commit(&edits, "systems, roles and clients");
    let seed = std::fs::read_to_string(example().join("seed.sql")).unwrap();
    env.sqlite("portal.sqlite", &format!("{seed}\n{MORE}"));
    env.sqlite("staging.sqlite", "");
    env
}

/// (email, managed_by) of every portal row.
fn markers(portal: &Path) -> Vec<(String, Option<String>)> {
    let con = rusqlite::Connection::open(portal).unwrap();
    let mut stmt = con
        .prepare("SELECT email, managed_by FROM users ORDER BY email")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Strips the header comment (it names the revision and the clock).
fn documents(stdout: &str) -> String {
    stdout
        .lines()
        .skip_while(|l| l.starts_with("# latchkey import"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn set_adopt(env: &Env) {
    let text = std::fs::read_to_string(example().join("latchkey.yaml")).unwrap();
    let adopted = text.replacen(
        "    path: portal.sqlite\n",
        "    path: portal.sqlite\n  adopt: true\n",
        1,
    );
    assert_ne!(text, adopted);
    env.commit(
        &[("latchkey.yaml", Some(&adopted))],
        "adopt the portal's accounts",
    );
}

#[test]
fn imported_members_validate_and_plan_to_zero_changes() {
    let env = agency_without_members();
    let out = env.run(&["import", REPO, "--system", "portal"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        documents(&out.stdout),
        "---
# clients/acme/members.yaml
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: frank
spec:
  client: acme
  displayName: Frank Field
  email: frank@acme.example
  grants:
  - role: client-finance
---
# clients/initech/members.yaml
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: milton
spec:
  client: initech
  displayName: Milton Waddams
  email: milton@initech.example
  grants:
  - role: client-viewer
---
# clients/initech/members.yaml
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: peter
spec:
  client: initech
  displayName: Peter Gibbons
  email: peter@initech.example
  grants:
  - role: client-project
---
# team/members.yaml
apiVersion: latchkey.dev/v1alpha1
kind: Member
metadata:
  name: alex
spec:
  client: northwind
  displayName: Alex Account
  email: alex@northwind.example
  grants:
  - client: acme
    role: agency-account-manager
"
    );
    // What could not be mapped, and why: the portal's own admin.
    assert_eq!(
        out.stderr,
        "note: peter@initech.example on portal: the account is not latchkey's: plan reports it out of scope until System \"portal\" sets adopt: true
warning: root@portal.example: no client could be inferred: no Member or Client admin shares the email domain, and the entitlements name no single client; add the Member by hand
note: root@portal.example on portal: the account is not latchkey's: plan reports it out of scope until System \"portal\" sets adopt: true
imported 4 members; 1 finding not mapped (see above)
"
    );

    env.commit(&[("imported.yaml", Some(&out.stdout))], "import the portal");
    let valid = env.run(&["validate", REPO, "--now", NOW]);
    assert_eq!(valid.code, 0, "{}", valid.stderr);
    let plan = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["changes"], serde_json::json!([]));
    assert_eq!(plan["drift"], serde_json::json!([]));
    // Peter is declared but unmarked: out of scope, untouched, until the portal adopts.
    let outside: Vec<&str> = plan["outOfScope"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["identity"].as_str().unwrap())
        .collect();
    assert_eq!(outside, ["peter@initech.example"]);

    // Without the setting, apply touches nothing unmarked.
    let before = markers(&env.path("portal.sqlite"));
    let applied = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(markers(&env.path("portal.sqlite")), before);
    assert!(before.contains(&("Peter@Initech.example".into(), None)));
}

#[test]
fn adopt_marks_records_and_replans_to_zero() {
    let env = agency_without_members();
    let out = env.run(&["import", REPO, "--system", "portal"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    env.commit(&[("imported.yaml", Some(&out.stdout))], "import the portal");
    set_adopt(&env);

    let plan = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    // Exactly the adoption: import mapped Peter's roles exactly, so nothing else changes.
    assert_eq!(
        json["changes"],
        serde_json::json!([{
            "system": "portal",
            "client": "initech",
            "op": "adoptAccount",
            "identity": "peter@initech.example",
            "reason": "declared",
        }])
    );
    assert_eq!(json["outOfScope"], serde_json::json!([]));
    let text = env.run(&["plan", REPO, "--now", NOW]);
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("peter@initech.example"))
        .unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        ["+", "peter@initech.example", "adopt", "account", "declared"],
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("1 change: 0 to grant, 0 to revoke, 1 account to adopt; 0 drift."),
        "{}",
        text.stdout
    );
    let md = env.run(&["plan", REPO, "--now", NOW, "--format", "markdown"]);
    assert!(
        md.stdout
            .contains("| ➕ | peter@initech.example | portal | adopt account |"),
        "{}",
        md.stdout
    );
    assert!(md.stdout.contains("1 account to adopt"), "{}", md.stdout);

    let applied = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    // The real row now carries latchkey's marker; the root admin still does not.
    let rows = markers(&env.path("portal.sqlite"));
    assert!(rows.contains(&("Peter@Initech.example".into(), Some("latchkey".into()))));
    assert!(rows.contains(&("root@portal.example".into(), None)));

    // The ledger: an `adopted` record, then what was found on the account as observed.
    let history = env.run(&["history", "peter@initech.example", REPO, "--format", "json"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let records = history["records"].as_array().unwrap();
    let brief: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["event"].as_str().unwrap(),
                r["change"].as_str().unwrap_or("-"),
                r["entitlement"].as_str().unwrap_or("-"),
                r["result"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            "observed grant initech:project -",
            "observed grant initech:viewer -",
            "adopted adopt-account - applied",
        ]
    );
    let verify = env.run(&["audit", "verify", REPO]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);

    let replan = env.run(&["plan", REPO, "--now", NOW, "--format", "json"]);
    assert_eq!(replan.code, 0, "{}\n{}", replan.stdout, replan.stderr);
    let json: serde_json::Value = serde_json::from_str(&replan.stdout).unwrap();
    assert_eq!(json["changes"], serde_json::json!([]));
}

#[test]
fn a_failed_adoption_leaves_the_account_unmanaged_and_grants_nothing() {
    let env = agency_without_members();
    let out = env.run(&["import", REPO, "--system", "portal"]);
    env.commit(&[("imported.yaml", Some(&out.stdout))], "import the portal");
    set_adopt(&env);
    // Git now declares more for Peter than the portal holds: adoption comes first, and
    // the grant is only sent to an account that was adopted.
    let more = out.stdout.replace(
        "  - role: client-project\n",
        "  - role: client-project\n  - role: client-finance\n",
    );
    env.commit(&[("imported.yaml", Some(&more))], "peter gains finance");
    // Someone else's tool claims the row between plan and apply: the marker write
    // finds no unmarked row and fails.
    let portal = env.path("portal.sqlite");
    let plan = env.run(&["plan", REPO, "--now", NOW]);
    assert_eq!(plan.code, 2, "{}", plan.stderr);
    assert!(plan.stdout.contains("adopt account"), "{}", plan.stdout);
    rusqlite::Connection::open(&portal)
        .unwrap()
        .execute(
            "UPDATE users SET managed_by = 'crm-sync' WHERE email = 'Peter@Initech.example'",
            [],
        )
        .unwrap();
    let applied = env.run(&["apply", REPO, "--now", NOW]);
    assert_eq!(applied.code, 1, "{}", applied.stderr);
    assert!(
        applied
            .stderr
            .contains("is marked \"crm-sync\", not unmarked"),
        "{}",
        applied.stderr
    );
    let con = rusqlite::Connection::open(&portal).unwrap();
    let roles: Vec<String> = con
        .prepare("SELECT role FROM user_roles WHERE user_id = 4 ORDER BY role")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(roles, ["initech:project", "initech:viewer"]);
    assert!(markers(&portal).contains(&("Peter@Initech.example".into(), Some("crm-sync".into()))));
}

#[test]
fn adopt_is_refused_at_validate_for_a_connector_that_cannot_mark() {
    let env = Env::new();
    let repo = "apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {name: shop}
spec:
  type: scim
  environment: staging
  connection: {url: http://127.0.0.1:1/scim/v2}
  adopt: true
";
    env.commit(&[("latchkey.yaml", Some(repo))], "scim");
    let out = env.run(&["validate", REPO, "--rev", "main", "--now", NOW]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "latchkey.yaml:8:10: error: the scim connector cannot adopt existing accounts"
        ),
        "{}",
        out.stderr
    );
}
