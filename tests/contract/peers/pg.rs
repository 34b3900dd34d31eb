//! Throwaway PostgreSQL clusters (initdb + postgres as the `postgres` OS user) with real
//! password (SCRAM) authentication over loopback TCP.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use latchkey::connectors::Secret;
use latchkey::connectors::postgres::PgTarget;
use tokio_postgres::{Client, NoTls};

use super::tls::TestCa;
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
    /// The CA of a TLS-only cluster.
    pub ca: Option<TestCa>,
}

impl PgCluster {
    /// [`PgCluster::start`], or None after the peer's notice (a failure in CI) when
    /// PostgreSQL cannot start here.
    pub fn start_or_skip() -> Option<PgCluster> {
        match PgCluster::start() {
            Ok(c) => Some(c),
            Err(why) => {
                crate::peers::unavailable("PostgreSQL", &why);
                None
            }
        }
    }

    /// initdb + start, or why it cannot.
    pub fn start() -> Result<PgCluster, String> {
        Self::start_with(false)
    }

    /// A cluster that accepts TCP sessions only over TLS (`hostssl` alone in pg_hba, as
    /// RDS with `rds.force_ssl`), its certificate signed by a CA made here, and that logs
    /// every connection (with whether it was encrypted) to [`PgCluster::log`].
    pub fn start_tls() -> Result<PgCluster, String> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<PgCluster, String> {
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
        let mut ca = None;
        let mut extra: Vec<String> = Vec::new();
        if tls {
            let made = TestCa::create(&root, "pg");
            for (from, to) in [(&made.cert, "server.crt"), (&made.key, "server.key")] {
                std::fs::copy(from, data.join(to)).map_err(|e| e.to_string())?;
                std::os::unix::fs::chown(data.join(to), Some(uid), Some(gid))
                    .map_err(|e| e.to_string())?;
            }
            std::fs::set_permissions(
                data.join("server.key"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .map_err(|e| e.to_string())?;
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .map_err(|e| e.to_string())?;
            for c in [
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
                "log_connections=on",
            ] {
                extra.extend(["-c".to_string(), c.to_string()]);
            }
            ca = Some(made);
        }
        let log = std::fs::File::create(root.join("server.log")).map_err(|e| e.to_string())?;
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
            .args(&extra)
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let cluster = PgCluster {
            dir,
            child,
            port,
            ca,
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

    /// The URL latchkey uses for `user` on `db` at `port`: on a TLS cluster with
    /// `sslmode=verify-full` and the test CA, else libpq's default (`prefer`).
    pub fn url(&self, user: &str, db: &str, port: u16) -> String {
        let base = format!("postgresql://{user}@127.0.0.1:{port}/{db}");
        match &self.ca {
            Some(ca) => format!("{base}?sslmode=verify-full&sslrootcert={}", ca.ca.display()),
            None => base,
        }
    }

    /// latchkey's target for `user` on `db` at `port` with `password`.
    pub fn target(&self, user: &str, db: &str, port: u16, password: &str) -> PgTarget {
        PgTarget::from_url(
            &self.url(user, db, port),
            Some(&Secret::new(password)),
            None,
        )
        .expect("a valid target")
    }

    /// The server's log (connections, with `SSL enabled` when encrypted, on TLS clusters).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A client config for `user` on `db` over the Unix socket (trusted: the harness's
    /// own setup, which the TLS-only TCP rules would refuse).
    pub fn local_config(&self, user: &str, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(self.dir.path())
            .port(self.port)
            .user(user)
            .dbname(db);
        c
    }

    /// A superuser client on `db`, retried while the server finishes starting.
    pub async fn superuser(&self, db: &str) -> Client {
        let config = self.local_config("postgres", db);
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
