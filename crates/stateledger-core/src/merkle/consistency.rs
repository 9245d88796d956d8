//! Consistency proofs (RFC 9162 §2.1.4): generation from a node store, and verification.

use crate::hash::Hash;
use crate::merkle::inclusion::GenerateError;
use crate::merkle::node_store::NodeStore;
use crate::merkle::range::{range_hash, split_point};
use crate::merkle::size::TreeSize;
use crate::merkle::{
    chain_border_right, chain_inner, chain_inner_right, decompose_inclusion, ProofError,
};

/// Generates PROOF(old, D[0:new]) in RFC order. Empty when `old == 0` or `old == new`.
///
/// Preconditions: `old <= new` (else `ProofError::SizeOrder`) and the store holds every node of the
/// first `new` leaves.
pub fn consistency_proof<S: NodeStore>(
    store: &S,
    old: TreeSize,
    new: TreeSize,
) -> Result<Vec<Hash>, GenerateError<S::Error>> {
    if old.0 > new.0 {
        return Err(GenerateError::Proof(ProofError::SizeOrder {
            old: old.0,
            new: new.0,
        }));
    }
    if old.0 == 0 || old.0 == new.0 {
        return Ok(Vec::new());
    }
    let mut top_down = Vec::with_capacity(64);
    let (mut start, mut n, mut m, mut whole) = (0u64, new.0, old.0, true);
    loop {
        if m == n {
            if !whole {
                top_down.push(range_hash(store, start, start + n).map_err(GenerateError::Store)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            top_down.push(range_hash(store, start + k, start + n).map_err(GenerateError::Store)?);
            n = k;
        } else {
            top_down.push(range_hash(store, start, start + k).map_err(GenerateError::Store)?);
            start += k;
            m -= k;
            n -= k;
            whole = false;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

/// Verifies that the tree of size `old` with root `old_root` is a prefix of the tree of size
/// `new` with root `new_root`.
///
/// Preconditions checked: `old <= new`; equal sizes need an empty proof and equal roots; `old == 0`
/// needs an empty proof; otherwise the proof has exactly the RFC 9162 length.
pub fn verify_consistency(
    old: TreeSize,
    new: TreeSize,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old.0 > new.0 {
        return Err(ProofError::SizeOrder {
            old: old.0,
            new: new.0,
        });
    }
    if old.0 == new.0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                found: proof.len(),
            });
        }
        if old_root != new_root {
            return Err(ProofError::RootMismatch {
                expected: *new_root,
                calculated: *old_root,
            });
        }
        return Ok(());
    }
    if old.0 == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                found: proof.len(),
            });
        }
        if *old_root != Hash::empty_tree() {
            return Err(ProofError::OldRootMismatch {
                expected: *old_root,
                calculated: Hash::empty_tree(),
            });
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::WrongProofLength {
            expected: 1,
            found: 0,
        });
    }

    // The proof is the inclusion proof of leaf old-1 in the new tree, from the level where the
    // old tree's rightmost perfect subtree sits; that subtree's root is the first element unless
    // the old tree is itself perfect (then it is the old root).
    let (inner, border) = decompose_inclusion(old.0 - 1, new.0);
    let shift = old.0.trailing_zeros() as usize;
    let inner = inner - shift;
    let (seed, rest) = if old.0 == 1u64 << shift {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let expected = (proof.len() - rest.len()) + inner + border;
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            found: proof.len(),
        });
    }
    let mask = (old.0 - 1) >> shift;
    let old_calculated = chain_border_right(
        chain_inner_right(seed, &rest[..inner], mask),
        &rest[inner..],
    );
    if old_calculated != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            calculated: old_calculated,
        });
    }
    let new_calculated =
        chain_border_right(chain_inner(seed, &rest[..inner], mask), &rest[inner..]);
    if new_calculated != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
            calculated: new_calculated,
        });
    }
    Ok(())
}
