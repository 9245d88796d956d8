//! Snapshots of the ledger. Leaves never change once written, so a snapshot at size N is just a
//! small header plus "leaves 0..N" read lazily from the store when sent: building one is O(1),
//! and Raft can compact its log as often as it likes. A receiver that already holds a prefix gets
//! only the leaves after it (see `raft::network`; the chunks it sends are in the leaf codec of
//! `blocks.rs`). Installing a snapshot into the ledger is here too.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use stateledger_core::hash::Hash;

use super::blocks::BlockWrites;
use super::inner::Inner;
use super::keys;
use super::meta::Genesis;
use super::reads::ReadError;
use super::state::Ledger;
use crate::raft::{LogId, SnapshotMeta, StoredMembership};
use crate::store::{Batch, Store, StoreError, Tree};

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
                ReadError::Store(s) => s,
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

/// Leaves of a snapshot asked for at once while installing it.
const INSTALL_CHUNK_LEAVES: usize = 4096;

impl Ledger {
    /// Replaces or extends the ledger with leaves from a snapshot. `from` leaves are kept (their
    /// root was checked against the sender's); the rest are replayed, then the metadata set.
    pub(crate) fn install(
        &self,
        from: u64,
        header: &SnapshotHeader,
        applied: Option<LogId>,
        membership: StoredMembership,
        mut next_leaves: impl FnMut(u64, usize) -> Result<Vec<Vec<u8>>, StoreError>,
        checkpoints: Vec<(u64, String)>,
    ) -> Result<(), StoreError> {
        let mut inner = self.write();
        if from == 0 {
            self.store().clear(Tree::Ledger)?;
            *inner = Inner::load(self.store())?;
        } else if inner.meta.size < from || inner.meta.size > header.size {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                keys::META,
                format!(
                    "snapshot of {} leaves continues from {from} but this node has {} leaves",
                    header.size, inner.meta.size
                ),
            ));
        }
        let ended_early =
            |pos: u64| StoreError::corrupt(Tree::Staging, &keys::leaf(pos), "snapshot ended early");
        let mut pos = from;
        // The node may have applied committed entries from its own log while the snapshot
        // streamed (the sender chose `from` when it began): those leaves are the snapshot's
        // too — checked here — and are kept (simulation seed 100 on 3 nodes: a restarted
        // follower re-applied 4 leaves meanwhile, and the install stopped Raft).
        while pos < inner.meta.size {
            let want = (inner.meta.size - pos).min(INSTALL_CHUNK_LEAVES as u64) as usize;
            let chunk = next_leaves(pos, want)?;
            if chunk.is_empty() {
                return Err(ended_early(pos));
            }
            for bytes in chunk {
                if inner.leaf_bytes(self.store(), &[], pos)? != bytes {
                    return Err(StoreError::corrupt(
                        Tree::Staging,
                        &keys::leaf(pos),
                        format!("snapshot leaf {pos} differs from this node's leaf {pos}"),
                    ));
                }
                pos += 1;
            }
        }
        let mut writes = BlockWrites::default();
        while pos < header.size {
            let chunk = next_leaves(pos, INSTALL_CHUNK_LEAVES)?;
            if chunk.is_empty() {
                return Err(ended_early(pos));
            }
            let mut batch = Batch::new(Tree::Ledger);
            for bytes in chunk {
                inner.replay_leaf(&bytes, pos, Tree::Staging)?;
                inner.open.push(&mut writes, pos, bytes);
                pos += 1;
            }
            let size = inner.meta.size;
            inner.open.write(size, &mut batch, &mut writes);
            self.store().write(batch)?;
        }
        if inner.idx.frontier.root().0 != header.root {
            return Err(StoreError::corrupt(
                Tree::Staging,
                keys::META,
                format!(
                    "snapshot leaves give root {} but the sender's root is {}",
                    inner.idx.frontier.root(),
                    Hash(header.root)
                ),
            ));
        }
        let mut batch = Batch::new(Tree::Ledger);
        for (size, note) in &checkpoints {
            batch.put(keys::checkpoint(*size), note.as_bytes());
        }
        inner.meta.clock = inner.meta.clock.max(header.clock);
        inner.meta.genesis = header.genesis.clone();
        inner.meta.published_size = header.published_size;
        inner.meta.applied = applied;
        inner.meta.membership = membership;
        inner.meta.frontier = inner.idx.frontier.hashes().iter().map(|h| h.0).collect();
        batch.put(keys::META.to_vec(), &inner.meta.encode()?);
        writes.remove_obsolete(&mut batch);
        self.store().write(batch)?;
        *inner = Inner::load(self.store())?;
        self.publish_progress(&inner);
        Ok(())
    }
}
