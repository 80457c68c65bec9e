//! C2SP signed notes (`specs/signed-note.md`): Ed25519 signers, verifier keys, and the
//! strict parsing and verification of notes.
//!
//! Checkpoints and submission receipts are signed notes, and an auditor checks them with
//! whatever C2SP tooling they trust, so this module follows the specification to the
//! letter and agrees byte for byte with the Go reference implementation
//! (`golang.org/x/mod/sumdb/note`); the tests in `tests/c2sp.rs` hold both to that. Only
//! the Ed25519 signature type (0x01) is supported: the specification asks implementations to
//! select the types their design needs, and signatures of any other type are simply
//! signatures from unknown keys, which [`open`] ignores as the specification requires.
//!
//! Parsing is kept apart from verification ([`Note::parse`]) so that tools can show what a
//! note claims, but only [`open`] yields text a caller may act on: the specification says
//! the text MUST be ignored until a trusted signature on it has been verified.

use std::fmt;
use std::str::FromStr;

use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::base64::{self, Base64Error};

/// Signature type byte of plain Ed25519 note signatures.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;

/// The most signature lines [`Note::parse`] accepts. The specification requires at least
/// 16; this matches the Go reference implementation, leaves room for many witness
/// cosignatures and key-rotation overlaps, and bounds the work an attacker can cause.
pub const MAX_SIGNATURES: usize = 100;

/// Every signature line starts with an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Length of an Ed25519 public key and of a private key seed (RFC 8032).
const ED25519_KEY_LEN: usize = 32;

/// Why a key, a note or a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Key names must be non-empty and free of Unicode white space and `+`.
    #[error(
        "invalid key name {name:?}: it must be non-empty and contain neither white space nor '+'"
    )]
    InvalidKeyName { name: String },
    /// A verifier key that is not `<name>+<8 hex digits>+<base64>`.
    #[error("malformed verifier key: {reason}")]
    MalformedVerifierKey { reason: &'static str },
    /// The key material of a verifier key is not valid base64.
    #[error("malformed verifier key: the key material is not valid base64: {0}")]
    VerifierKeyEncoding(Base64Error),
    /// A verifier key of a signature type this module does not implement.
    #[error("unsupported signature type 0x{0:02x} (only Ed25519, 0x01, is supported)")]
    UnsupportedSignatureType(u8),
    /// The key ID in a verifier key is not the one its name and public key define.
    #[error("verifier key {name}: stated key ID {stated:08x} does not match the computed {computed:08x}")]
    KeyIdMismatch {
        name: String,
        stated: u32,
        computed: u32,
    },
    /// PKCS#8 bytes or a seed that do not hold a usable Ed25519 private key.
    #[error("invalid Ed25519 private key: {0}")]
    InvalidPrivateKey(String),
    /// The system random number generator failed while generating a key.
    #[error("the system random number generator failed")]
    KeyGeneration,

    /// Signed notes must be UTF-8.
    #[error("the note is not valid UTF-8 (at byte offset {offset})")]
    NotUtf8 { offset: usize },
    /// Signed notes must not contain ASCII control characters other than newline.
    #[error("control character 0x{byte:02x} at byte offset {offset}")]
    ControlCharacter { offset: usize, byte: u8 },
    /// The text to sign is empty or does not end with a newline.
    #[error("the note text must end with a newline")]
    TextNotTerminated,
    /// No blank line separates the text from signature lines.
    #[error("the note has no blank line before its signature lines")]
    MissingSignatureBlock,
    /// The blank line is not followed by any signature line.
    #[error("the note has no signature lines")]
    NoSignatures,
    /// The last signature line is not terminated by a newline.
    #[error("the note does not end with a newline")]
    MissingFinalNewline,
    /// A signature line that is not `— <name> <base64>`.
    #[error("line {line}: malformed signature line: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    /// The signature on a signature line is not valid base64.
    #[error("line {line}: the signature is not valid base64: {error}")]
    SignatureEncoding { line: usize, error: Base64Error },
    /// A signature must hold a four-byte key ID and at least one byte of signature.
    #[error("line {line}: the signature is too short to hold a key ID and a signature")]
    SignatureTooShort { line: usize },
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("the note has more than {max} signatures")]
    TooManySignatures { max: usize },
    /// [`sign`] was called without a signer.
    #[error("a note needs at least one signer")]
    NoSigners,
    /// Two different keys share both name and key ID, so a signature cannot be attributed.
    #[error("more than one key is named {name} with key ID {key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },

    /// A signature from a known key does not verify: the text or the signature was
    /// changed. The whole note is rejected.
    #[error("the signature of {name} (key ID {key_id:08x}) does not verify")]
    BadSignature { name: String, key_id: u32 },
    /// None of the signatures is from a known key.
    #[error("the note carries no signature from a trusted key")]
    NoVerifiedSignature,
}

/// A key's identity as it appears on a signature line: its name and key ID.
///
/// Under key rotation two keys share a name, so the ID is part of the identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    pub name: String,
    pub key_id: u32,
}

impl fmt::Display for KeyRef {
    /// Formats as the first two parts of the key's vkey, `<name>+<hex key ID>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:08x}", self.name, self.key_id)
    }
}

/// Whether `name` may be a key name: non-empty, no Unicode white space, no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName {
            name: name.to_owned(),
        })
    }
}

/// The key ID of an Ed25519 key: `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, read
/// big-endian.
pub fn ed25519_key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[b'\n', SIGNATURE_TYPE_ED25519]);
    ctx.update(public_key);
    let hash = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&hash.as_ref()[..4]);
    u32::from_be_bytes(id)
}

/// An Ed25519 signing key with its key name.
///
/// The `Debug` output shows the public key only; ring never prints the private key.
#[derive(Debug)]
pub struct Signer {
    name: String,
    key_id: u32,
    key_pair: Ed25519KeyPair,
}

impl Signer {
    /// Generates a new Ed25519 private key as a PKCS#8 v2 document, to be stored (for
    /// example in the key vault) and loaded with [`Signer::from_pkcs8`].
    pub fn generate_pkcs8() -> Result<Vec<u8>, NoteError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| NoteError::KeyGeneration)?;
        Ok(document.as_ref().to_vec())
    }

    /// Loads a PKCS#8 Ed25519 private key. Version 2 documents (which carry the public key,
    /// as [`Signer::generate_pkcs8`] writes them) are checked for consistency; version 1
    /// documents, as `openssl genpkey -algorithm ED25519` writes them, are accepted too.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| NoteError::InvalidPrivateKey(e.to_string()))?;
        Ok(Self::with_key_pair(name, key_pair))
    }

    /// Builds a signer from a raw 32-byte Ed25519 seed (RFC 8032 private key), the form
    /// other signed-note tools store keys in.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| NoteError::InvalidPrivateKey(e.to_string()))?;
        Ok(Self::with_key_pair(name, key_pair))
    }

    fn with_key_pair(name: &str, key_pair: Ed25519KeyPair) -> Self {
        let key_id = ed25519_key_id(name, &public_key_array(&key_pair));
        Self {
            name: name.to_owned(),
            key_id,
            key_pair,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            name: self.name.clone(),
            key_id: self.key_id,
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        public_key_array(&self.key_pair)
    }

    /// The verifier for this key, to hand to those who check its signatures.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.public_key(),
        }
    }

    /// The public verifier key string `<name>+<hex key ID>+<base64(0x01 || public key)>`.
    pub fn vkey(&self) -> String {
        self.verifier().to_string()
    }

    fn signature_over(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key_pair.sign(text.as_bytes()).as_ref().to_vec(),
        }
    }
}

fn public_key_array(key_pair: &Ed25519KeyPair) -> [u8; 32] {
    // An Ed25519 public key is always 32 bytes (RFC 8032), so the copy cannot fail.
    let mut public_key = [0u8; ED25519_KEY_LEN];
    public_key.copy_from_slice(key_pair.public_key().as_ref());
    public_key
}

/// A trusted Ed25519 public key with its name and key ID, as configured from a vkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
}

impl Verifier {
    /// A verifier for `public_key` under `name`, with the key ID the specification defines.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses a verifier key `<name>+<hex key ID>+<base64(type || public key)>`.
    ///
    /// The key ID must be the eight lowercase hex digits the specification prescribes and
    /// must equal the ID computed from the name and key, so that a mistyped or tampered
    /// vkey is refused when it is configured rather than failing every note later.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        // The name cannot contain '+', so the first '+' ends it; the base64 part may
        // contain '+' and is everything after the second.
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(NoteError::MalformedVerifierKey {
                reason: "expected <name>+<key ID>+<key>",
            })?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedVerifierKey {
                reason: "expected <name>+<key ID>+<key>",
            })?;
        check_key_name(name)?;
        let stated = parse_key_id(id_hex).ok_or(NoteError::MalformedVerifierKey {
            reason: "the key ID must be 8 lowercase hex digits",
        })?;
        let material = base64::decode(key_b64).map_err(NoteError::VerifierKeyEncoding)?;
        let (&key_type, public_key) =
            material
                .split_first()
                .ok_or(NoteError::MalformedVerifierKey {
                    reason: "the key material is empty",
                })?;
        if key_type != SIGNATURE_TYPE_ED25519 {
            return Err(NoteError::UnsupportedSignatureType(key_type));
        }
        let public_key: [u8; 32] =
            public_key
                .try_into()
                .map_err(|_| NoteError::MalformedVerifierKey {
                    reason: "an Ed25519 public key must be 32 bytes",
                })?;
        let verifier = Self::new(name, public_key)?;
        if verifier.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_owned(),
                stated,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            name: self.name.clone(),
            key_id: self.key_id,
        }
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Whether `signature` (without the key ID prefix) is this key's Ed25519 signature over
    /// `text`.
    pub fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public_key)
            .verify(text, signature)
            .is_ok()
    }

    fn is_key_of(&self, sig: &NoteSignature) -> bool {
        self.key_id == sig.key_id && self.name == sig.name
    }
}

/// Formats the vkey string, the inverse of [`Verifier::parse`].
impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = [0u8; 1 + ED25519_KEY_LEN];
        material[0] = SIGNATURE_TYPE_ED25519;
        material[1..].copy_from_slice(&self.public_key);
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            base64::encode(&material)
        )
    }
}

impl FromStr for Verifier {
    type Err = NoteError;

    fn from_str(vkey: &str) -> Result<Self, NoteError> {
        Self::parse(vkey)
    }
}

/// Exactly eight lowercase hex digits (the specification's fixed-length lowercase hex).
fn parse_key_id(hex: &str) -> Option<u32> {
    let lowercase_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if hex.len() != 8 || !hex.as_bytes().iter().all(lowercase_hex) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name on the line.
    pub name: String,
    /// The key ID: the first four bytes of the decoded signature, big-endian.
    pub key_id: u32,
    /// The signature bytes after the key ID (64 bytes for Ed25519).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            name: self.name.clone(),
            key_id: self.key_id,
        }
    }

    /// The signature line, `— <name> <base64(key ID || signature)>`, without its newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}", self.name, base64::encode(&raw))
    }
}

/// A syntactically valid signed note whose signatures have NOT been verified.
///
/// Use [`open`] to act on a note; this type is for tools that display or re-encode notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline but not the separating blank line.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a note strictly, without verifying any signature.
    pub fn parse(note: &[u8]) -> Result<Self, NoteError> {
        let note = std::str::from_utf8(note).map_err(|e| NoteError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        check_no_control_characters(note)?;
        // Signature lines are never empty, so the last blank line is the separator; the
        // text may itself contain blank lines.
        let split = note.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
        let text = &note[..=split];
        let block = &note[split + 2..];
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(NoteError::MissingFinalNewline)?;
        // Line numbers are 1-based within the whole note, for error messages: the text
        // occupies one line per newline, then comes the blank line.
        let first_line = text.bytes().filter(|&b| b == b'\n').count() + 2;
        let mut signatures = Vec::new();
        for (i, line) in block.split('\n').enumerate() {
            if i == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            signatures.push(parse_signature_line(line, first_line + i)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note in its wire form: text, blank line, one signature line each.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 100 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
            out.push('\n');
        }
        out
    }
}

fn parse_signature_line(line: &str, line_no: usize) -> Result<NoteSignature, NoteError> {
    let malformed = |reason| NoteError::MalformedSignatureLine {
        line: line_no,
        reason,
    };
    let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(malformed(
        "it does not start with an em dash (U+2014) and a space",
    ))?;
    let (name, encoded) = rest
        .split_once(' ')
        .ok_or(malformed("no space between key name and signature"))?;
    check_key_name(name)?;
    let raw = base64::decode(encoded).map_err(|error| NoteError::SignatureEncoding {
        line: line_no,
        error,
    })?;
    // Four bytes of key ID and a non-empty signature, as the Go reference requires.
    match raw.split_first_chunk::<4>() {
        Some((id, signature)) if !signature.is_empty() => Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes(*id),
            signature: signature.to_vec(),
        }),
        _ => Err(NoteError::SignatureTooShort { line: line_no }),
    }
}

fn check_no_control_characters(text: &str) -> Result<(), NoteError> {
    // UTF-8 continuation and lead bytes are all >= 0x80, so a byte scan finds exactly the
    // control characters.
    match text
        .bytes()
        .enumerate()
        .find(|&(_, b)| b < 0x20 && b != b'\n')
    {
        Some((offset, byte)) => Err(NoteError::ControlCharacter { offset, byte }),
        None => Ok(()),
    }
}

/// Signs `text` with every signer (several during a key-rotation overlap) and returns the
/// signed note.
pub fn sign(text: &str, signers: &[&Signer]) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotTerminated);
    }
    check_no_control_characters(text)?;
    if signers.is_empty() {
        return Err(NoteError::NoSigners);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES,
        });
    }
    for (i, a) in signers.iter().enumerate() {
        // Two signatures under one name and key ID could not be told apart by a verifier.
        if signers[..i]
            .iter()
            .any(|b| a.key_id == b.key_id && a.name == b.name)
        {
            return Err(NoteError::AmbiguousKey {
                name: a.name.clone(),
                key_id: a.key_id,
            });
        }
    }
    let note = Note {
        text: text.to_owned(),
        signatures: signers.iter().map(|s| s.signature_over(text)).collect(),
    };
    Ok(note.to_text())
}

/// A note with at least one verified signature from a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    text: String,
    verified_by: Vec<KeyRef>,
    unknown: Vec<NoteSignature>,
}

impl VerifiedNote {
    /// The verified text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }

    /// The trusted keys whose signatures verified, each once, in signature-line order.
    pub fn verified_by(&self) -> &[KeyRef] {
        &self.verified_by
    }

    /// Signatures from keys the caller did not configure (witnesses, retired or future
    /// keys); they were not checked and prove nothing.
    pub fn unknown_signatures(&self) -> &[NoteSignature] {
        &self.unknown
    }
}

/// Parses and verifies a signed note against the trusted `verifiers`.
///
/// As the specification requires: signatures from unknown keys (those that do not match a
/// verifier in both name and key ID) are ignored; every signature from a known key is
/// verified, and one that fails rejects the whole note; and the note is rejected unless at
/// least one known key's signature verified.
pub fn open(note: &[u8], verifiers: &[Verifier]) -> Result<VerifiedNote, NoteError> {
    let note = Note::parse(note)?;
    let mut verified_by: Vec<KeyRef> = Vec::new();
    let mut unknown = Vec::new();
    for sig in note.signatures {
        let mut known = verifiers.iter().filter(|v| v.is_key_of(&sig));
        let Some(verifier) = known.next() else {
            unknown.push(sig);
            continue;
        };
        // The same vkey configured twice is harmless; two different keys under one name
        // and ID cannot both be the signer.
        if known.any(|other| other.public_key != verifier.public_key) {
            return Err(NoteError::AmbiguousKey {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if !verifier.verify(note.text.as_bytes(), &sig.signature) {
            return Err(NoteError::BadSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        let key = sig.key_ref();
        if !verified_by.contains(&key) {
            verified_by.push(key);
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoVerifiedSignature);
    }
    Ok(VerifiedNote {
        text: note.text,
        verified_by,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_the_specification() {
        assert!(is_valid_key_name("example.com/log42"));
        assert!(is_valid_key_name("oid/1.3.6.1"));
        assert!(!is_valid_key_name(""));
        assert!(!is_valid_key_name("a b"));
        assert!(!is_valid_key_name("a+b"));
        assert!(!is_valid_key_name("a\tb"));
        // Unicode spaces count too, not only ASCII ones.
        assert!(!is_valid_key_name("a\u{a0}b"));
        assert!(!is_valid_key_name("a\u{2003}b"));
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let signer = Signer::from_seed("a", &[0x5a; 32]).expect("key");
        let shown = format!("{signer:?}");
        assert!(shown.contains("public_key"), "{shown}");
        assert!(!shown.contains("5a5a5a5a"), "{shown}");
        assert!(!shown.contains("90, 90, 90, 90"), "{shown}");
    }

    #[test]
    fn key_ids_parse_only_as_eight_lowercase_hex_digits() {
        assert_eq!(parse_key_id("530d903a"), Some(0x530d_903a));
        assert_eq!(parse_key_id("00000000"), Some(0));
        assert_eq!(parse_key_id("530D903A"), None);
        assert_eq!(parse_key_id("530d903"), None);
        assert_eq!(parse_key_id("530d903a0"), None);
        assert_eq!(parse_key_id("+30d903a"), None);
    }

    #[test]
    fn signature_lines_reject_the_wrong_dash() {
        let line = "- a AAAAAAA=";
        assert!(matches!(
            parse_signature_line(line, 3),
            Err(NoteError::MalformedSignatureLine { line: 3, .. })
        ));
        let en_dash = "\u{2013} a AAAAAAA=";
        assert!(matches!(
            parse_signature_line(en_dash, 3),
            Err(NoteError::MalformedSignatureLine { line: 3, .. })
        ));
        let em_dash = "\u{2014} a AAAAAAA=";
        assert_eq!(
            parse_signature_line(em_dash, 3),
            Ok(NoteSignature {
                name: "a".into(),
                key_id: 0,
                signature: vec![0],
            })
        );
    }
}
