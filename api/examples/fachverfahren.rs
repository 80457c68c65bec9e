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
        println!(
            "{}",
            json!({
                "position": header("Amtsbuch-Position").parse::<u64>().unwrap_or(0),
                "event_id": header("Nats-Msg-Id"),
                "subject": message.subject.as_str(),
                "stream": record["stream_id"],
                "event_type": record["event_type"],
                "leaf_hash_ok": leaf_ok,
            })
        );
        // Acknowledge only after the event has been handled (here: printed).
        message.ack().await?;
        handled += 1;
    }
    Ok(())
}
