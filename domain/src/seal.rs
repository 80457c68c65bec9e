//! Sealing primitives: personal data encrypted under a per-subject data key, and data keys
//! wrapped under a key-encryption key (KEK) from configuration.
//!
//! Personal data never enters the log in plaintext. It is sealed with AES-256-GCM under the
//! data subject's own 256-bit data key into the record's `sealed` section; erasing the
//! subject destroys that key (crypto-shredding), so the ciphertext — and with it every hash
//! of the chain — stays while the plaintext becomes unrecoverable. The data keys themselves
//! are stored only wrapped (AES-256-GCM again) under a KEK that the operator configures, so
//! a copy of the key table alone reveals nothing.
//!
//! Both operations bind their ciphertext to its place with associated data: a sealed section
//! only opens in the envelope it was sealed for (event id, stream id, event type, subject,
//! key id), and a wrapped key only unwraps for the subject and key id it was wrapped for.
//! That stops a stored ciphertext being copied into another record or another subject's
//! key slot and read there. The associated data is the RFC 8785 canonical JSON of those
//! members plus the algorithm and a context label, so it is unambiguous however the strings
//! look, and a seal can never be mistaken for a key wrap or the reverse.
//!
//! Everything here is pure: keys and nonces come in as values, or randomness comes in as a
//! `ring::rand::SecureRandom`, so tests are deterministic where they need to be. Nonces are
//! 96 random bits per message; a subject's key seals at most a few thousand events in its
//! lifetime, far below the 2^32 messages per key that NIST SP 800-38D allows for random
//! nonces.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce as AeadNonce, UnboundKey, AES_256_GCM};
// Re-exported so that adapters (the key vault) can draw keys and nonces from the OS
// without depending on ring themselves.
pub use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::base64;
use crate::jcs;
use crate::record::SealedSection;
use crate::stream::{EventType, StreamId};

/// The only algorithm identifier this module writes and accepts.
pub const A256GCM: &str = "A256GCM";

/// Bytes in a data key or KEK (AES-256).
pub const KEY_LEN: usize = 32;

/// Bytes in an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;

/// Bytes of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// Labels that keep the associated data of a seal and of a key wrap apart, and let a
/// future format change its label instead of guessing from the bytes.
const SEAL_CONTEXT: &str = "amtsbuch/seal/v1";
const WRAP_CONTEXT: &str = "amtsbuch/key-wrap/v1";
const NONCE_CONTEXT: &str = "amtsbuch/seal-nonce/v1";

/// Longest key id accepted; key ids are short version labels, not prose.
const MAX_KEY_ID: usize = 64;

/// Why sealing, opening, wrapping or unwrapping failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("algorithm {0:?} is not supported; only A256GCM is")]
    UnsupportedAlgorithm(String),
    #[error("malformed sealed data: {0}")]
    Malformed(String),
    /// The ciphertext does not open under this key with this associated data. AES-GCM
    /// cannot tell a wrong key from a wrong envelope or a tampered nonce, ciphertext or tag,
    /// and this error deliberately does not guess.
    #[error("authentication failed: wrong key, wrong envelope, or tampered ciphertext")]
    Authentication,
    #[error("personal data is not canonicalizable JSON: {0}")]
    Plaintext(String),
    #[error("the random number generator failed")]
    Random,
    #[error("the cipher refused the key or the message")]
    Cipher,
}

/// The id of one version of a subject's data key, or of a KEK (`k1`, `2026-01`).
/// ASCII letters, digits, `.`, `_`, `:` and `-`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(s: &str) -> Result<Self, SealError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_KEY_ID
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(SealError::Malformed(format!(
                "key id {:?} must be 1 to {MAX_KEY_ID} ASCII letters, digits, '.', '_', ':' or '-'",
                s.chars().take(100).collect::<String>()
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A subject's 256-bit data key.
///
/// It is neither `Clone` nor printable, to keep copies of key material few. On drop the
/// bytes are overwritten, but only on a best-effort basis: guaranteed zeroization needs
/// volatile writes (the `zeroize` crate or `unsafe`, both unavailable here), the compiler
/// may have moved copies elsewhere, and ring's expanded AES key schedule, built for each
/// operation, is not cleared by ring either. Keys should therefore live only as long as one
/// operation needs them; the real protection of key material at rest is the wrapping.
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, SealError> {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0 = [0; KEY_LEN];
        // Keeps the overwrite from being optimised away as a dead store (best effort).
        std::hint::black_box(&self.0);
    }
}

/// A key-encryption key from configuration, with its id so wrapped keys name the KEK that
/// wrapped them and KEKs can be rotated. Same caveats as [`DataKey`] on zeroization.
pub struct Kek {
    id: KeyId,
    key: [u8; KEY_LEN],
}

impl Kek {
    pub fn new(id: KeyId, key: [u8; KEY_LEN]) -> Self {
        Self { id, key }
    }

    /// A KEK given as standard padded base64 of exactly 32 bytes, as configuration holds it.
    pub fn from_base64(id: KeyId, text: &str) -> Result<Self, SealError> {
        let bytes = base64::decode(text).map_err(|e| SealError::Malformed(e.to_string()))?;
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            SealError::Malformed(format!("a KEK has {KEY_LEN} bytes, not {}", bytes.len()))
        })?;
        Ok(Self { id, key })
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        self.key = [0; KEY_LEN];
        std::hint::black_box(&self.key);
    }
}

/// A 96-bit AES-GCM nonce. It must never repeat under one key; [`Nonce::random`] is the
/// normal source, [`Nonce::from_bytes`] exists for known-answer tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    pub fn from_bytes(bytes: [u8; NONCE_LEN]) -> Self {
        Self(bytes)
    }

    pub fn random(rng: &dyn SecureRandom) -> Result<Self, SealError> {
        let mut bytes = [0u8; NONCE_LEN];
        rng.fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(Self(bytes))
    }

    fn decode(text: &str) -> Result<Self, SealError> {
        let bytes = base64::decode(text).map_err(|e| SealError::Malformed(e.to_string()))?;
        bytes
            .as_slice()
            .try_into()
            .map(Self)
            .map_err(|_| SealError::Malformed(format!("a nonce has {NONCE_LEN} bytes")))
    }
}

/// The identifying fields of the record a sealed section belongs to, known before append.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub event_id: Uuid,
    pub stream_id: &'a StreamId,
    pub event_type: &'a EventType,
}

/// Seals `personal` (any JSON value) for the record described by `envelope`, under the
/// data key `key` (version `key_id`) of `subject`. The plaintext is the value's RFC 8785
/// canonical form, so equal values always seal the same bytes.
pub fn seal(
    personal: &Value,
    key: &DataKey,
    key_id: &KeyId,
    subject: &str,
    envelope: &Envelope<'_>,
    nonce: Nonce,
) -> Result<SealedSection, SealError> {
    let plaintext = jcs::canonicalize(personal).map_err(|e| SealError::Plaintext(e.to_string()))?;
    let aad = seal_aad(envelope, subject, key_id.as_str());
    let ciphertext = encrypt(&key.0, nonce, &aad, plaintext)?;
    Ok(SealedSection {
        subject: subject.to_owned(),
        key_id: key_id.as_str().to_owned(),
        alg: A256GCM.to_owned(),
        nonce: base64::encode(&nonce.0),
        ciphertext: base64::encode(&ciphertext),
    })
}

/// [`seal`] with a fresh random nonce.
pub fn seal_random(
    personal: &Value,
    key: &DataKey,
    key_id: &KeyId,
    subject: &str,
    envelope: &Envelope<'_>,
    rng: &dyn SecureRandom,
) -> Result<SealedSection, SealError> {
    seal(
        personal,
        key,
        key_id,
        subject,
        envelope,
        Nonce::random(rng)?,
    )
}

/// [`seal`] with a nonce derived from the key, the envelope and the plaintext (like
/// AES-GCM-SIV's synthetic nonce): sealing the same value for the same record twice gives
/// the same bytes, so a client's retry of an append with personal data is recognised as
/// the same append instead of a conflict. Since every record has its own event id, equal
/// sections reveal nothing but that two attempts were one event; distinct inputs get
/// distinct nonces (a collision of the truncated HMAC-SHA-256 is as unlikely as one of
/// random 96-bit nonces).
pub fn seal_derived(
    personal: &Value,
    key: &DataKey,
    key_id: &KeyId,
    subject: &str,
    envelope: &Envelope<'_>,
) -> Result<SealedSection, SealError> {
    use ring::hmac;
    let plaintext = jcs::canonicalize(personal).map_err(|e| SealError::Plaintext(e.to_string()))?;
    let aad = seal_aad(envelope, subject, key_id.as_str());
    // A key of its own for the derivation, so the data key is used for one purpose only.
    let nonce_key = hmac::Key::new(
        hmac::HMAC_SHA256,
        hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &key.0),
            NONCE_CONTEXT.as_bytes(),
        )
        .as_ref(),
    );
    let mut ctx = hmac::Context::with_key(&nonce_key);
    ctx.update(&(aad.len() as u64).to_be_bytes());
    ctx.update(&aad);
    ctx.update(&plaintext);
    let tag = ctx.sign();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&tag.as_ref()[..NONCE_LEN]);
    seal(personal, key, key_id, subject, envelope, Nonce(nonce))
}

/// Opens a sealed section of the record described by `envelope` with the subject's data
/// key of version `section.key_id`. Fails unless the section was sealed for exactly this
/// envelope, subject and key id, under this key, and is unchanged.
pub fn open(
    section: &SealedSection,
    key: &DataKey,
    envelope: &Envelope<'_>,
) -> Result<Value, SealError> {
    if section.alg != A256GCM {
        return Err(SealError::UnsupportedAlgorithm(
            section.alg.chars().take(40).collect(),
        ));
    }
    let nonce = Nonce::decode(&section.nonce)?;
    let ciphertext =
        base64::decode(&section.ciphertext).map_err(|e| SealError::Malformed(e.to_string()))?;
    let aad = seal_aad(envelope, &section.subject, &section.key_id);
    let plaintext = decrypt(&key.0, nonce, &aad, ciphertext)?;
    serde_json::from_slice(&plaintext).map_err(|e| SealError::Plaintext(e.to_string()))
}

/// A data key wrapped under a KEK, as the key vault stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    /// Which KEK wrapped the key.
    pub kek_id: KeyId,
    /// Always `A256GCM`.
    pub alg: String,
    /// Base64 nonce.
    pub nonce: String,
    /// Base64 of the wrapped key and the tag (48 bytes).
    pub ciphertext: String,
}

/// Wraps `key`, version `key_id` of `subject`'s data key, under `kek`.
pub fn wrap(
    key: &DataKey,
    kek: &Kek,
    subject: &str,
    key_id: &KeyId,
    nonce: Nonce,
) -> Result<WrappedKey, SealError> {
    let aad = wrap_aad(&kek.id, subject, key_id);
    let ciphertext = encrypt(&kek.key, nonce, &aad, key.0.to_vec())?;
    Ok(WrappedKey {
        kek_id: kek.id.clone(),
        alg: A256GCM.to_owned(),
        nonce: base64::encode(&nonce.0),
        ciphertext: base64::encode(&ciphertext),
    })
}

/// [`wrap`] with a fresh random nonce.
pub fn wrap_random(
    key: &DataKey,
    kek: &Kek,
    subject: &str,
    key_id: &KeyId,
    rng: &dyn SecureRandom,
) -> Result<WrappedKey, SealError> {
    wrap(key, kek, subject, key_id, Nonce::random(rng)?)
}

/// Unwraps the data key of `subject`, version `key_id`. Fails for another KEK (also one
/// with the same id but other bytes), another subject or key id, or a changed wrapping.
pub fn unwrap(
    wrapped: &WrappedKey,
    kek: &Kek,
    subject: &str,
    key_id: &KeyId,
) -> Result<DataKey, SealError> {
    if wrapped.alg != A256GCM {
        return Err(SealError::UnsupportedAlgorithm(
            wrapped.alg.chars().take(40).collect(),
        ));
    }
    if wrapped.kek_id != kek.id {
        return Err(SealError::Authentication);
    }
    let nonce = Nonce::decode(&wrapped.nonce)?;
    let ciphertext =
        base64::decode(&wrapped.ciphertext).map_err(|e| SealError::Malformed(e.to_string()))?;
    let aad = wrap_aad(&kek.id, subject, key_id);
    let plaintext = decrypt(&kek.key, nonce, &aad, ciphertext)?;
    let bytes: [u8; KEY_LEN] = plaintext
        .as_slice()
        .try_into()
        .map_err(|_| SealError::Malformed("a wrapped key must hold 32 bytes".into()))?;
    Ok(DataKey(bytes))
}

/// The associated data of a seal: canonical JSON whose keys are written in RFC 8785 order
/// directly (all ASCII, so byte order is UTF-16 order); a test pins it to the generic
/// canonicalizer.
fn seal_aad(envelope: &Envelope<'_>, subject: &str, key_id: &str) -> Vec<u8> {
    let event_id = envelope.event_id.hyphenated().to_string();
    canonical_object(&[
        ("alg", A256GCM),
        ("ctx", SEAL_CONTEXT),
        ("event_id", &event_id),
        ("event_type", envelope.event_type.as_str()),
        ("key_id", key_id),
        ("stream_id", envelope.stream_id.as_str()),
        ("subject", subject),
    ])
}

fn wrap_aad(kek_id: &KeyId, subject: &str, key_id: &KeyId) -> Vec<u8> {
    canonical_object(&[
        ("alg", A256GCM),
        ("ctx", WRAP_CONTEXT),
        ("kek_id", kek_id.as_str()),
        ("key_id", key_id.as_str()),
        ("subject", subject),
    ])
}

/// Writes an object of string members whose keys are given in canonical order.
fn canonical_object(members: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        jcs::write_string(key, &mut out);
        out.push(b':');
        jcs::write_string(value, &mut out);
    }
    out.push(b'}');
    out
}

fn aead_key(key: &[u8; KEY_LEN]) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| SealError::Cipher)
}

/// AES-256-GCM: returns ciphertext followed by the 16-byte tag.
fn encrypt(
    key: &[u8; KEY_LEN],
    nonce: Nonce,
    aad: &[u8],
    mut in_out: Vec<u8>,
) -> Result<Vec<u8>, SealError> {
    aead_key(key)?
        .seal_in_place_append_tag(
            AeadNonce::assume_unique_for_key(nonce.0),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| SealError::Cipher)?;
    Ok(in_out)
}

fn decrypt(
    key: &[u8; KEY_LEN],
    nonce: Nonce,
    aad: &[u8],
    mut in_out: Vec<u8>,
) -> Result<Vec<u8>, SealError> {
    if in_out.len() < TAG_LEN {
        return Err(SealError::Malformed(
            "ciphertext is shorter than the authentication tag".into(),
        ));
    }
    let len = aead_key(key)?
        .open_in_place(
            AeadNonce::assume_unique_for_key(nonce.0),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| SealError::Authentication)?
        .len();
    in_out.truncate(len);
    Ok(in_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn stream() -> StreamId {
        StreamId::parse("account-0193a1b2-0000-7000-8000-00000000000a").expect("stream")
    }

    fn event_type() -> EventType {
        EventType::parse("MasterDataChanged").expect("type")
    }

    fn event_id() -> Uuid {
        Uuid::parse_str("0193a1b2-0000-7000-8000-0000000000e1").expect("uuid")
    }

    const SUBJECT: &str = "0193a1b2-0000-7000-8000-00000000000a";

    fn key(byte: u8) -> DataKey {
        DataKey::from_bytes([byte; KEY_LEN])
    }

    fn key_id(s: &str) -> KeyId {
        KeyId::parse(s).expect("key id")
    }

    fn personal() -> Value {
        json!({"master_data": {"family_name": "Müller", "given_names": "Anna"}})
    }

    /// Seals the sample under key 7, version k1, for the sample envelope.
    fn sealed() -> SealedSection {
        let (stream, event_type) = (stream(), event_type());
        let envelope = Envelope {
            event_id: event_id(),
            stream_id: &stream,
            event_type: &event_type,
        };
        seal(
            &personal(),
            &key(7),
            &key_id("k1"),
            SUBJECT,
            &envelope,
            Nonce::from_bytes([9; NONCE_LEN]),
        )
        .expect("seal")
    }

    /// Opens `section` with `key` for the sample envelope, optionally altered.
    fn check_open(
        section: &SealedSection,
        key: &DataKey,
        alter: impl FnOnce(&mut Uuid, &mut StreamId, &mut EventType),
    ) -> Result<Value, SealError> {
        let (mut id, mut stream, mut event_type) = (event_id(), stream(), event_type());
        alter(&mut id, &mut stream, &mut event_type);
        let envelope = Envelope {
            event_id: id,
            stream_id: &stream,
            event_type: &event_type,
        };
        open(section, key, &envelope)
    }

    #[test]
    fn aes_256_gcm_known_answer() {
        // McGrew and Viega, "The Galois/Counter Mode of Operation", test case 16
        // (AES-256, 96-bit IV, with associated data).
        let key: [u8; KEY_LEN] =
            hex("feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308")
                .try_into()
                .expect("32 bytes");
        let nonce: [u8; NONCE_LEN] = hex("cafebabefacedbaddecaf888").try_into().expect("12");
        let plaintext = hex(
            "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72
             1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeef abaddad2");
        let expected = hex(
            "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa
             8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662
             76fc6ece0f4e1768cddf8853bb2d551b",
        );
        let sealed =
            encrypt(&key, Nonce::from_bytes(nonce), &aad, plaintext.clone()).expect("encrypt");
        assert_eq!(sealed, expected);
        assert_eq!(
            decrypt(&key, Nonce::from_bytes(nonce), &aad, sealed),
            Ok(plaintext)
        );
    }

    #[test]
    fn a_sealed_section_is_pinned_for_a_fixed_key_and_nonce() {
        // The exact bytes matter: a change of plaintext encoding or associated data would
        // make every stored section unreadable.
        let s = sealed();
        assert_eq!(s.subject, SUBJECT);
        assert_eq!(s.key_id, "k1");
        assert_eq!(s.alg, "A256GCM");
        assert_eq!(s.nonce, "CQkJCQkJCQkJCQkJ");
        assert_eq!(s.ciphertext, PINNED_CIPHERTEXT);
        let (stream, event_type) = (stream(), event_type());
        let envelope = Envelope {
            event_id: event_id(),
            stream_id: &stream,
            event_type: &event_type,
        };
        assert_eq!(seal_aad(&envelope, SUBJECT, "k1"), PINNED_AAD.as_bytes());
    }

    /// Computed independently of this module (Python `cryptography`'s `AESGCM`, key 32 ×
    /// 0x07, nonce 12 × 0x09) over the plaintext
    /// `{"master_data":{"family_name":"Müller","given_names":"Anna"}}` and the associated
    /// data [`PINNED_AAD`].
    const PINNED_CIPHERTEXT: &str = "XKfp9c2EpBP/BqpMh8iZpPbWAp5dgo6fAc8rw/dOIzcQWYuvhyAIPF3UzGAhWry6HTn75zCujA8LAWC1K2tkk9Q0yCJ8Eyf4BSu8g2E/";

    const PINNED_AAD: &str = r#"{"alg":"A256GCM","ctx":"amtsbuch/seal/v1","event_id":"0193a1b2-0000-7000-8000-0000000000e1","event_type":"MasterDataChanged","key_id":"k1","stream_id":"account-0193a1b2-0000-7000-8000-00000000000a","subject":"0193a1b2-0000-7000-8000-00000000000a"}"#;

    #[test]
    fn sealing_round_trips() {
        assert_eq!(check_open(&sealed(), &key(7), |_, _, _| {}), Ok(personal()));
    }

    #[test]
    fn random_nonces_differ_and_still_open() {
        let (stream, event_type) = (stream(), event_type());
        let envelope = Envelope {
            event_id: event_id(),
            stream_id: &stream,
            event_type: &event_type,
        };
        let rng = SystemRandom::new();
        let k = DataKey::generate(&rng).expect("key");
        let a =
            seal_random(&personal(), &k, &key_id("k1"), SUBJECT, &envelope, &rng).expect("seal");
        let b =
            seal_random(&personal(), &k, &key_id("k1"), SUBJECT, &envelope, &rng).expect("seal");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(open(&a, &k, &envelope), Ok(personal()));
        assert_eq!(open(&b, &k, &envelope), Ok(personal()));
    }

    #[test]
    fn the_wrong_key_does_not_open() {
        assert_eq!(
            check_open(&sealed(), &key(8), |_, _, _| {}),
            Err(SealError::Authentication)
        );
    }

    #[test]
    fn a_section_opens_only_in_its_own_envelope() {
        let s = sealed();
        let other_id = |id: &mut Uuid, _: &mut StreamId, _: &mut EventType| {
            *id = Uuid::nil();
        };
        let other_stream = |_: &mut Uuid, s: &mut StreamId, _: &mut EventType| {
            *s = StreamId::parse("account-other").expect("stream");
        };
        let other_type = |_: &mut Uuid, _: &mut StreamId, t: &mut EventType| {
            *t = EventType::parse("AccountOpened").expect("type");
        };
        assert_eq!(
            check_open(&s, &key(7), other_id),
            Err(SealError::Authentication)
        );
        assert_eq!(
            check_open(&s, &key(7), other_stream),
            Err(SealError::Authentication)
        );
        assert_eq!(
            check_open(&s, &key(7), other_type),
            Err(SealError::Authentication)
        );

        let mut other_subject = s.clone();
        other_subject.subject = "someone-else".into();
        assert_eq!(
            check_open(&other_subject, &key(7), |_, _, _| {}),
            Err(SealError::Authentication)
        );
        let mut other_key_id = s;
        other_key_id.key_id = "k2".into();
        assert_eq!(
            check_open(&other_key_id, &key(7), |_, _, _| {}),
            Err(SealError::Authentication)
        );
    }

    /// Flips one bit of the base64 field at byte `index` and re-encodes it.
    fn flip(text: &str, index: usize) -> String {
        let mut bytes = base64::decode(text).expect("base64");
        bytes[index] ^= 0x01;
        base64::encode(&bytes)
    }

    #[test]
    fn tampering_with_nonce_ciphertext_or_tag_is_detected() {
        let s = sealed();
        let len = base64::decode(&s.ciphertext).expect("base64").len();
        let mut nonce = s.clone();
        nonce.nonce = flip(&s.nonce, 0);
        let mut body = s.clone();
        body.ciphertext = flip(&s.ciphertext, 0);
        let mut tag = s.clone();
        tag.ciphertext = flip(&s.ciphertext, len - 1);
        let mut truncated = s.clone();
        truncated.ciphertext = base64::encode(&[0u8; TAG_LEN - 1]);
        for bad in [&nonce, &body, &tag] {
            assert_eq!(
                check_open(bad, &key(7), |_, _, _| {}),
                Err(SealError::Authentication)
            );
        }
        assert!(matches!(
            check_open(&truncated, &key(7), |_, _, _| {}),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_sections_are_refused_before_decryption() {
        let s = sealed();
        let mut alg = s.clone();
        alg.alg = "A128GCM".into();
        let mut short_nonce = s.clone();
        short_nonce.nonce = base64::encode(&[0u8; 8]);
        let mut bad_base64 = s;
        bad_base64.ciphertext = "not base64!".into();
        assert_eq!(
            check_open(&alg, &key(7), |_, _, _| {}),
            Err(SealError::UnsupportedAlgorithm("A128GCM".into()))
        );
        assert!(matches!(
            check_open(&short_nonce, &key(7), |_, _, _| {}),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            check_open(&bad_base64, &key(7), |_, _, _| {}),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn the_associated_data_is_canonical_json() {
        let (stream, event_type) = (stream(), event_type());
        let envelope = Envelope {
            event_id: event_id(),
            stream_id: &stream,
            event_type: &event_type,
        };
        let subject = "s\"ubj\u{1}ect-ä";
        let generic = jcs::canonicalize(&json!({
            "alg": "A256GCM",
            "ctx": "amtsbuch/seal/v1",
            "event_id": event_id().to_string(),
            "event_type": "MasterDataChanged",
            "key_id": "k1",
            "stream_id": stream.as_str(),
            "subject": subject,
        }))
        .expect("jcs");
        assert_eq!(seal_aad(&envelope, subject, "k1"), generic);
        let generic = jcs::canonicalize(&json!({
            "alg": "A256GCM",
            "ctx": "amtsbuch/key-wrap/v1",
            "kek_id": "kek-2026",
            "key_id": "k1",
            "subject": subject,
        }))
        .expect("jcs");
        assert_eq!(
            wrap_aad(&key_id("kek-2026"), subject, &key_id("k1")),
            generic
        );
    }

    fn kek(id: &str, byte: u8) -> Kek {
        Kek::new(key_id(id), [byte; KEY_LEN])
    }

    fn wrapped() -> WrappedKey {
        wrap(
            &key(7),
            &kek("kek-1", 3),
            SUBJECT,
            &key_id("k1"),
            Nonce::from_bytes([5; NONCE_LEN]),
        )
        .expect("wrap")
    }

    /// Whether the unwrapped key is the original one: it opens what the original sealed.
    fn is_original(k: &DataKey) -> bool {
        check_open(&sealed(), k, |_, _, _| {}) == Ok(personal())
    }

    #[test]
    fn a_wrapped_key_unwraps_to_the_same_key() {
        let w = wrapped();
        assert_eq!(w.kek_id, key_id("kek-1"));
        assert_eq!(w.alg, "A256GCM");
        assert_eq!(base64::decode(&w.ciphertext).map(|c| c.len()), Ok(48));
        let k = unwrap(&w, &kek("kek-1", 3), SUBJECT, &key_id("k1")).expect("unwrap");
        assert!(is_original(&k));
    }

    #[test]
    fn unwrapping_fails_for_the_wrong_kek_subject_key_id_or_a_changed_wrapping() {
        let w = wrapped();
        let k1 = key_id("k1");
        let wrong = [
            unwrap(&w, &kek("kek-1", 4), SUBJECT, &k1),
            unwrap(&w, &kek("kek-2", 3), SUBJECT, &k1),
            unwrap(&w, &kek("kek-1", 3), "another-subject", &k1),
            unwrap(&w, &kek("kek-1", 3), SUBJECT, &key_id("k2")),
            unwrap(
                &WrappedKey {
                    ciphertext: flip(&w.ciphertext, 3),
                    ..w.clone()
                },
                &kek("kek-1", 3),
                SUBJECT,
                &k1,
            ),
            unwrap(
                &WrappedKey {
                    nonce: flip(&w.nonce, 3),
                    ..w.clone()
                },
                &kek("kek-1", 3),
                SUBJECT,
                &k1,
            ),
        ];
        for result in wrong {
            assert!(matches!(result, Err(SealError::Authentication)));
        }
    }

    #[test]
    fn a_wrapped_key_is_plain_json_for_the_vault() {
        let w = wrapped();
        let text = serde_json::to_string(&w).expect("json");
        let back: WrappedKey = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, w);
        assert!(serde_json::from_str::<WrappedKey>(
            r#"{"kek_id":"bad id","alg":"A256GCM","nonce":"","ciphertext":""}"#
        )
        .is_err());
    }

    #[test]
    fn keks_come_from_base64_configuration() {
        let text = base64::encode(&[3; KEY_LEN]);
        let k = Kek::from_base64(key_id("kek-1"), &text).expect("kek");
        assert!(unwrap(&wrapped(), &k, SUBJECT, &key_id("k1")).is_ok());
        assert!(Kek::from_base64(key_id("kek-1"), &base64::encode(&[3; 16])).is_err());
        assert!(Kek::from_base64(key_id("kek-1"), "AAAA AAAA").is_err());
    }

    #[test]
    fn key_material_is_not_printed() {
        assert_eq!(format!("{:?}", key(7)), "DataKey(..)");
        assert_eq!(
            format!("{:?}", kek("kek-1", 3)),
            "Kek { id: KeyId(\"kek-1\"), .. }"
        );
    }

    #[test]
    fn key_ids_are_short_tokens() {
        for good in ["k1", "2026-01", "kek:v2.a_b"] {
            assert!(KeyId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "ä", "a/b", &"k".repeat(65)] {
            assert!(KeyId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_derived_seal_repeats_for_a_retry_and_differs_otherwise() {
        let k = DataKey::from_bytes([7; KEY_LEN]);
        let stream = StreamId::parse("account-1").expect("stream");
        let kind = EventType::parse("MasterDataChanged").expect("type");
        let envelope = |n: u128| Envelope {
            event_id: Uuid::from_u128(n),
            stream_id: &stream,
            event_type: &kind,
        };
        let seal = |v: &Value, n| {
            seal_derived(v, &k, &KeyId::parse("k1").expect("id"), "s", &envelope(n)).expect("seal")
        };
        let a = serde_json::json!({"name": "Erika"});
        let b = serde_json::json!({"name": "Erik"});
        assert_eq!(seal(&a, 1), seal(&a, 1));
        assert_ne!(seal(&a, 1).nonce, seal(&b, 1).nonce);
        assert_ne!(seal(&a, 1).nonce, seal(&a, 2).nonce);
        assert_eq!(open(&seal(&a, 1), &k, &envelope(1)), Ok(a));
    }
}
