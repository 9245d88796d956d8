//! Leaf blocks: the one length-prefixed leaf codec, and how the ledger stores its leaves.
//!
//! The codec (each leaf as its length, u32 big-endian, then its bytes) is used for stored blocks
//! and for the leaves of a snapshot chunk (`raft::network` writes them, `grpc::cluster_service`
//! reads them); the bytes of a chunk come from another node, so splitting them never panics and
//! allocates nothing beyond the list of slices.
//!
//! Storage: full blocks of [`BLOCK_LEAVES`] consecutive leaves per value (`keys::block`), and the
//! leaves of the last, open block one per value (`keys::open_leaf`), so that an apply never
//! rewrites a partial block (which, with large records, left sled a new copy of up to 64 leaves
//! per apply: a 24 MiB disk held 33 records of 30 KB).

use super::keys;
use crate::store::{Batch, Store, StoreError, Tree};

/// Leaves per stored block.
pub const BLOCK_LEAVES: u64 = 64;

/// Why bytes are not a sequence of length-prefixed leaves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeafCodecError {
    #[error("truncated leaf length after {leaves} leaves")]
    TruncatedLength { leaves: usize },
    #[error("truncated leaf after {leaves} leaves: {announced} bytes announced, {left} left")]
    TruncatedLeaf {
        leaves: usize,
        announced: usize,
        left: usize,
    },
}

/// Appends one leaf in the codec's format.
pub fn push_leaf(out: &mut Vec<u8>, leaf: &[u8]) {
    // Leaves are bounded far below 4 GiB (`stateledger_core::limits`); a longer one would be
    // written with a wrong length and corrupt everything after it.
    let len = u32::try_from(leaf.len()).expect("a leaf is shorter than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(leaf);
}

/// Encodes leaves in the codec's format.
pub fn encode_leaves(leaves: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leaves.iter().map(|l| l.len() + 4).sum());
    for leaf in leaves {
        push_leaf(&mut out, leaf);
    }
    out
}

/// Splits bytes written by [`push_leaf`] into the leaves. A truncated length or leaf is an error.
pub fn split_leaves(bytes: &[u8]) -> Result<Vec<&[u8]>, LeafCodecError> {
    let mut leaves = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(LeafCodecError::TruncatedLength {
                leaves: leaves.len(),
            });
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((leaf, tail)) = tail.split_at_checked(len) else {
            return Err(LeafCodecError::TruncatedLeaf {
                leaves: leaves.len(),
                announced: len,
                left: tail.len(),
            });
        };
        leaves.push(leaf);
        rest = tail;
    }
    Ok(leaves)
}

/// Decodes stored block `block`: at most [`BLOCK_LEAVES`] leaves.
fn decode_block(block: u64, bytes: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let corrupt = |reason: String| StoreError::corrupt(Tree::Ledger, &keys::block(block), reason);
    let leaves = split_leaves(bytes)
        .map_err(|e| corrupt(format!("block is not a sequence of leaves: {e}")))?;
    if leaves.len() as u64 > BLOCK_LEAVES {
        return Err(corrupt(format!(
            "block holds {} leaves, more than {BLOCK_LEAVES}",
            leaves.len()
        )));
    }
    Ok(leaves.into_iter().map(<[u8]>::to_vec).collect())
}

/// Reads and decodes stored block `block` (which must exist).
pub(crate) fn read_block(store: &Store, block: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let key = keys::block(block);
    let bytes = store
        .get(Tree::Ledger, &key)?
        .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &key, "block missing"))?;
    decode_block(block, &bytes)
}

/// Reads the stored blocks `first..end` in order, at most `limit` per call (blocks beyond the
/// ledger's size, left by an interrupted snapshot install, are simply not asked for).
pub(crate) fn read_blocks(
    store: &Store,
    first: u64,
    end: u64,
    limit: usize,
) -> Result<Vec<Block>, StoreError> {
    let rows = store.scan(Tree::Ledger, &keys::block(first), &keys::block(end), limit)?;
    let mut out = Vec::with_capacity(rows.len());
    for (n, (key, bytes)) in rows.into_iter().enumerate() {
        let expected = first + n as u64;
        if keys::u64_be(&key[1..]) != Some(expected) {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                &keys::block(expected),
                "block missing",
            ));
        }
        out.push((expected, decode_block(expected, &bytes)?));
    }
    Ok(out)
}

/// Where leaf `index` is, as the state machine sees it (also in the middle of an apply).
pub(crate) enum Located<'a> {
    /// In memory: the open block, or a block an apply filled and has not written yet.
    Memory(&'a [u8]),
    /// The open block (or a sealed one) does not hold it although it should.
    Missing,
    /// In stored block `block`, at `at`.
    Stored { block: u64, at: usize },
}

/// A block's number and its leaves.
pub(crate) type Block = (u64, Vec<Vec<u8>>);

/// The blocks filled by an apply in progress and not written yet (their stored versions, if
/// any, lack their last leaves).
pub(crate) type Sealed = [Block];

/// The last, not yet full block: its leaves in memory, and how many of them are stored on their
/// own (under [`keys::open_leaf`]).
#[derive(Debug, Default)]
pub(crate) struct OpenBlock {
    leaves: Vec<Vec<u8>>,
    stored: usize,
}

impl OpenBlock {
    /// The open block as loaded at start: all its leaves are stored.
    pub(crate) fn loaded(leaves: Vec<Vec<u8>>) -> OpenBlock {
        let stored = leaves.len();
        OpenBlock { leaves, stored }
    }

    /// The one lookup of a leaf (`index < size`, the ledger's size).
    pub(crate) fn locate<'a>(&'a self, size: u64, sealed: &'a Sealed, index: u64) -> Located<'a> {
        let block = index / BLOCK_LEAVES;
        let at = (index % BLOCK_LEAVES) as usize;
        let held = if block == size / BLOCK_LEAVES {
            Some(self.leaves.as_slice())
        } else {
            sealed
                .iter()
                .find(|(b, _)| *b == block)
                .map(|(_, l)| l.as_slice())
        };
        match held {
            Some(leaves) => leaves
                .get(at)
                .map_or(Located::Missing, |l| Located::Memory(l)),
            None => Located::Stored { block, at },
        }
    }

    /// Adds leaf `index`'s bytes, closing the block into `writes` when it is full.
    pub(crate) fn push(&mut self, writes: &mut BlockWrites, index: u64, bytes: Vec<u8>) {
        // A leaf in the wrong slot would be stored under another leaf's index.
        assert_eq!(
            index % BLOCK_LEAVES,
            self.leaves.len() as u64,
            "leaf {index} does not continue the open block"
        );
        self.leaves.push(bytes);
        if self.leaves.len() as u64 == BLOCK_LEAVES {
            writes
                .full
                .push((index / BLOCK_LEAVES, std::mem::take(&mut self.leaves)));
            writes.stored_singly.push(std::mem::take(&mut self.stored));
        }
    }

    /// Puts what an apply changed into its batch (`size`: the ledger's size after it): each
    /// block it filled, and each new leaf of the open block on its own. The single leaves a
    /// filled block replaces go in [`BlockWrites::remove_obsolete`], after the metadata.
    pub(crate) fn write(&mut self, size: u64, batch: &mut Batch, writes: &mut BlockWrites) {
        for ((block, leaves), stored) in writes.full.drain(..).zip(writes.stored_singly.drain(..)) {
            batch.put(keys::block(block), &encode_leaves(&leaves));
            for j in 0..stored as u64 {
                writes
                    .obsolete
                    .push(keys::open_leaf(block * BLOCK_LEAVES + j));
            }
        }
        let first = size - self.leaves.len() as u64;
        for (j, leaf) in self.leaves.iter().enumerate().skip(self.stored) {
            batch.put(keys::open_leaf(first + j as u64), leaf);
        }
        self.stored = self.leaves.len();
    }
}

/// What an apply changed in the blocks and has not put in its batch yet.
#[derive(Default)]
pub(crate) struct BlockWrites {
    /// Blocks filled during this apply.
    full: Vec<Block>,
    /// For each of them, how many of its leaves had been stored on their own.
    stored_singly: Vec<usize>,
    /// Single leaves the filled blocks replace: removed only after the metadata is written,
    /// because until then the stored state (the one before this apply) still reads them.
    obsolete: Vec<Vec<u8>>,
}

impl BlockWrites {
    /// The blocks filled and not written yet.
    pub(crate) fn sealed(&self) -> &Sealed {
        &self.full
    }

    /// Removes the single leaves that filled blocks replaced (after the metadata: a crash that
    /// keeps some of them leaves only keys that the start ignores).
    pub(crate) fn remove_obsolete(&mut self, batch: &mut Batch) {
        for key in self.obsolete.drain(..) {
            batch.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_round_trip_and_truncations_are_errors() {
        let leaves = vec![b"a".to_vec(), Vec::new(), b"leaf three".to_vec()];
        let bytes = encode_leaves(&leaves);
        assert_eq!(
            split_leaves(&bytes),
            Ok(vec![&b"a"[..], b"", b"leaf three"])
        );
        for cut in 1..bytes.len() {
            let r = split_leaves(&bytes[..cut]);
            // Cuts right after the first and the second leaf are shorter, valid sequences.
            assert!(
                r.is_err() || cut == 5 || cut == 9,
                "bytes cut at {cut} are refused: {r:?}"
            );
        }
        assert_eq!(
            split_leaves(&[0xff, 0xff, 0xff, 0xff, 1]),
            Err(LeafCodecError::TruncatedLeaf {
                leaves: 0,
                announced: u32::MAX as usize,
                left: 1
            })
        );
        assert_eq!(
            split_leaves(&[0, 0]),
            Err(LeafCodecError::TruncatedLength { leaves: 0 })
        );
    }

    #[test]
    fn a_block_of_more_than_64_leaves_is_corrupt() {
        let leaves = vec![b"x".to_vec(); BLOCK_LEAVES as usize + 1];
        assert!(decode_block(7, &encode_leaves(&leaves)).is_err());
        let leaves = vec![b"x".to_vec(); BLOCK_LEAVES as usize];
        assert_eq!(
            decode_block(7, &encode_leaves(&leaves)).map(|l| l.len()),
            Ok(64)
        );
    }

    #[test]
    fn the_open_block_closes_at_64_leaves() {
        let mut open = OpenBlock::default();
        let mut writes = BlockWrites::default();
        for i in 0..BLOCK_LEAVES {
            open.push(&mut writes, 64 + i, vec![i as u8]);
        }
        assert!(open.leaves.is_empty());
        assert_eq!(writes.sealed().len(), 1);
        assert_eq!(writes.sealed()[0].0, 1);
        assert!(matches!(
            open.locate(128, writes.sealed(), 70),
            Located::Memory([6])
        ));
        assert!(matches!(
            open.locate(128, writes.sealed(), 3),
            Located::Stored { block: 0, at: 3 }
        ));
    }

    #[test]
    #[should_panic(expected = "does not continue the open block")]
    fn a_leaf_out_of_place_stops_the_node() {
        let mut open = OpenBlock::default();
        open.push(&mut BlockWrites::default(), 3, vec![1]);
    }
}
