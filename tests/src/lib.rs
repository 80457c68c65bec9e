//! Harness for end-to-end tests: a fresh PostgreSQL database per test, the real
//! `amtsbuch` binary started as a child process on a free port, and a minimal HTTP client.
//!
//! The binary is the one `cargo test --workspace` builds (target/<profile>/amtsbuch); the
//! tests exercise it exactly as an operator would, through flags and HTTP.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The PostgreSQL server the tests use (trust auth).
pub fn server_url() -> String {
    std::env::var("AMTSBUCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The `amtsbuch` binary next to this test executable.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let bin = dir.join(format!("amtsbuch{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// A database created for one test and dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = server_url();
        let name = format!("amtsbuch_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .expect("PostgreSQL must be running for the end-to-end tests");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self { name, url }
    }

    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    pub async fn drop_now(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&server_url()).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// A running `amtsbuch serve`, started with `--dev` so that tokens from `amtsbuch token`
/// (with the development key in its working directory) are accepted.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The working directory, where the development key lives.
    pub cwd: PathBuf,
    /// An operator token, sent with every request that does not bring its own
    /// `Authorization`.
    pub token: String,
}

impl Server {
    /// Start `amtsbuch serve` with extra arguments on a free loopback port, in `cwd`, and
    /// wait until it is ready.
    pub async fn start(args: &[&str], cwd: &std::path::Path) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(binary())
            .arg("serve")
            .arg("--listen")
            .arg(&addr)
            .arg("--dev")
            .args(args)
            .current_dir(cwd)
            .env_remove("AMTSBUCH_DATABASE_URL")
            .env_remove("AMTSBUCH_NATS_URL")
            .env("AMTSBUCH_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start amtsbuch");
        let token = mint_token(cwd, &["--role", "operator", "--subject", "e2e-operator"]).await;
        let server = Self {
            child,
            addr,
            cwd: cwd.to_path_buf(),
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server.request("GET", "/readyz", &[], "").await {
                if r.status == 200 {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "amtsbuch did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One HTTP/1.1 request with `Connection: close`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect(&self.addr).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            req.push_str(&format!("Authorization: Bearer {}\r\n", self.token));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Response::parse(&raw)
    }

    pub async fn post_events(&self, stream: &str, expected: &str, body: &str) -> Response {
        self.request(
            "POST",
            &format!("/streams/{stream}/events"),
            &[("Expected-Version", expected)],
            body,
        )
        .await
        .expect("append request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], "")
            .await
            .expect("get request")
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> std::io::Result<Self> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no header end"))?;
        let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("header not utf-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
        }
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).ok()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// Mint a development token with `amtsbuch token` in `cwd` (whose `data/` holds the key a
/// `serve --dev` started there uses).
pub async fn mint_token(cwd: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("token")
        .args(args)
        .current_dir(cwd)
        .env_remove("AMTSBUCH_DEV_KEY")
        .env("AMTSBUCH_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run amtsbuch token");
    assert!(
        out.status.success(),
        "amtsbuch token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Run `amtsbuch` with arguments to completion; returns exit code and stdout.
pub async fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("AMTSBUCH_DATABASE_URL")
        .env("AMTSBUCH_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run amtsbuch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p =
            std::env::temp_dir().join(format!("amtsbuch-e2e-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
