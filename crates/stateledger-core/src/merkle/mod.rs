//! The Merkle log: RFC 9162 §2.1 tree shape and proofs with BLAKE3 (docs/PROOFS.md §3).
//!
//! Append goes through the [`Frontier`] (O(log n)); proofs are generated from any [`NodeStore`]
//! holding the perfect subtrees, and verified by pure functions with their preconditions checked.

pub mod consistency;
pub mod frontier;
pub mod inclusion;
pub mod node_store;
mod range;
#[doc(hidden)]
pub mod reference;
pub mod size;

pub use consistency::{consistency_proof, verify_consistency};
pub use frontier::{Frontier, FrontierError};
pub use inclusion::{inclusion_proof, root_from_inclusion_proof, verify_inclusion, GenerateError};
pub use node_store::{MemoryNodeStore, NodeId, NodeStore};
pub use size::{LeafIndex, TreeSize};

use crate::hash::{node_hash, Hash};

/// The root of the first `size` leaves of a log, from its stored perfect subtrees in O(log n).
pub fn root_from_store<S: NodeStore>(store: &S, size: TreeSize) -> Result<Hash, S::Error> {
    if size.0 == 0 {
        return Ok(Hash::empty_tree());
    }
    range::range_hash(store, 0, size.0)
}

/// Most hashes any proof may hold: a tree of at most 2^64 leaves has proofs of at most 64 + 1.
pub const PROOF_HASHES_MAX: usize = 65;

/// Why a proof does not verify (or cannot be generated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    // Shared by inclusion and consistency proofs (the caller says which), so it names no index.
    #[error("proof has {found} hashes, expected {expected}")]
    WrongProofLength { expected: usize, found: usize },
    #[error("calculated root {calculated} does not match expected root {expected}")]
    RootMismatch { expected: Hash, calculated: Hash },
    #[error("calculated old root {calculated} does not match expected old root {expected}")]
    OldRootMismatch { expected: Hash, calculated: Hash },
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizeOrder { old: u64, new: u64 },
}

/// Splits the inclusion proof of `index` in a tree of `size` into its inner part (below the
/// point where the leaf's path meets the right border) and border part.
/// Precondition: `index < size`.
pub(crate) fn decompose_inclusion(index: u64, size: u64) -> (usize, usize) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros() as usize;
    // In a tree of more than 2^63 leaves a path can have 64 inner levels, and `index >> 64`
    // overflows (a panic in debug builds, a wrong length in release): no bits are left then.
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    (inner, border)
}

/// Folds inner proof hashes: at level i, the sibling is on the right if bit i of `index` is 0.
pub(crate) fn chain_inner(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if (index >> i) & 1 == 0 {
            node_hash(&acc, h)
        } else {
            node_hash(h, &acc)
        }
    })
}

/// Like [`chain_inner`] but keeps only left siblings: the old root of a consistency proof.
pub(crate) fn chain_inner_right(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (i, h)| {
        if (index >> i) & 1 == 1 {
            node_hash(h, &acc)
        } else {
            acc
        }
    })
}

/// Folds border hashes, all of which are left siblings.
pub(crate) fn chain_border_right(seed: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(seed, |acc, h| node_hash(h, &acc))
}

#[cfg(test)]
mod tests;
