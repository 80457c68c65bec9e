//! The hash chain that links every leaf of the log to everything before it.
//!
//! `chain[n] = SHA-256("amtsbuch/chain/v1" || 0x00 || chain[n-1] || leaf[n])` with
//! `chain[0]` all zeros. The label separates these hashes from RFC 6962 leaf (0x00) and node
//! (0x01) hashes, so no chain value can be passed off as a Merkle node or the reverse. The
//! chain makes a single stored head hash commit to the entire order of the log; the Merkle
//! tree (see `merkle`) gives the logarithmic proofs on top.

use ring::digest::{Context, SHA256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The chain value before the first event.
pub const GENESIS_CHAIN: Hash = [0u8; 32];

const LABEL: &[u8] = b"amtsbuch/chain/v1\x00";

/// The chain hash of a leaf given the chain hash of its predecessor.
pub fn chain_hash(previous: &Hash, leaf: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(LABEL);
    ctx.update(previous);
    ctx.update(leaf);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Lowercase hex, for messages and the CLI.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_order_and_predecessor() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let ab = chain_hash(&chain_hash(&GENESIS_CHAIN, &a), &b);
        let ba = chain_hash(&chain_hash(&GENESIS_CHAIN, &b), &a);
        assert_ne!(ab, ba);
        assert_ne!(chain_hash(&GENESIS_CHAIN, &a), chain_hash(&[9u8; 32], &a));
    }

    #[test]
    fn known_value() {
        // Pinned so that a change of the chain definition (which would invalidate every
        // stored log) cannot slip in unnoticed.
        assert_eq!(
            to_hex(&chain_hash(&GENESIS_CHAIN, &GENESIS_CHAIN)),
            "cc01ec954bee9f299151615e7ee0c964dd5ff92938cd384a6817da4cb928f803"
        );
    }
}
