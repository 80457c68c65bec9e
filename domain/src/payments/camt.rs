//! Bank statements in ISO 20022: camt.053 (the statement, `BkToCstmrStmt/Stmt`) and
//! camt.054 (debit/credit notifications, `BkToCstmrDbtCdtNtfctn/Ntfctn`), read with
//! quick-xml as a stream of elements (no document tree), any version of the message
//! (elements are matched by local name, whatever the namespace).
//!
//! Each booked entry (`Ntry` with status `BOOK`) becomes one [`StatementLine`] per
//! transaction (`NtryDtls/TxDtls`), or one for the entry when it has no details:
//!
//! - `CRDT` is money in ([`LineKind::Credit`]);
//! - `DBIT` with return information (`RtrInf`) or the bank transaction code `UPDD`
//!   (unpaid direct debit) is a returned debit; `DBIT` with `RvslInd` true (xs:boolean:
//!   `true` or `1`; `false`, `0` or none is false, anything else refused) is a
//!   chargeback; `DBIT` with the sub-family `CHRG` is a charge (a fee); any other debit is
//!   no business of a receivable and is skipped;
//! - pending and informational entries (`PDNG`, `INFO`) are skipped;
//! - the booking day is `BookgDt/Dt`, or the day of `BookgDt/DtTm` (an ISO 8601
//!   date-time) in Europe/Berlin, where the cash books count days: converted when it names
//!   a zone (`Z`, `±hh:mm`), taken as it is when it does not (the bank's local time);
//! - the entry reference is the transaction's `Refs/AcctSvcrRef`, else the entry's
//!   `AcctSvcrRef` (with the transaction's index when an entry has several), else the
//!   message id with the entry's and transaction's index: the same file always gives the
//!   same references, so re-importing it books nothing twice;
//! - the Kassenzeichen is the structured creditor reference (`Strd/CdtrRefInf/Ref`) where
//!   there is one; otherwise the words of the unstructured remittance (`Ustrd`) and the
//!   end-to-end id are its candidates.
//!
//! A file that is not well-formed XML, is no camt.053/054, or has an entry without an
//! amount, indicator, status or booking date, an amount that is not euros, or transaction
//! amounts that do not add up to the entry's, is refused as a whole: [`CamtError`] names
//! the line and the element.

use chrono::NaiveDate;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::receivable::ReversalKind;
use super::reconcile::{candidates, LineKind, StatementLine};
use super::{Cents, Kassenzeichen, Reference, Source};

/// Which message the file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// camt.053, the account statement.
    Statement,
    /// camt.054, a debit/credit notification.
    Notification,
}

/// A parsed bank file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Camt {
    pub message: Message,
    pub message_id: String,
    pub lines: Vec<StatementLine>,
    /// Entries that book nothing on a receivable (pending, or debits of another kind).
    pub skipped: usize,
}

/// Why a bank file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, element {element}: {message}")]
pub struct CamtError {
    /// 1-based line of the file.
    pub line: usize,
    /// The element path (`Document/BkToCstmrStmt/Stmt/Ntry[3]/Amt`).
    pub element: String,
    pub message: String,
}

#[derive(Default)]
struct Tx {
    amount: Option<(String, usize)>,
    cdt_dbt: Option<String>,
    acct_svcr_ref: Option<String>,
    end_to_end: Option<String>,
    ustrd: Vec<String>,
    creditor_ref: Option<String>,
    returned: bool,
}

#[derive(Default)]
struct Entry {
    index: usize,
    line: usize,
    amount: Option<(String, usize)>,
    cdt_dbt: Option<String>,
    /// `RvslInd` as written, with its line.
    reversal: Option<(String, usize)>,
    status: Option<String>,
    booking_date: Option<(String, usize)>,
    /// `BookgDt/DtTm` as written, with its line (when there is no `BookgDt/Dt`).
    booking_time: Option<(String, usize)>,
    acct_svcr_ref: Option<String>,
    sub_family: Option<String>,
    txs: Vec<Tx>,
}

struct Parser<'a> {
    bytes: &'a [u8],
    /// Newlines counted up to `counted`.
    counted: usize,
    newlines: usize,
    stack: Vec<String>,
    text: String,
    message: Option<Message>,
    message_id: Option<String>,
    entry: Option<Entry>,
    entries: usize,
    lines: Vec<StatementLine>,
    skipped: usize,
}

impl<'a> Parser<'a> {
    fn line_at(&mut self, pos: usize) -> usize {
        let pos = pos.min(self.bytes.len());
        if pos >= self.counted {
            self.newlines += self.bytes[self.counted..pos]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.counted = pos;
            self.newlines + 1
        } else {
            self.bytes[..pos].iter().filter(|b| **b == b'\n').count() + 1
        }
    }

    fn path(&self) -> String {
        let mut path = String::new();
        for (i, name) in self.stack.iter().enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(name);
            if name == "Ntry" {
                if let Some(e) = &self.entry {
                    path.push_str(&format!("[{}]", e.index));
                }
            }
        }
        path
    }

    fn error(&mut self, pos: usize, message: impl Into<String>) -> CamtError {
        CamtError {
            line: self.line_at(pos),
            element: self.path(),
            message: message.into(),
        }
    }

    /// The element path below the current `Ntry`, if inside one.
    fn in_entry(&self) -> Option<Vec<&str>> {
        let at = self.stack.iter().position(|n| n == "Ntry")?;
        Some(self.stack[at + 1..].iter().map(String::as_str).collect())
    }

    fn start(&mut self, e: &BytesStart<'_>, pos: usize) -> Result<(), CamtError> {
        let name = e.local_name().as_ref().to_owned();
        match self.stack.len() {
            0 if name != "Document" => {
                self.stack.push(name);
                return Err(self.error(pos, "the root element must be Document"));
            }
            1 => {
                self.message = match name.as_str() {
                    "BkToCstmrStmt" => Some(Message::Statement),
                    "BkToCstmrDbtCdtNtfctn" => Some(Message::Notification),
                    _ => {
                        self.stack.push(name);
                        return Err(self.error(
                            pos,
                            "a camt.053 BkToCstmrStmt or camt.054 BkToCstmrDbtCdtNtfctn expected",
                        ));
                    }
                };
            }
            _ => {}
        }
        let parent = self.stack.last().map(String::as_str);
        if name == "Ntry" {
            let expected = match self.message {
                Some(Message::Statement) => "Stmt",
                _ => "Ntfctn",
            };
            if parent != Some(expected) || self.stack.len() != 3 {
                self.stack.push(name);
                return Err(self.error(pos, format!("an entry belongs in {expected}")));
            }
            self.entries += 1;
            let line = self.line_at(pos);
            self.entry = Some(Entry {
                index: self.entries,
                line,
                ..Entry::default()
            });
        }
        self.stack.push(name);
        if let Some(rel) = self.in_entry() {
            let (is_tx, is_amount) = (rel == ["NtryDtls", "TxDtls"], rel.last() == Some(&"Amt"));
            if is_tx {
                if let Some(entry) = self.entry.as_mut() {
                    entry.txs.push(Tx::default());
                }
            }
            if is_amount {
                let currency = e
                    .try_get_attribute("Ccy")
                    .ok()
                    .flatten()
                    .map(|a| a.value.into_owned());
                if currency.as_deref() != Some("EUR") {
                    return Err(self.error(pos, "an amount must be in EUR (Ccy=\"EUR\")"));
                }
            }
        }
        self.text.clear();
        Ok(())
    }

    fn end(&mut self, pos: usize) -> Result<(), CamtError> {
        let text = std::mem::take(&mut self.text);
        let text = text.trim().to_owned();
        let line = self.line_at(pos);
        if self.stack.len() == 4 && self.stack[2] == "GrpHdr" && self.stack[3] == "MsgId" {
            self.message_id = Some(text.clone());
        }
        if let Some(rel) = self.in_entry() {
            let rel: Vec<String> = rel.into_iter().map(str::to_owned).collect();
            let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
            if let Some(entry) = self.entry.as_mut() {
                let value = Some(text.clone());
                match rel.as_slice() {
                    ["Amt"] => entry.amount = Some((text, line)),
                    ["CdtDbtInd"] => entry.cdt_dbt = value,
                    ["RvslInd"] => entry.reversal = Some((text, line)),
                    // Older versions write the code in `Sts`, newer ones in `Sts/Cd`.
                    ["Sts"] if !text.is_empty() => entry.status = value,
                    ["Sts", "Cd"] => entry.status = value,
                    ["BookgDt", "Dt"] => entry.booking_date = Some((text, line)),
                    ["BookgDt", "DtTm"] => entry.booking_time = Some((text, line)),
                    ["AcctSvcrRef"] => entry.acct_svcr_ref = value,
                    ["BkTxCd", "Domn", "Fmly", "SubFmlyCd"] => entry.sub_family = value,
                    ["NtryDtls", "TxDtls", rest @ ..] => {
                        if let Some(tx) = entry.txs.last_mut() {
                            match rest {
                                ["Amt"] | ["AmtDtls", "TxAmt", "Amt"] => {
                                    tx.amount = Some((text, line))
                                }
                                ["CdtDbtInd"] => tx.cdt_dbt = value,
                                ["Refs", "AcctSvcrRef"] => tx.acct_svcr_ref = value,
                                ["Refs", "EndToEndId"] => tx.end_to_end = value,
                                ["RmtInf", "Ustrd"] => tx.ustrd.push(text),
                                ["RmtInf", "Strd", "CdtrRefInf", "Ref"] => tx.creditor_ref = value,
                                ["RtrInf", ..] => tx.returned = true,
                                _ => {}
                            }
                        }
                    }
                    [] => {
                        // The end of the entry itself.
                        let entry = self.entry.take().unwrap_or_default();
                        self.finish(entry)?;
                    }
                    _ => {}
                }
            }
        }
        self.stack.pop();
        Ok(())
    }

    fn entry_error(&self, entry: &Entry, line: usize, element: &str, message: &str) -> CamtError {
        CamtError {
            line,
            element: format!(
                "{}/Ntry[{}]/{element}",
                self.stack[..3].join("/"),
                entry.index
            ),
            message: message.to_owned(),
        }
    }

    fn finish(&mut self, entry: Entry) -> Result<(), CamtError> {
        let Some((amount_text, amount_line)) = &entry.amount else {
            return Err(self.entry_error(&entry, entry.line, "Amt", "the entry has no amount"));
        };
        let amount = xml_amount(amount_text).ok_or_else(|| {
            self.entry_error(
                &entry,
                *amount_line,
                "Amt",
                "a positive amount in euros with at most two decimals expected",
            )
        })?;
        let indicator = match entry.cdt_dbt.as_deref() {
            Some(i @ ("CRDT" | "DBIT")) => i.to_owned(),
            _ => {
                return Err(self.entry_error(
                    &entry,
                    entry.line,
                    "CdtDbtInd",
                    "CRDT or DBIT expected",
                ))
            }
        };
        let Some(status) = entry.status.as_deref() else {
            return Err(self.entry_error(&entry, entry.line, "Sts", "the entry has no status"));
        };
        if status != "BOOK" {
            self.skipped += 1;
            return Ok(());
        }
        let booking_date = match (&entry.booking_date, &entry.booking_time) {
            (Some((date_text, date_line)), _) => NaiveDate::parse_from_str(date_text, "%Y-%m-%d")
                .ok()
                .filter(|d| d.format("%Y-%m-%d").to_string() == *date_text)
                .ok_or_else(|| {
                    self.entry_error(&entry, *date_line, "BookgDt", "a date YYYY-MM-DD expected")
                })?,
            (None, Some((time_text, time_line))) => booking_day(time_text).ok_or_else(|| {
                self.entry_error(
                    &entry,
                    *time_line,
                    "BookgDt/DtTm",
                    "a date-time YYYY-MM-DDThh:mm:ss[.f][Z|±hh:mm] expected",
                )
            })?,
            (None, None) => {
                return Err(self.entry_error(
                    &entry,
                    entry.line,
                    "BookgDt",
                    "a booked entry needs its booking date",
                ))
            }
        };
        // xs:boolean: `true`, `false`, `1` or `0`; left out is false.
        let reversal = match entry.reversal.as_ref().map(|(t, l)| (t.as_str(), *l)) {
            None | Some(("false" | "0", _)) => false,
            Some(("true" | "1", _)) => true,
            Some((_, line)) => {
                return Err(self.entry_error(
                    &entry,
                    line,
                    "RvslInd",
                    "an xs:boolean expected: true, false, 1 or 0",
                ))
            }
        };
        // One line per transaction; an entry without details is one transaction.
        let mut txs = entry.txs;
        let several = txs.len() > 1;
        if txs.is_empty() {
            txs.push(Tx::default());
        }
        let mut amounts = Vec::with_capacity(txs.len());
        for tx in &txs {
            amounts.push(match &tx.amount {
                None if !several => amount,
                None => {
                    let e = Entry {
                        index: entry.index,
                        ..Entry::default()
                    };
                    return Err(self.entry_error(
                        &e,
                        entry.line,
                        "NtryDtls/TxDtls/Amt",
                        "each of several transactions needs its amount",
                    ));
                }
                Some((text, line)) => xml_amount(text).ok_or_else(|| {
                    let e = Entry {
                        index: entry.index,
                        ..Entry::default()
                    };
                    self.entry_error(
                        &e,
                        *line,
                        "NtryDtls/TxDtls/Amt",
                        "a positive amount in euros with at most two decimals expected",
                    )
                })?,
            });
        }
        let sum = amounts
            .iter()
            .try_fold(Cents::ZERO, |acc, a| acc.checked_add(*a));
        if sum != Some(amount) {
            let e = Entry {
                index: entry.index,
                ..Entry::default()
            };
            return Err(self.entry_error(
                &e,
                entry.line,
                "NtryDtls",
                "the transactions' amounts do not add up to the entry's amount",
            ));
        }
        let message_id = self.message_id.clone().unwrap_or_default();
        for (i, (tx, amount)) in txs.iter().zip(amounts).enumerate() {
            let debit = tx.cdt_dbt.as_deref().unwrap_or(&indicator) == "DBIT";
            let kind = if !debit {
                LineKind::Credit
            } else if tx.returned || entry.sub_family.as_deref() == Some("UPDD") {
                LineKind::Reversal(ReversalKind::ReturnedDebit)
            } else if reversal {
                LineKind::Reversal(ReversalKind::Chargeback)
            } else if entry.sub_family.as_deref() == Some("CHRG") {
                LineKind::Fee
            } else {
                self.skipped += 1;
                continue;
            };
            let entry_ref = match (&tx.acct_svcr_ref, &entry.acct_svcr_ref) {
                (Some(r), _) => r.clone(),
                (None, Some(r)) if several => format!("{r}/{}", i + 1),
                (None, Some(r)) => r.clone(),
                (None, None) => format!("{message_id}/{}/{}", entry.index, i + 1),
            };
            let entry_ref = Reference::parse(&entry_ref).map_err(|_| {
                let e = Entry {
                    index: entry.index,
                    ..Entry::default()
                };
                self.entry_error(
                    &e,
                    entry.line,
                    "AcctSvcrRef",
                    "the entry's reference must be 1 to 140 printable characters",
                )
            })?;
            let kassenzeichen = tx
                .creditor_ref
                .as_deref()
                .and_then(|r| Kassenzeichen::parse(r).ok());
            let mut words = candidates(&tx.ustrd.join(" "));
            if let Some(e2e) = &tx.end_to_end {
                words.extend(candidates(e2e));
            }
            self.lines.push(StatementLine {
                position: format!("Ntry {}", entry.index),
                entry: entry_ref,
                source: Source::Bank,
                kind,
                amount,
                booking_date,
                kassenzeichen,
                candidates: words,
                hkr_reference: None,
                haushaltsstelle: None,
            });
        }
        Ok(())
    }
}

/// Reads a camt amount (`25`, `25.5`, `25.00`; at most two decimals that are not zero,
/// no sign): the amount is always positive, the direction is `CdtDbtInd`.
fn xml_amount(s: &str) -> Option<Cents> {
    let (euros, fraction) = s.split_once('.').unwrap_or((s, ""));
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 2 || (s.contains('.') && s.ends_with('.')) {
        return None;
    }
    let cents = format!("{fraction:0<2}");
    Cents::parse_decimal(&format!("{euros}.{cents}")).filter(|c| !c.is_zero())
}

/// Parses a camt.053 or camt.054 file. `progress` is told the bytes read and the entries
/// seen, every 1,000 entries and at the end.
pub fn parse(bytes: &[u8], mut progress: impl FnMut(usize, usize)) -> Result<Camt, CamtError> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().expand_empty_elements = true;
    let mut p = Parser {
        bytes,
        counted: 0,
        newlines: 0,
        stack: vec![],
        text: String::new(),
        message: None,
        message_id: None,
        entry: None,
        entries: 0,
        lines: vec![],
        skipped: 0,
    };
    let mut buf = Vec::new();
    let mut reported = 0;
    loop {
        let pos = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
                return Err(p.error(at, format!("not well-formed XML: {e}")));
            }
        };
        match event {
            Event::Start(e) => p.start(&e, pos)?,
            Event::End(_) => p.end(pos)?,
            Event::Text(t) => {
                p.text.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => match name.as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "apos" => Some('\''),
                        "quot" => Some('"'),
                        _ => None,
                    },
                    Err(_) => None,
                };
                match resolved {
                    Some(c) => p.text.push(c),
                    None => return Err(p.error(pos, format!("unknown entity &{name};"))),
                }
            }
            Event::CData(c) => {
                p.text.push_str(&c.xml10_content());
            }
            Event::DocType(_) => {
                return Err(p.error(pos, "a document type declaration is not allowed"))
            }
            Event::Eof => break,
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
        buf.clear();
        if p.entries >= reported + 1000 {
            reported = p.entries;
            progress(pos, p.entries);
        }
    }
    if !p.stack.is_empty() {
        let end = bytes.len();
        return Err(p.error(end, "the file ends inside this element"));
    }
    let Some(message) = p.message else {
        return Err(CamtError {
            line: p.line_at(bytes.len()),
            element: "Document".into(),
            message: "no camt.053 or camt.054 message in the file".into(),
        });
    };
    let Some(message_id) = p.message_id.clone().filter(|m| !m.is_empty()) else {
        return Err(CamtError {
            line: 1,
            element: "Document/*/GrpHdr/MsgId".into(),
            message: "the message has no id".into(),
        });
    };
    progress(bytes.len(), p.entries);
    Ok(Camt {
        message,
        message_id,
        lines: p.lines,
        skipped: p.skipped,
    })
}

/// The booking day of an ISO 8601 date-time `BookgDt/DtTm` (xs:dateTime: `YYYY-MM-DDThh:mm:ss`,
/// optional fractional seconds, and an optional `Z` or `±hh:mm`), or `None` for any other
/// text. Cash books count days in Germany: a date-time with a zone is converted to the
/// day in Europe/Berlin ([`berlin_offset_hours`]); one without a zone is the bank's local
/// time already, and its date is the day.
fn booking_day(text: &str) -> Option<NaiveDate> {
    use chrono::{DateTime, NaiveDateTime};
    let b = text.as_bytes();
    // Four digits of a year, a `T`, seconds: `parse_from_str` alone would take a sign or
    // more digits in the year.
    if b.len() < 19 || !b[..4].iter().all(u8::is_ascii_digit) || b[10] != b'T' {
        return None;
    }
    const LOCAL: &str = "%Y-%m-%dT%H:%M:%S%.f";
    let utc = if let Some(rest) = text.strip_suffix('Z') {
        NaiveDateTime::parse_from_str(rest, LOCAL).ok()?
    } else if b.len() >= 25 && matches!(b[b.len() - 6], b'+' | b'-') {
        DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%:z")
            .ok()?
            .naive_utc()
    } else {
        return NaiveDateTime::parse_from_str(text, LOCAL)
            .ok()
            .map(|t| t.date());
    };
    let local = utc.checked_add_signed(chrono::Duration::hours(berlin_offset_hours(utc)))?;
    Some(local.date())
}

/// Europe/Berlin's offset from UTC at the UTC instant `utc`, in hours: 2 in summer time
/// (from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
/// October, the EU rule since 1996), 1 otherwise.
fn berlin_offset_hours(utc: chrono::NaiveDateTime) -> i64 {
    use chrono::Datelike;
    let last_sunday = |month: u32| {
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(utc.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(utc.year(), month + 1, 1)
        };
        next.and_then(|d| d.pred_opt()).map(|last| {
            let back = last.weekday().num_days_from_sunday();
            last - chrono::Duration::days(i64::from(back))
        })
    };
    let at_one = |d: Option<NaiveDate>| d.and_then(|d| d.and_hms_opt(1, 0, 0));
    match (at_one(last_sunday(3)), at_one(last_sunday(10))) {
        (Some(start), Some(end)) if start <= utc && utc < end => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD_053: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>STMT-2026-03-03</MsgId><CreDtTm>2026-03-03T18:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>1</Id>
"#;
    const TAIL_053: &str = "    </Stmt>\n  </BkToCstmrStmt>\n</Document>\n";

    fn statement(entries: &str) -> String {
        format!("{HEAD_053}{entries}{TAIL_053}")
    }

    fn credit(reference: &str, amount: &str, remittance: &str) -> String {
        format!(
            r#"      <Ntry>
        <Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-03-03</Dt></BookgDt>
        <AcctSvcrRef>{reference}</AcctSvcrRef>
        <NtryDtls><TxDtls><RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></TxDtls></NtryDtls>
      </Ntry>
"#
        )
    }

    fn kz(s: &str) -> Kassenzeichen {
        Kassenzeichen::parse(s).expect("kz")
    }

    #[test]
    fn a_statement_gives_one_line_per_booked_transaction() {
        let batch = r#"      <Ntry>
        <Amt Ccy="EUR">30.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><DtTm>2026-03-03T10:00:00+01:00</DtTm></BookgDt>
        <NtryDtls>
          <TxDtls><Refs><AcctSvcrRef>TX-A</AcctSvcrRef></Refs><Amt Ccy="EUR">25</Amt>
            <RmtInf><Strd><CdtrRefInf><Ref>202600000013</Ref></CdtrRefInf></Strd></RmtInf></TxDtls>
          <TxDtls><AmtDtls><TxAmt><Amt Ccy="EUR">5.0</Amt></TxAmt></AmtDtls>
            <RmtInf><Ustrd>Gebühr &amp; Auslagen KZ 202600000021</Ustrd></RmtInf></TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">9.99</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>PDNG</Sts>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">1.20</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>2026-03-03</Dt></BookgDt>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>CCRD</Cd><SubFmlyCd>CHRG</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls><RmtInf><Ustrd>Entgelt 202600000013</Ustrd></RmtInf></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">500.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>2026-03-03</Dt></BookgDt>
        <NtryDtls><TxDtls><RmtInf><Ustrd>Miete</Ustrd></RmtInf></TxDtls></NtryDtls>
      </Ntry>
"#;
        let text = statement(&format!(
            "{}{batch}",
            credit("E-1", "25.00", "KZ 202600000039")
        ));
        let mut calls = 0;
        let camt = parse(text.as_bytes(), |_, _| calls += 1).expect("parsed");
        assert_eq!(calls, 1);
        assert_eq!(camt.message, Message::Statement);
        assert_eq!(camt.message_id, "STMT-2026-03-03");
        assert_eq!(camt.skipped, 2, "the pending entry and the rent");
        let lines = &camt.lines;
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].entry.as_str(), "E-1");
        assert_eq!(lines[0].amount, Cents::new(2500).expect("cents"));
        assert_eq!(lines[0].candidates, vec![kz("202600000039")]);
        assert_eq!(lines[1].entry.as_str(), "TX-A");
        assert_eq!(lines[1].kassenzeichen, Some(kz("202600000013")));
        assert_eq!(lines[1].booking_date.to_string(), "2026-03-03");
        assert_eq!(lines[2].entry.as_str(), "STMT-2026-03-03/2/2");
        assert_eq!(lines[2].amount, Cents::new(500).expect("cents"));
        assert_eq!(lines[2].candidates, vec![kz("202600000021")]);
        assert_eq!(lines[3].kind, LineKind::Fee);
        // The same file gives the same lines, so a re-import books nothing twice.
        assert_eq!(parse(text.as_bytes(), |_, _| {}).expect("again"), camt);
    }

    #[test]
    fn a_notification_reports_returned_debits_and_chargebacks() {
        let text = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02">
<BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>N-1</MsgId></GrpHdr>
<Ntfctn>
<Ntry><Amt Ccy="EUR">25.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-03-10</Dt></BookgDt><AcctSvcrRef>R-1</AcctSvcrRef>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RDDT</Cd><SubFmlyCd>UPDD</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><TxDtls><RmtInf><Ustrd>202600000013</Ustrd></RmtInf><RtrInf><Rsn><Cd>MD06</Cd></Rsn></RtrInf></TxDtls></NtryDtls>
</Ntry>
<Ntry><Amt Ccy="EUR">12.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-03-11</Dt></BookgDt><AcctSvcrRef>R-2</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>202600000021</Ustrd></RmtInf></TxDtls></NtryDtls>
</Ntry>
</Ntfctn>
</BkToCstmrDbtCdtNtfctn>
</Document>"#;
        let camt = parse(text.as_bytes(), |_, _| {}).expect("parsed");
        assert_eq!(camt.message, Message::Notification);
        assert_eq!(
            camt.lines[0].kind,
            LineKind::Reversal(ReversalKind::ReturnedDebit)
        );
        assert_eq!(
            camt.lines[1].kind,
            LineKind::Reversal(ReversalKind::Chargeback)
        );
    }

    #[test]
    fn a_malformed_file_is_refused_naming_line_and_element() {
        let ok = credit("E-1", "25.00", "KZ 202600000013");
        let cases: Vec<(String, usize, &str)> = vec![
            // The first entry is lines 7 to 12; the second's amount is on line 14.
            (
                statement(&format!("{ok}{}", credit("E-2", "25,00", "x"))),
                14,
                "Document/BkToCstmrStmt/Stmt/Ntry[2]/Amt",
            ),
            (
                statement(&format!("{ok}{}", credit("E-2", "-5.00", "x"))),
                14,
                "Document/BkToCstmrStmt/Stmt/Ntry[2]/Amt",
            ),
            (
                statement(&format!("{ok}{}", credit("E-2", "5.001", "x"))),
                14,
                "Document/BkToCstmrStmt/Stmt/Ntry[2]/Amt",
            ),
            (
                statement(&ok.replace("Ccy=\"EUR\"", "Ccy=\"USD\"")),
                8,
                "Document/BkToCstmrStmt/Stmt/Ntry[1]/Amt",
            ),
            (
                statement(&ok.replace("CRDT", "CRED")),
                7,
                "Document/BkToCstmrStmt/Stmt/Ntry[1]/CdtDbtInd",
            ),
            (
                statement(&ok.replace("2026-03-03</Dt>", "2026-02-30</Dt>")),
                9,
                "Document/BkToCstmrStmt/Stmt/Ntry[1]/BookgDt",
            ),
            (
                statement(&ok.replace("<BookgDt><Dt>2026-03-03</Dt></BookgDt>", "")),
                7,
                "Document/BkToCstmrStmt/Stmt/Ntry[1]/BookgDt",
            ),
            (
                statement(&ok.replace("</AcctSvcrRef>", "</AcctSvcRef>")),
                10,
                "Document/BkToCstmrStmt/Stmt/Ntry[1]/AcctSvcrRef",
            ),
            (
                statement(&ok.replace("</Ntry>", "")),
                13,
                "Document/BkToCstmrStmt/Stmt/Ntry[1]",
            ),
        ];
        for (text, line, element) in &cases {
            let e = parse(text.as_bytes(), |_, _| {}).expect_err(element);
            assert_eq!((e.line, e.element.as_str()), (*line, *element), "{e}");
        }
        let e = parse(b"<Other/>", |_, _| {}).expect_err("root");
        assert_eq!(e.element, "Other");
        let e =
            parse(b"<Document><BkToCstmrAcctRpt/></Document>", |_, _| {}).expect_err("camt.052");
        assert_eq!(e.element, "Document/BkToCstmrAcctRpt");
        let e =
            parse(b"<!DOCTYPE x [<!ENTITY a 'b'>]><Document/>", |_, _| {}).expect_err("doctype");
        assert!(e.message.contains("document type"), "{e}");
        let no_id = statement(&ok).replace("<MsgId>STMT-2026-03-03</MsgId>", "");
        assert!(parse(no_id.as_bytes(), |_, _| {}).is_err());
        assert!(parse(b"", |_, _| {}).is_err());
        assert!(parse(&[0xff, 0xfe, 0x00], |_, _| {}).is_err());
    }

    #[test]
    fn a_booking_date_time_is_the_day_in_berlin() {
        for (text, day) in [
            // Without a zone: the bank's local time.
            ("2026-03-03T23:30:00", "2026-03-03"),
            ("2026-03-03T10:00:00.123", "2026-03-03"),
            ("2026-03-03T10:00:00+01:00", "2026-03-03"),
            // 04:30 UTC, 05:30 in Berlin: the next day.
            ("2026-03-03T23:30:00-05:00", "2026-03-04"),
            // 23:30 UTC in winter is 00:30 in Berlin; in summer 01:30.
            ("2026-01-15T23:30:00Z", "2026-01-16"),
            ("2026-07-15T22:30:00Z", "2026-07-16"),
            ("2026-07-15T21:59:59.999Z", "2026-07-15"),
            // Summer time begins at 01:00 UTC on 29 March 2026 and ends at 01:00 UTC on
            // 25 October 2026.
            ("2026-03-28T22:59:59Z", "2026-03-28"),
            ("2026-03-28T23:00:00Z", "2026-03-29"),
            ("2026-10-24T21:59:59Z", "2026-10-24"),
            ("2026-10-24T22:00:00Z", "2026-10-25"),
            ("2026-12-31T23:00:00Z", "2027-01-01"),
        ] {
            assert_eq!(
                booking_day(text).map(|d| d.to_string()).as_deref(),
                Some(day),
                "{text}"
            );
        }
        for bad in [
            "2026-03-03",
            "2026-03-03garbage",
            "2026-03-03T10:00:00garbage",
            "2026-03-03 10:00:00",
            "+2026-03-03T10:00:00Z",
            "12026-03-03T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-03-03T10:00Z",
            "2026-03-03T10:00:00+0100",
            "2026-03-03T25:00:00Z",
        ] {
            assert_eq!(booking_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_reversal_indicator_is_an_xs_boolean() {
        let entry = |indicator: &str| {
            statement(&format!(
                r#"      <Ntry>
        <Amt Ccy="EUR">12.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>{indicator}</RvslInd>
        <Sts>BOOK</Sts><BookgDt><DtTm>2026-03-03T23:30:00-05:00</DtTm></BookgDt>
        <AcctSvcrRef>R-2</AcctSvcrRef>
        <NtryDtls><TxDtls><RmtInf><Ustrd>202600000021</Ustrd></RmtInf></TxDtls></NtryDtls>
      </Ntry>
"#
            ))
        };
        for yes in ["true", "1", " 1 "] {
            let camt = parse(entry(yes).as_bytes(), |_, _| {}).expect(yes);
            assert_eq!(camt.lines.len(), 1, "{yes}");
            assert_eq!(
                camt.lines[0].kind,
                LineKind::Reversal(ReversalKind::Chargeback),
                "{yes}"
            );
            assert_eq!(camt.lines[0].booking_date.to_string(), "2026-03-04");
        }
        for no in ["false", "0"] {
            let camt = parse(entry(no).as_bytes(), |_, _| {}).expect(no);
            assert!(camt.lines.is_empty(), "{no}: a debit of another kind");
            assert_eq!(camt.skipped, 1);
        }
        for bad in ["yes", "TRUE", "2", ""] {
            let e = parse(entry(bad).as_bytes(), |_, _| {}).expect_err(bad);
            assert_eq!(
                (e.line, e.element.as_str()),
                (8, "Document/BkToCstmrStmt/Stmt/Ntry[1]/RvslInd"),
                "{bad}: {e}"
            );
        }
        let garbage = entry("true").replace("2026-03-03T23:30:00-05:00", "2026-03-03garbage");
        let e = parse(garbage.as_bytes(), |_, _| {}).expect_err("garbage");
        assert_eq!(
            (e.line, e.element.as_str()),
            (9, "Document/BkToCstmrStmt/Stmt/Ntry[1]/BookgDt/DtTm"),
            "{e}"
        );
    }

    #[test]
    fn amounts_are_read_as_camt_writes_them() {
        for (text, cents) in [
            ("25", 2500),
            ("25.5", 2550),
            ("25.50", 2550),
            ("0.01", 1),
            ("25.50000", 2550),
        ] {
            assert_eq!(xml_amount(text), Cents::new(cents).ok(), "{text}");
        }
        for bad in [
            "", "0", "0.00", "25.", ".5", "-1", "+1", "1e2", "25.505", "1,00",
        ] {
            assert_eq!(xml_amount(bad), None, "{bad}");
        }
    }
}
