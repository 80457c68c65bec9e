//! RFC 6962 / RFC 9162 Merkle tree maths: hashing, the incremental tree the
//! log keeps, proof generation and proof verification — and no I/O.
//!
//! Every event is a leaf of one append-only Merkle tree. The writer keeps a
//! [`CompactRange`] (the roots of the perfect subtrees along the tree's right
//! edge) so that appending costs O(log n) hashes and the root is never
//! recomputed from scratch. Proofs are generated against a
//! [`SubtreeSource`], which the store implements over whatever it keeps
//! (leaves, cached interior nodes), and verified with exactly the algorithms
//! of RFC 9162 sections 2.1.3.2 and 2.1.4.2, because an auditor's offline
//! verifier must accept precisely what any other RFC 9162 verifier accepts.
//! Hashing sits on the append and verify hot paths, so it never allocates.

use ring::digest;

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefixes (RFC 6962 section 2.1). They make a leaf hash
/// and an interior node hash over the same bytes differ, so nobody can pass
/// off an interior node as a leaf (a second-preimage attack on the tree).
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Why a proof, a tree size or a stored tree state was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index that is not inside the tree.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// The proof has more or fewer hashes than the tree shape requires.
    #[error("proof has {actual} hashes, the tree sizes require {expected}")]
    WrongProofLength { expected: usize, actual: usize },
    /// The proof is well-formed but leads to a different (newer) root.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    /// A consistency proof that does not reproduce the older tree's root.
    #[error("the consistency proof does not reproduce the first root")]
    FirstRootMismatch,
    /// A consistency proof was asked for a tree that shrank.
    #[error("first tree size {size1} is larger than second tree size {size2}")]
    SizesReversed { size1: u64, size2: u64 },
    /// Every tree extends the empty tree, so a proof from size 0 proves
    /// nothing; RFC 9162 defines consistency proofs only for 0 < first.
    #[error("a consistency proof from the empty tree is meaningless")]
    EmptyFirstTree,
    /// The sizes differ, so at least one hash is needed.
    #[error("the proof is empty but the tree sizes require one")]
    EmptyProof,
    /// Equal tree sizes: the only valid proof is the empty one.
    #[error("the tree sizes are equal, so the proof must be empty, but it has {actual} hashes")]
    ProofNotEmpty { actual: usize },
    /// Bytes that claim to be a SHA-256 hash but are not 32 bytes long.
    #[error("a hash must be 32 bytes, got {actual}")]
    WrongHashLength { actual: usize },
    /// A stored compact range whose node count does not fit its size.
    #[error("a compact range of size {size} has {expected} nodes, got {actual}")]
    CompactRangeShape {
        size: u64,
        expected: usize,
        actual: usize,
    },
    /// A subtree that lies outside the leaves a source holds.
    #[error("leaves [{start}, {end}) are not within the {size} leaves held")]
    RangeOutOfBounds { start: u64, end: u64, size: u64 },
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ bytes).
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(bytes);
    to_hash(&ctx.finish())
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous 65-byte block on the stack: a single digest call, no
    // allocation, which matters because every append and every proof step
    // goes through here.
    let mut block = [0u8; 65];
    block[0] = NODE_PREFIX;
    block[1..33].copy_from_slice(left);
    block[33..].copy_from_slice(right);
    to_hash(&digest::digest(&digest::SHA256, &block))
}

/// Root of the empty tree: SHA-256 of the empty string (RFC 6962 MTH({})).
pub fn empty_root() -> Hash {
    to_hash(&digest::digest(&digest::SHA256, &[]))
}

/// Reads a hash from bytes that came from outside (a proof in JSON, a
/// checkpoint, a database column), rejecting anything that is not exactly
/// 32 bytes long.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, MerkleError> {
    Hash::try_from(bytes).map_err(|_| MerkleError::WrongHashLength {
        actual: bytes.len(),
    })
}

fn to_hash(digest: &digest::Digest) -> Hash {
    // SHA-256 digests are always 32 bytes, so this copy cannot fail.
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// RFC 6962 Merkle tree hash MTH(D\[n\]) of the given leaf hashes.
///
/// Runs in O(n) hashes and O(log n) stack space without allocating: it folds
/// the leaves into perfect subtrees as [`CompactRange::push`] does.
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    // A slice holds fewer than 2^63 leaves, so the right edge has at most 63
    // perfect subtrees (one per set bit of the count).
    let mut stack = [[0u8; 32]; 64];
    let mut depth = 0;
    for (count, leaf) in (0u64..).zip(leaves) {
        let mut hash = *leaf;
        let mut merged = count;
        while merged & 1 == 1 {
            depth -= 1;
            hash = node_hash(&stack[depth], &hash);
            merged >>= 1;
        }
        stack[depth] = hash;
        depth += 1;
    }
    fold_right_edge(&stack[..depth])
}

/// Combines the right-edge perfect subtree roots (largest first) into the
/// tree root: for sizes that are not a power of two, MTH hashes the largest
/// perfect subtree with the root of everything to its right, recursively.
fn fold_right_edge(nodes: &[Hash]) -> Hash {
    match nodes.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    }
}

/// The state of an append-only Merkle tree of size n kept in O(log n) space:
/// the roots of the perfect subtrees that make up the tree, largest (leftmost)
/// first, one per set bit of n.
///
/// This is what the log persists next to its head so that it can keep
/// appending after a restart without reading a single old leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    nodes: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a range from its size and [`nodes`](Self::nodes), as read
    /// back from storage. The node count must match the size; the hashes
    /// themselves cannot be checked without the leaves, so a store should
    /// compare the resulting [`root`](Self::root) with its signed head.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Result<Self, MerkleError> {
        let expected = size.count_ones() as usize;
        if nodes.len() != expected {
            return Err(MerkleError::CompactRangeShape {
                size,
                expected,
                actual: nodes.len(),
            });
        }
        Ok(Self { size, nodes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Roots of the perfect subtrees covering the tree, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Gives up the parts for storage; the inverse of [`from_parts`](Self::from_parts).
    pub fn into_parts(self) -> (u64, Vec<Hash>) {
        (self.size, self.nodes)
    }

    /// Appends one leaf hash. Costs one node hash per trailing one-bit of
    /// the old size: amortised one hash per leaf, never more than 64.
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _, _| {});
    }

    /// Appends one leaf hash and reports every perfect subtree the leaf
    /// completes, smallest first, as `(level, index at that level, root)`;
    /// level 1 is a pair of leaves. These are the interior nodes a store
    /// keeps to serve proofs without reading every leaf.
    pub fn push_reporting(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut hash = leaf;
        let mut merged = self.size;
        // A log would need 2^64 appends to overflow this.
        let new_size = self.size + 1;
        let mut level = 0;
        // Each trailing one-bit of the old size is a perfect subtree of the
        // same height as `hash`, which now gets its right sibling.
        while merged & 1 == 1 {
            match self.nodes.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                // Unreachable while `nodes.len() == size.count_ones()`,
                // which `from_parts` and this method maintain.
                None => break,
            }
            merged >>= 1;
            level += 1;
            completed(level, (new_size >> level) - 1, &hash);
        }
        self.nodes.push(hash);
        self.size = new_size;
    }

    /// The RFC 6962 root of the tree, MTH(D\[size\]).
    pub fn root(&self) -> Hash {
        fold_right_edge(&self.nodes)
    }
}

/// Where proof generation reads subtree roots from: the store's leaves,
/// cached interior nodes, tiles.
///
/// The functions in this module only ever ask for perfect, aligned subtrees:
/// `end - start` is a power of two and `start` is a multiple of it. Such a
/// subtree is one interior node of the tree (level `log2(end - start)`,
/// index `start >> level`), so a store that caches nodes can answer with one
/// lookup; the module combines them into the roots of incomplete subtrees
/// itself.
pub trait SubtreeSource {
    type Error;

    /// The Merkle tree hash of the leaves `[start, end)`.
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The requested proof does not exist (index or sizes out of range).
    #[error(transparent)]
    Invalid(#[from] MerkleError),
    /// The source failed to provide a subtree root.
    #[error("reading the root of leaves [{start}, {end}) failed")]
    Source {
        start: u64,
        end: u64,
        #[source]
        source: E,
    },
}

/// A [`SubtreeSource`] over leaf hashes held in memory. Each subtree root is
/// recomputed from its leaves, so a proof costs O(n) hashes: fine for tests,
/// the offline verifier and small trees, not for a store serving proofs.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLeaves<'a> {
    leaves: &'a [Hash],
}

impl<'a> MemoryLeaves<'a> {
    pub fn new(leaves: &'a [Hash]) -> Self {
        Self { leaves }
    }
}

impl SubtreeSource for MemoryLeaves<'_> {
    type Error = MerkleError;

    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, MerkleError> {
        let range = match (usize::try_from(start), usize::try_from(end)) {
            (Ok(s), Ok(e)) if s <= e => self.leaves.get(s..e),
            _ => None,
        };
        range
            .map(root_from_leaves)
            .ok_or(MerkleError::RangeOutOfBounds {
                start,
                end,
                size: self.leaves.len() as u64,
            })
    }
}

/// Largest power of two strictly below `n`, for `n >= 2`: the split point k
/// of RFC 6962's MTH, PATH and SUBPROOF.
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Number of significant bits of `x`.
fn bit_length(x: u64) -> u32 {
    u64::BITS - x.leading_zeros()
}

/// Root of the leaves `[start, end)` from perfect aligned subtree roots.
///
/// Callers pass ranges that occur in an RFC 6962 tree: `start` is a multiple
/// of the largest power of two not above `end - start`. Such a range is a
/// sequence of perfect subtrees of decreasing size — one per set bit of its
/// length — and its root folds them from the right, as MTH does.
fn range_root<S: SubtreeSource + ?Sized>(
    source: &mut S,
    start: u64,
    end: u64,
) -> Result<Hash, ProofError<S::Error>> {
    let mut piece_end = end;
    let mut remaining = end - start;
    let mut acc: Option<Hash> = None;
    while remaining != 0 {
        let piece = 1 << remaining.trailing_zeros();
        let piece_start = piece_end - piece;
        let hash = source
            .subtree_root(piece_start, piece_end)
            .map_err(|source| ProofError::Source {
                start: piece_start,
                end: piece_end,
                source,
            })?;
        acc = Some(match acc {
            None => hash,
            Some(right) => node_hash(&hash, &right),
        });
        piece_end = piece_start;
        remaining -= piece;
    }
    Ok(acc.unwrap_or_else(empty_root))
}

/// Length of the inclusion proof for `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    // Below the level where the paths to `index` and to the last leaf part,
    // there is one sibling per level; above it, the path runs along the right
    // edge and only levels where `index` is a right child contribute.
    let inner = bit_length(index ^ (size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Length of the consistency proof for `0 < size1 < size2`.
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    // The proof is the inclusion path of the last leaf of the first tree,
    // from the level of the rightmost perfect subtree of the first tree
    // upwards, plus that subtree's root unless it is the whole first tree.
    let fork = bit_length((size1 - 1) ^ (size2 - 1));
    let border = (size1 - 1).checked_shr(fork).unwrap_or(0).count_ones();
    // `fork > trailing_zeros(size1)` whenever size1 < size2, so this never
    // saturates; saturating keeps external sizes from ever causing a panic.
    let inner = fork.saturating_sub(size1.trailing_zeros());
    let seed = u32::from(!size1.is_power_of_two());
    (seed + inner + border) as usize
}

/// RFC 9162 section 2.1.3.1 inclusion proof PATH(index, D\[size\]), deepest
/// sibling first.
pub fn inclusion_proof<S: SubtreeSource + ?Sized>(
    index: u64,
    size: u64,
    source: &mut S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    let mut proof = Vec::with_capacity(inclusion_proof_len(index, size));
    // Walk down from the root; the current subtree is [lo, hi) and the
    // sibling of the half holding `index` is the next proof element. PATH
    // lists them bottom-up, hence the reverse at the end.
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            proof.push(range_root(source, mid, hi)?);
            hi = mid;
        } else {
            proof.push(range_root(source, lo, mid)?);
            lo = mid;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 section 2.1.4.1 consistency proof PROOF(size1, D\[size2\]) =
/// SUBPROOF(size1, D\[size2\], true). Equal sizes give the empty proof.
pub fn consistency_proof<S: SubtreeSource + ?Sized>(
    size1: u64,
    size2: u64,
    source: &mut S,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if size1 > size2 {
        return Err(MerkleError::SizesReversed { size1, size2 }.into());
    }
    if size1 == 0 {
        return Err(MerkleError::EmptyFirstTree.into());
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    let mut proof = Vec::with_capacity(consistency_proof_len(size1, size2));
    // Same walk as for inclusion, towards the boundary `size1`. The flag is
    // SUBPROOF's `b`: whether the current subtree's part inside the first tree
    // is the whole first tree, whose root the verifier already holds.
    let (mut lo, mut hi) = (0, size2);
    let mut first_root_known = true;
    loop {
        if size1 - lo == hi - lo {
            if !first_root_known {
                proof.push(range_root(source, lo, hi)?);
            }
            break;
        }
        let mid = lo + split_point(hi - lo);
        if size1 <= mid {
            proof.push(range_root(source, mid, hi)?);
            hi = mid;
        } else {
            proof.push(range_root(source, lo, mid)?);
            lo = mid;
            first_root_known = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The root that an inclusion proof leads to, computed as RFC 9162 section
/// 2.1.3.2 prescribes. Useful where the root is compared elsewhere (for
/// example against several checkpoints).
pub fn root_from_inclusion_proof(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    if leaf_index >= tree_size {
        return Err(MerkleError::IndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    // RFC 9162 rejects wrong lengths through the `sn` checks below; checking
    // up front as well gives callers a precise error.
    let expected = inclusion_proof_len(leaf_index, tree_size);
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let wrong_length = MerkleError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    // The steps below are numbered as in RFC 9162 section 2.1.3.2.
    // 2. fn and sn.
    let mut f_n = leaf_index;
    let mut s_n = tree_size - 1;
    // 3.
    let mut r = *leaf_hash;
    // 4.
    for p in proof {
        // 4a.
        if s_n == 0 {
            return Err(wrong_length);
        }
        // 4b.
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        // 4c.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. (the root comparison is the caller's)
    if s_n != 0 {
        return Err(wrong_length);
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is the leaf at `leaf_index` of the tree of size
/// `tree_size` with root `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let computed = root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, proof)?;
    if computed == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// Verifies that the tree of size `size2` with root `root2` extends the tree
/// of size `size1` with root `root1` (RFC 9162 section 2.1.4.2).
///
/// RFC 9162 states the algorithm for 0 < size1 < size2. The edges follow the
/// transparency-dev reference implementation and its test vectors: equal
/// sizes need an empty proof and equal roots, and size1 = 0 is rejected
/// because it proves nothing.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if size1 > size2 {
        return Err(MerkleError::SizesReversed { size1, size2 });
    }
    if size1 == 0 {
        return Err(MerkleError::EmptyFirstTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(MerkleError::ProofNotEmpty {
                actual: proof.len(),
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    // The steps below are numbered as in RFC 9162 section 2.1.4.2.
    // 1.
    if proof.is_empty() {
        return Err(MerkleError::EmptyProof);
    }
    let expected = consistency_proof_len(size1, size2);
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let wrong_length = MerkleError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    // 2. Prepending is done lazily so that verification does not allocate.
    let prefix = size1.is_power_of_two().then_some(root1);
    let mut path = prefix.into_iter().chain(proof);
    // 3.
    let mut f_n = size1 - 1;
    let mut s_n = size2 - 1;
    // 4.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5.
    let Some(first) = path.next() else {
        return Err(MerkleError::EmptyProof);
    };
    let mut f_r = *first;
    let mut s_r = *first;
    // 6.
    for c in path {
        // 6a.
        if s_n == 0 {
            return Err(wrong_length);
        }
        // 6b.
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        // 6c.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7.
    if s_n != 0 {
        return Err(wrong_length);
    }
    if f_r != *root1 {
        return Err(MerkleError::FirstRootMismatch);
    }
    if s_r != *root2 {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod push_reporting_tests {
    use super::*;

    #[test]
    fn reports_exactly_the_completed_subtrees() {
        let leaves: Vec<Hash> = (0u8..37).map(|i| leaf_hash(&[i])).collect();
        let mut range = CompactRange::new();
        let mut reported = Vec::new();
        for leaf in &leaves {
            range.push_reporting(*leaf, |level, index, hash| {
                reported.push((level, index, *hash))
            });
        }
        // Every perfect aligned subtree inside 37 leaves, and nothing else.
        let mut expected = Vec::new();
        for level in 1..6u32 {
            let width = 1u64 << level;
            for index in 0..(37 / width) {
                let start = (index * width) as usize;
                expected.push((
                    level,
                    index,
                    root_from_leaves(&leaves[start..start + width as usize]),
                ));
            }
        }
        reported.sort_by_key(|(l, i, _)| (*l, *i));
        assert_eq!(reported, expected);
        assert_eq!(range.root(), root_from_leaves(&leaves));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(hash: &Hash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hashes_match_rfc_6962_reference_values() {
        // Reference values from the certificate-transparency test suite
        // (`echo -n | sha256sum`, `echo -n 00 | xxd -r -p | sha256sum`, …).
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex(&leaf_hash(b"L123456")),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
        // The root of leaves "" and 0x00 is node_hash of their leaf hashes.
        assert_eq!(
            hex(&node_hash(&leaf_hash(b""), &leaf_hash(&[0]))),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut concatenated = Vec::new();
        concatenated.extend_from_slice(&a);
        concatenated.extend_from_slice(&b);
        assert_ne!(leaf_hash(&concatenated), node_hash(&a, &b));
    }

    #[test]
    fn hash_from_slice_accepts_exactly_32_bytes() {
        assert_eq!(hash_from_slice(&[7; 32]), Ok([7; 32]));
        for len in [0, 9, 31, 33, 64] {
            assert_eq!(
                hash_from_slice(&vec![7; len]),
                Err(MerkleError::WrongHashLength { actual: len })
            );
        }
    }

    #[test]
    fn split_point_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (u64::MAX, 1 << 63),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn proof_lengths_at_the_extremes_do_not_overflow() {
        assert_eq!(inclusion_proof_len(0, (1 << 63) + 1), 64);
        assert_eq!(inclusion_proof_len(1 << 63, (1 << 63) + 1), 1);
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(consistency_proof_len(1 << 63, u64::MAX), 1);
        assert_eq!(consistency_proof_len(1, u64::MAX), 64);
    }

    #[test]
    fn memory_leaves_rejects_ranges_it_does_not_hold() {
        let leaves = [leaf_hash(b"a"), leaf_hash(b"b")];
        let mut source = MemoryLeaves::new(&leaves);
        assert_eq!(
            source.subtree_root(0, 2),
            Ok(node_hash(&leaves[0], &leaves[1]))
        );
        assert_eq!(source.subtree_root(1, 1), Ok(empty_root()));
        for (start, end) in [(0, 3), (2, 1), (u64::MAX - 1, u64::MAX)] {
            assert_eq!(
                source.subtree_root(start, end),
                Err(MerkleError::RangeOutOfBounds {
                    start,
                    end,
                    size: 2
                })
            );
        }
    }
}
