//! Reconciliation: the lines of bank statements ([`super::camt`]) and HKR postings
//! ([`super::hkr`]) matched to receivables by Kassenzeichen and amount, each turned into
//! the receivable command it books, or left unmatched for the worklist.
//!
//! Matching needs only a lookup from Kassenzeichen to the receivable and what it still
//! owes, so it is one hash lookup per line; the receivable's decider then books, confirms,
//! reverses or flags the line, and remembers its entry so that a re-import books nothing.

use chrono::{DateTime, NaiveDate, Utc};

use super::hkr::{Posting, PostingKind};
use super::receivable::{BookFee, Booking, ReceivableCommand, ReversalKind};
use super::{Cents, Haushaltsstelle, Kassenzeichen, ReceivableId, Reference, Source};

/// What a statement line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Money in: a transfer, a direct debit collected, a provider's payout.
    Credit,
    /// Money back out: a chargeback or a returned debit.
    Reversal(ReversalKind),
    /// A charge of the bank or provider (booked as a fee, never netted).
    Fee,
    /// The HKR's Ist-Buchung of a receivable.
    HkrIst,
}

/// One line of a statement or HKR file, in the shape matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// Where the line is in its file, for messages (`line 12` or `Ntry 3`).
    pub position: String,
    /// The entry's stable reference in its source; the same file gives the same ones.
    pub entry: Reference,
    pub source: Source,
    pub kind: LineKind,
    pub amount: Cents,
    pub booking_date: NaiveDate,
    /// The Kassenzeichen, where the file names it in a field of its own.
    pub kassenzeichen: Option<Kassenzeichen>,
    /// Words of the remittance information that may be the Kassenzeichen.
    pub candidates: Vec<Kassenzeichen>,
    /// The HKR's voucher reference (HKR lines).
    pub hkr_reference: Option<Reference>,
    /// The Haushaltsstelle the HKR booked to (HKR lines).
    pub haushaltsstelle: Option<Haushaltsstelle>,
}

impl StatementLine {
    /// The line of an HKR posting.
    pub fn from_posting(p: &Posting) -> StatementLine {
        StatementLine {
            position: format!("line {}", p.line),
            entry: p.id.clone(),
            source: Source::Hkr,
            kind: match p.kind {
                PostingKind::Ist => LineKind::HkrIst,
                PostingKind::Rueck => LineKind::Reversal(ReversalKind::ReturnedDebit),
            },
            amount: p.amount,
            booking_date: p.booking_date,
            kassenzeichen: Some(p.kassenzeichen.clone()),
            candidates: vec![],
            hkr_reference: Some(p.hkr_reference.clone()),
            haushaltsstelle: Some(p.haushaltsstelle.clone()),
        }
    }
}

/// What the lookup knows of a receivable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub receivable_id: ReceivableId,
    /// What is still owed.
    pub balance: Cents,
}

/// Why a line matched no receivable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// The line names no Kassenzeichen at all.
    NoKassenzeichen,
    /// It names one, but no receivable of the Mandant has it.
    UnknownKassenzeichen,
}

/// What to do with a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run `command` on the receivable. `amount_differs` says a credit's amount is not
    /// what the receivable still owed (booked all the same: partly paid or overpaid).
    Book {
        kassenzeichen: Kassenzeichen,
        receivable_id: ReceivableId,
        command: Box<ReceivableCommand>,
        amount_differs: bool,
    },
    Unmatched(Unmatched),
}

/// Matches one line. `lookup` finds the receivable of a Kassenzeichen in the Mandant the
/// file is imported for; `now` is the instant the bookings are recorded.
pub fn match_line(
    line: &StatementLine,
    lookup: impl Fn(&Kassenzeichen) -> Option<Target>,
    now: DateTime<Utc>,
) -> Decision {
    let found = match &line.kassenzeichen {
        Some(kz) => lookup(kz).map(|t| (kz.clone(), t)),
        None => line
            .candidates
            .iter()
            .find_map(|kz| lookup(kz).map(|t| (kz.clone(), t))),
    };
    let Some((kassenzeichen, target)) = found else {
        return Decision::Unmatched(
            if line.kassenzeichen.is_none() && line.candidates.is_empty() {
                Unmatched::NoKassenzeichen
            } else {
                Unmatched::UnknownKassenzeichen
            },
        );
    };
    let booking = Booking {
        entry: line.entry.clone(),
        source: line.source,
        amount: line.amount,
        booking_date: line.booking_date,
        booked_at: now,
    };
    let (command, amount_differs) = match line.kind {
        LineKind::Credit => (
            ReceivableCommand::Receive(booking),
            line.amount != target.balance,
        ),
        LineKind::Reversal(kind) => (ReceivableCommand::Reverse(booking, kind), false),
        LineKind::Fee => (
            ReceivableCommand::BookFee(BookFee {
                entry: line.entry.clone(),
                transaction_id: None,
                amount: line.amount,
                booked_at: now,
            }),
            false,
        ),
        LineKind::HkrIst => {
            let reference = line
                .hkr_reference
                .clone()
                .unwrap_or_else(|| line.entry.clone());
            (ReceivableCommand::Settle(booking, reference), false)
        }
    };
    Decision::Book {
        kassenzeichen,
        receivable_id: target.receivable_id,
        command: Box::new(command),
        amount_differs,
    }
}

/// The words of a remittance text that can be a Kassenzeichen: runs of ASCII letters and
/// digits, 2 to 30 long, containing a digit.
pub fn candidates(text: &str) -> Vec<Kassenzeichen> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.bytes().any(|b| b.is_ascii_digit()))
        .filter_map(|w| Kassenzeichen::parse(w).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::testing::*;

    fn kz(s: &str) -> Kassenzeichen {
        Kassenzeichen::parse(s).expect("kz")
    }

    fn line(kind: LineKind, amount: i64, kassenzeichen: Option<&str>, text: &str) -> StatementLine {
        StatementLine {
            position: "Ntry 1".into(),
            entry: Reference::parse("E1").expect("entry"),
            source: Source::Bank,
            kind,
            amount: Cents::new(amount).expect("cents"),
            booking_date: day("2026-03-03"),
            kassenzeichen: kassenzeichen.map(kz),
            candidates: candidates(text),
            hkr_reference: None,
            haushaltsstelle: None,
        }
    }

    fn lookup(k: &Kassenzeichen) -> Option<Target> {
        (k.as_str() == "202600000013").then_some(Target {
            receivable_id: ReceivableId(uuid(1)),
            balance: Cents::new(2500).expect("cents"),
        })
    }

    #[test]
    fn lines_match_by_kassenzeichen_and_amount() {
        let now = at("2026-03-04T08:00:00Z");
        let by_text = line(
            LineKind::Credit,
            2500,
            None,
            "KZ 202600000013 Gebuehr Bauantrag 2026",
        );
        let Decision::Book {
            kassenzeichen,
            receivable_id,
            command,
            amount_differs,
        } = match_line(&by_text, lookup, now)
        else {
            panic!("unmatched")
        };
        assert_eq!(kassenzeichen, kz("202600000013"));
        assert_eq!(receivable_id, ReceivableId(uuid(1)));
        assert!(matches!(*command, ReceivableCommand::Receive(_)));
        assert!(!amount_differs);

        let short = line(LineKind::Credit, 2450, Some("202600000013"), "");
        assert!(matches!(
            match_line(&short, lookup, now),
            Decision::Book {
                amount_differs: true,
                ..
            }
        ));
        let returned = line(
            LineKind::Reversal(ReversalKind::ReturnedDebit),
            2500,
            Some("202600000013"),
            "",
        );
        let Decision::Book { command, .. } = match_line(&returned, lookup, now) else {
            panic!("unmatched")
        };
        assert!(matches!(
            *command,
            ReceivableCommand::Reverse(_, ReversalKind::ReturnedDebit)
        ));
        assert_eq!(
            match_line(&line(LineKind::Credit, 1, None, "Danke"), lookup, now),
            Decision::Unmatched(Unmatched::NoKassenzeichen)
        );
        assert_eq!(
            match_line(&line(LineKind::Credit, 1, None, "KZ 999"), lookup, now),
            Decision::Unmatched(Unmatched::UnknownKassenzeichen)
        );
    }

    #[test]
    fn remittance_words_that_may_be_a_kassenzeichen() {
        let words: Vec<String> = candidates("KZ:202600000013/Rg 7, Gebühr A1")
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect();
        assert_eq!(words, ["202600000013", "A1"]);
        assert!(candidates(&"1".repeat(31)).is_empty());
    }
}
