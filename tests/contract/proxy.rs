//! Loopback proxies in front of real servers: `CutProxy` cuts every connection once a byte
//! budget of server-to-client traffic is spent (a connection that drops part-way through
//! a read); `FaultProxy` answers chosen HTTP requests with 429 / 5xx and `Retry-After`;
//! `RecordingProxy` keeps every byte a client sends, as a capture on the wire would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; stops accepting when dropped.
pub struct CutProxy {
    pub addr: SocketAddr,
    budget: Arc<AtomicU64>,
    used: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Forwards to `upstream`, with an unlimited budget until `cut_after` is called.
    pub async fn start(upstream: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let budget = Arc::new(AtomicU64::new(u64::MAX));
        let used = Arc::new(AtomicU64::new(0));
        let (b, u) = (budget.clone(), used.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (b, u) = (b.clone(), u.clone());
                tokio::spawn(async move {
                    if u.load(Ordering::SeqCst) >= b.load(Ordering::SeqCst) {
                        return; // budget spent: refuse by closing at once
                    }
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, b, u).await;
                    }
                });
            }
        });
        CutProxy {
            addr,
            budget,
            used,
            task,
        }
    }

    /// Server-to-client bytes relayed so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// From now on, relay at most `bytes` more, then drop every connection.
    pub fn cut_after(&self, bytes: u64) {
        self.used.store(0, Ordering::SeqCst);
        self.budget.store(bytes, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, budget: Arc<AtomicU64>, used: Arc<AtomicU64>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let before = used.fetch_add(n as u64, Ordering::SeqCst);
        let limit = budget.load(Ordering::SeqCst);
        if before >= limit {
            break;
        }
        let allowed = ((limit - before) as usize).min(n);
        if cw.write_all(&buf[..allowed]).await.is_err() || allowed < n {
            break;
        }
    }
    // Dropping both halves resets the client mid-response when the budget ran out.
    up.abort();
}

/// Relays to a real server and records what clients send: what an eavesdropper on the
/// network between latchkey and the server would see.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    /// Forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let log = sent.clone();
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                    let _ = down.await;
                });
            }
        });
        RecordingProxy {
            addr,
            sent,
            connections,
            task,
        }
    }

    /// True when the client sent `needle` in the clear.
    pub fn saw(&self, needle: &str) -> bool {
        let sent = self.sent.lock().unwrap();
        !needle.is_empty() && sent.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    /// How often the client sent `needle` in the clear (e.g. a request line).
    pub fn count(&self, needle: &str) -> usize {
        let sent = self.sent.lock().unwrap();
        if needle.is_empty() {
            return 0;
        }
        sent.windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count()
    }

    /// Connections clients opened so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Bytes clients sent so far.
    pub fn bytes(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which requests a `FaultProxy` answers itself (counted from 1, in arrival order).
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// The first n requests.
    First(u64),
    /// Every k-th request (k, 2k, ...).
    Every(u64),
    /// Every request.
    Always,
}

impl Rule {
    fn hits(self, n: u64) -> bool {
        match self {
            Rule::First(first) => n <= first,
            Rule::Every(k) => n.is_multiple_of(k),
            Rule::Always => true,
        }
    }
}

/// The answer a `FaultProxy` gives instead of the server's.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// Status line after "HTTP/1.1 ", e.g. "429 Too Many Requests".
    pub status: &'static str,
    pub retry_after: Option<&'static str>,
    pub rule: Rule,
    /// Forward the request first and drop the server's answer: the change is made but
    /// the client sees the fault (a gateway timing out after the backend committed).
    pub after_forwarding: bool,
}

/// A loopback HTTP/1 proxy that answers chosen requests with an error status (and a
/// `Retry-After`), and forwards the others to the real server. One request per
/// connection: every answer it writes closes the connection, and scim2-server (HTTP/1.0)
/// closes after each response too, so each request is seen and counted.
pub struct FaultProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, fault, log).await;
                });
            }
        });
        FaultProxy { addr, seen, task }
    }

    /// The request lines seen so far ("PATCH /t/v2/Groups/…"), in order, each with
    /// whether it was answered with the fault.
    pub fn seen(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were answered with the fault.
    pub fn faulted(&self) -> usize {
        self.seen().iter().filter(|(_, f)| *f).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    log: Arc<Mutex<Vec<(String, bool)>>>,
) -> std::io::Result<()> {
    let request = read_request(&mut client).await?;
    // Only the request line is kept: the headers hold the bearer token.
    let line =
        String::from_utf8_lossy(&request[..request.iter().position(|b| *b == b'\r').unwrap_or(0)])
            .into_owned();
    let hit = {
        let mut log = log.lock().unwrap();
        log.push((line, false));
        let n = log.len() as u64;
        let hit = fault.rule.hits(n);
        log.last_mut().expect("just pushed").1 = hit;
        hit
    };
    if hit && !fault.after_forwarding {
        return answer_fault(client, fault).await;
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&request).await?;
    if hit {
        // The server makes the change; its answer is dropped.
        let mut discard = Vec::new();
        server.read_to_end(&mut discard).await?;
        return answer_fault(client, fault).await;
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    let _ = tokio::io::copy(&mut sr, &mut cw).await;
    let _ = cw.shutdown().await;
    up.abort();
    Ok(())
}

async fn answer_fault(mut client: TcpStream, fault: Fault) -> std::io::Result<()> {
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"{}","detail":"injected by the test proxy"}}"#,
        fault.status.split(' ').next().unwrap_or_default()
    );
    let retry_after = fault
        .retry_after
        .map_or(String::new(), |r| format!("Retry-After: {r}\r\n"));
    let response = format!(
        "HTTP/1.1 {}\r\n{retry_after}Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        fault.status,
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// Reads one request: the head, then `Content-Length` bytes of body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}
