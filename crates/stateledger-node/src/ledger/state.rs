//! The ledger state machine: the Merkle log of leaves plus its indexes.
//!
//! What is stored (sled, through the checksumming [`Store`]): the leaves, in full blocks of
//! [`BLOCK_LEAVES`] consecutive leaves per value, and those of the last, open block one per value
//! (rewriting a partial block at every apply left sled a new copy of it each time); the published
//! checkpoints; and the metadata (applied log id, membership, size, Merkle frontier, ledger clock,
//! genesis). Every apply writes one batch with the metadata last, so a crash leaves the state at
//! some applied log id (plus stored leaves beyond it, ignored) and Raft replays the rest.
//!
//! What is derived, in memory: the Merkle tree nodes, the record-hash index (duplicates), each
//! system's leaves (back-links, heads, history), the writer grants, and the head map at the
//! published checkpoint. All of it follows deterministically from the leaves, and is rebuilt from
//! them at start — which also checks every stored checksum and that the leaves give the stored
//! frontier. Measured on sled 0.34, one insert costs tens of microseconds; storing a leaf as one
//! of 64 in a block and deriving the indexes cut the per-record storage cost by two orders of
//! magnitude (docs/PERFORMANCE.md).

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
    MemoryNodeStore, TreeSize,
};
use stateledger_core::note::{Note, NoteVerifier};
use stateledger_core::record::{decode_record, pb, Body, WriterKey};
use tokio::sync::watch;

use super::keys;
use super::meta::{Genesis, LedgerMeta};
use super::system_names::SystemNames;
use crate::raft::codec;
use crate::raft::{
    Appended, Command, CommandResponse, Entry, GroupOutcome, NodeId as RaftNodeId, Refusal,
    StoredMembership, SubmittedRecord,
};
use crate::sigcheck::BadGroups;
use crate::store::{Batch, Store, StoreError, Tree};

/// Leaves per stored block.
pub const BLOCK_LEAVES: u64 = 64;

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

/// The indexes derived from the leaves.
#[derive(Debug, Default)]
struct Derived {
    /// Every perfect-subtree hash of the log.
    nodes: MemoryNodeStore,
    frontier: Frontier,
    /// First 16 bytes of BLAKE3(record bytes) → leaf index (hits are confirmed on the leaf).
    records: HashMap<[u8; 16], u64>,
    /// Each system's leaves: (index, ledger time), in order.
    systems: HashMap<SystemKey, Vec<(u64, u64)>>,
    /// The systems' names (for hints when a system has no record).
    names: SystemNames,
    grants: HashMap<(SystemKey, [u8; 32]), bool>,
    /// The head map at `meta.published_size`.
    published_map: HeadMap,
    /// Leaves at or after `meta.published_size`.
    pending: VecDeque<PendingLeaf>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) meta: LedgerMeta,
    d: Derived,
    /// The leaves of the last, not yet full, block.
    open_block: Vec<Vec<u8>>,
    /// How many of them are stored (each under [`keys::open_leaf`]).
    open_stored: usize,
    published_note: Option<String>,
    corruption: Option<String>,
    /// See [`Ledger::engine_failed`].
    engine_failed: bool,
    /// Groups refused because a signature did not verify (each kept under `keys::evidence`).
    bad_signature_groups: u64,
}

/// The ledger. Shared (`Arc`) between the Raft state machine, the services and the checkpointer.
#[derive(Debug)]
pub struct Ledger {
    store: Store,
    /// See [`Ledger::verified`].
    verified: Arc<crate::sigcheck::Verified>,
    inner: RwLock<Inner>,
    progress: watch::Sender<Progress>,
    /// Simulation only: the known-bad behaviours of the state machine (`crate::known_bad`).
    #[cfg(madsim)]
    known_bad: std::sync::OnceLock<crate::known_bad::KnownBad>,
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

fn generate_error(e: GenerateError<std::convert::Infallible>) -> ReadError {
    ReadError::Invalid(e.to_string())
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

fn record_key(record_bytes: &[u8]) -> ([u8; 32], [u8; 16]) {
    let full = *blake3::hash(record_bytes).as_bytes();
    let mut short = [0u8; 16];
    short.copy_from_slice(&full[..16]);
    (full, short)
}

/// Encodes a block: each leaf as u32 big-endian length then bytes.
fn encode_block(leaves: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leaves.iter().map(|l| l.len() + 4).sum());
    for l in leaves {
        out.extend_from_slice(&(l.len() as u32).to_be_bytes());
        out.extend_from_slice(l);
    }
    out
}

fn decode_block(block: u64, bytes: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut leaves = Vec::with_capacity(BLOCK_LEAVES as usize);
    let mut rest = bytes;
    while !rest.is_empty() {
        let bad = || {
            StoreError::corrupt(
                Tree::Ledger,
                &keys::block(block),
                "block is not a sequence of leaves",
            )
        };
        let len = u32::from_be_bytes(
            rest.get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?,
        ) as usize;
        let leaf = rest.get(4..4 + len).ok_or_else(bad)?;
        leaves.push(leaf.to_vec());
        rest = &rest[4 + len..];
    }
    if leaves.len() as u64 > BLOCK_LEAVES {
        return Err(StoreError::corrupt(
            Tree::Ledger,
            &keys::block(block),
            "block holds too many leaves",
        ));
    }
    Ok(leaves)
}

impl Ledger {
    /// Loads the ledger: reads every block (checking its checksum), rebuilds the derived indexes
    /// and checks the leaves give the stored Merkle frontier. With `verify_all`, every stored
    /// checkpoint note's checksum is checked too (otherwise only the latest one is read, and the
    /// others are checked when served). Corruption refuses the open.
    pub fn open(store: Store, verify_all: bool) -> Result<Arc<Ledger>, StoreError> {
        let inner = load_inner(&store)?;
        if verify_all {
            let end = keys::prefix_end(b"C");
            let mut from = keys::checkpoint(0);
            loop {
                let rows = store.scan(Tree::Ledger, &from, &end, 1024)?;
                let Some((last, _)) = rows.last() else { break };
                for (k, v) in &rows {
                    if std::str::from_utf8(v).is_err() {
                        return Err(StoreError::corrupt(
                            Tree::Ledger,
                            k,
                            "checkpoint note is not UTF-8",
                        ));
                    }
                }
                from = last.clone();
                from.push(0);
            }
        }
        let progress = progress_of(&inner);
        let (tx, _) = watch::channel(progress);
        Ok(Arc::new(Ledger {
            store,
            verified: Default::default(),
            inner: RwLock::new(inner),
            progress: tx,
            #[cfg(madsim)]
            known_bad: std::sync::OnceLock::new(),
        }))
    }

    /// Simulation only: re-introduces known-bad behaviours of the state machine (set once).
    #[cfg(madsim)]
    pub fn set_known_bad(&self, known_bad: crate::known_bad::KnownBad) {
        let _ = self.known_bad.set(known_bad);
    }

    /// Simulation only: the known-bad behaviours set (none until set).
    #[cfg(madsim)]
    pub(crate) fn known_bad(&self) -> crate::known_bad::KnownBad {
        self.known_bad.get().copied().unwrap_or_default()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic under this lock already failed; recover the guard rather than cascade.
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
        let engine = matches!(e, StoreError::Kv(k) if k.is_engine_failure());
        if matches!(e, StoreError::Corrupt { .. }) || engine {
            let mut inner = self.write();
            if inner.corruption.is_none() {
                tracing::error!(error = %e, "stored data is corrupt; refusing to serve it");
                inner.corruption = Some(e.to_string());
            }
            inner.engine_failed |= engine;
        }
    }

    /// The storage engine itself failed on damaged files: nothing it holds can be trusted, and
    /// the node stops (`crate::node`).
    pub fn engine_failed(&self) -> bool {
        self.read().engine_failed
    }

    pub fn corruption(&self) -> Option<String> {
        self.read().corruption.clone()
    }

    /// How many record groups this node refused at apply for a bad signature.
    pub fn bad_signature_groups(&self) -> u64 {
        self.read().bad_signature_groups
    }

    /// The groups refused for a bad signature, as kept (`keys::evidence`), oldest first.
    pub fn evidence(&self) -> Result<Vec<Evidence>, StoreError> {
        let start = keys::evidence(0, 0);
        let end = keys::prefix_end(&[start[0]]);
        let rows = self.store.scan(Tree::Ledger, &start, &end, usize::MAX)?;
        rows.into_iter()
            .map(|(k, v)| {
                codec::decode("evidence", &v).map_err(|e| StoreError::corrupt(Tree::Ledger, &k, e))
            })
            .collect()
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
        self.read().d.frontier.root()
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
        Ok(root_at(&inner, size))
    }

    // ----- apply -----

    /// Which groups of `entries` hold a record whose signature does not verify
    /// (`crate::sigcheck::check_entries`). This is the one place where every node checks the
    /// records it is about to apply (and so, later, cosign); nothing else decides it.
    pub fn signature_verdicts(&self, entries: &[Entry]) -> BadGroups {
        crate::sigcheck::check_entries(entries, &self.verified)
    }

    /// Records this node verified at submission (as leader), which it need not verify again
    /// when it applies them (`crate::sigcheck::Verified`).
    pub fn verified(&self) -> Arc<crate::sigcheck::Verified> {
        self.verified.clone()
    }

    /// Applies committed entries in order, writing one atomic batch (checks their signatures
    /// first, inline: [`Ledger::apply_checked`] takes verdicts computed elsewhere).
    pub fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<CommandResponse>, StoreError> {
        let bad = self.signature_verdicts(&entries);
        self.apply_checked(entries, &bad)
    }

    /// Applies committed entries in order, writing one atomic batch. `bad` are the groups whose
    /// signatures do not verify ([`Ledger::signature_verdicts`] of the same entries): each is
    /// refused, and kept under `keys::evidence` with the entry's leader.
    pub fn apply_checked(
        &self,
        entries: Vec<Entry>,
        bad: &BadGroups,
    ) -> Result<Vec<CommandResponse>, StoreError> {
        let mut inner = self.write();
        let mut batch = Batch::new(Tree::Ledger);
        let mut ctx = ApplyContext::default();
        let mut responses = Vec::with_capacity(entries.len());
        let meta_first = known_bad!(self.known_bad(), LedgerMetaWrittenFirst);
        for entry in entries {
            let response = match entry.payload {
                openraft::EntryPayload::Blank => CommandResponse::None,
                openraft::EntryPayload::Membership(m) => {
                    inner.meta.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResponse::None
                }
                openraft::EntryPayload::Normal(command) => {
                    let at = Applying {
                        log_id: entry.log_id,
                        bad,
                    };
                    self.apply_command(&mut inner, &mut batch, &mut ctx, command, &at)?
                }
            };
            inner.meta.applied = Some(entry.log_id);
            responses.push(response);
        }
        write_blocks(&mut inner, &mut batch, &mut ctx);
        inner.meta.frontier = inner.d.frontier.hashes().iter().map(|h| h.0).collect();
        // Last: a crash may cut this batch (sled keeps a prefix of its operations), and the
        // metadata is what says the apply happened. Without it, the leaves already written
        // beyond the stored size are ignored at start and the entries are applied again.
        // (KNOWN-BAD, simulation only, with `meta_first`: written first.)
        let meta = encode_meta(&inner.meta)?;
        if meta_first {
            #[cfg(madsim)]
            batch.put_first(keys::META.to_vec(), &meta);
        } else {
            batch.put(keys::META.to_vec(), &meta);
        }
        remove_obsolete(&mut batch, &mut ctx);
        if let Err(e) = self.store.write(batch) {
            // Memory is ahead of what is stored: go back to the stored state (the one before
            // this apply: its metadata is written last), so that the apply can be tried again.
            let (corruption, engine_failed) = (inner.corruption.take(), inner.engine_failed);
            *inner = load_inner(&self.store)?;
            inner.corruption = corruption;
            inner.engine_failed = engine_failed;
            return Err(e);
        }
        self.publish_progress(&inner);
        Ok(responses)
    }

    fn apply_command(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        ctx: &mut ApplyContext,
        command: Command,
        at: &Applying<'_>,
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
                for (g, group) in groups.into_iter().enumerate() {
                    if let Some((position, reason)) = at.bad.get(&(at.log_id.index, g)) {
                        outcomes.push(refuse_unsigned(
                            inner, batch, at.log_id, g, group, *position, reason,
                        )?);
                        continue;
                    }
                    outcomes.push(self.append_group(inner, ctx, group, proposed_time)?);
                }
                Ok(CommandResponse::Appended(outcomes))
            }
            Command::PublishCheckpoint { note } => {
                self.publish_checkpoint(inner, batch, &ctx.full_blocks, &note)
            }
        }
    }

    fn append_group(
        &self,
        inner: &mut Inner,
        ctx: &mut ApplyContext,
        group: Vec<SubmittedRecord>,
        proposed_time: u64,
    ) -> Result<GroupOutcome, StoreError> {
        let checked = match check_group(self, inner, &ctx.full_blocks, &group)? {
            Ok(checked) => checked,
            Err(outcome) => return Ok(outcome),
        };
        let mut appended = Vec::with_capacity(group.len());
        // KNOWN-BAD (simulation only) when set: the monotonic guard starts afresh per request.
        let time_backwards = known_bad!(self.known_bad(), LedgerTimeBackwards);
        let mut group_clock = 0;
        for (r, c) in group.into_iter().zip(checked) {
            let index = inner.meta.size;
            let floor = if time_backwards {
                group_clock
            } else {
                inner.meta.clock
            };
            let time = LedgerTime::next_after(LedgerTime(floor), LedgerTime(proposed_time)).0;
            group_clock = time;
            let entries = inner.d.systems.get(&c.key);
            let prev = if known_bad!(self.known_bad(), BacklinkWrongPredecessor) {
                // KNOWN-BAD, simulation only: the wrong predecessor.
                entries.and_then(|v| v.first())
            } else {
                entries.and_then(|v| v.last())
            }
            .map(|(i, _)| LeafIndex(*i));
            let leaf = Leaf {
                index: LeafIndex(index),
                ledger_time: LedgerTime(time),
                prev,
                writer_key: WriterKey(r.writer_key),
                signature: c.signature,
                record: r.record,
            };
            let bytes = leaf.encode();
            let lh = leaf_hash(&bytes);
            add_leaf(inner, &c.key, c.short_hash, &c.record, index, time, lh);
            if known_bad!(self.known_bad(), HeadMapNotUpdated) {
                // KNOWN-BAD, simulation only: the leaf never reaches the head map.
                inner.d.pending.pop_back();
            }
            push_leaf(inner, ctx, bytes);
            appended.push(Appended {
                index,
                time,
                leaf_hash: lh.0,
            });
        }
        Ok(GroupOutcome::Appended(appended))
    }

    fn publish_checkpoint(
        &self,
        inner: &mut Inner,
        batch: &mut Batch,
        sealed: &[(u64, Vec<Vec<u8>>)],
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
        let root = root_at(inner, cp.size.0);
        if root != cp.root {
            let msg = format!(
                "a quorum signed root {} at size {} but this node computed {root}: this node's ledger diverged",
                cp.root, cp.size
            );
            inner.corruption = Some(msg.clone());
            tracing::error!("{msg}");
            return refuse(msg);
        }
        if let Err(reason) = check_time(self, inner, sealed, &cp) {
            return refuse(reason);
        }
        // Advance the published head map to the checkpoint's size.
        let mut latest: BTreeMap<SystemKey, Head> = BTreeMap::new();
        while inner.d.pending.front().is_some_and(|p| p.index < cp.size.0) {
            if let Some(p) = inner.d.pending.pop_front() {
                latest.insert(p.key, p.head);
            }
        }
        for (k, h) in latest {
            inner.d.published_map.insert(k, h);
        }
        let heads_root = inner.d.published_map.root();
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
            root: inner.d.frontier.root(),
            time: LedgerTime(inner.meta.clock),
            heads_root,
        })
    }

    /// Checks that this node computed exactly this checkpoint: same origin, root and head root at
    /// that size, and the time promise holds (every leaf before `size` is at or before `time`,
    /// every leaf at or after it later).
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
        let root = root_at(&inner, cp.size.0);
        if root != cp.root {
            return Err(format!(
                "root {} differs from this node's root {root} at size {}",
                cp.root, cp.size
            ));
        }
        check_time(self, &inner, &[], cp)?;
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

    /// The published checkpoint note of exactly `size`, if stored. Corruption is noted (and
    /// reported in the status) as well as returned.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        let bytes = self
            .store
            .get(Tree::Ledger, &keys::checkpoint(size))
            .inspect_err(|e| self.note_corruption(e))?;
        bytes
            .map(|b| {
                String::from_utf8(b).map_err(|_| {
                    let e = StoreError::corrupt(
                        Tree::Ledger,
                        &keys::checkpoint(size),
                        "checkpoint note is not UTF-8",
                    );
                    self.note_corruption(&e);
                    e
                })
            })
            .transpose()
    }

    /// Which checkpoint sizes were published near `size`, said for a person who asked for a
    /// size at which none was: the nearest few below and above (`checkpoint_at` is exact).
    pub fn checkpoint_sizes_near(&self, size: u64) -> Result<String, StoreError> {
        const EACH_SIDE: usize = 3;
        let size_of = |key: &[u8]| keys::u64_be(&key[1..]).unwrap_or(0);
        let first = keys::checkpoint(0);
        let mut below = Vec::new();
        let mut end = keys::checkpoint(size);
        while below.len() < EACH_SIDE {
            match self.store.last(Tree::Ledger, &first, &end)? {
                Some((key, _)) => {
                    below.push(size_of(&key));
                    end = key;
                }
                None => break,
            }
        }
        below.reverse();
        let above: Vec<u64> = self
            .store
            .scan(
                Tree::Ledger,
                &keys::checkpoint(size.saturating_add(1)),
                &keys::prefix_end(b"C"),
                EACH_SIDE,
            )?
            .iter()
            .map(|(key, _)| size_of(key))
            .collect();
        let list = |sizes: &[u64]| {
            sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Ok(match (below.is_empty(), above.is_empty()) {
            (true, true) => "no checkpoint has been published yet".to_string(),
            (false, true) => format!(
                "the published sizes nearest below it are {} (the latest)",
                list(&below)
            ),
            (true, false) => format!(
                "the first published sizes are {} (none is smaller)",
                list(&above)
            ),
            (false, false) => format!(
                "the published sizes nearest to it are {} below and {} above",
                list(&below),
                list(&above)
            ),
        })
    }

    /// Up to `limit` names of systems in the ledger close to `name` (see [`SystemNames::near`]).
    pub fn systems_near(&self, name: &str, limit: usize) -> Vec<String> {
        self.read().d.names.near(name, limit)
    }

    // ----- reads -----

    /// The leaf at `index`, from the open block in memory or its stored block.
    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, ReadError> {
        let block = index / BLOCK_LEAVES;
        {
            let inner = self.read();
            if index >= inner.meta.size {
                return Err(ReadError::OutOfRange {
                    index,
                    size: inner.meta.size,
                });
            }
            if block == inner.meta.size / BLOCK_LEAVES {
                return Ok(inner.open_block[(index % BLOCK_LEAVES) as usize].clone());
            }
        }
        match read_block(&self.store, block) {
            Ok(leaves) => leaves
                .into_iter()
                .nth((index % BLOCK_LEAVES) as usize)
                .ok_or_else(|| {
                    let e = StoreError::corrupt(
                        Tree::Ledger,
                        &keys::block(block),
                        "block is missing a leaf",
                    );
                    self.note_corruption(&e);
                    ReadError::Store(e)
                }),
            Err(e) => {
                self.note_corruption(&e);
                Err(ReadError::Store(e))
            }
        }
    }

    /// Up to `count` consecutive leaves from `start` (snapshot sending).
    pub fn leaf_range(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        let end = start.saturating_add(count).min(self.read().meta.size);
        let indexes: Vec<u64> = (start..end).collect();
        self.leaves(&indexes)
    }

    /// Leaves at several indexes (one block read per block).
    fn leaves(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut cached: Option<(u64, Vec<Vec<u8>>)> = None;
        for &i in indexes {
            let block = i / BLOCK_LEAVES;
            let open = {
                let inner = self.read();
                if i >= inner.meta.size {
                    return Err(ReadError::OutOfRange {
                        index: i,
                        size: inner.meta.size,
                    });
                }
                (block == inner.meta.size / BLOCK_LEAVES)
                    .then(|| inner.open_block[(i % BLOCK_LEAVES) as usize].clone())
            };
            if let Some(leaf) = open {
                out.push(leaf);
                continue;
            }
            if cached.as_ref().map(|(b, _)| *b) != Some(block) {
                let leaves =
                    read_block(&self.store, block).inspect_err(|e| self.note_corruption(e))?;
                cached = Some((block, leaves));
            }
            let leaf = cached
                .as_ref()
                .and_then(|(_, l)| l.get((i % BLOCK_LEAVES) as usize))
                .cloned()
                .ok_or_else(|| {
                    ReadError::Store(StoreError::corrupt(
                        Tree::Ledger,
                        &keys::block(block),
                        "block is missing a leaf",
                    ))
                })?;
            out.push(leaf);
        }
        Ok(out)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        let inner = self.read();
        if size > inner.meta.size {
            return Err(ReadError::OutOfRange {
                index: size,
                size: inner.meta.size,
            });
        }
        inclusion_proof(&inner.d.nodes, LeafIndex(index), TreeSize(size)).map_err(generate_error)
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ReadError> {
        let inner = self.read();
        if new > inner.meta.size {
            return Err(ReadError::OutOfRange {
                index: new,
                size: inner.meta.size,
            });
        }
        consistency_proof(&inner.d.nodes, TreeSize(old), TreeSize(new)).map_err(generate_error)
    }

    /// A system's leaves with index >= `from`, at most `limit`; and whether more follow.
    pub fn system_leaves(
        &self,
        system: &str,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), ReadError> {
        let key = SystemKey::of(system);
        let (indexes, more) = {
            let inner = self.read();
            let all = inner.d.systems.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let start = all.partition_point(|(i, _)| *i < from);
            let rest = &all[start..];
            (
                rest.iter().take(limit).map(|(i, _)| *i).collect::<Vec<_>>(),
                rest.len() > limit,
            )
        };
        Ok((self.leaves(&indexes)?, more))
    }

    /// Everything a state proof for `(system, at_time)` needs, proven against the latest
    /// published checkpoint, which must cover `at_time`.
    pub fn system_history(&self, system: &str, at_time: u64) -> Result<SystemHistory, ReadError> {
        let key = SystemKey::of(system);
        // Proofs, the head proof and the chain are taken under one lock: the published map and
        // note cannot move meanwhile. Only leaf bytes are read after (they never change).
        let (note, shown, next, proofs, next_proof, head_proof) = {
            let mut inner = self.write();
            let note = inner
                .published_note
                .clone()
                .ok_or(ReadError::NoCheckpoint)?;
            let cp_size = inner.meta.published_size;
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
            let all = inner.d.systems.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let within = &all[..all.partition_point(|(i, _)| *i < cp_size)];
            let upto = within.partition_point(|(_, t)| *t <= at_time);
            if upto > HISTORY_LEAVES_MAX {
                return Err(ReadError::Invalid(format!(
                    "system has more than {HISTORY_LEAVES_MAX} records up to that time"
                )));
            }
            let shown: Vec<u64> = within[..upto].iter().map(|(i, _)| *i).collect();
            let next: Option<u64> = within.get(upto).map(|(i, _)| *i);
            let proofs = shown
                .iter()
                .map(|i| {
                    inclusion_proof(&inner.d.nodes, LeafIndex(*i), TreeSize(cp_size))
                        .map_err(generate_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let next_proof = match next {
                Some(i) => Some(
                    inclusion_proof(&inner.d.nodes, LeafIndex(i), TreeSize(cp_size))
                        .map_err(generate_error)?,
                ),
                None => None,
            };
            let head_proof = next.is_none().then(|| inner.d.published_map.prove(&key));
            (note, shown, next, proofs, next_proof, head_proof)
        };
        let leaves = self.leaves(&shown)?;
        let next = match (next, next_proof) {
            (Some(i), Some(p)) => Some((self.leaf(i)?, p)),
            _ => None,
        };
        Ok(SystemHistory {
            checkpoint: note,
            leaves: leaves.into_iter().zip(proofs).collect(),
            next,
            head_proof,
        })
    }

    /// The leader's early check of a request, with the state machine's rules at the current
    /// state (the state machine decides again when it applies). `Some` refuses it.
    pub fn precheck(&self, group: &[SubmittedRecord]) -> Result<Option<GroupOutcome>, StoreError> {
        let inner = self.read();
        Ok(check_group(self, &inner, &[], group)?.err())
    }

    /// Whether these record bytes are already in the ledger, and where.
    pub fn find_record(&self, record_bytes: &[u8]) -> Result<Option<u64>, StoreError> {
        let inner = self.read();
        find_record(self, &inner, &[], record_bytes)
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
        let mut pos = from;
        // The node may have applied committed entries from its own log while the snapshot
        // streamed (the sender chose `from` when it began): those leaves are the snapshot's
        // too — checked here — and are kept (simulation seed 100 on 3 nodes: a restarted
        // follower re-applied 4 leaves meanwhile, and the install stopped Raft).
        while pos < inner.meta.size {
            let want = (inner.meta.size - pos).min(4096) as usize;
            let chunk = next_leaves(pos, want)?;
            if chunk.is_empty() {
                return Err(StoreError::corrupt(
                    Tree::Staging,
                    &keys::leaf(pos),
                    "snapshot ended early",
                ));
            }
            for bytes in chunk {
                if leaf_bytes(&self.store, &inner, &[], pos)?.as_deref() != Some(bytes.as_slice()) {
                    return Err(StoreError::corrupt(
                        Tree::Staging,
                        &keys::leaf(pos),
                        format!("snapshot leaf {pos} differs from this node's leaf {pos}"),
                    ));
                }
                pos += 1;
            }
        }
        let mut ctx = ApplyContext::default();
        while pos < header.size {
            let chunk = next_leaves(pos, 4096)?;
            if chunk.is_empty() {
                return Err(StoreError::corrupt(
                    Tree::Staging,
                    &keys::leaf(pos),
                    "snapshot ended early",
                ));
            }
            let mut batch = Batch::new(Tree::Ledger);
            for bytes in chunk {
                replay_leaf(&mut inner, &bytes, pos, Tree::Staging)?;
                push_leaf(&mut inner, &mut ctx, bytes);
                pos += 1;
            }
            write_blocks(&mut inner, &mut batch, &mut ctx);
            self.store.write(batch)?;
        }
        if inner.d.frontier.root().0 != header.root {
            return Err(StoreError::corrupt(
                Tree::Staging,
                keys::META,
                format!(
                    "snapshot leaves give root {} but the sender's root is {}",
                    inner.d.frontier.root(),
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
        inner.meta.frontier = inner.d.frontier.hashes().iter().map(|h| h.0).collect();
        batch.put(keys::META.to_vec(), &encode_meta(&inner.meta)?);
        remove_obsolete(&mut batch, &mut ctx);
        self.store.write(batch)?;
        *inner = load_inner(&self.store)?;
        self.publish_progress(&inner);
        Ok(())
    }
}

/// The entry being applied, and the groups of this apply whose signatures do not verify.
struct Applying<'a> {
    log_id: crate::raft::LogId,
    bad: &'a BadGroups,
}

/// What a node keeps of a group it refused for a bad signature: the leader's entry, as evidence
/// (`keys::evidence`, postcard). The Raft log holds the entry too, but only until it is purged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    pub log_id: crate::raft::LogId,
    /// The group's number within the entry.
    pub group: u32,
    /// Which record does not verify, and why.
    pub position: u32,
    pub reason: String,
    pub records: Vec<SubmittedRecord>,
}

/// Refuses a group of an entry the leader proposed although a record's signature does not
/// verify: nothing of it is appended, the group is kept as evidence, and the node says so.
fn refuse_unsigned(
    inner: &mut Inner,
    batch: &mut Batch,
    log_id: crate::raft::LogId,
    group: usize,
    records: Vec<SubmittedRecord>,
    position: usize,
    reason: &str,
) -> Result<GroupOutcome, StoreError> {
    let leader = log_id.leader_id.node_id;
    tracing::error!(
        log_index = log_id.index,
        leader,
        group,
        position,
        "the leader proposed a record whose signature does not verify ({reason}); refused it, \
         and kept the entry as evidence"
    );
    let evidence = Evidence {
        log_id,
        group: group as u32,
        position: position as u32,
        reason: reason.to_string(),
        records,
    };
    let bytes = codec::encode("evidence", &evidence).map_err(|e| {
        StoreError::corrupt(Tree::Ledger, &keys::evidence(log_id.index, group as u32), e)
    })?;
    batch.put(keys::evidence(log_id.index, group as u32), &bytes);
    inner.bad_signature_groups += 1;
    Ok(GroupOutcome::Refused {
        position,
        refusal: Refusal::BadSignature {
            reason: format!(
                "record {position}: {reason} (the leader, node {leader}, proposed it unchecked)"
            ),
        },
    })
}

#[derive(Default)]
struct ApplyContext {
    /// Blocks filled during this apply, not yet in the batch.
    full_blocks: Vec<(u64, Vec<Vec<u8>>)>,
    /// For each of them, how many of its leaves had been stored on their own.
    stored_singly: Vec<usize>,
    /// Single leaves the filled blocks replace: removed only after the metadata is written,
    /// because until then the stored state (the one before this apply) still reads them.
    obsolete: Vec<Vec<u8>>,
}

/// Adds a leaf's bytes to the open block, closing it when full.
fn push_leaf(inner: &mut Inner, ctx: &mut ApplyContext, bytes: Vec<u8>) {
    inner.open_block.push(bytes);
    if inner.open_block.len() as u64 == BLOCK_LEAVES {
        let block = (inner.meta.size - 1) / BLOCK_LEAVES;
        ctx.full_blocks
            .push((block, std::mem::take(&mut inner.open_block)));
        ctx.stored_singly
            .push(std::mem::take(&mut inner.open_stored));
    }
}

/// Puts what an apply changed into its batch: each block it filled, and each new leaf of the
/// open block on its own. The single leaves a filled block replaces go in
/// [`remove_obsolete`], after the metadata.
fn write_blocks(inner: &mut Inner, batch: &mut Batch, ctx: &mut ApplyContext) {
    for ((block, leaves), stored) in ctx.full_blocks.drain(..).zip(ctx.stored_singly.drain(..)) {
        batch.put(keys::block(block), &encode_block(&leaves));
        for j in 0..stored as u64 {
            ctx.obsolete.push(keys::open_leaf(block * BLOCK_LEAVES + j));
        }
    }
    let first = inner.meta.size - inner.open_block.len() as u64;
    for (j, leaf) in inner.open_block.iter().enumerate().skip(inner.open_stored) {
        batch.put(keys::open_leaf(first + j as u64), leaf);
    }
    inner.open_stored = inner.open_block.len();
}

/// Removes the single leaves that filled blocks replaced (after the metadata: a crash that
/// keeps some of them leaves only keys that the start ignores).
fn remove_obsolete(batch: &mut Batch, ctx: &mut ApplyContext) {
    for key in ctx.obsolete.drain(..) {
        batch.remove(key);
    }
}

fn read_block(store: &Store, block: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let key = keys::block(block);
    let bytes = store
        .get(Tree::Ledger, &key)?
        .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &key, "block missing"))?;
    decode_block(block, &bytes)
}

/// Updates every derived index for a new leaf.
fn add_leaf(
    inner: &mut Inner,
    key: &SystemKey,
    short_hash: [u8; 16],
    record: &pb::Record,
    index: u64,
    time: u64,
    lh: Hash,
) {
    let d = &mut inner.d;
    d.frontier.append(lh, |_, _| {});
    d.nodes.append(lh);
    d.records.entry(short_hash).or_insert(index);
    let entries = d.systems.entry(*key).or_default();
    if entries.is_empty() {
        d.names.insert(&record.system);
    }
    entries.push((index, time));
    let head = Head {
        index: LeafIndex(index),
        count: entries.len() as u64,
    };
    d.pending.push_back(PendingLeaf {
        index,
        key: *key,
        head,
        time,
    });
    if let Some(Body::Policy(p)) = &record.body {
        if let Some((writer, granted)) = grant_change(p) {
            d.grants.insert((*key, writer), granted);
        }
    }
    inner.meta.size = index + 1;
    inner.meta.clock = time;
}

/// Checks a stored leaf against what the state machine would have assigned, and indexes it.
fn replay_leaf(
    inner: &mut Inner,
    bytes: &[u8],
    expected: u64,
    tree: Tree,
) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::corrupt(tree, &keys::leaf(expected), reason);
    let leaf = Leaf::decode(bytes).map_err(|e| bad(e.to_string()))?;
    if leaf.index.0 != expected {
        return Err(bad(format!("leaf says index {}", leaf.index)));
    }
    let record = pb::Record::decode(leaf.record.as_slice()).map_err(|e| bad(e.to_string()))?;
    let key = SystemKey::of(&record.system);
    let previous = inner
        .d
        .systems
        .get(&key)
        .and_then(|v| v.last())
        .map(|(i, _)| LeafIndex(*i));
    if leaf.prev != previous {
        return Err(bad(
            "back-link does not match this system's previous leaf".into()
        ));
    }
    if expected > 0 && leaf.ledger_time.0 <= inner.meta.clock {
        return Err(bad("ledger time does not increase".into()));
    }
    let (_, short) = record_key(&leaf.record);
    add_leaf(
        inner,
        &key,
        short,
        &record,
        expected,
        leaf.ledger_time.0,
        leaf_hash(bytes),
    );
    Ok(())
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

/// The root of the first `size` leaves (at most the current size).
fn root_at(inner: &Inner, size: u64) -> Hash {
    if size == inner.meta.size {
        return inner.d.frontier.root();
    }
    match root_from_store(&inner.d.nodes, TreeSize(size)) {
        Ok(h) => h,
        Err(never) => match never {},
    }
}

/// Where these record bytes already are in the ledger (confirmed on the stored leaf).
/// `sealed`: blocks an apply in progress filled and has not written yet (their stored versions
/// lack their last leaves).
fn find_record(
    ledger: &Ledger,
    inner: &Inner,
    sealed: &[(u64, Vec<Vec<u8>>)],
    record_bytes: &[u8],
) -> Result<Option<u64>, StoreError> {
    let (_, short) = record_key(record_bytes);
    let Some(&index) = inner.d.records.get(&short) else {
        return Ok(None);
    };
    // A 128-bit prefix collision is not expected; confirm on the leaf itself.
    let block = index / BLOCK_LEAVES;
    let leaf_bytes = leaf_bytes(&ledger.store, inner, sealed, index)?;
    // The index names a leaf the ledger holds: not finding it is an inconsistency, never "not a
    // duplicate" (that would append the record twice).
    let leaf_bytes = leaf_bytes.ok_or_else(|| {
        StoreError::corrupt(
            Tree::Ledger,
            &keys::block(block),
            format!("leaf {index}, named by the record index, is not in its block"),
        )
    })?;
    let leaf = Leaf::decode(&leaf_bytes)
        .map_err(|e| StoreError::corrupt(Tree::Ledger, &keys::block(block), e))?;
    Ok((leaf.record == record_bytes).then_some(leaf.index.0))
}

/// A record of a group that passed the checks.
struct CheckedEntry {
    record: pb::Record,
    key: SystemKey,
    short_hash: [u8; 16],
    signature: [u8; 64],
}

/// Checks a group against the current state: every record valid, new and authorized (grants
/// earlier in the group count for later records). `Ok(Err(outcome))` refuses the group.
fn check_group(
    ledger: &Ledger,
    inner: &Inner,
    sealed: &[(u64, Vec<Vec<u8>>)],
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
        let (full, short) = record_key(&r.record);
        if !seen.insert(full) {
            return refuse(position, Refusal::Duplicate { index: None });
        }
        let skip_duplicates = known_bad!(ledger.known_bad(), DuplicateCheckSkipped);
        if let Some(index) = find_record(ledger, inner, sealed, &r.record)?
            // KNOWN-BAD (simulation only) when set: the duplicate index is not consulted.
            .filter(|_| !skip_duplicates)
        {
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
            short_hash: short,
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
        .or_else(|| inner.d.grants.get(&(*key, *writer)))
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

/// The ledger time of leaf `index` (< size): from the pending leaves, or its stored block.
fn leaf_time(
    ledger: &Ledger,
    inner: &Inner,
    sealed: &[(u64, Vec<Vec<u8>>)],
    index: u64,
) -> Option<u64> {
    if let Ok(i) = inner.d.pending.binary_search_by_key(&index, |p| p.index) {
        return inner.d.pending.get(i).map(|p| p.time);
    }
    let bytes = leaf_bytes(&ledger.store, inner, sealed, index).ok()??;
    Leaf::decode(&bytes).ok().map(|l| l.ledger_time.0)
}

/// The bytes of leaf `index` as the state machine sees them, also in the middle of an apply:
/// from the open block, from a block the apply filled but has not written yet (`sealed`), or
/// from its stored block. `None` when that block does not hold the leaf.
fn leaf_bytes(
    store: &Store,
    inner: &Inner,
    sealed: &[(u64, Vec<Vec<u8>>)],
    index: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let block = index / BLOCK_LEAVES;
    let at = (index % BLOCK_LEAVES) as usize;
    if block == inner.meta.size / BLOCK_LEAVES {
        return Ok(inner.open_block.get(at).cloned());
    }
    if let Some((_, leaves)) = sealed.iter().find(|(b, _)| *b == block) {
        return Ok(leaves.get(at).cloned());
    }
    Ok(read_block(store, block)?.into_iter().nth(at))
}

/// The time promise of a checkpoint at this node: every leaf before `cp.size` is at or before
/// `cp.time`, every leaf at or after it strictly later.
fn check_time(
    ledger: &Ledger,
    inner: &Inner,
    sealed: &[(u64, Vec<Vec<u8>>)],
    cp: &Checkpoint,
) -> Result<(), String> {
    if cp.size.0 > 0 {
        let last = cp.size.0 - 1;
        let t = leaf_time(ledger, inner, sealed, last)
            .ok_or_else(|| format!("cannot read the time of leaf {last}"))?;
        if t > cp.time.0 {
            return Err(format!(
                "checkpoint time {} is before the time {t} of its last leaf {last}",
                cp.time
            ));
        }
    }
    if cp.size.0 == inner.meta.size {
        if inner.meta.clock < cp.time.0 {
            return Err(format!(
                "checkpoint time {} is ahead of this node's ledger clock {}",
                cp.time, inner.meta.clock
            ));
        }
        return Ok(());
    }
    let next = leaf_time(ledger, inner, sealed, cp.size.0)
        .ok_or_else(|| format!("cannot read the time of leaf {}", cp.size))?;
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
    for p in inner.d.pending.iter().take_while(|p| p.index < size) {
        changes.insert(p.key, p.head);
    }
    let map = &mut inner.d.published_map;
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

/// Builds the in-memory state from the store: every block read (checksums checked), every leaf
/// replayed into the derived indexes, the rebuilt frontier compared with the stored one.
fn load_inner(store: &Store) -> Result<Inner, StoreError> {
    let meta: LedgerMeta = match store.get(Tree::Ledger, keys::META)? {
        None => LedgerMeta::default(),
        Some(bytes) => codec::decode("ledger meta", &bytes)
            .map_err(|e| StoreError::corrupt(Tree::Ledger, keys::META, e))?,
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
        d: Derived::default(),
        open_block: Vec::new(),
        open_stored: 0,
        published_note: None,
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
        let rows = store.scan(Tree::Ledger, &keys::block(block), &keys::block(blocks), 256)?;
        if rows.is_empty() {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                &keys::block(block),
                "block missing",
            ));
        }
        for (k, bytes) in rows {
            let b = keys::u64_be(&k[1..])
                .ok_or_else(|| StoreError::corrupt(Tree::Ledger, &k, "bad block key"))?;
            if b != block {
                return Err(StoreError::corrupt(
                    Tree::Ledger,
                    &keys::block(block),
                    "block missing",
                ));
            }
            let leaves = decode_block(b, &bytes)?;
            let first = b * BLOCK_LEAVES;
            let expected = (meta.size - first).min(BLOCK_LEAVES) as usize;
            if leaves.len() < expected {
                return Err(StoreError::corrupt(
                    Tree::Ledger,
                    &k,
                    "block has fewer leaves than the ledger size says",
                ));
            }
            for (j, leaf) in leaves.into_iter().take(expected).enumerate() {
                replay_leaf(&mut inner, &leaf, first + j as u64, Tree::Ledger)?;
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
    for (n, (k, leaf)) in rows.into_iter().enumerate() {
        let index = first + n as u64;
        if k != keys::open_leaf(index) {
            return Err(StoreError::corrupt(
                Tree::Ledger,
                &keys::open_leaf(index),
                "leaf missing",
            ));
        }
        replay_leaf(&mut inner, &leaf, index, Tree::Ledger)?;
        inner.open_block.push(leaf);
    }
    if (inner.open_block.len() as u64) < meta.size - first {
        return Err(StoreError::corrupt(
            Tree::Ledger,
            &keys::open_leaf(first + inner.open_block.len() as u64),
            "leaf missing",
        ));
    }
    inner.open_stored = inner.open_block.len();
    if inner.d.frontier != stored_frontier {
        return Err(StoreError::corrupt(
            Tree::Ledger,
            keys::META,
            format!(
                "the stored leaves give root {} but the stored frontier says {}",
                inner.d.frontier.root(),
                stored_frontier.root()
            ),
        ));
    }
    inner.meta.clock = meta.clock.max(inner.meta.clock);
    inner.meta.frontier = meta.frontier.clone();

    // The head map at the published size, and the leaves after it.
    let published = meta.published_size;
    let mut pending: Vec<PendingLeaf> = Vec::new();
    for (key, entries) in &inner.d.systems {
        let before = entries.partition_point(|(i, _)| *i < published);
        if before > 0 {
            inner.d.published_map.insert(
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
    inner.d.pending = pending.into();
    inner.published_note = if published > 0 {
        store
            .get(Tree::Ledger, &keys::checkpoint(published))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    } else {
        None
    };
    Ok(inner)
}
