//! Snapshots of the ledger. Leaves never change once written, so a snapshot at size N is just a
//! small header plus "leaves 0..N" read lazily from the store when sent: building one is O(1),
//! and Raft can compact its log as often as it likes. A receiver that already holds a prefix gets
//! only the leaves after it (see `raft::network`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::keys;
use super::meta::Genesis;
use super::state::Ledger;
use crate::raft::SnapshotMeta;
use crate::store::{Store, StoreError, Tree};

/// What a snapshot says about the ledger besides its leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub size: u64,
    pub root: [u8; 32],
    pub clock: u64,
    pub published_size: u64,
    pub genesis: Option<Genesis>,
}

/// The last snapshot built or installed, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub header: SnapshotHeader,
}

/// Where a snapshot's leaves come from.
#[derive(Debug)]
pub enum SnapshotSource {
    /// Nothing yet (a receiving buffer).
    Empty,
    /// A ledger's own store (the sender's side, and in-process transfers).
    Ledger(Arc<Ledger>),
    /// Leaves received over the network into the staging tree.
    Staged(Store),
}

/// openraft's `SnapshotData` for this ledger.
pub struct LedgerSnapshot {
    pub header: Option<SnapshotHeader>,
    /// Leaves before this index are already held by the receiver.
    pub from: u64,
    pub source: SnapshotSource,
}

impl std::fmt::Debug for LedgerSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            SnapshotSource::Empty => "empty",
            SnapshotSource::Ledger(_) => "ledger",
            SnapshotSource::Staged(_) => "staged",
        };
        f.debug_struct("LedgerSnapshot")
            .field("header", &self.header)
            .field("from", &self.from)
            .field("source", &source)
            .finish()
    }
}

impl LedgerSnapshot {
    pub fn empty() -> LedgerSnapshot {
        LedgerSnapshot {
            header: None,
            from: 0,
            source: SnapshotSource::Empty,
        }
    }

    fn store(&self) -> Option<(&Store, Tree)> {
        match &self.source {
            SnapshotSource::Empty => None,
            SnapshotSource::Ledger(l) => Some((l.store(), Tree::Ledger)),
            SnapshotSource::Staged(s) => Some((s, Tree::Staging)),
        }
    }

    /// Up to `limit` leaves starting at `start` (below the header's size).
    pub fn leaves(&self, start: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let (Some(header), Some((store, tree))) = (&self.header, self.store()) else {
            return Ok(Vec::new());
        };
        let end = header.size.min(start.saturating_add(limit as u64));
        if start >= end {
            return Ok(Vec::new());
        }
        if let SnapshotSource::Ledger(ledger) = &self.source {
            return ledger.leaf_range(start, end - start).map_err(|e| match e {
                super::state::ReadError::Store(s) => s,
                other => StoreError::corrupt(Tree::Ledger, &keys::leaf(start), other),
            });
        }
        Ok(store
            .scan(tree, &keys::leaf(start), &keys::leaf(end), limit)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// The published checkpoints up to the header's published size. Corrupt data in this node's
    /// own ledger is noted there (the node reports it, and stops if it leads).
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let (Some(header), Some((store, tree))) = (&self.header, self.store()) else {
            return Ok(Vec::new());
        };
        let noted = |e: StoreError| {
            if let SnapshotSource::Ledger(ledger) = &self.source {
                ledger.note_corruption(&e);
            }
            e
        };
        store
            .scan(
                tree,
                &keys::checkpoint(0),
                &keys::checkpoint(header.published_size.saturating_add(1)),
                usize::MAX,
            )
            .map_err(noted)?
            .into_iter()
            .map(|(k, v)| {
                let size = keys::u64_be(&k[1..])
                    .ok_or_else(|| StoreError::corrupt(tree, &k, "bad checkpoint key"))?;
                Ok((size, String::from_utf8_lossy(&v).into_owned()))
            })
            .collect()
    }
}

/// Splits the leaves of a snapshot chunk (`SnapshotChunkRequest.leaves`: each leaf prefixed with
/// its length as u32 big-endian). Bytes from another node: a truncated length or leaf is an
/// error, never a panic, and nothing is allocated beyond the list of slices.
pub fn chunk_leaves(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut leaves = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(format!(
                "truncated leaf length in snapshot chunk after {} leaves",
                leaves.len()
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((leaf, tail)) = tail.split_at_checked(len) else {
            return Err(format!(
                "truncated leaf in snapshot chunk: {len} bytes announced, {} left",
                tail.len()
            ));
        };
        leaves.push(leaf);
        rest = tail;
    }
    Ok(leaves)
}

/// Appends a leaf to a snapshot chunk in the format [`chunk_leaves`] reads.
pub fn push_chunk_leaf(chunk: &mut Vec<u8>, leaf: &[u8]) {
    chunk.extend_from_slice(&(leaf.len() as u32).to_be_bytes());
    chunk.extend_from_slice(leaf);
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_truncations_are_errors() {
        let mut chunk = Vec::new();
        for leaf in [&b"a"[..], b"", b"leaf three"] {
            push_chunk_leaf(&mut chunk, leaf);
        }
        assert_eq!(
            chunk_leaves(&chunk),
            Ok(vec![&b"a"[..], b"", b"leaf three"])
        );
        for cut in 1..chunk.len() {
            let r = chunk_leaves(&chunk[..cut]);
            assert!(
                r.is_err() || cut == 5 || cut == 9,
                "a chunk cut at {cut} is refused: {r:?}"
            );
        }
        assert!(chunk_leaves(&[0xff, 0xff, 0xff, 0xff, 1]).is_err());
    }
}
