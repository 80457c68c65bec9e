//! The payments domain core: receivables (Sollstellungen) with their Kassenzeichen, the
//! payment attempts of an XBezahldienste provider, fees, refunds and the bookings that
//! bank statements and the HKR report, as pure deciders; and the parsers of those
//! statements.
//!
//! Saxony's Zahlungsverkehr component (ePayBL) sits between an online service, a payment
//! provider and the budget, cash and accounting system (HKR). What the module holds to:
//!
//! - amounts are integer euro cents ([`Cents`]), never negative, never fractional; a
//!   receivable's lines sum to its gross amount;
//! - a Kassenzeichen is 2–30 ASCII letters and digits and unique per Mandant: its claim is
//!   a stream of its own ([`claim`]), derived from Mandant and Kassenzeichen, which can be
//!   created once;
//! - a payment attempt's status (XBezahldienste `INITIAL → PAYED | CANCELED | FAILED`) is
//!   believed only when Amtsbuch pulled it from the provider; the command that applies it
//!   is built from the pull's answer, never from a redirect or a callback. A terminal
//!   status is never overwritten and the same status twice records nothing;
//! - gross settlement: provider fees are events of their own and never reduce what the
//!   payer owes or paid;
//! - refunds never exceed paid minus refunded (minus refunds still pending) and need a
//!   second person to approve them;
//! - cash records are kept (books ten years, vouchers six) from the 1 January after the
//!   annual accounts of the year they were booked in ([`retention_until`]).

pub mod camt;
pub mod claim;
pub mod fees;
pub mod hkr;
pub mod receivable;
pub mod reconcile;

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::newtype::{text, token, uuid_id, TextError};
use crate::record::truncate_micros;

uuid_id!(
    /// A receivable (Sollstellung); each is its own stream `receivable-<uuid>`. Its
    /// payment attempts, bookings and refunds are events of the same stream, so that every
    /// rule about what was paid and refunded is decided on one state.
    ReceivableId,
    stream = "receivable"
);
uuid_id!(
    /// A refund of a receivable.
    RefundId
);

impl ReceivableId {
    /// The receivable a request with an `Idempotency-Key` creates: derived from the caller
    /// and the key (SHA-256, shaped as a UUID of version 8), so the same request sent
    /// again by the same caller names the same receivable and creates nothing new, while
    /// another caller's equal key names another one.
    pub fn for_idempotency_key(caller: &str, key: &str) -> ReceivableId {
        let mut input = Vec::with_capacity(caller.len() + key.len() + 32);
        input.extend_from_slice(b"amtsbuch:receivable\0");
        input.extend_from_slice(caller.as_bytes());
        input.push(0);
        input.extend_from_slice(key.as_bytes());
        let hash = ring::digest::digest(&ring::digest::SHA256, &input);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.as_ref()[..16]);
        ReceivableId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

token!(
    /// The Mandant (tenant) in the payment platform, e.g. `14612000` or `sk-sachsen`.
    Mandant,
    "mandant",
    36
);
token!(
    /// The Bewirtschafter (budget manager) under which a receivable is monitored; ePayBL
    /// allows eight characters.
    Bewirtschafter,
    "bewirtschafter",
    8
);
token!(
    /// Who acted, as the caller's pseudonymous principal id: the requester and the
    /// approver of a refund must differ.
    Actor,
    "actor",
    128
);
text!(
    /// A non-personal reference of an outside system: an HKR posting reference, a bank
    /// entry reference, the provider's transaction reference.
    Reference,
    "reference",
    140
);
text!(
    /// The payer's name as the provider's payment page shows it; personal data, held only
    /// in [`crate::event::Personal`].
    PayerName,
    "payer name",
    200
);

/// An amount in euro cents, never negative. JSON spells it as an integer, so a fractional
/// or negative amount is refused where it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(transparent)]
pub struct Cents(i64);

impl Cents {
    pub const ZERO: Cents = Cents(0);
    /// decimal(15,2), the widest amount ePayBL carries: 13 digits of euros.
    pub const MAX: Cents = Cents(999_999_999_999_999);

    pub fn new(cents: i64) -> Result<Self, AmountError> {
        if cents < 0 {
            Err(AmountError::Negative)
        } else if cents > Self::MAX.0 {
            Err(AmountError::TooLarge)
        } else {
            Ok(Cents(cents))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0
            .checked_add(other.0)
            .filter(|c| *c <= Self::MAX.0)
            .map(Cents)
    }

    /// `self − other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Cents) -> Cents {
        Cents((self.0 - other.0).max(0))
    }

    /// Reads an amount written in euros with exactly two decimals (`25.00`, `-3.10` is
    /// refused), as bank statements and the HKR write it. Returns `None` for any other
    /// spelling.
    pub fn parse_decimal(s: &str) -> Option<Cents> {
        let (euros, cents) = s.split_once('.')?;
        if euros.is_empty()
            || euros.len() > 13
            || cents.len() != 2
            || !euros.bytes().all(|b| b.is_ascii_digit())
            || !cents.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let e: i64 = euros.parse().ok()?;
        let c: i64 = cents.parse().ok()?;
        Cents::new(e.checked_mul(100)?.checked_add(c)?).ok()
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        Cents::new(v).map_err(serde::de::Error::custom)
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("an amount must not be negative")]
    Negative,
    #[error("an amount must be at most 9999999999999.99 EUR")]
    TooLarge,
}

/// A Kassenzeichen: the payment reference of one receivable, 2–30 ASCII letters and digits,
/// unique per Mandant. Amtsbuch assigns a numeric one of twelve digits, the last a check
/// digit, unless the caller supplies one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Kassenzeichen(String);

impl Kassenzeichen {
    /// The length of an assigned Kassenzeichen (ePayBL's default), check digit included.
    pub const ASSIGNED_LEN: usize = 12;

    pub fn parse(s: &str) -> Result<Self, TextError> {
        let ok = (2..=30).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Kassenzeichen(s.to_owned()))
        } else {
            Err(TextError::Invalid {
                kind: "kassenzeichen",
                max: 30,
                rule: "2 to 30 ASCII letters and digits",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Kassenzeichen Amtsbuch assigns to `receivable` on its `attempt`-th try (a try
    /// fails when the number is already claimed in the Mandant): eleven digits derived
    /// from the receivable id, and a check digit. The same receivable and try always give
    /// the same Kassenzeichen, so a retried request claims the same one.
    pub fn assign(receivable: ReceivableId, attempt: u32) -> Kassenzeichen {
        let mixed =
            receivable.0.as_u128() ^ (u128::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let body = format!("{:011}", mixed % 100_000_000_000);
        let check = check_digit(&body);
        Kassenzeichen(format!("{body}{check}"))
    }

    /// Whether the Kassenzeichen is numeric and its last digit is the check digit of the
    /// others (the form Amtsbuch assigns).
    pub fn has_valid_check_digit(&self) -> bool {
        let s = self.0.as_str();
        let Some((body, last)) = s.split_at_checked(s.len() - 1) else {
            return false;
        };
        s.bytes().all(|b| b.is_ascii_digit()) && last.as_bytes()[0] - b'0' == check_digit(body)
    }
}

impl fmt::Display for Kassenzeichen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Kassenzeichen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The check digit of a numeric Kassenzeichen body: modulus 10 with the weights 2 and 1
/// from the right (the Luhn procedure), which catches every single-digit error and almost
/// every transposition of neighbours. An HKR that uses another procedure is configured to
/// supply its own Kassenzeichen.
pub fn check_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// An HKR booking key (Haushaltsstelle, Objektnummer): 1 to 10 ASCII letters, digits, `.`
/// and `-`, as the F15 booking line carries it.
macro_rules! booking_key {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, TextError> {
                let ok = (1..=10).contains(&s.len())
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(TextError::Invalid {
                        kind: $kind,
                        max: 10,
                        rule: "ASCII letters, digits, '.' and '-'",
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

booking_key!(
    /// The Haushaltsstelle (budget line) a booking line is posted to.
    Haushaltsstelle,
    "haushaltsstelle"
);
booking_key!(
    /// The Objektnummer of a booking line.
    Objektnummer,
    "objektnummer"
);

/// The posting text of a booking line: up to 120 characters of the set the HKR accepts,
/// `A–Z 0–9 , . : / + & - * $ % Ä Ö Ü ß` and the space, not starting or ending with a space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Buchungstext(String);

impl Buchungstext {
    pub fn parse(s: &str) -> Result<Self, TextError> {
        let ok = !s.is_empty()
            && s.chars().count() <= 120
            && s.trim() == s
            && s.chars().all(|c| {
                c.is_ascii_uppercase() || c.is_ascii_digit() || ",.:/+&-*$% ÄÖÜß".contains(c)
            });
        if ok {
            Ok(Buchungstext(s.to_owned()))
        } else {
            Err(TextError::Invalid {
                kind: "buchungstext",
                max: 120,
                rule: "A-Z 0-9 , . : / + & - * $ % Ä Ö Ü ß and inner spaces",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Buchungstext {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

text!(
    /// An HREF posting reference (the "Rucksackdatensatz" passed on to payment
    /// monitoring), e.g. `stsl=A1;psp=gsb:1,kst:2;`.
    Href,
    "href",
    255
);

/// One booking line of a receivable: where its part of the amount is posted in the HKR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub haushaltsstelle: Haushaltsstelle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objektnummer: Option<Objektnummer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<Href>,
    pub buchungstext: Buchungstext,
    pub gross_cents: Cents,
    pub net_cents: Cents,
    pub tax_cents: Cents,
}

/// The most lines a receivable has (XBezahldienste allows 1 to 99 items).
pub const MAX_LINES: usize = 99;

/// The payment methods of XBezahldienste, and SEPA direct debit for the HKR path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Method {
    Giropay,
    Paydirect,
    Creditcard,
    Paypal,
    Other,
    SepaDirectDebit,
}

/// The status of a payment attempt in XBezahldienste.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptStatus {
    /// The transaction exists; the payer is still on the payment page.
    Initial,
    /// Paid (the online part: later chargebacks are not reflected here).
    Payed,
    /// The payer aborted.
    Canceled,
    /// The provider aborted (fraud detection, a method's timeout).
    Failed,
}

impl AttemptStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Initial)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "INITIAL",
            Self::Payed => "PAYED",
            Self::Canceled => "CANCELED",
            Self::Failed => "FAILED",
        }
    }
}

/// A provider's transaction id: 1 to 64 ASCII letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TransactionId(String);

impl TransactionId {
    pub fn parse(s: &str) -> Result<Self, TextError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(TransactionId(s.to_owned()))
        } else {
            Err(TextError::Invalid {
                kind: "transaction id",
                max: 64,
                rule: "ASCII letters, digits, '-', '_' and '.'",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TransactionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a booking came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A bank statement (camt.053 / camt.054).
    Bank,
    /// The HKR's postings.
    Hkr,
}

/// Which statutory retention period a cash record falls under (KomKVO § 35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CashRecord {
    /// Books (the cash book, the Sollbuch): ten years.
    Book,
    /// Vouchers (Belege): six years.
    Voucher,
}

impl CashRecord {
    pub fn years(self) -> i32 {
        match self {
            Self::Book => 10,
            Self::Voucher => 6,
        }
    }
}

/// The end of the retention period of a cash record booked on `booked_on`, whose budget
/// year's annual accounts are adopted in the year `accounts_adopted_in` (at the earliest
/// the year after the budget year): the period starts on the 1 January after the accounts
/// and lasts `kind.years()`. The record may be destroyed from the instant returned
/// (midnight UTC of that 1 January). `None` when the accounts year is before the next
/// budget year or the date lies outside the calendar chrono represents.
pub fn retention_until(
    booked_on: NaiveDate,
    accounts_adopted_in: i32,
    kind: CashRecord,
) -> Option<DateTime<Utc>> {
    if accounts_adopted_in <= booked_on.year() {
        return None;
    }
    let end = NaiveDate::from_ymd_opt(accounts_adopted_in + 1 + kind.years(), 1, 1)?;
    Some(end.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Truncates an instant to the microseconds the record format keeps, so an event decided
/// in memory equals the same event read back from the log.
fn instant(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the tests of the payments aggregates.

    use std::fmt;

    use chrono::{DateTime, NaiveDate, Utc};
    use serde_json::Value;
    use uuid::Uuid;

    use crate::event::DomainEvent;

    /// An instant from RFC 3339 text.
    pub fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    pub fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    pub fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(0x0193_a1b2_0000_7000_8000_0000_0000_0000 | n)
    }

    /// Checks an event's stored form: type, canonical `data` and `personal`, and that it
    /// reads back as the same event.
    pub fn snapshot<E: DomainEvent + PartialEq + fmt::Debug>(
        event: &E,
        event_type: &str,
        data: &str,
        personal: Option<&str>,
    ) {
        let parts = event.to_parts().expect("parts");
        assert_eq!(parts.event_type.as_str(), event_type);
        assert_eq!(event.event_type(), event_type);
        let canonical =
            |v: &Value| String::from_utf8(crate::jcs::canonicalize(v).expect("jcs")).expect("utf8");
        assert_eq!(canonical(&parts.data), data, "data of {event_type}");
        assert_eq!(
            parts.personal.as_ref().map(canonical).as_deref(),
            personal,
            "personal part of {event_type}"
        );
        assert_eq!(
            E::carries_personal_data(event_type),
            personal.is_some(),
            "carries_personal_data({event_type})"
        );
        let back = E::from_parts(&parts.event_type, &parts.data, parts.personal.as_ref())
            .expect("from parts");
        assert_eq!(&back, event, "{event_type} reads back unchanged");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn amounts_are_whole_non_negative_cents() {
        assert_eq!(Cents::new(2500).map(Cents::get), Ok(2500));
        assert_eq!(Cents::new(-1), Err(AmountError::Negative));
        assert_eq!(Cents::new(Cents::MAX.get() + 1), Err(AmountError::TooLarge));
        assert_eq!(
            serde_json::from_str::<Cents>("2500").ok(),
            Some(Cents(2500))
        );
        for bad in ["-1", "25.5", "2.5e3", "\"25\"", "1e20"] {
            assert!(serde_json::from_str::<Cents>(bad).is_err(), "{bad}");
        }
        assert_eq!(Cents(2450).to_string(), "24.50");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents::parse_decimal("24.50"), Some(Cents(2450)));
        assert_eq!(Cents::parse_decimal("0.05"), Some(Cents(5)));
        for bad in [
            "24.5",
            "24",
            "-1.00",
            "1,00",
            ".50",
            "1.005",
            "+1.00",
            "12345678901234.00",
        ] {
            assert_eq!(Cents::parse_decimal(bad), None, "{bad}");
        }
        assert_eq!(Cents(1).checked_add(Cents::MAX), None);
        assert_eq!(Cents(1).saturating_sub(Cents(3)), Cents::ZERO);
    }

    #[test]
    fn kassenzeichen_are_short_alphanumerics_and_assigned_with_a_check_digit() {
        for good in ["AB", "2026000123", "K12X", &"9".repeat(30)] {
            assert!(Kassenzeichen::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "A", &"9".repeat(31), "12-34", "12 34", "Ä1"] {
            assert!(Kassenzeichen::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_value::<Kassenzeichen>(bad.into()).is_err());
        }
        let id = ReceivableId(uuid(5));
        let kz = Kassenzeichen::assign(id, 0);
        assert_eq!(kz.as_str().len(), Kassenzeichen::ASSIGNED_LEN);
        assert!(kz.has_valid_check_digit(), "{kz}");
        assert_eq!(
            Kassenzeichen::assign(id, 0),
            kz,
            "the same try gives the same number"
        );
        assert_ne!(
            Kassenzeichen::assign(id, 1),
            kz,
            "a retry gives another number"
        );
        // Every single-digit error is caught.
        let digits = kz.as_str().as_bytes().to_vec();
        for i in 0..digits.len() {
            for d in b'0'..=b'9' {
                if d == digits[i] {
                    continue;
                }
                let mut wrong = digits.clone();
                wrong[i] = d;
                let wrong = Kassenzeichen::parse(std::str::from_utf8(&wrong).expect("ascii"))
                    .expect("kassenzeichen");
                assert!(!wrong.has_valid_check_digit(), "{wrong}");
            }
        }
        // The Luhn example: 7992739871 has the check digit 3.
        assert_eq!(check_digit("7992739871"), 3);
        assert!(!Kassenzeichen::parse("AB")
            .expect("kz")
            .has_valid_check_digit());
    }

    #[test]
    fn an_idempotency_key_names_one_receivable_per_caller() {
        let a = ReceivableId::for_idempotency_key("fachverfahren:bauamt", "k-1");
        assert_eq!(
            a,
            ReceivableId::for_idempotency_key("fachverfahren:bauamt", "k-1")
        );
        assert_ne!(
            a,
            ReceivableId::for_idempotency_key("fachverfahren:bauamt", "k-2")
        );
        assert_ne!(
            a,
            ReceivableId::for_idempotency_key("fachverfahren:kita", "k-1")
        );
        // No concatenation ambiguity between caller and key.
        assert_ne!(
            ReceivableId::for_idempotency_key("a", "bc"),
            ReceivableId::for_idempotency_key("ab", "c")
        );
        assert_eq!(a.0.get_version_num(), 8);
    }

    #[test]
    fn booking_keys_and_texts_are_checked() {
        assert!(Haushaltsstelle::parse("1100.12345").is_ok());
        assert!(Objektnummer::parse("OBJ-7").is_ok());
        for bad in ["", "12345678901", "11 00", "ü"] {
            assert!(Haushaltsstelle::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Buchungstext::parse("GEBÜHR BAUANTRAG 2026/17 & AUSLAGEN").is_ok());
        for bad in ["", "gebühr", " X", "X ", "A;B", &"A".repeat(121)] {
            assert!(Buchungstext::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TransactionId::parse("tx-0001_a.b").is_ok());
        for bad in ["", "a b", "ä", &"a".repeat(65)] {
            assert!(TransactionId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn statuses_speak_xbezahldienste() {
        for (status, name) in [
            (AttemptStatus::Initial, "INITIAL"),
            (AttemptStatus::Payed, "PAYED"),
            (AttemptStatus::Canceled, "CANCELED"),
            (AttemptStatus::Failed, "FAILED"),
        ] {
            assert_eq!(serde_json::to_value(status).expect("json"), name);
            assert_eq!(status.as_str(), name);
            assert_eq!(status.is_terminal(), status != AttemptStatus::Initial);
        }
        assert_eq!(
            serde_json::to_value(Method::SepaDirectDebit).expect("json"),
            "SEPA_DIRECT_DEBIT"
        );
        assert!(serde_json::from_value::<Method>("giropay".into()).is_err());
    }

    #[test]
    fn cash_records_are_kept_from_the_january_after_the_annual_accounts() {
        // Booked in 2026, accounts adopted in 2027: kept from 1 Jan 2028, ten or six years.
        assert_eq!(
            retention_until(day("2026-03-01"), 2027, CashRecord::Book),
            Some(at("2038-01-01T00:00:00Z"))
        );
        assert_eq!(
            retention_until(day("2026-12-31"), 2027, CashRecord::Voucher),
            Some(at("2034-01-01T00:00:00Z"))
        );
        // Late accounts push the end out.
        assert_eq!(
            retention_until(day("2026-03-01"), 2029, CashRecord::Book),
            Some(at("2040-01-01T00:00:00Z"))
        );
        assert_eq!(
            retention_until(day("2026-03-01"), 2026, CashRecord::Book),
            None
        );
    }
}
