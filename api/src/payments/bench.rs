//! Figures of the payment flows: how long a push callback takes to become a verified
//! status in the log (signature check, status pull from the provider, append), and how
//! fast a bank statement is reconciled against receivables. Used by the tests with small
//! counts; the measured figures are in docs/PAYMENTS.md.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use uuid::Uuid;

use amtsbuch_domain::event::SubjectId;
use amtsbuch_domain::payments::receivable::RequestReceivable;
use amtsbuch_domain::payments::{
    Bewirtschafter, Buchungstext, Cents, Haushaltsstelle, Kassenzeichen, Line, Mandant, PayerName,
    ReceivableId,
};

use super::provider::Provider;
use super::service::{self, Format, ImportReport};
use crate::command::Meta;
use crate::problem::Problem;
use crate::AppState;

/// Durations in milliseconds at the quantiles 0.5 and 0.99, and the largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    pub fn of(mut samples: Vec<Duration>) -> Option<Quantiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Some(Quantiles {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

/// A receivable of 25.00 EUR in two lines for the figures.
pub fn sample_fee(id: ReceivableId, mandant: &Mandant) -> Result<RequestReceivable, Problem> {
    let text = |e: amtsbuch_domain::newtype::TextError| Problem::internal(&e);
    let line = |hst: &str, cents: i64| -> Result<Line, Problem> {
        let c = Cents::new(cents).map_err(|e| Problem::internal(&e))?;
        Ok(Line {
            haushaltsstelle: Haushaltsstelle::parse(hst).map_err(text)?,
            objektnummer: None,
            href: None,
            buchungstext: Buchungstext::parse("GEBÜHR").map_err(text)?,
            gross_cents: c,
            net_cents: c,
            tax_cents: Cents::ZERO,
        })
    };
    Ok(RequestReceivable {
        receivable_id: id,
        mandant: mandant.clone(),
        bewirtschafter: Bewirtschafter::parse("b100").map_err(text)?,
        kassenzeichen: Kassenzeichen::parse("XX").map_err(text)?,
        assigned: false,
        gross_cents: Cents::new(2500).map_err(|e| Problem::internal(&e))?,
        due_date: Utc::now().date_naive(),
        lines: vec![line("1100.100", 2000)?, line("1100.200", 500)?],
        application_id: None,
        payer: SubjectId(Uuid::now_v7()),
        payer_name: PayerName::parse("Bench Payer").map_err(text)?,
        requested_at: Utc::now(),
    })
}

type Timings = Arc<Mutex<Vec<Duration>>>;

#[derive(serde::Deserialize)]
struct Which {
    receivable: Uuid,
}

async fn timed_callback(
    State((state, provider, timings)): State<(AppState, Provider, Timings)>,
    Query(which): Query<Which>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let started = Instant::now();
    let signature = headers.get("x-signature").and_then(|v| v.to_str().ok());
    let outcome = service::callback(
        &state,
        &provider,
        ReceivableId(which.receivable),
        &body,
        signature,
    )
    .await;
    timings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(started.elapsed());
    match outcome {
        Ok(_) => StatusCode::OK,
        Err(p) => p.status,
    }
}

/// Callback → pull → event: requests and checks out `count` receivables, lets the
/// simulator at `simulator_url` (its control interface) pay each with one signed
/// callback, and measures each callback's handling until its status event is appended.
pub async fn callback_latency(
    state: &AppState,
    provider: &Provider,
    simulator_url: &str,
    count: usize,
) -> anyhow::Result<Quantiles> {
    let timings: Timings = Arc::default();
    let app = axum::Router::new()
        .route(
            "/callbacks/payments/{provider}",
            axum::routing::post(timed_callback),
        )
        .with_state((state.clone(), provider.clone(), timings.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let meta = Meta::system("payments-bench");
    let mandant = Mandant::parse("14612000")?;
    for _ in 0..count {
        let id = ReceivableId(Uuid::now_v7());
        service::request(
            state,
            sample_fee(id, &mandant).map_err(|p| anyhow::anyhow!("{}", p.detail))?,
            None,
            &meta,
        )
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        let checkout = service::checkout(
            state,
            provider,
            id,
            "http://127.0.0.1/return".into(),
            &base,
            Utc::now(),
            &meta,
        )
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        let url = format!(
            "{}/control/transactions/{}",
            simulator_url.trim_end_matches('/'),
            checkout.transaction_id
        );
        let answer = tokio::task::spawn_blocking(move || {
            ureq::post(&url)
                .header("content-type", "application/json")
                .send(br#"{"outcome":"paid","callbacks":1}"#.as_slice())
                .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
        })
        .await??;
        if !answer.contains("200") {
            anyhow::bail!("a callback was not accepted: {answer}");
        }
    }
    server.abort();
    let samples = std::mem::take(&mut *timings.lock().unwrap_or_else(|e| e.into_inner()));
    Quantiles::of(samples).ok_or_else(|| anyhow::anyhow!("no callback was measured"))
}

/// Reconciliation: requests `count` receivables with the Kassenzeichen `B<n>`, writes a
/// camt.053 with one credit for each, imports it and answers the import's duration and
/// report.
pub async fn reconciliation(
    state: &AppState,
    count: usize,
) -> anyhow::Result<(Duration, ImportReport)> {
    let meta = Meta::system("payments-bench");
    let mandant = Mandant::parse("14612000")?;
    let mut entries = String::with_capacity(count * 400);
    for n in 0..count {
        let kz = format!("B{n:09}");
        let id = ReceivableId(Uuid::now_v7());
        service::request(
            state,
            sample_fee(id, &mandant).map_err(|p| anyhow::anyhow!("{}", p.detail))?,
            Some(Kassenzeichen::parse(&kz)?),
            &meta,
        )
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        entries.push_str(&format!(
            "<Ntry><Amt Ccy=\"EUR\">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>\
             <BookgDt><Dt>2026-03-03</Dt></BookgDt><AcctSvcrRef>E{n}</AcctSvcrRef>\
             <NtryDtls><TxDtls><RmtInf><Ustrd>{kz}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n"
        ));
    }
    let xml = format!(
        "<Document><BkToCstmrStmt><GrpHdr><MsgId>BENCH</MsgId></GrpHdr><Stmt>\n{entries}\
         </Stmt></BkToCstmrStmt></Document>"
    );
    // A running server's read models follow the log; the figure is the import's, not the
    // read models' catching up with the receivables just requested.
    crate::command::read_models_current(state, &[amtsbuch_projections::payments::NAME])
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    let started = Instant::now();
    let report = service::import(
        state,
        &mandant,
        Format::Camt,
        xml.as_bytes(),
        Utc::now(),
        &meta,
        |_, _| {},
    )
    .await
    .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    Ok((started.elapsed(), report))
}
