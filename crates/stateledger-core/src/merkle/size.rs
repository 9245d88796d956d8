//! Positions and sizes in the Merkle log, kept apart by type: an index is never a size.

use std::fmt;

/// Zero-based position of a leaf in the log.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct LeafIndex(pub u64);

/// Number of leaves in a log (a tree size). Leaves `0..size` are in a tree of that size.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TreeSize(pub u64);

impl LeafIndex {
    /// The smallest tree that contains this leaf.
    pub fn next_size(self) -> TreeSize {
        TreeSize(self.0 + 1)
    }
}

impl TreeSize {
    /// Whether the leaf at `index` is inside a tree of this size.
    pub fn contains(self, index: LeafIndex) -> bool {
        index.0 < self.0
    }
}

impl fmt::Debug for LeafIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeafIndex({})", self.0)
    }
}
impl fmt::Display for LeafIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Debug for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeSize({})", self.0)
    }
}
impl fmt::Display for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
