//! Standard base64 (RFC 4648 section 4, padded) for the C2SP text formats.
//!
//! Signed notes, checkpoints and tlog proofs carry keys, signatures and hashes in standard
//! padded base64. The domain crate keeps its dependencies to a fixed short list, and the
//! codec is small, so it lives here. Decoding is strict on purpose: every byte string has
//! exactly one accepted encoding (no whitespace, no missing or misplaced padding, no
//! non-zero unused bits in the last character). A lenient decoder would let two different
//! texts stand for the same checkpoint or signature, and a log whose artefacts are compared
//! byte for byte by auditors must not have that ambiguity.
//!
//! It is also the hottest loop of the offline verifier, which decodes every record of an
//! export: [`decode_json_string`] decodes a JSON string of base64 where it lies in the
//! input and finds the string's end in the same pass. Both decoders share the fast path
//! for whole quanta (eight characters per step, two per table lookup) and the strict rules
//! for the last one, so they accept exactly the same texts.

/// The RFC 4648 section 4 alphabet, indexed by 6-bit value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Marks a byte that is not in the alphabet. Every valid value is below 64, so the high
/// bit alone tells a lookup failure apart, which lets a whole quantum be checked at once.
const INVALID: u8 = 0xff;

/// Reverse lookup: byte to 6-bit value, or [`INVALID`].
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Why a text is not the canonical base64 encoding of any byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    /// Padded base64 always comes in whole four-character quanta.
    #[error("base64 text of length {len} is not a multiple of 4 characters")]
    Length { len: usize },
    /// A byte outside the standard alphabet (this includes the URL-safe `-` and `_`,
    /// whitespace and line breaks).
    #[error("invalid base64 character at byte offset {offset}")]
    InvalidCharacter { offset: usize },
    /// `=` anywhere but in the last one or two positions of the text.
    #[error("misplaced base64 padding at byte offset {offset}")]
    Padding { offset: usize },
    /// The last character before the padding has bits set that encode no data; such a text
    /// decodes to the same bytes as the canonical one and is therefore refused.
    #[error("non-canonical base64: the unused bits of the last character are not zero")]
    NonCanonical,
}

/// The length of the padded encoding of `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

/// Encodes `bytes` as standard padded base64.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[((n >> shift) & 0x3f) as usize]);
    let mut chunks = bytes.chunks_exact(3);
    for chunk in &mut chunks {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(sextet(n, 6));
        out.push(sextet(n, 0));
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(sextet(n, 18));
            out.push(sextet(n, 12));
            out.push_str("==");
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.push(sextet(n, 18));
            out.push(sextet(n, 12));
            out.push(sextet(n, 6));
            out.push('=');
        }
        _ => {}
    }
    out
}

/// Decodes standard padded base64, accepting only the canonical encoding.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(Base64Error::Length { len: bytes.len() });
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    // Every quantum but the last holds exactly three bytes and no padding; the fast path
    // stops at the first that does not, which is the last or a bad one.
    let done = decode_quanta(bytes, &mut out);
    match bytes.get(done..).unwrap_or_default() {
        [] => Ok(out),
        last @ [_, _, _, _] => {
            decode_last(last, done, &mut out)?;
            Ok(out)
        }
        rest => Err(first_bad_character(&rest[..4], done)),
    }
}

/// Decodes the contents of a JSON string of base64, from just after its opening quote,
/// into `out`, and returns the index of the closing quote.
///
/// Decoding and finding the string's end are one pass: the closing quote is the first
/// character outside the alphabet that is not padding. Accepts exactly the texts that
/// [`decode`] accepts; for anything else (an escape, a character outside the alphabet, no
/// closing quote) it returns `None` and leaves `out` as it was, so that a caller can hand
/// the string to a JSON parser and [`decode`], which name the problem.
pub fn decode_json_string(s: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let start = out.len();
    let at = decode_quanta(s, out);
    let rest = s.get(at..).unwrap_or_default();
    let end = match rest {
        [b'"', ..] => Some(at),
        // Whole quanta without padding were all taken above, so only a padded last
        // quantum can stand before the quote.
        [a, b, c, d, b'"', ..] => decode_last(&[*a, *b, *c, *d], at, out)
            .ok()
            .map(|()| at + 4),
        _ => None,
    };
    if end.is_none() {
        out.truncate(start);
    }
    end
}

/// Every pair of base64 characters, indexed by their two bytes: the twelve bits they
/// encode, or 0xffff when either is outside the alphabet. Decoding two characters with
/// one lookup halves the work of the hottest loop; the table (128 KiB) is built once.
fn pairs() -> &'static [u16] {
    static PAIRS: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    PAIRS.get_or_init(|| {
        (0..=u16::MAX)
            .map(|i| {
                let (high, low) = (DECODE[usize::from(i >> 8)], DECODE[usize::from(i & 0xff)]);
                if (high | low) & 0xc0 != 0 {
                    0xffff
                } else {
                    u16::from(high) << 6 | u16::from(low)
                }
            })
            .collect()
    })
}

/// Decodes whole quanta of four alphabet characters from the start of `s` into `out`, as
/// long as they last, and returns how many characters were decoded (a multiple of 4). It
/// stops at the first quantum with a character outside the alphabet, `=` included.
fn decode_quanta(s: &[u8], out: &mut Vec<u8>) -> usize {
    let mut at = 0;
    // Eight characters (six bytes) at a time while they are all in the alphabet, then
    // the remaining whole quanta. Decoded bytes are staged on the stack and appended in
    // large pieces: appending six bytes at a time to the vector costs more than decoding.
    let mut staged = [0u8; 384];
    let mut filled = 0;
    let pairs = pairs();
    while let Some(chunk) = s.get(at..at + 8) {
        let pair = |i: usize| pairs[usize::from(chunk[i]) << 8 | usize::from(chunk[i + 1])];
        let (a, b, c, d) = (pair(0), pair(2), pair(4), pair(6));
        if (a | b | c | d) & 0xf000 != 0 {
            break;
        }
        let n = u64::from(a) << 52 | u64::from(b) << 40 | u64::from(c) << 28 | u64::from(d) << 16;
        if filled + 6 > staged.len() {
            out.extend_from_slice(&staged[..filled]);
            filled = 0;
        }
        staged[filled..filled + 6].copy_from_slice(&n.to_be_bytes()[..6]);
        filled += 6;
        at += 8;
    }
    out.extend_from_slice(&staged[..filled]);
    while let Some(quantum) = s.get(at..at + 4) {
        let mut n: u32 = 0;
        let mut invalid = 0;
        for &c in quantum {
            let v = DECODE[usize::from(c)];
            invalid |= v;
            n = n << 6 | u32::from(v & 0x3f);
        }
        if invalid & 0x80 != 0 {
            break;
        }
        out.extend_from_slice(&n.to_be_bytes()[1..]);
        at += 4;
    }
    at
}

/// Decodes the last quantum of a text, which may end in one or two `=`; the characters
/// before them must be data, and bits they carry beyond the last byte must be zero.
/// `offset` is where the quantum starts in the text, for the error.
fn decode_last(last: &[u8], offset: usize, out: &mut Vec<u8>) -> Result<(), Base64Error> {
    let padding = match (last[2], last[3]) {
        (b'=', b'=') => 2,
        (_, b'=') => 1,
        _ => 0,
    };
    let data = &last[..4 - padding];
    let mut n = 0u32;
    for (i, &ch) in data.iter().enumerate() {
        let value = DECODE[usize::from(ch)];
        if value == INVALID {
            return Err(character_error(ch, offset + i));
        }
        n |= u32::from(value) << (18 - 6 * i);
    }
    match padding {
        0 => out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]),
        // Two data characters carry 12 bits for one byte: the low 4 bits must be zero.
        2 if n & 0xffff != 0 => return Err(Base64Error::NonCanonical),
        2 => out.push((n >> 16) as u8),
        // Three data characters carry 18 bits for two bytes: the low 2 bits must be zero.
        _ if n & 0xff != 0 => return Err(Base64Error::NonCanonical),
        _ => out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]),
    }
    Ok(())
}

/// Locates the offending character of a quantum already known to contain one.
fn first_bad_character(chunk: &[u8], offset: usize) -> Base64Error {
    chunk
        .iter()
        .position(|&ch| DECODE[usize::from(ch)] == INVALID)
        .map_or(Base64Error::InvalidCharacter { offset }, |i| {
            character_error(chunk[i], offset + i)
        })
}

fn character_error(ch: u8, offset: usize) -> Base64Error {
    if ch == b'=' {
        Base64Error::Padding { offset }
    } else {
        Base64Error::InvalidCharacter { offset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// RFC 4648 section 10 test vectors.
    const RFC4648: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors_encode_and_decode() {
        for (plain, encoded) in RFC4648 {
            assert_eq!(encode(plain.as_bytes()), encoded, "encode {plain:?}");
            assert_eq!(
                decode(encoded).as_deref(),
                Ok(plain.as_bytes()),
                "decode {encoded:?}"
            );
        }
    }

    #[test]
    fn every_byte_value_and_every_length_round_trips() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..data.len() {
            let slice = &data[..len];
            let text = encode(slice);
            assert_eq!(text.len(), encoded_len(len));
            assert_eq!(decode(&text).as_deref(), Ok(slice), "length {len}");
        }
    }

    #[test]
    fn uses_the_standard_alphabet_not_the_url_safe_one() {
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(decode("+/+/"), Ok(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(
            decode("-_-_"),
            Err(Base64Error::InvalidCharacter { offset: 0 })
        );
    }

    #[test]
    fn rejects_texts_that_are_not_whole_quanta() {
        assert_eq!(decode("Zg="), Err(Base64Error::Length { len: 3 }));
        assert_eq!(decode("Zg"), Err(Base64Error::Length { len: 2 }));
        assert_eq!(decode("Zm9v\n"), Err(Base64Error::Length { len: 5 }));
    }

    #[test]
    fn rejects_characters_outside_the_alphabet() {
        assert_eq!(
            decode("Zm9 "),
            Err(Base64Error::InvalidCharacter { offset: 3 })
        );
        assert_eq!(
            decode("Zm9vY.Fy"),
            Err(Base64Error::InvalidCharacter { offset: 5 })
        );
        // A non-ASCII character is reported at its first byte.
        assert_eq!(
            decode("Zm9vZ\u{e4}="),
            Err(Base64Error::InvalidCharacter { offset: 5 })
        );
    }

    #[test]
    fn rejects_misplaced_padding() {
        assert_eq!(decode("Zg==Zg=="), Err(Base64Error::Padding { offset: 2 }));
        assert_eq!(decode("Z==="), Err(Base64Error::Padding { offset: 1 }));
        assert_eq!(decode("===="), Err(Base64Error::Padding { offset: 0 }));
        assert_eq!(decode("Zg=a"), Err(Base64Error::Padding { offset: 2 }));
        assert_eq!(decode("Zm9vZ=8="), Err(Base64Error::Padding { offset: 5 }));
    }

    #[test]
    fn rejects_non_zero_unused_bits() {
        // "Zh==" and "Zm9=" decode to the same bytes as "Zg==" and "Zm8=" in a lenient
        // decoder; only the canonical forms are accepted.
        assert_eq!(decode("Zh=="), Err(Base64Error::NonCanonical));
        assert_eq!(decode("Zm9="), Err(Base64Error::NonCanonical));
        assert_eq!(decode("Zm9vZh=="), Err(Base64Error::NonCanonical));
        assert_eq!(decode("Zg=="), Ok(b"f".to_vec()));
        assert_eq!(decode("Zm8="), Ok(b"fo".to_vec()));
    }

    #[test]
    fn errors_beyond_the_fast_path_name_their_offset() {
        // The fast path takes eight characters at a time; an error deep in a long text is
        // still reported at its own character.
        let text = "Zm9vYmFyZm9vYmFyZm9vYmFy";
        assert_eq!(decode(text), Ok(b"foobarfoobarfoobar".to_vec()));
        for at in [0, 5, 9, 13, 17, 23] {
            let mut bad = text.as_bytes().to_vec();
            bad[at] = b'.';
            let bad = String::from_utf8(bad).expect("ascii");
            assert_eq!(
                decode(&bad),
                Err(Base64Error::InvalidCharacter { offset: at }),
                "{bad}"
            );
            let mut padded = text.as_bytes().to_vec();
            padded[at] = b'=';
            let padded = String::from_utf8(padded).expect("ascii");
            let expected = if at == 23 {
                // A single `=` at the very end is padding, and the bits before it are
                // not zero.
                Err(Base64Error::NonCanonical)
            } else {
                Err(Base64Error::Padding { offset: at })
            };
            assert_eq!(decode(&padded), expected, "{padded}");
        }
    }

    #[test]
    fn the_json_string_decoder_accepts_exactly_what_the_strict_one_does() {
        let mut rng = Rng(0x5eed);
        let alphabet =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\"-_ \\\n";
        let mut texts: Vec<String> = Vec::new();
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let text = encode(&bytes);
            // The valid text, and copies with one character replaced or the length cut.
            texts.push(text.clone());
            for _ in 0..20 {
                let mut broken = text.clone().into_bytes();
                if !broken.is_empty() {
                    let at = rng.below(broken.len());
                    broken[at] = alphabet[rng.below(alphabet.len())];
                    let cut = rng.below(broken.len() + 1);
                    texts.push(String::from_utf8_lossy(&broken).into_owned());
                    texts.push(String::from_utf8_lossy(&broken[..cut]).into_owned());
                }
            }
        }
        texts.extend(
            ["Zh==", "Zm9=", "Zg==", "Zm8=", "====", "Zg=a", "Z===", "Zg"].map(String::from),
        );
        let mut accepted = 0;
        for text in texts {
            let strict = decode(&text);
            let mut out = vec![7];
            let quoted = format!("{text}\",\"more\"");
            let fused = decode_json_string(quoted.as_bytes(), &mut out);
            match strict {
                // A quote inside the text ends the string early: then the fused decoder
                // sees a shorter text, which the strict decoder is asked about instead.
                _ if text.contains('"') => {
                    let head = &text[..text.find('"').unwrap_or(0)];
                    let expected = decode(head).ok();
                    assert_eq!(fused.map(|_| out[1..].to_vec()), expected, "{text:?}");
                }
                Ok(bytes) => {
                    accepted += 1;
                    assert_eq!(fused, Some(text.len()), "{text:?}");
                    assert_eq!(out[1..], bytes[..], "{text:?}");
                }
                Err(_) => {
                    assert_eq!(fused, None, "{text:?}");
                    assert_eq!(out, [7], "{text:?}");
                }
            }
        }
        assert!(accepted >= 64, "the valid texts were checked");
    }
}
