//! The storage seam: a few ordered key-value trees, written in batches that become durable at an
//! explicit `sync`. A crash keeps a prefix of the unsynced writes: whole batches in the Raft
//! trees, possibly part of one in the others ([`Tree::batches_atomic`], [`Kv`]).
//!
//! Production keeps the Raft trees in the Raft log's own file ([`super::wal::WalKv`]) and the
//! ledger's in sled ([`super::sled_kv::SledKv`]); the simulation runs the same log file code on
//! simulated files and the ledger on [`super::mem_kv::MemKv`], which keeps synced and unsynced
//! writes apart and can lose the unsynced part on a simulated crash; unit tests often use one
//! `MemKv` for all. Everything above this trait is shared, and `store/kv_contract.rs` holds the
//! three implementations to the contract below.

use std::future::Future;
use std::pin::Pin;

/// The trees a node keeps. Each is an ordered map of byte keys to byte values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Raft vote, committed and purged log ids.
    Raft,
    /// Raft log entries by index.
    Log,
    /// The ledger state machine: leaves, tree nodes, indexes, checkpoints, metadata.
    Ledger,
    /// Leaves of a snapshot being received, before it is installed.
    Staging,
    /// The node's own record of itself ([`crate::store::node_state`]): kept in both storages, so
    /// that losing either one is noticed.
    Node,
}

impl Tree {
    pub const ALL: [Tree; 5] = [
        Tree::Raft,
        Tree::Log,
        Tree::Ledger,
        Tree::Staging,
        Tree::Node,
    ];

    /// Whether a crash keeps each batch to this tree whole or not at all. Otherwise a crash may
    /// cut a batch, keeping a prefix of its operations in order: writers then put the entry
    /// that says a batch is complete (the ledger's metadata) last.
    pub fn batches_atomic(self) -> bool {
        matches!(self, Tree::Raft | Tree::Log | Tree::Node)
    }

    pub fn name(self) -> &'static str {
        match self {
            Tree::Raft => "raft",
            Tree::Log => "log",
            Tree::Ledger => "ledger",
            Tree::Staging => "staging",
            Tree::Node => "node",
        }
    }
}

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// One write: `Some(value)` inserts, `None` removes.
pub type KvBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A failure of the underlying storage.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("storage {op} failed: {reason}")]
pub struct KvError {
    pub op: &'static str,
    pub reason: String,
    /// The storage engine itself found its files damaged (or crashed on them): nothing it holds
    /// can be trusted any more, so the node stops instead of serving from it.
    pub engine_failure: bool,
    /// The disk is full (ENOSPC): the write can succeed once space returns.
    pub no_space: bool,
}

impl KvError {
    pub fn new(op: &'static str, reason: impl ToString) -> KvError {
        KvError {
            op,
            reason: reason.to_string(),
            engine_failure: false,
            no_space: false,
        }
    }

    /// A failed I/O call: ENOSPC is marked [`KvError::no_space`].
    pub fn io(op: &'static str, context: impl std::fmt::Display, e: &std::io::Error) -> KvError {
        KvError {
            no_space: is_no_space(e),
            ..KvError::new(op, format!("{context}: {e}"))
        }
    }

    /// See [`KvError::engine_failure`].
    pub fn engine(op: &'static str, reason: impl ToString) -> KvError {
        KvError {
            engine_failure: true,
            ..KvError::new(op, reason)
        }
    }

    pub fn is_engine_failure(&self) -> bool {
        self.engine_failure
    }

    pub fn is_no_space(&self) -> bool {
        self.no_space
    }
}

/// ENOSPC (or EDQUOT, a full quota).
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28) | Some(122))
}

pub type SyncFuture<'a> = Pin<Box<dyn Future<Output = Result<(), KvError>> + Send + 'a>>;

/// A blocking sync (fsync and friends) run on tokio's blocking pool, as a [`SyncFuture`].
#[cfg(not(madsim))]
pub fn sync_on_blocking_pool(
    sync: impl FnOnce() -> Result<(), KvError> + Send + 'static,
) -> SyncFuture<'static> {
    Box::pin(async move {
        tokio::task::spawn_blocking(sync)
            .await
            .map_err(|e| KvError::new("fsync task", e))?
    })
}

/// Ordered key-value storage.
///
/// Contract: `write` applies a batch to one tree and makes it visible to reads at once; it is
/// durable only after a later `sync` returns `Ok`. A crash may lose unsynced writes but never
/// reorders them: it keeps a prefix of them, and of their operations — whole batches for trees
/// whose [`Tree::batches_atomic`] is true, possibly part of the first lost batch otherwise.
pub trait Kv: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Entries with `start <= key < end`, ascending, at most `limit`.
    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, KvError>;
    /// The entry with the greatest key in `start <= key < end`.
    fn last(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<Option<KvPair>, KvError>;
    fn write(&self, tree: Tree, batch: KvBatch) -> Result<(), KvError>;
    /// Removes every entry of a tree (not necessarily atomic with other writes).
    fn clear(&self, tree: Tree) -> Result<(), KvError>;
    /// Makes every write so far durable.
    fn sync(&self) -> SyncFuture<'_>;
}
