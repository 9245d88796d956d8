//! Hash of an arbitrary leaf range `[start, end)` that the RFC 9162 recursion produces, computed
//! from the perfect subtrees of a [`NodeStore`] in O(log n) reads and hashes.

use crate::hash::{node_hash, Hash};
use crate::merkle::node_store::{NodeId, NodeStore};

/// Largest power of two strictly below `n` (the RFC's `k`). Precondition: `n >= 2`.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]). Precondition: `start < end`, and `start` is a multiple of the smallest
/// power of two `>= end - start` — which holds for every range the RFC recursion visits.
pub(crate) fn range_hash<S: NodeStore>(store: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    debug_assert!(start < end);
    // Perfect chunks left to right: the largest power of two that fits, repeatedly.
    let mut chunks: [Hash; 64] = [Hash::ZERO; 64];
    let mut count = 0;
    let mut pos = start;
    while pos < end {
        let len = end - pos;
        let level = 63 - len.leading_zeros() as u8;
        chunks[count] = store.node(NodeId::new(level, pos >> level))?;
        count += 1;
        pos += 1u64 << level;
    }
    let mut acc = chunks[count - 1];
    for left in chunks[..count - 1].iter().rev() {
        acc = node_hash(left, &acc);
    }
    Ok(acc)
}
