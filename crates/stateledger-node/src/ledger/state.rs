//! The ledger state machine: the Merkle log of leaves plus its indexes, on the storage seam.
//!
//! Applying the Raft log is deterministic: the same entries give the same leaves, roots, heads and
//! grants on every node. Every apply writes one atomic batch (leaves, nodes, indexes and the
//! metadata with the applied log id), so a crash leaves the state at some applied log id and Raft
//! replays the rest. Reads take a consistent view under the lock and read immutable data from the
//! store (leaves and nodes never change once written).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use prost::Message as _;
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::hash::{leaf_hash, Hash};
use stateledger_core::heads::{Head, HeadMap, HeadProof, SystemKey};
use stateledger_core::leaf::Leaf;
use stateledger_core::ledger_time::LedgerTime;
use stateledger_core::merkle::{
    consistency_proof, inclusion_proof, root_from_store, Frontier, GenerateError, LeafIndex,
    NodeId, NodeStore, TreeSize,
};
use stateledger_core::note::{Note, NoteVerifier};
use stateledger_core::record::{decode_record, pb, Body, WriterKey};
use tokio::sync::watch;

use super::keys;
use super::meta::{Genesis, LedgerMeta};
use crate::raft::codec;
use crate::raft::{
    Appended, Command, CommandResponse, Entry, GroupOutcome, NodeId as RaftNodeId, Refusal,
    StoredMembership, SubmittedRecord,
};
use crate::store::{Batch, Store, StoreError, Tree};

/// Where the ledger stands; watchers wake on every change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub size: u64,
    pub clock: u64,
    pub published_size: u64,
    pub applied_index: u64,
}

/// A leaf not yet covered by a published checkpoint, with its system's head after it.
#[derive(Clone, Copy, Debug)]
struct PendingLeaf {
    index: u64,
    key: SystemKey,
    head: Head,
    time: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) meta: LedgerMeta,
    frontier: Frontier,
    heads: HashMap<SystemKey, Head>,
    grants: HashMap<(SystemKey, [u8; 32]), bool>,
    /// The head map at `meta.published_size`.
    published_map: HeadMap,
    /// Leaves at or after `meta.published_size`.
    pending: VecDeque<PendingLeaf>,
    published_note: Option<String>,
    corruption: Option<String>,
}

/// The ledger. Shared (`Arc`) between the Raft state machine, the services and the checkpointer.
#[derive(Debug)]
pub struct Ledger {
    store: Store,
    inner: RwLock<Inner>,
    progress: watch::Sender<Progress>,
}

/// Perfect-subtree hashes read from the store, for proof generation.
#[derive(Debug)]
pub struct StoredNodes<'a>(pub &'a Store);

impl NodeStore for StoredNodes<'_> {
    type Error = StoreError;

    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        let key = keys::node(id);
        let bytes = self
            .0
            .get(Tree::Ledger, &key)?
            .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &key, "tree node missing"))?;
        Hash::from_slice(&bytes)
            .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &key, "tree node is not 32 bytes"))
    }
}

/// Why a read could not be answered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    #[error("leaf index {index} is outside the ledger of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("no published checkpoint yet")]
    NoCheckpoint,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn generate_error(e: GenerateError<StoreError>) -> ReadError {
    match e {
        GenerateError::Store(s) => ReadError::Store(s),
        GenerateError::Proof(p) => ReadError::Invalid(p.to_string()),
        other => ReadError::Invalid(other.to_string()),
    }
}

/// Material for a state proof, all proven against `checkpoint`.
#[derive(Debug, Clone)]
pub struct SystemHistory {
    pub checkpoint: String,
    pub leaves: Vec<(Vec<u8>, Vec<Hash>)>,
    pub next: Option<(Vec<u8>, Vec<Hash>)>,
    pub head_proof: Option<HeadProof>,
}

/// Most leaves one history answer may hold.
pub const HISTORY_LEAVES_MAX: usize = 100_000;

impl Ledger {
    /// Loads the ledger from the store. With `verify_all`, every stored value's checksum and the
    /// frontier against the stored nodes are checked first; corruption refuses the open.
    pub fn open(store: Store, verify_all: bool) -> Result<Arc<Ledger>, StoreError> {
        if verify_all {
            verify_store(&store)?;
        }
        let inner = load_inner(&store)?;
        let progress = progress_of(&inner);
        let (tx, _) = watch::channel(progress);
        Ok(Arc::new(Ledger {
            store,
            inner: RwLock::new(inner),
            progress: tx,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic under this lock is a bug that already took the process down in release builds
        // on consensus paths; recover the guard rather than cascade.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn current_progress(&self) -> Progress {
        *self.progress.borrow()
    }

    fn publish_progress(&self, inner: &Inner) {
        self.progress.send_replace(progress_of(inner));
    }

    /// Records that stored data was found corrupt; the node then reports it in its status.
    pub fn note_corruption(&self, e: &StoreError) {
        if let StoreError::Corrupt { .. } = e {
            let mut inner = self.write();
            if inner.corruption.is_none() {
                tracing::error!(error = %e, "stored data is corrupt; refusing to serve it");
                inner.corruption = Some(e.to_string());
            }
        }
    }

    pub fn corruption(&self) -> Option<String> {
        self.read().corruption.clone()
    }

    pub fn meta(&self) -> LedgerMeta {
        self.read().meta.clone()
    }

    pub fn applied_state(&self) -> (Option<crate::raft::LogId>, StoredMembership) {
        let inner = self.read();
        (inner.meta.applied, inner.meta.membership.clone())
    }

    pub fn origin(&self) -> Option<String> {
        self.read().meta.genesis.as_ref().map(|g| g.origin.clone())
    }

    pub fn root(&self) -> Hash {
        self.read().frontier.root()
    }

    /// The root of the first `size` leaves (at most the current size).
    pub fn root_of_prefix(&self, size: u64) -> Result<Hash, ReadError> {
        let inner = self.read();
        if size > inner.meta.size {
            return Err(ReadError::OutOfRange {
                index: size,
                size: inner.meta.size,
            });
        }
        Ok(self.root_at(&inner, size)?)
    }

    // ----- apply -----

    /// Applies committed entries in order, writing one atomic batch.
    pub fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<CommandResponse>, StoreError> {
        let mut inner = self.write();
        let mut batch = Batch::new(Tree::Ledger);
        let mut ctx = ApplyContext::default();
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            let response = match entry.payload {
                openraft::EntryPayload::Blank => CommandResponse::None,
                openraft::EntryPayload::Membership(m) => {
                    inner.meta.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResponse::None
                }
                openraft::EntryPayload::Normal(command) => {
                    self.apply_command(&mut inner, &mut batch, &mut ctx, command)?
                }
            };
            inner.meta.applied = Some(entry.log_id);
            responses.push(response);
        }
        inner.meta.frontier = inner.frontier.hashes().iter().map(|h| h.0).collect();
        batch.put(keys::META.to_vec(), &encode_meta(&inner.meta)?);
        self.store.write(batch)?;
        self.publish_progress(&inner);
        Ok(responses)
    }

    fn apply_command(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        ctx: &mut ApplyContext,
        command: Command,
    ) -> Result<CommandResponse, StoreError> {
        match command {
            Command::Genesis { origin, admin_keys } => {
                if inner.meta.genesis.is_some() {
                    return Ok(CommandResponse::Refused {
                        reason: "genesis already happened".into(),
                    });
                }
                inner.meta.genesis = Some(Genesis { origin, admin_keys });
                Ok(CommandResponse::None)
            }
            Command::Append {
                groups,
                proposed_time,
            } => {
                if groups.is_empty() {
                    // A tick: the clock moves without a leaf.
                    inner.meta.clock = inner.meta.clock.max(proposed_time);
                    return Ok(CommandResponse::Appended(Vec::new()));
                }
                let mut outcomes = Vec::with_capacity(groups.len());
                for group in groups {
                    outcomes.push(self.append_group(inner, batch, ctx, group, proposed_time)?);
                }
                Ok(CommandResponse::Appended(outcomes))
            }
            Command::PublishCheckpoint { note } => self.publish_checkpoint(inner, batch, &note),
        }
    }

    fn append_group(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        ctx: &mut ApplyContext,
        group: Vec<SubmittedRecord>,
        proposed_time: u64,
    ) -> Result<GroupOutcome, StoreError> {
        let checked = match check_group(&self.store, inner, Some(ctx), &group)? {
            Ok(checked) => checked,
            Err(outcome) => return Ok(outcome),
        };
        let mut appended = Vec::with_capacity(group.len());
        for (r, c) in group.into_iter().zip(checked) {
            if let Some(Body::Policy(p)) = &c.record.body {
                apply_policy(inner, batch, &c.key, p);
            }
            let index = inner.meta.size;
            let time =
                LedgerTime::next_after(LedgerTime(inner.meta.clock), LedgerTime(proposed_time)).0;
            let previous = inner.heads.get(&c.key).copied();
            let leaf = Leaf {
                index: LeafIndex(index),
                ledger_time: LedgerTime(time),
                prev: previous.map(|h| h.index),
                writer_key: WriterKey(r.writer_key),
                signature: c.signature,
                record: r.record,
            };
            let head = Head {
                index: LeafIndex(index),
                count: previous.map_or(1, |h| h.count + 1),
            };
            let bytes = leaf.encode();
            let lh = leaf_hash(&bytes);
            self.write_leaf(inner, batch, &bytes, lh, &c.key, head, time);
            batch.put(keys::record(&c.record_hash), &index.to_be_bytes());
            ctx.records.insert(c.record_hash, index);
            appended.push(Appended {
                index,
                time,
                leaf_hash: lh.0,
            });
        }
        Ok(GroupOutcome::Appended(appended))
    }

    /// Adds a leaf to the log and its indexes (shared by apply and snapshot install).
    #[allow(clippy::too_many_arguments)]
    fn write_leaf(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        bytes: &[u8],
        lh: Hash,
        key: &SystemKey,
        head: Head,
        time: u64,
    ) {
        let index = head.index.0;
        inner
            .frontier
            .append(lh, |id, h| batch.put(keys::node(id), &h.0));
        batch.put(keys::leaf(index), bytes);
        batch.put(keys::system(key, index), &time.to_be_bytes());
        let mut head_value = [0u8; 16];
        head_value[..8].copy_from_slice(&head.index.0.to_be_bytes());
        head_value[8..].copy_from_slice(&head.count.to_be_bytes());
        batch.put(keys::head(key), &head_value);
        inner.heads.insert(*key, head);
        inner.pending.push_back(PendingLeaf {
            index,
            key: *key,
            head,
            time,
        });
        inner.meta.size = index + 1;
        inner.meta.clock = time;
    }

    fn publish_checkpoint(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        note_text: &str,
    ) -> Result<CommandResponse, StoreError> {
        let refuse = |reason: String| Ok(CommandResponse::Refused { reason });
        let Some(genesis) = inner.meta.genesis.clone() else {
            return refuse("no genesis".into());
        };
        let note = match Note::parse(note_text.as_bytes()) {
            Ok(n) => n,
            Err(e) => return refuse(format!("checkpoint note: {e}")),
        };
        let cp = match Checkpoint::parse(&note.text) {
            Ok(c) => c,
            Err(e) => return refuse(format!("checkpoint body: {e}")),
        };
        if cp.origin != genesis.origin {
            return refuse(format!(
                "checkpoint origin {:?} is not the log's {:?}",
                cp.origin, genesis.origin
            ));
        }
        let published_time = inner
            .published_note
            .as_deref()
            .and_then(|n| Note::parse(n.as_bytes()).ok())
            .and_then(|n| Checkpoint::parse(&n.text).ok())
            .map_or(0, |c| c.time.0);
        if (cp.size.0, cp.time.0) <= (inner.meta.published_size, published_time) {
            return refuse(format!(
                "checkpoint (size {}, time {}) is not after the published one (size {}, time {published_time})",
                cp.size, cp.time, inner.meta.published_size
            ));
        }
        if cp.size.0 > inner.meta.size {
            return refuse(format!(
                "checkpoint size {} is beyond the applied size {}",
                cp.size, inner.meta.size
            ));
        }
        if let Err(reason) = check_quorum(&inner.meta.membership, &note) {
            return refuse(reason);
        }
        let root = self.root_at(inner, cp.size.0)?;
        if root != cp.root {
            let msg = format!(
                "a quorum signed root {} at size {} but this node computed {root}: this node's ledger diverged",
                cp.root, cp.size
            );
            inner.corruption = Some(msg.clone());
            tracing::error!("{msg}");
            return refuse(msg);
        }
        if let Err(reason) = check_time(inner, &cp) {
            return refuse(reason);
        }
        // Advance the published head map to the checkpoint's size.
        let mut latest: BTreeMap<SystemKey, Head> = BTreeMap::new();
        while inner.pending.front().is_some_and(|p| p.index < cp.size.0) {
            if let Some(p) = inner.pending.pop_front() {
                latest.insert(p.key, p.head);
            }
        }
        for (k, h) in latest {
            inner.published_map.insert(k, h);
        }
        let heads_root = inner.published_map.root();
        if heads_root != cp.heads_root {
            let msg = format!(
                "a quorum signed head root {} at size {} but this node computed {heads_root}: this node's ledger diverged",
                cp.heads_root, cp.size
            );
            inner.corruption = Some(msg.clone());
            tracing::error!("{msg}");
        }
        inner.meta.published_size = cp.size.0;
        batch.put(keys::checkpoint(cp.size.0), note_text.as_bytes());
        inner.published_note = Some(note_text.to_string());
        Ok(CommandResponse::Published { size: cp.size.0 })
    }

    /// The root of the first `size` leaves (at most the current size).
    fn root_at(&self, inner: &Inner, size: u64) -> Result<Hash, StoreError> {
        if size == inner.meta.size {
            return Ok(inner.frontier.root());
        }
        root_from_store(&StoredNodes(&self.store), TreeSize(size))
    }

    // ----- checkpoints -----

    /// The checkpoint this node would sign now: its size, root, clock and head root.
    pub fn candidate_checkpoint(&self) -> Option<Checkpoint> {
        let mut inner = self.write();
        let origin = inner.meta.genesis.as_ref()?.origin.clone();
        let size = inner.meta.size;
        let heads_root = heads_root_at(&mut inner, size);
        Some(Checkpoint {
            origin,
            size: TreeSize(size),
            root: inner.frontier.root(),
            time: LedgerTime(inner.meta.clock),
            heads_root,
        })
    }

    /// Checks that this node computed exactly this checkpoint: same origin, root and head root at
    /// that size, and the time promise holds (every leaf at or after `size` is later than `time`).
    pub fn check_checkpoint(&self, cp: &Checkpoint) -> Result<(), String> {
        let mut inner = self.write();
        let Some(origin) = inner.meta.genesis.as_ref().map(|g| g.origin.clone()) else {
            return Err("no genesis yet".into());
        };
        if cp.origin != origin {
            return Err(format!(
                "origin {:?} is not this log's {origin:?}",
                cp.origin
            ));
        }
        if cp.size.0 > inner.meta.size {
            return Err(format!(
                "size {} is beyond this node's applied size {}",
                cp.size, inner.meta.size
            ));
        }
        if cp.size.0 < inner.meta.published_size {
            return Err(format!(
                "size {} is before the published checkpoint {}",
                cp.size, inner.meta.published_size
            ));
        }
        let root = self.root_at(&inner, cp.size.0).map_err(|e| e.to_string())?;
        if root != cp.root {
            return Err(format!(
                "root {} differs from this node's root {root} at size {}",
                cp.root, cp.size
            ));
        }
        check_time(&inner, cp)?;
        let heads_root = heads_root_at(&mut inner, cp.size.0);
        if heads_root != cp.heads_root {
            return Err(format!(
                "head root {} differs from this node's {heads_root} at size {}",
                cp.heads_root, cp.size
            ));
        }
        Ok(())
    }

    /// The latest published checkpoint note.
    pub fn published_checkpoint(&self) -> Option<String> {
        self.read().published_note.clone()
    }

    /// The published checkpoint note of exactly `size`, if stored.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(Tree::Ledger, &keys::checkpoint(size))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    // ----- reads -----

    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, ReadError> {
        let size = self.read().meta.size;
        if index >= size {
            return Err(ReadError::OutOfRange { index, size });
        }
        let key = keys::leaf(index);
        let result = self
            .store
            .get(Tree::Ledger, &key)
            .and_then(|v| v.ok_or_else(|| StoreError::corrupt(Tree::Ledger, &key, "leaf missing")));
        match result {
            Ok(bytes) => Ok(bytes),
            Err(e) => {
                self.note_corruption(&e);
                Err(ReadError::Store(e))
            }
        }
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        let current = self.read().meta.size;
        if size > current {
            return Err(ReadError::OutOfRange {
                index: size,
                size: current,
            });
        }
        inclusion_proof(&StoredNodes(&self.store), LeafIndex(index), TreeSize(size)).map_err(|e| {
            let e = generate_error(e);
            if let ReadError::Store(s) = &e {
                self.note_corruption(s);
            }
            e
        })
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ReadError> {
        let current = self.read().meta.size;
        if new > current {
            return Err(ReadError::OutOfRange {
                index: new,
                size: current,
            });
        }
        consistency_proof(&StoredNodes(&self.store), TreeSize(old), TreeSize(new))
            .map_err(generate_error)
    }

    /// A system's leaves with index >= `from`, at most `limit`; and whether more follow.
    pub fn system_leaves(
        &self,
        system: &str,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), ReadError> {
        let key = SystemKey::of(system);
        let start = keys::system(&key, from);
        let end = keys::prefix_end(&keys::system(&key, 0)[..33]);
        let rows = self.store.scan(Tree::Ledger, &start, &end, limit + 1)?;
        let more = rows.len() > limit;
        let mut leaves = Vec::with_capacity(rows.len().min(limit));
        for (k, _) in rows.into_iter().take(limit) {
            let index = keys::system_key_index(&k)
                .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &k, "bad system index key"))?;
            leaves.push(self.leaf(index)?);
        }
        Ok((leaves, more))
    }

    /// Everything a state proof for `(system, at_time)` needs, proven against the latest
    /// published checkpoint, which must cover `at_time`.
    pub fn system_history(&self, system: &str, at_time: u64) -> Result<SystemHistory, ReadError> {
        // The head proof must come from the map at the checkpoint's size; if a newer checkpoint
        // is published meanwhile, start again (leaves and proofs below it never change).
        for _ in 0..8 {
            if let Some(history) = self.try_system_history(system, at_time)? {
                return Ok(history);
            }
        }
        Err(ReadError::Invalid(
            "checkpoints moved too fast while proving; retry".into(),
        ))
    }

    fn try_system_history(
        &self,
        system: &str,
        at_time: u64,
    ) -> Result<Option<SystemHistory>, ReadError> {
        let key = SystemKey::of(system);
        let (note, cp_size) = {
            let inner = self.read();
            let note = inner
                .published_note
                .clone()
                .ok_or(ReadError::NoCheckpoint)?;
            (note, inner.meta.published_size)
        };
        let cp = Note::parse(note.as_bytes())
            .ok()
            .and_then(|n| Checkpoint::parse(&n.text).ok())
            .ok_or_else(|| ReadError::Invalid("published checkpoint does not parse".into()))?;
        if cp.time.0 < at_time {
            return Err(ReadError::Invalid(format!(
                "the latest published checkpoint covers time {} only, before {at_time}",
                cp.time
            )));
        }
        let rows = self.store.scan(
            Tree::Ledger,
            &keys::system(&key, 0),
            &keys::system(&key, cp_size),
            HISTORY_LEAVES_MAX + 2,
        )?;
        let mut leaves = Vec::new();
        let mut next = None;
        for (k, v) in rows {
            let index = keys::system_key_index(&k)
                .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &k, "bad system index key"))?;
            let time = keys::u64_be(&v)
                .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &k, "bad time"))?;
            let bytes = self.leaf(index)?;
            let proof = self.inclusion_proof(index, cp_size)?;
            if time <= at_time {
                if leaves.len() >= HISTORY_LEAVES_MAX {
                    return Err(ReadError::Invalid(format!(
                        "system has more than {HISTORY_LEAVES_MAX} records up to that time"
                    )));
                }
                leaves.push((bytes, proof));
            } else {
                next = Some((bytes, proof));
                break;
            }
        }
        let head_proof = if next.is_none() {
            let mut inner = self.write();
            if inner.meta.published_size != cp_size {
                return Ok(None);
            }
            Some(inner.published_map.prove(&key))
        } else {
            None
        };
        Ok(Some(SystemHistory {
            checkpoint: note,
            leaves,
            next,
            head_proof,
        }))
    }

    /// The leader's early check of a request, with the state machine's rules at the current
    /// state (the state machine decides again when it applies). `Some` refuses it.
    pub fn precheck(&self, group: &[SubmittedRecord]) -> Result<Option<GroupOutcome>, StoreError> {
        let inner = self.read();
        Ok(check_group(&self.store, &inner, None, group)?.err())
    }

    /// Whether these record bytes are already in the ledger, and where.
    pub fn find_record(&self, record_bytes: &[u8]) -> Result<Option<u64>, StoreError> {
        let h = *blake3::hash(record_bytes).as_bytes();
        Ok(self
            .store
            .get(Tree::Ledger, &keys::record(&h))?
            .and_then(|v| keys::u64_be(&v)))
    }

    // ----- snapshots -----

    /// Replaces or extends the ledger with leaves from a snapshot. `from` leaves are kept (their
    /// root was checked against the sender's); the rest are replayed, then the metadata set.
    pub(crate) fn install(
        &self,
        from: u64,
        header: &super::snapshot::SnapshotHeader,
        applied: Option<crate::raft::LogId>,
        membership: StoredMembership,
        mut next_leaves: impl FnMut(u64, usize) -> Result<Vec<Vec<u8>>, StoreError>,
        checkpoints: Vec<(u64, String)>,
    ) -> Result<(), StoreError> {
        let mut inner = self.write();
        if from == 0 {
            self.store.clear(Tree::Ledger)?;
            *inner = load_inner(&self.store)?;
        } else if inner.meta.size != from {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                keys::META,
                format!(
                    "snapshot continues from {from} but this node has {} leaves",
                    inner.meta.size
                ),
            ));
        }
        let mut pos = from;
        while pos < header.size {
            let chunk = next_leaves(pos, 1024)?;
            if chunk.is_empty() {
                return Err(StoreError::corrupt(
                    Tree::Staging,
                    &keys::leaf(pos),
                    "snapshot ended early",
                ));
            }
            let mut batch = Batch::new(Tree::Ledger);
            for bytes in chunk {
                self.replay_leaf(&mut inner, &mut batch, &bytes, pos)?;
                pos += 1;
            }
            self.store.write(batch)?;
        }
        if inner.frontier.root().0 != header.root {
            return Err(StoreError::corrupt(
                Tree::Staging,
                keys::META,
                format!(
                    "snapshot leaves give root {} but the sender's root is {}",
                    inner.frontier.root(),
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
        inner.meta.frontier = inner.frontier.hashes().iter().map(|h| h.0).collect();
        batch.put(keys::META.to_vec(), &encode_meta(&inner.meta)?);
        self.store.write(batch)?;
        *inner = load_inner(&self.store)?;
        self.publish_progress(&inner);
        Ok(())
    }

    fn replay_leaf(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        bytes: &[u8],
        expected: u64,
    ) -> Result<(), StoreError> {
        let bad =
            |reason: String| StoreError::corrupt(Tree::Staging, &keys::leaf(expected), reason);
        let leaf = Leaf::decode(bytes).map_err(|e| bad(e.to_string()))?;
        if leaf.index.0 != expected {
            return Err(bad(format!("leaf says index {}", leaf.index)));
        }
        let record = pb::Record::decode(leaf.record.as_slice()).map_err(|e| bad(e.to_string()))?;
        let key = SystemKey::of(&record.system);
        let previous = inner.heads.get(&key).copied();
        if leaf.prev != previous.map(|h| h.index) {
            return Err(bad(
                "back-link does not match this system's previous leaf".into()
            ));
        }
        if expected > 0 && leaf.ledger_time.0 <= inner.meta.clock {
            return Err(bad("ledger time does not increase".into()));
        }
        if let Some(Body::Policy(p)) = &record.body {
            apply_policy(inner, batch, &key, p);
        }
        let head = Head {
            index: leaf.index,
            count: previous.map_or(1, |h| h.count + 1),
        };
        let record_hash = *blake3::hash(&leaf.record).as_bytes();
        batch.put(keys::record(&record_hash), &expected.to_be_bytes());
        self.write_leaf(
            inner,
            batch,
            bytes,
            leaf_hash(bytes),
            &key,
            head,
            leaf.ledger_time.0,
        );
        Ok(())
    }
}

#[derive(Default)]
struct ApplyContext {
    /// Records appended earlier in this apply (not yet in the store).
    records: HashMap<[u8; 32], u64>,
}

fn progress_of(inner: &Inner) -> Progress {
    Progress {
        size: inner.meta.size,
        clock: inner.meta.clock,
        published_size: inner.meta.published_size,
        applied_index: inner.meta.applied.map_or(0, |l| l.index),
    }
}

fn encode_meta(meta: &LedgerMeta) -> Result<Vec<u8>, StoreError> {
    codec::encode("ledger meta", meta).map_err(|e| StoreError::corrupt(Tree::Ledger, keys::META, e))
}

/// A record of a group that passed the checks.
struct CheckedEntry {
    record: pb::Record,
    key: SystemKey,
    record_hash: [u8; 32],
    signature: [u8; 64],
}

/// Checks a group against the current state: every record valid, new and authorized (grants
/// earlier in the group count for later records). `Ok(Err(outcome))` refuses the group.
fn check_group(
    store: &Store,
    inner: &Inner,
    ctx: Option<&ApplyContext>,
    group: &[SubmittedRecord],
) -> Result<Result<Vec<CheckedEntry>, GroupOutcome>, StoreError> {
    let refuse =
        |position: usize, refusal: Refusal| Ok(Err(GroupOutcome::Refused { position, refusal }));
    let mut overlay: HashMap<(SystemKey, [u8; 32]), bool> = HashMap::new();
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut existing: Vec<(usize, u64)> = Vec::new();
    let mut checked = Vec::with_capacity(group.len());
    for (position, r) in group.iter().enumerate() {
        let record = match decode_record(&r.record) {
            Ok(record) => record,
            Err(e) => {
                return refuse(
                    position,
                    Refusal::Invalid {
                        reason: e.to_string(),
                    },
                )
            }
        };
        let Ok(signature) = <[u8; 64]>::try_from(r.signature.as_slice()) else {
            return refuse(
                position,
                Refusal::Invalid {
                    reason: "signature is not 64 bytes".into(),
                },
            );
        };
        let record_hash = *blake3::hash(&r.record).as_bytes();
        if !seen.insert(record_hash) {
            return refuse(position, Refusal::Duplicate { index: None });
        }
        let earlier = match ctx.and_then(|c| c.records.get(&record_hash).copied()) {
            Some(i) => Some(i),
            None => match store.get(Tree::Ledger, &keys::record(&record_hash))? {
                Some(v) => Some(keys::u64_be(&v).ok_or_else(|| {
                    StoreError::corrupt(
                        Tree::Ledger,
                        &keys::record(&record_hash),
                        "index is not 8 bytes",
                    )
                })?),
                None => None,
            },
        };
        if let Some(index) = earlier {
            existing.push((position, index));
            continue;
        }
        let key = SystemKey::of(&record.system);
        if let Err(reason) = authorize(inner, &overlay, &key, &record, &r.writer_key) {
            return refuse(position, Refusal::Unauthorized { reason });
        }
        if let Some(Body::Policy(p)) = &record.body {
            if let Some((writer, granted)) = grant_change(p) {
                overlay.insert((key, writer), granted);
            }
        }
        checked.push(CheckedEntry {
            record,
            key,
            record_hash,
            signature,
        });
    }
    if let Some((position, index)) = existing.first().copied() {
        if existing.len() == group.len() {
            return Ok(Err(GroupOutcome::AllDuplicates(
                existing.iter().map(|(_, i)| *i).collect(),
            )));
        }
        return refuse(position, Refusal::Duplicate { index: Some(index) });
    }
    Ok(Ok(checked))
}

fn grant_change(policy: &pb::Policy) -> Option<([u8; 32], bool)> {
    use pb::policy::Change;
    let (grant, granted) = match &policy.change {
        Some(Change::Grant(g)) => (g, true),
        Some(Change::Revoke(g)) => (g, false),
        None => return None,
    };
    let writer = <[u8; 32]>::try_from(grant.writer_key.as_slice()).ok()?;
    Some((writer, granted))
}

/// Whether `writer` may append `record` for the system with key `key` (`overlay`: grants made
/// earlier in the same request).
fn authorize(
    inner: &Inner,
    overlay: &HashMap<(SystemKey, [u8; 32]), bool>,
    key: &SystemKey,
    record: &pb::Record,
    writer: &[u8; 32],
) -> Result<(), String> {
    let Some(genesis) = &inner.meta.genesis else {
        return Err("the ledger has no genesis yet".into());
    };
    if let Some(Body::Policy(_)) = &record.body {
        if genesis.admin_keys.contains(writer) {
            return Ok(());
        }
        return Err(format!(
            "writer {} is not an admin key: policy records must be signed by an admin key of the cluster",
            hex::encode(writer)
        ));
    }
    let granted = overlay
        .get(&(*key, *writer))
        .or_else(|| inner.grants.get(&(*key, *writer)))
        .copied()
        .unwrap_or(false);
    if granted {
        Ok(())
    } else {
        Err(format!(
            "writer {} holds no grant for system {:?}: an admin must grant it with a policy record",
            hex::encode(writer),
            record.system
        ))
    }
}

fn apply_policy(inner: &mut Inner, batch: &mut Batch, key: &SystemKey, policy: &pb::Policy) {
    let Some((writer, granted)) = grant_change(policy) else {
        return;
    };
    inner.grants.insert((*key, writer), granted);
    batch.put(keys::grant(key, &writer), &[u8::from(granted)]);
}

/// A checkpoint note is publishable if it carries valid signatures of a majority of the voters in
/// every configuration of the (possibly joint) membership.
pub fn check_quorum(membership: &StoredMembership, note: &Note) -> Result<(), String> {
    let m = membership.membership();
    let verifiers: Vec<(RaftNodeId, NoteVerifier)> = m
        .nodes()
        .filter_map(|(id, info)| {
            NoteVerifier::parse(&info.checkpoint_key)
                .ok()
                .map(|v| (*id, v))
        })
        .collect();
    let all: Vec<NoteVerifier> = verifiers.iter().map(|(_, v)| v.clone()).collect();
    let signed = note
        .verify(&all)
        .map_err(|e| format!("checkpoint signature: {e}"))?;
    for config in m.get_joint_config() {
        let count = config
            .iter()
            .filter(|id| {
                verifiers
                    .iter()
                    .any(|(vid, v)| vid == *id && signed.contains(&v.name))
            })
            .count();
        if count * 2 <= config.len() {
            return Err(format!(
                "checkpoint has {count} valid voter signatures of {} voters; a majority is needed",
                config.len()
            ));
        }
    }
    Ok(())
}

/// Every leaf at or after `cp.size` must have a ledger time strictly after `cp.time`.
fn check_time(inner: &Inner, cp: &Checkpoint) -> Result<(), String> {
    if cp.size.0 == inner.meta.size {
        if inner.meta.clock < cp.time.0 {
            return Err(format!(
                "checkpoint time {} is ahead of this node's ledger clock {}",
                cp.time, inner.meta.clock
            ));
        }
        return Ok(());
    }
    let next = inner
        .pending
        .iter()
        .find(|p| p.index == cp.size.0)
        .map(|p| p.time)
        .ok_or_else(|| format!("no pending leaf at {} to check the time against", cp.size))?;
    if next <= cp.time.0 {
        return Err(format!(
            "checkpoint time {} is not before the time {next} of leaf {}",
            cp.time, cp.size
        ));
    }
    Ok(())
}

/// The head-map root at `size` (published size <= size <= current size), without moving the
/// published map for good.
fn heads_root_at(inner: &mut Inner, size: u64) -> Hash {
    let mut changes: BTreeMap<SystemKey, Head> = BTreeMap::new();
    for p in inner.pending.iter().take_while(|p| p.index < size) {
        changes.insert(p.key, p.head);
    }
    let mut undo = Vec::with_capacity(changes.len());
    for (k, h) in &changes {
        undo.push((*k, inner.published_map.get(k)));
        inner.published_map.insert(*k, *h);
    }
    let root = inner.published_map.root();
    for (k, old) in undo.into_iter().rev() {
        match old {
            Some(h) => inner.published_map.insert(k, h),
            None => inner.published_map.remove(&k),
        }
    }
    root
}

/// Reads every value (checking its checksum) and the frontier against the stored nodes.
fn verify_store(store: &Store) -> Result<(), StoreError> {
    let mut start = vec![0u8];
    loop {
        let rows = store.scan(Tree::Ledger, &start, &[0xff; 80], 4096)?;
        let Some((last, _)) = rows.last() else { break };
        start = last.clone();
        start.push(0);
        if rows.len() < 4096 {
            break;
        }
    }
    let inner = load_inner(store)?;
    let ids = Frontier::node_ids(TreeSize(inner.meta.size));
    let nodes = StoredNodes(store);
    for (id, h) in ids.iter().zip(inner.frontier.hashes()) {
        if nodes.node(*id)? != *h {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                &keys::node(*id),
                "stored node differs from the frontier",
            ));
        }
    }
    Ok(())
}

/// Builds the in-memory state from the store.
fn load_inner(store: &Store) -> Result<Inner, StoreError> {
    let meta: LedgerMeta = match store.get(Tree::Ledger, keys::META)? {
        None => LedgerMeta::default(),
        Some(bytes) => codec::decode("ledger meta", &bytes)
            .map_err(|e| StoreError::corrupt(Tree::Ledger, keys::META, e))?,
    };
    let frontier = Frontier::from_parts(
        TreeSize(meta.size),
        meta.frontier.iter().map(|h| Hash(*h)).collect(),
    )
    .map_err(|e| StoreError::corrupt(Tree::Ledger, keys::META, e))?;

    let mut heads = HashMap::new();
    for (k, v) in store.scan(Tree::Ledger, b"H", b"I", usize::MAX)? {
        let key = Hash::from_slice(&k[1..])
            .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &k, "bad head key"))?;
        let (Some(index), Some(count)) = (keys::u64_be(&v), v.get(8..).and_then(keys::u64_be))
        else {
            return Err(StoreError::corrupt(Tree::Ledger, &k, "bad head value"));
        };
        // Heads written by a partially applied snapshot install may point past the size.
        if index < meta.size {
            heads.insert(
                SystemKey(key),
                Head {
                    index: LeafIndex(index),
                    count,
                },
            );
        }
    }
    let mut grants = HashMap::new();
    for (k, v) in store.scan(Tree::Ledger, b"G", b"H", usize::MAX)? {
        let (Some(key), Some(writer)) = (
            Hash::from_slice(&k[1..33]),
            k.get(33..65).and_then(|w| <[u8; 32]>::try_from(w).ok()),
        ) else {
            return Err(StoreError::corrupt(Tree::Ledger, &k, "bad grant key"));
        };
        grants.insert((SystemKey(key), writer), v.first() == Some(&1));
    }

    // Heads at the published size, and the leaves after it.
    let published = meta.published_size;
    let mut published_map = HeadMap::new();
    let mut pending = VecDeque::new();
    let mut at_published: HashMap<SystemKey, Head> = HashMap::new();
    for (key, head) in &heads {
        if head.index.0 < published {
            at_published.insert(*key, *head);
        } else {
            let start = keys::system(key, 0);
            let end = keys::system(key, published);
            let later = store.scan(
                Tree::Ledger,
                &keys::system(key, published),
                &keys::system(key, meta.size),
                usize::MAX,
            )?;
            if let Some((k, _)) = store.last(Tree::Ledger, &start, &end)? {
                let index = keys::system_key_index(&k)
                    .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &k, "bad system index key"))?;
                at_published.insert(
                    *key,
                    Head {
                        index: LeafIndex(index),
                        count: head.count - later.len() as u64,
                    },
                );
            }
        }
    }
    for (k, h) in &at_published {
        published_map.insert(*k, *h);
    }
    let mut running = at_published;
    let mut index = published;
    while index < meta.size {
        let rows = store.scan(
            Tree::Ledger,
            &keys::leaf(index),
            &keys::leaf(meta.size),
            4096,
        )?;
        if rows.is_empty() {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                &keys::leaf(index),
                "leaf missing",
            ));
        }
        for (k, bytes) in rows {
            let leaf =
                Leaf::decode(&bytes).map_err(|e| StoreError::corrupt(Tree::Ledger, &k, e))?;
            let record = pb::Record::decode(leaf.record.as_slice())
                .map_err(|e| StoreError::corrupt(Tree::Ledger, &k, e))?;
            let key = SystemKey::of(&record.system);
            let head = Head {
                index: leaf.index,
                count: running.get(&key).map_or(1, |h| h.count + 1),
            };
            running.insert(key, head);
            pending.push_back(PendingLeaf {
                index: leaf.index.0,
                key,
                head,
                time: leaf.ledger_time.0,
            });
            index = leaf.index.0 + 1;
        }
    }
    let published_note = if published > 0 {
        store
            .get(Tree::Ledger, &keys::checkpoint(published))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    } else {
        None
    };
    Ok(Inner {
        meta,
        frontier,
        heads,
        grants,
        published_map,
        pending,
        published_note,
        corruption: None,
    })
}
