//! Where proof generation reads tree nodes from.

use std::convert::Infallible;

use crate::hash::{node_hash, Hash};

/// A perfect subtree of the log: `2^level` leaves starting at leaf `index * 2^level`.
/// Level 0 nodes are leaf hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub fn new(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }

    /// First leaf covered by this node.
    pub fn first_leaf(self) -> u64 {
        self.index << self.level
    }
}

/// Read access to the hashes of perfect subtrees of one append-only log.
///
/// Contract: `node(id)` is called only for nodes entirely inside the log
/// (`(id.index + 1) << id.level <= size`), and returns the hash the frontier produced for that
/// node when it was completed. Stores that can fail (disk, checksums) say so in `Error`.
pub trait NodeStore {
    type Error: std::error::Error + Send + Sync + 'static;

    fn node(&self, id: NodeId) -> Result<Hash, Self::Error>;
}

/// All perfect-subtree hashes of a log, in memory: `levels[l][i]` is node `(l, i)`.
/// About `2 * size` hashes. Used by tests, benchmarks, the simulation and small tools.
#[derive(Clone, Debug, Default)]
pub struct MemoryNodeStore {
    levels: Vec<Vec<Hash>>,
}

impl MemoryNodeStore {
    pub fn new() -> MemoryNodeStore {
        MemoryNodeStore::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash and stores every node it completes.
    pub fn append(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut level = 0usize;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let count = self.levels[level].len();
            if count % 2 == 1 {
                break;
            }
            hash = node_hash(
                &self.levels[level][count - 2],
                &self.levels[level][count - 1],
            );
            level += 1;
        }
    }
}

impl NodeStore for MemoryNodeStore {
    type Error = Infallible;

    fn node(&self, id: NodeId) -> Result<Hash, Infallible> {
        // The trait contract guarantees the node exists; an out-of-range request is a bug in the
        // caller, not bad input, so it is allowed to panic here.
        Ok(self.levels[id.level as usize][id.index as usize])
    }
}
