//! A private NATS server per test (killed, restarted on the same port and store, with
//! another `max_payload`), a stream of its own on the shared one, and what a JetStream
//! stream holds.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::dir::{free_port, TempDir};

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

/// The shared NATS server with JetStream the tests use (`AMTSBUCH_TEST_NATS_URL`, default
/// `nats://127.0.0.1:4222`), for tests that need not crash it.
pub fn nats_url() -> String {
    std::env::var("AMTSBUCH_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A JetStream stream of its own on the test NATS server (`AMTSBUCH_TEST_NATS_URL`, default
/// `nats://127.0.0.1:4222`), for routes that set up consumers; deleted on drop.
#[derive(Debug)]
pub struct TestNats {
    pub config: amtsbuch_infra::relay::RelayConfig,
}

impl TestNats {
    pub async fn create() -> Self {
        let url = nats_url();
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let mut config = amtsbuch_infra::relay::RelayConfig::new(url);
        config.stream = format!("APITEST_{tag}");
        config.prefix = amtsbuch_domain::subject::SubjectPrefix::parse(&format!("apitest{tag}"))
            .expect("prefix");
        let context = amtsbuch_infra::relay::connect(&config)
            .await
            .expect("NATS with JetStream must be running for this test");
        amtsbuch_infra::relay::ensure_stream(&context, &config)
            .await
            .expect("stream");
        Self { config }
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let config = self.config.clone();
        // The stream is deleted from a thread of its own: drop cannot await.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(context) = amtsbuch_infra::relay::connect(&config).await {
                        let _ = context.delete_stream(&config.stream).await;
                    }
                });
            }
        })
        .join();
    }
}
