//! The payment flows over the log: request a receivable (claiming its Kassenzeichen),
//! check out through the provider, believe a status only from a pull, take push callbacks
//! and return redirects as mere triggers of a pull, import bank statements and HKR
//! postings, refund under four eyes, cancel.
//!
//! Every change runs through the core's command path (`crate::command::execute`) on the
//! receivable's stream, so two requests racing on one receivable are decided one after
//! the other. The HTTP routes are thin over these functions; bad input and refused rules
//! come back as problems and record nothing.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt};
use serde::Serialize;
use uuid::Uuid;

use amtsbuch_domain::payments::camt;
use amtsbuch_domain::payments::claim::{claim_stream, Claim, ClaimError, ClaimState};
use amtsbuch_domain::payments::hkr;
use amtsbuch_domain::payments::receivable::{
    self, ApproveRefund, Booking, PulledStatus, ReceivableCommand, ReceivableError,
    ReceivableEvent, ReceivableState, RequestReceivable, RequestRefund, StartAttempt,
};
use amtsbuch_domain::payments::reconcile::{match_line, Decision, StatementLine, Target};
use amtsbuch_domain::payments::{
    Actor, Kassenzeichen, Mandant, ReceivableId, Reference, RefundId, TransactionId,
};

use super::provider::{Item, PaymentRequest, Provider, ProviderError};
use crate::command::{
    append, current, execute, refused, request_for, Executed, Meta, StoreOrProblem,
};
use crate::problem::Problem;
use crate::AppState;
use amtsbuch_domain::payments::receivable::Receivable;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::payments as read;

/// How many assigned Kassenzeichen are tried before giving up (each try is another
/// number; a collision in the Mandant is rare).
const ASSIGN_TRIES: u32 = 8;

/// A refused receivable command as a problem: `409` for the state, `400` for bad input.
pub fn rejected(e: ReceivableError) -> Problem {
    use ReceivableError as E;
    match e {
        E::LineCount
        | E::LineParts { .. }
        | E::LinesDoNotSum { .. }
        | E::ZeroAmount
        | E::ZeroBooking
        | E::Overflow => Problem::bad_request("invalid-receivable", e.to_string()),
        E::NotRequested => Problem::not_found(e.to_string()),
        E::RefundTooLarge { .. } => refused("refund-too-large", e),
        E::FourEyes => refused("four-eyes", e),
        E::PaymentsRecorded => refused("payments-recorded", e),
        E::TerminalStatus { .. } | E::AttemptAmountDiffers { .. } => {
            tracing::warn!(error = %e, "a provider's status contradicts what was verified");
            refused("status-contradiction", e)
        }
        _ => refused("receivable-state", e),
    }
}

fn provider_problem(e: ProviderError) -> Problem {
    match e {
        ProviderError::Unavailable(_) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "provider-unavailable",
            "The payment provider is unavailable",
            e.to_string(),
        ),
        ProviderError::Refused { .. } | ProviderError::Malformed(_) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "provider-error",
            "The payment provider's answer cannot be used",
            e.to_string(),
        ),
        ProviderError::Config(_) => Problem::internal(&e),
    }
}

/// The receivable's current state, or `404`.
pub async fn receivable(
    state: &AppState,
    id: ReceivableId,
) -> Result<(ReceivableState, u64), Problem> {
    let (current, version) = current::<ReceivableState>(state, &id.stream_id()).await?;
    if current.receivable().is_none() {
        return Err(Problem::not_found("no such receivable"));
    }
    Ok((current, version))
}

/// Claims `kassenzeichen` in `mandant` for `id`: `Ok(false)` when another receivable holds it.
async fn claim(
    state: &AppState,
    mandant: &Mandant,
    kassenzeichen: &Kassenzeichen,
    id: ReceivableId,
    now: DateTime<Utc>,
    meta: &Meta,
) -> Result<bool, Problem> {
    let command = Claim {
        mandant: mandant.clone(),
        kassenzeichen: kassenzeichen.clone(),
        receivable_id: id,
        claimed_at: now,
    };
    match execute::<ClaimState>(
        state,
        &claim_stream(mandant, kassenzeichen),
        &command,
        |ClaimError::Taken| refused("kassenzeichen-taken", ClaimError::Taken),
        meta,
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(p) if p.kind == "kassenzeichen-taken" => Ok(false),
        Err(p) => Err(p),
    }
}

/// Requests a receivable. `supplied` is the caller's Kassenzeichen; without one Amtsbuch
/// assigns one with a check digit. The request is checked in full before anything is
/// claimed; the same request again (the same id) answers the receivable as it is.
pub async fn request(
    state: &AppState,
    mut command: RequestReceivable,
    supplied: Option<Kassenzeichen>,
    meta: &Meta,
) -> Result<ReceivableState, Problem> {
    use amtsbuch_infra::EventStore as _;
    let stream = command.receivable_id.stream_id();
    let (existing, _) = current::<ReceivableState>(state, &stream).await?;
    if let Some(r) = existing.receivable() {
        // The same key again answers the receivable only for the same request: everything
        // recorded of it, as its `ReceivableRequested` records it — whether a Kassenzeichen
        // was supplied, and which; the payer's name, opened (an erased one matches none).
        let requested = match state
            .store
            .read_stream(&stream, 1, amtsbuch_infra::Direction::Forwards, 1)
            .await?
            .first()
        {
            Some(first) => match crate::command::open::<ReceivableEvent>(state, first)
                .await?
                .event
            {
                ReceivableEvent::Requested(requested) => requested,
                _ => return Err(Problem::internal(&"a receivable that was never requested")),
            },
            None => return Err(Problem::internal(&"a receivable without events")),
        };
        let same = match &supplied {
            Some(k) => !requested.kassenzeichen_assigned && *k == r.kassenzeichen,
            None => requested.kassenzeichen_assigned,
        } && requested.payer_name
            == amtsbuch_domain::event::Personal::Available(command.payer_name.clone())
            && r.mandant == command.mandant
            && r.bewirtschafter == command.bewirtschafter
            && r.gross == command.gross_cents
            && r.due_date == command.due_date
            && r.lines == command.lines
            && r.application_id == command.application_id
            && r.payer == command.payer;
        if same {
            return Ok(existing);
        }
        return Err(refused(
            "idempotency-key-reused",
            "the Idempotency-Key named another request before; send a new key for a new request",
        ));
    }
    // Every rule of the request, and that the payer's name can be sealed, before a
    // Kassenzeichen is claimed for it.
    receivable::decide(&ReceivableCommand::Request(command.clone()), &existing)
        .map_err(rejected)?;
    crate::command::sealer(state)?;
    let now = command.requested_at;
    match supplied {
        Some(kz) => {
            if !claim(
                state,
                &command.mandant,
                &kz,
                command.receivable_id,
                now,
                meta,
            )
            .await?
            {
                return Err(refused(
                    "kassenzeichen-taken",
                    "the Kassenzeichen is already used by another receivable of the Mandant",
                ));
            }
            command.kassenzeichen = kz;
            command.assigned = false;
        }
        None => {
            let mut assigned = None;
            for attempt in 0..ASSIGN_TRIES {
                let kz = Kassenzeichen::assign(command.receivable_id, attempt);
                if claim(
                    state,
                    &command.mandant,
                    &kz,
                    command.receivable_id,
                    now,
                    meta,
                )
                .await?
                {
                    assigned = Some(kz);
                    break;
                }
            }
            command.kassenzeichen = assigned.ok_or_else(|| {
                Problem::internal(&"no free Kassenzeichen found for the receivable")
            })?;
            command.assigned = true;
        }
    }
    let done = execute::<ReceivableState>(
        state,
        &stream,
        &ReceivableCommand::Request(command),
        rejected,
        meta,
    )
    .await?;
    Ok(done.state)
}

/// What a checkout answers: where to send the payer.
#[derive(Debug, Clone, Serialize)]
pub struct Checkout {
    pub transaction_id: String,
    pub redirect_url: String,
    /// Whether this is the receivable's attempt still open (else a new one).
    pub reused: bool,
}

/// The attempt about to start, decided on `current` before the provider is asked (the
/// transaction id is not known yet, so a placeholder stands for it).
fn may_start(
    current: &ReceivableState,
    amount: amtsbuch_domain::payments::Cents,
) -> Result<(), Problem> {
    let placeholder = TransactionId::parse("0").map_err(|e| Problem::internal(&e))?;
    let provider = Reference::parse("provider").map_err(|e| Problem::internal(&e))?;
    receivable::decide(
        &ReceivableCommand::StartAttempt(StartAttempt {
            transaction_id: placeholder,
            request_id: Uuid::nil(),
            provider,
            amount,
            started_at: Utc::now(),
        }),
        current,
    )
    .map(|_| ())
    .map_err(rejected)
}

/// Starts a payment attempt at the provider for what is still owed. A receivable has at
/// most one attempt open: while the provider says the last one is not final, a checkout
/// answers that one again; the attempt is decided before the provider is asked.
pub async fn checkout(
    state: &AppState,
    provider: &Provider,
    id: ReceivableId,
    redirect_url: String,
    notify_base: &str,
    now: DateTime<Utc>,
    meta: &Meta,
) -> Result<Checkout, Problem> {
    let (mut current, _) = receivable(state, id).await?;
    let open = current.receivable().and_then(|r| {
        r.attempts
            .iter()
            .find(|(_, a)| !a.status.is_terminal())
            .map(|(tx, a)| (tx.clone(), a.amount))
    });
    if let Some((tx, amount)) = open {
        // What the provider says of it now decides whether it is still open.
        let info = provider.status(&tx).await.map_err(provider_problem)?;
        let done = book(
            state,
            id,
            &ReceivableCommand::ApplyPull(PulledStatus {
                transaction_id: tx.clone(),
                status: info.status,
                method: info.method,
                reference: info.reference,
                amount: info.gross,
                pulled_at: Utc::now(),
            }),
            meta,
        )
        .await?;
        current = done.state;
        let r = current
            .receivable()
            .ok_or_else(|| Problem::not_found("no such receivable"))?;
        if r.attempts.get(&tx).is_some_and(|a| !a.status.is_terminal()) {
            if r.cancelled || amount != r.balance() {
                return Err(rejected(ReceivableError::AttemptOpen));
            }
            return Ok(Checkout {
                transaction_id: tx.to_string(),
                redirect_url: info.transaction_url,
                reused: true,
            });
        }
    }
    let r = current
        .receivable()
        .ok_or_else(|| Problem::not_found("no such receivable"))?;
    if r.cancelled {
        return Err(rejected(ReceivableError::Cancelled));
    }
    let balance = r.balance();
    if balance.is_zero() {
        return Err(rejected(ReceivableError::NothingOwed));
    }
    may_start(&current, balance)?;
    // One item for what is owed when it is all of it: each line; otherwise one item.
    let items = if balance == r.gross {
        r.lines
            .iter()
            .enumerate()
            .map(|(i, l)| Item {
                id: (i + 1).to_string(),
                description: Some(l.buchungstext.as_str().to_owned()),
                gross_amount: l.gross_cents.get(),
            })
            .collect()
    } else {
        vec![Item {
            id: "1".into(),
            description: Some("Restbetrag".into()),
            gross_amount: balance.get(),
        }]
    };
    let request = PaymentRequest {
        request_id: Uuid::now_v7(),
        currency: "EUR",
        gross_amount: balance.get(),
        purpose: r.kassenzeichen.as_str().to_owned(),
        description: None,
        redirect_url,
        notify_url: Some(format!(
            "{}/callbacks/payments/{}?receivable={id}",
            notify_base.trim_end_matches('/'),
            provider.config().name
        )),
        items,
    };
    let created = provider.create(&request).await.map_err(provider_problem)?;
    if created.gross != balance {
        return Err(provider_problem(ProviderError::Malformed(
            "the transaction's amount is not the one requested".into(),
        )));
    }
    let provider_name =
        Reference::parse(&provider.config().name).map_err(|e| Problem::internal(&e))?;
    execute::<ReceivableState>(
        state,
        &id.stream_id(),
        &ReceivableCommand::StartAttempt(StartAttempt {
            transaction_id: created.transaction_id.clone(),
            request_id: request.request_id,
            provider: provider_name,
            amount: balance,
            started_at: now,
        }),
        rejected,
        meta,
    )
    .await?;
    Ok(Checkout {
        transaction_id: created.transaction_id.to_string(),
        redirect_url: created.transaction_url,
        reused: false,
    })
}

/// Pulls the status of the receivable's attempt `transaction` (or of every attempt not yet
/// final) from the provider and applies what it says. This is the only way a status is
/// believed; the return redirect and the push callback call it and add nothing of theirs.
///
/// A named transaction's status is read from the provider while the receivable is read
/// from the log, not after: the status counts only if the transaction is the receivable's,
/// and it is booked on the state just read (read again only if another command changed the
/// receivable meanwhile). A callback costs a status read and an append, one after the other.
pub async fn pull(
    state: &AppState,
    provider: &Provider,
    id: ReceivableId,
    transaction: Option<&TransactionId>,
    meta: &Meta,
) -> Result<ReceivableState, Problem> {
    let ((current, version), mut early) = match transaction {
        Some(tx) => {
            let (loaded, info) = tokio::join!(unopened(state, id), provider.status(tx));
            (loaded?, Some(info))
        }
        None => (unopened(state, id).await?, None),
    };
    let r = current
        .receivable()
        .ok_or_else(|| Problem::not_found("no such receivable"))?;
    let open: Vec<TransactionId> = match transaction {
        Some(tx) if r.attempts.contains_key(tx) => vec![tx.clone()],
        Some(_) => return Err(rejected(ReceivableError::UnknownTransaction)),
        None => r
            .attempts
            .iter()
            .filter(|(_, a)| !a.status.is_terminal())
            .map(|(tx, _)| tx.clone())
            .collect(),
    };
    let mut latest = (current, version);
    for tx in open {
        let info = match early.take() {
            Some(info) => info,
            None => provider.status(&tx).await,
        }
        .map_err(provider_problem)?;
        let done = book_on(
            state,
            id,
            &ReceivableCommand::ApplyPull(PulledStatus {
                transaction_id: tx,
                status: info.status,
                method: info.method,
                reference: info.reference,
                amount: info.gross,
                pulled_at: Utc::now(),
            }),
            Some(latest),
            meta,
        )
        .await?;
        latest = (done.state, done.version);
    }
    Ok(latest.0)
}

/// A push callback: authenticated by its signature (else `401`, logged), then only a
/// trigger to pull the transaction it names.
pub async fn callback(
    state: &AppState,
    provider: &Provider,
    id: ReceivableId,
    body: &[u8],
    signature: Option<&str>,
) -> Result<ReceivableState, Problem> {
    if !provider.verify_callback(body, signature) {
        tracing::warn!(
            provider = %provider.config().name,
            receivable = %id,
            "a payment callback with a bad or missing signature was refused"
        );
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "bad-signature",
            "The callback is not authenticated",
            "the X-Signature header does not sign the body with the provider's callback secret",
        ));
    }
    let value: serde_json::Value = amtsbuch_domain::ijson::from_slice(body)
        .map_err(|e| Problem::bad_request("invalid-callback", e.to_string()))?;
    let tx = value
        .get("transactionId")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| TransactionId::parse(s).ok())
        .ok_or_else(|| {
            Problem::bad_request("invalid-callback", "the callback names no transactionId")
        })?;
    pull(
        state,
        provider,
        id,
        Some(&tx),
        &Meta::system("payment-callback"),
    )
    .await
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Lines in the file that concern receivables.
    pub lines: usize,
    /// Lines that recorded events.
    pub booked: usize,
    /// Lines already booked by an earlier import.
    pub already_booked: usize,
    /// Lines recorded as mismatches (on the receivable's worklist).
    pub mismatches: usize,
    /// Credits booked whose amount was not what the receivable still owed.
    pub amount_differs: Vec<String>,
    /// Lines no receivable of the Mandant matched: their position and why.
    pub unmatched: Vec<(String, String)>,
}

impl ImportReport {
    /// Adds what a part of the import did (its lines are counted by the caller).
    fn absorb(&mut self, part: ImportReport) {
        self.booked += part.booked;
        self.already_booked += part.already_booked;
        self.mismatches += part.mismatches;
        self.amount_differs.extend(part.amount_differs);
        self.unmatched.extend(part.unmatched);
    }
}

/// Which file format an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ISO 20022 camt.053 or camt.054.
    Camt,
    /// The HKR's CSV (see `amtsbuch_domain::payments::hkr`).
    Hkr,
}

/// Imports a bank statement or HKR file for `mandant`. The whole file is parsed first: a
/// malformed file is refused (`400`, naming the line and element) with nothing booked.
/// Then each line is matched and booked on its receivable; a line booked before books
/// nothing again. `progress` is told the lines done so far.
pub async fn import(
    state: &AppState,
    mandant: &Mandant,
    format: Format,
    bytes: &[u8],
    now: DateTime<Utc>,
    meta: &Meta,
    mut progress: impl FnMut(usize, usize),
) -> Result<ImportReport, Problem> {
    let started = std::time::Instant::now();
    let lines: Vec<StatementLine> = match format {
        Format::Camt => {
            let file = camt::parse(bytes, |_, _| {}).map_err(|e| {
                Problem::bad_request("malformed-file", e.to_string())
                    .with("line", e.line)
                    .with("element", e.element)
            })?;
            file.lines
        }
        Format::Hkr => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                Problem::bad_request("malformed-file", format!("the file is not UTF-8: {e}"))
            })?;
            hkr::parse(text, |_| {})
                .map_err(|e| {
                    Problem::bad_request("malformed-file", e.to_string())
                        .with("line", e.line)
                        .with("element", e.field)
                })?
                .iter()
                .map(StatementLine::from_posting)
                .collect()
        }
    };
    let total = lines.len();
    let parsed = started.elapsed();
    let mut report = ImportReport {
        lines: total,
        ..ImportReport::default()
    };
    // Find each line's receivable in the read model keyed by (Mandant, Kassenzeichen),
    // which also holds each receivable's folded state and stream version: matching reads
    // nothing from the log. The read model is brought up to the log's head first, so a
    // receivable requested before the import is found.
    crate::command::read_models_current(state, &[read::NAME]).await?;
    let mut wanted: Vec<String> = lines
        .iter()
        .flat_map(|l| l.kassenzeichen.iter().chain(l.candidates.iter()))
        .map(|k| k.as_str().to_owned())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let known: std::collections::HashMap<String, (u64, Receivable)> =
        read::by_kassenzeichen_many(&ReadDb::new(&state.store), mandant.as_str(), &wanted)
            .await?
            .into_iter()
            .map(|(kz, version, r)| (kz, (version, r)))
            .collect();
    let matched = started.elapsed();
    let owner = |line: &StatementLine| {
        line.kassenzeichen
            .iter()
            .chain(line.candidates.iter())
            .find_map(|kz| known.get(kz.as_str()))
    };
    // Book the lines of each receivable in file order, all of them in one request decided
    // on the read model's state; the requests of many receivables at once in one
    // multi-stream append (one transaction), a few of those in flight so that deciding and
    // encoding the next chunk overlaps with writing this one.
    let mut groups: Vec<(ReceivableId, Vec<usize>)> = vec![];
    let mut index: std::collections::HashMap<ReceivableId, usize> = Default::default();
    for (i, line) in lines.iter().enumerate() {
        match owner(line) {
            Some((_, r)) => {
                let at = *index.entry(r.id).or_insert_with(|| {
                    groups.push((r.id, vec![]));
                    groups.len() - 1
                });
                groups[at].1.push(i);
            }
            None => report.unmatched.push((
                line.position.clone(),
                if line.kassenzeichen.is_none() && line.candidates.is_empty() {
                    "NoKassenzeichen".into()
                } else {
                    "UnknownKassenzeichen".into()
                },
            )),
        }
    }
    let by_id: std::collections::HashMap<ReceivableId, (u64, &Receivable)> =
        known.values().map(|(v, r)| (r.id, (*v, r))).collect();
    let mut chunks: Vec<Vec<(ReceivableId, Vec<usize>)>> = vec![];
    let mut in_chunk = 0;
    for group in groups {
        if chunks.is_empty() || in_chunk + group.1.len() > IMPORT_CHUNK_LINES {
            chunks.push(vec![]);
            in_chunk = 0;
        }
        in_chunk += group.1.len();
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(group);
        }
    }
    let mut done = report.unmatched.len();
    let mut booked = stream::iter(chunks)
        .map(|chunk| {
            let chunk: Vec<Group<'_>> = chunk
                .into_iter()
                .map(|(id, at)| {
                    let (version, r) = by_id[&id];
                    Group {
                        id,
                        lines: at.iter().map(|&i| &lines[i]).collect(),
                        known: (ReceivableState::Requested(Box::new(r.clone())), version),
                    }
                })
                .collect();
            book_chunk(state, chunk, now, meta)
        })
        .buffered(IMPORT_IN_FLIGHT);
    while let Some(part) = booked.next().await {
        let part = part?;
        done += part.lines;
        report.absorb(part);
        progress(done, total);
    }
    tracing::info!(
        lines = total,
        receivables = known.len(),
        booked = report.booked,
        parse_ms = parsed.as_millis() as u64,
        lookup_ms = (matched - parsed).as_millis() as u64,
        booking_ms = (started.elapsed() - matched).as_millis() as u64,
        "reconciliation import done"
    );
    Ok(report)
}

/// Lines of one import booked in one multi-stream append at most (about as many events,
/// about one writer batch).
pub const IMPORT_CHUNK_LINES: usize = 1024;

/// Multi-stream appends of one import in flight at once: while one is written, the next is
/// decided and encoded.
pub const IMPORT_IN_FLIGHT: usize = 3;

/// The lines of one receivable in an import, with the receivable as the read model knows it
/// (state and stream version).
struct Group<'a> {
    id: ReceivableId,
    lines: Vec<&'a StatementLine>,
    known: (ReceivableState, u64),
}

/// Books a chunk of an import: each receivable's lines decided on its known state into one
/// request, and all requests in multi-stream appends. A receivable that changed since the
/// read model saw it (its request is refused for its expected version) has its lines
/// decided again on the log's state and booked one by one; so does one whose lines need
/// more than one append.
async fn book_chunk(
    state: &AppState,
    groups: Vec<Group<'_>>,
    now: DateTime<Utc>,
    meta: &Meta,
) -> Result<ImportReport, Problem> {
    use amtsbuch_domain::append::{MAX_EVENTS_PER_APPEND, MAX_EVENTS_PER_APPEND_MANY};
    use amtsbuch_domain::{AppendError, ExpectedVersion};
    use amtsbuch_infra::{EventStore, StoreError};
    let mut report = ImportReport {
        lines: groups.iter().map(|g| g.lines.len()).sum(),
        ..ImportReport::default()
    };
    // Each receivable's lines and decided report, whose requests are pending.
    let mut pending: Vec<(ReceivableId, Vec<&StatementLine>, ImportReport)> = vec![];
    let mut requests = vec![];
    let mut events = 0;
    let mut again: Vec<(ReceivableId, Vec<&StatementLine>)> = vec![];
    let mut groups = groups.into_iter().peekable();
    while groups.peek().is_some() || !requests.is_empty() {
        let next = groups.next();
        let flush = match &next {
            None => true,
            Some(_) => events + MAX_EVENTS_PER_APPEND > MAX_EVENTS_PER_APPEND_MANY,
        };
        if flush && !requests.is_empty() {
            let plans = state
                .store
                .append_many(std::mem::take(&mut requests))
                .await?;
            events = 0;
            for (plan, (id, lines, part)) in plans.into_iter().zip(pending.drain(..)) {
                match plan {
                    Ok(_) => report.absorb(part),
                    Err(AppendError::WrongExpectedVersion { .. }) => again.push((id, lines)),
                    Err(e) => return Err(StoreError::Append(e).into()),
                }
            }
        }
        let Some(group) = next else {
            continue;
        };
        let (version, part, per_line) = decide_group(group.id, &group.lines, group.known, now);
        let count: usize = per_line.iter().map(Vec::len).sum();
        if count == 0 {
            report.absorb(part);
        } else if count > MAX_EVENTS_PER_APPEND {
            report.absorb(
                book_in_appends(
                    state,
                    group.id,
                    group.lines,
                    (version, part),
                    per_line,
                    now,
                    meta,
                )
                .await?,
            );
        } else {
            let decided: Vec<ReceivableEvent> = per_line.into_iter().flatten().collect();
            events += decided.len();
            requests.push(
                request_for(
                    state,
                    &group.id.stream_id(),
                    &decided,
                    ExpectedVersion::Exact(version),
                    meta,
                )
                .await?,
            );
            pending.push((group.id, group.lines, part));
        }
    }
    for (id, lines) in again {
        report.absorb(book_group(state, id, lines, now, meta).await?);
    }
    Ok(report)
}

/// Books the events `per_line` decided for the lines of one receivable at `version` in
/// several appends, one after the other (each line's events in one of them): for more
/// events than one append may hold. When the receivable changed meanwhile, decides the
/// lines again on the log's state (those already appended book nothing again).
async fn book_in_appends(
    state: &AppState,
    id: ReceivableId,
    lines: Vec<&StatementLine>,
    (version, report): (u64, ImportReport),
    per_line: Vec<Vec<ReceivableEvent>>,
    now: DateTime<Utc>,
    meta: &Meta,
) -> Result<ImportReport, Problem> {
    use amtsbuch_domain::{AppendError, ExpectedVersion};
    use amtsbuch_infra::StoreError;
    let mut chunks: Vec<Vec<ReceivableEvent>> = Vec::new();
    for line_events in per_line {
        match chunks.last_mut() {
            Some(chunk)
                if chunk.len() + line_events.len()
                    <= amtsbuch_domain::append::MAX_EVENTS_PER_APPEND =>
            {
                chunk.extend(line_events)
            }
            _ => chunks.push(line_events),
        }
    }
    let mut version = version;
    for chunk in chunks {
        match append(
            state,
            &id.stream_id(),
            &chunk,
            ExpectedVersion::Exact(version),
            meta,
        )
        .await
        {
            Ok(done) => version = done.next_version,
            Err(StoreOrProblem::Store(StoreError::Append(AppendError::WrongExpectedVersion {
                ..
            }))) => return book_group(state, id, lines, now, meta).await,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// Decides the lines of one receivable, in order, on `known` (its state and version): the
/// version, what the lines do (as the import reports them) and the events each line
/// decides.
fn decide_group(
    id: ReceivableId,
    lines: &[&StatementLine],
    known: (ReceivableState, u64),
    now: DateTime<Utc>,
) -> (u64, ImportReport, Vec<Vec<ReceivableEvent>>) {
    let (mut current_state, version) = known;
    let mut report = ImportReport {
        lines: lines.len(),
        ..ImportReport::default()
    };
    let mut events = Vec::new();
    for line in lines {
        let Some((_, amount_differs, decided)) =
            decide_line(line, id, &current_state, now, &mut report)
        else {
            continue;
        };
        tally(&mut report, line, &decided, amount_differs);
        if !decided.is_empty() {
            current_state = decided.iter().fold(current_state, receivable::evolve);
            events.push(decided);
        }
    }
    (version, report, events)
}

/// How often a booking is decided again when another command changed the receivable first.
const ATTEMPTS: usize = 3;

/// The receivable's state folded from its events without opening their sealed parts:
/// deciding never needs the payer's name, so the key vault is not asked (the payer's name
/// reads as erased in this state). With the stream's version.
async fn unopened(state: &AppState, id: ReceivableId) -> Result<(ReceivableState, u64), Problem> {
    crate::command::current_unopened(state, &id.stream_id()).await
}

/// `crate::command::execute` for the commands that book on an existing receivable: the
/// same load, decide, append under the stream's version and retry, but deciding on the
/// unopened state. The events these commands decide carry no personal data.
async fn book(
    state: &AppState,
    id: ReceivableId,
    command: &ReceivableCommand,
    meta: &Meta,
) -> Result<Executed<ReceivableState, ReceivableEvent>, Problem> {
    book_on(state, id, command, None, meta).await
}

/// [`book`], starting from `known`, the receivable as the caller last saw it (a conflict
/// loads it anew).
async fn book_on(
    state: &AppState,
    id: ReceivableId,
    command: &ReceivableCommand,
    mut known: Option<(ReceivableState, u64)>,
    meta: &Meta,
) -> Result<Executed<ReceivableState, ReceivableEvent>, Problem> {
    use amtsbuch_domain::{AppendError, ExpectedVersion};
    use amtsbuch_infra::StoreError;
    let stream = id.stream_id();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (current, version) = match known.take() {
            Some(known) => known,
            None => unopened(state, id).await?,
        };
        if current.receivable().is_none() {
            return Err(Problem::not_found("no such receivable"));
        }
        let events = receivable::decide(command, &current).map_err(rejected)?;
        if events.is_empty() {
            return Ok(Executed {
                state: current,
                events,
                outcome: None,
                version,
            });
        }
        match append(
            state,
            &stream,
            &events,
            ExpectedVersion::Exact(version),
            meta,
        )
        .await
        {
            Ok(outcome) => {
                let after = events.iter().fold(current, receivable::evolve);
                return Ok(Executed {
                    state: after,
                    events,
                    version: outcome.next_version,
                    outcome: Some(outcome),
                });
            }
            Err(StoreOrProblem::Store(StoreError::Append(AppendError::WrongExpectedVersion {
                ..
            }))) if attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Books the lines of one receivable, in order.
async fn book_group(
    state: &AppState,
    id: ReceivableId,
    lines: Vec<&StatementLine>,
    now: DateTime<Utc>,
    meta: &Meta,
) -> Result<ImportReport, Problem> {
    let mut report = ImportReport {
        lines: lines.len(),
        ..ImportReport::default()
    };
    let (mut current_state, mut version) = unopened(state, id).await?;
    for line in lines {
        let Some((command, amount_differs, _)) =
            decide_line(line, id, &current_state, now, &mut report)
        else {
            continue;
        };
        let done = book_on(state, id, &command, Some((current_state, version)), meta).await?;
        tally(&mut report, line, &done.events, amount_differs);
        current_state = done.state;
        version = done.version;
    }
    Ok(report)
}

/// A line matched and decided on its receivable's state: the command, whether the amount
/// differs from what was owed, and the events it decides. A line that matches nothing is
/// reported as unmatched and books nothing; one that the receivable's rules refuse (an
/// amount past the largest) books nothing but a mismatch on the worklist (kind
/// `refused`). The file's other lines are booked.
fn decide_line(
    line: &StatementLine,
    id: ReceivableId,
    current: &ReceivableState,
    now: DateTime<Utc>,
    report: &mut ImportReport,
) -> Option<(ReceivableCommand, bool, Vec<ReceivableEvent>)> {
    let decision = match_line(
        line,
        |kz| {
            let r = current.receivable()?;
            (r.kassenzeichen == *kz).then_some(Target {
                receivable_id: id,
                balance: r.balance(),
            })
        },
        now,
    );
    match decision {
        Decision::Unmatched(why) => {
            report
                .unmatched
                .push((line.position.clone(), format!("{why:?}")));
            None
        }
        Decision::Book {
            command,
            amount_differs,
            ..
        } => match receivable::decide(&command, current) {
            Ok(decided) => Some((*command, amount_differs, decided)),
            Err(e) => {
                // Refused by the receivable's rules: on the worklist, not only in the
                // answer.
                tracing::info!(line = %line.position, reason = %e, "a reconciliation line was refused");
                let flag = ReceivableCommand::FlagRefused(Booking {
                    entry: line.entry.clone(),
                    source: line.source,
                    amount: line.amount,
                    booking_date: line.booking_date,
                    booked_at: now,
                });
                match receivable::decide(&flag, current) {
                    Ok(decided) => Some((flag, false, decided)),
                    Err(e) => {
                        report
                            .unmatched
                            .push((line.position.clone(), format!("refused: {e}")));
                        None
                    }
                }
            }
        },
    }
}

/// Counts a decided line in the import's report: booked (with a mismatch, with an amount
/// that differs) or already booked when it decided nothing.
fn tally(
    report: &mut ImportReport,
    line: &StatementLine,
    events: &[ReceivableEvent],
    amount_differs: bool,
) {
    if events.is_empty() {
        report.already_booked += 1;
        return;
    }
    report.booked += 1;
    if events
        .iter()
        .any(|e| matches!(e, ReceivableEvent::Mismatch(_)))
    {
        report.mismatches += 1;
    }
    if amount_differs {
        report.amount_differs.push(line.position.clone());
    }
}

/// Requests a refund (the first pair of eyes).
pub async fn request_refund(
    state: &AppState,
    id: ReceivableId,
    refund: RequestRefund,
    meta: &Meta,
) -> Result<ReceivableState, Problem> {
    receivable(state, id).await?;
    Ok(execute::<ReceivableState>(
        state,
        &id.stream_id(),
        &ReceivableCommand::RequestRefund(refund),
        rejected,
        meta,
    )
    .await?
    .state)
}

/// Approves a refund (the second pair of eyes) and books it with the HKR's reference.
pub async fn approve_refund(
    state: &AppState,
    id: ReceivableId,
    refund_id: RefundId,
    approved_by: Actor,
    hkr_reference: Reference,
    now: DateTime<Utc>,
    meta: &Meta,
) -> Result<ReceivableState, Problem> {
    receivable(state, id).await?;
    Ok(execute::<ReceivableState>(
        state,
        &id.stream_id(),
        &ReceivableCommand::ApproveRefund(ApproveRefund {
            refund_id,
            approved_by,
            hkr_reference,
            approved_at: now,
        }),
        rejected,
        meta,
    )
    .await?
    .state)
}

/// Cancels a receivable on which nothing was paid.
pub async fn cancel(
    state: &AppState,
    id: ReceivableId,
    reason: Reference,
    now: DateTime<Utc>,
    meta: &Meta,
) -> Result<ReceivableState, Problem> {
    receivable(state, id).await?;
    Ok(execute::<ReceivableState>(
        state,
        &id.stream_id(),
        &ReceivableCommand::Cancel {
            reason,
            cancelled_at: now,
        },
        rejected,
        meta,
    )
    .await?
    .state)
}
