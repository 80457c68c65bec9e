//! Exhaustive checks of the Merkle code against RFC 6962 section 2.1 itself.
//!
//! The definitions of MTH, PATH and SUBPROOF are transcribed below as the
//! naive recursions the RFC states, and the optimised, iterative code in
//! `merkle` must agree with them for every pair of tree sizes 1 ≤ m ≤ n ≤ 64
//! (every shape up to six levels, with both perfect and ragged right edges).
//! A set of published root hashes anchors the naive code, so that a bug the
//! two implementations share in the hashing itself cannot hide.

use amtsbuch_domain::merkle::{
    self, CompactRange, Hash, MemoryLeaves, MerkleError, ProofError, SubtreeSource,
};

const MAX_SIZE: usize = 64;

// ---------------------------------------------------------------------------
// RFC 6962 section 2.1, written as the RFC writes it.

/// The largest power of two smaller than `n` (n > 1).
fn k_for(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => merkle::empty_root(),
        1 => d[0],
        n => {
            let k = k_for(n);
            merkle::node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return Vec::new();
    }
    let k = k_for(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = k_for(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

// ---------------------------------------------------------------------------

fn leaves(count: usize) -> Vec<Hash> {
    (0..count as u64)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect()
}

fn flip_bit(hash: &Hash, bit: usize) -> Hash {
    let mut flipped = *hash;
    flipped[bit / 8 % 32] ^= 1 << (bit % 8);
    flipped
}

/// Wraps [`MemoryLeaves`] and records every request, so the tests can hold
/// the generator to its contract of asking only for perfect aligned subtrees.
struct Recording<'a> {
    inner: MemoryLeaves<'a>,
    requests: Vec<(u64, u64)>,
}

impl<'a> Recording<'a> {
    fn new(leaves: &'a [Hash]) -> Self {
        Self {
            inner: MemoryLeaves::new(leaves),
            requests: Vec::new(),
        }
    }

    fn assert_only_perfect_aligned_subtrees(&self, context: &str) {
        for &(start, end) in &self.requests {
            let len = end.saturating_sub(start);
            assert!(
                len.is_power_of_two() && start % len == 0,
                "{context}: asked for [{start}, {end}), which is not a perfect aligned subtree"
            );
        }
    }
}

impl SubtreeSource for Recording<'_> {
    type Error = MerkleError;

    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, MerkleError> {
        self.requests.push((start, end));
        self.inner.subtree_root(start, end)
    }
}

fn bit_length(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

#[test]
fn roots_match_published_rfc_6962_reference_trees() {
    // Leaf inputs and roots of the certificate-transparency reference tree
    // (also used by transparency-dev/merkle), for sizes 0 to 8.
    let inputs: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let hex = |h: &Hash| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let leaf_hashes: Vec<Hash> = inputs.iter().map(|i| merkle::leaf_hash(i)).collect();
    let mut range = CompactRange::new();
    for (size, expected) in roots.iter().enumerate() {
        if size > 0 {
            range.push(leaf_hashes[size - 1]);
        }
        let d = &leaf_hashes[..size];
        assert_eq!(hex(&mth(d)), *expected, "naive MTH, size {size}");
        assert_eq!(
            hex(&merkle::root_from_leaves(d)),
            *expected,
            "root_from_leaves, size {size}"
        );
        assert_eq!(hex(&range.root()), *expected, "CompactRange, size {size}");
    }
}

#[test]
fn compact_range_matches_naive_root_at_every_size() {
    let d = leaves(MAX_SIZE);
    let mut range = CompactRange::new();
    assert_eq!(range.size(), 0);
    assert_eq!(range.root(), merkle::empty_root());
    for n in 1..=MAX_SIZE {
        range.push(d[n - 1]);
        let expected = mth(&d[..n]);
        assert_eq!(range.size(), n as u64);
        assert_eq!(range.root(), expected, "CompactRange root, size {n}");
        assert_eq!(
            merkle::root_from_leaves(&d[..n]),
            expected,
            "root_from_leaves, size {n}"
        );
        assert_eq!(range.nodes().len(), n.count_ones() as usize);

        // Persisting and restoring the range continues the same tree.
        let restored = CompactRange::from_parts(range.size(), range.nodes().to_vec());
        assert_eq!(restored.as_ref(), Ok(&range));
        let (size, nodes) = range.clone().into_parts();
        assert_eq!(CompactRange::from_parts(size, nodes), Ok(range.clone()));
    }
}

#[test]
fn compact_range_rejects_stored_nodes_that_do_not_fit_the_size() {
    let d = leaves(MAX_SIZE);
    for (size, count) in [(0, 1), (1, 0), (3, 1), (3, 3), (8, 2), (u64::MAX, 63)] {
        assert_eq!(
            CompactRange::from_parts(size, d[..count].to_vec()),
            Err(MerkleError::CompactRangeShape {
                size,
                expected: size.count_ones() as usize,
                actual: count,
            })
        );
    }
}

#[test]
fn inclusion_proofs_match_rfc_path_and_verify_for_every_leaf() {
    let d = leaves(MAX_SIZE);
    let mut checked = 0;
    for n in 1..=MAX_SIZE {
        let tree = &d[..n];
        let root = mth(tree);
        for m in 0..n {
            let (index, size) = (m as u64, n as u64);
            let context = format!("leaf {m} of {n}");
            let mut source = Recording::new(tree);
            let proof = match merkle::inclusion_proof(index, size, &mut source) {
                Ok(proof) => proof,
                Err(e) => panic!("{context}: {e}"),
            };
            assert_eq!(proof, path(m, tree), "{context}: differs from PATH");
            source.assert_only_perfect_aligned_subtrees(&context);
            assert!(
                source.requests.len() <= proof.len() + bit_length(n),
                "{context}: {} subtree reads for a proof of {}",
                source.requests.len(),
                proof.len()
            );

            assert_eq!(
                merkle::verify_inclusion(index, size, &tree[m], &proof, &root),
                Ok(()),
                "{context}"
            );
            assert_eq!(
                merkle::root_from_inclusion_proof(index, size, &tree[m], &proof),
                Ok(root),
                "{context}"
            );

            // One flipped bit anywhere — in a proof hash, the leaf or the
            // root — must be caught.
            for i in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[i] = flip_bit(&tampered[i], i * 37 + m);
                assert_eq!(
                    merkle::verify_inclusion(index, size, &tree[m], &tampered, &root),
                    Err(MerkleError::RootMismatch),
                    "{context}: tampered proof[{i}] accepted"
                );
            }
            assert_eq!(
                merkle::verify_inclusion(index, size, &flip_bit(&tree[m], m), &proof, &root),
                Err(MerkleError::RootMismatch),
                "{context}: tampered leaf accepted"
            );
            assert_eq!(
                merkle::verify_inclusion(index, size, &tree[m], &proof, &flip_bit(&root, n)),
                Err(MerkleError::RootMismatch),
                "{context}: tampered root accepted"
            );

            // A proof for one leaf does not vouch for another leaf or
            // position.
            if n > 1 {
                let other = (m + 1) % n;
                assert!(
                    merkle::verify_inclusion(index, size, &tree[other], &proof, &root).is_err(),
                    "{context}: proof accepted for leaf {other}"
                );
                assert!(
                    merkle::verify_inclusion(other as u64, size, &tree[m], &proof, &root).is_err(),
                    "{context}: proof accepted at index {other}"
                );
            }

            // Lengthened or shortened proofs are rejected by shape.
            let mut longer = proof.clone();
            longer.push(root);
            assert_eq!(
                merkle::verify_inclusion(index, size, &tree[m], &longer, &root),
                Err(MerkleError::WrongProofLength {
                    expected: proof.len(),
                    actual: proof.len() + 1
                }),
                "{context}"
            );
            if let Some((_, shorter)) = proof.split_last() {
                assert_eq!(
                    merkle::verify_inclusion(index, size, &tree[m], shorter, &root),
                    Err(MerkleError::WrongProofLength {
                        expected: proof.len(),
                        actual: proof.len() - 1
                    }),
                    "{context}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, MAX_SIZE * (MAX_SIZE + 1) / 2);
}

#[test]
fn consistency_proofs_match_rfc_subproof_and_verify_for_every_pair() {
    let d = leaves(MAX_SIZE);
    let roots: Vec<Hash> = (0..=MAX_SIZE).map(|n| mth(&d[..n])).collect();
    let mut checked = 0;
    for n in 1..=MAX_SIZE {
        let tree = &d[..n];
        for m in 1..=n {
            let (size1, size2) = (m as u64, n as u64);
            let (root1, root2) = (roots[m], roots[n]);
            let context = format!("consistency {m} -> {n}");
            let mut source = Recording::new(tree);
            let proof = match merkle::consistency_proof(size1, size2, &mut source) {
                Ok(proof) => proof,
                Err(e) => panic!("{context}: {e}"),
            };
            assert_eq!(
                proof,
                subproof(m, tree, true),
                "{context}: differs from SUBPROOF"
            );
            source.assert_only_perfect_aligned_subtrees(&context);
            assert!(
                source.requests.len() <= proof.len() + bit_length(n),
                "{context}: {} subtree reads for a proof of {}",
                source.requests.len(),
                proof.len()
            );

            assert_eq!(
                merkle::verify_consistency(size1, size2, &root1, &root2, &proof),
                Ok(()),
                "{context}"
            );

            for i in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[i] = flip_bit(&tampered[i], i * 41 + m + n);
                assert!(
                    merkle::verify_consistency(size1, size2, &root1, &root2, &tampered).is_err(),
                    "{context}: tampered proof[{i}] accepted"
                );
            }
            assert!(
                merkle::verify_consistency(size1, size2, &flip_bit(&root1, m), &root2, &proof)
                    .is_err(),
                "{context}: tampered first root accepted"
            );
            assert!(
                merkle::verify_consistency(size1, size2, &root1, &flip_bit(&root2, n), &proof)
                    .is_err(),
                "{context}: tampered second root accepted"
            );

            if m < n {
                // The proof binds both sizes: it fails for a neighbouring
                // first size (with that tree's genuine root) …
                if m > 1 {
                    assert!(
                        merkle::verify_consistency(size1 - 1, size2, &roots[m - 1], &root2, &proof)
                            .is_err(),
                        "{context}: accepted for first size {}",
                        m - 1
                    );
                }
                // … and against a genuine root of another second size.
                if n < MAX_SIZE {
                    assert!(
                        merkle::verify_consistency(size1, size2 + 1, &root1, &roots[n + 1], &proof)
                            .is_err(),
                        "{context}: accepted for second size {}",
                        n + 1
                    );
                }
                assert_eq!(
                    merkle::verify_consistency(size1, size2, &root1, &root2, &[]),
                    Err(MerkleError::EmptyProof),
                    "{context}"
                );
                let mut longer = proof.clone();
                longer.push(root2);
                assert_eq!(
                    merkle::verify_consistency(size1, size2, &root1, &root2, &longer),
                    Err(MerkleError::WrongProofLength {
                        expected: proof.len(),
                        actual: proof.len() + 1
                    }),
                    "{context}"
                );
            } else {
                assert!(proof.is_empty(), "{context}: equal sizes need no proof");
                assert_eq!(
                    merkle::verify_consistency(size1, size2, &root1, &root2, &[root1]),
                    Err(MerkleError::ProofNotEmpty { actual: 1 }),
                    "{context}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, MAX_SIZE * (MAX_SIZE + 1) / 2);
}

#[test]
fn impossible_proofs_are_refused_with_specific_errors() {
    let d = leaves(8);
    let mut source = MemoryLeaves::new(&d);
    let root = mth(&d);

    assert_eq!(
        merkle::inclusion_proof(8, 8, &mut source),
        Err(ProofError::Invalid(MerkleError::IndexOutOfRange {
            index: 8,
            size: 8
        }))
    );
    assert_eq!(
        merkle::verify_inclusion(8, 8, &d[0], &[], &root),
        Err(MerkleError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        merkle::verify_inclusion(0, 0, &d[0], &[], &merkle::empty_root()),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        merkle::consistency_proof(5, 4, &mut source),
        Err(ProofError::Invalid(MerkleError::SizesReversed {
            size1: 5,
            size2: 4
        }))
    );
    assert_eq!(
        merkle::verify_consistency(5, 4, &root, &root, &[]),
        Err(MerkleError::SizesReversed { size1: 5, size2: 4 })
    );
    assert_eq!(
        merkle::consistency_proof(0, 4, &mut source),
        Err(ProofError::Invalid(MerkleError::EmptyFirstTree))
    );
    assert_eq!(
        merkle::verify_consistency(0, 0, &root, &root, &[]),
        Err(MerkleError::EmptyFirstTree)
    );
    assert_eq!(
        merkle::verify_consistency(3, 3, &mth(&d[..3]), &root, &[]),
        Err(MerkleError::RootMismatch)
    );
    // A proof whose first-tree part is wrong is told apart from one whose
    // second-tree part is wrong.
    let proof = match merkle::consistency_proof(3, 8, &mut source) {
        Ok(proof) => proof,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        merkle::verify_consistency(3, 8, &mth(&d[..2]), &root, &proof),
        Err(MerkleError::FirstRootMismatch)
    );
    assert_eq!(
        merkle::verify_consistency(3, 8, &mth(&d[..3]), &mth(&d[..7]), &proof),
        Err(MerkleError::RootMismatch)
    );
}

#[test]
fn source_failures_are_reported_with_the_range_asked_for() {
    // A source holding fewer leaves than the tree it is asked about.
    let d = leaves(5);
    let mut source = MemoryLeaves::new(&d);
    assert_eq!(
        merkle::inclusion_proof(0, 8, &mut source),
        Err(ProofError::Source {
            start: 4,
            end: 8,
            source: MerkleError::RangeOutOfBounds {
                start: 4,
                end: 8,
                size: 5
            },
        })
    );
}

#[test]
fn verification_at_extreme_sizes_fails_cleanly() {
    let h = merkle::leaf_hash(b"x");
    let extremes = [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) + 1];
    for size in extremes {
        for index in [0, 1, size / 2, size - 1] {
            assert!(merkle::verify_inclusion(index, size, &h, &[h], &h).is_err());
            assert!(merkle::verify_inclusion(index, size, &h, &[h; 64], &h).is_err());
        }
        for size1 in [1, 2, 3, size / 2, size - 1] {
            assert!(merkle::verify_consistency(size1, size, &h, &h, &[h]).is_err());
            assert!(merkle::verify_consistency(size1, size, &h, &h, &[h; 64]).is_err());
        }
    }
}
