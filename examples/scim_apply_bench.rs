//! Benchmark (not a test): apply changes to a real scim2-server with the scim connector's
//! bounded concurrency versus one at a time, and in SCIM Bulk requests (the server
//! advertises Bulk; the apply engine's batches), in two configurations:
//!
//! - **loopback**: the connector talks to the server directly on 127.0.0.1. The server
//!   (one Python process) is the bottleneck there, so this shows the server's ceiling.
//! - **delayed**: the same server behind an in-process TCP delay line that holds every
//!   byte for a fixed one-way delay (10 ms each way by default, a 20 ms round trip), the
//!   way a SaaS SCIM endpoint tens of milliseconds away behaves. This shows how much
//!   latency the connector's concurrency hides.
//!
//! `scripts/peers/install-scim.sh && cargo run --release --example scim_apply_bench`
//! Prints the machine, the workload, changes/s at each concurrency and the ratios, and
//! writes the same text to `bench/results/scim-apply.txt` (see `--help`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use latchkey::connectors::scim::{ScimConfig, ScimConnector};
use latchkey::connectors::{Connector, Op, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Applies creates then grants to a real scim2-server, sequentially and concurrently,
/// directly on loopback and behind a delay line.
#[derive(Parser)]
struct Args {
    /// People created on loopback (each then gets `--grants` roles).
    #[arg(long, default_value_t = 400)]
    people: usize,
    /// People created behind the delay line (smaller: sequential there is slow).
    #[arg(long, default_value_t = 200)]
    delayed_people: usize,
    /// Roles granted to each person.
    #[arg(long, default_value_t = 4)]
    grants: usize,
    /// One-way delay of the delay line in milliseconds (the round trip is twice this).
    #[arg(long, env = "LATCHKEY_BENCH_DELAY_MS", default_value_t = 10)]
    delay_ms: u64,
    /// Concurrency compared with 1 (default: the connector's default maxConcurrency).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Where to write the results ("-": only print them).
    #[arg(long, default_value = "bench/results/scim-apply.txt")]
    out: String,
}

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

/// The 1, 5 and 15 minute load averages.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A TCP forwarder that delivers every byte `one_way` after it arrived, in both
/// directions, and counts connections.
///
/// scim2-server speaks HTTP/1.0 and closes the connection after each response, so a
/// real client far away pays a TCP handshake (one round trip) before every request: the
/// first byte from the client is held until the handshake would have completed.
/// TLS, which a real SaaS endpoint adds, is not modelled.
struct DelayLine {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayLine {
    async fn start(upstream: SocketAddr, one_way: Duration) -> DelayLine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind delay line");
        let addr = listener.local_addr().expect("delay line address");
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let accepted = Instant::now();
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let handshake_done = accepted + 2 * one_way;
                    tokio::join!(
                        delayed_copy(cr, sw, one_way, handshake_done),
                        delayed_copy(sr, cw, one_way, accepted),
                    );
                });
            }
        });
        DelayLine {
            addr,
            connections,
            task,
        }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk (and the end of stream) delivered `delay` after it
/// was read, but never before `not_before` + `delay`. Reading goes on while earlier
/// chunks wait, so the line delays without throttling.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    not_before: Instant,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            let due = Instant::now().max(not_before) + delay;
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            if tx.send((due, chunk)).is_err() || n == 0 {
                break;
            }
        }
    });
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        match chunk {
            Some(bytes) => {
                if to.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            None => break,
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    Some(ticks / hz)
}

/// One measured apply.
struct Run {
    changes: usize,
    elapsed: Duration,
    /// TCP connections (= HTTP requests with this server) during the apply, when known.
    requests: Option<u64>,
    /// CPU seconds the server process spent during the apply.
    server_cpu: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.changes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Applies every create, then every grant, `concurrency` at a time, on a fresh tenant;
/// then reads back and checks that everything is there. With `bulk`, as the apply engine
/// does after a read: batches of the connector's `batch_size` through `apply_batch` (SCIM
/// Bulk requests, RFC 7644 §3.7), `concurrency` batches at a time.
#[allow(clippy::too_many_arguments)]
async fn run(
    base: &str,
    token: &str,
    concurrency: usize,
    bulk: bool,
    people: usize,
    grants: usize,
    line: Option<&DelayLine>,
    server_pid: u32,
) -> Run {
    let mut config = ScimConfig::new(base);
    config.max_concurrency = concurrency;
    let c = ScimConnector::new(config, Some(Secret::new(token))).expect("connector");
    let creates: Vec<Op> = (0..people)
        .map(|i| Op::CreateAccount {
            identity: format!("p{i:04}@bench.example"),
            display_name: None,
        })
        .collect();
    let adds: Vec<Op> = (0..people)
        .flat_map(|i| {
            (0..grants).map(move |g| Op::AddEntitlement {
                identity: format!("p{i:04}@bench.example"),
                entitlement: format!("role-{g}"),
            })
        })
        .collect();
    let limit = c.capabilities().max_concurrency;
    if bulk {
        // The read every apply starts with is where the connector learns of Bulk.
        c.read().await.expect("read");
        assert!(c.batch_size() > 1, "the server advertises Bulk");
    }
    let connections_before = line.map(DelayLine::connections);
    let cpu_before = cpu_seconds(server_pid);
    let start = Instant::now();
    let mut changes = 0;
    for phase in [creates, adds] {
        let results: Vec<_> = if bulk {
            futures::stream::iter(phase.chunks(c.batch_size()).map(|ops| c.apply_batch(ops)))
                .buffer_unordered(limit)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .flatten()
                .collect()
        } else {
            futures::stream::iter(phase.iter().map(|op| c.apply(op)))
                .buffer_unordered(limit)
                .collect()
                .await
        };
        for r in results {
            r.expect("change applied");
            changes += 1;
        }
    }
    let elapsed = start.elapsed();
    let server_cpu = cpu_seconds(server_pid)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let requests = line
        .zip(connections_before)
        .map(|(l, before)| l.connections() - before);
    let snap = c.read().await.expect("read back");
    assert_eq!(snap.managed.len(), people, "every account is there");
    assert!(
        snap.managed.iter().all(|a| a.entitlements.len() == grants),
        "every grant is there"
    );
    Run {
        changes,
        elapsed,
        requests,
        server_cpu,
    }
}

fn describe(how: &str, r: &Run) -> String {
    let requests = r.requests.map_or(String::new(), |n| {
        format!(
            ", {n} HTTP requests ({:.2} per change)",
            n as f64 / r.changes as f64
        )
    });
    let cpu = r.server_cpu.map_or(String::new(), |s| {
        format!(
            "; server CPU {s:.1} s ({:.0} % of one core)",
            100.0 * s / r.elapsed.as_secs_f64()
        )
    });
    format!(
        "  {how}: {} changes in {:.2} s = {:.1} changes/s{requests}{cpu}",
        r.changes,
        r.elapsed.as_secs_f64(),
        r.rate()
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let venv = std::env::var("LATCHKEY_SCIM_VENV")
        .unwrap_or_else(|_| "/opt/latchkey-peers/scim-venv".into());
    let bin = format!("{venv}/bin/scim2-server");
    let version = Command::new(format!("{venv}/bin/pip"))
        .args(["show", "scim2-server"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
        })
        .unwrap_or_else(|| "(version unknown)".into());
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let token = format!("bench-{port}");
    let server = Server(
        Command::new(&bin)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", &token, "--dynamic-tenants"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server (run scripts/peers/install-scim.sh)"),
    );
    let start = std::time::Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "scim2-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| ScimConfig::new("http://x").max_concurrency);
    let one_way = Duration::from_millis(args.delay_ms);
    let line = DelayLine::start(SocketAddr::from(([127, 0, 0, 1], port)), one_way).await;

    let mut lines = vec![
        format!("machine: {}", machine()),
        format!("load average at start (1/5/15 min): {}", load()),
        format!("server: scim2-server {version} (one Python process), fresh tenant per run"),
        format!(
            "command: cargo run --release --example scim_apply_bench -- --people {} --delayed-people {} --grants {} --delay-ms {} --concurrency {concurrency}",
            args.people, args.delayed_people, args.grants, args.delay_ms
        ),
    ];
    println!("{}", lines.join("\n"));
    let configs = [
        (
            "loopback",
            format!(
                "loopback, direct: {} creates + {} grants = {} changes",
                args.people,
                args.people * args.grants,
                args.people * (1 + args.grants)
            ),
            args.people,
            None,
        ),
        (
            "delayed",
            format!(
                "delayed: {} ms each way ({} ms round trip, plus one round trip per connection for the TCP handshake): {} creates + {} grants = {} changes",
                args.delay_ms,
                2 * args.delay_ms,
                args.delayed_people,
                args.delayed_people * args.grants,
                args.delayed_people * (1 + args.grants)
            ),
            args.delayed_people,
            Some(&line),
        ),
    ];
    for (name, title, people, via) in configs {
        let port_used = via.map_or(port, |l| l.addr.port());
        lines.push(title);
        println!("{}", lines.last().unwrap());
        let mut rates = Vec::new();
        for (n, bulk) in [(1, false), (concurrency, false), (concurrency, true)] {
            let tenant = if bulk { "bulk" } else { "c" };
            let base = format!("http://127.0.0.1:{port_used}/{name}-{tenant}{n}/v2");
            let r = run(
                &base,
                &token,
                n,
                bulk,
                people,
                args.grants,
                via,
                server.0.id(),
            )
            .await;
            rates.push(r.rate());
            let how = if bulk {
                format!("Bulk, {n:>2} batches at once")
            } else {
                format!("concurrency {n:>2}         ")
            };
            lines.push(describe(&how, &r));
            println!("{}", lines.last().unwrap());
        }
        lines.push(format!(
            "  ratio: concurrency {concurrency} {:.2}x sequential; Bulk {:.2}x sequential, {:.2}x concurrency {concurrency} (load average now: {})",
            rates[1] / rates[0],
            rates[2] / rates[0],
            rates[2] / rates[1],
            load()
        ));
        println!("{}", lines.last().unwrap());
    }
    if args.out != "-" {
        let text = lines.join("\n");
        if let Some(dir) = std::path::Path::new(&args.out).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&args.out, format!("{text}\n")).expect("write results");
        println!("written to {}", args.out);
    }
}
