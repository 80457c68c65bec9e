//! The payments routes: receivables (requested by a cashier, read by their payer, their
//! cashiers and auditors), checkout at the provider, the payer's return and the provider's
//! push callback (both only trigger a status pull), refunds under four eyes, cancellation,
//! and reconciliation (imports, worklist, daily report).
//!
//! Who reaches a receivable, each role by its own rule (a second role of the token only
//! adds what that role may do itself; the guard has narrowed the caller to the route's
//! roles before a handler looks at it):
//!
//! - citizen: the receivables whose recorded payer is its account (never a name or a
//!   prefix);
//! - cashier: the receivables of the Bewirtschafter its token names;
//! - auditor and operator: every receivable, to read.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::event::SubjectId;
use amtsbuch_domain::payments::receivable::{Receivable, RequestReceivable, RequestRefund};
use amtsbuch_domain::payments::{
    Actor, Bewirtschafter, Cents, Kassenzeichen, Line, Mandant, PayerName, ReceivableId, Reference,
    RefundId, TransactionId,
};
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::payments as read;

use super::provider::Provider;
use super::service::{self, Format};
use crate::auth::Caller;
use crate::body;
use crate::command::{read_models_current, Meta};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// The provider a server talks to and where its callbacks reach it: what `serve`'s flags
/// configure (`super::jobs`), kept in the state's module values.
#[derive(Debug, Clone)]
pub struct Configured {
    pub provider: Provider,
    /// This service's public base URL, to which the provider sends push callbacks.
    pub notify_base: String,
}

fn configured(state: &AppState) -> Result<Configured, Problem> {
    state.modules.get::<Configured>().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider-not-configured",
            "No payment provider is configured",
            "this server was started without --payment-provider-url; see docs/PAYMENTS.md",
        )
    })
}

fn receivable_id(raw: &str) -> Result<ReceivableId, Problem> {
    uuid(raw, "a receivable id").map(ReceivableId)
}

fn uuid(raw: &str, what: &'static str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| raw == u.hyphenated().to_string())
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid-id",
                format!("{what} is a lowercase hyphenated UUID"),
            )
        })
}

fn query_problem(e: QueryRejection) -> Problem {
    Problem::bad_request("invalid-query", e.body_text())
}

/// The role by which the (narrowed) caller reaches `r`, if any; see the module docs.
fn reach(caller: &Principal, r: &Receivable) -> Option<Role> {
    let payer = r.payer.to_string();
    caller.roles().iter().copied().find(|&role| match role {
        Role::Citizen => caller.account() == Some(payer.as_str()),
        Role::Cashier => caller
            .bewirtschafter()
            .iter()
            .any(|b| b.as_str() == r.bewirtschafter.as_str()),
        Role::Auditor | Role::Operator => true,
        _ => false,
    })
}

/// A receivable the caller does not reach is answered as one that does not exist, so that
/// a refusal tells neither that it exists nor in what state.
fn not_reached() -> Problem {
    Problem::not_found("no such receivable")
}

/// The receivable, if the caller reaches it, and the metadata of its events.
async fn reached(
    state: &AppState,
    caller: &Principal,
    id: ReceivableId,
) -> Result<(Receivable, Meta), Problem> {
    let (current, _) = service::receivable(state, id).await?;
    let r = current
        .receivable()
        .cloned()
        .ok_or_else(|| Problem::not_found("no such receivable"))?;
    let role = reach(caller, &r).ok_or_else(not_reached)?;
    Ok((r, Meta::acting_as(caller, role)))
}

/// The list scope of a (narrowed) caller: a part per role.
fn scope(caller: &Principal) -> read::Scope {
    let mut scope = read::Scope::default();
    for role in caller.roles() {
        match role {
            Role::Citizen => scope.payer = caller.account().map(str::to_owned),
            Role::Cashier => {
                scope.bewirtschafter = caller
                    .bewirtschafter()
                    .iter()
                    .map(|b| b.as_str().to_owned())
                    .collect()
            }
            Role::Auditor | Role::Operator => scope.all = true,
            _ => {}
        }
    }
    scope
}

// ---------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------

/// A booking line of a receivable to request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineDoc {
    /// The Haushaltsstelle (budget line): 1 to 10 ASCII letters, digits, `.`, `-`.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9.-]{1,10}$")]
    pub haushaltsstelle: amtsbuch_domain::payments::Haushaltsstelle,
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9.-]{1,10}$")]
    #[serde(default)]
    pub objektnummer: Option<amtsbuch_domain::payments::Objektnummer>,
    /// An HREF posting reference (up to 200 characters).
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, pattern = "^\\S(.*\\S)?$")]
    #[serde(default)]
    pub href: Option<amtsbuch_domain::payments::Href>,
    /// The posting text: up to 120 of `A–Z 0–9 , . : / + & - * $ % Ä Ö Ü ß` and inner spaces.
    #[schema(value_type = String, pattern = "^[A-Z0-9,.:/+&*$%ÄÖÜß-]([A-Z0-9,.:/+&*$%ÄÖÜß -]{0,118}[A-Z0-9,.:/+&*$%ÄÖÜß-])?$")]
    pub buchungstext: amtsbuch_domain::payments::Buchungstext,
    #[schema(value_type = i64, minimum = 0, maximum = 999999999999999.0)]
    pub gross_cents: Cents,
    #[schema(value_type = i64, minimum = 0, maximum = 999999999999999.0)]
    pub net_cents: Cents,
    #[schema(value_type = i64, minimum = 0, maximum = 999999999999999.0)]
    pub tax_cents: Cents,
}

/// A booking line as a receivable shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineView {
    pub haushaltsstelle: String,
    pub objektnummer: Option<String>,
    pub href: Option<String>,
    pub buchungstext: String,
    pub gross_cents: i64,
    pub net_cents: i64,
    pub tax_cents: i64,
}

impl From<&Line> for LineView {
    fn from(l: &Line) -> Self {
        LineView {
            haushaltsstelle: l.haushaltsstelle.as_str().to_owned(),
            objektnummer: l.objektnummer.as_ref().map(|o| o.as_str().to_owned()),
            href: l.href.as_ref().map(|h| h.as_str().to_owned()),
            buchungstext: l.buchungstext.as_str().to_owned(),
            gross_cents: l.gross_cents.get(),
            net_cents: l.net_cents.get(),
            tax_cents: l.tax_cents.get(),
        }
    }
}

/// A payment attempt at the provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentAttemptView {
    pub transaction_id: String,
    pub amount_cents: i64,
    /// `INITIAL`, `PAYED`, `CANCELED`, `FAILED`: the last status Amtsbuch pulled.
    pub status: String,
    pub method: Option<String>,
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivableRefund {
    pub refund_id: Uuid,
    pub amount_cents: i64,
    pub booked: bool,
}

/// A receivable (Sollstellung).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivableView {
    pub receivable_id: Uuid,
    pub mandant: String,
    pub bewirtschafter: String,
    pub kassenzeichen: String,
    /// `open`, `partly_paid`, `paid`, `settled`, `overpaid`, `reopened`, `refund_pending`,
    /// `refunded`, `cancelled`.
    pub status: String,
    pub gross_cents: i64,
    /// What is still owed.
    pub balance_cents: i64,
    pub paid_cents: i64,
    pub refunded_cents: i64,
    /// Provider fees, booked apart (gross settlement).
    pub fees_cents: i64,
    pub due_date: String,
    pub lines: Vec<LineView>,
    pub application_id: Option<Uuid>,
    /// The payer's pseudonymous subject id.
    pub payer: Uuid,
    pub attempts: Vec<PaymentAttemptView>,
    pub refunds: Vec<ReceivableRefund>,
    /// Mismatches on the worklist.
    pub mismatches: u32,
    /// The day it was paid in full.
    pub paid_on: Option<String>,
    /// Whether an application waiting for this fee may be submitted.
    pub paid: bool,
    /// Until when its cash records (and its payer's data) must be kept.
    pub retention_until: Option<String>,
}

fn label<T: Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

pub(crate) fn view(r: &Receivable) -> ReceivableView {
    ReceivableView {
        receivable_id: r.id.0,
        mandant: r.mandant.as_str().to_owned(),
        bewirtschafter: r.bewirtschafter.as_str().to_owned(),
        kassenzeichen: r.kassenzeichen.as_str().to_owned(),
        status: r.status().as_str().to_owned(),
        gross_cents: r.gross.get(),
        balance_cents: r.balance().get(),
        paid_cents: r.paid.get(),
        refunded_cents: r.refunded.get(),
        fees_cents: r.fees.get(),
        due_date: r.due_date.to_string(),
        lines: r.lines.iter().map(LineView::from).collect(),
        application_id: r.application_id,
        payer: r.payer.0,
        attempts: r
            .attempts
            .iter()
            .map(|(tx, a)| PaymentAttemptView {
                transaction_id: tx.as_str().to_owned(),
                amount_cents: a.amount.get(),
                status: a.status.as_str().to_owned(),
                method: a.method.as_ref().and_then(label),
            })
            .collect(),
        refunds: r
            .refunds
            .iter()
            .map(|(id, f)| ReceivableRefund {
                refund_id: id.0,
                amount_cents: f.amount.get(),
                booked: f.booked,
            })
            .collect(),
        mismatches: r.mismatches,
        paid_on: r.paid_on.map(|d| d.to_string()),
        paid: r.is_paid(),
        retention_until: r
            .retention_until(super::retention::ACCOUNTS_LAG_YEARS)
            .as_ref()
            .map(format_timestamp),
    }
}

// ---------------------------------------------------------------------------------------
// Receivables
// ---------------------------------------------------------------------------------------

/// A receivable to request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceivableRequest {
    /// The Mandant in the payment platform, e.g. `14612000`.
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._:-]{0,35}$")]
    pub mandant: Mandant,
    /// The Bewirtschafter; a cashier may request only for its own.
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9_-]{0,7}$")]
    pub bewirtschafter: Bewirtschafter,
    /// 2 to 30 ASCII letters and digits, unique in the Mandant; assigned (twelve digits
    /// with a check digit) when left out.
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9]{2,30}$")]
    #[serde(default)]
    pub kassenzeichen: Option<Kassenzeichen>,
    /// The gross amount in euro cents; the lines' gross amounts must sum to it.
    #[schema(value_type = i64, minimum = 1, maximum = 999999999999999.0)]
    pub gross_cents: Cents,
    #[schema(value_type = String, format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    #[serde(deserialize_with = "crate::body::strict::date")]
    pub due_date: NaiveDate,
    /// 1 to 99 lines; each line's net plus tax is its gross amount.
    #[schema(min_items = 1, max_items = 99)]
    pub lines: Vec<LineDoc>,
    /// The application the fee belongs to.
    #[serde(default)]
    pub application_id: Option<Uuid>,
    /// The payer's pseudonymous subject id (its Servicekonto account).
    pub payer: Uuid,
    /// The payer's name; personal data, stored only sealed.
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "^\\S(.*\\S)?$")]
    pub payer_name: PayerName,
}

/// A refused payer: a `422` that names why.
fn no_payer(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "payer-not-recorded",
        "The payer is not a recorded fact",
        detail,
    )
}

/// Whether the payer (and the application) a cashier names are recorded facts. A
/// receivable names its payer as theirs: the payer reaches it, and it holds the payer's
/// erasure for years. So the payer of an application's fee is its applicant, and the
/// application's service at its authority has a fee schedule of the request's
/// Bewirtschafter (the recorded fact binding the Bewirtschafter to that authority); a fee
/// without an application is payable by an existing Servicekonto account only. Each read
/// by the other module's published form (stream category and event type).
async fn payer_of_record(state: &AppState, req: &ReceivableRequest) -> Result<(), Problem> {
    use amtsbuch_domain::payments::fees::{schedule_stream, FeeScheduleState};
    use amtsbuch_infra::EventStore as _;
    match req.application_id {
        Some(application) => {
            let app = super::policy::drafted(state, application)
                .await?
                .ok_or_else(|| no_payer("no such application"))?;
            let stream = schedule_stream(&app.responsible.leika, &app.responsible.authority);
            let (schedule, _) = crate::command::current::<FeeScheduleState>(state, &stream).await?;
            if schedule
                .0
                .is_none_or(|s| s.bewirtschafter != req.bewirtschafter)
            {
                return Err(Problem::forbidden(
                    "an application's fee is requested by the Bewirtschafter of the fee schedule of its service at its authority",
                ));
            }
            if app.applicant != req.payer {
                return Err(no_payer(
                    "the payer of an application's fee is the application's applicant",
                ));
            }
        }
        None => {
            let stream = amtsbuch_domain::newtype::stream_of("account", req.payer);
            let first = state
                .store
                .read_stream(&stream, 1, amtsbuch_infra::Direction::Forwards, 1)
                .await?;
            if first.is_empty() {
                return Err(no_payer(
                    "the payer is a Servicekonto account of this service; there is none with this id",
                ));
            }
        }
    }
    Ok(())
}

/// Request a receivable. `Idempotency-Key` names the request: the same key again (from the
/// same caller) answers the receivable it created and creates nothing; with another request
/// under it `409 idempotency-key-reused`, and `404` when that receivable is of a
/// Bewirtschafter the caller's token no longer names. The request is checked in full
/// before its Kassenzeichen is claimed.
#[utoipa::path(post, path = "/receivables", tag = "payments",
    security(("bearer" = ["cashier"])),
    params(("Idempotency-Key" = String, Header, description = "1 to 200 printable ASCII characters naming this request")),
    request_body = ReceivableRequest,
    responses(
        (status = 201, description = "The receivable", body = ReceivableView),
        (status = 200, description = "The receivable this key created before", body = ReceivableView),
        (status = 400, description = "Invalid input (lines that do not sum up, a bad amount, no Idempotency-Key); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another Bewirtschafter, or not the one of the fee schedule of the application's service at its authority", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The key's receivable is of a Bewirtschafter the token does not name", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The Kassenzeichen is taken in the Mandant, or the key named another request (`idempotency-key-reused`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The payer is no Servicekonto account, or not the applicant of the application named (`payer-not-recorded`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Personal data cannot be sealed", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn request(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or_else(|| {
            Problem::bad_request(
                "idempotency-key-missing",
                "POST /receivables needs an Idempotency-Key header of 1 to 200 printable ASCII characters",
            )
        })?;
    let req: ReceivableRequest = body::json(
        raw,
        "{\"mandant\", \"bewirtschafter\", \"gross_cents\", \"due_date\", \"lines\", \"payer\", \"payer_name\"}",
    )?;
    if !caller
        .bewirtschafter()
        .iter()
        .any(|b| b.as_str() == req.bewirtschafter.as_str())
    {
        return Err(Problem::forbidden(
            "a cashier requests receivables only for the Bewirtschafter its token names",
        ));
    }
    payer_of_record(&state, &req).await?;
    let id = ReceivableId::for_idempotency_key(caller.subject(), key);
    let existed = match service::receivable(&state, id).await {
        Ok((existing, _)) => {
            // The key's receivable outside the caller's Bewirtschafter (its token's scope
            // changed since) is not the caller's to see.
            let reached = existing.receivable().is_some_and(|r| {
                caller
                    .bewirtschafter()
                    .iter()
                    .any(|b| b.as_str() == r.bewirtschafter.as_str())
            });
            if !reached {
                return Err(Problem::not_found("no such receivable"));
            }
            true
        }
        Err(p) if p.status == StatusCode::NOT_FOUND => false,
        // A store that cannot be read is an outage (`503`), never a new request.
        Err(p) => return Err(p),
    };
    let now = amtsbuch_domain::record::truncate_micros(Utc::now());
    let command = RequestReceivable {
        receivable_id: id,
        mandant: req.mandant,
        bewirtschafter: req.bewirtschafter,
        kassenzeichen: req
            .kassenzeichen
            .clone()
            .unwrap_or_else(|| Kassenzeichen::assign(id, 0)),
        assigned: req.kassenzeichen.is_none(),
        gross_cents: req.gross_cents,
        due_date: req.due_date,
        lines: req
            .lines
            .into_iter()
            .map(|l| Line {
                haushaltsstelle: l.haushaltsstelle,
                objektnummer: l.objektnummer,
                href: l.href,
                buchungstext: l.buchungstext,
                gross_cents: l.gross_cents,
                net_cents: l.net_cents,
                tax_cents: l.tax_cents,
            })
            .collect(),
        application_id: req.application_id,
        payer: SubjectId(req.payer),
        payer_name: req.payer_name,
        requested_at: now,
    };
    let meta = Meta::acting_as(&caller, Role::Cashier);
    let done = service::request(&state, command, req.kassenzeichen, &meta).await?;
    let r = done
        .receivable()
        .ok_or_else(|| Problem::internal(&"a requested receivable without state"))?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view(r))).into_response())
}

/// A receivable, for its payer, its cashiers and auditors. Folded from the log, so it
/// never lags behind.
#[utoipa::path(get, path = "/receivables/{id}", tag = "payments",
    security(("bearer" = ["citizen", "cashier", "auditor"])),
    params(("id" = String, Path, description = "The receivable's id (UUID)", format = Uuid)),
    responses(
        (status = 200, description = "The receivable", body = ReceivableView),
        (status = 400, description = "Invalid id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such receivable, or another payer's or Bewirtschafter's", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ReceivableView>, Problem> {
    let id = receivable_id(&id)?;
    let (r, _) = reached(&state, &caller, id).await?;
    Ok(Json(view(&r)))
}

/// The filters of the receivable list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this Mandant's.
    #[param(pattern = "^[a-z0-9][a-z0-9._:-]{0,35}$")]
    mandant: Option<String>,
    #[param(pattern = "^[A-Za-z0-9]{2,30}$")]
    kassenzeichen: Option<String>,
    /// `open`, `partly_paid`, `paid`, `settled`, `overpaid`, `reopened`, `refund_pending`,
    /// `refunded`, `cancelled`.
    #[param(
        pattern = "^(open|partly_paid|paid|settled|overpaid|reopened|refund_pending|refunded|cancelled)$"
    )]
    status: Option<String>,
    /// Due before this day.
    #[param(value_type = Option<String>, format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    #[serde(default, deserialize_with = "crate::body::strict::opt_date")]
    due_before: Option<NaiveDate>,
    /// With a line on this Haushaltsstelle.
    #[param(pattern = "^[A-Za-z0-9.-]{1,10}$")]
    haushaltsstelle: Option<String>,
    /// `true`: only those with mismatches on the worklist; `false`: only those without.
    mismatch: Option<bool>,
}

/// One receivable of the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivableListItem {
    pub receivable_id: String,
    pub mandant: String,
    pub bewirtschafter: String,
    pub kassenzeichen: String,
    pub payer: String,
    pub status: String,
    pub gross_cents: i64,
    pub balance_cents: i64,
    pub due_date: String,
    pub paid_on: Option<String>,
    pub mismatches: i64,
}

/// The receivables list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivableList {
    /// By due date, at most 500.
    pub receivables: Vec<ReceivableListItem>,
}

fn checked(value: &Option<String>, ok: impl Fn(&str) -> bool, what: &str) -> Result<(), Problem> {
    match value {
        Some(v) if !ok(v) => Err(Problem::bad_request(
            "invalid-query",
            format!("{what} does not have the documented form"),
        )),
        _ => Ok(()),
    }
}

/// The receivables the caller may see: a payer its own, a cashier its Bewirtschafter's,
/// an auditor all; filtered. Follows the log a moment behind.
#[utoipa::path(get, path = "/receivables", tag = "payments",
    security(("bearer" = ["citizen", "cashier", "auditor"])),
    params(ListQuery),
    responses(
        (status = 200, description = "The receivables", body = ReceivableList),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ReceivableList>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    checked(&q.mandant, |m| Mandant::parse(m).is_ok(), "mandant")?;
    checked(
        &q.kassenzeichen,
        |k| Kassenzeichen::parse(k).is_ok(),
        "kassenzeichen",
    )?;
    checked(
        &q.status,
        |s| {
            [
                "open",
                "partly_paid",
                "paid",
                "settled",
                "overpaid",
                "reopened",
                "refund_pending",
                "refunded",
                "cancelled",
            ]
            .contains(&s)
        },
        "status",
    )?;
    checked(
        &q.haushaltsstelle,
        |h| amtsbuch_domain::payments::Haushaltsstelle::parse(h).is_ok(),
        "haushaltsstelle",
    )?;
    read_models_current(&state, &[read::NAME]).await?;
    let rows = read::list(
        &ReadDb::new(&state.store),
        &scope(&caller),
        &read::ListFilter {
            mandant: q.mandant,
            kassenzeichen: q.kassenzeichen,
            status: q.status,
            due_before: q.due_before.map(|d| d.to_string()),
            haushaltsstelle: q.haushaltsstelle,
            mismatch: q.mismatch,
        },
    )
    .await?;
    Ok(Json(ReceivableList {
        receivables: rows
            .into_iter()
            .map(|r| ReceivableListItem {
                receivable_id: r.receivable_id,
                mandant: r.mandant,
                bewirtschafter: r.bewirtschafter,
                kassenzeichen: r.kassenzeichen,
                payer: r.payer,
                status: r.status,
                gross_cents: r.gross_cents,
                balance_cents: r.balance_cents,
                due_date: r.due_date,
                paid_on: r.paid_on,
                mismatches: r.mismatches,
            })
            .collect(),
    }))
}

/// A cancellation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceivableCancellation {
    #[schema(value_type = String, min_length = 1, max_length = 140, pattern = "^\\S(.*\\S)?$")]
    pub reason: Reference,
}

/// Cancel a receivable on which nothing was paid.
#[utoipa::path(post, path = "/receivables/{id}/cancellation", tag = "payments",
    security(("bearer" = ["cashier"])),
    params(("id" = String, Path, description = "The receivable's id (UUID)", format = Uuid)),
    request_body = ReceivableCancellation,
    responses(
        (status = 200, description = "The cancelled receivable", body = ReceivableView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such receivable, or another Bewirtschafter's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Something was paid", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ReceivableView>, Problem> {
    let id = receivable_id(&id)?;
    let req: ReceivableCancellation = body::json(raw, "{\"reason\"}")?;
    let (_, meta) = reached(&state, &caller, id).await?;
    let done = service::cancel(&state, id, req.reason, Utc::now(), &meta).await?;
    let r = done
        .receivable()
        .ok_or_else(|| Problem::not_found("no such receivable"))?;
    Ok(Json(view(r)))
}

// ---------------------------------------------------------------------------------------
// Checkout, return, callback
// ---------------------------------------------------------------------------------------

/// A checkout.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// Where the provider sends the payer back (the portal's page, which then calls
    /// `GET /payments/return`).
    #[schema(min_length = 8, max_length = 2000, pattern = "^https?://[!-~]+$")]
    pub return_url: String,
}

/// Where to send the payer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutAnswer {
    pub transaction_id: String,
    /// The provider's payment page.
    pub redirect_url: String,
}

/// Start paying what is still owed: a payment request at the provider, recorded as an
/// attempt; answers the provider's payment page to redirect the payer to. A receivable has
/// at most one attempt open: while the provider says it is not final, a checkout answers it
/// again (`200`) and asks for no new one.
#[utoipa::path(post, path = "/receivables/{id}/checkout", tag = "payments",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The receivable's id (UUID)", format = Uuid)),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "The attempt still open and where to send the payer", body = CheckoutAnswer),
        (status = 201, description = "The attempt and where to send the payer", body = CheckoutAnswer),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such receivable, or another payer's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Nothing is owed, the receivable is cancelled, or an attempt for another amount is still open", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 502, description = "The provider refused or answered what cannot be used", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No provider is configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn checkout(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = receivable_id(&id)?;
    let req: CheckoutRequest = body::json(raw, "{\"return_url\"}")?;
    let rest = req
        .return_url
        .strip_prefix("https://")
        .or_else(|| req.return_url.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || !r.bytes().all(|b| (b'!'..=b'~').contains(&b)))
        || req.return_url.len() > 2000
    {
        return Err(Problem::bad_request(
            "invalid-body",
            "return_url is an http(s) URL of at most 2000 printable ASCII characters",
        ));
    }
    let (_, meta) = reached(&state, &caller, id).await?;
    let c = configured(&state)?;
    let done = service::checkout(
        &state,
        &c.provider,
        id,
        req.return_url,
        &c.notify_base,
        Utc::now(),
        &meta,
    )
    .await?;
    let status = if done.reused {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(CheckoutAnswer {
            transaction_id: done.transaction_id,
            redirect_url: done.redirect_url,
        }),
    )
        .into_response())
}

/// What the payer's return names.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReturnQuery {
    /// The receivable the payer paid.
    #[param(value_type = String, format = Uuid)]
    receivable: String,
}

/// What a pull found.
#[derive(Debug, Serialize, ToSchema)]
pub struct PulledStatus {
    pub receivable_id: Uuid,
    /// The receivable's status after the pull.
    pub status: String,
    pub balance_cents: i64,
}

fn pulled(r: &Receivable) -> PulledStatus {
    PulledStatus {
        receivable_id: r.id.0,
        status: r.status().as_str().to_owned(),
        balance_cents: r.balance().get(),
    }
}

/// What a payer's return answers, whichever receivable it names: nothing about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnReceived {
    /// Always "received; the status is being checked".
    pub detail: &'static str,
}

/// How long after a return's pull another return of the same receivable pulls nothing.
const RETURN_PULL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How many receivables a server remembers a return's pull for; past it (after dropping
/// those older than the interval) a return pulls nothing.
const RETURN_PULLS_REMEMBERED: usize = 10_000;

/// When each receivable's last return pull started (the pull in flight included).
static RETURN_PULLS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<ReceivableId, std::time::Instant>>,
> = std::sync::LazyLock::new(Default::default);

/// Whether a return may pull `id` now: at most one pull per receivable in
/// [`RETURN_PULL_INTERVAL`] (so also at most one in flight), for at most
/// [`RETURN_PULLS_REMEMBERED`] receivables at once.
fn return_may_pull(id: ReceivableId) -> bool {
    let now = std::time::Instant::now();
    let mut pulls = RETURN_PULLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pulls
        .get(&id)
        .is_some_and(|t| now.duration_since(*t) < RETURN_PULL_INTERVAL)
    {
        return false;
    }
    if pulls.len() >= RETURN_PULLS_REMEMBERED {
        pulls.retain(|_, t| now.duration_since(*t) < RETURN_PULL_INTERVAL);
        if pulls.len() >= RETURN_PULLS_REMEMBERED {
            return false;
        }
    }
    pulls.insert(id, now);
    true
}

/// The payer's browser is back from the provider. Anybody may call it and it answers
/// nothing about the receivable (the same `202` for one that does not exist): it only
/// pulls the status of the receivable's open attempts from the provider, at most once per
/// receivable in 30 seconds, whatever its parameters claim. The payer reads the outcome
/// with `GET /receivables/{id}` under its own token.
#[utoipa::path(get, path = "/payments/return", tag = "payments",
    security(()),
    params(ReturnQuery),
    responses(
        (status = 202, description = "Received; the status is being checked", body = ReturnReceived),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn payer_return(
    State(state): State<AppState>,
    query: Result<Query<ReturnQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<ReturnReceived>), Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let id = receivable_id(&q.receivable)?;
    if service::receivable(&state, id).await.is_ok() && return_may_pull(id) {
        // What the pull finds (or that the provider cannot be asked, or that none is
        // configured) is not the caller's: every well-formed return is answered alike.
        let pulled = match configured(&state) {
            Ok(c) => {
                service::pull(
                    &state,
                    &c.provider,
                    id,
                    None,
                    &Meta::system("payment-return"),
                )
                .await
            }
            Err(p) => Err(p),
        };
        if let Err(p) = pulled {
            tracing::warn!(receivable = %id.0, kind = %p.kind, "a return's pull failed");
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(ReturnReceived {
            detail: "received; the status is being checked",
        }),
    ))
}

/// What a callback names besides its body.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The receivable, as the notify URL of its checkout names it.
    #[param(value_type = String, format = Uuid)]
    receivable: String,
}

/// A provider's push callback: it names the transaction (and may say more, which is not
/// read).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCallback {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub transaction_id: String,
}

/// A provider's push callback `{transactionId, …}`, signed in `X-Signature`
/// (`sha256=<hex HMAC-SHA-256 of the body under the callback secret>`). A bad or missing
/// signature is refused with 401 and logged; a good one only triggers a pull of the
/// transaction it names.
#[utoipa::path(post, path = "/callbacks/payments/{provider}", tag = "payments",
    security(()),
    params(
        ("provider" = String, Path, description = "The provider's configured name", pattern = "^[a-z0-9][a-z0-9_-]{0,39}$"),
        ("X-Signature" = Option<String>, Header, description = "`sha256=` and the hex HMAC-SHA-256 of the body"),
        CallbackQuery),
    request_body = ProviderCallback,
    responses(
        (status = 200, description = "The receivable's status after the pull", body = PulledStatus),
        (status = 400, description = "A signed body that names no transaction", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Bad or missing signature; logged", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such provider or receivable", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The transaction is no attempt of the receivable, or the provider contradicts a final status", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 502, description = "The provider cannot be asked", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<PulledStatus>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let id = receivable_id(&q.receivable)?;
    let raw = raw.map_err(|e| Problem::bad_request("invalid-body", e.body_text()))?;
    let c = state
        .modules
        .get::<Configured>()
        .filter(|c| c.provider.config().name == provider)
        .ok_or_else(|| Problem::not_found("no payment provider of this name is configured"))?;
    let signature = headers.get("x-signature").and_then(|v| v.to_str().ok());
    let done = service::callback(&state, &c.provider, id, &raw, signature).await?;
    let r = done
        .receivable()
        .ok_or_else(|| Problem::not_found("no such receivable"))?;
    Ok(Json(pulled(r)))
}

// ---------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------

/// A refund to request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// At most what was paid minus refunded and pending refunds.
    #[schema(value_type = i64, minimum = 1, maximum = 999999999999999.0)]
    pub amount_cents: Cents,
    #[schema(value_type = String, min_length = 1, max_length = 140, pattern = "^\\S(.*\\S)?$")]
    pub reason: Reference,
}

/// A requested refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundRequestedView {
    pub refund_id: Uuid,
    pub receivable: ReceivableView,
}

/// Request a refund (the first pair of eyes): another cashier must approve it.
#[utoipa::path(post, path = "/receivables/{id}/refunds", tag = "payments",
    security(("bearer" = ["cashier"])),
    params(("id" = String, Path, description = "The receivable's id (UUID)", format = Uuid)),
    request_body = RefundRequest,
    responses(
        (status = 201, description = "The refund, pending approval", body = RefundRequestedView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such receivable, or another Bewirtschafter's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "More than was paid", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn request_refund(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = receivable_id(&id)?;
    let req: RefundRequest = body::json(raw, "{\"amount_cents\", \"reason\"}")?;
    let (_, meta) = reached(&state, &caller, id).await?;
    let refund_id = RefundId(Uuid::now_v7());
    let done = service::request_refund(
        &state,
        id,
        RequestRefund {
            refund_id,
            amount: req.amount_cents,
            requested_by: actor(&caller)?,
            reason: req.reason,
            requested_at: Utc::now(),
        },
        &meta,
    )
    .await?;
    let r = done
        .receivable()
        .ok_or_else(|| Problem::not_found("no such receivable"))?;
    Ok((
        StatusCode::CREATED,
        Json(RefundRequestedView {
            refund_id: refund_id.0,
            receivable: view(r),
        }),
    )
        .into_response())
}

/// Who requests or approves a refund: a pseudonym of the token's subject (SHA-256), so
/// that requester and approver are told apart by their subjects exactly.
fn actor(caller: &Principal) -> Result<Actor, Problem> {
    let hash = ring::digest::digest(&ring::digest::SHA256, caller.subject().as_bytes());
    let hex: String = hash.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Actor::parse(&format!("subject:{hex}")).map_err(|e| Problem::internal(&e))
}

/// An approval.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundApproval {
    /// The HKR's reference of the payout.
    #[schema(value_type = String, min_length = 1, max_length = 140, pattern = "^\\S(.*\\S)?$")]
    pub hkr_reference: Reference,
}

/// Approve a refund (the second pair of eyes: not its requester) and book it with the
/// HKR's reference.
#[utoipa::path(post, path = "/refunds/{id}/approval", tag = "payments",
    security(("bearer" = ["cashier"])),
    params(("id" = String, Path, description = "The refund's id (UUID)", format = Uuid)),
    request_body = RefundApproval,
    responses(
        (status = 200, description = "The receivable with the refund booked", body = ReceivableView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such refund, or another Bewirtschafter's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Approved by its requester, or already booked", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn approve_refund(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ReceivableView>, Problem> {
    let refund = RefundId(uuid(&id, "a refund id")?);
    let req: RefundApproval = body::json(raw, "{\"hkr_reference\"}")?;
    read_models_current(&state, &[read::NAME]).await?;
    let owner = read::refund_owner(&ReadDb::new(&state.store), &refund.0.to_string())
        .await?
        .ok_or_else(|| Problem::not_found("no such refund"))?;
    // Outside the caller's reach the refund is answered as one that does not exist.
    let (_, meta) = reached(&state, &caller, owner).await.map_err(|p| {
        if p.status == StatusCode::NOT_FOUND {
            Problem::not_found("no such refund")
        } else {
            p
        }
    })?;
    let done = service::approve_refund(
        &state,
        owner,
        refund,
        actor(&caller)?,
        req.hkr_reference,
        Utc::now(),
        &meta,
    )
    .await?;
    let r = done
        .receivable()
        .ok_or_else(|| Problem::not_found("no such receivable"))?;
    Ok(Json(view(r)))
}

// ---------------------------------------------------------------------------------------
// Reconciliation
// ---------------------------------------------------------------------------------------

/// A file to import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationFile {
    /// The Mandant whose receivables the file books.
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._:-]{0,35}$")]
    pub mandant: Mandant,
    /// `camt` (camt.053 or camt.054 XML) or `hkr` (the HKR's postings CSV).
    #[schema(pattern = "^(camt|hkr)$")]
    pub format: String,
    /// The file, as text (UTF-8).
    #[schema(max_length = 50_000_000)]
    pub content: String,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationImport {
    pub lines: usize,
    pub booked: usize,
    pub already_booked: usize,
    pub mismatches: usize,
    /// Lines booked whose amount was not what was owed.
    pub amount_differs: Vec<String>,
    /// Lines no receivable matched: `[position, why]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub unmatched: Vec<(String, String)>,
}

/// Import a bank statement (camt.053/054) or the HKR's postings. A malformed file is
/// refused whole (400 naming its line and element) with nothing booked; the same file
/// again books nothing twice.
#[utoipa::path(post, path = "/reconciliation/imports", tag = "payments",
    security(("bearer" = ["operator"])),
    request_body = ReconciliationFile,
    responses(
        (status = 200, description = "What was booked", body = ReconciliationImport),
        (status = 400, description = "A malformed file; nothing was booked", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ReconciliationImport>, Problem> {
    let req: ReconciliationFile = body::json(raw, "{\"mandant\", \"format\", \"content\"}")?;
    let format = match req.format.as_str() {
        "camt" => Format::Camt,
        "hkr" => Format::Hkr,
        _ => {
            return Err(Problem::bad_request(
                "invalid-body",
                "format is camt or hkr",
            ))
        }
    };
    let meta = Meta::acting_as(&caller, Role::Operator);
    let report = service::import(
        &state,
        &req.mandant,
        format,
        req.content.as_bytes(),
        Utc::now(),
        &meta,
        |done, total| tracing::debug!(done, total, "reconciliation import"),
    )
    .await?;
    Ok(Json(ReconciliationImport {
        lines: report.lines,
        booked: report.booked,
        already_booked: report.already_booked,
        mismatches: report.mismatches,
        amount_differs: report.amount_differs,
        unmatched: report.unmatched,
    }))
}

/// Which worklist.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorklistQuery {
    #[param(pattern = "^[a-z0-9][a-z0-9._:-]{0,35}$")]
    mandant: Option<String>,
}

/// One entry of the worklist.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationMismatch {
    pub receivable_id: String,
    pub mandant: String,
    pub bewirtschafter: String,
    pub kassenzeichen: String,
    /// The statement or HKR entry.
    pub entry: String,
    /// `bank` or `hkr`.
    pub source: String,
    pub kind: String,
    pub expected_cents: i64,
    pub found_cents: i64,
    pub booking_date: String,
    pub detected_at: String,
}

/// The worklist.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationWorklist {
    /// Oldest first, at most 500.
    pub mismatches: Vec<ReconciliationMismatch>,
}

/// The mismatches of reconciliation: for a cashier those of its Bewirtschafter, for an
/// auditor all. Follows the log a moment behind.
#[utoipa::path(get, path = "/reconciliation/mismatches", tag = "payments",
    security(("bearer" = ["cashier", "auditor"])),
    params(WorklistQuery),
    responses(
        (status = 200, description = "The worklist", body = ReconciliationWorklist),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn mismatches(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<WorklistQuery>, QueryRejection>,
) -> Result<Json<ReconciliationWorklist>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    checked(&q.mandant, |m| Mandant::parse(m).is_ok(), "mandant")?;
    read_models_current(&state, &[read::NAME]).await?;
    let rows = read::mismatches(
        &ReadDb::new(&state.store),
        &scope(&caller),
        q.mandant.as_deref(),
    )
    .await?;
    Ok(Json(ReconciliationWorklist {
        mismatches: rows
            .into_iter()
            .map(|m| ReconciliationMismatch {
                receivable_id: m.receivable_id,
                mandant: m.mandant,
                bewirtschafter: m.bewirtschafter,
                kassenzeichen: m.kassenzeichen,
                entry: m.entry,
                source: m.source,
                kind: m.kind,
                expected_cents: m.expected_cents,
                found_cents: m.found_cents,
                booking_date: m.booking_date,
                detected_at: m.detected_at,
            })
            .collect(),
    }))
}

/// Which daily report.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    #[param(value_type = String, format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    #[serde(deserialize_with = "crate::body::strict::date")]
    date: NaiveDate,
    #[param(pattern = "^[a-z0-9][a-z0-9._:-]{0,35}$")]
    mandant: String,
}

/// One Haushaltsstelle's sum.
#[derive(Debug, Serialize, ToSchema)]
pub struct HaushaltsstelleSum {
    pub haushaltsstelle: String,
    pub gross_cents: i64,
    pub receivables: i64,
}

/// The daily report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationDaily {
    pub date: String,
    pub mandant: String,
    pub sums: Vec<HaushaltsstelleSum>,
    /// The sums' total: the gross total of the receivables paid in full that day.
    pub total_cents: i64,
}

/// The gross amounts of the receivables of a Mandant paid in full on a day, summed per
/// Haushaltsstelle from their lines: for a cashier its Bewirtschafter's, for an auditor
/// all. Follows the log a moment behind.
#[utoipa::path(get, path = "/reconciliation/daily", tag = "payments",
    security(("bearer" = ["cashier", "auditor"])),
    params(DailyQuery),
    responses(
        (status = 200, description = "The report", body = ReconciliationDaily),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn daily(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<DailyQuery>, QueryRejection>,
) -> Result<Json<ReconciliationDaily>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let mandant = Mandant::parse(&q.mandant)
        .map_err(|e| Problem::bad_request("invalid-query", e.to_string()))?;
    read_models_current(&state, &[read::NAME]).await?;
    let date = q.date.to_string();
    let rows = read::daily(
        &ReadDb::new(&state.store),
        &scope(&caller),
        mandant.as_str(),
        &date,
    )
    .await?;
    let total_cents = rows.iter().map(|(_, c, _)| c).sum();
    Ok(Json(ReconciliationDaily {
        date,
        mandant: mandant.as_str().to_owned(),
        sums: rows
            .into_iter()
            .map(
                |(haushaltsstelle, gross_cents, receivables)| HaushaltsstelleSum {
                    haushaltsstelle,
                    gross_cents,
                    receivables,
                },
            )
            .collect(),
        total_cents,
    }))
}

/// The transaction a callback names; used by the samples to sign one.
pub fn callback_body(transaction: &TransactionId) -> serde_json::Value {
    serde_json::json!({ "transactionId": transaction.as_str() })
}
