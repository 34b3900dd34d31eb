//! Benchmark (not a test): apply 2,000 changes to a real scim2-server with the scim
//! connector's bounded concurrency versus one at a time.
//!
//! `scripts/peers/install-scim.sh && cargo run --release --example scim_apply_bench`
//! Prints changes/s for both and the ratio, plus the machine.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use latchkey::connectors::scim::{ScimConfig, ScimConnector};
use latchkey::connectors::{Connector, Op, Secret};

const PEOPLE: usize = 400;
const GRANTS_PER_PERSON: usize = 4;

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores (nproc), {model}")
}

/// Applies all changes: every create, then every grant, `concurrency` at a time.
async fn run(base: &str, token: &str, concurrency: usize) -> (usize, Duration) {
    let mut config = ScimConfig::new(base);
    config.max_concurrency = concurrency;
    let c = ScimConnector::new(config, Some(Secret::new(token))).expect("connector");
    let creates: Vec<Op> = (0..PEOPLE)
        .map(|i| Op::CreateAccount {
            identity: format!("p{i:04}@bench.example"),
            display_name: None,
        })
        .collect();
    let grants: Vec<Op> = (0..PEOPLE)
        .flat_map(|i| {
            (0..GRANTS_PER_PERSON).map(move |g| Op::AddEntitlement {
                identity: format!("p{i:04}@bench.example"),
                entitlement: format!("role-{g}"),
            })
        })
        .collect();
    let limit = c.capabilities().max_concurrency;
    let start = Instant::now();
    let mut done = 0;
    for phase in [creates, grants] {
        let results: Vec<_> = futures::stream::iter(phase.iter().map(|op| c.apply(op)))
            .buffer_unordered(limit)
            .collect()
            .await;
        for r in results {
            r.expect("change applied");
            done += 1;
        }
    }
    let elapsed = start.elapsed();
    let snap = c.read().await.expect("read back");
    assert_eq!(snap.managed.len(), PEOPLE, "every account is there");
    assert!(
        snap.managed
            .iter()
            .all(|a| a.entitlements.len() == GRANTS_PER_PERSON),
        "every grant is there"
    );
    (done, elapsed)
}

#[tokio::main]
async fn main() {
    let venv = std::env::var("LATCHKEY_SCIM_VENV")
        .unwrap_or_else(|_| "/opt/latchkey-peers/scim-venv".into());
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let token = format!("bench-{port}");
    let _server = Server(
        Command::new(format!("{venv}/bin/scim2-server"))
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", &token, "--dynamic-tenants"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server (run scripts/peers/install-scim.sh)"),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "scim2-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let default = ScimConfig::new("http://x").max_concurrency;
    let mut lines = vec![
        format!("machine: {}", machine()),
        format!(
            "workload: {PEOPLE} creates + {} grants = {} changes, scim2-server 0.8.3 on loopback, fresh tenant per run",
            PEOPLE * GRANTS_PER_PERSON,
            PEOPLE * (1 + GRANTS_PER_PERSON)
        ),
    ];
    let mut rates = Vec::new();
    for (tenant, concurrency) in [("seq", 1), ("par", default)] {
        let base = format!("http://127.0.0.1:{port}/{tenant}/v2");
        let (n, t) = run(&base, &token, concurrency).await;
        let rate = n as f64 / t.as_secs_f64();
        rates.push(rate);
        lines.push(format!(
            "concurrency {concurrency:>2}: {n} changes in {:.2} s = {rate:.0} changes/s",
            t.as_secs_f64()
        ));
    }
    lines.push(format!("ratio: {:.2}x sequential", rates[1] / rates[0]));
    let text = lines.join("\n");
    println!("{text}");
    let _ = std::fs::create_dir_all("bench/results");
    let _ = std::fs::write("bench/results/scim-apply.txt", format!("{text}\n"));
}
