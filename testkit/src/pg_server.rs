//! A PostgreSQL server of the test's own, for tests that stop and crash the database.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::dir::{free_port, TempDir};

/// Whether this process runs as root (then PostgreSQL's tools run as the `postgres` user,
/// since the server refuses to run as root, and the tests may mount file systems).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The directory with PostgreSQL's `initdb`, `pg_ctl` and `postgres`:
/// `AMTSBUCH_TEST_PG_BIN`, the newest `/usr/lib/postgresql/<version>/bin`, or the PATH.
pub fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("AMTSBUCH_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file())
        .expect(
            "these tests start a PostgreSQL server of their own: set AMTSBUCH_TEST_PG_BIN to the \
             directory with initdb and pg_ctl, or install the PostgreSQL server",
        )
}

/// A PostgreSQL server of the test's own — `initdb` into a scratch directory, its own
/// port on the loopback interface, trust authentication — that the test may stop and
/// start as it likes (never the machine's shared server). Stopped and removed when dropped.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    port: u16,
    data: PathBuf,
    // Last, so that the server is stopped before its directory is removed.
    dir: TempDir,
}

impl PgServer {
    /// Create the cluster and start it.
    pub async fn start() -> Self {
        let dir = TempDir::new();
        let data = dir.0.join("data");
        let server = Self {
            bin: pg_bin_dir(),
            port: free_port(),
            data,
            dir,
        };
        if running_as_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&server.dir.0)
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "cannot give the cluster directory to postgres"
            );
        }
        server.run(
            "initdb",
            &[
                "-D",
                &server.data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.start_again().await;
        server
    }

    /// A URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Create database `name` and return its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the private server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        self.url(name)
    }

    /// Stop the server the hard way: every backend is killed, nothing is flushed, and the
    /// next start runs crash recovery.
    pub fn stop_immediately(&self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }

    /// Start the (stopped) server and wait until it accepts connections.
    pub async fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c shared_buffers=16MB",
            self.port,
            self.dir.0.display()
        );
        let log = self.dir.0.join("postgres.log").display().to_string();
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log, "-o", &options]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data.display().to_string();
        let mut all = vec!["-D", &data];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// One of PostgreSQL's tools, run as `postgres` when the test runs as root.
    fn tool(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .tool(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .tool("pg_ctl")
            .args(["-D", &data, "stop", "-m", "immediate", "-w"])
            .output();
    }
}
