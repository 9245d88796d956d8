//! Inclusion proofs (RFC 9162 §2.1.3): generation from a node store, and verification.

use crate::hash::Hash;
use crate::merkle::node_store::NodeStore;
use crate::merkle::range::{range_hash, split_point};
use crate::merkle::size::{LeafIndex, TreeSize};
use crate::merkle::{chain_border_right, chain_inner, decompose_inclusion, ProofError};

/// Generates PATH(index, D[0:size]) in RFC order (bottom up).
///
/// Preconditions: `index < size` (else [`ProofError::IndexOutOfRange`]) and the store holds every
/// node of the first `size` leaves.
pub fn inclusion_proof<S: NodeStore>(
    store: &S,
    index: LeafIndex,
    size: TreeSize,
) -> Result<Vec<Hash>, GenerateError<S::Error>> {
    if index.0 >= size.0 {
        return Err(GenerateError::Proof(ProofError::IndexOutOfRange {
            index: index.0,
            tree_size: size.0,
        }));
    }
    let mut top_down = Vec::with_capacity(64);
    let (mut start, mut n, mut m) = (0u64, size.0, index.0);
    while n > 1 {
        let k = split_point(n);
        if m < k {
            top_down.push(range_hash(store, start + k, start + n).map_err(GenerateError::Store)?);
            n = k;
        } else {
            top_down.push(range_hash(store, start, start + k).map_err(GenerateError::Store)?);
            start += k;
            m -= k;
            n -= k;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

/// Why a proof could not be generated: the request is impossible, or the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError<E> {
    #[error(transparent)]
    Proof(ProofError),
    #[error("node store: {0}")]
    Store(E),
}

/// Computes the root that `proof` leads to from `leaf_hash` at `index` in a tree of `size`.
///
/// Preconditions checked: `index < size`, and the proof has exactly the length RFC 9162 gives for
/// this index and size.
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: LeafIndex,
    size: TreeSize,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index.0 >= size.0 {
        return Err(ProofError::IndexOutOfRange {
            index: index.0,
            tree_size: size.0,
        });
    }
    let (inner, border) = decompose_inclusion(index.0, size.0);
    if proof.len() != inner + border {
        return Err(ProofError::WrongProofLength {
            expected: inner + border,
            found: proof.len(),
        });
    }
    let acc = chain_inner(*leaf_hash, &proof[..inner], index.0);
    Ok(chain_border_right(acc, &proof[inner..]))
}

/// Verifies that `leaf_hash` is the leaf at `index` of the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: LeafIndex,
    size: TreeSize,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)?;
    if calculated != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            calculated,
        });
    }
    Ok(())
}
