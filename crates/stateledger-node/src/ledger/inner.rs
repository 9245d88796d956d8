//! The ledger as held in memory under its lock (`state::Ledger`), and how it is loaded at start:
//! every block read (checksums checked), every leaf replayed into the derived indexes
//! (`index.rs`), the rebuilt frontier compared with the stored one. Corruption refuses the load.
//!
//! Also the one lookup of a leaf's bytes, and of where record bytes already are, as the state
//! machine sees them (in the middle of an apply too).

use stateledger_core::hash::Hash;
use stateledger_core::heads::SystemKey;
use stateledger_core::leaf::Leaf;
use stateledger_core::merkle::{root_from_store, Frontier, TreeSize};
use stateledger_core::record::pb;

use super::admission::record_key;
use super::blocks::{self, Located, OpenBlock, Sealed, BLOCK_LEAVES};
use super::index::Indexes;
use super::keys;
use super::meta::LedgerMeta;
use super::signed_checkpoint::SignedCheckpoint;
use crate::store::{Store, StoreError, Tree};

#[derive(Debug)]
pub(crate) struct Inner {
    pub meta: LedgerMeta,
    pub idx: Indexes,
    /// The leaves of the last, not yet full, block.
    pub open: OpenBlock,
    /// The latest published checkpoint (at `meta.published_size`).
    pub published: Option<SignedCheckpoint>,
    pub corruption: Option<String>,
    /// See `Ledger::engine_failed`.
    pub engine_failed: bool,
    /// Groups refused because a signature did not verify (each kept under `keys::evidence`).
    pub bad_signature_groups: u64,
}

impl Inner {
    /// Builds the in-memory state from the store: every block read (checksums checked), every
    /// leaf replayed into the derived indexes, the rebuilt frontier compared with the stored one.
    pub fn load(store: &Store) -> Result<Inner, StoreError> {
        let meta: LedgerMeta = match store.get(Tree::Ledger, keys::META)? {
            None => LedgerMeta::default(),
            Some(bytes) => LedgerMeta::decode(&bytes)?,
        };
        let stored_frontier = Frontier::from_parts(
            TreeSize(meta.size),
            meta.frontier.iter().map(|h| Hash(*h)).collect(),
        )
        .map_err(|e| StoreError::corrupt(Tree::Ledger, keys::META, e))?;
        let mut inner = Inner {
            meta: LedgerMeta {
                size: 0,
                clock: 0,
                frontier: Vec::new(),
                ..meta.clone()
            },
            idx: Indexes::default(),
            open: OpenBlock::default(),
            published: None,
            corruption: None,
            engine_failed: false,
            bad_signature_groups: 0,
        };
        {
            let start = keys::evidence(0, 0);
            let end = keys::prefix_end(&[start[0]]);
            inner.bad_signature_groups =
                store.scan(Tree::Ledger, &start, &end, usize::MAX)?.len() as u64;
        }
        let blocks = meta.size / BLOCK_LEAVES;
        let mut block = 0;
        while block < blocks {
            // Blocks beyond the size (left by an interrupted snapshot install) are ignored.
            let read = blocks::read_blocks(store, block, blocks, 256)?;
            if read.is_empty() {
                return Err(StoreError::corrupt(
                    Tree::Ledger,
                    &keys::block(block),
                    "block missing",
                ));
            }
            for (b, leaves) in read {
                let first = b * BLOCK_LEAVES;
                let expected = (meta.size - first).min(BLOCK_LEAVES) as usize;
                if leaves.len() < expected {
                    return Err(StoreError::corrupt(
                        Tree::Ledger,
                        &keys::block(b),
                        "block has fewer leaves than the ledger size says",
                    ));
                }
                for (j, leaf) in leaves.into_iter().take(expected).enumerate() {
                    inner.replay_leaf(&leaf, first + j as u64, Tree::Ledger)?;
                }
                block += 1;
            }
        }
        // The open block: its leaves one by one (any beyond the size, left by a cut apply, are
        // ignored).
        let first = blocks * BLOCK_LEAVES;
        let rows = store.scan(
            Tree::Ledger,
            &keys::open_leaf(first),
            &keys::open_leaf(meta.size),
            BLOCK_LEAVES as usize,
        )?;
        let mut open = Vec::with_capacity(rows.len());
        for (n, (k, leaf)) in rows.into_iter().enumerate() {
            let index = first + n as u64;
            if k != keys::open_leaf(index) {
                return Err(StoreError::corrupt(
                    Tree::Ledger,
                    &keys::open_leaf(index),
                    "leaf missing",
                ));
            }
            inner.replay_leaf(&leaf, index, Tree::Ledger)?;
            open.push(leaf);
        }
        if (open.len() as u64) < meta.size - first {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                &keys::open_leaf(first + open.len() as u64),
                "leaf missing",
            ));
        }
        inner.open = OpenBlock::loaded(open);
        if inner.idx.frontier != stored_frontier {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                keys::META,
                format!(
                    "the stored leaves give root {} but the stored frontier says {}",
                    inner.idx.frontier.root(),
                    stored_frontier.root()
                ),
            ));
        }
        inner.meta.clock = meta.clock.max(inner.meta.clock);
        inner.meta.frontier = meta.frontier.clone();

        // The head map at the published size, and the leaves after it.
        let published = meta.published_size;
        inner.idx.split_at_published(published);
        inner.published = if published > 0 {
            match store.get(Tree::Ledger, &keys::checkpoint(published))? {
                Some(bytes) => Some(parse_stored_checkpoint(published, &bytes)?),
                None => None,
            }
        } else {
            None
        };
        Ok(inner)
    }

    /// Adds a new leaf at the end: the indexes, the size and the clock.
    pub fn add_leaf(
        &mut self,
        key: &SystemKey,
        short_hash: [u8; 16],
        record: &pb::Record,
        index: u64,
        time: u64,
        lh: Hash,
    ) {
        // A leaf at another index would be stored over another leaf, or leave a hole.
        assert_eq!(index, self.meta.size, "leaf {index} is not the next leaf");
        self.idx.add_leaf(key, short_hash, record, index, time, lh);
        self.meta.size = index + 1;
        self.meta.clock = time;
    }

    /// Checks stored leaf `expected` and adds it (at start, and for a snapshot's leaves).
    pub fn replay_leaf(
        &mut self,
        bytes: &[u8],
        expected: u64,
        tree: Tree,
    ) -> Result<(), StoreError> {
        assert_eq!(
            expected, self.meta.size,
            "leaf {expected} is not the next leaf"
        );
        let replayed = self
            .idx
            .replay_leaf(bytes, expected, self.meta.clock, tree)?;
        self.meta.size = expected + 1;
        self.meta.clock = replayed.time;
        Ok(())
    }

    /// The root of the first `size` leaves (at most the current size).
    pub fn root_at(&self, size: u64) -> Hash {
        if size == self.meta.size {
            return self.idx.frontier.root();
        }
        match root_from_store(&self.idx.nodes, TreeSize(size)) {
            Ok(h) => h,
            Err(never) => match never {},
        }
    }

    /// Where leaf `index` (< size) is.
    pub fn locate<'a>(&'a self, sealed: &'a Sealed, index: u64) -> Located<'a> {
        self.open.locate(self.meta.size, sealed, index)
    }

    /// The bytes of leaf `index` (< size) as the state machine sees them, also in the middle of
    /// an apply (`sealed`: the blocks it filled and has not written yet). A block that does not
    /// hold the leaf is corrupt.
    pub fn leaf_bytes(
        &self,
        store: &Store,
        sealed: &Sealed,
        index: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let block = index / BLOCK_LEAVES;
        let missing = || {
            StoreError::corrupt(
                Tree::Ledger,
                &keys::block(block),
                format!("block is missing leaf {index}"),
            )
        };
        match self.locate(sealed, index) {
            Located::Memory(bytes) => Ok(bytes.to_vec()),
            Located::Missing => Err(missing()),
            Located::Stored { block, at } => blocks::read_block(store, block)?
                .into_iter()
                .nth(at)
                .ok_or_else(missing),
        }
    }

    /// Where these record bytes already are in the ledger (confirmed on the leaf: a 128-bit
    /// prefix collision is not expected). The index naming a leaf whose block does not hold it
    /// is an inconsistency, never "not a duplicate" (that would append the record twice).
    pub fn find_record(
        &self,
        store: &Store,
        sealed: &Sealed,
        record_bytes: &[u8],
    ) -> Result<Option<u64>, StoreError> {
        let (_, short) = record_key(record_bytes);
        let Some(&index) = self.idx.records.get(&short) else {
            return Ok(None);
        };
        let bytes = self.leaf_bytes(store, sealed, index)?;
        let leaf = Leaf::decode(&bytes).map_err(|e| {
            StoreError::corrupt(Tree::Ledger, &keys::block(index / BLOCK_LEAVES), e)
        })?;
        Ok((leaf.record == record_bytes).then_some(leaf.index.0))
    }

    /// The ledger time of leaf `index` (< size): from the pending leaves, or the leaf itself.
    pub fn leaf_time(&self, store: &Store, sealed: &Sealed, index: u64) -> Result<u64, StoreError> {
        if let Ok(i) = self.idx.pending.binary_search_by_key(&index, |p| p.index) {
            if let Some(p) = self.idx.pending.get(i) {
                return Ok(p.time);
            }
        }
        let bytes = self.leaf_bytes(store, sealed, index)?;
        let leaf = Leaf::decode(&bytes).map_err(|e| {
            StoreError::corrupt(Tree::Ledger, &keys::block(index / BLOCK_LEAVES), e)
        })?;
        Ok(leaf.ledger_time.0)
    }

    /// The head-map root at `size` (published size <= size <= current size).
    pub fn heads_root_at(&self, size: u64) -> Hash {
        self.idx.heads_root_at(size)
    }
}

/// A stored checkpoint note (`keys::checkpoint(size)`), parsed; one that does not parse, or is
/// not of its size, is corrupt.
pub(crate) fn parse_stored_checkpoint(
    size: u64,
    bytes: &[u8],
) -> Result<SignedCheckpoint, StoreError> {
    let key = keys::checkpoint(size);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| StoreError::corrupt(Tree::Ledger, &key, "checkpoint note is not UTF-8"))?;
    let signed =
        SignedCheckpoint::parse(text).map_err(|e| StoreError::corrupt(Tree::Ledger, &key, e))?;
    if signed.checkpoint().size.0 != size {
        return Err(StoreError::corrupt(
            Tree::Ledger,
            &key,
            format!(
                "checkpoint of size {} stored as size {size}",
                signed.checkpoint().size
            ),
        ));
    }
    Ok(signed)
}
