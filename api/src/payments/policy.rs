//! The payment policy of the responsibility directory, as a process manager driven by the
//! log.
//!
//! The directory names, per service and region, when the applicant pays: `none`,
//! `before_submission` (the application cannot be submitted until its fee is paid) or
//! `after_decision` (the fee is charged when the decision is recorded). An application
//! records the policy it was drafted under in its `ApplicationCreated` event, and the fee
//! schedule (`fees`) says what the fee is at the responsible authority. This module
//! follows the log from a checkpoint of its own and acts on the application events it
//! finds there:
//!
//! - `ApplicationCreated` under `before_submission`: request the fee's receivable, so the
//!   applicant can pay it before submitting (unless the application was submitted or
//!   expired already: one drafted before the manager first ran);
//! - `DecisionIssued` of an application under `after_decision`: request it now;
//! - `DraftExpired` of an application under `before_submission`: cancel the receivable if
//!   nothing was paid on it (the cancellation's rules refuse it otherwise, and the money
//!   stays to be refunded by the cash office);
//! - `FeeScheduleSet`: request the fees that waited for this schedule ([`request_due`]).
//!
//! **A missing fee schedule is visible and made up for.** Without a schedule for the
//! service at the authority no fee can be requested: the manager logs a warning, and the
//! read model `payments_fees_due` keeps the application as waiting, which `/metrics`
//! counts per service and authority (`amtsbuch_payment_fees_waiting`). Setting the
//! schedule (`PUT /fee-schedules/…`) requests the waiting fees, and so does the manager
//! when it reaches the `FeeScheduleSet` in the log — each fee once, by derivation (below).
//!
//! It reads the application events by their published form (event type and the members of
//! `data` it needs), never through the other module's code, and writes only the payments
//! module's own streams.
//!
//! **The schedule in force at the event.** The fee is the schedule as it stood when the
//! event that requests it was recorded (its `FeeScheduleSet` events up to the event's
//! position in the log, which is commit-ordered), due the schedule's days after that
//! event's instant: a manager running behind charges what a prompt one would. Only a
//! submission under `before_submission` whose draft had no schedule takes the one set since
//! (due from then on).
//!
//! **Exactly one receivable per application.** The receivable's id is derived from the
//! application's ([`ReceivableId::for_application`]), its Kassenzeichen is assigned from
//! the receivable's id (`Kassenzeichen::assign`), and both the claim of the Kassenzeichen
//! and the receivable's first event are appended expecting their streams to be new (the
//! claim by the same receivable again records nothing). A rerun after a crash between the
//! claim and the request, or after the request but before the checkpoint moved, finds what
//! it did and completes it; a second node running the manager at the same moment loses the
//! append of the first event and finds the receivable there. The checkpoint moves only
//! forward, after the events up to it were handled.
//!
//! **The payer** is the applicant: the receivable names their pseudonymous subject id (the
//! Servicekonto account the citizen acts as), so the applicant's token reaches it and their
//! erasure is held by it. The payer's name, which a receivable records sealed, is taken from
//! the applicant's Servicekonto master data (the latest `AccountOpened` or
//! `MasterDataChanged` of the account's stream, opened with the applicant's key) and sealed
//! again under the same key; it is never logged. An applicant without a readable
//! Servicekonto name (an account on another server, an erased one) is recorded as
//! [`UNNAMED_PAYER`], which names nobody.
//!
//! **Submission waits for payment.** The module answers the registry's obligations
//! ([`OBLIGATIONS`]) for an application stream: under `before_submission` the fee's
//! receivable, settled once it is paid in full (`Receivable::is_paid`: `paid`, `settled` or
//! `overpaid`, from verified statuses only) or cancelled by the cash office (waived; a
//! refunded fee is owed again and takes another payment). The answer only reads: a
//! submission refused (for its fee or for anything else) records nothing. If a schedule is
//! set but the manager has not requested the fee yet, the answer waits a moment for the
//! manager to reach the log's head, so a submission is not refused for the manager's lag
//! alone; without a fee schedule the obligation names the missing schedule.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use uuid::Uuid;

use amtsbuch_domain::event::{Personal, SubjectId};
use amtsbuch_domain::newtype::{id_of_stream, stream_of};
use amtsbuch_domain::payments::fees::{
    self, schedule_stream, FeeScheduleSet, FeeScheduleState, FEE_SCHEDULE_CATEGORY,
};
use amtsbuch_domain::payments::receivable::{ReceivableState, RequestReceivable};
use amtsbuch_domain::payments::{Kassenzeichen, PayerName, ReceivableId, Reference};
use amtsbuch_domain::stream::{AuthorityId, ServiceKey};
use amtsbuch_domain::StreamId;
use amtsbuch_infra::lease::Lease;
use amtsbuch_infra::{Direction, EventStore, RecordedEvent};
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::payments::fees_due;

use super::service;
use crate::command::{current, sealer_problem, Meta};
use crate::module::{Obligation, ObligationPart};
use crate::problem::Problem;
use crate::AppState;

/// The stream category of the aggregates a payment policy applies to.
const APPLICATION: &str = "application";
/// The stream category of the Servicekonto accounts, whose master data names a payer.
const ACCOUNT: &str = "account";

const CREATED: &str = "ApplicationCreated";
const SUBMITTED: &str = "ApplicationSubmitted";
const DECIDED: &str = "DecisionIssued";
const EXPIRED: &str = "DraftExpired";

/// The payer's name when the applicant's Servicekonto names nobody this server can read.
pub const UNNAMED_PAYER: &str = "Antragsteller (ohne Servicekonto-Namen)";

/// The manager's lease and checkpoint name.
pub const NAME: &str = "amtsbuch_payments_policy";

/// How many events one step of the manager reads.
const PAGE: usize = 256;

/// The actor of what the manager records.
fn meta() -> Meta {
    Meta::system("payment-policy")
}

/// When a fee is due, as the directory says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    None,
    BeforeSubmission,
    AfterDecision,
}

/// What the manager needs of an application: its `ApplicationCreated`, read by its
/// published form.
#[derive(Debug, Clone, Deserialize)]
pub struct Drafted {
    pub application_id: Uuid,
    pub applicant: Uuid,
    pub responsible: Responsible,
    #[serde(with = "amtsbuch_domain::record::timestamp")]
    pub created_at: DateTime<Utc>,
}

/// The responsibility an application was drafted under.
#[derive(Debug, Clone, Deserialize)]
pub struct Responsible {
    pub authority: AuthorityId,
    pub leika: ServiceKey,
    pub payment: Policy,
}

#[derive(Debug, Deserialize)]
struct Decided {
    #[serde(with = "amtsbuch_domain::record::timestamp")]
    decided_at: DateTime<Utc>,
}

fn corrupt(e: impl std::fmt::Display) -> Problem {
    Problem::internal(&format!("payment policy: {e}"))
}

/// The application's `ApplicationCreated`, if the stream has one.
pub(super) async fn drafted(
    state: &AppState,
    application: Uuid,
) -> Result<Option<Drafted>, Problem> {
    let stream = stream_of(APPLICATION, application);
    let first = state
        .store
        .read_stream(&stream, 1, Direction::Forwards, 1)
        .await?;
    let Some(first) = first.first() else {
        return Ok(None);
    };
    let record = first.record().map_err(corrupt)?;
    if record.event_type.as_str() != CREATED {
        return Ok(None);
    }
    serde_json::from_value(record.data)
        .map(Some)
        .map_err(corrupt)
}

/// Requests the fees due and not requested for `service` at
/// `authority` (the read model `payments_fees_due`, brought up to the log's head first):
/// what a fee schedule just set makes possible. How many it requested. Safe to repeat and
/// to run on several nodes at once, like every request of the manager.
///
/// `as_of` is the position of the `FeeScheduleSet` that made them possible (`None`: the
/// schedule now), and `set_at` its instant: a fee that waited for the schedule is due the
/// schedule's days after the later of its own event and `set_at`, so it is never overdue
/// when it is requested.
pub async fn request_due(
    state: &AppState,
    service: &ServiceKey,
    authority: &AuthorityId,
    as_of: Option<u64>,
    set_at: DateTime<Utc>,
) -> Result<usize, Problem> {
    crate::command::read_models_current(state, &[fees_due::NAME]).await?;
    let db = ReadDb::new(&state.store);
    let mut requested = 0;
    loop {
        let due = fees_due::due(&db, service.as_str(), authority.as_str(), 100)
            .await
            .map_err(|e| Problem::internal(&e))?;
        let mut progressed = false;
        for fee in &due {
            let policy = match fee.policy.as_str() {
                "before_submission" => Policy::BeforeSubmission,
                "after_decision" => Policy::AfterDecision,
                _ => continue,
            };
            if policy == Policy::BeforeSubmission
                && past_the_draft(state, fee.application_id).await?
            {
                continue;
            }
            let app = Drafted {
                application_id: fee.application_id,
                applicant: fee.applicant,
                responsible: Responsible {
                    authority: authority.clone(),
                    leika: service.clone(),
                    payment: policy,
                },
                created_at: fee.created_at,
            };
            let existed = current::<ReceivableState>(
                state,
                &ReceivableId::for_application(fee.application_id).stream_id(),
            )
            .await?
            .0
            .receivable()
            .is_some();
            if existed {
                // Requested before; the read model has not seen it yet.
                continue;
            }
            // The schedule in force at the fee's own event, as the manager would have
            // requested it had it been there in time; else the schedule that made the fee
            // possible, due from when it was set at the earliest.
            let at_the_event = ensure(state, &app, Some(fee.position), fee.due_from).await?;
            if at_the_event.is_none()
                && ensure(state, &app, as_of, fee.due_from.max(set_at))
                    .await?
                    .is_none()
            {
                // The schedule is gone again: nothing to request with.
                return Ok(requested);
            }
            requested += 1;
            progressed = true;
        }
        // A full page whose fees were all requested before (the read model has not seen
        // the requests yet) or passed over: the read model catches up with them first.
        if due.len() < 100 || !progressed {
            return Ok(requested);
        }
        crate::command::read_models_current(state, &[fees_due::NAME]).await?;
    }
}

/// Whether the application was submitted or expired already (so no fee is due before its
/// submission any more): an application drafted before its service had a fee, met by a
/// manager that reads the log from its beginning.
async fn past_the_draft(state: &AppState, application: Uuid) -> Result<bool, Problem> {
    let stream = stream_of(APPLICATION, application);
    let mut from = 1;
    loop {
        let page = state
            .store
            .read_stream(
                &stream,
                from,
                Direction::Forwards,
                amtsbuch_infra::store::MAX_PAGE,
            )
            .await?;
        for e in &page {
            let record = e.record().map_err(corrupt)?;
            if matches!(record.event_type.as_str(), SUBMITTED | EXPIRED) {
                return Ok(true);
            }
        }
        if page.len() < amtsbuch_infra::store::MAX_PAGE {
            return Ok(false);
        }
        from += page.len() as u64;
    }
}

/// The payer's name from the applicant's Servicekonto master data, else [`UNNAMED_PAYER`].
async fn payer_name(state: &AppState, applicant: Uuid) -> Result<PayerName, Problem> {
    let unnamed = || PayerName::parse(UNNAMED_PAYER).map_err(corrupt);
    let Some(sealer) = state.sealer.as_ref() else {
        return unnamed();
    };
    let stream = stream_of(ACCOUNT, applicant);
    let events = state
        .store
        .read_stream(
            &stream,
            1,
            Direction::Forwards,
            amtsbuch_infra::store::MAX_PAGE,
        )
        .await?;
    let mut name = None;
    for e in &events {
        let record = e.record().map_err(corrupt)?;
        if !matches!(
            record.event_type.as_str(),
            "AccountOpened" | "MasterDataChanged"
        ) {
            continue;
        }
        match sealer.open_section(&record).await.map_err(sealer_problem)? {
            Some(Personal::Available(part)) => {
                let data = &part["master_data"];
                let text = |k: &str| data[k].as_str().map(str::to_owned);
                name = match data["type"].as_str() {
                    Some("person") => text("given_names")
                        .zip(text("family_name"))
                        .map(|(g, f)| format!("{g} {f}")),
                    Some("organisation") => text("name"),
                    _ => None,
                };
            }
            Some(Personal::Erased) => name = None,
            None => {}
        }
    }
    match name.and_then(|n| PayerName::parse(&n).ok()) {
        Some(n) => Ok(n),
        None => unnamed(),
    }
}

/// The fee schedule of `app`'s service at its authority as it stood at `position` of the
/// log (each `FeeScheduleSet` up to it: positions are commit-ordered, so this is what was
/// in force when the event at `position` was recorded, however late it is read), or as it
/// stands now (`None`).
async fn schedule_at(
    state: &AppState,
    app: &Drafted,
    position: Option<u64>,
) -> Result<FeeScheduleState, Problem> {
    let stream = schedule_stream(&app.responsible.leika, &app.responsible.authority);
    let Some(position) = position else {
        return Ok(current::<FeeScheduleState>(state, &stream).await?.0);
    };
    let mut folded = FeeScheduleState::default();
    let mut from = 1;
    loop {
        let page = state
            .store
            .read_stream(
                &stream,
                from,
                Direction::Forwards,
                amtsbuch_infra::store::MAX_PAGE,
            )
            .await?;
        for e in &page {
            if e.position > position {
                return Ok(folded);
            }
            let record = e.record().map_err(corrupt)?;
            let set: FeeScheduleSet =
                amtsbuch_domain::event::decode(&record, None).map_err(corrupt)?;
            folded = fees::evolve(folded, &set);
        }
        if page.len() < amtsbuch_infra::store::MAX_PAGE {
            return Ok(folded);
        }
        from += page.len() as u64;
    }
}

/// Makes sure the fee's receivable of `app` exists: the receivable, or `None` when no fee
/// schedule was in force for the service at the authority at `as_of` (a position of the
/// log: the event the fee follows; `None`: now). The fee is due the schedule's days after
/// `at`, the instant of that event. Safe to repeat and to run on several nodes at once.
pub async fn ensure(
    state: &AppState,
    app: &Drafted,
    as_of: Option<u64>,
    at: DateTime<Utc>,
) -> Result<Option<ReceivableState>, Problem> {
    let id = ReceivableId::for_application(app.application_id);
    let (existing, _) = current::<ReceivableState>(state, &id.stream_id()).await?;
    if existing.receivable().is_some() {
        return Ok(Some(existing));
    }
    let Some(fee) = schedule_at(state, app, as_of).await?.0 else {
        return Ok(None);
    };
    crate::command::sealer(state)?;
    let due_date = (at + chrono::Duration::days(i64::from(fee.due_days))).date_naive();
    let command = RequestReceivable {
        receivable_id: id,
        mandant: fee.mandant,
        bewirtschafter: fee.bewirtschafter,
        kassenzeichen: Kassenzeichen::assign(id, 0),
        assigned: true,
        gross_cents: fee.gross_cents,
        due_date,
        lines: fee.lines,
        application_id: Some(app.application_id),
        payer: SubjectId(app.applicant),
        payer_name: payer_name(state, app.applicant).await?,
        requested_at: amtsbuch_domain::record::truncate_micros(Utc::now()),
    };
    match service::request(state, command, None, &meta()).await {
        Ok(done) => Ok(Some(done)),
        Err(problem) => {
            // Another node (or a concurrent answer to the obligations) requested it first:
            // its receivable is the one.
            let (now, _) = current::<ReceivableState>(state, &id.stream_id()).await?;
            if now.receivable().is_some() {
                Ok(Some(now))
            } else {
                Err(problem)
            }
        }
    }
}

/// Cancels the fee's receivable of an expired draft if nothing was paid on it.
async fn cancel_unpaid(
    state: &AppState,
    application: Uuid,
    at: DateTime<Utc>,
) -> Result<(), Problem> {
    let id = ReceivableId::for_application(application);
    let (existing, _) = current::<ReceivableState>(state, &id.stream_id()).await?;
    let Some(r) = existing.receivable() else {
        return Ok(());
    };
    if r.cancelled || !r.paid.is_zero() {
        return Ok(());
    }
    let reason = Reference::parse("Antragsentwurf abgelaufen").map_err(corrupt)?;
    match service::cancel(state, id, reason, at, &meta()).await {
        Ok(_) => Ok(()),
        // Paid or cancelled meanwhile: nothing to do.
        Err(p) if p.status.is_client_error() => Ok(()),
        Err(p) => Err(p),
    }
}

/// Handles one event of the log: acts on the application events a policy depends on, and
/// ignores every other event.
pub async fn handle(state: &AppState, event: &RecordedEvent) -> Result<(), Problem> {
    // Most events are of other streams: the canonical bytes name the stream as
    // `"stream_id":"<id>"`, so those are passed over without parsing them.
    if contains(&event.bytes, SCHEDULE_PREFIX) {
        let record = event.record().map_err(corrupt)?;
        if record.stream_id.category() != FEE_SCHEDULE_CATEGORY {
            return Ok(());
        }
        let set: FeeScheduleSet = amtsbuch_domain::event::decode(&record, None).map_err(corrupt)?;
        let requested = request_due(
            state,
            &set.service,
            &set.authority,
            Some(event.position),
            set.set_at,
        )
        .await?;
        if requested > 0 {
            tracing::info!(service = %set.service, authority = %set.authority, requested,
                "a fee schedule was set: the fees waiting for it are requested");
        }
        return Ok(());
    }
    if !contains(&event.bytes, STREAM_PREFIX) {
        return Ok(());
    }
    let record = event.record().map_err(corrupt)?;
    let Some(application) = id_of_stream(APPLICATION, &record.stream_id) else {
        return Ok(());
    };
    match record.event_type.as_str() {
        CREATED => {
            let app: Drafted = serde_json::from_value(record.data).map_err(corrupt)?;
            if app.responsible.payment == Policy::BeforeSubmission
                && !past_the_draft(state, application).await?
                && ensure(state, &app, Some(event.position), app.created_at)
                    .await?
                    .is_none()
            {
                tracing::warn!(application = %application, service = %app.responsible.leika, authority = %app.responsible.authority,
                    "no fee schedule for the service at the authority; the fee is requested once one is set (amtsbuch_payment_fees_waiting on /metrics counts what waits)");
            }
        }
        DECIDED => {
            let decided: Decided = serde_json::from_value(record.data).map_err(corrupt)?;
            let Some(app) = drafted(state, application).await? else {
                return Ok(());
            };
            if app.responsible.payment == Policy::AfterDecision
                && ensure(state, &app, Some(event.position), decided.decided_at)
                    .await?
                    .is_none()
            {
                tracing::warn!(application = %application, service = %app.responsible.leika, authority = %app.responsible.authority,
                    "no fee schedule for the service at the authority; the fee is requested once one is set (amtsbuch_payment_fees_waiting on /metrics counts what waits)");
            }
        }
        EXPIRED => {
            let Some(app) = drafted(state, application).await? else {
                return Ok(());
            };
            if app.responsible.payment == Policy::BeforeSubmission {
                cancel_unpaid(state, application, record.occurred_at).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// How the canonical record of an event of an application stream names its stream.
const STREAM_PREFIX: &[u8] = b"\"stream_id\":\"application-";
/// How the canonical record of an event of a fee schedule's stream names its stream.
const SCHEDULE_PREFIX: &[u8] = b"\"stream_id\":\"fee_schedule-";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where the manager stands in the log: the last position it handled (0 before the first).
pub async fn checkpoint(state: &AppState) -> Result<u64, Problem> {
    ReadDb::new(&state.store)
        .fetch_optional(
            "SELECT position FROM payments_policy_checkpoints WHERE name = $1",
            &[NAME.into()],
        )
        .await
        .map_err(|e| Problem::internal(&e))?
        .map(|row| row.get_u64("position"))
        .transpose()
        .map_err(|e| Problem::internal(&e))
        .map(Option::unwrap_or_default)
}

/// Moves the checkpoint forward to `position` (never back).
pub async fn advance(state: &AppState, position: u64) -> Result<(), Problem> {
    ReadDb::new(&state.store)
        .execute(
            "INSERT INTO payments_policy_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position \
             WHERE payments_policy_checkpoints.position < EXCLUDED.position",
            &[NAME.into(), position.into()],
        )
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(())
}

/// One step of the manager: handles the events after its checkpoint (a page at most),
/// then moves the checkpoint past them; how many events it read. An event it cannot
/// handle stops the step before it, so the next step tries it again.
pub async fn step(state: &AppState) -> Result<usize, Problem> {
    step_to(state).await.map(|(read, _)| read)
}

/// `step`, with the position the manager stands at afterwards.
async fn step_to(state: &AppState) -> Result<(usize, u64), Problem> {
    let from = checkpoint(state).await?;
    let page = state.store.read_all(from, PAGE).await?;
    for event in &page {
        handle(state, event).await?;
    }
    match page.last() {
        Some(last) => {
            advance(state, last.position).await?;
            Ok((page.len(), last.position))
        }
        None => Ok((0, from)),
    }
}

/// Fees due and not requested, per service and authority, as the manager last read them.
type Waiting = Arc<Mutex<Option<Vec<(String, String, i64)>>>>;

/// How often the manager reads the fees waiting (when it has caught up), and reports its
/// progress while it follows a long log.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Runs the manager in this process while it holds the lease: follows the log from its
/// checkpoint (a restart resumes there, so the whole log is read once, on the first
/// start, with its progress logged every few seconds), waking when the head moves (or
/// every `idle`). While it runs here, `/metrics` shows how far it lags behind the head
/// (`amtsbuch_payment_policy_lag_events`) and the fees due but not requested, per service
/// and authority (`amtsbuch_payment_fees_waiting`: those wait for a fee schedule); every
/// failed step is counted (`amtsbuch_payment_policy_failures_total`) and retried, so a lag
/// that grows while failures are counted means an event it cannot handle (the warning
/// names why).
pub fn spawn(state: AppState, idle: Duration) -> tokio::task::JoinHandle<()> {
    // The position handled, while this process holds the lease.
    let handled = Arc::new(Mutex::new(None::<u64>));
    let waiting: Waiting = Arc::default();
    {
        let (handled, head) = (handled.clone(), state.store.head_watch());
        state.metrics.gauge_fn(
            "amtsbuch_payment_policy_lag_events",
            "Events of the log the payment policy has not handled yet (while this process runs it).",
            move || {
                let at = *handled.lock().unwrap_or_else(|e| e.into_inner());
                at.map(|at| vec![(vec![], head.borrow().saturating_sub(at) as f64)])
                    .unwrap_or_default()
            },
        );
        let waiting = waiting.clone();
        state.metrics.gauge_fn(
            "amtsbuch_payment_fees_waiting",
            "Applications whose fee is due under their payment policy but not requested, per service and authority: they wait for a fee schedule (while this process runs the payment policy).",
            move || {
                waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .flatten()
                    .map(|(service, authority, n)| {
                        (
                            vec![("service", service.clone()), ("authority", authority.clone())],
                            *n as f64,
                        )
                    })
                    .collect()
            },
        );
    }
    let set = move |at: Option<u64>| *handled.lock().unwrap_or_else(|e| e.into_inner()) = at;
    tokio::spawn(async move {
        let mut head = state.store.head_watch();
        loop {
            let lease = match Lease::acquire(&state.store, NAME, idle).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "the payment policy cannot take its lease; retrying");
                    tokio::time::sleep(idle).await;
                    continue;
                }
            };
            let from = checkpoint(&state).await.unwrap_or_default();
            tracing::info!(
                from,
                head = *head.borrow(),
                "this process runs the payment policy, from its checkpoint"
            );
            let mut reported = tokio::time::Instant::now();
            let mut counted: Option<tokio::time::Instant> = None;
            while lease.is_held() {
                head.borrow_and_update();
                match step_to(&state).await {
                    Ok((0, at)) => {
                        set(Some(at));
                        if counted.is_none_or(|t| t.elapsed() >= REPORT_EVERY.min(idle * 2)) {
                            counted = Some(tokio::time::Instant::now());
                            match fees_due::waiting(&ReadDb::new(&state.store)).await {
                                Ok(w) => {
                                    *waiting.lock().unwrap_or_else(|e| e.into_inner()) = Some(w)
                                }
                                Err(e) => {
                                    tracing::debug!(error = %e, "the fees waiting cannot be read")
                                }
                            }
                        }
                        tokio::select! {
                            _ = head.changed() => {}
                            () = tokio::time::sleep(idle) => {}
                            _ = lease.lost() => {}
                        }
                    }
                    Ok((_, at)) => {
                        set(Some(at));
                        if reported.elapsed() >= REPORT_EVERY {
                            reported = tokio::time::Instant::now();
                            tracing::info!(
                                at,
                                head = *head.borrow(),
                                "the payment policy follows the log"
                            );
                        }
                    }
                    Err(e) => {
                        state.metrics.count(
                            "amtsbuch_payment_policy_failures_total",
                            "Steps of the payment policy that failed (each is retried).",
                            &[],
                            1,
                        );
                        tracing::warn!(status = e.status.as_u16(), detail = %e.detail, "the payment policy failed a step; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(idle) => {}
                            _ = lease.lost() => {}
                        }
                    }
                }
            }
            set(None);
            *waiting.lock().unwrap_or_else(|e| e.into_inner()) = None;
            tracing::warn!("the payment policy lost its lease; standing by");
        }
    })
}

/// How long an answer to the obligations waits for the manager to reach the log's head.
const MANAGER_PATIENCE: Duration = Duration::from_secs(5);

/// Waits until the manager has handled the log up to its head as of now: whether it did
/// within [`MANAGER_PATIENCE`] (it does not when no process runs it).
async fn manager_passed(state: &AppState) -> Result<bool, Problem> {
    let head = state.store.head().await?.position;
    let deadline = tokio::time::Instant::now() + MANAGER_PATIENCE;
    loop {
        if checkpoint(state).await? >= head {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The module's obligations against an application: under `before_submission` its fee.
pub const OBLIGATIONS: ObligationPart = ObligationPart { list: obligations };

fn obligations<'a>(
    state: &'a AppState,
    stream: &'a StreamId,
) -> BoxFuture<'a, Result<Vec<Obligation>, Problem>> {
    Box::pin(async move {
        let Some(application) = id_of_stream(APPLICATION, stream) else {
            return Ok(vec![]);
        };
        let Some(app) = drafted(state, application).await? else {
            return Ok(vec![]);
        };
        if app.responsible.payment != Policy::BeforeSubmission {
            return Ok(vec![]);
        }
        // Only reads: asking whether the fee is paid records nothing (a submission refused
        // for another reason must leave no trace). The manager requests the fee.
        let id = ReceivableId::for_application(application);
        let schedule = schedule_stream(&app.responsible.leika, &app.responsible.authority);
        let mut fee = current::<ReceivableState>(state, &id.stream_id()).await?.0;
        if fee.receivable().is_none()
            && current::<FeeScheduleState>(state, &schedule)
                .await?
                .0
                 .0
                .is_some()
        {
            // A schedule is set but the manager has not requested the fee yet: it is on its
            // way (or the manager is not running). Wait for the manager a moment, so that a
            // submission is not refused for its lag alone.
            if manager_passed(state).await? {
                fee = current::<ReceivableState>(state, &id.stream_id()).await?.0;
            }
        }
        let obligation = match fee.receivable() {
            Some(r) => {
                // Paid in full, or waived: the cash office cancels a fee only while nothing
                // was paid on it, and a cancelled receivable takes no payment, so it holds
                // nothing against the submission any more. A refunded fee is owed again
                // (the money went back to the applicant) and takes another payment.
                let settled = r.is_paid() || r.cancelled;
                Obligation {
                    module: "",
                    reference: r.id.stream_id().to_string(),
                    settled,
                    detail: if r.is_paid() {
                        format!("the fee of {} cents is paid", r.gross.get())
                    } else if r.cancelled {
                        format!(
                            "the fee of {} cents (Kassenzeichen {}) was cancelled by the cash office: it is waived",
                            r.gross.get(),
                            r.kassenzeichen
                        )
                    } else {
                        format!(
                            "the fee of {} cents (Kassenzeichen {}) is {}, {} cents owed; pay it through POST /receivables/{}/checkout",
                            r.gross.get(),
                            r.kassenzeichen,
                            r.status().as_str(),
                            r.balance().get(),
                            r.id
                        )
                    },
                }
            }
            None if current::<FeeScheduleState>(state, &schedule).await?.0 .0.is_some() => {
                Obligation {
                    module: "",
                    reference: id.stream_id().to_string(),
                    settled: false,
                    detail: "the fee is being requested by the payment policy, which has not reached this application yet; ask again in a moment".into(),
                }
            }
            None => Obligation {
                module: "",
                reference: schedule.to_string(),
                settled: false,
                detail: format!(
                    "the fee cannot be requested yet: no fee schedule is set for service {} at authority {}",
                    app.responsible.leika, app.responsible.authority
                ),
            },
        };
        Ok(vec![obligation])
    })
}
