//! RFC 8785 JSON Canonicalization Scheme (JCS) over `serde_json::Value`.
//!
//! Every hash in Amtsbuch that covers JSON covers these bytes, so two parties
//! that hold the same JSON value — a Rust service, a JavaScript portal, an
//! auditor's offline verifier — must produce the same bytes independently.
//! JCS gets there by fixing the three things JSON leaves open: numbers are
//! written the way ECMAScript's `Number.prototype.toString` writes them,
//! object members are sorted by the UTF-16 code units of their names, and
//! strings use one fixed escaping. The module is pure and allocation-frugal
//! because it runs once per event on the append path.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Largest integer that every I-JSON (RFC 7493) receiver holds exactly:
/// 2^53 − 1, ECMAScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// An integer outside ±(2^53 − 1). JCS reads every number as an IEEE 754
    /// double, so such an integer would be rounded and the canonical bytes
    /// would no longer say what the application meant. The payload is the
    /// number as written by `serde_json`.
    #[error("number {0} is outside the I-JSON range ±(2^53 - 1) and would be rounded")]
    NumberOutOfRange(String),
    /// NaN or ±infinity, which JSON cannot express. `serde_json` normally
    /// refuses to build such numbers; the check stays so that a change of
    /// `serde_json` features can never smuggle one into a hash.
    #[error("number {0} is not finite")]
    NonFiniteNumber(String),
}

/// Returns the canonical (RFC 8785) bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(128);
    canonicalize_into(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical (RFC 8785) bytes of `value` to `out`.
///
/// On error `out` is restored to its previous length, so a caller that reuses
/// one buffer across events never hashes a half-written value.
pub fn canonicalize_into(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let start = out.len();
    let result = write_value(value, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    out.push(b'{');
    // serde_json's default map iterates in UTF-8 byte order, which agrees
    // with UTF-16 order unless keys mix supplementary-plane characters with
    // U+E000..U+FFFF. Checking first keeps the common case free of any
    // allocation; the sort is needed for the rare keys and whenever the
    // `preserve_order` feature switches the map to insertion order.
    let mut keys = map.keys();
    let already_sorted = match keys.next() {
        None => true,
        Some(first) => keys
            .try_fold(first, |prev, key| {
                (cmp_utf16(prev, key) == Ordering::Less).then_some(key)
            })
            .is_some(),
    };
    if already_sorted {
        for (i, (key, value)) in map.iter().enumerate() {
            write_member(i, key, value, out)?;
        }
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_unstable_by(|a, b| cmp_utf16(a.0, b.0));
        for (i, (key, value)) in members.into_iter().enumerate() {
            write_member(i, key, value, out)?;
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_member(
    index: usize,
    key: &str,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    if index > 0 {
        out.push(b',');
    }
    write_string(key, out);
    out.push(b':');
    write_value(value, out)
}

/// Orders strings by their UTF-16 code units, as RFC 8785 section 3.2.3
/// requires (ECMAScript compares strings that way).
fn cmp_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    // Integers are checked before any conversion to f64, because the
    // conversion itself is where precision would be lost silently.
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::NumberOutOfRange(n.to_string()));
        }
        write_double(u as f64, out);
        return Ok(());
    }
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::NumberOutOfRange(n.to_string()));
        }
        write_double(i as f64, out);
        return Ok(());
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => {
            write_double(f, out);
            Ok(())
        }
        Some(_) => Err(CanonicalError::NonFiniteNumber(n.to_string())),
        // Only reachable with `arbitrary_precision`, for a literal that fits
        // neither u64, i64 nor a finite f64.
        None => Err(CanonicalError::NumberOutOfRange(n.to_string())),
    }
}

/// Writes a finite double the way ECMAScript's `Number.prototype.toString`
/// does (RFC 8785 section 3.2.2.3).
fn write_double(f: f64, out: &mut Vec<u8>) {
    // ECMAScript prints −0 as "0"; spelled out here rather than relying on
    // the formatter so the rule is visible.
    if f == 0.0 {
        out.push(b'0');
        return;
    }
    let mut buffer = ryu_js::Buffer::new();
    out.extend_from_slice(buffer.format_finite(f).as_bytes());
}

/// Writes a JSON string with RFC 8785 section 3.2.2.2 escaping: the two-
/// character escapes for \b \t \n \f \r \" \\, `\u00xx` (lowercase hex) for
/// the remaining control characters, everything else verbatim as UTF-8.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Escapes only ever replace single ASCII bytes, and no byte of a multi-
    // byte UTF-8 sequence is ASCII, so copying unescaped runs byte-wise keeps
    // the UTF-8 intact.
    let mut run_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0f)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        out.extend_from_slice(escape);
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value, expected: &str) {
        match canonicalize(&value) {
            Ok(bytes) => assert_eq!(
                String::from_utf8_lossy(&bytes),
                expected,
                "canonical form of {value}"
            ),
            Err(e) => panic!("canonicalizing {value} failed: {e}"),
        }
    }

    #[test]
    fn literals_and_empty_containers() {
        check(json!(null), "null");
        check(json!(true), "true");
        check(json!(false), "false");
        check(json!([]), "[]");
        check(json!({}), "{}");
        check(json!([[], {}, [null]]), "[[],{},[null]]");
    }

    #[test]
    fn numbers_follow_ecmascript_tostring() {
        check(json!(0), "0");
        check(json!(-0.0), "0");
        check(json!(1.0), "1");
        check(json!(-1), "-1");
        check(json!(56.0), "56");
        check(json!(4.5), "4.5");
        check(json!(0.002), "0.002");
        check(json!(1e-7), "1e-7");
        check(json!(0.000001), "0.000001");
        check(json!(1e21), "1e+21");
        check(json!(1e20), "100000000000000000000");
        check(json!(1e30), "1e+30");
        check(json!(f64::MAX), "1.7976931348623157e+308");
        check(json!(f64::MIN_POSITIVE), "2.2250738585072014e-308");
        check(json!(5e-324), "5e-324");
        check(json!(333_333_333.333_333_3), "333333333.3333333");
    }

    #[test]
    fn integers_up_to_the_safe_limit_are_exact() {
        check(json!(9_007_199_254_740_991_u64), "9007199254740991");
        check(json!(-9_007_199_254_740_991_i64), "-9007199254740991");
    }

    #[test]
    fn integers_beyond_the_safe_limit_are_rejected_not_rounded() {
        for (value, text) in [
            (json!(9_007_199_254_740_992_u64), "9007199254740992"),
            (json!(9_007_199_254_740_993_u64), "9007199254740993"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(-9_007_199_254_740_992_i64), "-9007199254740992"),
            (json!(i64::MIN), "-9223372036854775808"),
        ] {
            assert_eq!(
                canonicalize(&value),
                Err(CanonicalError::NumberOutOfRange(text.to_owned()))
            );
        }
    }

    #[test]
    fn error_leaves_the_buffer_as_it_was() {
        let mut out = b"prefix".to_vec();
        let value = json!({"a": [1, 2, {"b": u64::MAX}]});
        assert!(canonicalize_into(&value, &mut out).is_err());
        assert_eq!(out, b"prefix");
        assert_eq!(canonicalize_into(&json!([1]), &mut out), Ok(()));
        assert_eq!(out, b"prefix[1]");
    }

    #[test]
    fn strings_use_the_rfc_8785_escapes() {
        check(json!("\u{8}\t\n\u{c}\r\"\\/"), r#""\b\t\n\f\r\"\\/""#);
        check(
            json!("\u{0}\u{1}\u{f}\u{1f}"),
            r#""\u0000\u0001\u000f\u001f""#,
        );
        // DEL and C1 controls are not escaped, nor is anything non-ASCII.
        check(json!("\u{7f}\u{80}€😂"), "\"\u{7f}\u{80}€😂\"");
        check(json!("</script>"), "\"</script>\"");
    }

    #[test]
    fn object_members_are_sorted_by_utf16_code_units() {
        // U+FB33 sorts after U+1F602 in UTF-8/code-point order but before it
        // in UTF-16, where the emoji is the surrogate pair D83D DE02.
        check(
            json!({"\u{fb33}": 1, "\u{1f602}": 2, "a": 3}),
            "{\"a\":3,\"\u{1f602}\":2,\"\u{fb33}\":1}",
        );
        check(json!({"b": 1, "a": 2, "": 3}), r#"{"":3,"a":2,"b":1}"#);
        check(json!({"10": 1, "1": 2, "A": 3}), r#"{"1":2,"10":1,"A":3}"#);
    }

    #[test]
    fn nested_values_are_canonical_at_every_level() {
        check(
            json!({"z": [{"y": 1, "x": 2}], "a": {"c": null, "b": [3.0, "s"]}}),
            r#"{"a":{"b":[3,"s"],"c":null},"z":[{"x":2,"y":1}]}"#,
        );
    }

    #[test]
    fn utf16_order_puts_surrogate_pairs_before_the_top_of_the_bmp() {
        let expected = [
            "",
            "a",
            "ab",
            "a\u{10000}",
            "a\u{fffd}",
            "b",
            "\u{7f}",
            "\u{80}",
            "é",
            "\u{10000}",
            "\u{1f602}",
            "\u{10ffff}",
            "\u{e000}",
            "\u{ffff}",
        ];
        let mut keys = expected;
        keys.reverse();
        keys.sort_by(|a, b| cmp_utf16(a, b));
        assert_eq!(keys, expected);
    }
}
