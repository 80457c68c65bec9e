//! C2SP signed notes, checkpoints and tlog proofs: interoperability vectors, round trips and
//! tamper matrices.
//!
//! Auditors check Amtsbuch's checkpoints and receipts with third-party C2SP tooling, so the
//! first tests pin our encoding to published bytes: the examples in `specs/` (copied here
//! verbatim) and the known-answer vector of the Go reference implementation
//! (`golang.org/x/mod/sumdb/note`). Ed25519 is deterministic, so reproducing that signature
//! exactly shows that an independent implementation signs what we sign. The tamper tests
//! change one byte at a time and require the precise rejection, next to an untouched control
//! that must pass, so none of them can pass by rejecting everything.

use amtsbuch_domain::base64;
use amtsbuch_domain::checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint, CheckpointError};
use amtsbuch_domain::merkle::{inclusion_proof, leaf_hash, Hash, MemoryLeaves, MerkleError};
use amtsbuch_domain::note::{self, KeyRef, Note, NoteError, Signer, Verifier};
use amtsbuch_domain::tlog_proof::{self, Leaf, TlogProof, TlogProofError};

// ---------------------------------------------------------------------------------------
// Published examples, copied byte for byte.

/// `specs/signed-note.md`, "Verifier keys" → "Example".
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_VKEY_NOTE: &str = "This is an example message.\n\
\n\
— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

/// `specs/signed-note.md`, the introductory example (its key is not published).
const SPEC_POEM_NOTE: &str = "Ognuno sta solo sul cuor della terra\n\
trafitto da un raggio di sole:\n\
\n\
ed è subito sera.\n\
\n\
— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

/// `specs/tlog-checkpoint.md`, the introductory example (its key is not published).
const SPEC_CHECKPOINT: &str = "example.com/behind-the-sofa\n\
20852163\n\
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
\n\
— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

/// `specs/tlog-cosignature.md`: the same checkpoint with a witness cosignature.
const SPEC_COSIGNED_CHECKPOINT: &str = "example.com/behind-the-sofa\n\
20852163\n\
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
\n\
— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

/// `specs/tlog-proof.md`, the example; the spec elides the middle of its signatures.
const SPEC_TLOG_PROOF: &str = "c2sp.org/tlog-proof@v1\n\
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n\
index 73894\n\
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n\
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n\
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n\
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\
\n\
example.com/fancylog\n\
109482\n\
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\
\n\
— example.com/fancylog hI2DJw[...]1roloI=\n\
— witness1.example mJirIklj[...]qY9v2B/5bg==\n\
— witness2.example TnKKVHLX[...]xwYwrSjgow==\n\
— witness3.example S4X82uH5[...]3oEcROGLFQ==\n";

/// The example of the Go reference implementation (`golang.org/x/mod/sumdb/note`, package
/// documentation and `ExampleSign`): signer key `PRIVATE+KEY+PeterNeumann+c74f20a3+<this>`,
/// the base64 of 0x01 followed by the 32-byte Ed25519 seed.
const GO_SKEY_MATERIAL: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
then you don't know what your problem is.\n";
const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
then you don't know what your problem is.\n\
\n\
— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

// ---------------------------------------------------------------------------------------
// Helpers.

const ORIGIN: &str = "amtsbuch.example/log";

/// A deterministic test key; different `seed` bytes give different keys.
fn signer(name: &str, seed: u8) -> Signer {
    Signer::from_seed(name, &[seed; 32]).expect("test key")
}

fn key_ref(name: &str, key_id: u32) -> KeyRef {
    KeyRef {
        name: name.into(),
        key_id,
    }
}

fn open(note: &str, verifiers: &[Verifier]) -> Result<note::VerifiedNote, NoteError> {
    note::open(note.as_bytes(), verifiers)
}

/// Replaces the byte at `offset` of an ASCII base64 text with another alphabet character,
/// so that the text stays well-formed but encodes different bits.
fn change_b64_char(text: &str, offset: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[offset] = if bytes[offset] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

/// Applies `change` to line `index` (0-based) of `text`, keeping every newline.
fn edit_line(text: &str, index: usize, change: impl Fn(&str) -> String) -> String {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, line)| {
            if i == index {
                let body = line.strip_suffix('\n').unwrap_or(line);
                format!("{}\n", change(body))
            } else {
                line.to_owned()
            }
        })
        .collect()
}

/// The base64 part of a signature line.
fn signature_b64(line: &str) -> &str {
    line.rsplit_once(' ').expect("signature line").1
}

fn sample_checkpoint() -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.into(),
        size: 42,
        root: leaf_hash(b"root stand-in"),
        extensions: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Interoperability with published bytes.

#[test]
fn spec_verifier_key_example_verifies_the_spec_note() {
    let verifier = Verifier::parse(SPEC_VKEY).expect("spec vkey");
    assert_eq!(verifier.name(), "example.com/foo");
    assert_eq!(verifier.key_id(), 0x530d_903a);
    assert_eq!(verifier.to_string(), SPEC_VKEY);

    let verified =
        open(SPEC_VKEY_NOTE, std::slice::from_ref(&verifier)).expect("spec note verifies");
    assert_eq!(verified.text(), "This is an example message.\n");
    assert_eq!(
        verified.verified_by(),
        [key_ref("example.com/foo", 0x530d_903a)]
    );

    let altered = SPEC_VKEY_NOTE.replace("an example", "an exemple");
    assert_eq!(
        open(&altered, &[verifier]),
        Err(NoteError::BadSignature {
            name: "example.com/foo".into(),
            key_id: 0x530d_903a,
        })
    );
}

#[test]
fn go_reference_signer_reproduces_its_note_byte_for_byte() {
    let material = base64::decode(GO_SKEY_MATERIAL).expect("skey base64");
    let (&key_type, seed) = material.split_first().expect("skey material");
    assert_eq!(key_type, note::SIGNATURE_TYPE_ED25519);
    let seed: [u8; 32] = seed.try_into().expect("32-byte seed");
    let signer = Signer::from_seed("PeterNeumann", &seed).expect("Go key");

    assert_eq!(signer.key_id(), 0xc74f_20a3);
    assert_eq!(signer.vkey(), GO_VKEY);
    assert_eq!(note::sign(GO_TEXT, &[&signer]).as_deref(), Ok(GO_NOTE));

    let verified =
        open(GO_NOTE, &[Verifier::parse(GO_VKEY).expect("Go vkey")]).expect("Go note verifies");
    assert_eq!(verified.text(), GO_TEXT);
}

#[test]
fn spec_note_example_is_split_at_its_last_blank_line() {
    let note = Note::parse(SPEC_POEM_NOTE.as_bytes()).expect("spec note parses");
    assert_eq!(
        note.text,
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    );
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].name, "quasimodo.example/salvatore");
    assert_eq!(note.signatures[0].key_id, 0x367b_a04b);
    assert_eq!(note.signatures[0].signature.len(), 64);
    assert_eq!(note.to_text(), SPEC_POEM_NOTE);

    // Without the poet's key the note must not be accepted.
    let stranger = signer("quasimodo.example/salvatore", 1).verifier();
    assert_eq!(
        open(SPEC_POEM_NOTE, &[stranger]),
        Err(NoteError::NoVerifiedSignature)
    );
}

#[test]
fn spec_checkpoint_example_parses_and_reencodes_exactly() {
    let note = Note::parse(SPEC_CHECKPOINT.as_bytes()).expect("spec checkpoint note");
    let checkpoint = Checkpoint::parse(&note.text).expect("spec checkpoint body");
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size, 20_852_163);
    assert_eq!(
        base64::encode(&checkpoint.root),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    assert!(checkpoint.extensions.is_empty());
    assert_eq!(checkpoint.to_body(), note.text);
    assert_eq!(note.signatures[0].key_id, 0x033d_e0ae);
    assert_eq!(note.to_text(), SPEC_CHECKPOINT);
}

#[test]
fn spec_cosignature_example_parses_and_is_ignored_as_an_unknown_signature() {
    let note = Note::parse(SPEC_COSIGNED_CHECKPOINT.as_bytes()).expect("spec cosigned note");
    assert_eq!(note.signatures.len(), 2);
    let cosignature = &note.signatures[1];
    assert_eq!(cosignature.name, "witness.example.com/w1");
    assert_eq!(cosignature.key_id, 0x8d66_cf3f);
    // A timestamped_signature: the u64 timestamp the spec's signed message shows
    // ("time 1679315147"), then the 64-byte Ed25519 signature.
    let (timestamp, signature) = cosignature
        .signature
        .split_first_chunk::<8>()
        .expect("timestamp");
    assert_eq!(u64::from_be_bytes(*timestamp), 1_679_315_147);
    assert_eq!(signature.len(), 64);

    // A key with the log's name but another key ID shares the name only: both signatures
    // are unknown, so nothing vouches for the checkpoint.
    let impostor = signer("example.com/behind-the-sofa", 2).verifier();
    assert_ne!(impostor.key_id(), 0x033d_e0ae);
    assert_eq!(
        open_checkpoint(
            SPEC_COSIGNED_CHECKPOINT.as_bytes(),
            &[impostor],
            "example.com/behind-the-sofa"
        ),
        Err(CheckpointError::Note(NoteError::NoVerifiedSignature))
    );
}

#[test]
fn spec_tlog_proof_example_parses_once_its_elided_signatures_are_filled_in() {
    // As published, the signatures contain "[...]", which is not base64.
    assert_eq!(
        TlogProof::parse(SPEC_TLOG_PROOF.as_bytes()),
        Err(TlogProofError::Checkpoint(CheckpointError::Note(
            NoteError::SignatureEncoding {
                line: 5,
                error: base64::Base64Error::Length { len: 18 },
            }
        )))
    );

    // Keep every byte up to the signature lines and sign the checkpoint with a test key.
    let (head, body) = SPEC_TLOG_PROOF
        .split_once("\n\n")
        .expect("proof lines and checkpoint");
    let body = &body[..body.find("\n\n").expect("checkpoint body") + 1];
    let log = signer("example.com/fancylog", 3);
    let checkpoint = Checkpoint::parse(body).expect("spec checkpoint body");
    let signed = sign_checkpoint(&checkpoint, &[&log]).expect("sign");
    let text = format!("{head}\n\n{signed}");

    let proof = TlogProof::parse(text.as_bytes()).expect("spec proof with real signature");
    let extra = proof.extra.as_deref().expect("extra line");
    assert!(extra.starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
    assert_eq!(proof.index, 73_894);
    assert_eq!(proof.inclusion_proof.len(), 5);
    assert_eq!(
        base64::encode(&proof.inclusion_proof[0]),
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ="
    );
    assert_eq!(proof.to_text(), text);

    // The published proof is abbreviated: a tree of 109482 leaves needs 17 hashes.
    assert_eq!(
        tlog_proof::verify(
            &proof,
            Leaf::Hash([0; 32]),
            &[log.verifier()],
            "example.com/fancylog"
        ),
        Err(TlogProofError::Inclusion(MerkleError::WrongProofLength {
            expected: 17,
            actual: 5,
        }))
    );
}

// ---------------------------------------------------------------------------------------
// Signed notes.

#[test]
fn generated_keys_sign_and_open_round_trip() {
    let pkcs8 = Signer::generate_pkcs8().expect("key generation");
    let signer = Signer::from_pkcs8(ORIGIN, &pkcs8).expect("PKCS#8 loads");
    let reloaded = Signer::from_pkcs8(ORIGIN, &pkcs8).expect("PKCS#8 loads again");
    assert_eq!(reloaded.public_key(), signer.public_key());

    let verifier = Verifier::parse(&signer.vkey()).expect("own vkey parses");
    assert_eq!(verifier, signer.verifier());
    assert_eq!(
        verifier.key_id(),
        note::ed25519_key_id(ORIGIN, &signer.public_key())
    );

    let text = "first line\n\nafter an empty line\n";
    let signed = note::sign(text, &[&signer]).expect("sign");
    let verified = open(&signed, &[verifier]).expect("open");
    assert_eq!(verified.text(), text);
    assert_eq!(verified.verified_by(), [signer.key_ref()]);
    assert!(verified.unknown_signatures().is_empty());
    let parsed = Note::parse(signed.as_bytes()).expect("parse");
    assert_eq!(parsed.to_text(), signed);
}

#[test]
fn a_note_signed_during_key_rotation_verifies_with_either_key_alone() {
    let old = signer(ORIGIN, 10);
    let new = signer(ORIGIN, 11);
    assert_ne!(old.key_id(), new.key_id());
    let signed = note::sign("rotating\n", &[&old, &new]).expect("sign");

    let with_old = open(&signed, &[old.verifier()]).expect("old key alone");
    assert_eq!(with_old.verified_by(), [old.key_ref()]);
    assert_eq!(with_old.unknown_signatures().len(), 1);

    let with_new = open(&signed, &[new.verifier()]).expect("new key alone");
    assert_eq!(with_new.verified_by(), [new.key_ref()]);

    let with_both = open(&signed, &[new.verifier(), old.verifier()]).expect("both");
    assert_eq!(with_both.verified_by(), [old.key_ref(), new.key_ref()]);
}

#[test]
fn signatures_from_unknown_keys_are_ignored() {
    let log = signer(ORIGIN, 20);
    let witness = signer("witness.example/w1", 21);
    let signed = note::sign("cosigned\n", &[&witness, &log]).expect("sign");
    let verified = open(&signed, &[log.verifier()]).expect("log key verifies");
    assert_eq!(verified.verified_by(), [log.key_ref()]);
    assert_eq!(
        verified.unknown_signatures()[0].key_ref(),
        witness.key_ref()
    );

    // A garbage signature under an unknown key is not checked at all.
    let junk = format!("{signed}— stranger.example {}\n", base64::encode(&[9; 68]));
    assert!(open(&junk, &[log.verifier()]).is_ok());

    // Sharing the name but not the key ID, or the key ID but not the name, is not enough
    // to be taken for the known key: such a line is unknown and ignored.
    let line = signed.lines().last().expect("log signature line");
    let same_id_other_name = line.replace(ORIGIN, "amtsbuch.example/other");
    let forged = format!("cosigned\n\n{same_id_other_name}\n");
    assert_eq!(
        open(&forged, &[log.verifier()]),
        Err(NoteError::NoVerifiedSignature)
    );
    let same_name_other_key = signer(ORIGIN, 22);
    let other = note::sign("cosigned\n", &[&same_name_other_key]).expect("sign");
    let mixed = format!("{signed}{}\n", other.lines().last().expect("line"));
    let verified = open(&mixed, &[log.verifier()]).expect("the other key is ignored");
    assert_eq!(verified.unknown_signatures().len(), 2);
}

#[test]
fn a_failing_signature_from_a_known_key_rejects_the_whole_note() {
    let a = signer(ORIGIN, 30);
    let b = signer("amtsbuch.example/backup", 31);
    let signed = note::sign("two keys\n", &[&a, &b]).expect("sign");
    let control = open(&signed, &[a.verifier(), b.verifier()]).expect("control");
    assert_eq!(control.verified_by(), [a.key_ref(), b.key_ref()]);

    // Corrupt b's signature (line 4); a's still verifies, but the note is rejected.
    let broken = edit_line(&signed, 3, |line| {
        let offset = line.len() - signature_b64(line).len() + 40;
        change_b64_char(line, offset)
    });
    assert_eq!(
        open(&broken, &[a.verifier(), b.verifier()]),
        Err(NoteError::BadSignature {
            name: b.name().into(),
            key_id: b.key_id(),
        })
    );
    // For a verifier that does not know b, the broken line is just unknown.
    assert!(open(&broken, &[a.verifier()]).is_ok());
}

#[test]
fn a_vkey_cannot_claim_another_keys_id() {
    let log = signer(ORIGIN, 40);
    let other = signer(ORIGIN, 41).verifier().to_string();
    let material = other.rsplit_once('+').expect("vkey").1;
    let claimed = format!("{ORIGIN}+{:08x}+{material}", log.key_id());
    assert_eq!(
        Verifier::parse(&claimed),
        Err(NoteError::KeyIdMismatch {
            name: ORIGIN.into(),
            stated: log.key_id(),
            computed: signer(ORIGIN, 41).key_id(),
        })
    );
}

#[test]
fn two_trusted_keys_with_one_name_and_key_id_are_ambiguous() {
    // Key IDs are only 32 bits, so two keys under one name collide after some 2^16 tries
    // (birthday bound). The key bytes need not be valid curve points: the ambiguity is
    // detected before any signature is checked.
    let mut seen = std::collections::HashMap::new();
    let (first, second) = (0u64..)
        .find_map(|i| {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_be_bytes());
            let id = note::ed25519_key_id(ORIGIN, &key);
            seen.insert(id, key).map(|earlier| (earlier, key))
        })
        .expect("a collision exists");
    let a = Verifier::new(ORIGIN, first).expect("verifier");
    let b = Verifier::new(ORIGIN, second).expect("verifier");
    assert_eq!(a.key_id(), b.key_id());

    let mut raw = a.key_id().to_be_bytes().to_vec();
    raw.extend_from_slice(&[0; 64]);
    let note = format!("text\n\n\u{2014} {ORIGIN} {}\n", base64::encode(&raw));
    let ambiguous = NoteError::AmbiguousKey {
        name: ORIGIN.into(),
        key_id: a.key_id(),
    };
    assert_eq!(open(&note, &[a.clone(), b]), Err(ambiguous));
    // With one of them configured (even twice) the signature is simply checked.
    assert_eq!(
        open(&note, &[a.clone(), a.clone()]),
        Err(NoteError::BadSignature {
            name: ORIGIN.into(),
            key_id: a.key_id(),
        })
    );
    let log = signer(ORIGIN, 42);
    let signed = note::sign("text\n", &[&log]).expect("sign");
    assert!(open(&signed, &[log.verifier(), log.verifier()]).is_ok());
}

#[test]
fn malformed_notes_are_rejected_precisely() {
    let a = signer("a", 50);
    let good = note::sign("text\n", &[&a]).expect("sign");
    let line = good.lines().last().expect("signature line");
    let sig = signature_b64(line);
    assert!(open(&good, &[a.verifier()]).is_ok(), "control");

    let cases: Vec<(String, NoteError)> = vec![
        (format!("text\n{line}\n"), NoteError::MissingSignatureBlock),
        ("text\n\n".into(), NoteError::NoSignatures),
        (format!("{good}\n"), NoteError::NoSignatures),
        (
            good.trim_end_matches('\n').into(),
            NoteError::MissingFinalNewline,
        ),
        (
            format!("text\n\n- a {sig}\n"),
            NoteError::MalformedSignatureLine {
                line: 3,
                reason: "it does not start with an em dash (U+2014) and a space",
            },
        ),
        (
            format!("text\n\n\u{2014}a {sig}\n"),
            NoteError::MalformedSignatureLine {
                line: 3,
                reason: "it does not start with an em dash (U+2014) and a space",
            },
        ),
        (
            format!("text\n\n\u{2014} a{sig}\n"),
            NoteError::MalformedSignatureLine {
                line: 3,
                reason: "no space between key name and signature",
            },
        ),
        (
            format!("text\n\n\u{2014} a+b {sig}\n"),
            NoteError::InvalidKeyName { name: "a+b".into() },
        ),
        (
            format!("text\n\n\u{2014} a\u{a0}b {sig}\n"),
            NoteError::InvalidKeyName {
                name: "a\u{a0}b".into(),
            },
        ),
        (
            "text\n\n\u{2014} a AAAAAA==\n".into(),
            NoteError::SignatureTooShort { line: 3 },
        ),
        (
            "text\n\n\u{2014} a !AAA\n".into(),
            NoteError::SignatureEncoding {
                line: 3,
                error: base64::Base64Error::InvalidCharacter { offset: 0 },
            },
        ),
        (
            format!("text\n\n\u{2014} a  {sig}\n"),
            NoteError::SignatureEncoding {
                line: 3,
                error: base64::Base64Error::Length { len: sig.len() + 1 },
            },
        ),
        (
            format!("te\rxt\n\n{line}\n"),
            NoteError::ControlCharacter {
                offset: 2,
                byte: b'\r',
            },
        ),
        (
            format!("text\n\n{line}\r\n"),
            NoteError::ControlCharacter {
                offset: 6 + line.len(),
                byte: b'\r',
            },
        ),
    ];
    for (note, expected) in cases {
        assert_eq!(
            open(&note, &[a.verifier()]),
            Err(expected.clone()),
            "{note:?}"
        );
        assert_eq!(Note::parse(note.as_bytes()), Err(expected), "{note:?}");
    }

    let mut not_utf8 = good.clone().into_bytes();
    not_utf8[1] = 0xff;
    assert_eq!(
        note::open(&not_utf8, &[a.verifier()]),
        Err(NoteError::NotUtf8 { offset: 1 })
    );
}

#[test]
fn at_least_sixteen_and_at_most_a_hundred_signatures_are_accepted() {
    let log = signer(ORIGIN, 60);
    let signed = note::sign("many\n", &[&log]).expect("sign");
    let with_unknown = |count: usize| {
        let mut note = signed.clone();
        for i in 1..count {
            note.push_str(&format!(
                "\u{2014} w{i}.example {}\n",
                base64::encode(&[7; 68])
            ));
        }
        note
    };
    for count in [16, 100] {
        let verified = open(&with_unknown(count), &[log.verifier()]).expect("accepted");
        assert_eq!(verified.unknown_signatures().len(), count - 1);
    }
    assert_eq!(
        open(&with_unknown(101), &[log.verifier()]),
        Err(NoteError::TooManySignatures { max: 100 })
    );
}

#[test]
fn verifier_keys_are_parsed_strictly() {
    let spec_key_b64 = SPEC_VKEY.rsplit_once('+').expect("vkey").1;
    let spec_key = base64::decode(spec_key_b64).expect("spec key");
    let with_type = |key_type: u8, key: &[u8]| {
        let mut material = vec![key_type];
        material.extend_from_slice(key);
        format!("example.com/foo+530d903a+{}", base64::encode(&material))
    };
    let malformed = |reason| NoteError::MalformedVerifierKey { reason };
    let cases: Vec<(String, NoteError)> = vec![
        (
            "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k".into(),
            NoteError::KeyIdMismatch {
                name: "example.com/foo".into(),
                stated: 0x530d_903b,
                computed: 0x530d_903a,
            },
        ),
        (
            "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k".into(),
            NoteError::KeyIdMismatch {
                name: "example.com/bar".into(),
                stated: 0x530d_903a,
                computed: note::ed25519_key_id(
                    "example.com/bar",
                    &spec_key[1..].try_into().expect("32"),
                ),
            },
        ),
        (
            "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k".into(),
            malformed("the key ID must be 8 lowercase hex digits"),
        ),
        (
            "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k".into(),
            malformed("the key ID must be 8 lowercase hex digits"),
        ),
        (
            "example.com/foo+530d903a".into(),
            malformed("expected <name>+<key ID>+<key>"),
        ),
        (
            "example.com/foo".into(),
            malformed("expected <name>+<key ID>+<key>"),
        ),
        (
            "example.com/foo+530d903a+".into(),
            malformed("the key material is empty"),
        ),
        (
            "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k".into(),
            NoteError::InvalidKeyName {
                name: String::new(),
            },
        ),
        (
            "example.com foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k".into(),
            NoteError::InvalidKeyName {
                name: "example.com foo".into(),
            },
        ),
        (
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2".into(),
            NoteError::VerifierKeyEncoding(base64::Base64Error::Length { len: 43 }),
        ),
        (
            with_type(0x04, &spec_key[1..]),
            NoteError::UnsupportedSignatureType(0x04),
        ),
        (
            with_type(0x01, &spec_key[1..32]),
            malformed("an Ed25519 public key must be 32 bytes"),
        ),
    ];
    assert!(Verifier::parse(SPEC_VKEY).is_ok(), "control");
    for (vkey, expected) in cases {
        assert_eq!(Verifier::parse(&vkey), Err(expected), "{vkey:?}");
    }
}

#[test]
fn signing_refuses_what_opening_would_refuse() {
    let a = signer(ORIGIN, 70);
    let a_again = signer(ORIGIN, 70);
    assert_eq!(
        note::sign("no newline", &[&a]),
        Err(NoteError::TextNotTerminated)
    );
    assert_eq!(note::sign("", &[&a]), Err(NoteError::TextNotTerminated));
    assert_eq!(
        note::sign("tab\there\n", &[&a]),
        Err(NoteError::ControlCharacter {
            offset: 3,
            byte: b'\t'
        })
    );
    assert_eq!(note::sign("text\n", &[]), Err(NoteError::NoSigners));
    assert_eq!(
        note::sign("text\n", &[&a, &a_again]),
        Err(NoteError::AmbiguousKey {
            name: ORIGIN.into(),
            key_id: a.key_id(),
        })
    );
    assert!(note::sign("text\n", &[&a]).is_ok(), "control");
}

#[test]
fn invalid_private_keys_and_names_are_rejected() {
    assert!(matches!(
        Signer::from_pkcs8(ORIGIN, b"not a PKCS#8 document"),
        Err(NoteError::InvalidPrivateKey(_))
    ));
    let pkcs8 = Signer::generate_pkcs8().expect("key generation");
    assert_eq!(
        Signer::from_pkcs8("has space", &pkcs8).map(|s| s.key_id()),
        Err(NoteError::InvalidKeyName {
            name: "has space".into()
        })
    );
    assert_eq!(
        Verifier::new("a+b", [0; 32]),
        Err(NoteError::InvalidKeyName { name: "a+b".into() })
    );
}

// ---------------------------------------------------------------------------------------
// Checkpoints.

#[test]
fn checkpoints_round_trip_with_an_exact_body() {
    let mut checkpoint = sample_checkpoint();
    checkpoint.root = [0xff; 32];
    checkpoint.extensions = vec!["ext one".into(), "ext+two".into()];
    let body = checkpoint.to_body();
    assert_eq!(
        body,
        format!("{ORIGIN}\n42\n//////////////////////////////////////////8=\next one\next+two\n")
    );
    assert_eq!(Checkpoint::parse(&body), Ok(checkpoint.clone()));

    let log = signer(ORIGIN, 80);
    let signed = sign_checkpoint(&checkpoint, &[&log]).expect("sign");
    assert!(signed.starts_with(&format!("{body}\n\u{2014} {ORIGIN} ")));
    assert_eq!(
        open_checkpoint(signed.as_bytes(), &[log.verifier()], ORIGIN),
        Ok((checkpoint, vec![log.key_ref()]))
    );

    let empty = Checkpoint {
        origin: ORIGIN.into(),
        size: 0,
        root: amtsbuch_domain::merkle::empty_root(),
        extensions: Vec::new(),
    };
    assert_eq!(
        empty.to_body(),
        format!("{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
    );
    assert_eq!(Checkpoint::parse(&empty.to_body()), Ok(empty));
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let root = base64::encode(&[1; 32]);
    let ok = |body: &str| Checkpoint::parse(body).map(|c| (c.origin, c.size));
    assert_eq!(
        ok(&format!("{ORIGIN}\n7\n{root}\n")),
        Ok((ORIGIN.into(), 7)),
        "control"
    );
    // Clients must not assume the origin is a URL: spaces and '+' are accepted.
    assert_eq!(
        ok(&format!("my log + more\n0\n{root}\n")),
        Ok(("my log + more".into(), 0))
    );
    assert_eq!(
        ok(&format!("{ORIGIN}\n18446744073709551615\n{root}\n")),
        Ok((ORIGIN.into(), u64::MAX))
    );

    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("{ORIGIN}\n7\n{root}"),
            CheckpointError::MissingFinalNewline,
        ),
        (
            format!("{ORIGIN}\n7\n"),
            CheckpointError::TooFewLines { found: 2 },
        ),
        (format!("\n7\n{root}\n"), CheckpointError::EmptyOrigin),
        (
            format!("{ORIGIN}\n07\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("{ORIGIN}\n+7\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("{ORIGIN}\n\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("{ORIGIN}\n7\n{}\n", base64::encode(&[1; 31])),
            CheckpointError::RootLength { actual: 31 },
        ),
        (
            format!("{ORIGIN}\n7\n{}\n", root.replace('=', "")),
            CheckpointError::RootEncoding(base64::Base64Error::Length { len: 43 }),
        ),
        // A root written in hex: every hex digit is a base64 character, so only the
        // decoded length gives it away.
        (
            format!("{ORIGIN}\n7\n{}\n", "0123456789abcdef".repeat(4)),
            CheckpointError::RootLength { actual: 48 },
        ),
        (
            format!("{ORIGIN}\n7\n{root}\n\n"),
            CheckpointError::EmptyExtensionLine { line: 4 },
        ),
        (
            format!("{ORIGIN}\n7\n{root}\next\n\n"),
            CheckpointError::EmptyExtensionLine { line: 5 },
        ),
        (
            format!("{ORIGIN}\r\n7\n{root}\n"),
            CheckpointError::ControlCharacter { line: 1 },
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(Checkpoint::parse(&body), Err(expected), "{body:?}");
    }
}

#[test]
fn checkpoint_tamper_matrix() {
    let log = signer(ORIGIN, 90);
    let signed = sign_checkpoint(&sample_checkpoint(), &[&log]).expect("sign");
    let open = |note: &str| open_checkpoint(note.as_bytes(), &[log.verifier()], ORIGIN);
    assert_eq!(
        open(&signed),
        Ok((sample_checkpoint(), vec![log.key_ref()])),
        "control"
    );

    let bad_signature = CheckpointError::Note(NoteError::BadSignature {
        name: ORIGIN.into(),
        key_id: log.key_id(),
    });
    let unverified = CheckpointError::Note(NoteError::NoVerifiedSignature);
    // Lines: 0 origin, 1 size, 2 root, 3 blank, 4 signature.
    let sig_start = |line: &str| line.len() - signature_b64(line).len();
    let one_byte_flips: Vec<(&str, String, CheckpointError)> = vec![
        (
            "origin",
            edit_line(&signed, 0, |l| l.replace("/log", "/loh")),
            bad_signature.clone(),
        ),
        (
            "size",
            edit_line(&signed, 1, |l| l.replace("42", "43")),
            bad_signature.clone(),
        ),
        (
            "root",
            edit_line(&signed, 2, |l| change_b64_char(l, 10)),
            bad_signature.clone(),
        ),
        (
            "signature",
            edit_line(&signed, 4, |l| change_b64_char(l, sig_start(l) + 40)),
            bad_signature.clone(),
        ),
        (
            "key ID",
            edit_line(&signed, 4, |l| change_b64_char(l, sig_start(l))),
            unverified.clone(),
        ),
        (
            "key name",
            edit_line(&signed, 4, |l| l.replace("/log ", "/loh ")),
            unverified,
        ),
    ];
    for (what, tampered, expected) in one_byte_flips {
        let changed = tampered
            .bytes()
            .zip(signed.bytes())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            (tampered.len(), changed),
            (signed.len(), 1),
            "{what}: not a one-byte change"
        );
        assert_eq!(open(&tampered), Err(expected), "{what}");
    }

    assert_eq!(
        open(&signed.replacen("=\n\n", "=\nextension\n\n", 1)),
        Err(bad_signature),
        "added extension line"
    );
    assert_eq!(
        open(&signed.replacen("=\n\n", "=\n", 1)),
        Err(CheckpointError::Note(NoteError::MissingSignatureBlock)),
        "blank line removed"
    );
}

#[test]
fn a_validly_signed_checkpoint_of_another_log_is_refused() {
    let other_origin = "other.example/log";
    let other = signer(other_origin, 100);
    let mut checkpoint = sample_checkpoint();
    checkpoint.origin = other_origin.into();
    let signed = sign_checkpoint(&checkpoint, &[&other]).expect("sign");
    assert!(open_checkpoint(signed.as_bytes(), &[other.verifier()], other_origin).is_ok());
    assert_eq!(
        open_checkpoint(signed.as_bytes(), &[other.verifier()], ORIGIN),
        Err(CheckpointError::OriginMismatch {
            expected: ORIGIN.into(),
            found: other_origin.into(),
        })
    );
    // Our logs only sign with keys named after their origin.
    let misnamed = signer("amtsbuch.example/key", 101);
    assert_eq!(
        sign_checkpoint(&sample_checkpoint(), &[&misnamed]),
        Err(CheckpointError::KeyNameNotOrigin {
            key_name: "amtsbuch.example/key".into(),
            origin: ORIGIN.into(),
        })
    );
    // A signed note whose text is not a checkpoint is refused after verification.
    let log = signer(ORIGIN, 102);
    let not_a_checkpoint = note::sign("hello\n", &[&log]).expect("sign");
    assert_eq!(
        open_checkpoint(not_a_checkpoint.as_bytes(), &[log.verifier()], ORIGIN),
        Err(CheckpointError::TooFewLines { found: 1 })
    );
}

// ---------------------------------------------------------------------------------------
// Tlog proofs.

/// A log of `size` records, with its signed checkpoint.
struct TestLog {
    records: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    signer: Signer,
    signed_checkpoint: String,
}

impl TestLog {
    fn new(size: usize) -> Self {
        let records: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("{{\"event\":{i}}}").into_bytes())
            .collect();
        let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
        let signer = signer(ORIGIN, 110);
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size: size as u64,
            root: amtsbuch_domain::merkle::root_from_leaves(&leaves),
            extensions: Vec::new(),
        };
        let signed_checkpoint = sign_checkpoint(&checkpoint, &[&signer]).expect("sign");
        Self {
            records,
            leaves,
            signer,
            signed_checkpoint,
        }
    }

    fn proof(&self, index: u64) -> TlogProof {
        let size = self.leaves.len() as u64;
        TlogProof {
            extra: Some(format!("event-{index}").into_bytes()),
            index,
            inclusion_proof: inclusion_proof(index, size, &mut MemoryLeaves::new(&self.leaves))
                .expect("proof"),
            checkpoint: self.signed_checkpoint.clone(),
        }
    }

    fn verify(&self, proof: &TlogProof, leaf: Leaf<'_>) -> Result<u64, TlogProofError> {
        tlog_proof::verify(proof, leaf, &[self.signer.verifier()], ORIGIN).map(|r| r.index)
    }
}

#[test]
fn proofs_round_trip_and_verify_for_every_leaf() {
    for size in [1usize, 2, 7, 13] {
        let log = TestLog::new(size);
        for index in 0..size {
            let proof = log.proof(index as u64);
            let text = proof.to_text();
            let parsed = TlogProof::parse(text.as_bytes()).expect("parse");
            assert_eq!(parsed, proof, "size {size} index {index}");
            let receipt = tlog_proof::verify(
                &parsed,
                Leaf::Record(&log.records[index]),
                &[log.signer.verifier()],
                ORIGIN,
            )
            .expect("verifies");
            assert_eq!(receipt.index, index as u64);
            assert_eq!(receipt.leaf_hash, log.leaves[index]);
            assert_eq!(receipt.checkpoint.size, size as u64);
            assert_eq!(receipt.verified_by, [log.signer.key_ref()]);
            assert_eq!(
                log.verify(&parsed, Leaf::Hash(log.leaves[index])),
                Ok(index as u64)
            );
        }
    }
}

#[test]
fn proof_text_layout_is_exact() {
    let log = TestLog::new(3);
    let proof = log.proof(2);
    let hashes: Vec<String> = proof
        .inclusion_proof
        .iter()
        .map(|h| base64::encode(h))
        .collect();
    assert_eq!(hashes.len(), 1);
    assert_eq!(
        proof.to_text(),
        format!(
            "c2sp.org/tlog-proof@v1\nextra {}\nindex 2\n{}\n\n{}",
            base64::encode(b"event-2"),
            hashes[0],
            log.signed_checkpoint
        )
    );

    // Without extra data the line is omitted; a one-leaf tree has no proof hashes.
    let single = TestLog::new(1);
    let mut proof = single.proof(0);
    proof.extra = None;
    let text = proof.to_text();
    assert_eq!(
        text,
        format!(
            "c2sp.org/tlog-proof@v1\nindex 0\n\n{}",
            single.signed_checkpoint
        )
    );
    assert_eq!(TlogProof::parse(text.as_bytes()), Ok(proof));
}

#[test]
fn proof_tamper_matrix() {
    let log = TestLog::new(13);
    let proof = log.proof(5);
    let record = Leaf::Record(&log.records[5]);
    assert_eq!(log.verify(&proof, record), Ok(5), "control");

    let mut flipped = proof.clone();
    flipped.inclusion_proof[2][7] ^= 0x01;
    assert_eq!(
        log.verify(&flipped, record),
        Err(TlogProofError::Inclusion(MerkleError::RootMismatch))
    );

    // Index 6 needs a proof of the same length, so only the root can tell.
    let mut wrong_index = proof.clone();
    wrong_index.index = 6;
    assert_eq!(
        log.verify(&wrong_index, record),
        Err(TlogProofError::Inclusion(MerkleError::RootMismatch))
    );
    wrong_index.index = 12;
    assert_eq!(
        log.verify(&wrong_index, record),
        Err(TlogProofError::Inclusion(MerkleError::WrongProofLength {
            expected: 2,
            actual: 4,
        }))
    );
    wrong_index.index = 13;
    assert_eq!(
        log.verify(&wrong_index, record),
        Err(TlogProofError::Inclusion(MerkleError::IndexOutOfRange {
            index: 13,
            size: 13,
        }))
    );

    assert_eq!(
        log.verify(&proof, Leaf::Record(&log.records[6])),
        Err(TlogProofError::Inclusion(MerkleError::RootMismatch))
    );
    assert_eq!(
        log.verify(&proof, Leaf::Record(b"{\"event\":5} ")),
        Err(TlogProofError::Inclusion(MerkleError::RootMismatch))
    );

    let mut truncated = proof.clone();
    truncated.inclusion_proof.pop();
    assert_eq!(
        log.verify(&truncated, record),
        Err(TlogProofError::Inclusion(MerkleError::WrongProofLength {
            expected: 4,
            actual: 3,
        }))
    );

    let mut tampered_checkpoint = proof.clone();
    tampered_checkpoint.checkpoint = edit_line(&proof.checkpoint, 1, |_| "14".into());
    assert_eq!(
        log.verify(&tampered_checkpoint, record),
        Err(TlogProofError::Checkpoint(CheckpointError::Note(
            NoteError::BadSignature {
                name: ORIGIN.into(),
                key_id: log.signer.key_id(),
            }
        )))
    );

    assert_eq!(
        tlog_proof::verify(
            &proof,
            record,
            &[log.signer.verifier()],
            "other.example/log"
        ),
        Err(TlogProofError::Checkpoint(
            CheckpointError::OriginMismatch {
                expected: "other.example/log".into(),
                found: ORIGIN.into(),
            }
        ))
    );
    assert_eq!(
        tlog_proof::verify(&proof, record, &[signer(ORIGIN, 111).verifier()], ORIGIN),
        Err(TlogProofError::Checkpoint(CheckpointError::Note(
            NoteError::NoVerifiedSignature
        )))
    );

    // The extra data is not authenticated: changing it does not affect verification,
    // which is why clients must not trust it.
    let mut other_extra = proof.clone();
    other_extra.extra = Some(b"anything".to_vec());
    assert_eq!(log.verify(&other_extra, record), Ok(5));
}

#[test]
fn proofs_are_parsed_strictly() {
    let log = TestLog::new(13);
    let good = log.proof(5).to_text();
    assert!(TlogProof::parse(good.as_bytes()).is_ok(), "control");
    let hash_line = 3; // 0-based: header, extra, index, then hashes

    let cases: Vec<(String, TlogProofError)> = vec![
        (String::new(), TlogProofError::WrongHeader),
        (
            "c2sp.org/tlog-proof@v1\n".into(),
            TlogProofError::MissingIndex { line: 2 },
        ),
        (good.replacen("@v1", "@v2", 1), TlogProofError::WrongHeader),
        (
            edit_line(&good, 0, |l| format!("{l}\r")),
            TlogProofError::WrongHeader,
        ),
        (
            edit_line(&good, 1, |_| "extra Zg=".into()),
            TlogProofError::ExtraEncoding(base64::Base64Error::Length { len: 3 }),
        ),
        (
            edit_line(&good, 1, |_| "extra".into()),
            TlogProofError::MissingIndex { line: 2 },
        ),
        (
            edit_line(&good, 2, |_| "index: 5".into()),
            TlogProofError::MissingIndex { line: 3 },
        ),
        (
            edit_line(&good, 2, |_| "index 05".into()),
            TlogProofError::InvalidIndex { line: 3 },
        ),
        (
            edit_line(&good, 2, |_| "index -5".into()),
            TlogProofError::InvalidIndex { line: 3 },
        ),
        (
            edit_line(&good, 2, |_| "index 5\r".into()),
            TlogProofError::InvalidIndex { line: 3 },
        ),
        (
            edit_line(&good, hash_line, |_| base64::encode(&[0; 31])),
            TlogProofError::ProofHashLength {
                line: 4,
                actual: 31,
            },
        ),
        (
            edit_line(&good, hash_line, |l| l.replacen('=', "", 1)),
            TlogProofError::ProofHashEncoding {
                line: 4,
                error: base64::Base64Error::Length { len: 43 },
            },
        ),
        (
            good[..good.find("\n\n").expect("blank line") + 1].to_owned(),
            TlogProofError::MissingCheckpoint,
        ),
        (
            good[..good.find("\n\n").expect("blank line") + 2].to_owned(),
            TlogProofError::MissingCheckpoint,
        ),
        (
            {
                // The checkpoint lost its own blank line before the signature.
                let split = good.find("\n\n").expect("blank line") + 2;
                let (head, checkpoint) = good.split_at(split);
                format!("{head}{}", checkpoint.replacen("\n\n", "\n", 1))
            },
            TlogProofError::Checkpoint(CheckpointError::Note(NoteError::MissingSignatureBlock)),
        ),
        (
            {
                let split = good.find("\n\n").expect("blank line") + 2;
                let (head, checkpoint) = good.split_at(split);
                format!("{head}{}", checkpoint.replacen("\n13\n", "\n013\n", 1))
            },
            TlogProofError::Checkpoint(CheckpointError::InvalidTreeSize),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(TlogProof::parse(text.as_bytes()), Err(expected), "{text:?}");
    }

    let mut too_long = log.proof(5);
    too_long.inclusion_proof = vec![[0; 32]; 65];
    assert_eq!(
        TlogProof::parse(too_long.to_text().as_bytes()),
        Err(TlogProofError::TooManyProofHashes { max: 64 })
    );
    too_long.inclusion_proof.truncate(64);
    assert!(TlogProof::parse(too_long.to_text().as_bytes()).is_ok());

    let mut not_utf8 = good.into_bytes();
    not_utf8[3] = 0xc3;
    assert_eq!(
        TlogProof::parse(&not_utf8),
        Err(TlogProofError::NotUtf8 { offset: 3 })
    );
}
