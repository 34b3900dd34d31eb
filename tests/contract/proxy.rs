//! A loopback TCP proxy that cuts every connection once a byte budget of server-to-client
//! traffic is spent: a connection that drops part-way through a read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
