//! Published test vectors run against the canonical JSON and Merkle code.
//!
//! The vectors live beside this file, in `tests/vectors/` (see its README for
//! their sources and licences): RFC 8785 (JCS) input/output pairs and the
//! transparency-dev Merkle inclusion and consistency probes. They are what other
//! implementations are tested against, so passing them is how we know an
//! auditor's third-party tooling will agree with ours. A missing or empty
//! vector directory fails the tests: a suite that silently checks nothing
//! would be worse than none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use amtsbuch_domain::{ijson, jcs, merkle};
use serde::Deserialize;
use serde_json::Value;

fn vectors_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// All `.json` files below `dir`, recursively, in a stable order.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("test vectors missing: cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// RFC 8785 JSON Canonicalization Scheme

#[test]
fn jcs_vectors_canonicalize_byte_for_byte() {
    let dir = vectors_root().join("jcs");
    let inputs = json_files(&dir.join("input"));
    assert!(
        !inputs.is_empty(),
        "no JCS vectors found in {}",
        dir.join("input").display()
    );

    let mut failures = String::new();
    for input in &inputs {
        let name = input
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("unexpected vector name {}", input.display()));
        let stem = name.trim_end_matches(".json");
        let expected = read(&dir.join("output").join(name));
        // `outhex` spells the same bytes in hex; comparing guards against an
        // output file that an editor "fixed" with a trailing newline.
        let hex = String::from_utf8(read(&dir.join("outhex").join(format!("{stem}.txt"))))
            .unwrap_or_else(|e| panic!("outhex/{stem}.txt is not text: {e}"));
        assert_eq!(
            expected,
            hex_decode(&hex),
            "output/{name} and outhex/{stem}.txt disagree"
        );

        let value: Value = serde_json::from_slice(&read(input))
            .unwrap_or_else(|e| panic!("input/{name} is not JSON: {e}"));
        match jcs::canonicalize(&value) {
            Ok(got) if got == expected => {}
            Ok(got) => {
                let _ = writeln!(
                    failures,
                    "{name}:\n  got      {}\n  expected {}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected)
                );
            }
            Err(e) => {
                let _ = writeln!(failures, "{name}: {e}");
            }
        }
    }
    assert!(failures.is_empty(), "JCS vectors failed:\n{failures}");
    println!("JCS: {} vectors canonicalized exactly", inputs.len());
}

/// The strict I-JSON check (`ijson`) accepts every JCS input but one number: RFC 8785's
/// own example `333333333.33333329` is canonicalized to `333333333.3333333`, another decimal,
/// and an append refuses to make that change silently. Every canonical output is accepted,
/// since canonical JSON round-trips by construction.
#[test]
fn jcs_vectors_are_i_json_except_a_number_jcs_rounds() {
    let dir = vectors_root().join("jcs");
    let inputs = json_files(&dir.join("input"));
    assert!(!inputs.is_empty(), "no JCS vectors found");
    let mut refused = Vec::new();
    for input in &inputs {
        let name = input
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Err(v) = ijson::check(&read(input)) {
            refused.push(format!("{name} {}", v.pointer));
        }
        let output = dir.join("output").join(name);
        assert_eq!(ijson::check(&read(&output)), Ok(()), "output/{name}");
    }
    assert_eq!(refused, ["values.json /numbers/0"]);
}

/// JCS output is only as exact as the parsed doubles. `serde_json` by default
/// parses some long decimals one ULP off (its fast path rounds twice); the
/// `float_roundtrip` feature makes it correctly rounded, as ECMAScript is.
#[test]
fn serde_json_parses_decimal_literals_exactly() {
    let literals = [
        "333333333.33333329",
        "1E30",
        "4.50",
        "2e-3",
        "0.000000000000000000000000001",
        "9007199254740993.0",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "5e-324",
        "0.1",
        "123456789012345678901234567890.123456789",
    ];
    for literal in literals {
        let exact: f64 = literal.parse().unwrap_or_else(|e| panic!("{literal}: {e}"));
        let parsed: f64 = serde_json::from_str(literal)
            .unwrap_or_else(|e| panic!("serde_json rejects {literal}: {e}"));
        assert_eq!(
            parsed.to_bits(),
            exact.to_bits(),
            "serde_json parses {literal} as {parsed:e}, the nearest double is {exact:e}; \
             enable serde_json's `float_roundtrip` feature"
        );
    }
}

fn hex_decode(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => panic!("not a hex digit: {:?}", char::from(b)),
        })
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair[1])
        .collect()
}

// ---------------------------------------------------------------------------
// RFC 6962 / RFC 9162 Merkle proofs (transparency-dev vectors)

/// Standard base64 (RFC 4648 section 4) with padding, strict: the vectors are
/// produced by Go's `encoding/json`, which writes exactly this form.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "base64 length {} is not a multiple of 4",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (i, quad) in bytes.chunks(4).enumerate() {
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && i + 1 != quads) {
            return Err(format!("misplaced padding in {text:?}"));
        }
        let mut bits: u32 = 0;
        for &c in &quad[..4 - padding] {
            let value = sextet(c).ok_or_else(|| format!("invalid base64 {text:?}"))?;
            bits = bits << 6 | u32::from(value);
        }
        bits <<= 6 * padding;
        let [_, a, b, c] = bits.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..3 - padding]);
    }
    Ok(out)
}

#[test]
fn base64_decoder_round_trips_known_values() {
    assert_eq!(base64_decode(""), Ok(vec![]));
    assert_eq!(base64_decode("Zg=="), Ok(b"f".to_vec()));
    assert_eq!(base64_decode("Zm8="), Ok(b"fo".to_vec()));
    assert_eq!(base64_decode("Zm9v"), Ok(b"foo".to_vec()));
    assert_eq!(base64_decode("Zm9vYmFy"), Ok(b"foobar".to_vec()));
    assert_eq!(
        base64_decode("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
        Ok(merkle::empty_root().to_vec())
    );
    for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9*", "Zm9v\n"] {
        assert!(base64_decode(bad).is_err(), "{bad:?} accepted");
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionProbe {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsistencyProbe {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

/// How a vector's hash fields are turned into [`merkle::Hash`]es.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HashParsing {
    /// As production code does: anything not 32 bytes is rejected.
    Strict,
    /// For vectors with placeholder or truncated hashes (the Go API takes
    /// byte slices, ours takes `[u8; 32]`): each value that is not 32 bytes
    /// becomes a 32-byte digest of itself, which keeps equal ones equal and
    /// different ones different, so the verifier's own rules decide the case.
    Placeholders,
}

fn hash(field: &str, parsing: HashParsing) -> Result<merkle::Hash, merkle::MerkleError> {
    let bytes = base64_decode(field).unwrap_or_else(|e| panic!("broken vector: {e}"));
    match merkle::hash_from_slice(&bytes) {
        Err(_) if parsing == HashParsing::Placeholders => {
            // The prefix keeps a placeholder from coinciding with a genuine
            // hash in the same vector: the empty string would otherwise
            // become SHA-256(""), the empty tree's root.
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(b"placeholder:");
            ctx.update(&bytes);
            merkle::hash_from_slice(ctx.finish().as_ref())
        }
        result => result,
    }
}

fn hashes(
    fields: Option<&[String]>,
    parsing: HashParsing,
) -> Result<Vec<merkle::Hash>, merkle::MerkleError> {
    fields
        .unwrap_or_default()
        .iter()
        .map(|field| hash(field, parsing))
        .collect()
}

fn verify_inclusion_probe(
    p: &InclusionProbe,
    parsing: HashParsing,
) -> Result<(), merkle::MerkleError> {
    let root = hash(&p.root, parsing)?;
    let leaf = hash(&p.leaf_hash, parsing)?;
    let proof = hashes(p.proof.as_deref(), parsing)?;
    merkle::verify_inclusion(p.leaf_idx, p.tree_size, &leaf, &proof, &root)?;
    // The root-returning variant must agree with the verifier.
    let computed = merkle::root_from_inclusion_proof(p.leaf_idx, p.tree_size, &leaf, &proof)?;
    assert_eq!(
        computed, root,
        "{}: root_from_inclusion_proof disagrees",
        p.desc
    );
    Ok(())
}

fn verify_consistency_probe(
    p: &ConsistencyProbe,
    parsing: HashParsing,
) -> Result<(), merkle::MerkleError> {
    let root1 = hash(&p.root1, parsing)?;
    let root2 = hash(&p.root2, parsing)?;
    let proof = hashes(p.proof.as_deref(), parsing)?;
    merkle::verify_consistency(p.size1, p.size2, &root1, &root2, &proof)
}

/// Outcome counts for one vector directory.
#[derive(Default)]
struct Tally {
    verified: usize,
    verified_with_placeholders: usize,
    rejected_by_verifier: usize,
    rejected_by_verifier_with_placeholders: usize,
    rejected_only_as_malformed_hash: usize,
}

impl Tally {
    fn total(&self) -> usize {
        self.verified
            + self.verified_with_placeholders
            + self.rejected_by_verifier
            + self.rejected_by_verifier_with_placeholders
            + self.rejected_only_as_malformed_hash
    }
}

/// Runs every probe under `kind/` and checks each against its `wantErr`.
/// `verify` is called with strict hash parsing first; a probe that strict
/// parsing rejects is run once more with placeholders, where it must verify
/// if it expects success.
fn run_merkle_vectors<P: for<'de> Deserialize<'de>>(
    kind: &str,
    verify: impl Fn(&P, HashParsing) -> Result<(), merkle::MerkleError>,
    describe: impl Fn(&P) -> (&str, bool),
) {
    let dir = vectors_root().join("merkle").join(kind);
    let files = json_files(&dir);
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut failures = String::new();

    for file in &files {
        let probe: P = serde_json::from_slice(&read(file))
            .unwrap_or_else(|e| panic!("{} is not a {kind} probe: {e}", file.display()));
        let (desc, want_err) = describe(&probe);
        let group = file
            .parent()
            .and_then(|p| p.strip_prefix(&dir).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let tally = tallies.entry(group).or_default();
        let name = file.strip_prefix(&dir).unwrap_or(file).display();

        match (verify(&probe, HashParsing::Strict), want_err) {
            (Ok(()), false) => tally.verified += 1,
            (Err(merkle::MerkleError::WrongHashLength { .. }), true) => {
                // Rejected as production would reject it. Where possible,
                // also make the verifier itself see the case, so that its
                // edge rules (size 0, equal sizes) are exercised too.
                match verify(&probe, HashParsing::Placeholders) {
                    Err(_) => tally.rejected_by_verifier_with_placeholders += 1,
                    Ok(()) => {
                        tally.rejected_only_as_malformed_hash += 1;
                        println!("{kind}/{name} ({desc}): rejected only for its malformed hash");
                    }
                }
            }
            (Err(_), true) => tally.rejected_by_verifier += 1,
            (Ok(()), true) => {
                let _ = writeln!(failures, "{name} ({desc}): verified but must fail");
            }
            (Err(merkle::MerkleError::WrongHashLength { .. }), false) => {
                match verify(&probe, HashParsing::Placeholders) {
                    Ok(()) => tally.verified_with_placeholders += 1,
                    Err(e) => {
                        let _ = writeln!(failures, "{name} ({desc}): must verify, got {e}");
                    }
                }
            }
            (Err(e), false) => {
                let _ = writeln!(failures, "{name} ({desc}): must verify, got {e}");
            }
        }
    }

    assert!(failures.is_empty(), "{kind} vectors failed:\n{failures}");
    assert!(
        !tallies.is_empty(),
        "no {kind} vectors found in {}",
        dir.display()
    );
    for (group, tally) in &tallies {
        assert!(tally.total() > 0, "{kind}/{group} has no vectors");
        println!(
            "{kind}/{group}: {} vectors — verified {} (+{} with placeholder hashes), \
             rejected by the verifier {} (+{} with placeholder hashes), \
             rejected only as malformed hashes {}",
            tally.total(),
            tally.verified,
            tally.verified_with_placeholders,
            tally.rejected_by_verifier,
            tally.rejected_by_verifier_with_placeholders,
            tally.rejected_only_as_malformed_hash,
        );
    }
    let verified: usize = tallies
        .values()
        .map(|t| t.verified + t.verified_with_placeholders)
        .sum();
    let rejected_by_verifier: usize = tallies
        .values()
        .map(|t| t.rejected_by_verifier + t.rejected_by_verifier_with_placeholders)
        .sum();
    // Both directions must actually be exercised by the verifier itself, not
    // only by hash parsing.
    assert!(verified > 0, "no {kind} vector expected success");
    assert!(
        rejected_by_verifier > 0,
        "no {kind} vector reached the verifier and failed"
    );
    println!("{kind}: {} vectors in total", files.len());
}

#[test]
fn merkle_inclusion_vectors() {
    run_merkle_vectors::<InclusionProbe>("inclusion", verify_inclusion_probe, |p| {
        (&p.desc, p.want_err)
    });
}

#[test]
fn merkle_consistency_vectors() {
    run_merkle_vectors::<ConsistencyProbe>("consistency", verify_consistency_probe, |p| {
        (&p.desc, p.want_err)
    });
}
