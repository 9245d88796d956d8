//! Reads: leaves, roots, inclusion and consistency proofs, a system's leaves and the material of
//! a state proof. Every read takes the ledger's read lock only, and reads stored blocks after
//! releasing it (a full block never changes), so reads never hold up an apply for storage I/O.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use stateledger_core::hash::Hash;
use stateledger_core::heads::{HeadProof, SystemKey};
use stateledger_core::merkle::{
    consistency_proof, inclusion_proof, GenerateError, LeafIndex, ProofError, TreeSize,
};

use super::blocks::{self, Located, BLOCK_LEAVES};
use super::keys;
use super::signed_checkpoint::SignedCheckpoint;
use super::state::Ledger;
use crate::store::{StoreError, Tree};

/// Why a read could not be answered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The asker is at fault: beyond the ledger.
    #[error("leaf index {index} is outside the ledger of size {size}")]
    OutOfRange { index: u64, size: u64 },
    /// The asker is at fault: no such proof (e.g. an old size larger than the new one).
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A proof the core cannot generate for a reason this node does not know of.
    #[error("cannot generate the proof: {reason}")]
    Unprovable { reason: String },
    /// Not yet: the latest published checkpoint does not cover the time asked about.
    #[error("the latest published checkpoint covers time {covered} only, before {at_time}")]
    NotCovered { covered: u64, at_time: u64 },
    /// The answer would exceed a limit.
    #[error("system has more than {max} records up to that time")]
    HistoryTooLong { max: usize },
    #[error("no published checkpoint yet")]
    NoCheckpoint,
    /// This node's storage is at fault.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<GenerateError<std::convert::Infallible>> for ReadError {
    fn from(e: GenerateError<std::convert::Infallible>) -> ReadError {
        match e {
            GenerateError::Proof(p) => ReadError::Proof(p),
            GenerateError::Store(never) => match never {},
            // `GenerateError` is non-exhaustive; nothing else exists today.
            other => ReadError::Unprovable {
                reason: other.to_string(),
            },
        }
    }
}

/// Material for a state proof, all proven against `checkpoint`.
#[derive(Debug, Clone)]
pub struct SystemHistory {
    pub checkpoint: SignedCheckpoint,
    pub leaves: Vec<(Vec<u8>, Vec<Hash>)>,
    pub next: Option<(Vec<u8>, Vec<Hash>)>,
    pub head_proof: Option<HeadProof>,
}

/// Most leaves one history answer may hold.
pub const HISTORY_LEAVES_MAX: usize = 100_000;

impl Ledger {
    pub fn root(&self) -> Hash {
        self.read().idx.frontier.root()
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
        Ok(inner.root_at(size))
    }

    /// Up to `limit` names of systems in the ledger close to `name` (see
    /// [`super::system_names::SystemNames::near`]).
    pub fn systems_near(&self, name: &str, limit: usize) -> Vec<String> {
        self.read().idx.names.near(name, limit)
    }

    /// The leaf at `index`.
    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, ReadError> {
        let mut leaves = self.leaves(&[index])?;
        Ok(leaves.pop().unwrap_or_default())
    }

    /// Up to `count` consecutive leaves from `start` (snapshot sending).
    pub fn leaf_range(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        let end = start.saturating_add(count).min(self.read().meta.size);
        let indexes: Vec<u64> = (start..end).collect();
        self.leaves(&indexes)
    }

    /// The leaves at `indexes`: from memory under the read lock, the others from their stored
    /// blocks after it (each block read once). Corruption is noted (and reported in the status)
    /// as well as returned.
    fn leaves(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, ReadError> {
        let read = self.read_leaves(indexes);
        if let Err(ReadError::Store(e)) = &read {
            self.note_corruption(e);
        }
        read
    }

    fn read_leaves(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(indexes.len());
        // (position in `out`, block, place in the block) of the leaves to read from storage.
        let mut stored: Vec<(usize, u64, usize)> = Vec::new();
        {
            let inner = self.read();
            for (n, &index) in indexes.iter().enumerate() {
                if index >= inner.meta.size {
                    return Err(ReadError::OutOfRange {
                        index,
                        size: inner.meta.size,
                    });
                }
                match inner.locate(&[], index) {
                    Located::Memory(bytes) => out.push(Some(bytes.to_vec())),
                    Located::Missing => return Err(missing(index).into()),
                    Located::Stored { block, at } => {
                        out.push(None);
                        stored.push((n, block, at));
                    }
                }
            }
        }
        let mut blocks: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        for (n, block, at) in stored {
            if let Entry::Vacant(vacant) = blocks.entry(block) {
                vacant.insert(blocks::read_block(self.store(), block)?);
            }
            let leaf = blocks
                .get(&block)
                .and_then(|leaves| leaves.get(at))
                .ok_or_else(|| missing(indexes[n]))?;
            out[n] = Some(leaf.clone());
        }
        Ok(out.into_iter().flatten().collect())
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        let inner = self.read();
        if size > inner.meta.size {
            return Err(ReadError::OutOfRange {
                index: size,
                size: inner.meta.size,
            });
        }
        Ok(inclusion_proof(
            &inner.idx.nodes,
            LeafIndex(index),
            TreeSize(size),
        )?)
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ReadError> {
        let inner = self.read();
        if new > inner.meta.size {
            return Err(ReadError::OutOfRange {
                index: new,
                size: inner.meta.size,
            });
        }
        Ok(consistency_proof(
            &inner.idx.nodes,
            TreeSize(old),
            TreeSize(new),
        )?)
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
            let all = inner
                .idx
                .systems
                .get(&key)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
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
        // checkpoint cannot move meanwhile. Only leaf bytes are read after (they never change).
        let (checkpoint, shown, next, proofs, next_proof, head_proof) = {
            let inner = self.read();
            let checkpoint = inner.published.clone().ok_or(ReadError::NoCheckpoint)?;
            let cp_size = inner.meta.published_size;
            let covered = checkpoint.checkpoint().time.0;
            if covered < at_time {
                return Err(ReadError::NotCovered { covered, at_time });
            }
            let all = inner
                .idx
                .systems
                .get(&key)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let within = &all[..all.partition_point(|(i, _)| *i < cp_size)];
            let upto = within.partition_point(|(_, t)| *t <= at_time);
            if upto > HISTORY_LEAVES_MAX {
                return Err(ReadError::HistoryTooLong {
                    max: HISTORY_LEAVES_MAX,
                });
            }
            let shown: Vec<u64> = within[..upto].iter().map(|(i, _)| *i).collect();
            let next: Option<u64> = within.get(upto).map(|(i, _)| *i);
            let prove = |i: u64| inclusion_proof(&inner.idx.nodes, LeafIndex(i), TreeSize(cp_size));
            let proofs = shown
                .iter()
                .map(|i| prove(*i))
                .collect::<Result<Vec<_>, _>>()?;
            let next_proof = next.map(prove).transpose()?;
            let head_proof = next
                .is_none()
                .then(|| inner.idx.published_map().prove(&key));
            (checkpoint, shown, next, proofs, next_proof, head_proof)
        };
        let mut wanted = shown;
        wanted.extend(next);
        let mut leaves = self.leaves(&wanted)?;
        let next = match (next, next_proof) {
            (Some(_), Some(p)) => leaves.pop().map(|leaf| (leaf, p)),
            _ => None,
        };
        Ok(SystemHistory {
            checkpoint,
            leaves: leaves.into_iter().zip(proofs).collect(),
            next,
            head_proof,
        })
    }
}

/// A block that does not hold a leaf it should.
fn missing(index: u64) -> StoreError {
    StoreError::corrupt(
        Tree::Ledger,
        &keys::block(index / BLOCK_LEAVES),
        format!("block is missing leaf {index}"),
    )
}
