//! Checkpoints: the candidate this node would sign, the check before it cosigns one, the quorum
//! a note needs, and publication through Raft (with the checks every node makes when it applies
//! it). A checkpoint is kept parsed ([`SignedCheckpoint`]) from the moment it is published.

use serde::{Deserialize, Serialize};
use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::hash::Hash;
use stateledger_core::ledger_time::LedgerTime;
use stateledger_core::merkle::TreeSize;
use stateledger_core::note::{Note, NoteError, NoteVerifier};

use super::blocks::Sealed;
use super::inner::{parse_stored_checkpoint, Inner};
use super::keys;
use super::signed_checkpoint::SignedCheckpoint;
use super::state::Ledger;
use crate::raft::{NodeId as RaftNodeId, StoredMembership};
use crate::store::{Batch, Store, StoreError, Tree};

/// Why a checkpoint is not this node's: it disagrees with what this node computed. Whoever
/// proposed it is at fault — or this node, if its ledger diverged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointMismatch {
    #[error("no genesis yet")]
    NoGenesis,
    #[error("origin {found:?} is not this log's {expected:?}")]
    Origin { expected: String, found: String },
    #[error("size {size} is beyond this node's applied size {applied}")]
    BeyondApplied { size: u64, applied: u64 },
    #[error("size {size} is before the published checkpoint {published}")]
    BeforePublished { size: u64, published: u64 },
    #[error("root {found} differs from this node's root {computed} at size {size}")]
    Root {
        size: u64,
        found: Hash,
        computed: Hash,
    },
    #[error("head root {found} differs from this node's {computed} at size {size}")]
    HeadsRoot {
        size: u64,
        found: Hash,
        computed: Hash,
    },
    #[error(transparent)]
    Time(#[from] TimeMismatch),
}

/// Why a checkpoint's time breaks its promise at this node: every leaf before its size at or
/// before its time, every leaf at or after it strictly later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TimeMismatch {
    #[error("checkpoint time {time} is before the time {leaf_time} of its last leaf {leaf}")]
    BeforeLastLeaf {
        time: u64,
        leaf: u64,
        leaf_time: u64,
    },
    #[error("checkpoint time {time} is ahead of this node's ledger clock {clock}")]
    AheadOfClock { time: u64, clock: u64 },
    #[error("checkpoint time {time} is not before the time {leaf_time} of leaf {leaf}")]
    NotBeforeNextLeaf {
        time: u64,
        leaf: u64,
        leaf_time: u64,
    },
}

/// Why this node will not sign a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error(transparent)]
    Mismatch(#[from] CheckpointMismatch),
    /// This node could not read its own ledger to check (its storage is at fault).
    #[error("cannot check the checkpoint against this node's ledger: {0}")]
    Store(#[from] StoreError),
}

/// Why a note is not signed by a quorum of voters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// A signature line is malformed or does not verify (the core's reason).
    #[error("checkpoint signature: {reason}")]
    Signature { reason: String },
    #[error(
        "checkpoint has {signed} valid voter signatures of {voters} voters; a majority is needed"
    )]
    ShortOfMajority { signed: usize, voters: usize },
}

impl From<NoteError> for QuorumError {
    fn from(e: NoteError) -> QuorumError {
        QuorumError::Signature {
            reason: e.to_string(),
        }
    }
}

/// Why a node refused to publish a checkpoint when it applied it (the same on every node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum PublishRefusal {
    #[error("no genesis")]
    NoGenesis,
    /// The note does not parse (the core's reason).
    #[error("{reason}")]
    Unparsable { reason: String },
    #[error("checkpoint origin {found:?} is not the log's {expected:?}")]
    Origin { expected: String, found: String },
    #[error("checkpoint (size {size}, time {time}) is not after the published one (size {published_size}, time {published_time})")]
    NotAfterPublished {
        size: u64,
        time: u64,
        published_size: u64,
        published_time: u64,
    },
    #[error("checkpoint size {size} is beyond the applied size {applied}")]
    BeyondApplied { size: u64, applied: u64 },
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    /// A quorum signed a root this node did not compute: this node's ledger diverged.
    #[error("a quorum signed root {signed} at size {size} but this node computed {computed}: this node's ledger diverged")]
    Diverged {
        size: u64,
        signed: Hash,
        computed: Hash,
    },
    #[error(transparent)]
    Time(#[from] TimeMismatch),
}

/// A checkpoint note is publishable if it carries valid signatures of a majority of the voters in
/// every configuration of the (possibly joint) membership.
pub fn check_quorum(membership: &StoredMembership, note: &Note) -> Result<(), QuorumError> {
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
    let signed = note.verify(&all)?;
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
            return Err(QuorumError::ShortOfMajority {
                signed: count,
                voters: config.len(),
            });
        }
    }
    Ok(())
}

/// The time promise of `cp` at this node: every leaf before `cp.size` is at or before `cp.time`,
/// every leaf at or after it strictly later. Storage errors reading a leaf's time stay storage
/// errors.
fn check_time(
    inner: &Inner,
    store: &Store,
    sealed: &Sealed,
    cp: &Checkpoint,
) -> Result<Result<(), TimeMismatch>, StoreError> {
    let time = cp.time.0;
    if cp.size.0 > 0 {
        let leaf = cp.size.0 - 1;
        let leaf_time = inner.leaf_time(store, sealed, leaf)?;
        if leaf_time > time {
            return Ok(Err(TimeMismatch::BeforeLastLeaf {
                time,
                leaf,
                leaf_time,
            }));
        }
    }
    if cp.size.0 == inner.meta.size {
        if inner.meta.clock < time {
            return Ok(Err(TimeMismatch::AheadOfClock {
                time,
                clock: inner.meta.clock,
            }));
        }
        return Ok(Ok(()));
    }
    let leaf = cp.size.0;
    let leaf_time = inner.leaf_time(store, sealed, leaf)?;
    if leaf_time <= time {
        return Ok(Err(TimeMismatch::NotBeforeNextLeaf {
            time,
            leaf,
            leaf_time,
        }));
    }
    Ok(Ok(()))
}

/// Applies a `PublishCheckpoint` command: checks `note_text` (origin, newer than the published
/// one, within the applied size, a quorum's signatures, this node's root, the time promise),
/// then moves the published head map to it and puts it in the batch. `Ok(Err(_))` refuses it.
pub(crate) fn publish(
    inner: &mut Inner,
    store: &Store,
    batch: &mut Batch,
    sealed: &Sealed,
    note_text: &str,
) -> Result<Result<u64, PublishRefusal>, StoreError> {
    let Some(genesis) = &inner.meta.genesis else {
        return Ok(Err(PublishRefusal::NoGenesis));
    };
    let signed = match SignedCheckpoint::parse(note_text) {
        Ok(s) => s,
        Err(e) => {
            let reason = e.to_string();
            return Ok(Err(PublishRefusal::Unparsable { reason }));
        }
    };
    let cp = signed.checkpoint();
    if cp.origin != genesis.origin {
        return Ok(Err(PublishRefusal::Origin {
            expected: genesis.origin.clone(),
            found: cp.origin.clone(),
        }));
    }
    let published_time = inner
        .published
        .as_ref()
        .map_or(0, |p| p.checkpoint().time.0);
    if (cp.size.0, cp.time.0) <= (inner.meta.published_size, published_time) {
        return Ok(Err(PublishRefusal::NotAfterPublished {
            size: cp.size.0,
            time: cp.time.0,
            published_size: inner.meta.published_size,
            published_time,
        }));
    }
    if cp.size.0 > inner.meta.size {
        return Ok(Err(PublishRefusal::BeyondApplied {
            size: cp.size.0,
            applied: inner.meta.size,
        }));
    }
    if let Err(e) = check_quorum(&inner.meta.membership, signed.note()) {
        return Ok(Err(e.into()));
    }
    let root = inner.root_at(cp.size.0);
    if root != cp.root {
        let refusal = PublishRefusal::Diverged {
            size: cp.size.0,
            signed: cp.root,
            computed: root,
        };
        inner.corruption = Some(refusal.to_string());
        tracing::error!("{refusal}");
        return Ok(Err(refusal));
    }
    if let Err(e) = check_time(inner, store, sealed, cp)? {
        return Ok(Err(e.into()));
    }
    let heads_root = inner.idx.advance_published(cp.size.0);
    if heads_root != cp.heads_root {
        let msg = format!(
            "a quorum signed head root {} at size {} but this node computed {heads_root}: this node's ledger diverged",
            cp.heads_root, cp.size
        );
        inner.corruption = Some(msg.clone());
        tracing::error!("{msg}");
    }
    let size = cp.size.0;
    inner.meta.published_size = size;
    batch.put(keys::checkpoint(size), signed.text().as_bytes());
    inner.published = Some(signed);
    Ok(Ok(size))
}

impl Ledger {
    /// The checkpoint this node would sign now: its size, root, clock and head root.
    pub fn candidate_checkpoint(&self) -> Option<Checkpoint> {
        let inner = self.read();
        let origin = inner.meta.genesis.as_ref()?.origin.clone();
        let size = inner.meta.size;
        Some(Checkpoint {
            origin,
            size: TreeSize(size),
            root: inner.idx.frontier.root(),
            time: LedgerTime(inner.meta.clock),
            heads_root: inner.heads_root_at(size),
        })
    }

    /// Checks that this node computed exactly this checkpoint: same origin, root and head root at
    /// that size, and the time promise holds (every leaf before `size` is at or before `time`,
    /// every leaf at or after it later). A storage error is noted as corruption too.
    pub fn check_checkpoint(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let checked = self.check_checkpoint_locked(cp);
        if let Err(CheckpointError::Store(e)) = &checked {
            self.note_corruption(e);
        }
        checked
    }

    fn check_checkpoint_locked(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let inner = self.read();
        let mismatch = |m: CheckpointMismatch| Err(CheckpointError::Mismatch(m));
        let Some(origin) = inner.meta.genesis.as_ref().map(|g| &g.origin) else {
            return mismatch(CheckpointMismatch::NoGenesis);
        };
        if &cp.origin != origin {
            return mismatch(CheckpointMismatch::Origin {
                expected: origin.clone(),
                found: cp.origin.clone(),
            });
        }
        let size = cp.size.0;
        if size > inner.meta.size {
            return mismatch(CheckpointMismatch::BeyondApplied {
                size,
                applied: inner.meta.size,
            });
        }
        if size < inner.meta.published_size {
            return mismatch(CheckpointMismatch::BeforePublished {
                size,
                published: inner.meta.published_size,
            });
        }
        let root = inner.root_at(size);
        if root != cp.root {
            return mismatch(CheckpointMismatch::Root {
                size,
                found: cp.root,
                computed: root,
            });
        }
        check_time(&inner, self.store(), &[], cp)?.map_err(CheckpointMismatch::from)?;
        let heads_root = inner.heads_root_at(size);
        if heads_root != cp.heads_root {
            return mismatch(CheckpointMismatch::HeadsRoot {
                size,
                found: cp.heads_root,
                computed: heads_root,
            });
        }
        Ok(())
    }

    /// The latest published checkpoint.
    pub fn published_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.read().published.clone()
    }

    /// The published checkpoint note of exactly `size`, if stored, as its text. Corruption is
    /// noted (and reported in the status) as well as returned.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        let stored = self
            .store()
            .get(Tree::Ledger, &keys::checkpoint(size))
            .and_then(|bytes| {
                bytes
                    .map(|b| parse_stored_checkpoint(size, &b).map(SignedCheckpoint::into_text))
                    .transpose()
            });
        stored.inspect_err(|e| self.note_corruption(e))
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
            match self.store().last(Tree::Ledger, &first, &end)? {
                Some((key, _)) => {
                    below.push(size_of(&key));
                    end = key;
                }
                None => break,
            }
        }
        below.reverse();
        let above: Vec<u64> = self
            .store()
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
}
