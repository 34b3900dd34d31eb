//! `postgres` only: `kill -9` of `latchkey apply` in the middle of ~300 changes and
//! during the audit commit, then a re-run to convergence: exactly one `applied` record
//! per change made on the real cluster, the ledger verifies, and its replay matches the
//! cluster's memberships (docs/audit.md, "Write-ahead journal").

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use latchkey::connectors::postgres::ident;

use crate::common::Workspace;
use crate::peers::pg::PgCluster;
use crate::peers::postgres::verifier;

const PEOPLE: usize = 150;
const GROUP: &str = "staging-readers";

struct Crash {
    cluster: PgCluster,
    ws: Workspace,
    password: String,
}

impl Crash {
    async fn start() -> Option<Crash> {
        let cluster = match PgCluster::start() {
            Ok(c) => c,
            Err(why) => {
                crate::peers::unavailable("PostgreSQL", &why);
                return None;
            }
        };
        let su = cluster.superuser("postgres").await;
        let password = format!("pw-{}-{}", cluster.port, std::process::id());
        su.batch_execute(&format!(
            "CREATE ROLE latchkey LOGIN CREATEROLE PASSWORD '{}'; \
             CREATE ROLE {g} NOLOGIN; GRANT {g} TO latchkey WITH ADMIN OPTION",
            verifier(&password),
            g = ident(GROUP)
        ))
        .await
        .unwrap();
        let ws = Workspace::new();
        let mut members = String::new();
        for i in 0..PEOPLE {
            members.push_str(&format!(
                "---\napiVersion: latchkey.dev/v1alpha1\nkind: Member\nmetadata: {{name: p{i}}}\n\
                 spec:\n  email: p{i}@acme.example\n  client: acme\n  grants:\n    - role: reader\n"
            ));
        }
        let systems = format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: System\nmetadata: {{name: db}}\nspec:\n  \
             type: postgres\n  environment: staging\n  connection: {{url: \"postgresql://latchkey@127.0.0.1:{}/postgres\"}}\n  \
             credentials: {{env: LATCHKEY_TEST_DB}}\n  prune: true\n---\n\
             apiVersion: latchkey.dev/v1alpha1\nkind: Role\nmetadata: {{name: reader}}\nspec: {{entitlements: {{db: [{GROUP}]}}}}\n---\n\
             apiVersion: latchkey.dev/v1alpha1\nkind: Client\nmetadata: {{name: acme}}\nspec: {{allowedRoles: [reader]}}\n",
            cluster.port
        );
        ws.commit(
            &[
                ("latchkey.yaml", &systems),
                ("clients/acme/members.yaml", &members),
            ],
            1_795_176_000,
            "systems and people",
        );
        Some(Crash {
            cluster,
            ws,
            password,
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        c.args(["apply", "access", "--rev", "main"])
            .current_dir(self.ws.path())
            .env("LATCHKEY_TEST_DB", &self.password)
            .env("NO_COLOR", "1");
        c
    }

    fn logged(&self) -> usize {
        std::fs::read_to_string(
            self.ws
                .repo_path()
                .join(".git/latchkey/journal/main.outcomes.jsonl"),
        )
        .map(|t| t.lines().count())
        .unwrap_or(0)
    }

    fn kill_when(&self, at: usize) {
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while self.logged() < at && started.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        child.wait().unwrap();
    }

    fn apply(&self) -> String {
        let out = self.command().output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    }

    /// Every ledger record on main, oldest first.
    fn records(&self) -> Vec<serde_json::Value> {
        let out = Command::new("git")
            .args(["ls-tree", "-r", "--name-only", "main", "audit/ledger/"])
            .current_dir(self.ws.repo_path())
            .output()
            .unwrap();
        let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.ends_with(".jsonl"))
            .map(str::to_string)
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                let o = Command::new("git")
                    .args(["show", &format!("main:{f}")])
                    .current_dir(self.ws.repo_path())
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<serde_json::Value>>()
            })
            .collect()
    }

    /// The cluster's real members of the group.
    async fn members(&self) -> Vec<String> {
        let su = self.cluster.superuser("postgres").await;
        let rows = su
            .query(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member \
                 JOIN pg_roles g ON g.oid = a.roleid WHERE g.rolname = $1 AND m.rolname <> 'latchkey' \
                 ORDER BY 1",
                &[&GROUP],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Converges, then checks one applied record per change and the replay.
    async fn check(&self) {
        self.apply();
        let again = self.apply();
        assert!(again.contains("applied 0 of 0 changes"), "{again}");
        let records = self.records();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut held = std::collections::BTreeSet::new();
        for r in records
            .iter()
            .filter(|r| r["event"] == "change" && r["result"] == "applied")
        {
            let id = r["identity"].as_str().unwrap().to_string();
            let change = r["change"].as_str().unwrap();
            *counts.entry(format!("{id} {change}")).or_default() += 1;
            if change == "grant" {
                held.insert(id);
            }
        }
        assert!(counts.values().all(|n| *n == 1), "doubled: {counts:?}");
        assert_eq!(counts.len(), PEOPLE * 2, "an account and a grant each");
        assert_eq!(held.into_iter().collect::<Vec<_>>(), self.members().await);
        let verify = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["audit", "verify", "access"])
            .current_dir(self.ws.path())
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_apply_on_postgres_loses_no_record() {
    let Some(c) = Crash::start().await else {
        return;
    };
    c.kill_when(PEOPLE / 2);
    assert!(
        c.logged() > 0 && c.logged() < PEOPLE * 2,
        "killed mid-apply: {}",
        c.logged()
    );
    c.check().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_the_audit_commit_on_postgres_loses_no_record() {
    let Some(c) = Crash::start().await else {
        return;
    };
    c.kill_when(PEOPLE * 2);
    c.check().await;
}
