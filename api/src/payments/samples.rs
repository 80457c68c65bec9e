//! What the service's own tests need of the payments domain
//! (`crate::module::TestSupport`): who may call each operation, and sample data that makes
//! each succeed — for the subject an open receivable, a paid one with a refund waiting for
//! approval, and one to cancel, all of Bewirtschafter `b100` (the test cashier's), and a fee
//! schedule of that Bewirtschafter; and a
//! provider stub in the test process, so that checkout, the payer's return and the
//! callback reach a provider. The stub is no simulator (that is the separate
//! `xbezahldienste-simulator` process the domain's own tests use): it answers every
//! payment request `INITIAL` and every status read `PAYED`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{NaiveDate, Utc};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_domain::access::Role::{self, *};
use amtsbuch_domain::event::SubjectId;
use amtsbuch_domain::payments::fees::{schedule_stream, FeeScheduleState, SetFeeSchedule};
use amtsbuch_domain::payments::receivable::{RequestReceivable, RequestRefund};
use amtsbuch_domain::payments::{
    Actor, Bewirtschafter, Buchungstext, Cents, Haushaltsstelle, Kassenzeichen, Line, Mandant,
    PayerName, ReceivableId, Reference, RefundId,
};
use amtsbuch_domain::stream::{AuthorityId, ServiceKey};

use super::provider::{sign_callback, Auth, Provider, ProviderConfig};
use super::routes::Configured;
use super::service;
use crate::command::{execute, Meta};
use crate::module::{AccessRow, SampleValues, Samples, Target};
use crate::AppState;

/// The samples' Mandant.
pub const MANDANT: &str = "14612000";
/// The samples' Bewirtschafter: the test cashier's.
pub const BEWIRTSCHAFTER: &str = "b100";
/// The stub provider's name and callback secret.
const STUB: &str = "stub";
const STUB_SECRET: &str = "sample-callback-secret";

/// A public operation that acts on the subject's receivable (named in its query).
const fn public_on_subject(method: &'static str, path: &'static str) -> AccessRow {
    AccessRow {
        method,
        path,
        roles: None,
        target: Target::Subject { own_only: &[] },
    }
}

/// A citizen acts on its own receivables; the operation's other roles on those of their
/// Bewirtschafter (the samples' for both subjects) or on all.
const OWN_FOR_CITIZENS: Target = Target::HiddenSubject {
    own_only: &[Citizen],
};
/// The operation's roles reach both subjects' receivables.
const ANY_PAYER: Target = Target::Subject { own_only: &[] };

const READERS: &[Role] = &[Citizen, Cashier, Auditor];

/// Who may call each operation of the payments domain, and whose data it acts on.
pub const ACCESS: &[AccessRow] = &[
    // It names its payer: a cashier requests it for any.
    AccessRow::roles("POST", "/receivables", &[Cashier], ANY_PAYER),
    AccessRow::roles("GET", "/receivables", READERS, Target::Nobody),
    AccessRow::roles("GET", "/receivables/{id}", READERS, OWN_FOR_CITIZENS),
    AccessRow::roles(
        "POST",
        "/receivables/{id}/cancellation",
        &[Cashier],
        ANY_PAYER,
    ),
    AccessRow::roles(
        "POST",
        "/receivables/{id}/checkout",
        &[Citizen],
        OWN_FOR_CITIZENS,
    ),
    public_on_subject("GET", "/payments/return"),
    public_on_subject("POST", "/callbacks/payments/{provider}"),
    AccessRow::roles("POST", "/receivables/{id}/refunds", &[Cashier], ANY_PAYER),
    AccessRow::roles("POST", "/refunds/{id}/approval", &[Cashier], ANY_PAYER),
    AccessRow::roles(
        "POST",
        "/reconciliation/imports",
        &[Operator],
        Target::Nobody,
    ),
    AccessRow::roles(
        "GET",
        "/reconciliation/mismatches",
        &[Cashier, Auditor],
        Target::Nobody,
    ),
    AccessRow::roles(
        "GET",
        "/reconciliation/daily",
        &[Cashier, Auditor],
        Target::Nobody,
    ),
    AccessRow::roles(
        "PUT",
        "/fee-schedules/{leika}/{authority}",
        &[Operator, Cashier],
        Target::Nobody,
    ),
    AccessRow::roles(
        "GET",
        "/fee-schedules/{leika}/{authority}",
        &[Operator, Cashier, Auditor],
        Target::Nobody,
    ),
];

/// The sample fee schedule's service and authority.
const FEE_LEIKA: &str = "99108001000000";
const FEE_AUTHORITY: &str = "lra-samples";

/// Nothing of the samples is changed for good by one call.
pub const LAST: &[(&str, &str)] = &[];

/// The payments samples.
#[derive(Debug)]
pub struct PaymentsSamples;

pub static SAMPLES: PaymentsSamples = PaymentsSamples;

/// A receivable of 25.00 EUR in two lines, of the samples' Mandant and Bewirtschafter.
pub fn fee(id: ReceivableId, payer: SubjectId) -> RequestReceivable {
    let line = |hst: &str, cents: i64| Line {
        haushaltsstelle: Haushaltsstelle::parse(hst).expect("haushaltsstelle"),
        objektnummer: None,
        href: None,
        buchungstext: Buchungstext::parse("GEBÜHR").expect("buchungstext"),
        gross_cents: Cents::new(cents).expect("cents"),
        net_cents: Cents::new(cents).expect("cents"),
        tax_cents: Cents::ZERO,
    };
    RequestReceivable {
        receivable_id: id,
        mandant: Mandant::parse(MANDANT).expect("mandant"),
        bewirtschafter: Bewirtschafter::parse(BEWIRTSCHAFTER).expect("bewirtschafter"),
        kassenzeichen: Kassenzeichen::assign(id, 0),
        assigned: true,
        gross_cents: Cents::new(2500).expect("cents"),
        due_date: NaiveDate::from_ymd_opt(2026, 12, 31).expect("date"),
        lines: vec![line("1100.100", 2000), line("1100.200", 500)],
        application_id: None,
        payer,
        payer_name: PayerName::parse("Erika Musterfrau").expect("name"),
        requested_at: amtsbuch_domain::record::truncate_micros(Utc::now()),
    }
}

type Book = Arc<Mutex<HashMap<String, (String, i64)>>>;

async fn stub_create(
    State(book): State<Book>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let request_id = request["requestId"].as_str().unwrap_or_default().to_owned();
    let gross = request["grossAmount"].as_i64().unwrap_or_default();
    let mut book = book.lock().unwrap_or_else(|e| e.into_inner());
    let id = format!("STUB-{}", book.len() + 1);
    book.insert(id.clone(), (request_id.clone(), gross));
    (
        StatusCode::CREATED,
        axum::Json(stub_document(&id, &request_id, gross, "INITIAL")),
    )
        .into_response()
}

async fn stub_status(
    State(book): State<Book>,
    Path((_, _, id)): Path<(String, String, String)>,
) -> axum::response::Response {
    let known = book
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    match known {
        Some((request_id, gross)) => {
            axum::Json(stub_document(&id, &request_id, gross, "PAYED")).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn stub_document(id: &str, request_id: &str, gross: i64, status: &str) -> Value {
    json!({
        "requestId": request_id,
        "grossAmount": gross,
        "paymentInformation": {
            "transactionId": id,
            "transactionUrl": format!("https://stub.invalid/pay/{id}"),
            "transactionReference": format!("STUB-REF-{id}"),
            "paymentMethod": "GIROPAY",
            "status": status,
        }
    })
}

/// Starts the stub provider in this process and configures it in `state`, once.
async fn stub_provider(state: &AppState) {
    if state.modules.get::<Configured>().is_some() {
        return;
    }
    let app = axum::Router::new()
        .route(
            "/paymenttransaction/{originator}/{endpoint}",
            axum::routing::post(stub_create),
        )
        .route(
            "/paymenttransaction/{originator}/{endpoint}/{id}",
            axum::routing::get(stub_status),
        )
        .with_state(Book::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the stub provider");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let provider = Provider::new(ProviderConfig {
        name: STUB.into(),
        base_url: base,
        originator_id: "amtsbuch".into(),
        endpoint_id: MANDANT.into(),
        auth: Auth::Bearer("stub-token".into()),
        callback_secret: STUB_SECRET.as_bytes().to_vec(),
        ca_pem: None,
        timeout: Duration::from_secs(5),
    })
    .expect("stub provider");
    state.modules.insert(Configured {
        provider,
        notify_base: "http://127.0.0.1:9".into(),
    });
}

/// A fee schedule of the samples' Bewirtschafter, for its reads.
async fn seed_fee_schedule(state: &AppState) {
    let service = ServiceKey::parse(FEE_LEIKA).expect("service");
    let authority = AuthorityId::parse(FEE_AUTHORITY).expect("authority");
    let first = fee(ReceivableId(Uuid::nil()), SubjectId(Uuid::nil()));
    execute::<FeeScheduleState>(
        state,
        &schedule_stream(&service, &authority),
        &SetFeeSchedule {
            service: service.clone(),
            authority: authority.clone(),
            mandant: first.mandant,
            bewirtschafter: first.bewirtschafter,
            gross_cents: first.gross_cents,
            lines: first.lines,
            due_days: 14,
            set_at: Utc::now(),
        },
        |e| crate::command::refused("invalid-fee-schedule", e),
        &Meta::system("payments-samples"),
    )
    .await
    .expect("a sample fee schedule");
}

fn id_of(values: &SampleValues, name: &str) -> ReceivableId {
    ReceivableId(
        values
            .get(name)
            .and_then(|v| Uuid::parse_str(v).ok())
            .expect("a sample receivable id"),
    )
}

impl Samples for PaymentsSamples {
    fn values(&self, citizen: &str) -> SampleValues {
        let mut values = SampleValues::new();
        values.insert("payer".into(), citizen.to_owned());
        // The paid receivable's payer is another subject derived from the account, so that
        // the refund and the pulls act on a payer whose erasure nothing runs.
        let mut other = *Uuid::parse_str(citizen).unwrap_or_default().as_bytes();
        other[0] ^= 0x5a;
        values.insert("paid_payer".into(), Uuid::from_bytes(other).to_string());
        for name in ["receivable", "paid_receivable", "cancel_receivable"] {
            values.insert(name.into(), Uuid::now_v7().to_string());
        }
        values.insert("refund".into(), Uuid::now_v7().to_string());
        values
    }

    fn seed<'a>(
        &'a self,
        _app: &'a axum::Router,
        state: &'a AppState,
        _operator: &'a str,
        values: &'a mut SampleValues,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            seed_fee_schedule(state).await;
            if state.sealer.is_none() {
                return;
            }
            stub_provider(state).await;
            let configured = state.modules.get::<Configured>().expect("configured");
            let payer = SubjectId(
                values
                    .get("payer")
                    .and_then(|p| Uuid::parse_str(p).ok())
                    .expect("the payer is an account id"),
            );
            // The citizen's sample receivables are open (one to check out) when the sample
            // erasure of the citizen runs, which must succeed: they hold nothing.
            super::retention::exempt_sample_payer(payer);
            let meta = Meta::system("payments-samples");
            let paid_payer = SubjectId(
                values
                    .get("paid_payer")
                    .and_then(|p| Uuid::parse_str(p).ok())
                    .expect("a derived payer"),
            );
            for (name, payer) in [
                ("receivable", payer),
                ("paid_receivable", paid_payer),
                ("cancel_receivable", payer),
            ] {
                let id = id_of(values, name);
                service::request(state, fee(id, payer), None, &meta)
                    .await
                    .expect("a sample receivable");
            }
            let paid = id_of(values, "paid_receivable");
            let checkout = service::checkout(
                state,
                &configured.provider,
                paid,
                "https://portal.invalid/return".into(),
                &configured.notify_base,
                Utc::now(),
                &meta,
            )
            .await
            .expect("a sample checkout");
            service::pull(state, &configured.provider, paid, None, &meta)
                .await
                .expect("a sample pull");
            values.insert("transaction".into(), checkout.transaction_id);
            let refund = RefundId(
                values
                    .get("refund")
                    .and_then(|r| Uuid::parse_str(r).ok())
                    .expect("refund id"),
            );
            service::request_refund(
                state,
                paid,
                RequestRefund {
                    refund_id: refund,
                    amount: Cents::new(100).expect("cents"),
                    requested_by: Actor::parse("samples-requester").expect("actor"),
                    reason: Reference::parse("Doppelt gezahlt").expect("reason"),
                    requested_at: Utc::now(),
                },
                &meta,
            )
            .await
            .expect("a sample refund");
        })
    }

    fn param(&self, values: &SampleValues, first: &str, param: &str) -> Option<String> {
        let name = match (first, param) {
            ("receivables", "{id}") => "receivable",
            ("refunds", "{id}") => "refund",
            ("callbacks", "{provider}") => return Some(STUB.into()),
            ("fee-schedules", "{leika}") => return Some(FEE_LEIKA.into()),
            ("fee-schedules", "{authority}") => return Some(FEE_AUTHORITY.into()),
            _ => return None,
        };
        values.get(name).cloned()
    }

    fn path_param(&self, values: &SampleValues, path: &str, param: &str) -> Option<String> {
        match (path, param) {
            ("/receivables/{id}/cancellation", "{id}") => values.get("cancel_receivable").cloned(),
            ("/receivables/{id}/refunds", "{id}") => values.get("paid_receivable").cloned(),
            _ => {
                let first = path.split('/').nth(1).unwrap_or_default();
                self.param(values, first, param)
            }
        }
    }

    fn query(&self, values: &SampleValues, path: &str) -> Option<String> {
        match path {
            "/payments/return" | "/callbacks/payments/{provider}" => {
                Some(format!("receivable={}", values.get("paid_receivable")?))
            }
            "/reconciliation/daily" => Some(format!(
                "date={}&mandant={MANDANT}",
                Utc::now().date_naive()
            )),
            _ => None,
        }
    }

    fn body(&self, values: &SampleValues, method: &str, path: &str) -> Option<Value> {
        Some(match (method, path) {
            ("POST", "/receivables") => json!({
                "mandant": MANDANT,
                "bewirtschafter": BEWIRTSCHAFTER,
                "gross_cents": 2500,
                "due_date": "2026-12-31",
                "lines": [
                    { "haushaltsstelle": "1100.100", "buchungstext": "GEBÜHR", "gross_cents": 2000, "net_cents": 2000, "tax_cents": 0 },
                    { "haushaltsstelle": "1100.200", "buchungstext": "GEBÜHR", "gross_cents": 500, "net_cents": 500, "tax_cents": 0 }
                ],
                // A receivable names an existing account as its payer: the citizen's.
                "payer": values.get("payer").cloned().unwrap_or_default(),
                "payer_name": "Erika Musterfrau"
            }),
            ("POST", "/receivables/{id}/cancellation") => {
                json!({ "reason": "Antrag zurückgenommen" })
            }
            ("POST", "/receivables/{id}/checkout") => {
                json!({ "return_url": "https://portal.invalid/return" })
            }
            ("POST", "/callbacks/payments/{provider}") => {
                json!({ "transactionId": values.get("transaction")?, "requestId": "sample" })
            }
            ("POST", "/receivables/{id}/refunds") => {
                json!({ "amount_cents": 1, "reason": "Erstattung" })
            }
            ("POST", "/refunds/{id}/approval") => json!({ "hkr_reference": "BEL-77" }),
            ("PUT", "/fee-schedules/{leika}/{authority}") => json!({
                "mandant": MANDANT,
                "bewirtschafter": BEWIRTSCHAFTER,
                "gross_cents": 2500,
                "lines": [
                    { "haushaltsstelle": "1100.100", "buchungstext": "GEBÜHR", "gross_cents": 2000, "net_cents": 2000, "tax_cents": 0 },
                    { "haushaltsstelle": "1100.200", "buchungstext": "GEBÜHR", "gross_cents": 500, "net_cents": 500, "tax_cents": 0 }
                ],
                "due_days": 14
            }),
            ("POST", "/reconciliation/imports") => json!({
                "mandant": MANDANT,
                "format": "hkr",
                "content": "buchungs_id;buchungsdatum;kassenzeichen;haushaltsstelle;betrag;art;hkr_referenz\nS-1;2026-03-04;SAMPLE0000001;1100.100;25,00;IST;BEL-1\n"
            }),
            _ => return None,
        })
    }

    fn headers(&self, values: &SampleValues, method: &str, path: &str) -> Vec<(String, String)> {
        match (method, path) {
            ("POST", "/receivables") => {
                vec![("idempotency-key".into(), "sample-request-1".into())]
            }
            ("POST", "/callbacks/payments/{provider}") => match self.body(values, method, path) {
                Some(body) => vec![(
                    "x-signature".into(),
                    sign_callback(STUB_SECRET.as_bytes(), body.to_string().as_bytes()),
                )],
                None => vec![],
            },
            _ => vec![],
        }
    }
}
