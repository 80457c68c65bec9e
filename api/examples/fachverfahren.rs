//! A Fachverfahren's consumer of the Amtsbuch event stream on NATS JetStream.
//!
//! It pulls from the durable consumer that `PUT /subscriptions/nats/{name}` created for the
//! Fachverfahren, checks each message (the payload is the record's stored bytes, so its
//! RFC 6962 leaf hash must equal the `Amtsbuch-Leaf-Hash` header), prints one JSON line per
//! event, and acknowledges it only after it has been handled. Because the consumer is
//! durable and acknowledgements are explicit, stopping the program and starting it again
//! resumes after the last acknowledged event; an event handled but not acknowledged before
//! a crash is delivered again, so handling must be idempotent (the event id is the key).
//!
//! ```sh
//! cargo run --example fachverfahren -- --consumer fv-wohngeld
//! ```
//!
//! With `--exec PROGRAM` it hands each event to the Fachverfahren's own handling: `sh -c
//! PROGRAM` runs with the stored record on its standard input and the event's type, stream
//! and position in `AMTSBUCH_EVENT_TYPE`, `AMTSBUCH_STREAM` and `AMTSBUCH_POSITION`; what
//! it prints is shown as `handled`. The event is acknowledged only after the program
//! succeeded; when it fails, the consumer stops without acknowledging, so the event is
//! delivered again. docs/FACHVERFAHREN.md shows a program that answers each new
//! application with its reception and a decision.
//!
//! See docs/FACHVERFAHREN.md. Real Fachverfahren use the NATS client of their own language;
//! everything this program relies on is plain JetStream plus the documented headers.

use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Consume Amtsbuch events from a durable NATS JetStream consumer")]
struct Args {
    /// The NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The JetStream stream Amtsbuch publishes to.
    #[arg(long, default_value = "AMTSBUCH")]
    stream: String,
    /// The durable consumer's name, as created with PUT /subscriptions/nats/{name}.
    #[arg(long)]
    consumer: String,
    /// Stop after this many events (default: run until interrupted).
    #[arg(long)]
    limit: Option<u64>,
    /// Stop when no event arrived for this many seconds (default: wait for ever).
    #[arg(long)]
    idle_exit: Option<u64>,
    /// Handle each event with this shell command: the record on standard input, the event
    /// type, stream and position in `AMTSBUCH_EVENT_TYPE`, `AMTSBUCH_STREAM`,
    /// `AMTSBUCH_POSITION`. The event is acknowledged only if it succeeds.
    #[arg(long, value_name = "PROGRAM")]
    exec: Option<String>,
}

/// Run the handling program for one event; what it printed.
async fn handle(
    program: &str,
    payload: &[u8],
    event_type: &str,
    stream: &str,
    position: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(program)
        .env("AMTSBUCH_EVENT_TYPE", event_type)
        .env("AMTSBUCH_STREAM", stream)
        .env("AMTSBUCH_POSITION", position)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program may exit without reading the record (nothing to do for this event
        // type): its exit status decides, not the pipe it closed.
        match stdin.write_all(payload).await {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            written => written?,
        }
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(format!(
            "--exec failed on position {position} ({}); not acknowledged",
            out.status
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let client = async_nats::connect(&args.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let consumer: async_nats::jetstream::consumer::PullConsumer = jetstream
        .get_stream(&args.stream)
        .await?
        .get_consumer(&args.consumer)
        .await?;
    let mut messages = consumer.messages().await?;
    let mut handled = 0u64;
    loop {
        if args.limit.is_some_and(|limit| handled >= limit) {
            break;
        }
        let next = match args.idle_exit {
            Some(secs) => {
                match tokio::time::timeout(Duration::from_secs(secs), messages.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
            None => messages.next().await,
        };
        let Some(message) = next else { break };
        let message = message?;
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        // The payload is exactly the stored record: hash it like the log does.
        let leaf = amtsbuch_domain::merkle::leaf_hash(&message.payload);
        let leaf_ok = amtsbuch_domain::chain::to_hex(&leaf) == header("Amtsbuch-Leaf-Hash");
        let record: serde_json::Value = serde_json::from_slice(&message.payload)?;
        let mut line = json!({
            "position": header("Amtsbuch-Position").parse::<u64>().unwrap_or(0),
            "event_id": header("Nats-Msg-Id"),
            "subject": message.subject.as_str(),
            "stream": record["stream_id"],
            "event_type": record["event_type"],
            "leaf_hash_ok": leaf_ok,
        });
        if let Some(program) = &args.exec {
            // Only a record whose hash is the log's is handed on.
            if !leaf_ok {
                return Err(format!(
                    "the payload at position {} is not the stored record",
                    header("Amtsbuch-Position")
                )
                .into());
            }
            let handled = handle(
                program,
                &message.payload,
                record["event_type"].as_str().unwrap_or(""),
                record["stream_id"].as_str().unwrap_or(""),
                &header("Amtsbuch-Position"),
            )
            .await?;
            if !handled.is_empty() {
                line["handled"] = json!(handled);
            }
        }
        println!("{line}");
        // Acknowledge only after the event has been handled (here: printed).
        message.ack().await?;
        handled += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::handle;

    /// A program that exits without reading the record is judged by its exit status: the
    /// record (larger than a pipe's buffer, so the write surely meets the closed pipe) is
    /// not an error.
    #[tokio::test]
    async fn a_program_that_does_not_read_the_record_is_judged_by_its_status() {
        let record = vec![b'x'; 1 << 20];
        let done = handle("echo skipped", &record, "ApplicationRead", "s", "1").await;
        assert_eq!(done.expect("not an error"), "skipped");
        let failed = handle("exit 3", &record, "ApplicationRead", "s", "1").await;
        assert!(failed.is_err());
    }
}
