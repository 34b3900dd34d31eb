//! Throwaway PostgreSQL clusters (initdb + postgres as the `postgres` OS user) with real
//! password (SCRAM) authentication over loopback TCP.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{free_port, wait_for_port};

/// The directory with initdb and postgres.
pub fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LATCHKEY_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn postgres_ids() -> Option<(u32, u32)> {
    let out = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(o.stdout).ok()?.trim().parse().ok()
    };
    Some((out("-u")?, out("-g")?))
}

/// A running cluster; stopped (immediate shutdown) and deleted on Drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    child: std::process::Child,
    pub port: u16,
    pub superuser_password: String,
}

impl PgCluster {
    /// initdb + start, or why it cannot.
    pub fn start() -> Result<PgCluster, String> {
        let bin = bin_dir().ok_or("no PostgreSQL server binaries under /usr/lib/postgresql")?;
        let (uid, gid) = postgres_ids().ok_or("no postgres OS user")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path().to_path_buf();
        let password = format!("su-{}-{}", std::process::id(), free_port());
        std::fs::write(root.join("pwfile"), &password).map_err(|e| e.to_string())?;
        Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(&root)
            .status()
            .map_err(|e| e.to_string())?;
        let data = root.join("data");
        let init = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", root.join("pwfile").display()))
            .args([
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let port = free_port();
        let child = Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &format!("port={port}"),
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", root.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let cluster = PgCluster {
            dir,
            child,
            port,
            superuser_password: password,
        };
        if !wait_for_port(port, Duration::from_secs(30)) {
            return Err(format!("postgres did not listen on {port} within 30 s"));
        }
        Ok(cluster)
    }

    /// The server address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A client config for `user` on `db` (no password set).
    pub fn config(&self, user: &str, db: &str, port: u16) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(port).user(user).dbname(db);
        c
    }

    /// A superuser client on `db`, retried while the server finishes starting.
    pub async fn superuser(&self, db: &str) -> Client {
        let mut config = self.config("postgres", db, self.port);
        config.password(&self.superuser_password);
        let mut last = String::new();
        for _ in 0..100 {
            match config.connect(NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    return client;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot connect as superuser: {last}");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, which also ends the backends.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}
