//! The receivable (Sollstellung) as a decider: requested with its lines and Kassenzeichen,
//! paid through provider attempts whose statuses were pulled, or by bank transfer and
//! direct debit as the statements report, reversed by chargebacks and returned debits,
//! settled when the HKR's posting matches, refunded under four eyes, cancelled only while
//! nothing was paid.
//!
//! Every booking that an import brings (a bank line, an HKR posting) carries its
//! `entry` reference; the receivable remembers the references it booked, so the same file
//! imported twice books nothing twice.
//!
//! Only [`ReceivableRequested`] carries personal data: the payer's name, sealed under the
//! payer's key. The payer is named everywhere else only by the pseudonymous
//! [`SubjectId`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    instant, Actor, AttemptStatus, Bewirtschafter, Cents, Kassenzeichen, Line, Mandant, Method,
    PayerName, ReceivableId, Reference, RefundId, Source, TransactionId, MAX_LINES,
};
use crate::decider::decider;
use crate::event::{
    data_of, event_type_of, no_personal, parse_data, parse_personal, personal_of, DomainEvent,
    EventParts, PartsError, Personal, SubjectId,
};
use crate::record::timestamp;
use crate::stream::{EventType, StreamId};

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Request a receivable: its Kassenzeichen was claimed in the same append (or is being).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestReceivable {
    pub receivable_id: ReceivableId,
    pub mandant: Mandant,
    pub bewirtschafter: Bewirtschafter,
    pub kassenzeichen: Kassenzeichen,
    /// Whether Amtsbuch assigned the Kassenzeichen (else the caller supplied it).
    pub assigned: bool,
    pub gross_cents: Cents,
    pub due_date: NaiveDate,
    pub lines: Vec<Line>,
    /// The application the fee belongs to, if any.
    pub application_id: Option<Uuid>,
    pub payer: SubjectId,
    pub payer_name: PayerName,
    pub requested_at: DateTime<Utc>,
}

/// A payment attempt was created at the provider (its answer carries the transaction id).
#[derive(Debug, Clone, PartialEq)]
pub struct StartAttempt {
    pub transaction_id: TransactionId,
    /// The request id Amtsbuch sent (idempotency at the provider).
    pub request_id: Uuid,
    pub provider: Reference,
    pub amount: Cents,
    pub started_at: DateTime<Utc>,
}

/// What a status pull from the provider answered. Built only from the provider's answer to
/// Amtsbuch's own GET, never from a redirect or a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledStatus {
    pub transaction_id: TransactionId,
    pub status: AttemptStatus,
    pub method: Option<Method>,
    pub reference: Option<Reference>,
    /// The amount the provider reports for the transaction.
    pub amount: Cents,
    pub pulled_at: DateTime<Utc>,
}

/// A line of a bank statement or an HKR posting matched to this receivable.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    /// The entry's unique reference in its source (bank entry reference, HKR posting id).
    pub entry: Reference,
    pub source: Source,
    pub amount: Cents,
    pub booking_date: NaiveDate,
    pub booked_at: DateTime<Utc>,
}

/// Why money went back to the payer's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReversalKind {
    /// A card or wallet payment charged back.
    Chargeback,
    /// A SEPA direct debit returned (Rücklastschrift).
    ReturnedDebit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestRefund {
    pub refund_id: RefundId,
    pub amount: Cents,
    pub requested_by: Actor,
    pub reason: Reference,
    pub requested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApproveRefund {
    pub refund_id: RefundId,
    pub approved_by: Actor,
    /// The HKR's reference of the payout booking.
    pub hkr_reference: Reference,
    pub approved_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BookFee {
    pub entry: Reference,
    pub transaction_id: Option<TransactionId>,
    pub amount: Cents,
    pub booked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceivableCommand {
    Request(RequestReceivable),
    StartAttempt(StartAttempt),
    ApplyPull(PulledStatus),
    /// Money arrived (a bank credit or an HKR Ist-Buchung with the Kassenzeichen).
    Receive(Booking),
    /// A chargeback or returned debit.
    Reverse(Booking, ReversalKind),
    /// The HKR's Ist-Buchung of the receivable; settles it when it matches.
    Settle(Booking, Reference),
    BookFee(BookFee),
    /// A statement or HKR line the receivable's rules refused to book: recorded as a
    /// mismatch on the worklist (once per entry), so that the cash office sees it.
    FlagRefused(Booking),
    RequestRefund(RequestRefund),
    ApproveRefund(ApproveRefund),
    Cancel {
        reason: Reference,
        cancelled_at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `ReceivableRequested`: the Sollstellung with its Kassenzeichen. The payer's name is the
/// personal part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivableRequested {
    pub receivable_id: ReceivableId,
    pub mandant: Mandant,
    pub bewirtschafter: Bewirtschafter,
    pub kassenzeichen: Kassenzeichen,
    pub kassenzeichen_assigned: bool,
    pub gross_cents: Cents,
    pub due_date: NaiveDate,
    pub lines: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<Uuid>,
    pub payer: SubjectId,
    #[serde(with = "timestamp")]
    pub requested_at: DateTime<Utc>,
    #[serde(skip)]
    pub payer_name: Personal<PayerName>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayerPart {
    payer_name: PayerName,
}

/// `PaymentAttemptInitiated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentAttemptInitiated {
    pub receivable_id: ReceivableId,
    pub transaction_id: TransactionId,
    pub request_id: Uuid,
    pub provider: Reference,
    pub amount_cents: Cents,
    #[serde(with = "timestamp")]
    pub initiated_at: DateTime<Utc>,
}

/// `PaymentStatusVerified`: a status the provider answered to Amtsbuch's pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentStatusVerified {
    pub receivable_id: ReceivableId,
    pub transaction_id: TransactionId,
    pub status: AttemptStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    pub amount_cents: Cents,
    #[serde(with = "timestamp")]
    pub verified_at: DateTime<Utc>,
}

/// `PaymentReceived`: money arrived by a statement line. `confirmed_cents` of it confirms
/// online payments already verified (the provider's payout); `new_cents` is money paid
/// another way (a transfer, a direct debit) and counts as paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentReceived {
    pub receivable_id: ReceivableId,
    pub entry: Reference,
    pub source: Source,
    pub amount_cents: Cents,
    pub confirmed_cents: Cents,
    pub new_cents: Cents,
    pub booking_date: NaiveDate,
    #[serde(with = "timestamp")]
    pub received_at: DateTime<Utc>,
}

/// `PaymentReversed`: a chargeback or a returned debit; what was paid shrinks and the
/// receivable is reopened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentReversed {
    pub receivable_id: ReceivableId,
    pub entry: Reference,
    pub source: Source,
    pub kind: ReversalKind,
    pub amount_cents: Cents,
    pub booking_date: NaiveDate,
    #[serde(with = "timestamp")]
    pub reversed_at: DateTime<Utc>,
}

/// `ProviderFeeBooked`: the provider's fee, booked on its own (gross settlement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFeeBooked {
    pub receivable_id: ReceivableId,
    pub entry: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<TransactionId>,
    pub amount_cents: Cents,
    #[serde(with = "timestamp")]
    pub booked_at: DateTime<Utc>,
}

/// `ReceivableSettled`: the HKR's Ist-Buchung matched what was paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivableSettled {
    pub receivable_id: ReceivableId,
    pub entry: Reference,
    pub hkr_reference: Reference,
    pub amount_cents: Cents,
    pub booking_date: NaiveDate,
    #[serde(with = "timestamp")]
    pub settled_at: DateTime<Utc>,
}

/// What kind of difference a reconciliation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The HKR posted another amount than the receivable's gross amount.
    AmountDiffers,
    /// The HKR posted the receivable, but Amtsbuch has not seen it paid in full.
    NotPaid,
    /// A reversal of more than was paid.
    ReversalExceedsPaid,
    /// A posting for a receivable that was already settled.
    AlreadySettled,
    /// A line the receivable's rules refused (an amount past the largest, a zero amount,
    /// a fee for a transaction of another receivable): nothing of it was booked.
    Refused,
}

/// `ReconciliationMismatchDetected`: an entry did not fit; it is on the worklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationMismatchDetected {
    pub receivable_id: ReceivableId,
    pub entry: Reference,
    pub source: Source,
    pub kind: MismatchKind,
    pub expected_cents: Cents,
    pub found_cents: Cents,
    pub booking_date: NaiveDate,
    #[serde(with = "timestamp")]
    pub detected_at: DateTime<Utc>,
}

/// `RefundRequested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequested {
    pub receivable_id: ReceivableId,
    pub refund_id: RefundId,
    pub amount_cents: Cents,
    pub requested_by: Actor,
    pub reason: Reference,
    #[serde(with = "timestamp")]
    pub requested_at: DateTime<Utc>,
}

/// `RefundBooked`: approved by a second person and booked with the HKR's reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBooked {
    pub receivable_id: ReceivableId,
    pub refund_id: RefundId,
    pub amount_cents: Cents,
    pub approved_by: Actor,
    pub hkr_reference: Reference,
    #[serde(with = "timestamp")]
    pub booked_at: DateTime<Utc>,
}

/// `ReceivableCancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivableCancelled {
    pub receivable_id: ReceivableId,
    pub reason: Reference,
    #[serde(with = "timestamp")]
    pub cancelled_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceivableEvent {
    Requested(ReceivableRequested),
    AttemptInitiated(PaymentAttemptInitiated),
    StatusVerified(PaymentStatusVerified),
    Received(PaymentReceived),
    Reversed(PaymentReversed),
    FeeBooked(ProviderFeeBooked),
    Settled(ReceivableSettled),
    Mismatch(ReconciliationMismatchDetected),
    RefundRequested(RefundRequested),
    RefundBooked(RefundBooked),
    Cancelled(ReceivableCancelled),
}

const REQUESTED: &str = "ReceivableRequested";
const INITIATED: &str = "PaymentAttemptInitiated";
const VERIFIED: &str = "PaymentStatusVerified";
const RECEIVED: &str = "PaymentReceived";
const REVERSED: &str = "PaymentReversed";
const FEE: &str = "ProviderFeeBooked";
const SETTLED: &str = "ReceivableSettled";
const MISMATCH: &str = "ReconciliationMismatchDetected";
const REFUND_REQUESTED: &str = "RefundRequested";
const REFUND_BOOKED: &str = "RefundBooked";
const CANCELLED: &str = "ReceivableCancelled";

impl ReceivableEvent {
    pub fn receivable_id(&self) -> ReceivableId {
        match self {
            Self::Requested(e) => e.receivable_id,
            Self::AttemptInitiated(e) => e.receivable_id,
            Self::StatusVerified(e) => e.receivable_id,
            Self::Received(e) => e.receivable_id,
            Self::Reversed(e) => e.receivable_id,
            Self::FeeBooked(e) => e.receivable_id,
            Self::Settled(e) => e.receivable_id,
            Self::Mismatch(e) => e.receivable_id,
            Self::RefundRequested(e) => e.receivable_id,
            Self::RefundBooked(e) => e.receivable_id,
            Self::Cancelled(e) => e.receivable_id,
        }
    }
}

impl DomainEvent for ReceivableEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Requested(_) => REQUESTED,
            Self::AttemptInitiated(_) => INITIATED,
            Self::StatusVerified(_) => VERIFIED,
            Self::Received(_) => RECEIVED,
            Self::Reversed(_) => REVERSED,
            Self::FeeBooked(_) => FEE,
            Self::Settled(_) => SETTLED,
            Self::Mismatch(_) => MISMATCH,
            Self::RefundRequested(_) => REFUND_REQUESTED,
            Self::RefundBooked(_) => REFUND_BOOKED,
            Self::Cancelled(_) => CANCELLED,
        }
    }

    fn stream_id(&self) -> StreamId {
        self.receivable_id().stream_id()
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            Self::Requested(e) => e.requested_at,
            Self::AttemptInitiated(e) => e.initiated_at,
            Self::StatusVerified(e) => e.verified_at,
            Self::Received(e) => e.received_at,
            Self::Reversed(e) => e.reversed_at,
            Self::FeeBooked(e) => e.booked_at,
            Self::Settled(e) => e.settled_at,
            Self::Mismatch(e) => e.detected_at,
            Self::RefundRequested(e) => e.requested_at,
            Self::RefundBooked(e) => e.booked_at,
            Self::Cancelled(e) => e.cancelled_at,
        }
    }

    fn data_subject(&self) -> Option<SubjectId> {
        match self {
            Self::Requested(e) => Some(e.payer),
            _ => None,
        }
    }

    fn carries_personal_data(event_type: &str) -> bool {
        event_type == REQUESTED
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        let name = self.event_type();
        let (data, personal) = match self {
            Self::Requested(e) => {
                let part = e
                    .payer_name
                    .clone()
                    .map(|payer_name| PayerPart { payer_name });
                (data_of(name, e)?, Some(personal_of(name, &part)?))
            }
            Self::AttemptInitiated(e) => (data_of(name, e)?, None),
            Self::StatusVerified(e) => (data_of(name, e)?, None),
            Self::Received(e) => (data_of(name, e)?, None),
            Self::Reversed(e) => (data_of(name, e)?, None),
            Self::FeeBooked(e) => (data_of(name, e)?, None),
            Self::Settled(e) => (data_of(name, e)?, None),
            Self::Mismatch(e) => (data_of(name, e)?, None),
            Self::RefundRequested(e) => (data_of(name, e)?, None),
            Self::RefundBooked(e) => (data_of(name, e)?, None),
            Self::Cancelled(e) => (data_of(name, e)?, None),
        };
        Ok(EventParts {
            event_type: event_type_of(name)?,
            data,
            personal,
        })
    }

    fn from_parts(
        event_type: &EventType,
        data: &Value,
        personal: Option<&Value>,
    ) -> Result<Self, PartsError> {
        fn plain<T: serde::de::DeserializeOwned>(
            name: &'static str,
            data: &Value,
            personal: Option<&Value>,
        ) -> Result<T, PartsError> {
            no_personal(name, personal)?;
            parse_data(name, data)
        }
        Ok(match event_type.as_str() {
            REQUESTED => {
                let mut e: ReceivableRequested = parse_data(REQUESTED, data)?;
                e.payer_name =
                    parse_personal::<PayerPart>(REQUESTED, personal)?.map(|p| p.payer_name);
                Self::Requested(e)
            }
            INITIATED => Self::AttemptInitiated(plain(INITIATED, data, personal)?),
            VERIFIED => Self::StatusVerified(plain(VERIFIED, data, personal)?),
            RECEIVED => Self::Received(plain(RECEIVED, data, personal)?),
            REVERSED => Self::Reversed(plain(REVERSED, data, personal)?),
            FEE => Self::FeeBooked(plain(FEE, data, personal)?),
            SETTLED => Self::Settled(plain(SETTLED, data, personal)?),
            MISMATCH => Self::Mismatch(plain(MISMATCH, data, personal)?),
            REFUND_REQUESTED => Self::RefundRequested(plain(REFUND_REQUESTED, data, personal)?),
            REFUND_BOOKED => Self::RefundBooked(plain(REFUND_BOOKED, data, personal)?),
            CANCELLED => Self::Cancelled(plain(CANCELLED, data, personal)?),
            other => return Err(PartsError::UnknownEventType(other.to_owned())),
        })
    }
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// Where a receivable stands, derived from what was paid, reversed and refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing paid yet.
    Open,
    /// Paid in part.
    PartlyPaid,
    /// Paid in full, not yet matched with the HKR.
    Paid,
    /// Paid in full and the HKR's posting matched.
    Settled,
    /// Paid more than owed.
    Overpaid,
    /// Paid once, then a chargeback or returned debit took money back.
    Reopened,
    /// A refund waits for its second pair of eyes.
    RefundPending,
    /// Everything paid was refunded.
    Refunded,
    /// Cancelled before anything was paid.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::PartlyPaid => "partly_paid",
            Self::Paid => "paid",
            Self::Settled => "settled",
            Self::Overpaid => "overpaid",
            Self::Reopened => "reopened",
            Self::RefundPending => "refund_pending",
            Self::Refunded => "refunded",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A payment attempt at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub request_id: Uuid,
    pub amount: Cents,
    /// The last verified status; `Initial` until a pull says otherwise.
    pub status: AttemptStatus,
    pub method: Option<Method>,
}

/// A refund as requested, and booked once approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub amount: Cents,
    pub requested_by: Actor,
    pub booked: bool,
}

/// A requested receivable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receivable {
    pub id: ReceivableId,
    pub mandant: Mandant,
    pub bewirtschafter: Bewirtschafter,
    pub kassenzeichen: Kassenzeichen,
    pub gross: Cents,
    pub due_date: NaiveDate,
    pub lines: Vec<Line>,
    pub application_id: Option<Uuid>,
    pub payer: SubjectId,
    pub attempts: BTreeMap<TransactionId, Attempt>,
    /// Everything paid, less reversals (online verified, plus other ways in).
    pub paid: Cents,
    /// Verified online payments not yet seen on a statement.
    pub online_unconfirmed: Cents,
    pub refunds: BTreeMap<RefundId, Refund>,
    pub refunded: Cents,
    pub fees: Cents,
    pub reopened: bool,
    pub settled: bool,
    pub cancelled: bool,
    /// Mismatches detected (the worklist's entries for this receivable).
    pub mismatches: u32,
    /// The statement and HKR entries already booked, so an import books each once.
    pub entries: BTreeSet<Reference>,
    /// The last day a cash booking of the receivable was made (its requesting, a payment,
    /// a reversal, a refund): the retention of its records counts from that year.
    pub last_booking: NaiveDate,
    /// The day the receivable was last paid in full (cleared by a reversal), for the daily
    /// report.
    pub paid_on: Option<NaiveDate>,
}

impl Receivable {
    /// Paid minus refunded: what the payer has in.
    pub fn net_paid(&self) -> Cents {
        self.paid.saturating_sub(self.refunded)
    }

    /// Refunds requested and not yet booked.
    pub fn pending_refunds(&self) -> Cents {
        Cents(
            self.refunds
                .values()
                .filter(|r| !r.booked)
                .map(|r| r.amount.get())
                .sum(),
        )
    }

    /// What the payer still owes (zero once paid in full or cancelled).
    pub fn balance(&self) -> Cents {
        if self.cancelled {
            Cents::ZERO
        } else {
            self.gross.saturating_sub(self.net_paid())
        }
    }

    pub fn status(&self) -> Status {
        let net = self.net_paid();
        if self.cancelled && self.paid.is_zero() {
            Status::Cancelled
        } else if !self.pending_refunds().is_zero() {
            Status::RefundPending
        } else if !self.refunded.is_zero() && net.is_zero() {
            Status::Refunded
        } else if net > self.gross || (self.cancelled && !net.is_zero()) {
            // Money that came in after a cancellation is owed back just the same.
            Status::Overpaid
        } else if net == self.gross {
            if self.settled {
                Status::Settled
            } else {
                Status::Paid
            }
        } else if self.reopened {
            Status::Reopened
        } else if net.is_zero() {
            Status::Open
        } else {
            Status::PartlyPaid
        }
    }

    /// Until when the receivable's cash records must be kept, and so its payer's data: the
    /// cash book's ten years from the 1 January after the annual accounts of the year of
    /// its last booking, adopted `accounts_lag` years after that year (1 when on time).
    pub fn retention_until(&self, accounts_lag: i32) -> Option<DateTime<Utc>> {
        use chrono::Datelike;
        super::retention_until(
            self.last_booking,
            self.last_booking.year() + accounts_lag.max(1),
            super::CashRecord::Book,
        )
    }

    /// Whether nothing more is to happen on the receivable: settled with the HKR, refunded
    /// in full, or cancelled before anything was paid. Until then its retention has no end
    /// yet (money may still be booked, reversed or owed back).
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status(),
            Status::Settled | Status::Refunded | Status::Cancelled
        )
    }

    /// Whether a payment (or a submission that waits for it) may count as done: paid in
    /// full, with or without the HKR's match.
    pub fn is_paid(&self) -> bool {
        matches!(
            self.status(),
            Status::Paid | Status::Settled | Status::Overpaid
        )
    }
}

/// The state of a receivable stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ReceivableState {
    #[default]
    NotRequested,
    Requested(Box<Receivable>),
}

impl ReceivableState {
    pub fn receivable(&self) -> Option<&Receivable> {
        match self {
            Self::NotRequested => None,
            Self::Requested(r) => Some(r),
        }
    }
}

/// Why a receivable command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceivableError {
    #[error("this receivable has already been requested")]
    AlreadyRequested,
    #[error("no such receivable")]
    NotRequested,
    #[error("a receivable needs 1 to 99 lines")]
    LineCount,
    #[error("line {index}: net {net} plus tax {tax} is not its gross amount {gross}")]
    LineParts {
        index: usize,
        gross: Cents,
        net: Cents,
        tax: Cents,
    },
    #[error("the lines sum to {lines}, but the receivable's gross amount is {gross}")]
    LinesDoNotSum { lines: Cents, gross: Cents },
    #[error("a receivable's gross amount must be more than zero")]
    ZeroAmount,
    #[error("the receivable is cancelled")]
    Cancelled,
    #[error("nothing is owed: the receivable is paid")]
    NothingOwed,
    #[error("an attempt must be for more than zero and at most the balance {balance}")]
    AttemptAmount { balance: Cents },
    #[error("the transaction is already an attempt of this receivable")]
    DuplicateTransaction,
    #[error("an attempt of this receivable is still open at the provider")]
    AttemptOpen,
    #[error("the transaction is no attempt of this receivable")]
    UnknownTransaction,
    #[error("the attempt's status is {current}, which is final; the provider now says {pulled}")]
    TerminalStatus {
        current: &'static str,
        pulled: &'static str,
    },
    #[error("the provider reports {reported} for an attempt of {expected}")]
    AttemptAmountDiffers { expected: Cents, reported: Cents },
    #[error("an amount of zero books nothing")]
    ZeroBooking,
    #[error("a refund must be more than zero and at most {available} (paid minus refunded and pending refunds)")]
    RefundTooLarge { available: Cents },
    #[error("this refund id is already used")]
    DuplicateRefund,
    #[error("no such refund")]
    UnknownRefund,
    #[error("a refund must be approved by another person than its requester")]
    FourEyes,
    #[error("a receivable can be cancelled only while nothing was paid")]
    PaymentsRecorded,
    #[error("the amount would exceed the largest amount")]
    Overflow,
}

fn check_request(c: &RequestReceivable) -> Result<(), ReceivableError> {
    check_lines(c.gross_cents, &c.lines)
}

/// The rules of a receivable's amount and lines: a gross amount above zero, 1 to 99 lines,
/// each line's gross = net + tax, and the lines' gross amounts summing to the amount. A
/// fee schedule's lines follow the same rules.
pub fn check_lines(gross_cents: Cents, lines: &[Line]) -> Result<(), ReceivableError> {
    if gross_cents.is_zero() {
        return Err(ReceivableError::ZeroAmount);
    }
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ReceivableError::LineCount);
    }
    let mut sum = Cents::ZERO;
    for (index, line) in lines.iter().enumerate() {
        let parts = line
            .net_cents
            .checked_add(line.tax_cents)
            .ok_or(ReceivableError::Overflow)?;
        if parts != line.gross_cents {
            return Err(ReceivableError::LineParts {
                index,
                gross: line.gross_cents,
                net: line.net_cents,
                tax: line.tax_cents,
            });
        }
        sum = sum
            .checked_add(line.gross_cents)
            .ok_or(ReceivableError::Overflow)?;
    }
    if sum != gross_cents {
        return Err(ReceivableError::LinesDoNotSum {
            lines: sum,
            gross: gross_cents,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Decider
// ---------------------------------------------------------------------------------------

/// Decides a receivable command.
pub fn decide(
    command: &ReceivableCommand,
    state: &ReceivableState,
) -> Result<Vec<ReceivableEvent>, ReceivableError> {
    let r = match (command, state) {
        (ReceivableCommand::Request(c), ReceivableState::NotRequested) => {
            check_request(c)?;
            return Ok(vec![ReceivableEvent::Requested(ReceivableRequested {
                receivable_id: c.receivable_id,
                mandant: c.mandant.clone(),
                bewirtschafter: c.bewirtschafter.clone(),
                kassenzeichen: c.kassenzeichen.clone(),
                kassenzeichen_assigned: c.assigned,
                gross_cents: c.gross_cents,
                due_date: c.due_date,
                lines: c.lines.clone(),
                application_id: c.application_id,
                payer: c.payer,
                requested_at: instant(c.requested_at),
                payer_name: Personal::Available(c.payer_name.clone()),
            })]);
        }
        (ReceivableCommand::Request(_), ReceivableState::Requested(_)) => {
            return Err(ReceivableError::AlreadyRequested)
        }
        (_, ReceivableState::NotRequested) => return Err(ReceivableError::NotRequested),
        (_, ReceivableState::Requested(r)) => r,
    };
    let id = r.id;
    match command {
        ReceivableCommand::Request(_) => unreachable!("handled above"),
        ReceivableCommand::StartAttempt(c) => {
            if r.cancelled {
                return Err(ReceivableError::Cancelled);
            }
            let balance = r.balance();
            if balance.is_zero() {
                return Err(ReceivableError::NothingOwed);
            }
            if c.amount.is_zero() || c.amount > balance {
                return Err(ReceivableError::AttemptAmount { balance });
            }
            if r.attempts.contains_key(&c.transaction_id) {
                return Err(ReceivableError::DuplicateTransaction);
            }
            // One attempt at a time: two open ones could both be paid in full.
            if r.attempts.values().any(|a| !a.status.is_terminal()) {
                return Err(ReceivableError::AttemptOpen);
            }
            Ok(vec![ReceivableEvent::AttemptInitiated(
                PaymentAttemptInitiated {
                    receivable_id: id,
                    transaction_id: c.transaction_id.clone(),
                    request_id: c.request_id,
                    provider: c.provider.clone(),
                    amount_cents: c.amount,
                    initiated_at: instant(c.started_at),
                },
            )])
        }
        ReceivableCommand::ApplyPull(c) => {
            let attempt = r
                .attempts
                .get(&c.transaction_id)
                .ok_or(ReceivableError::UnknownTransaction)?;
            if attempt.status == c.status {
                return Ok(vec![]);
            }
            if attempt.status.is_terminal() {
                return Err(ReceivableError::TerminalStatus {
                    current: attempt.status.as_str(),
                    pulled: c.status.as_str(),
                });
            }
            if c.status == AttemptStatus::Payed && c.amount != attempt.amount {
                return Err(ReceivableError::AttemptAmountDiffers {
                    expected: attempt.amount,
                    reported: c.amount,
                });
            }
            if c.status == AttemptStatus::Payed {
                r.paid
                    .checked_add(c.amount)
                    .ok_or(ReceivableError::Overflow)?;
            }
            Ok(vec![ReceivableEvent::StatusVerified(
                PaymentStatusVerified {
                    receivable_id: id,
                    transaction_id: c.transaction_id.clone(),
                    status: c.status,
                    method: c.method,
                    reference: c.reference.clone(),
                    amount_cents: attempt.amount,
                    verified_at: instant(c.pulled_at),
                },
            )])
        }
        ReceivableCommand::Receive(b) => {
            if r.entries.contains(&b.entry) {
                return Ok(vec![]);
            }
            if b.amount.is_zero() {
                return Err(ReceivableError::ZeroBooking);
            }
            let confirmed = b.amount.min(r.online_unconfirmed);
            let new = b.amount.saturating_sub(confirmed);
            r.paid.checked_add(new).ok_or(ReceivableError::Overflow)?;
            Ok(vec![ReceivableEvent::Received(PaymentReceived {
                receivable_id: id,
                entry: b.entry.clone(),
                source: b.source,
                amount_cents: b.amount,
                confirmed_cents: confirmed,
                new_cents: new,
                booking_date: b.booking_date,
                received_at: instant(b.booked_at),
            })])
        }
        ReceivableCommand::Reverse(b, kind) => {
            if r.entries.contains(&b.entry) {
                return Ok(vec![]);
            }
            if b.amount.is_zero() {
                return Err(ReceivableError::ZeroBooking);
            }
            let available = r.net_paid();
            if b.amount > available {
                return Ok(vec![mismatch(
                    id,
                    b,
                    MismatchKind::ReversalExceedsPaid,
                    available,
                )]);
            }
            Ok(vec![ReceivableEvent::Reversed(PaymentReversed {
                receivable_id: id,
                entry: b.entry.clone(),
                source: b.source,
                kind: *kind,
                amount_cents: b.amount,
                booking_date: b.booking_date,
                reversed_at: instant(b.booked_at),
            })])
        }
        ReceivableCommand::Settle(b, hkr_reference) => {
            if r.entries.contains(&b.entry) {
                return Ok(vec![]);
            }
            if r.settled {
                return Ok(vec![mismatch(id, b, MismatchKind::AlreadySettled, r.gross)]);
            }
            if b.amount != r.gross {
                return Ok(vec![mismatch(id, b, MismatchKind::AmountDiffers, r.gross)]);
            }
            let mut events = vec![];
            if r.net_paid().is_zero() && !r.cancelled {
                // Paid straight into the HKR (a transfer to the Kasse): the posting is the
                // payment and its match at once.
                events.push(ReceivableEvent::Received(PaymentReceived {
                    receivable_id: id,
                    entry: b.entry.clone(),
                    source: b.source,
                    amount_cents: b.amount,
                    confirmed_cents: Cents::ZERO,
                    new_cents: b.amount,
                    booking_date: b.booking_date,
                    received_at: instant(b.booked_at),
                }));
            } else if r.net_paid() != r.gross {
                return Ok(vec![mismatch(id, b, MismatchKind::NotPaid, r.net_paid())]);
            }
            events.push(ReceivableEvent::Settled(ReceivableSettled {
                receivable_id: id,
                entry: b.entry.clone(),
                hkr_reference: hkr_reference.clone(),
                amount_cents: b.amount,
                booking_date: b.booking_date,
                settled_at: instant(b.booked_at),
            }));
            Ok(events)
        }
        ReceivableCommand::FlagRefused(b) => {
            if r.entries.contains(&b.entry) {
                return Ok(vec![]);
            }
            Ok(vec![mismatch(id, b, MismatchKind::Refused, r.balance())])
        }
        ReceivableCommand::BookFee(c) => {
            if r.entries.contains(&c.entry) {
                return Ok(vec![]);
            }
            if c.amount.is_zero() {
                return Err(ReceivableError::ZeroBooking);
            }
            if let Some(tx) = &c.transaction_id {
                if !r.attempts.contains_key(tx) {
                    return Err(ReceivableError::UnknownTransaction);
                }
            }
            r.fees
                .checked_add(c.amount)
                .ok_or(ReceivableError::Overflow)?;
            Ok(vec![ReceivableEvent::FeeBooked(ProviderFeeBooked {
                receivable_id: id,
                entry: c.entry.clone(),
                transaction_id: c.transaction_id.clone(),
                amount_cents: c.amount,
                booked_at: instant(c.booked_at),
            })])
        }
        ReceivableCommand::RequestRefund(c) => {
            if r.refunds.contains_key(&c.refund_id) {
                return Err(ReceivableError::DuplicateRefund);
            }
            let available = r.net_paid().saturating_sub(r.pending_refunds());
            if c.amount.is_zero() || c.amount > available {
                return Err(ReceivableError::RefundTooLarge { available });
            }
            Ok(vec![ReceivableEvent::RefundRequested(RefundRequested {
                receivable_id: id,
                refund_id: c.refund_id,
                amount_cents: c.amount,
                requested_by: c.requested_by.clone(),
                reason: c.reason.clone(),
                requested_at: instant(c.requested_at),
            })])
        }
        ReceivableCommand::ApproveRefund(c) => {
            let refund = r
                .refunds
                .get(&c.refund_id)
                .ok_or(ReceivableError::UnknownRefund)?;
            if refund.booked {
                return Ok(vec![]);
            }
            if refund.requested_by == c.approved_by {
                return Err(ReceivableError::FourEyes);
            }
            // A reversal may have come in since the request: the refund must still fit.
            let others = r.pending_refunds().saturating_sub(refund.amount);
            let available = r.net_paid().saturating_sub(others);
            if refund.amount > available {
                return Err(ReceivableError::RefundTooLarge { available });
            }
            Ok(vec![ReceivableEvent::RefundBooked(RefundBooked {
                receivable_id: id,
                refund_id: c.refund_id,
                amount_cents: refund.amount,
                approved_by: c.approved_by.clone(),
                hkr_reference: c.hkr_reference.clone(),
                booked_at: instant(c.approved_at),
            })])
        }
        ReceivableCommand::Cancel {
            reason,
            cancelled_at,
        } => {
            if r.cancelled {
                return Ok(vec![]);
            }
            let any_paid = !r.paid.is_zero()
                || !r.refunded.is_zero()
                || r.attempts
                    .values()
                    .any(|a| a.status == AttemptStatus::Payed);
            if any_paid {
                return Err(ReceivableError::PaymentsRecorded);
            }
            Ok(vec![ReceivableEvent::Cancelled(ReceivableCancelled {
                receivable_id: id,
                reason: reason.clone(),
                cancelled_at: instant(*cancelled_at),
            })])
        }
    }
}

fn mismatch(id: ReceivableId, b: &Booking, kind: MismatchKind, expected: Cents) -> ReceivableEvent {
    ReceivableEvent::Mismatch(ReconciliationMismatchDetected {
        receivable_id: id,
        entry: b.entry.clone(),
        source: b.source,
        kind,
        expected_cents: expected,
        found_cents: b.amount,
        booking_date: b.booking_date,
        detected_at: instant(b.booked_at),
    })
}

/// Applies an event. Amounts add up saturating (decide refuses what would overflow).
pub fn evolve(state: ReceivableState, event: &ReceivableEvent) -> ReceivableState {
    let mut r = match (state, event) {
        (ReceivableState::NotRequested, ReceivableEvent::Requested(e)) => {
            return ReceivableState::Requested(Box::new(Receivable {
                id: e.receivable_id,
                mandant: e.mandant.clone(),
                bewirtschafter: e.bewirtschafter.clone(),
                kassenzeichen: e.kassenzeichen.clone(),
                gross: e.gross_cents,
                due_date: e.due_date,
                lines: e.lines.clone(),
                application_id: e.application_id,
                payer: e.payer,
                attempts: BTreeMap::new(),
                paid: Cents::ZERO,
                online_unconfirmed: Cents::ZERO,
                refunds: BTreeMap::new(),
                refunded: Cents::ZERO,
                fees: Cents::ZERO,
                reopened: false,
                settled: false,
                cancelled: false,
                mismatches: 0,
                entries: BTreeSet::new(),
                last_booking: e.requested_at.date_naive(),
                paid_on: None,
            }))
        }
        (ReceivableState::Requested(r), ReceivableEvent::Requested(_)) => {
            return ReceivableState::Requested(r)
        }
        (ReceivableState::NotRequested, _) => return ReceivableState::NotRequested,
        (ReceivableState::Requested(r), _) => r,
    };
    let add = |a: Cents, b: Cents| a.checked_add(b).unwrap_or(Cents::MAX);
    match event {
        ReceivableEvent::Requested(_) => {}
        ReceivableEvent::AttemptInitiated(e) => {
            r.attempts
                .entry(e.transaction_id.clone())
                .or_insert(Attempt {
                    request_id: e.request_id,
                    amount: e.amount_cents,
                    status: AttemptStatus::Initial,
                    method: None,
                });
        }
        ReceivableEvent::StatusVerified(e) => {
            if let Some(a) = r.attempts.get_mut(&e.transaction_id) {
                if !a.status.is_terminal() {
                    a.status = e.status;
                    a.method = e.method.or(a.method);
                    if e.status == AttemptStatus::Payed {
                        r.paid = add(r.paid, a.amount);
                        r.online_unconfirmed = add(r.online_unconfirmed, a.amount);
                        r.last_booking = r.last_booking.max(e.verified_at.date_naive());
                        if r.net_paid() >= r.gross {
                            r.reopened = false;
                            r.paid_on.get_or_insert(e.verified_at.date_naive());
                        }
                    }
                }
            }
        }
        ReceivableEvent::Received(e) => {
            if r.entries.insert(e.entry.clone()) {
                r.paid = add(r.paid, e.new_cents);
                r.online_unconfirmed = r.online_unconfirmed.saturating_sub(e.confirmed_cents);
                r.last_booking = r.last_booking.max(e.booking_date);
                if r.net_paid() >= r.gross {
                    r.reopened = false;
                    r.paid_on.get_or_insert(e.booking_date);
                }
            }
        }
        ReceivableEvent::Reversed(e) => {
            if r.entries.insert(e.entry.clone()) {
                r.paid = r.paid.saturating_sub(e.amount_cents);
                r.online_unconfirmed = r.online_unconfirmed.saturating_sub(e.amount_cents);
                r.reopened = true;
                r.settled = false;
                r.paid_on = None;
                r.last_booking = r.last_booking.max(e.booking_date);
            }
        }
        ReceivableEvent::FeeBooked(e) => {
            if r.entries.insert(e.entry.clone()) {
                r.fees = add(r.fees, e.amount_cents);
            }
        }
        ReceivableEvent::Settled(e) => {
            r.entries.insert(e.entry.clone());
            r.settled = true;
            r.last_booking = r.last_booking.max(e.booking_date);
        }
        ReceivableEvent::Mismatch(e) => {
            if r.entries.insert(e.entry.clone()) {
                r.mismatches += 1;
            }
        }
        ReceivableEvent::RefundRequested(e) => {
            r.refunds.entry(e.refund_id).or_insert(Refund {
                amount: e.amount_cents,
                requested_by: e.requested_by.clone(),
                booked: false,
            });
        }
        ReceivableEvent::RefundBooked(e) => {
            if let Some(refund) = r.refunds.get_mut(&e.refund_id) {
                if !refund.booked {
                    refund.booked = true;
                    r.refunded = add(r.refunded, refund.amount);
                    r.last_booking = r.last_booking.max(e.booked_at.date_naive());
                }
            }
        }
        ReceivableEvent::Cancelled(_) => r.cancelled = true,
    }
    ReceivableState::Requested(r)
}

decider!(ReceivableState: ReceivableCommand => ReceivableEvent, ReceivableError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DomainEvent;
    use crate::payments::testing::*;
    use crate::payments::{Buchungstext, Haushaltsstelle, Objektnummer};

    fn rid() -> ReceivableId {
        ReceivableId(uuid(0x10))
    }

    fn cents(n: i64) -> Cents {
        Cents::new(n).expect("cents")
    }

    fn reference(s: &str) -> Reference {
        Reference::parse(s).expect("reference")
    }

    fn tx(s: &str) -> TransactionId {
        TransactionId::parse(s).expect("transaction")
    }

    fn actor(s: &str) -> Actor {
        Actor::parse(s).expect("actor")
    }

    fn line(hst: &str, gross: i64, net: i64, tax: i64) -> Line {
        Line {
            haushaltsstelle: Haushaltsstelle::parse(hst).expect("hst"),
            objektnummer: Some(Objektnummer::parse("OBJ1").expect("obj")),
            href: None,
            buchungstext: Buchungstext::parse("GEBÜHR").expect("text"),
            gross_cents: cents(gross),
            net_cents: cents(net),
            tax_cents: cents(tax),
        }
    }

    fn request_with(lines: Vec<Line>, gross: i64) -> ReceivableCommand {
        ReceivableCommand::Request(RequestReceivable {
            receivable_id: rid(),
            mandant: Mandant::parse("14612000").expect("mandant"),
            bewirtschafter: Bewirtschafter::parse("b100").expect("bewirtschafter"),
            kassenzeichen: Kassenzeichen::parse("K2026000001").expect("kz"),
            assigned: false,
            gross_cents: cents(gross),
            due_date: day("2026-04-01"),
            lines,
            application_id: Some(uuid(0x99)),
            payer: SubjectId(uuid(0xa)),
            payer_name: PayerName::parse("Erika Mustermann").expect("name"),
            requested_at: at("2026-03-01T10:00:00Z"),
        })
    }

    fn request() -> ReceivableCommand {
        request_with(
            vec![
                line("1100.100", 2000, 2000, 0),
                line("1100.200", 500, 420, 80),
            ],
            2500,
        )
    }

    /// Runs the commands in order, each against the state of the events before it, and
    /// returns the state and every event.
    fn run(commands: &[ReceivableCommand]) -> (ReceivableState, Vec<ReceivableEvent>) {
        let mut state = ReceivableState::default();
        let mut all = vec![];
        for c in commands {
            let events = decide(c, &state).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            for e in &events {
                state = evolve(state, e);
            }
            all.extend(events);
        }
        (state, all)
    }

    fn receivable(state: &ReceivableState) -> &Receivable {
        state.receivable().expect("requested")
    }

    fn start(t: &str, amount: i64) -> ReceivableCommand {
        ReceivableCommand::StartAttempt(StartAttempt {
            transaction_id: tx(t),
            request_id: uuid(0x70),
            provider: reference("sim"),
            amount: cents(amount),
            started_at: at("2026-03-01T10:01:00Z"),
        })
    }

    fn pulled(t: &str, status: AttemptStatus, amount: i64) -> ReceivableCommand {
        ReceivableCommand::ApplyPull(PulledStatus {
            transaction_id: tx(t),
            status,
            method: Some(Method::Giropay),
            reference: Some(reference("PRV-1")),
            amount: cents(amount),
            pulled_at: at("2026-03-01T10:02:00Z"),
        })
    }

    fn booking(entry: &str, source: Source, amount: i64) -> Booking {
        Booking {
            entry: reference(entry),
            source,
            amount: cents(amount),
            booking_date: day("2026-03-03"),
            booked_at: at("2026-03-04T08:00:00Z"),
        }
    }

    fn refund(n: u128, amount: i64, by: &str) -> ReceivableCommand {
        ReceivableCommand::RequestRefund(RequestRefund {
            refund_id: RefundId(uuid(n)),
            amount: cents(amount),
            requested_by: actor(by),
            reason: reference("doppelt bezahlt"),
            requested_at: at("2026-03-05T09:00:00Z"),
        })
    }

    fn approve(n: u128, by: &str) -> ReceivableCommand {
        ReceivableCommand::ApproveRefund(ApproveRefund {
            refund_id: RefundId(uuid(n)),
            approved_by: actor(by),
            hkr_reference: reference("HKR-AUS-1"),
            approved_at: at("2026-03-05T10:00:00Z"),
        })
    }

    fn paid_online() -> Vec<ReceivableCommand> {
        vec![
            request(),
            start("tx1", 2500),
            pulled("tx1", AttemptStatus::Payed, 2500),
        ]
    }

    #[test]
    fn a_receivable_is_requested_with_lines_that_sum_to_its_gross_amount() {
        let (state, events) = run(&[request()]);
        assert_eq!(events.len(), 1);
        let r = receivable(&state);
        assert_eq!(r.status(), Status::Open);
        assert_eq!(r.balance(), cents(2500));
        assert_eq!(
            decide(&request(), &state),
            Err(ReceivableError::AlreadyRequested)
        );
        let empty = ReceivableState::default();
        assert_eq!(
            decide(&request_with(vec![line("1", 2000, 2000, 0)], 2500), &empty),
            Err(ReceivableError::LinesDoNotSum {
                lines: cents(2000),
                gross: cents(2500)
            })
        );
        assert_eq!(
            decide(&request_with(vec![line("1", 2500, 2000, 0)], 2500), &empty),
            Err(ReceivableError::LineParts {
                index: 0,
                gross: cents(2500),
                net: cents(2000),
                tax: cents(0)
            })
        );
        assert_eq!(
            decide(&request_with(vec![], 2500), &empty),
            Err(ReceivableError::LineCount)
        );
        let many = (0..100).map(|_| line("1", 25, 25, 0)).collect();
        assert_eq!(
            decide(&request_with(many, 2500), &empty),
            Err(ReceivableError::LineCount)
        );
        assert_eq!(
            decide(&request_with(vec![line("1", 0, 0, 0)], 0), &empty),
            Err(ReceivableError::ZeroAmount)
        );
        let huge = Cents::MAX.get();
        assert_eq!(
            decide(
                &request_with(vec![line("1", huge, huge, 0), line("2", 1, 1, 0)], 1),
                &empty
            ),
            Err(ReceivableError::Overflow)
        );
        for c in [
            start("tx1", 1),
            pulled("tx1", AttemptStatus::Payed, 1),
            refund(1, 1, "a"),
        ] {
            assert_eq!(decide(&c, &empty), Err(ReceivableError::NotRequested));
        }
    }

    #[test]
    fn a_pulled_payed_status_pays_the_receivable_once() {
        let (state, events) = run(&paid_online());
        let r = receivable(&state);
        assert_eq!(r.status(), Status::Paid);
        assert_eq!(r.balance(), Cents::ZERO);
        assert!(r.is_paid());
        assert_eq!(events.len(), 3);
        // The same (transaction, status) again records nothing.
        assert_eq!(
            decide(&pulled("tx1", AttemptStatus::Payed, 2500), &state),
            Ok(vec![])
        );
        // A terminal status is never overwritten.
        assert_eq!(
            decide(&pulled("tx1", AttemptStatus::Failed, 2500), &state),
            Err(ReceivableError::TerminalStatus {
                current: "PAYED",
                pulled: "FAILED"
            })
        );
        // And nothing more is owed.
        assert_eq!(
            decide(&start("tx2", 100), &state),
            Err(ReceivableError::NothingOwed)
        );
    }

    #[test]
    fn an_initial_status_changes_nothing_and_attempts_are_checked() {
        let (state, _) = run(&[request(), start("tx1", 2500)]);
        assert_eq!(
            decide(&pulled("tx1", AttemptStatus::Initial, 2500), &state),
            Ok(vec![])
        );
        assert_eq!(receivable(&state).status(), Status::Open);
        assert_eq!(
            decide(&pulled("tx9", AttemptStatus::Payed, 2500), &state),
            Err(ReceivableError::UnknownTransaction)
        );
        assert_eq!(
            decide(&pulled("tx1", AttemptStatus::Payed, 2400), &state),
            Err(ReceivableError::AttemptAmountDiffers {
                expected: cents(2500),
                reported: cents(2400)
            })
        );
        assert_eq!(
            decide(&start("tx1", 2500), &state),
            Err(ReceivableError::DuplicateTransaction)
        );
        assert_eq!(
            decide(&start("tx2", 2500), &state),
            Err(ReceivableError::AttemptOpen),
            "a second attempt while the first is open"
        );
        for amount in [0, 2501] {
            assert_eq!(
                decide(&start("tx2", amount), &state),
                Err(ReceivableError::AttemptAmount {
                    balance: cents(2500)
                })
            );
        }
        // A cancelled attempt leaves the receivable open for another one.
        let (state, _) = run(&[
            request(),
            start("tx1", 2500),
            pulled("tx1", AttemptStatus::Canceled, 2500),
            start("tx2", 1000),
            pulled("tx2", AttemptStatus::Payed, 1000),
        ]);
        let r = receivable(&state);
        assert_eq!(r.status(), Status::PartlyPaid);
        assert_eq!(r.balance(), cents(1500));
        assert_eq!(r.attempts[&tx("tx1")].status, AttemptStatus::Canceled);
    }

    #[test]
    fn bank_lines_confirm_online_payments_or_pay_and_book_once() {
        let mut commands = paid_online();
        commands.push(ReceivableCommand::Receive(booking(
            "B1",
            Source::Bank,
            2500,
        )));
        let (state, events) = run(&commands);
        let ReceivableEvent::Received(received) = events.last().expect("event") else {
            panic!("{events:?}")
        };
        assert_eq!(received.confirmed_cents, cents(2500));
        assert_eq!(received.new_cents, Cents::ZERO);
        let r = receivable(&state);
        assert_eq!(r.status(), Status::Paid, "the payout is no second payment");
        // The same entry again books nothing.
        assert_eq!(
            decide(
                &ReceivableCommand::Receive(booking("B1", Source::Bank, 2500)),
                &state
            ),
            Ok(vec![])
        );
        // A transfer without an online payment counts as paid; too much is overpaid.
        let (state, _) = run(&[
            request(),
            ReceivableCommand::Receive(booking("B1", Source::Bank, 2000)),
        ]);
        assert_eq!(receivable(&state).status(), Status::PartlyPaid);
        let (state, _) = run(&[
            request(),
            ReceivableCommand::Receive(booking("B1", Source::Bank, 2000)),
            ReceivableCommand::Receive(booking("B2", Source::Bank, 1000)),
        ]);
        assert_eq!(receivable(&state).status(), Status::Overpaid);
        assert_eq!(
            decide(
                &ReceivableCommand::Receive(booking("B3", Source::Bank, 0)),
                &state
            ),
            Err(ReceivableError::ZeroBooking)
        );
    }

    #[test]
    fn a_returned_debit_reopens_the_receivable() {
        let (state, _) = run(&[
            request(),
            ReceivableCommand::Receive(booking("D1", Source::Bank, 2500)),
            ReceivableCommand::Reverse(
                booking("R1", Source::Bank, 2500),
                ReversalKind::ReturnedDebit,
            ),
        ]);
        let r = receivable(&state);
        assert_eq!(r.status(), Status::Reopened);
        assert_eq!(r.balance(), cents(2500));
        assert_eq!(r.paid_on, None, "a reversal clears the day it was paid");
        // Paid again, it is paid.
        let mut s = state.clone();
        for e in decide(
            &ReceivableCommand::Receive(booking("D2", Source::Bank, 2500)),
            &s,
        )
        .expect("received")
        {
            s = evolve(s, &e);
        }
        assert_eq!(receivable(&s).status(), Status::Paid);
        assert_eq!(receivable(&s).paid_on, Some(day("2026-03-03")));
        // A reversal of more than was paid is a mismatch, and changes no amount.
        let events = decide(
            &ReceivableCommand::Reverse(booking("R2", Source::Bank, 100), ReversalKind::Chargeback),
            &state,
        )
        .expect("decided");
        let [ReceivableEvent::Mismatch(m)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(m.kind, MismatchKind::ReversalExceedsPaid);
        let after = evolve(state.clone(), &events[0]);
        assert_eq!(receivable(&after).paid, Cents::ZERO);
        assert_eq!(receivable(&after).mismatches, 1);
        // Re-imported, the same reversal books nothing.
        assert_eq!(
            decide(
                &ReceivableCommand::Reverse(
                    booking("R1", Source::Bank, 2500),
                    ReversalKind::ReturnedDebit
                ),
                &state
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn a_refused_line_is_flagged_once_and_changes_no_amount() {
        let (state, _) = run(&paid_online());
        let flag = ReceivableCommand::FlagRefused(booking("X1", Source::Bank, 0));
        let events = decide(&flag, &state).expect("decided");
        let [ReceivableEvent::Mismatch(m)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            (m.kind, m.expected_cents, m.found_cents),
            (
                MismatchKind::Refused,
                receivable(&state).balance(),
                Cents::ZERO
            )
        );
        let after = evolve(state.clone(), &events[0]);
        assert_eq!(receivable(&after).mismatches, 1);
        assert_eq!(receivable(&after).paid, receivable(&state).paid);
        assert_eq!(decide(&flag, &after), Ok(vec![]), "once per entry");
    }

    #[test]
    fn the_hkr_posting_settles_or_is_a_mismatch() {
        let hkr = |entry: &str, amount| {
            ReceivableCommand::Settle(booking(entry, Source::Hkr, amount), reference("HKR-1"))
        };
        let mut commands = paid_online();
        commands.push(hkr("H1", 2500));
        let (state, _) = run(&commands);
        assert_eq!(receivable(&state).status(), Status::Settled);
        assert_eq!(decide(&hkr("H1", 2500), &state), Ok(vec![]));
        let again = decide(&hkr("H2", 2500), &state).expect("decided");
        assert!(matches!(
            again.as_slice(),
            [ReceivableEvent::Mismatch(m)] if m.kind == MismatchKind::AlreadySettled
        ));

        // 24.50 against 25.00 is a mismatch; the receivable stays paid, not settled.
        let (state, _) = run(&paid_online());
        let events = decide(&hkr("H1", 2450), &state).expect("decided");
        let [ReceivableEvent::Mismatch(m)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            (m.kind, m.expected_cents, m.found_cents),
            (MismatchKind::AmountDiffers, cents(2500), cents(2450))
        );
        let after = evolve(state, &events[0]);
        assert_eq!(receivable(&after).status(), Status::Paid);
        assert_eq!(receivable(&after).mismatches, 1);

        // Paid straight to the Kasse: the posting pays and settles at once.
        let (state, events) = run(&[request(), hkr("H1", 2500)]);
        assert_eq!(events.len(), 3);
        assert_eq!(receivable(&state).status(), Status::Settled);

        // Partly paid: the posting does not fit.
        let (state, _) = run(&[
            request(),
            ReceivableCommand::Receive(booking("B1", Source::Bank, 1000)),
        ]);
        let events = decide(&hkr("H1", 2500), &state).expect("decided");
        assert!(matches!(
            events.as_slice(),
            [ReceivableEvent::Mismatch(m)] if m.kind == MismatchKind::NotPaid
        ));
    }

    #[test]
    fn refunds_need_four_eyes_and_never_exceed_what_was_paid() {
        let mut commands = paid_online();
        commands.push(refund(1, 1000, "clerk-a"));
        let (state, _) = run(&commands);
        let r = receivable(&state);
        assert_eq!(r.status(), Status::RefundPending);
        // Paid 25.00, 10.00 pending: at most 15.00 more.
        assert_eq!(
            decide(&refund(2, 1501, "clerk-a"), &state),
            Err(ReceivableError::RefundTooLarge {
                available: cents(1500)
            })
        );
        assert_eq!(
            decide(&refund(2, 0, "clerk-a"), &state),
            Err(ReceivableError::RefundTooLarge {
                available: cents(1500)
            })
        );
        assert_eq!(
            decide(&refund(1, 100, "clerk-a"), &state),
            Err(ReceivableError::DuplicateRefund)
        );
        assert_eq!(
            decide(&approve(1, "clerk-a"), &state),
            Err(ReceivableError::FourEyes)
        );
        assert_eq!(
            decide(&approve(9, "clerk-b"), &state),
            Err(ReceivableError::UnknownRefund)
        );
        let events = decide(&approve(1, "clerk-b"), &state).expect("approved");
        let state = evolve(state, &events[0]);
        let r = receivable(&state);
        assert_eq!(r.refunded, cents(1000));
        assert_eq!(r.status(), Status::PartlyPaid);
        assert_eq!(decide(&approve(1, "clerk-b"), &state), Ok(vec![]));

        // The rest refunded: the receivable is refunded.
        let mut commands = paid_online();
        commands.extend([refund(1, 2500, "clerk-a"), approve(1, "clerk-b")]);
        let (state, _) = run(&commands);
        assert_eq!(receivable(&state).status(), Status::Refunded);
        assert_eq!(
            decide(&refund(2, 1, "clerk-a"), &state),
            Err(ReceivableError::RefundTooLarge {
                available: Cents::ZERO
            })
        );

        // A chargeback between request and approval: the refund no longer fits.
        let mut commands = paid_online();
        commands.extend([
            refund(1, 2500, "clerk-a"),
            ReceivableCommand::Reverse(booking("C1", Source::Bank, 2500), ReversalKind::Chargeback),
        ]);
        let (state, _) = run(&commands);
        assert_eq!(
            decide(&approve(1, "clerk-b"), &state),
            Err(ReceivableError::RefundTooLarge {
                available: Cents::ZERO
            })
        );
    }

    #[test]
    fn a_receivable_is_cancelled_only_while_nothing_was_paid() {
        let cancel = ReceivableCommand::Cancel {
            reason: reference("Antrag zurückgenommen"),
            cancelled_at: at("2026-03-02T10:00:00Z"),
        };
        let (state, _) = run(&[request(), start("tx1", 2500), cancel.clone()]);
        let r = receivable(&state);
        assert_eq!(r.status(), Status::Cancelled);
        assert_eq!(r.balance(), Cents::ZERO);
        assert_eq!(decide(&cancel, &state), Ok(vec![]));
        assert_eq!(
            decide(&start("tx2", 100), &state),
            Err(ReceivableError::Cancelled)
        );
        // The payer finished the attempt anyway: the money is recorded and owed back.
        let events = decide(&pulled("tx1", AttemptStatus::Payed, 2500), &state).expect("verified");
        let state = evolve(state, &events[0]);
        assert_eq!(receivable(&state).status(), Status::Overpaid);

        let mut commands = paid_online();
        commands.push(cancel.clone());
        let state = {
            let mut s = ReceivableState::default();
            for c in &commands[..3] {
                for e in decide(c, &s).expect("decided") {
                    s = evolve(s, &e);
                }
            }
            s
        };
        assert_eq!(
            decide(&cancel, &state),
            Err(ReceivableError::PaymentsRecorded)
        );
    }

    #[test]
    fn fees_are_booked_apart_from_the_receivable() {
        let mut commands = paid_online();
        commands.push(ReceivableCommand::BookFee(BookFee {
            entry: reference("FEE-1"),
            transaction_id: Some(tx("tx1")),
            amount: cents(35),
            booked_at: at("2026-03-04T08:00:00Z"),
        }));
        let (state, _) = run(&commands);
        let r = receivable(&state);
        assert_eq!(r.fees, cents(35));
        assert_eq!(r.paid, cents(2500), "gross: the fee is not netted");
        assert_eq!(r.status(), Status::Paid);
        let unknown = ReceivableCommand::BookFee(BookFee {
            entry: reference("FEE-2"),
            transaction_id: Some(tx("tx9")),
            amount: cents(35),
            booked_at: at("2026-03-04T08:00:00Z"),
        });
        assert_eq!(
            decide(&unknown, &state),
            Err(ReceivableError::UnknownTransaction)
        );
    }

    #[test]
    fn the_last_cash_booking_dates_the_retention() {
        let mut commands = paid_online();
        commands.push(ReceivableCommand::Receive(Booking {
            booking_date: day("2027-01-04"),
            ..booking("B1", Source::Bank, 100)
        }));
        let (state, _) = run(&commands);
        let r = receivable(&state);
        assert_eq!(r.last_booking, day("2027-01-04"));
        // Booked last in 2027, accounts adopted in 2028: kept until 1 January 2039.
        assert_eq!(r.retention_until(1), Some(at("2039-01-01T00:00:00Z")));
        assert_eq!(r.retention_until(0), Some(at("2039-01-01T00:00:00Z")));
        assert_eq!(r.retention_until(3), Some(at("2041-01-01T00:00:00Z")));
        assert_eq!(r.paid_on, Some(day("2026-03-01")), "paid online on the 1st");
    }

    #[test]
    fn a_receivable_is_finished_once_settled_refunded_or_cancelled() {
        let hkr = ReceivableCommand::Settle(booking("H1", Source::Hkr, 2500), reference("HKR-1"));
        let cancel = ReceivableCommand::Cancel {
            reason: reference("Antrag zurückgenommen"),
            cancelled_at: at("2026-03-02T10:00:00Z"),
        };
        let finished = |commands: &[ReceivableCommand]| receivable(&run(commands).0).is_finished();
        assert!(!finished(&[request()]), "open");
        assert!(!finished(&paid_online()), "paid, not yet settled");
        let mut settled = paid_online();
        settled.push(hkr);
        assert!(finished(&settled), "settled");
        assert!(finished(&[request(), cancel]), "cancelled unpaid");
        let mut refunded = paid_online();
        refunded.push(refund(1, 2500, "clerk-a"));
        assert!(!finished(&refunded), "refund pending");
        refunded.push(approve(1, "clerk-b"));
        assert!(finished(&refunded), "refunded in full");
        let mut partly = paid_online();
        partly.extend([refund(1, 1000, "clerk-a"), approve(1, "clerk-b")]);
        assert!(!finished(&partly), "partly refunded: money is still held");
    }

    #[test]
    fn events_are_stored_with_the_payer_sealed() {
        let (_, events) = run(&[request()]);
        let ReceivableEvent::Requested(requested) = &events[0] else {
            unreachable!()
        };
        assert_eq!(events[0].data_subject(), Some(SubjectId(uuid(0xa))));
        assert_eq!(events[0].stream_id(), rid().stream_id());
        snapshot(
            &events[0],
            "ReceivableRequested",
            r#"{"application_id":"0193a1b2-0000-7000-8000-000000000099","bewirtschafter":"b100","due_date":"2026-04-01","gross_cents":2500,"kassenzeichen":"K2026000001","kassenzeichen_assigned":false,"lines":[{"buchungstext":"GEBÜHR","gross_cents":2000,"haushaltsstelle":"1100.100","net_cents":2000,"objektnummer":"OBJ1","tax_cents":0},{"buchungstext":"GEBÜHR","gross_cents":500,"haushaltsstelle":"1100.200","net_cents":420,"objektnummer":"OBJ1","tax_cents":80}],"mandant":"14612000","payer":"0193a1b2-0000-7000-8000-00000000000a","receivable_id":"0193a1b2-0000-7000-8000-000000000010","requested_at":"2026-03-01T10:00:00.000000Z"}"#,
            Some(r#"{"payer_name":"Erika Mustermann"}"#),
        );
        assert!(!format!("{requested:?}").contains("Mustermann"));

        let (_, events) = run(&paid_online());
        snapshot(
            &events[2],
            "PaymentStatusVerified",
            r#"{"amount_cents":2500,"method":"GIROPAY","receivable_id":"0193a1b2-0000-7000-8000-000000000010","reference":"PRV-1","status":"PAYED","transaction_id":"tx1","verified_at":"2026-03-01T10:02:00.000000Z"}"#,
            None,
        );
        assert_eq!(events[2].data_subject(), None);
        // Every event type reads back from its parts.
        let mut commands = paid_online();
        commands.extend([
            ReceivableCommand::Receive(booking("B1", Source::Bank, 2500)),
            ReceivableCommand::BookFee(BookFee {
                entry: reference("FEE-1"),
                transaction_id: None,
                amount: cents(35),
                booked_at: at("2026-03-04T08:00:00Z"),
            }),
            ReceivableCommand::Settle(booking("H1", Source::Hkr, 2450), reference("HKR-1")),
            ReceivableCommand::Settle(booking("H2", Source::Hkr, 2500), reference("HKR-2")),
            refund(1, 500, "clerk-a"),
            approve(1, "clerk-b"),
            ReceivableCommand::Reverse(booking("C1", Source::Bank, 100), ReversalKind::Chargeback),
        ]);
        let (_, events) = run(&commands);
        let mut types = BTreeSet::new();
        for e in &events {
            let parts = e.to_parts().expect("parts");
            types.insert(parts.event_type.as_str().to_owned());
            let back = ReceivableEvent::from_parts(
                &parts.event_type,
                &parts.data,
                parts.personal.as_ref(),
            )
            .expect("back");
            assert_eq!(&back, e);
        }
        assert_eq!(types.len(), 10, "{types:?}");
    }

    #[test]
    fn stored_forms_are_read_strictly() {
        let (_, events) = run(&paid_online());
        let parts = events[2].to_parts().expect("parts");
        let mut extra = parts.data.clone();
        extra["note"] = serde_json::json!("x");
        assert!(ReceivableEvent::from_parts(&parts.event_type, &extra, None).is_err());
        let mut fractional = parts.data.clone();
        fractional["amount_cents"] = serde_json::json!(25.5);
        assert!(ReceivableEvent::from_parts(&parts.event_type, &fractional, None).is_err());
        assert_eq!(
            ReceivableEvent::from_parts(
                &parts.event_type,
                &parts.data,
                Some(&serde_json::json!({}))
            ),
            Err(PartsError::UnexpectedPersonal {
                event_type: "PaymentStatusVerified"
            })
        );
        // The payer's name erased, the event still reads.
        let requested = events[0].to_parts().expect("parts");
        let ReceivableEvent::Requested(e) =
            ReceivableEvent::from_parts(&requested.event_type, &requested.data, None)
                .expect("erased")
        else {
            unreachable!()
        };
        assert!(e.payer_name.is_erased());
        let unknown = EventType::parse("PaymentTeleported").expect("type");
        assert!(matches!(
            ReceivableEvent::from_parts(&unknown, &parts.data, None),
            Err(PartsError::UnknownEventType(_))
        ));
    }
}
