//! A payment provider simulator that speaks the XBezahldienste REST interface, for tests,
//! demonstrations and the benchmark: a separate process, reached over HTTP like a real
//! ePayBL, pmPayment or epay21 endpoint.
//!
//! ```text
//! cargo run --bin xbezahldienste-simulator -- --token T --callback-secret S [--listen 127.0.0.1:0]
//! ```
//!
//! It prints `listening on http://ADDR` as its first line on stdout.
//!
//! The interface (the part of XBezahldienste Amtsbuch uses; amounts in euro cents):
//!
//! - `POST /paymenttransaction/{originatorId}/{endPointId}` with a bearer token: a payment
//!   request `{requestId, currency: "EUR", grossAmount, purpose, description?,
//!   redirectUrl, notifyUrl?, items: [{id, description?, grossAmount}]}`; answers `201`
//!   with `{requestId, grossAmount, paymentInformation: {transactionId, transactionUrl,
//!   transactionReference, paymentMethod, status: "INITIAL", statusDetail}}`. The same
//!   `requestId` again answers the same transaction (`200`).
//! - `GET /paymenttransaction/{originatorId}/{endPointId}/{transactionId}`: the same
//!   document with the transaction's current status.
//!
//! What a test decides (no token; this part is no provider interface):
//!
//! - `POST /control/transactions/{transactionId}` with `{outcome: "paid" | "cancelled" |
//!   "failed" | "paid_then_chargeback", method?: "GIROPAY" | …, callbacks?: n}`: the payer
//!   finishes on the payment page. A terminal status never changes again. Then `n`
//!   (default 1) push callbacks are sent to the request's `notifyUrl`:
//!   `{originatorId, endPointId, transactionId, requestId}`, signed with HMAC-SHA-256 of
//!   the body under the callback secret, hex, in `X-Signature: sha256=<hex>`. The callback
//!   says nothing about the status: the receiver must pull it.
//! - `POST /control/health` with `{down?: bool, delay_ms?: n}`: answer every provider
//!   request with `503` while down; delay every status read by `delay_ms`.
//! - `GET /control/camt054?date=YYYY-MM-DD`: a camt.054 notification of that day: one
//!   credit per paid transaction (the payout, its `purpose` as remittance) and one debit
//!   reversal per chargeback.
//! - `GET /control/stats`: `{created, status_reads, callbacks_sent}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use ring::hmac;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "An XBezahldienste payment provider simulator")]
struct Args {
    /// The address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The bearer token the provider interface requires.
    #[arg(long)]
    token: String,
    /// The secret that signs push callbacks.
    #[arg(long)]
    callback_secret: String,
}

#[derive(Debug, Clone)]
struct Transaction {
    originator: String,
    endpoint: String,
    request_id: String,
    gross: i64,
    purpose: String,
    notify_url: Option<String>,
    status: &'static str,
    method: Option<String>,
    charged_back: bool,
    day: String,
}

#[derive(Debug, Default)]
struct Book {
    transactions: HashMap<String, Transaction>,
    by_request: HashMap<(String, String, String), String>,
    next: u64,
}

#[derive(Debug)]
struct Sim {
    token: String,
    key: hmac::Key,
    base: String,
    book: Mutex<Book>,
    down: AtomicBool,
    delay_ms: AtomicU64,
    created: AtomicU64,
    reads: AtomicU64,
    callbacks: AtomicU64,
}

type Shared = Arc<Sim>;

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        json!({"title": status.canonical_reason(), "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
        .into_response()
}

fn guard(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    if sim.down.load(Ordering::Relaxed) {
        return Some(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the provider is down",
        ));
    }
    let expected = format!("Bearer {}", sim.token);
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given != expected {
        return Some(problem(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        ));
    }
    None
}

fn document(sim: &Sim, id: &str, t: &Transaction) -> Value {
    json!({
        "requestId": t.request_id,
        "grossAmount": t.gross,
        "currency": "EUR",
        "purpose": t.purpose,
        "paymentInformation": {
            "transactionId": id,
            "transactionUrl": format!("{}/pay/{id}", sim.base),
            "transactionReference": format!("SIM-{id}"),
            "paymentMethod": t.method,
            "status": t.status,
            "statusDetail": match t.status {
                "INITIAL" => "waiting for the payer",
                "PAYED" => "paid",
                "CANCELED" => "cancelled by the payer",
                _ => "aborted by the provider",
            },
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Item {
    id: String,
    #[serde(default)]
    description: Option<String>,
    gross_amount: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PaymentRequest {
    request_id: String,
    currency: String,
    gross_amount: i64,
    purpose: String,
    #[serde(default)]
    description: Option<String>,
    redirect_url: String,
    #[serde(default)]
    notify_url: Option<String>,
    items: Vec<Item>,
}

fn check(r: &PaymentRequest) -> Result<(), &'static str> {
    if r.request_id.is_empty() || r.request_id.len() > 36 {
        return Err("requestId must be 1 to 36 characters");
    }
    if r.currency != "EUR" {
        return Err("currency must be EUR");
    }
    if r.gross_amount <= 0 || r.gross_amount > 99_999_999 {
        return Err("grossAmount must be 1 to 99999999 cents");
    }
    if r.purpose.is_empty()
        || r.purpose.chars().count() > 27
        || !r
            .purpose
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
    {
        return Err("purpose must be 1 to 27 letters, digits, spaces, '-' or '_'");
    }
    if r.description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 250)
    {
        return Err("description must be at most 250 characters");
    }
    if r.redirect_url.is_empty() || r.redirect_url.len() > 2082 {
        return Err("redirectUrl must be 1 to 2082 characters");
    }
    if r.items.is_empty() || r.items.len() > 99 {
        return Err("items must hold 1 to 99 items");
    }
    if r.items
        .iter()
        .any(|i| i.id.is_empty() || i.id.len() > 36 || i.gross_amount <= 0)
    {
        return Err("each item needs an id of 1 to 36 characters and a positive grossAmount");
    }
    if r.items.iter().map(|i| i.gross_amount).sum::<i64>() != r.gross_amount {
        return Err("the items' grossAmount must sum to grossAmount");
    }
    if r.items
        .iter()
        .any(|i| i.description.as_ref().is_some_and(|d| d.len() > 250))
    {
        return Err("an item's description must be at most 250 characters");
    }
    Ok(())
}

async fn create(
    State(sim): State<Shared>,
    Path((originator, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = guard(&sim, &headers) {
        return refused;
    }
    let request: PaymentRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Err(detail) = check(&request) {
        return problem(StatusCode::BAD_REQUEST, detail);
    }
    let mut book = sim.book.lock().unwrap_or_else(|e| e.into_inner());
    let key = (
        originator.clone(),
        endpoint.clone(),
        request.request_id.clone(),
    );
    if let Some(id) = book.by_request.get(&key).cloned() {
        let t = &book.transactions[&id];
        return (StatusCode::OK, Json(document(&sim, &id, t))).into_response();
    }
    book.next += 1;
    let id = format!("T{:08}", book.next);
    let t = Transaction {
        originator,
        endpoint,
        request_id: request.request_id,
        gross: request.gross_amount,
        purpose: request.purpose,
        notify_url: request.notify_url,
        status: "INITIAL",
        method: None,
        charged_back: false,
        day: chrono::Utc::now().format("%Y-%m-%d").to_string(),
    };
    let doc = document(&sim, &id, &t);
    book.by_request.insert(key, id.clone());
    book.transactions.insert(id, t);
    sim.created.fetch_add(1, Ordering::Relaxed);
    (StatusCode::CREATED, Json(doc)).into_response()
}

async fn status(
    State(sim): State<Shared>,
    Path((originator, endpoint, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = guard(&sim, &headers) {
        return refused;
    }
    let delay = sim.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    sim.reads.fetch_add(1, Ordering::Relaxed);
    let book = sim.book.lock().unwrap_or_else(|e| e.into_inner());
    match book.transactions.get(&id) {
        Some(t) if t.originator == originator && t.endpoint == endpoint => {
            Json(document(&sim, &id, t)).into_response()
        }
        _ => problem(StatusCode::NOT_FOUND, "no such transaction"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    outcome: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    callbacks: Option<u32>,
}

fn sign(key: &hmac::Key, body: &[u8]) -> String {
    let tag = hmac::sign(key, body);
    let mut hex = String::with_capacity(64);
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("sha256={hex}")
}

async fn control(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    Json(outcome): Json<Outcome>,
) -> Response {
    let (status, charged_back) = match outcome.outcome.as_str() {
        "paid" => ("PAYED", false),
        "cancelled" => ("CANCELED", false),
        "failed" => ("FAILED", false),
        "paid_then_chargeback" => ("PAYED", true),
        _ => return problem(StatusCode::BAD_REQUEST, "unknown outcome"),
    };
    let (callback, body) = {
        let mut book = sim.book.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = book.transactions.get_mut(&id) else {
            return problem(StatusCode::NOT_FOUND, "no such transaction");
        };
        if t.status == "INITIAL" {
            t.status = status;
            t.method = Some(outcome.method.clone().unwrap_or_else(|| "GIROPAY".into()));
        }
        t.charged_back |= charged_back && t.status == "PAYED";
        let body = json!({
            "originatorId": t.originator,
            "endPointId": t.endpoint,
            "transactionId": id,
            "requestId": t.request_id,
        })
        .to_string();
        (t.notify_url.clone(), body)
    };
    let times = outcome.callbacks.unwrap_or(1).min(100);
    let mut delivered = vec![];
    if let Some(url) = callback {
        let signature = sign(&sim.key, body.as_bytes());
        for _ in 0..times {
            let (url, body, signature) = (url.clone(), body.clone(), signature.clone());
            let answer = tokio::task::spawn_blocking(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                agent
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-signature", &signature)
                    .send(body.as_bytes())
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
            .await
            .unwrap_or(0);
            sim.callbacks.fetch_add(1, Ordering::Relaxed);
            delivered.push(answer);
        }
    }
    Json(json!({"transactionId": id, "callbacks": delivered})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Health {
    #[serde(default)]
    down: Option<bool>,
    #[serde(default)]
    delay_ms: Option<u64>,
}

async fn health(State(sim): State<Shared>, Json(h): Json<Health>) -> Response {
    if let Some(down) = h.down {
        sim.down.store(down, Ordering::Relaxed);
    }
    if let Some(delay) = h.delay_ms {
        sim.delay_ms.store(delay.min(60_000), Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct Day {
    date: String,
}

fn amount(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

async fn camt054(State(sim): State<Shared>, Query(day): Query<Day>) -> Response {
    let book = sim.book.lock().unwrap_or_else(|e| e.into_inner());
    let mut ids: Vec<&String> = book.transactions.keys().collect();
    ids.sort();
    let mut entries = String::new();
    for id in ids {
        let t = &book.transactions[id];
        if t.status != "PAYED" || t.day != day.date {
            continue;
        }
        entries.push_str(&format!(
            "<Ntry><Amt Ccy=\"EUR\">{}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>\
             <BookgDt><Dt>{}</Dt></BookgDt><AcctSvcrRef>SIM-PAYOUT-{id}</AcctSvcrRef>\
             <NtryDtls><TxDtls><RmtInf><Ustrd>{}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n",
            amount(t.gross),
            day.date,
            t.purpose
        ));
        if t.charged_back {
            entries.push_str(&format!(
                "<Ntry><Amt Ccy=\"EUR\">{}</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd>\
                 <Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{}</Dt></BookgDt>\
                 <AcctSvcrRef>SIM-CHARGEBACK-{id}</AcctSvcrRef>\
                 <NtryDtls><TxDtls><RmtInf><Ustrd>{}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n",
                amount(t.gross),
                day.date,
                t.purpose
            ));
        }
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.054.001.08\">\n\
         <BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>SIM-{}</MsgId></GrpHdr>\n<Ntfctn><Id>1</Id>\n\
         {entries}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n",
        day.date
    );
    ([("content-type", "application/xml")], xml).into_response()
}

async fn stats(State(sim): State<Shared>) -> Response {
    Json(json!({
        "created": sim.created.load(Ordering::Relaxed),
        "status_reads": sim.reads.load(Ordering::Relaxed),
        "callbacks_sent": sim.callbacks.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn page(Path(id): Path<String>) -> Response {
    (
        [("content-type", "text/plain; charset=utf-8")],
        format!("XBezahldienste simulator: the payment page of transaction {id}\n"),
    )
        .into_response()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim {
        token: args.token,
        key: hmac::Key::new(hmac::HMAC_SHA256, args.callback_secret.as_bytes()),
        base: format!("http://{addr}"),
        book: Mutex::new(Book::default()),
        down: AtomicBool::new(false),
        delay_ms: AtomicU64::new(0),
        created: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        callbacks: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/paymenttransaction/{originator}/{endpoint}", post(create))
        .route(
            "/paymenttransaction/{originator}/{endpoint}/{id}",
            get(status),
        )
        .route("/pay/{id}", get(page))
        .route("/control/transactions/{id}", post(control))
        .route("/control/health", post(health))
        .route("/control/camt054", get(camt054))
        .route("/control/stats", get(stats))
        .with_state(sim);
    println!("listening on http://{addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
