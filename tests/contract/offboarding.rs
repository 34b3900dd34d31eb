//! The offboarding record across real servers: a person with access on PostgreSQL and on
//! an OpenLDAP directory is offboarded, and `latchkey history` (and the client report)
//! shows, per system, the instant access ended there; when the directory is stopped
//! before the next offboarding, that system is pending, not ended.

use jiff::Timestamp;
use latchkey::audit::Trigger;
use latchkey::connectors::postgres::ident;
use latchkey::connectors::{Registry, Secret, SecretSource};
use latchkey::reconcile::{Options, Reconciler};
use latchkey::source::{Location, SourceRepo};

use crate::common::Workspace;
use crate::peers::ldap::{LdapFixture, Mode};
use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

/// 2026-11-20T12:00:00Z: commits and `--now` are past instants, never the future.
const T0: i64 = 1_795_176_000;

fn systems(pg: u16, ldap: u16) -> String {
    format!(
        r#"apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {{name: db}}
spec:
  type: postgres
  environment: staging
  connection: {{url: "postgresql://latchkey@127.0.0.1:{pg}/postgres"}}
  credentials: {{secretKey: db}}
  prune: true
  offboard: delete
---
apiVersion: latchkey.dev/v1alpha1
kind: System
metadata: {{name: directory}}
spec:
  type: ldap
  environment: staging
  connection:
    url: ldap://127.0.0.1:{ldap}
    bindDn: cn=admin,dc=example,dc=org
    peopleDn: ou=people,dc=example,dc=org
    groupsDn: ou=groups,dc=example,dc=org
  credentials: {{secretKey: directory}}
  prune: true
  offboard: delete
---
apiVersion: latchkey.dev/v1alpha1
kind: Role
metadata: {{name: staff}}
spec: {{entitlements: {{db: [staging-readers], directory: [staff]}}}}
---
apiVersion: latchkey.dev/v1alpha1
kind: Client
metadata: {{name: acme}}
spec: {{allowedRoles: [staff]}}
"#
    )
}

fn member(name: &str, offboarded: bool) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata: {{name: {name}}}\nspec:\n  email: {name}@acme.example\n  client: acme\n  offboarded: {offboarded}\n  grants:\n    - role: staff\n"
    )
}

fn options(now: i64) -> Options {
    Options {
        rev: "main".into(),
        branch: None,
        subpath: String::new(),
        now: Timestamp::from_second(now).unwrap(),
        dry_run: false,
        push: false,
        allow_mass_revoke: None,
        allow_rewind: None,
        allow_broken_ledger: None,
        trigger: Trigger::Manual,
    }
}

/// Plans and applies at `now` (failures are recorded in the ledger).
async fn apply(rec: &mut Reconciler, now: i64) {
    let planned = rec
        .plan(&options(now))
        .await
        .unwrap_or_else(|e| panic!("plan: {e}"));
    rec.apply(planned, &options(now), &|_| {})
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
}

/// The `history --format json` offboarding record of `name`.
fn offboarding(ws: &Workspace, name: &str) -> serde_json::Value {
    let email = format!("{name}@acme.example");
    let out = ws.latchkey(&["history", &email, "access", "--format", "json"]);
    let (code, stdout, stderr) = crate::common::out(&out);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v["offboarding"].clone()
}

/// The time of the last applied offboarding removal of `name` on `system`, from the ledger.
fn ended_in_ledger(ws: &Workspace, name: &str, system: &str) -> Option<String> {
    ws.ledger()
        .into_iter()
        .filter(|r| {
            r["identity"] == format!("{name}@acme.example")
                && r["system"] == system
                && r["reason"] == "offboarded"
                && r["result"] == "applied"
        })
        .filter_map(|r| r["time"].as_str().map(String::from))
        .next_back()
}

/// "system ended <time>" / "system pending since <time>: what" per system.
fn ends(o: &serde_json::Value) -> Vec<String> {
    o["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["system"].as_str().unwrap();
            match s["pending"].as_array() {
                Some(p) => format!(
                    "{name} pending since {}: {}",
                    p[0]["since"].as_str().unwrap(),
                    p[0]["what"].as_str().unwrap()
                ),
                None => format!("{name} ended {}", s["ended"].as_str().unwrap()),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_where_access_ended_and_what_is_pending_across_postgres_and_ldap() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let Some(directory) = LdapFixture::start(Mode::Plain) else {
        return;
    };
    let su = cluster.superuser("postgres").await;
    let password = format!("pw-{}-{}", cluster.port, std::process::id());
    su.batch_execute(&format!(
        "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'; \
         CREATE ROLE {group} NOLOGIN; GRANT {group} TO latchkey WITH ADMIN OPTION",
        verifier(&password),
        group = ident("staging-readers"),
    ))
    .await
    .unwrap();

    let ws = Workspace::new();
    ws.commit(
        &[
            ("latchkey.yaml", &systems(cluster.port, directory.port)),
            ("clients/acme/erin.yaml", &member("erin", false)),
            ("clients/acme/frank.yaml", &member("frank", false)),
            // Dana stays: the client keeps grants (no empty-client hold).
            ("clients/acme/dana.yaml", &member("dana", false)),
        ],
        T0,
        "erin and frank",
    );
    let source = SourceRepo::open(&Location::Path(ws.repo_path()), ws.path()).unwrap();
    let mut secrets = SecretSource::default();
    secrets
        .secret_keys
        .insert("db".into(), Secret::new(password));
    secrets
        .secret_keys
        .insert("directory".into(), Secret::new(directory.password.clone()));
    let mut rec = Reconciler::new(source, Registry::builtin(secrets));
    apply(&mut rec, T0).await;
    assert!(offboarding(&ws, "erin").is_null(), "not offboarded yet");

    // Erin leaves: both systems are reached, and both report when access ended.
    ws.commit(
        &[("clients/acme/erin.yaml", &member("erin", true))],
        T0 + 3600,
        "offboard erin",
    );
    apply(&mut rec, T0 + 3600).await;
    let o = offboarding(&ws, "erin");
    assert_eq!(o["complete"], true, "{o:#}");
    let db = ended_in_ledger(&ws, "erin", "db").expect("db offboarding recorded");
    let dir = ended_in_ledger(&ws, "erin", "directory").expect("directory offboarding recorded");
    assert_eq!(
        ends(&o),
        [format!("db ended {db}"), format!("directory ended {dir}")]
    );
    let gone: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = 'erin@acme.example'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, 0, "erin's login role is deleted");

    // Frank leaves while the directory is down: PostgreSQL ends his access, the
    // directory cannot be read, records nothing, and stays pending.
    drop(directory);
    ws.commit(
        &[("clients/acme/frank.yaml", &member("frank", true))],
        T0 + 7200,
        "offboard frank",
    );
    apply(&mut rec, T0 + 7200).await;
    let o = offboarding(&ws, "frank");
    let hist = crate::common::out(&ws.latchkey(&["history", "frank@acme.example", "access"])).1;
    assert_eq!(o["complete"], false, "{o:#}\n{hist}");
    let db = ended_in_ledger(&ws, "frank", "db").expect("db offboarding recorded");
    assert_eq!(ended_in_ledger(&ws, "frank", "directory"), None);
    assert_eq!(
        ends(&o),
        [
            format!("db ended {db}"),
            format!(
                "directory pending since {}: holds staff",
                o["began"].as_str().unwrap()
            ),
        ]
    );
    // The text says the same, and so does acme's report in the audit commit.
    let out = ws.latchkey(&["history", "frank@acme.example", "access"]);
    let (_, text, _) = crate::common::out(&out);
    assert!(
        text.contains("Offboarding of frank@acme.example, begun ")
            && text.contains(": pending on 1 of 2 systems\n"),
        "{text}"
    );
    let report = std::fs::read_to_string(ws.repo_path().join("audit/access/acme.md"))
        .or_else(|_| {
            let repo = git2::Repository::open(ws.repo_path()).unwrap();
            let tree = repo.head().unwrap().peel_to_tree().unwrap();
            let entry = tree
                .get_path(std::path::Path::new("audit/access/acme.md"))
                .unwrap();
            let blob = repo.find_blob(entry.id()).unwrap();
            Ok::<_, std::io::Error>(String::from_utf8(blob.content().to_vec()).unwrap())
        })
        .unwrap();
    let section = &report[report.find("## Offboarded").expect("section")..];
    assert!(
        section.contains("Offboarding of erin@acme.example, begun "),
        "{section}"
    );
    assert!(
        section.contains(&format!(
            "  - db: access ended {}",
            db.trim_end_matches('Z').split('.').next().unwrap()
        )),
        "{section}"
    );
    assert!(
        section.contains("  - directory: pending since "),
        "{section}"
    );
}
