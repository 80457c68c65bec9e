//! A cursor over JSON text for the export reader's fast paths, and the word-wide search
//! for the end of a JSON string.
//!
//! Every method returns `None` as soon as the text is not of the one plain form it expects;
//! the callers then hand the text to `serde_json`, which decides and explains. So nothing
//! here ever refuses input on its own.

use std::ops::Range;

use uuid::Uuid;

use crate::chain::Hash;

/// Lowercase hex digit values; 0xff marks everything else.
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Lowercase hex of exactly 32 bytes.
pub(crate) fn hex_hash(text: &[u8]) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    let mut invalid = 0;
    for (out, pair) in hash.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        invalid |= high | low;
        *out = high << 4 | (low & 0x0f);
    }
    // Valid digits are below 16, so one test at the end covers all 64.
    (invalid & 0xf0 == 0).then_some(hash)
}

/// A cursor over JSON text for the fast paths. Every method returns `None` as soon as the
/// text is not of the one plain form it expects.
pub(super) struct Scanner<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Scanner<'a> {
    pub(super) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(super) fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    pub(super) fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Consumes `want` if the text continues with it.
    pub(super) fn eat(&mut self, want: &[u8]) -> bool {
        let found = self.rest().starts_with(want);
        if found {
            self.at += want.len();
        }
        found
    }

    pub(super) fn literal(&mut self, want: &[u8]) -> Option<()> {
        self.eat(want).then_some(())
    }

    /// A member name of lowercase letters and `_` (every name in an export or a record
    /// envelope), and the colon after it.
    pub(super) fn key(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let rest = self.rest();
        let len = rest
            .iter()
            .take(32)
            .position(|&b| !(b.is_ascii_lowercase() || b == b'_'))?;
        if rest.get(len..len + 2)? != b"\":" {
            return None;
        }
        self.at += len + 2;
        Some(&rest[..len])
    }

    /// A JSON integer without sign, fraction or exponent that fits a u64.
    pub(super) fn integer(&mut self) -> Option<u64> {
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        // JSON forbids leading zeros; "0" itself is fine.
        if digits == 0 || (digits > 1 && self.bytes[start] == b'0') {
            return None;
        }
        Some(n)
    }

    /// A string of exactly 64 lowercase hex digits.
    pub(super) fn hex_hash(&mut self) -> Option<Hash> {
        self.byte(b'"')?;
        let rest = self.rest();
        if rest.get(64) != Some(&b'"') {
            return None;
        }
        let hash = hex_hash(rest.get(..64)?)?;
        self.at += 65;
        Some(hash)
    }

    /// A string without escapes or control characters; where its contents are.
    pub(super) fn plain_range(&mut self) -> Option<Range<usize>> {
        self.byte(b'"')?;
        let start = self.at;
        let len = find_string_special(self.rest())?;
        self.at += len;
        self.byte(b'"')?;
        Some(start..start + len)
    }

    pub(super) fn plain(&mut self) -> Option<()> {
        self.plain_range().map(|_| ())
    }

    /// A UUID in its hyphenated form, as the record writer spells it.
    pub(super) fn uuid(&mut self) -> Option<Uuid> {
        self.byte(b'"')?;
        let rest = self.rest();
        if rest.get(36) != Some(&b'"') {
            return None;
        }
        // The same parser the record's serde implementation uses.
        let id = Uuid::try_parse_ascii(rest.get(..36)?).ok()?;
        self.at += 37;
        Some(id)
    }

    /// Any JSON value that `serde_json` reads into a `Value` without error, as far as the
    /// plain forms canonical JSON uses go. Escapes that could be unpaired surrogates,
    /// exponents (which could overflow) and deep nesting are left to `serde_json`.
    pub(super) fn value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_FAST_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.json_string(),
            b'{' => {
                self.at += 1;
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.json_string()?;
                    self.byte(b':')?;
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.json_number(),
            _ => None,
        }
    }

    pub(super) fn json_string(&mut self) -> Option<()> {
        self.byte(b'"')?;
        loop {
            let rest = self.rest();
            let i = find_string_special(rest)?;
            self.at += i + 1;
            match rest[i] {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let digits = self.bytes.get(self.at..self.at + 4)?;
                        let code =
                            u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
                        if !digits.iter().all(u8::is_ascii_hexdigit)
                            || (0xd800..=0xdfff).contains(&code)
                        {
                            return None;
                        }
                        self.at += 4;
                    }
                    _ => return None,
                },
                // A control character, which JSON strings may not hold raw.
                _ => return None,
            }
        }
    }

    pub(super) fn json_number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.peek().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        // Without an exponent, a number this short is always a finite f64.
        let plain = !matches!(self.peek(), Some(b'e' | b'E')) && self.at - start <= 100;
        plain.then_some(())
    }

    pub(super) fn digits(&mut self) {
        while self.peek().filter(u8::is_ascii_digit).is_some() {
            self.at += 1;
        }
    }
}

/// Nesting depth up to which the fast path checks `data` itself; deeper values go to
/// `serde_json`, whose own limit (128) is well above.
const MAX_FAST_DEPTH: u32 = 64;

/// The index of the first `"`, `\` or ASCII control character in `bytes`: where a JSON
/// string ends or needs a closer look.
///
/// Strings are most of a record's bytes, so this runs eight bytes at a time (word-wide
/// byte tests) instead of one.
pub(super) fn find_string_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // Marks the bytes of `word` below `n` (for n <= 0x80; bytes of 0x80 and above are
    // never marked). Bytes above a true match may be marked too (borrows), but the lowest
    // marked byte is always a true match, which is all this needs.
    let below = |word: u64, n: u64| word.wrapping_sub(n) & !word & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Little-endian, so that the lowest set bit belongs to the first byte.
        let word = u64::from_le_bytes(word);
        let found =
            below(word ^ QUOTES, ONES) | below(word ^ BACKSLASHES, ONES) | below(word, SPACES);
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn the_word_wide_string_search_finds_the_first_special_byte() {
        let mut rng = Rng(0xfeed);
        let specials = [b'"', b'\\', 0x00, 0x1f, b'\n'];
        let ordinary = [
            b'a', b' ', b'~', 0x7f, 0x80, 0xc3, 0xff, b'!', b'#', b']', b'[',
        ];
        for _ in 0..5000 {
            let len = rng.below(40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(12) == 0 {
                        specials[rng.below(specials.len())]
                    } else {
                        ordinary[rng.below(ordinary.len())]
                    }
                })
                .collect();
            let naive = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            assert_eq!(find_string_special(&bytes), naive, "{bytes:?}");
        }
    }

    #[test]
    fn hex_hashes_are_64_lowercase_digits() {
        let hex = "00".repeat(31) + "ff";
        let mut expected = [0u8; 32];
        expected[31] = 0xff;
        assert_eq!(hex_hash(hex.as_bytes()), Some(expected));
        assert_eq!(hex_hash(("00".repeat(31) + "FF").as_bytes()), None);
        assert_eq!(hex_hash("00".repeat(31).as_bytes()), None);
        assert_eq!(hex_hash(("00".repeat(31) + "0g").as_bytes()), None);
        assert_eq!(hex_hash(("00".repeat(31) + "0:").as_bytes()), None);
    }
}
