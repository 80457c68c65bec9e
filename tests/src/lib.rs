//! Harness for end-to-end tests: a fresh PostgreSQL database per test, the real
//! `amtsbuch` binary started as a child process on a free port, a minimal HTTP client
//! (also for Server-Sent Events), a private `nats-server` per test that can be killed and
//! restarted, a private PostgreSQL server (`PgServer`) for tests that stop the database,
//! and a reader that returns what a JetStream stream holds.
//!
//! The binary is the one `cargo test --workspace` builds (target/<profile>/amtsbuch), and
//! so is the example Fachverfahren (target/<profile>/examples/fachverfahren); the tests
//! exercise them exactly as an operator and a Fachverfahren would, through flags, HTTP and
//! NATS.

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

/// An example program built beside the binary (`cargo test --workspace` builds examples
/// into target/<profile>/examples/).
pub fn example(name: &str) -> PathBuf {
    let bin = binary();
    let path = bin
        .parent()
        .expect("target directory")
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds the examples",
        path.display()
    );
    path
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
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

    /// The log as stored, in position order: what every copy elsewhere must match.
    pub async fn events(&self) -> Vec<StoredEvent> {
        let mut conn = self.connect().await;
        let rows: Vec<(i64, uuid::Uuid, Vec<u8>)> =
            sqlx::query_as("SELECT position, event_id, record FROM events ORDER BY position")
                .fetch_all(&mut conn)
                .await
                .expect("read the events table");
        rows.into_iter()
            .map(|(position, event_id, record)| StoredEvent {
                position: u64::try_from(position).expect("positions are positive"),
                event_id,
                json: serde_json::from_slice(&record).expect("records are JSON"),
                record,
            })
            .collect()
    }

    /// The position of the last committed event (0 for an empty log).
    pub async fn head(&self) -> u64 {
        let mut conn = self.connect().await;
        let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
            .fetch_one(&mut conn)
            .await
            .expect("read log_head");
        u64::try_from(head).expect("the head is not negative")
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

/// One row of the `events` table.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: u64,
    pub event_id: uuid::Uuid,
    /// The stored record bytes, exactly as hashed.
    pub record: Vec<u8>,
    /// The same record parsed, for picking out metadata.
    pub json: Value,
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
        Self::start_logging(args, cwd, "warn", None).await
    }

    /// `start` with the log filter `log` (`AMTSBUCH_LOG`), writing the server's log to
    /// `log_file` instead of the test's output if given (without colours, one line per
    /// entry, each starting with its RFC 3339 time).
    pub async fn start_logging(
        args: &[&str],
        cwd: &std::path::Path,
        log: &str,
        log_file: Option<&std::path::Path>,
    ) -> Self {
        Self::launch(args, cwd, log, log_file, "/readyz").await
    }

    /// `start_logging`, waiting only until the process answers (`/healthz`), not until it
    /// is ready: for tests of a server that is not ready.
    pub async fn start_live(
        args: &[&str],
        cwd: &std::path::Path,
        log: &str,
        log_file: Option<&std::path::Path>,
    ) -> Self {
        Self::launch(args, cwd, log, log_file, "/healthz").await
    }

    async fn launch(
        args: &[&str],
        cwd: &std::path::Path,
        log: &str,
        log_file: Option<&std::path::Path>,
        ready_path: &str,
    ) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let addr = format!("127.0.0.1:{port}");
        let stderr = match log_file {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("log file"),
            ),
            None => Stdio::inherit(),
        };
        let child = Command::new(binary())
            .arg("serve")
            .arg("--listen")
            .arg(&addr)
            .arg("--dev")
            .args(args)
            .current_dir(cwd)
            .env_remove("AMTSBUCH_DATABASE_URL")
            .env_remove("AMTSBUCH_NATS_URL")
            .env("AMTSBUCH_LOG", log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start amtsbuch");
        let token = mint_token(cwd, &["--role", "operator", "--subject", "e2e-operator"]).await;
        let mut server = Self {
            child,
            addr,
            cwd: cwd.to_path_buf(),
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server.request("GET", ready_path, &[], "").await {
                if r.status == 200 {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("amtsbuch serve {args:?} exited before it was ready ({status}); its errors are above");
            }
            assert!(Instant::now() < deadline, "amtsbuch did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for this server that tasks can own (with the operator token).
    pub fn client(&self) -> Client {
        Client {
            addr: self.addr.clone(),
            token: self.token.clone(),
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
        self.client().request(method, path, headers, body).await
    }

    pub async fn post_events(&self, stream: &str, expected: &str, body: &str) -> Response {
        self.client().post_events(stream, expected, body).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client().get(path).await
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// What a request needs of a server: its address and a token to send.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: String,
    /// Sent with every request that does not bring its own `Authorization`.
    pub token: String,
}

impl Client {
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

/// The token of the Landratsamt Meißen's Wohngeld system, the Fachverfahren of the guides:
/// role `fachverfahren`, authority `lra-meissen`, service `99108001000000`.
pub async fn wohngeld_token(cwd: &std::path::Path) -> String {
    mint_token(
        cwd,
        &[
            "--role",
            "fachverfahren",
            "--subject",
            "fv-wohngeld",
            "--authority",
            "lra-meissen",
            "--service",
            "99108001000000",
        ],
    )
    .await
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

/// Create a signing key for `origin` with `amtsbuch keygen` under `dir/keys`; returns the
/// private key's path, for `--signing-key`.
pub async fn keygen(dir: &std::path::Path, origin: &str) -> String {
    let keys = dir.join("keys");
    let (code, out, err) = run_cli(&[
        "keygen",
        "--origin",
        origin,
        "--out",
        &keys.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    keys.join("amtsbuch-signing.pk8").display().to_string()
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

// ---------------------------------------------------------------------------------------
// Server-Sent Events.

/// One Server-Sent-Events frame (comments and keep-alives are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseFrame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    /// The frame's id as a log position.
    pub fn position(&self) -> u64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("frame without a position id: {self:?}"))
    }
}

/// A `GET /events/stream` connection read frame by frame, the way an `EventSource` reads
/// it: the body is only read when the test asks for the next frame.
#[derive(Debug)]
pub struct SseClient {
    stream: TcpStream,
    chunked: bool,
    /// Received bytes not yet taken out of the chunked transfer encoding.
    raw: Vec<u8>,
    /// Decoded body bytes not yet split into frames.
    body: Vec<u8>,
    ended: bool,
}

impl Server {
    /// Subscribe to `GET /events/stream` with `token`, resuming after `last_event_id` if
    /// given. Panics unless the server answers 200 with an event stream.
    pub async fn subscribe(&self, token: &str, last_event_id: Option<u64>) -> SseClient {
        let mut stream = TcpStream::connect(&self.addr).await.expect("connect");
        let mut req = format!(
            "GET /events/stream HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n",
            self.addr
        );
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        let split = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                .await
                .expect("the subscription's response head arrives")
                .expect("read");
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status = head.split(' ').nth(1).unwrap_or_default().to_owned();
        if status != "200" {
            // Read the rest for the message (the server closes: Connection: close).
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
            panic!(
                "GET /events/stream answered {status}: {}",
                String::from_utf8_lossy(&raw)
            );
        }
        assert!(head.contains("text/event-stream"), "{head}");
        SseClient {
            stream,
            chunked: head.contains("transfer-encoding: chunked"),
            raw: raw[split + 4..].to_vec(),
            body: Vec::new(),
            ended: false,
        }
    }
}

impl SseClient {
    /// The next frame, or `None` if none arrives within `within` or the server ended the
    /// stream.
    pub async fn next_frame(&mut self, within: Duration) -> Option<SseFrame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.decode();
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            let mut buf = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => self.ended = true,
                Ok(Ok(n)) => self.raw.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Frames of type `event` until one with position `last` (inclusive), in order; panics
    /// if the stream stalls for `stall` or ends first.
    pub async fn events_until(&mut self, last: u64, stall: Duration) -> Vec<SseFrame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next_frame(stall).await.unwrap_or_else(|| {
                panic!(
                    "the event stream stalled or ended before position {last}; got {:?}",
                    frames.iter().map(SseFrame::position).collect::<Vec<_>>()
                )
            });
            if frame.event.as_deref() != Some("event") {
                panic!("unexpected frame {frame:?}");
            }
            let position = frame.position();
            frames.push(frame);
            if position >= last {
                return frames;
            }
        }
    }

    /// Move complete chunks from `raw` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .expect("a chunk size line");
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// Split one complete frame off `body`, skipping comment-only blocks.
    fn take_frame(&mut self) -> Option<SseFrame> {
        loop {
            let end = self.body.windows(2).position(|w| w == b"\n\n")?;
            let block = String::from_utf8_lossy(&self.body[..end]).into_owned();
            self.body.drain(..end + 2);
            let mut frame = SseFrame {
                id: None,
                event: None,
                data: String::new(),
            };
            let mut fields = false;
            for line in block.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                fields = true;
                match name {
                    "id" => frame.id = Some(value.to_owned()),
                    "event" => frame.event = Some(value.to_owned()),
                    "data" => {
                        if !frame.data.is_empty() {
                            frame.data.push('\n');
                        }
                        frame.data.push_str(value);
                    }
                    _ => {}
                }
            }
            if fields {
                return Some(frame);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A private NATS server, and what its streams hold.

/// The `nats-server` binary: `AMTSBUCH_TEST_NATS_SERVER`, `nats-server` on the PATH, or
/// `/usr/sbin/nats-server`. Without one the test fails: the guarantees under test need a
/// NATS server that the test can kill.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("AMTSBUCH_TEST_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "AMTSBUCH_TEST_NATS_SERVER={} is not a file",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    let fallback = PathBuf::from("/usr/sbin/nats-server");
    on_path
        .or_else(|| fallback.is_file().then_some(fallback))
        .expect(
        "these tests need a nats-server binary (with JetStream): set AMTSBUCH_TEST_NATS_SERVER, \
             put nats-server on the PATH, or install it at /usr/sbin/nats-server",
    )
}

/// A `nats-server -js` of the test's own on a free loopback port, storing in a directory
/// of its own. It can be killed (SIGKILL: no orderly shutdown, unsynced data may be lost,
/// as in a crash) and restarted on the same port and store; it is killed and its store
/// removed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// The server's `max_payload`, when not its default (1 MiB).
    max_payload: Option<usize>,
    // Declared before `dir` so that the process is gone before its directory is removed.
    child: Option<std::process::Child>,
    dir: TempDir,
}

impl NatsServer {
    pub async fn start() -> Self {
        Self::start_with_max_payload(None).await
    }

    /// `start`, with this `max_payload` (the most bytes of headers and payload one message
    /// may have) instead of the default 1 MiB.
    pub async fn start_with_max_payload(max_payload: Option<usize>) -> Self {
        let mut server = Self {
            binary: nats_server_binary(),
            port: free_port(),
            max_payload,
            child: None,
            dir: TempDir::new(),
        };
        server.spawn().await;
        server
    }

    /// Restart it (SIGKILL, then start on the same port and store) with another
    /// `max_payload`; clients learn the new value when they reconnect.
    pub async fn restart_with_max_payload(&mut self, max_payload: Option<usize>) {
        self.max_payload = max_payload;
        self.restart().await;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL the server and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port with the same store, after `kill`.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let config = self.dir.0.join("nats.conf");
        let settings = self
            .max_payload
            .map(|n| format!("max_payload: {n}\n"))
            .unwrap_or_default();
        std::fs::write(&config, settings).expect("write nats.conf");
        let child = std::process::Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.0.join("jetstream"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        // Ready means JetStream answers, not only that the port accepts connections: after
        // a restart JetStream first recovers its streams from the store.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                panic!(
                    "nats-server on port {} exited at start: {status}",
                    self.port
                );
            }
            let ready = async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .connect(self.url())
                    .await
                    .ok()?;
                // Any answer of the JetStream API will do; a stream nobody creates gives one
                // that every server version understands.
                match async_nats::jetstream::new(client)
                    .get_stream("AMTSBUCH_READINESS_PROBE")
                    .await
                {
                    Ok(_) => Some(()),
                    Err(e) => matches!(
                        e.kind(),
                        async_nats::jetstream::context::GetStreamErrorKind::JetStream(_)
                    )
                    .then_some(()),
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} did not become ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream context on `url`.
pub async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to NATS at {url}: {e}"));
    async_nats::jetstream::new(client)
}

/// A message as a JetStream stream holds it.
#[derive(Debug, Clone)]
pub struct StreamedMessage {
    pub sequence: u64,
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl StreamedMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The log position the relay put in `Amtsbuch-Position`.
    pub fn position(&self) -> u64 {
        self.header("Amtsbuch-Position")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("message {} has no Amtsbuch-Position", self.sequence))
    }
}

/// Every message `stream` holds right now, in stream order, read with an ordered consumer
/// (which checks for gaps itself and starts over if it sees one).
pub async fn stream_messages(url: &str, stream: &str) -> Vec<StreamedMessage> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    use futures_util::StreamExt;

    let js = jetstream(url).await;
    let handle = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    let state = handle.get_info().await.expect("stream info").state;
    let total = usize::try_from(state.messages).expect("a count");
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let consumer = handle
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    while out.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stream {stream} holds {total} messages, read only {}",
                    out.len()
                )
            })
            .expect("the consumer keeps delivering")
            .expect("a message");
        let sequence = message.info().expect("JetStream metadata").stream_sequence;
        let headers = message
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (AsRef::<str>::as_ref(name).to_owned(), v.as_str().to_owned()))
            })
            .collect();
        out.push(StreamedMessage {
            sequence,
            subject: message.subject.as_str().to_owned(),
            headers,
            payload: message.payload.to_vec(),
        });
    }
    out
}

/// The `Amtsbuch-Position` of the last message of `stream`, or `None` if NATS, the stream
/// or a message is not there (yet).
pub async fn stream_last_position(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Option<u64> {
    let handle = js.get_stream(stream).await.ok()?;
    let state = handle.get_info().await.ok()?.state;
    if state.messages == 0 {
        return None;
    }
    let message = handle.get_raw_message(state.last_sequence).await.ok()?;
    message
        .headers
        .get("Amtsbuch-Position")
        .and_then(|v| v.as_str().parse().ok())
}

/// Wait until the relay has published the log up to `head` to `stream`.
pub async fn wait_relayed(url: &str, stream: &str, head: u64, within: Duration) {
    let js = jetstream(url).await;
    let deadline = Instant::now() + within;
    loop {
        let last = stream_last_position(&js, stream).await;
        if last.is_some_and(|p| p >= head) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not publish up to position {head} within {within:?}; the stream ends at {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// A private PostgreSQL server.

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
