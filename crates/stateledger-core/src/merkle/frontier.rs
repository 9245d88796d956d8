//! The right frontier (compact range `[0, size)`) of the log: one hash per perfect subtree on
//! the right border, enough to append in O(log n) and compute the root without rehashing.

use crate::hash::{node_hash, Hash};
use crate::merkle::node_store::NodeId;
use crate::merkle::size::TreeSize;

/// The log's frontier: for each set bit of `size`, from the highest down, the root of the perfect
/// subtree that bit stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

/// Why a frontier could not be rebuilt from stored parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrontierError {
    #[error("frontier for size {size} needs {expected} hashes, got {found}")]
    WrongHashCount {
        size: u64,
        expected: usize,
        found: usize,
    },
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds a frontier from its parts (as stored), checking the count matches the size.
    pub fn from_parts(size: TreeSize, hashes: Vec<Hash>) -> Result<Frontier, FrontierError> {
        let expected = size.0.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError::WrongHashCount {
                size: size.0,
                expected,
                found: hashes.len(),
            });
        }
        Ok(Frontier {
            size: size.0,
            hashes,
        })
    }

    /// The perfect subtrees of `[0, size)`, left to right, as node ids.
    pub fn node_ids(size: TreeSize) -> Vec<NodeId> {
        let mut ids = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size.0 & (1u64 << level) != 0 {
                ids.push(NodeId::new(level, start >> level));
                start += 1u64 << level;
            }
        }
        ids
    }

    pub fn size(&self) -> TreeSize {
        TreeSize(self.size)
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash. `on_node` is called for the leaf (level 0) and then for every interior
    /// node the append completes, bottom up, so a store can persist them.
    pub fn append(&mut self, leaf_hash: Hash, mut on_node: impl FnMut(NodeId, Hash)) {
        let mut hash = leaf_hash;
        let mut index = self.size;
        let mut level = 0u8;
        on_node(NodeId::new(0, index), hash);
        let mut size_bits = self.size;
        while size_bits & 1 == 1 {
            // A set low bit means a perfect subtree of this level already sits to the left.
            let left = self
                .hashes
                .pop()
                .expect("frontier holds one hash per set bit of size");
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            size_bits >>= 1;
            on_node(NodeId::new(level, index), hash);
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    /// The Merkle tree hash of `[0, size)`: the frontier hashes folded from the right.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return Hash::empty_tree();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::reference;

    #[test]
    fn root_matches_reference_for_small_sizes() {
        let leaves: Vec<Vec<u8>> = (0..70u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), reference::root::<Vec<u8>>(&[]));
        for (i, leaf) in leaves.iter().enumerate() {
            f.append(leaf_hash(leaf), |_, _| {});
            assert_eq!(f.root(), reference::root(&leaves[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn from_parts_checks_count() {
        let mut f = Frontier::new();
        for i in 0..5u8 {
            f.append(leaf_hash(&[i]), |_, _| {});
        }
        let rebuilt = Frontier::from_parts(f.size(), f.hashes().to_vec()).expect("valid parts");
        assert_eq!(rebuilt, f);
        assert_eq!(
            Frontier::from_parts(TreeSize(5), vec![Hash::ZERO]),
            Err(FrontierError::WrongHashCount {
                size: 5,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            Frontier::node_ids(TreeSize(5)),
            vec![NodeId::new(2, 0), NodeId::new(0, 4)]
        );
    }

    #[test]
    fn append_reports_completed_nodes() {
        let mut f = Frontier::new();
        let mut seen = Vec::new();
        for i in 0..4u8 {
            f.append(leaf_hash(&[i]), |id, _| seen.push(id));
        }
        assert_eq!(
            seen,
            vec![
                NodeId::new(0, 0),
                NodeId::new(0, 1),
                NodeId::new(1, 0),
                NodeId::new(0, 2),
                NodeId::new(0, 3),
                NodeId::new(1, 1),
                NodeId::new(2, 0),
            ]
        );
    }
}
