//! Standard base64 (RFC 4648 section 4, padded) for the C2SP text formats.
//!
//! Signed notes, checkpoints and tlog proofs carry keys, signatures and hashes in standard
//! padded base64. The domain crate keeps its dependencies to a fixed short list, and the
//! codec is small, so it lives here. Decoding is strict on purpose: every byte string has
//! exactly one accepted encoding (no whitespace, no missing or misplaced padding, no
//! non-zero unused bits in the last character). A lenient decoder would let two different
//! texts stand for the same checkpoint or signature, and a log whose artefacts are compared
//! byte for byte by auditors must not have that ambiguity.

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
    let Some(last_start) = bytes.len().checked_sub(4) else {
        return Ok(out);
    };
    let (body, last) = bytes.split_at(last_start);

    // Every quantum but the last holds exactly three bytes and no padding.
    for (q, chunk) in body.chunks_exact(4).enumerate() {
        let v = [
            DECODE[usize::from(chunk[0])],
            DECODE[usize::from(chunk[1])],
            DECODE[usize::from(chunk[2])],
            DECODE[usize::from(chunk[3])],
        ];
        if (v[0] | v[1] | v[2] | v[3]) & 0x80 != 0 {
            return Err(first_bad_character(chunk, q * 4));
        }
        let n =
            u32::from(v[0]) << 18 | u32::from(v[1]) << 12 | u32::from(v[2]) << 6 | u32::from(v[3]);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }

    // The last quantum may end in one or two `=`; the characters before them must be data.
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
            return Err(character_error(ch, last_start + i));
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
    Ok(out)
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
}
