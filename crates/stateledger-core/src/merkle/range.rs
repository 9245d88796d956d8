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
    // The range splits into perfect chunks, one per set bit of its length, largest on the left.
    // Fold them from the right (smallest first) without collecting them.
    let len = end - start;
    let mut chunk_end = end;
    let mut acc: Option<Hash> = None;
    let mut bits = len;
    while bits != 0 {
        let level = bits.trailing_zeros() as u8;
        bits &= bits - 1;
        let chunk_start = chunk_end - (1u64 << level);
        let node = store.node(NodeId::new(level, chunk_start >> level))?;
        acc = Some(match acc {
            None => node,
            Some(right) => node_hash(&node, &right),
        });
        chunk_end = chunk_start;
    }
    debug_assert_eq!(chunk_end, start);
    // len >= 1, so the loop ran at least once.
    Ok(acc.unwrap_or(Hash::ZERO))
}
