//! The indexes derived from the leaves, in memory: the Merkle tree nodes, the record-hash index
//! (duplicates), each system's leaves (back-links, heads, history), the systems' names, the
//! writer grants, and the head map at the published checkpoint. All of it follows
//! deterministically from the leaves and is rebuilt from them at start (`inner.rs`), each leaf
//! checked as it is replayed. Measured on sled 0.34, one insert costs tens of microseconds;
//! deriving these instead of storing them cut the per-record storage cost by two orders of
//! magnitude (docs/PERFORMANCE.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use prost::Message as _;
use stateledger_core::hash::{leaf_hash, Hash};
use stateledger_core::heads::{Head, HeadMap, SystemKey};
use stateledger_core::leaf::Leaf;
use stateledger_core::merkle::{Frontier, LeafIndex, MemoryNodeStore, TreeSize};
use stateledger_core::record::{pb, Body};

use super::admission::{grant_change, record_key, Grants};
use super::keys;
use super::system_names::SystemNames;
use crate::store::{StoreError, Tree};

/// A leaf not yet covered by a published checkpoint, with its system's head after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingLeaf {
    pub index: u64,
    pub key: SystemKey,
    pub head: Head,
    pub time: u64,
}

/// The indexes derived from the leaves.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    /// Every perfect-subtree hash of the log.
    pub nodes: MemoryNodeStore,
    pub frontier: Frontier,
    /// First 16 bytes of BLAKE3(record bytes) → leaf index (hits are confirmed on the leaf).
    pub records: HashMap<[u8; 16], u64>,
    /// Each system's leaves: (index, ledger time), in order.
    pub systems: HashMap<SystemKey, Vec<(u64, u64)>>,
    /// The systems' names (for hints when a system has no record).
    pub names: SystemNames,
    pub grants: Grants,
    /// The head map at the published size. Behind its own lock because computing a root or a
    /// proof fills the map's cache of interior nodes: readers under the ledger's read lock
    /// take it for that, so that no read needs the ledger's write lock.
    published_map: Mutex<HeadMap>,
    /// Leaves at or after the published size, in order.
    pub pending: VecDeque<PendingLeaf>,
}

/// A leaf replayed from storage: what the ledger's metadata learns from it.
pub(crate) struct Replayed {
    pub time: u64,
}

impl Indexes {
    /// Updates every index for a new leaf `index` of system `key`.
    pub fn add_leaf(
        &mut self,
        key: &SystemKey,
        short_hash: [u8; 16],
        record: &pb::Record,
        index: u64,
        time: u64,
        lh: Hash,
    ) {
        // The tree and the index must move together: a leaf appended out of order would give
        // every later proof the wrong leaf.
        assert_eq!(
            self.frontier.size(),
            TreeSize(index),
            "leaf {index} appended to a tree of another size"
        );
        self.frontier.append(lh, |_, _| {});
        self.nodes.append(lh);
        self.records.entry(short_hash).or_insert(index);
        let entries = self.systems.entry(*key).or_default();
        if entries.is_empty() {
            self.names.insert(&record.system);
        }
        entries.push((index, time));
        let head = Head {
            index: LeafIndex(index),
            count: entries.len() as u64,
        };
        self.pending.push_back(PendingLeaf {
            index,
            key: *key,
            head,
            time,
        });
        if let Some(Body::Policy(p)) = &record.body {
            if let Some((writer, granted)) = grant_change(p) {
                self.grants.insert((*key, writer), granted);
            }
        }
    }

    /// Checks a stored leaf against what the state machine would have assigned (its index, its
    /// system's back-link, a time after `clock`), and indexes it.
    pub fn replay_leaf(
        &mut self,
        bytes: &[u8],
        expected: u64,
        clock: u64,
        tree: Tree,
    ) -> Result<Replayed, StoreError> {
        let bad = |reason: String| StoreError::corrupt(tree, &keys::leaf(expected), reason);
        let leaf = Leaf::decode(bytes).map_err(|e| bad(e.to_string()))?;
        if leaf.index.0 != expected {
            return Err(bad(format!("leaf says index {}", leaf.index)));
        }
        let record = pb::Record::decode(leaf.record.as_slice()).map_err(|e| bad(e.to_string()))?;
        let key = SystemKey::of(&record.system);
        let previous = self
            .systems
            .get(&key)
            .and_then(|v| v.last())
            .map(|(i, _)| LeafIndex(*i));
        if leaf.prev != previous {
            return Err(bad(
                "back-link does not match this system's previous leaf".into()
            ));
        }
        if expected > 0 && leaf.ledger_time.0 <= clock {
            return Err(bad("ledger time does not increase".into()));
        }
        let (_, short) = record_key(&leaf.record);
        let time = leaf.ledger_time.0;
        self.add_leaf(&key, short, &record, expected, time, leaf_hash(bytes));
        Ok(Replayed { time })
    }

    /// Builds the head map at `published` and the pending leaves after it (at start, once
    /// every leaf is indexed).
    pub fn split_at_published(&mut self, published: u64) {
        let mut map = HeadMap::new();
        let mut pending: Vec<PendingLeaf> = Vec::new();
        for (key, entries) in &self.systems {
            let before = entries.partition_point(|(i, _)| *i < published);
            if before > 0 {
                map.insert(
                    *key,
                    Head {
                        index: LeafIndex(entries[before - 1].0),
                        count: before as u64,
                    },
                );
            }
            for (n, (index, time)) in entries.iter().enumerate().skip(before) {
                pending.push(PendingLeaf {
                    index: *index,
                    key: *key,
                    head: Head {
                        index: LeafIndex(*index),
                        count: n as u64 + 1,
                    },
                    time: *time,
                });
            }
        }
        pending.sort_by_key(|p| p.index);
        self.pending = pending.into();
        *self
            .published_map
            .get_mut()
            .unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// Moves the published head map to `size` (a checkpoint's, published now), and returns its
    /// root there.
    pub fn advance_published(&mut self, size: u64) -> Hash {
        let mut latest: BTreeMap<SystemKey, Head> = BTreeMap::new();
        while self.pending.front().is_some_and(|p| p.index < size) {
            if let Some(p) = self.pending.pop_front() {
                latest.insert(p.key, p.head);
            }
        }
        let map = self
            .published_map
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        for (k, h) in latest {
            map.insert(k, h);
        }
        map.root()
    }

    /// The head map at the published size.
    pub fn published_map(&self) -> MutexGuard<'_, HeadMap> {
        // Nothing under this lock panics (hashing and map operations); were it poisoned anyway,
        // the node would go on rather than cascade, as with the ledger's own lock.
        self.published_map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The head-map root at `size` (published size <= size <= current size). The published
    /// map is changed for the computation and restored before its lock is released.
    pub fn heads_root_at(&self, size: u64) -> Hash {
        let mut changes: BTreeMap<SystemKey, Head> = BTreeMap::new();
        for p in self.pending.iter().take_while(|p| p.index < size) {
            changes.insert(p.key, p.head);
        }
        let mut map = self.published_map();
        let mut undo = Vec::with_capacity(changes.len());
        for (k, h) in &changes {
            undo.push((*k, map.get(k)));
            map.insert(*k, *h);
        }
        let root = map.root();
        for (k, old) in undo.into_iter().rev() {
            match old {
                Some(h) => map.insert(k, h),
                None => map.remove(&k),
            }
        }
        root
    }
}
