//! Strict I-JSON (RFC 7493): the check every JSON body passes before it becomes a record.
//!
//! `serde_json` is lenient in two ways that would silently change what a client sent: a
//! member name that occurs twice keeps its last value, and a number is rounded to the
//! nearest IEEE double, so `1e-400` becomes `0` and `123456789012345678901234567890`
//! becomes `1.2345678901234568e+29`. A record is hashed and signed, so a change of its
//! content must be refused, not made. [`check`] scans the raw bytes — where the number as
//! written is still visible, which it no longer is in a `serde_json::Value` — and names the
//! first offending value by its JSON pointer (RFC 6901); [`from_slice`] is that check
//! followed by the ordinary `serde_json` parse.
//!
//! **When a number round-trips.** The log stores numbers the way RFC 8785 writes them: the
//! IEEE double nearest to the number (round half to even), printed by ECMAScript's
//! `Number.prototype.toString`, the shortest decimal that reads back as that double. A
//! number is accepted exactly when that printed decimal has the same value as the decimal
//! the client wrote, so the stored bytes denote exactly the number sent:
//!
//! - `0.1` is accepted: it is stored as `0.1`, although the double itself is
//!   0.1000000000000000055511151231257827…; every JSON reader maps both to that double.
//! - `1.0`, `1e2`, `2.50`, `100e-2` are accepted and stored as `1`, `100`, `2.5`, `1`: the
//!   same values written another way, as JCS requires.
//! - `-0` (and `-0.0`) is accepted and stored as `0`: its value is zero, and RFC 8785 writes
//!   both zeros as `0`, as ECMAScript does.
//! - `1e-400` (stored as `0`), `123456789012345678901234567890` (stored as
//!   `123456789012345680000000000000`), `0.30000000000000000001` (stored as `0.3`) and
//!   `9007199254740993` (stored as `9007199254740992`) are refused.
//! - `1e400` is refused: no double holds it.
//! - `0.1000000000000000055511151231257827021181583404541015625`, the exact value of the
//!   double nearest to 0.1, is refused too: it would be stored as `0.1`, another number.
//!
//! Integers beyond ±(2^53 − 1) are refused even where a double holds them exactly
//! (`9007199254740992`, `1e16`, `9007199254740992.0`): ECMAScript, and so the log, writes
//! them as plain integers, which I-JSON receivers need not read exactly (RFC 7493 section
//! 2.2), and which `jcs` refuses when it meets them as integers. From 10^21 on ECMAScript
//! writes an exponent (`1e+21`), so such a number stays a double and passes.
//!
//! The scanner accepts exactly the RFC 8259 grammar. It does not tell why a body is not
//! JSON — `serde_json` says that better, with line and column — so on a syntax error
//! [`from_slice`] lets `serde_json` speak.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::de::DeserializeOwned;

/// Why a body is refused by [`from_slice`].
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    /// Not JSON, or not the shape the caller asked for, as `serde_json` says.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not I-JSON.
    #[error("{0}")]
    NotIJson(#[from] Violation),
}

/// The first value of a document that I-JSON refuses.
///
/// Its message names the place by its pointer, never the value: a body may carry personal
/// data, and a problem that echoes it could end up in a proxy's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}, at {}", if pointer.is_empty() { "the document's root" } else { pointer.as_str() })]
pub struct Violation {
    /// The RFC 6901 pointer of the offending value: for a repeated member name, the second
    /// member's value; the empty string for the document itself.
    pub pointer: String,
    pub kind: ViolationKind,
}

/// What is wrong with the value a [`Violation`] points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViolationKind {
    /// The member name occurs twice in one object (after unescaping: `"a"` and `"\u0061"`
    /// are the same name).
    #[error("a member name occurs more than once in its object")]
    DuplicateName(String),
    /// The number would be stored as another number (`stored`) or, without a `stored`
    /// value, is beyond the range of a double.
    #[error("{}", if stored.is_some() {
        "a number is not exactly representable as an IEEE 754 double, so the log would store another number"
    } else {
        "a number is beyond the range of an IEEE 754 double"
    })]
    InexactNumber {
        /// The number as written, cut to 40 characters.
        literal: String,
        stored: Option<String>,
    },
    /// The number is an integer beyond ±(2^53 − 1) that the log would store as a plain
    /// integer, however it was written (`1e16`, `9007199254740992.0`).
    #[error("a number is an integer beyond ±(2^53 − 1), which I-JSON receivers cannot be relied on to read exactly")]
    UnsafeInteger {
        /// The number as written, cut to 40 characters.
        literal: String,
    },
    /// Not JSON at this byte offset (only from [`check`]; [`from_slice`] reports syntax
    /// errors through `serde_json`).
    #[error("not valid JSON at byte {0}")]
    Syntax(usize),
}

/// Parse `bytes` as `T` after checking that they are strict I-JSON.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictError> {
    match check(bytes) {
        Ok(()) => Ok(serde_json::from_slice(bytes)?),
        Err(Violation {
            kind: ViolationKind::Syntax(offset),
            pointer,
        }) => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(e) => Err(StrictError::Json(e)),
            // The two parsers disagree about the grammar; refuse rather than guess.
            Ok(_) => Err(StrictError::NotIJson(Violation {
                pointer,
                kind: ViolationKind::Syntax(offset),
            })),
        },
        Err(v) => Err(StrictError::NotIJson(v)),
    }
}

/// Check that `bytes` are one JSON text without repeated member names and with every
/// number round-tripping (see the module documentation).
pub fn check(bytes: &[u8]) -> Result<(), Violation> {
    Scanner {
        bytes,
        pos: 0,
        stack: Vec::new(),
    }
    .document()
}

/// An object with this many members or more keeps its names in a hash set; below, a
/// linear search is cheaper than hashing.
const SET_FROM: usize = 16;

/// Deepest nesting of arrays and objects: `serde_json`'s own limit, which refuses the
/// 128th. The scanner keeps a frame per open container on the heap, so without a limit
/// a body of a million `[` would cost some 80 MiB.
const MAX_DEPTH: usize = 127;

/// An open container and where in it the scanner is.
enum Frame<'a> {
    Array {
        index: usize,
    },
    /// The names seen so far; the last one is the member being scanned.
    Object {
        names: Vec<Cow<'a, str>>,
        set: Option<HashSet<Cow<'a, str>>>,
    },
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Frame<'a>>,
}

impl<'a> Scanner<'a> {
    fn document(mut self) -> Result<(), Violation> {
        self.value()?;
        loop {
            self.whitespace();
            let byte = self.next();
            match (self.stack.last_mut(), byte) {
                (None, None) => return Ok(()),
                (Some(Frame::Array { index }), Some(b',')) => {
                    *index += 1;
                    self.value()?;
                }
                (Some(Frame::Object { .. }), Some(b',')) => {
                    self.member_name()?;
                    self.value()?;
                }
                (Some(Frame::Array { .. }), Some(b']'))
                | (Some(Frame::Object { .. }), Some(b'}')) => {
                    self.stack.pop();
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// Scan one value. A container is opened (and its first member name read), not
    /// scanned to its end: `document` continues it, so nesting costs heap, not stack.
    fn value(&mut self) -> Result<(), Violation> {
        loop {
            self.whitespace();
            if matches!(self.peek(), Some(b'[' | b'{')) && self.stack.len() >= MAX_DEPTH {
                self.pos += 1;
                return Err(self.syntax());
            }
            match self.next() {
                Some(b'[') => {
                    self.whitespace();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return Ok(());
                    }
                    self.stack.push(Frame::Array { index: 0 });
                }
                Some(b'{') => {
                    self.whitespace();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(());
                    }
                    self.stack.push(Frame::Object {
                        names: Vec::new(),
                        set: None,
                    });
                    self.member_name()?;
                }
                Some(b'"') => return self.string().map(drop),
                Some(b'-' | b'0'..=b'9') => return self.number(self.pos - 1),
                Some(b't') => return self.literal(b"rue"),
                Some(b'f') => return self.literal(b"alse"),
                Some(b'n') => return self.literal(b"ull"),
                _ => return Err(self.syntax()),
            }
        }
    }

    /// Read `"name" :` in the innermost object and refuse a name it has seen before.
    fn member_name(&mut self) -> Result<(), Violation> {
        self.whitespace();
        if self.next() != Some(b'"') {
            return Err(self.syntax());
        }
        let name = self.string()?;
        self.whitespace();
        if self.next() != Some(b':') {
            return Err(self.syntax());
        }
        let Some(Frame::Object { names, set }) = self.stack.last_mut() else {
            return Err(self.syntax());
        };
        let repeated = match set {
            Some(set) => !set.insert(name.clone()),
            None => names.contains(&name),
        };
        names.push(name);
        if repeated {
            let name = names.last().map(|n| n.to_string()).unwrap_or_default();
            return Err(self.violation(ViolationKind::DuplicateName(name)));
        }
        if set.is_none() && names.len() >= SET_FROM {
            *set = Some(names.iter().cloned().collect());
        }
        Ok(())
    }

    /// Read a string after its opening quote; its value, borrowed unless it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, Violation> {
        let start = self.pos;
        loop {
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => return self.escaped_string(start),
                Some(0x00..=0x1f) | None => return Err(self.syntax()),
                Some(_) => {}
            }
        }
        let raw = &self.bytes[start..self.pos - 1];
        std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| Violation {
                pointer: String::new(),
                kind: ViolationKind::Syntax(start),
            })
    }

    /// The rest of a string that has an escape; `start` is the byte after its opening
    /// quote, and the scanner stands after the first backslash.
    fn escaped_string(&mut self, start: usize) -> Result<Cow<'a, str>, Violation> {
        let mut out: Vec<u8> = self.bytes[start..self.pos - 1].to_vec();
        let mut backslash = true;
        loop {
            if backslash {
                backslash = false;
                let unescaped = match self.next() {
                    Some(b'"') => b'"',
                    Some(b'\\') => b'\\',
                    Some(b'/') => b'/',
                    Some(b'b') => 0x08,
                    Some(b'f') => 0x0c,
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(b'u') => {
                        let c = self.unicode_escape()?;
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        continue;
                    }
                    _ => return Err(self.syntax()),
                };
                out.push(unescaped);
                continue;
            }
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => backslash = true,
                Some(0x00..=0x1f) | None => return Err(self.syntax()),
                Some(byte) => out.push(byte),
            }
        }
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| Violation {
                pointer: String::new(),
                kind: ViolationKind::Syntax(start),
            })
    }

    /// The character of a `\uXXXX` escape (the scanner stands after the `u`), joining a
    /// surrogate pair. A lone surrogate is refused, as `serde_json` refuses it.
    fn unicode_escape(&mut self) -> Result<char, Violation> {
        let high = self.hex4()?;
        if !(0xd800..0xdc00).contains(&high) {
            return char::from_u32(high).ok_or_else(|| self.syntax());
        }
        if self.next() != Some(b'\\') || self.next() != Some(b'u') {
            return Err(self.syntax());
        }
        let low = self.hex4()?;
        if !(0xdc00..0xe000).contains(&low) {
            return Err(self.syntax());
        }
        char::from_u32(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00))
            .ok_or_else(|| self.syntax())
    }

    fn hex4(&mut self) -> Result<u32, Violation> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = self
                .next()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.syntax())?;
            value = value * 16 + digit;
        }
        Ok(value)
    }

    /// Read a number starting at `start` (the scanner stands after its first byte) and
    /// refuse it unless it round-trips.
    fn number(&mut self, start: usize) -> Result<(), Violation> {
        self.pos = start;
        self.eat(b'-');
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax()),
        }
        let mut plain_integer = true;
        if self.eat(b'.') {
            plain_integer = false;
            self.some_digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            plain_integer = false;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.some_digits()?;
        }
        let literal = &self.bytes[start..self.pos];
        // An integer below 10^15 is below 2^53, so it is a double exactly, and ECMAScript
        // writes it with the same digits: the common case needs no conversion.
        if plain_integer && literal.len() <= 15 {
            return Ok(());
        }
        match round_trip(literal) {
            RoundTrip::Exact(double) if is_unsafe_integer(double) => {
                Err(self.violation(ViolationKind::UnsafeInteger {
                    literal: shown(literal),
                }))
            }
            RoundTrip::Exact(_) => Ok(()),
            RoundTrip::Changed(stored) => Err(self.inexact(literal, Some(stored))),
            RoundTrip::OutOfRange => Err(self.inexact(literal, None)),
        }
    }

    fn inexact(&self, literal: &[u8], stored: Option<String>) -> Violation {
        self.violation(ViolationKind::InexactNumber {
            literal: shown(literal),
            stored,
        })
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Violation> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.syntax());
        }
        self.digits();
        Ok(())
    }

    fn literal(&mut self, rest: &[u8]) -> Result<(), Violation> {
        if self.bytes[self.pos..].starts_with(rest) {
            self.pos += rest.len();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.pos += 1;
        }
        matched
    }

    fn syntax(&self) -> Violation {
        Violation {
            pointer: String::new(),
            kind: ViolationKind::Syntax(self.pos.saturating_sub(1)),
        }
    }

    /// A violation at the value the scanner is in, with its pointer.
    fn violation(&self, kind: ViolationKind) -> Violation {
        let mut pointer = String::new();
        for frame in &self.stack {
            pointer.push('/');
            match frame {
                Frame::Array { index } => pointer.push_str(&index.to_string()),
                Frame::Object { names, .. } => {
                    let name = names.last().map_or("", |n| n.as_ref());
                    pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                }
            }
        }
        Violation { pointer, kind }
    }
}

enum RoundTrip {
    /// The nearest double, whose canonical form has the literal's value.
    Exact(f64),
    /// The number ECMAScript would write for the nearest double.
    Changed(String),
    OutOfRange,
}

/// A number as a violation shows it: cut to 40 characters.
fn shown(literal: &[u8]) -> String {
    const SHOWN: usize = 40;
    let text = String::from_utf8_lossy(literal);
    if text.chars().count() > SHOWN {
        format!("{}…", text.chars().take(SHOWN).collect::<String>())
    } else {
        text.into_owned()
    }
}

/// Whether ECMAScript writes `double` as a plain integer beyond ±(2^53 − 1): from 2^53
/// (every double that large is an integer) up to 10^21, where it switches to exponents.
fn is_unsafe_integer(double: f64) -> bool {
    const TWO_TO_53: f64 = 9_007_199_254_740_992.0;
    (TWO_TO_53..1e21).contains(&double.abs())
}

/// Compare a JSON number's value with the value of the canonical form of its nearest
/// double. `literal` is known to follow the JSON number grammar.
fn round_trip(literal: &[u8]) -> RoundTrip {
    // The JSON number grammar is a subset of Rust's float syntax, and Rust's parse is
    // correctly rounded, like `serde_json` with `float_roundtrip`.
    let Some(double) = std::str::from_utf8(literal)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|d| d.is_finite())
    else {
        return RoundTrip::OutOfRange;
    };
    let mut buffer = ryu_js::Buffer::new();
    let canonical = buffer.format_finite(double);
    if Decimal::of(literal) == Decimal::of(canonical.as_bytes()) {
        RoundTrip::Exact(double)
    } else if double == 0.0 {
        // ECMAScript writes −0 as "0", and so does RFC 8785.
        RoundTrip::Changed("0".to_owned())
    } else {
        RoundTrip::Changed(canonical.to_owned())
    }
}

/// The value of a decimal number as `sign × 0.DIGITS × 10^exponent`, with no leading or
/// trailing zero in DIGITS; zero has no digits and no sign. Two numbers are equal exactly
/// when their `Decimal`s are.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl Decimal {
    /// Read a number in JSON syntax (which ECMAScript's output also follows).
    fn of(text: &[u8]) -> Self {
        let (negative, text) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let mantissa_end = text
            .iter()
            .position(|b| matches!(b, b'e' | b'E'))
            .unwrap_or(text.len());
        let (mantissa, exponent_part) = text.split_at(mantissa_end);
        let point = mantissa
            .iter()
            .position(|&b| b == b'.')
            .unwrap_or(mantissa.len());
        let mut digits: Vec<u8> = mantissa
            .iter()
            .copied()
            .filter(u8::is_ascii_digit)
            .collect();
        // The exponent is saturated: a body is far too small for the saturation to make
        // two different numbers compare equal.
        let written_exponent = exponent_part.get(1..).map_or(0, |e| {
            let (sign, e) = match e.split_first() {
                Some((b'-', rest)) => (-1, rest),
                Some((b'+', rest)) => (1, rest),
                _ => (1, e),
            };
            let magnitude = e.iter().fold(0i64, |acc, d| {
                acc.saturating_mul(10)
                    .saturating_add(i64::from(d - b'0'))
                    .min(i64::MAX / 4)
            });
            sign * magnitude
        });
        let leading = digits.iter().take_while(|&&d| d == b'0').count();
        let trailing = digits.iter().rev().take_while(|&&d| d == b'0').count();
        if leading == digits.len() {
            return Self {
                negative: false,
                digits: Vec::new(),
                exponent: 0,
            };
        }
        digits.truncate(digits.len() - trailing);
        digits.drain(..leading);
        let exponent = i64::try_from(point)
            .unwrap_or(i64::MAX / 4)
            .saturating_sub(i64::try_from(leading).unwrap_or(i64::MAX / 4))
            .saturating_add(written_exponent);
        Self {
            negative,
            digits,
            exponent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inexact(pointer: &str, literal: &str, stored: Option<&str>) -> Result<(), Violation> {
        Err(Violation {
            pointer: pointer.to_owned(),
            kind: ViolationKind::InexactNumber {
                literal: literal.to_owned(),
                stored: stored.map(str::to_owned),
            },
        })
    }

    fn duplicate(pointer: &str, name: &str) -> Result<(), Violation> {
        Err(Violation {
            pointer: pointer.to_owned(),
            kind: ViolationKind::DuplicateName(name.to_owned()),
        })
    }

    #[test]
    fn numbers_that_round_trip_are_accepted() {
        for number in [
            "0",
            "-0",
            "-0.0",
            "0e5",
            "1",
            "-1",
            "1.0",
            "1e2",
            "1E+2",
            "100e-2",
            "2.50",
            "0.1",
            "-0.1",
            "0.3",
            "1e-7",
            "123456789012345",
            "1234567890123456",
            "9007199254740991",
            "-9007199254740991",
            "9007199254740991.0",
            "1e21",
            "1e+21",
            "-1e21",
            "1.7976931348623157e308",
            "2.2250738585072014e-308",
            "5e-324",
            "333333333.3333333",
        ] {
            assert_eq!(check(number.as_bytes()), Ok(()), "{number}");
        }
    }

    #[test]
    fn numbers_that_would_be_stored_as_another_number_are_refused() {
        for (number, stored) in [
            ("123456789012345678901234567890", "1.2345678901234568e+29"),
            ("1e-400", "0"),
            ("-1e-400", "0"),
            ("9007199254740993", "9007199254740992"),
            ("0.30000000000000000001", "0.3"),
            (
                "0.1000000000000000055511151231257827021181583404541015625",
                "0.1",
            ),
            ("2e-324", "0"),
            ("3e-324", "5e-324"),
            ("1.00000000000000001", "1"),
        ] {
            let shown: String = number.chars().take(40).collect();
            let shown = if shown.len() < number.len() {
                format!("{shown}…")
            } else {
                shown
            };
            assert_eq!(
                check(number.as_bytes()),
                inexact("", &shown, Some(stored)),
                "{number}"
            );
        }
    }

    /// Stored as plain integers beyond ±(2^53 − 1), however they were written.
    #[test]
    fn integers_beyond_the_safe_range_are_refused() {
        for number in [
            "9007199254740992",
            "-9007199254740992",
            "9007199254740992.0",
            "1e16",
            "-1e16",
            "1.0e16",
            "100000000000000000000",
        ] {
            assert_eq!(
                check(number.as_bytes()),
                Err(Violation {
                    pointer: String::new(),
                    kind: ViolationKind::UnsafeInteger {
                        literal: number.to_owned()
                    },
                }),
                "{number}"
            );
        }
        assert_eq!(
            check(br#"{"data":{"n":1e16}}"#).map_err(|v| v.pointer),
            Err("/data/n".to_owned())
        );
    }

    #[test]
    fn numbers_beyond_the_double_range_are_refused() {
        for number in [
            "1e400",
            "-1e400",
            "1.7976931348623159e308",
            "1e99999999999999999999999",
        ] {
            assert_eq!(
                check(number.as_bytes()),
                inexact("", number, None),
                "{number}"
            );
        }
    }

    #[test]
    fn the_pointer_names_the_offending_value_at_any_depth() {
        assert_eq!(
            check(br#"[{"type":"A","data":{"a":[1,{"x/y~":1e-400}]}}]"#),
            inexact("/0/data/a/1/x~1y~0", "1e-400", Some("0"))
        );
        assert_eq!(
            check(br#"{"a":1,"b":[{"c":{}},{"d":2,"d":3}]}"#),
            duplicate("/b/1/d", "d")
        );
        assert_eq!(check(br#"{"a":1,"a":2}"#), duplicate("/a", "a"));
        assert_eq!(check(br#"{"":1,"":2}"#), duplicate("/", ""));
    }

    #[test]
    fn names_are_compared_after_unescaping() {
        assert_eq!(check(br#"{"a":1,"\u0061":2}"#), duplicate("/a", "a"));
        assert_eq!(
            check("{\"\u{1f602}\":1,\"\\ud83d\\ude02\":2}".as_bytes()),
            duplicate("/\u{1f602}", "\u{1f602}")
        );
        assert_eq!(check(br#"{"a\"":1,"a\u0022":2}"#), duplicate("/a\"", "a\""));
        // Same name in different objects, and names that differ only in case, are fine.
        assert_eq!(
            check(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}],"A":1}"#),
            Ok(())
        );
    }

    #[test]
    fn large_objects_find_duplicates_too() {
        let mut members: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        assert_eq!(
            check(format!("{{{}}}", members.join(",")).as_bytes()),
            Ok(())
        );
        members.push("\"k7\":0".into());
        assert_eq!(
            check(format!("{{{}}}", members.join(",")).as_bytes()),
            duplicate("/k7", "k7")
        );
    }

    #[test]
    fn the_grammar_is_exactly_json() {
        let valid = [
            "null",
            " true ",
            "false",
            "\"\"",
            "[]",
            "{}",
            "[[],{},[null]]",
            "\t{ \"a\" : [ 1 , 2.5e-3 , \"x\\n\\u00e9\" ] }\r\n",
            r#""\ud83d\ude02""#,
        ];
        let invalid = [
            "",
            " ",
            "nul",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{a:1}",
            "[1 2]",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "0x10",
            "NaN",
            "Infinity",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\u{1}\"",
            "[1]]",
            "{}{}",
            "[",
            "{\"a\":",
            "\u{feff}1",
        ];
        for text in invalid {
            assert!(
                matches!(
                    check(text.as_bytes()),
                    Err(Violation {
                        kind: ViolationKind::Syntax(_),
                        ..
                    })
                ),
                "{text:?} was accepted"
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text:?}"
            );
        }
        for text in valid {
            assert_eq!(check(text.as_bytes()), Ok(()), "{text:?}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text:?}"
            );
        }
        assert!(matches!(
            check(b"\"\xff\""),
            Err(Violation {
                kind: ViolationKind::Syntax(_),
                ..
            })
        ));
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [MAX_DEPTH, MAX_DEPTH + 1, 100_000] {
            let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            let empty_inside = format!("{}{{}}{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
            for text in [arrays, objects, empty_inside] {
                let serde_accepts = serde_json::from_str::<serde_json::Value>(&text).is_ok();
                assert_eq!(
                    serde_accepts,
                    depth <= MAX_DEPTH,
                    "serde_json at depth {depth}"
                );
                assert_eq!(
                    check(text.as_bytes()).is_ok(),
                    serde_accepts,
                    "depth {depth}"
                );
            }
        }
    }

    #[test]
    fn from_slice_reports_syntax_through_serde_json_and_i_json_with_a_pointer() {
        assert!(matches!(
            from_slice::<serde_json::Value>(b"{\"a\":"),
            Err(StrictError::Json(_))
        ));
        let refused = from_slice::<serde_json::Value>(br#"{"n":[1e-400]}"#);
        match refused {
            Err(StrictError::NotIJson(v)) => {
                assert_eq!(v.pointer, "/n/0");
                assert_eq!(
                    v.to_string(),
                    "a number is not exactly representable as an IEEE 754 double, so the log would store another number, at /n/0"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            from_slice::<serde_json::Value>(br#"{"n":0.1}"#).ok(),
            Some(serde_json::json!({"n": 0.1}))
        );
    }

    #[test]
    fn what_passes_is_stored_as_the_number_sent() {
        // For every accepted number, the canonical bytes read back as the same value.
        for number in [
            "0.1",
            "1.0",
            "1e2",
            "-0",
            "2.50",
            "1e21",
            "5e-324",
            "1.7976931348623157e308",
        ] {
            let value: serde_json::Value = from_slice(number.as_bytes()).expect(number);
            let canonical = crate::jcs::canonicalize(&value).expect(number);
            assert_eq!(
                Decimal::of(&canonical),
                Decimal::of(number.as_bytes()),
                "{number} stored as {}",
                String::from_utf8_lossy(&canonical)
            );
        }
    }
}
