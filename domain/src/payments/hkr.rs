//! The HKR's postings (Ist-Buchungen) as a CSV file.
//!
//! The format, as Amtsbuch reads it (docs/PAYMENTS.md shows an example):
//!
//! - UTF-8, lines ending in LF or CR LF, fields separated by `;`, no quoting: a field
//!   never contains `;` or `"`; an empty line at the end is allowed, nowhere else;
//! - the first line is exactly the header
//!   `buchungs_id;buchungsdatum;kassenzeichen;haushaltsstelle;betrag;art;hkr_referenz`;
//! - `buchungs_id`: the HKR's unique id of the posting (1–140 characters); importing a
//!   posting id twice books it once;
//! - `buchungsdatum`: the booking day, `YYYY-MM-DD`, a year from 0001 to 9999 (there is no
//!   year 0000 in the calendar a cash book counts in);
//! - `kassenzeichen`: the receivable's Kassenzeichen;
//! - `haushaltsstelle`: where the HKR booked it;
//! - `betrag`: euros with a decimal comma and exactly two decimals (`24,50`), no sign, no
//!   thousands separator, no leading zeros (`0,50`, but not `00,50` or `024,50`);
//! - `art`: `IST` (money received: an Ist-Buchung) or `RUECK` (a return: a Rückbuchung of
//!   a direct debit);
//! - `hkr_referenz`: the HKR's voucher reference (1–140 characters).
//!
//! A file with any malformed line is refused as a whole, naming the line and the field.

use chrono::NaiveDate;

use super::{Cents, Haushaltsstelle, Kassenzeichen, Reference};

/// The header line every HKR file starts with.
pub const HEADER: &str =
    "buchungs_id;buchungsdatum;kassenzeichen;haushaltsstelle;betrag;art;hkr_referenz";

/// What an HKR posting records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostingKind {
    /// An Ist-Buchung: money received for the receivable.
    Ist,
    /// A Rückbuchung: a direct debit returned.
    Rueck,
}

/// One posting of the HKR file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// The line of the file (1-based), for messages.
    pub line: usize,
    pub id: Reference,
    pub booking_date: NaiveDate,
    pub kassenzeichen: Kassenzeichen,
    pub haushaltsstelle: Haushaltsstelle,
    pub amount: Cents,
    pub kind: PostingKind,
    pub hkr_reference: Reference,
}

/// Why an HKR file was refused: the line (1-based) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, field {field}: {message}")]
pub struct HkrError {
    pub line: usize,
    pub field: &'static str,
    pub message: String,
}

fn err(line: usize, field: &'static str, message: impl Into<String>) -> HkrError {
    HkrError {
        line,
        field,
        message: message.into(),
    }
}

/// Reads an amount with a decimal comma and two decimals, without leading zeros.
fn amount(s: &str) -> Option<Cents> {
    let (euros, cents) = s.split_once(',')?;
    if euros.len() > 1 && euros.starts_with('0') {
        return None;
    }
    Cents::parse_decimal(&format!("{euros}.{cents}"))
}

/// Parses a whole HKR file; `progress` is told the lines read so far every 10,000 lines
/// and at the end.
pub fn parse(text: &str, mut progress: impl FnMut(usize)) -> Result<Vec<Posting>, HkrError> {
    let mut lines = text.split('\n').enumerate().peekable();
    let Some((_, header)) = lines.next() else {
        return Err(err(1, "header", "the file is empty"));
    };
    if header.strip_suffix('\r').unwrap_or(header) != HEADER {
        return Err(err(
            1,
            "header",
            format!("the first line must be {HEADER:?}"),
        ));
    }
    let mut postings = vec![];
    while let Some((index, raw)) = lines.next() {
        let number = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            if lines.peek().is_none() {
                break;
            }
            return Err(err(number, "line", "empty line inside the file"));
        }
        if line.contains('"') {
            return Err(err(number, "line", "quotes are not part of the format"));
        }
        let fields: Vec<&str> = line.split(';').collect();
        if fields.len() != 7 {
            return Err(err(
                number,
                "line",
                format!("7 fields separated by ';' expected, found {}", fields.len()),
            ));
        }
        let id =
            Reference::parse(fields[0]).map_err(|e| err(number, "buchungs_id", e.to_string()))?;
        let booking_date = NaiveDate::parse_from_str(fields[1], "%Y-%m-%d")
            .ok()
            .filter(|d| d.format("%Y-%m-%d").to_string() == fields[1])
            .filter(|d| chrono::Datelike::year(d) >= 1)
            .ok_or_else(|| {
                err(
                    number,
                    "buchungsdatum",
                    "a date YYYY-MM-DD expected, a year from 0001",
                )
            })?;
        let kassenzeichen = Kassenzeichen::parse(fields[2])
            .map_err(|e| err(number, "kassenzeichen", e.to_string()))?;
        let haushaltsstelle = Haushaltsstelle::parse(fields[3])
            .map_err(|e| err(number, "haushaltsstelle", e.to_string()))?;
        let amount = amount(fields[4]).filter(|a| !a.is_zero()).ok_or_else(|| {
            err(
                number,
                "betrag",
                "a positive amount with a decimal comma and two decimals expected (24,50)",
            )
        })?;
        let kind = match fields[5] {
            "IST" => PostingKind::Ist,
            "RUECK" => PostingKind::Rueck,
            _ => return Err(err(number, "art", "IST or RUECK expected")),
        };
        let hkr_reference =
            Reference::parse(fields[6]).map_err(|e| err(number, "hkr_referenz", e.to_string()))?;
        postings.push(Posting {
            line: number,
            id,
            booking_date,
            kassenzeichen,
            haushaltsstelle,
            amount,
            kind,
            hkr_reference,
        });
        if postings.len() % 10_000 == 0 {
            progress(postings.len());
        }
    }
    progress(postings.len());
    Ok(postings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(lines: &[&str]) -> String {
        let mut s = format!("{HEADER}\n");
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    #[test]
    fn postings_are_read() {
        let text = file(&[
            "H-1;2026-03-03;K2026000001;1100.100;24,50;IST;BEL-77",
            "H-2;2026-03-04;K2026000002;1100.200;1234,00;RUECK;BEL-78",
            "H-3;0001-01-01;K2026000003;1100.200;0,50;IST;BEL-79",
        ]);
        let mut reported = vec![];
        let postings = parse(&text, |n| reported.push(n)).expect("parsed");
        assert_eq!(postings.len(), 3);
        assert_eq!(postings[2].amount, Cents::new(50).expect("cents"));
        assert_eq!(postings[0].amount, Cents::new(2450).expect("cents"));
        assert_eq!(postings[0].line, 2);
        assert_eq!(postings[1].kind, PostingKind::Rueck);
        assert_eq!(postings[1].amount, Cents::new(123_400).expect("cents"));
        assert_eq!(reported, vec![3]);
        // CR LF works the same.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(parse(&crlf, |_| {}).expect("parsed"), postings);
    }

    #[test]
    fn a_malformed_file_is_refused_naming_line_and_field() {
        let good = "H-1;2026-03-03;K1;1100.100;24,50;IST;BEL-77";
        let cases: &[(&str, usize, &str)] = &[
            ("H-2;2026-02-30;K1;1100.100;24,50;IST;B", 3, "buchungsdatum"),
            ("H-2;2026-3-3;K1;1100.100;24,50;IST;B", 3, "buchungsdatum"),
            ("H-2;0000-03-03;K1;1100.100;24,50;IST;B", 3, "buchungsdatum"),
            ("H-2;2026-03-03;K1;1100.100;024,50;IST;B", 3, "betrag"),
            ("H-2;2026-03-03;K1;1100.100;00,50;IST;B", 3, "betrag"),
            (
                "H-2;2026-03-03;K-1;1100.100;24,50;IST;B",
                3,
                "kassenzeichen",
            ),
            (
                "H-2;2026-03-03;K1;1100 100;24,50;IST;B",
                3,
                "haushaltsstelle",
            ),
            ("H-2;2026-03-03;K1;1100.100;24.50;IST;B", 3, "betrag"),
            ("H-2;2026-03-03;K1;1100.100;-24,50;IST;B", 3, "betrag"),
            ("H-2;2026-03-03;K1;1100.100;24,5;IST;B", 3, "betrag"),
            ("H-2;2026-03-03;K1;1100.100;0,00;IST;B", 3, "betrag"),
            ("H-2;2026-03-03;K1;1100.100;24,50;SOLL;B", 3, "art"),
            ("H-2;2026-03-03;K1;1100.100;24,50;IST;", 3, "hkr_referenz"),
            (";2026-03-03;K1;1100.100;24,50;IST;B", 3, "buchungs_id"),
            ("H-2;2026-03-03;K1;1100.100;24,50;IST", 3, "line"),
            ("\"H-2\";2026-03-03;K1;1100.100;24,50;IST;B", 3, "line"),
        ];
        for (bad, line, field) in cases {
            let e = parse(&file(&[good, bad]), |_| {}).expect_err(bad);
            assert_eq!((e.line, e.field), (*line, *field), "{bad}: {e}");
        }
        let e = parse(&file(&[good, "", good]), |_| {}).expect_err("gap");
        assert_eq!((e.line, e.field), (3, "line"));
        assert_eq!(parse("", |_| {}).expect_err("empty").field, "header");
        assert_eq!(parse("id;datum\nx", |_| {}).expect_err("header").line, 1);
    }
}
