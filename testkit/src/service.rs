//! The `amtsbuch` binary as an operator runs it: `amtsbuch serve --dev` on a free loopback
//! port in a directory of the test's own, a minimal HTTP/1.1 client for it (also for
//! Server-Sent Events, read frame by frame the way an `EventSource` reads them), tokens
//! minted with `amtsbuch token`, and the other subcommands run to completion.
//!
//! The binary is the one `cargo test --workspace` builds (target/<profile>/amtsbuch), and
//! so are the examples (target/<profile>/examples/).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::dir::free_port;

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
        let addr = format!("127.0.0.1:{}", free_port());
        Self::launch(&addr, args, cwd, log, log_file, "/readyz").await
    }

    /// `start` on the loopback address `addr` the test chose (e.g. from [`free_port`]), for
    /// a server whose flags must name its own address (a public base URL).
    pub async fn start_at(addr: &str, args: &[&str], cwd: &std::path::Path) -> Self {
        Self::launch(addr, args, cwd, "warn", None, "/readyz").await
    }

    /// `start_logging`, waiting only until the process answers (`/healthz`), not until it
    /// is ready: for tests of a server that is not ready.
    pub async fn start_live(
        args: &[&str],
        cwd: &std::path::Path,
        log: &str,
        log_file: Option<&std::path::Path>,
    ) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        Self::launch(&addr, args, cwd, log, log_file, "/healthz").await
    }

    async fn launch(
        addr: &str,
        args: &[&str],
        cwd: &std::path::Path,
        log: &str,
        log_file: Option<&std::path::Path>,
        ready_path: &str,
    ) -> Self {
        let addr = addr.to_owned();
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

/// Run `amtsbuch` with arguments to completion; returns exit code, stdout and stderr.
pub async fn run_cli(args: &[&str]) -> (i32, String, String) {
    finish(cli(args)).await
}

/// `run_cli` in the working directory `cwd`, where relative paths such as `keys/` are.
pub async fn run_cli_in(cwd: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut command = cli(args);
    command.current_dir(cwd);
    finish(command).await
}

fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("AMTSBUCH_DATABASE_URL")
        .env("AMTSBUCH_LOG", "warn")
        .stdin(Stdio::null());
    command
}

async fn finish(mut command: Command) -> (i32, String, String) {
    let out = command.output().await.expect("run amtsbuch");
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
