//! C2SP checkpoints (`specs/tlog-checkpoint.md`): the log's signed statement "my tree of
//! this size has this root".
//!
//! A checkpoint is a signed note whose text is exactly the origin line, the decimal tree
//! size, the base64 root hash and optional extension lines. The body is parsed strictly
//! (one text per checkpoint), and [`open_checkpoint`] performs the client's checks in the
//! order that keeps unverified text from being acted on: verify the note against the keys
//! configured for the log, then parse the body, then require the expected origin.

use crate::base64::{self, Base64Error};
use crate::merkle::Hash;
use crate::note::{self, KeyRef, NoteError, Signer, Verifier};

/// Why a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed note around the checkpoint is malformed or not trusted.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The body must end with a newline.
    #[error("the checkpoint body does not end with a newline")]
    MissingFinalNewline,
    /// Origin, tree size and root hash are mandatory.
    #[error("a checkpoint needs at least three lines, found {found}")]
    TooFewLines { found: usize },
    /// The origin line is empty.
    #[error("the checkpoint origin is empty")]
    EmptyOrigin,
    /// The tree size is not a decimal u64 without leading zeros.
    #[error("the tree size is not a decimal number without leading zeros that fits 64 bits")]
    InvalidTreeSize,
    /// The root hash is not valid base64.
    #[error("the root hash is not valid base64: {0}")]
    RootEncoding(Base64Error),
    /// The root hash does not decode to 32 bytes.
    #[error("the root hash must be 32 bytes, got {actual}")]
    RootLength { actual: usize },
    /// Extension lines, if present, must be non-empty. `line` is 1-based.
    #[error("extension line {line} is empty")]
    EmptyExtensionLine { line: usize },
    /// A line holds a newline or another ASCII control character. `line` is 1-based
    /// (1 is the origin, 4 and up are extension lines).
    #[error("line {line} contains a control character")]
    ControlCharacter { line: usize },
    /// The checkpoint is validly signed but for a different log.
    #[error("the checkpoint is for origin {found:?}, expected {expected:?}")]
    OriginMismatch { expected: String, found: String },
    /// A log signs its checkpoints with keys named after its origin.
    #[error("key {key_name:?} may not sign checkpoints of origin {origin:?}: the key name must equal the origin")]
    KeyNameNotOrigin { key_name: String, origin: String },
}

/// A checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `amtsbuch.example/log`.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root of the tree of `size` leaves.
    pub root: Hash,
    /// Opaque extension lines. The specification discourages them because monitors cannot
    /// audit them.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: one line each for origin, size, root and extensions, every line
    /// ending in a newline.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            base64::encode(&self.root)
        );
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Checks that [`Checkpoint::to_body`] yields a body that [`Checkpoint::parse`] reads
    /// back as this checkpoint.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(&self.origin, 1)?;
        for (line, extension) in (4..).zip(&self.extensions) {
            if extension.is_empty() {
                return Err(CheckpointError::EmptyExtensionLine { line });
            }
            check_line(extension, line)?;
        }
        Ok(())
    }

    /// Parses a checkpoint body strictly.
    ///
    /// The origin may be any non-empty text: the specification recommends a schema-less URL
    /// but forbids clients to assume one. Compare it with the expected origin instead (as
    /// [`open_checkpoint`] does).
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        let body = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { found: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(origin, 1)?;
        let size = parse_decimal(size).ok_or(CheckpointError::InvalidTreeSize)?;
        let root = base64::decode(root).map_err(CheckpointError::RootEncoding)?;
        let root = Hash::try_from(root.as_slice())
            .map_err(|_| CheckpointError::RootLength { actual: root.len() })?;
        let checkpoint = Self {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|&e| e.to_owned()).collect(),
        };
        checkpoint.validate()?;
        Ok(checkpoint)
    }
}

fn check_line(text: &str, line: usize) -> Result<(), CheckpointError> {
    if text.bytes().any(|b| b < 0x20) {
        Err(CheckpointError::ControlCharacter { line })
    } else {
        Ok(())
    }
}

/// An ASCII decimal without sign and without leading zeros (except `0` itself) that fits
/// a u64: the one encoding of a number that the C2SP formats accept.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    let digits = text.as_bytes();
    let canonical = match digits {
        [] => false,
        [b'0'] => true,
        [b'0', ..] => false,
        _ => digits.iter().all(u8::is_ascii_digit),
    };
    // `u64::from_str` alone would also accept a leading '+'.
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// Signs a checkpoint with the log's key(s).
///
/// Every signer's key name must equal the origin. The specification only says the name
/// SHOULD match; for the log's own keys we make it a rule, so that a verifier configured
/// from the published vkey can always tell which log a key belongs to.
pub fn sign_checkpoint(
    checkpoint: &Checkpoint,
    signers: &[&Signer],
) -> Result<String, CheckpointError> {
    checkpoint.validate()?;
    if let Some(signer) = signers.iter().find(|s| s.name() != checkpoint.origin) {
        return Err(CheckpointError::KeyNameNotOrigin {
            key_name: signer.name().to_owned(),
            origin: checkpoint.origin.clone(),
        });
    }
    Ok(note::sign(&checkpoint.to_body(), signers)?)
}

/// Opens a signed checkpoint of the log `expected_origin`, trusting the log keys in
/// `verifiers` (more than one during a key rotation).
///
/// Returns the checkpoint and the keys whose signatures verified. Signatures from other
/// keys (witness cosignatures, for instance) are ignored, as the note specification
/// requires. The key names are not compared with the origin: the configured verifiers are
/// what binds a key to the log.
pub fn open_checkpoint(
    signed_note: &[u8],
    verifiers: &[Verifier],
    expected_origin: &str,
) -> Result<(Checkpoint, Vec<KeyRef>), CheckpointError> {
    let verified = note::open(signed_note, verifiers)?;
    let checkpoint = Checkpoint::parse(verified.text())?;
    if checkpoint.origin != expected_origin {
        return Err(CheckpointError::OriginMismatch {
            expected: expected_origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok((checkpoint, verified.verified_by().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_have_exactly_one_encoding() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("20852163"), Some(20_852_163));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "18446744073709551616",
            "\u{661}",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn validate_rejects_bodies_that_would_not_parse_back() {
        let mut checkpoint = Checkpoint {
            origin: "example.com/log".into(),
            size: 1,
            root: [7; 32],
            extensions: vec!["ext".into()],
        };
        assert_eq!(checkpoint.validate(), Ok(()));
        checkpoint.origin = "example.com/log\n2".into();
        assert_eq!(
            checkpoint.validate(),
            Err(CheckpointError::ControlCharacter { line: 1 })
        );
        checkpoint.origin = String::new();
        assert_eq!(checkpoint.validate(), Err(CheckpointError::EmptyOrigin));
        checkpoint.origin = "example.com/log".into();
        checkpoint.extensions.push(String::new());
        assert_eq!(
            checkpoint.validate(),
            Err(CheckpointError::EmptyExtensionLine { line: 5 })
        );
    }
}
