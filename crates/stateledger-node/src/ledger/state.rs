//! The ledger: the state machine's data, shared (`Arc`) between the Raft state machine, the
//! services and the checkpointer. This file holds the type, its lock and what it reports about
//! itself (progress, corruption); its jobs are in their own files — applying entries
//! (`apply.rs`), admission rules (`admission.rs`), checkpoints (`checkpoints.rs`), reads
//! (`reads.rs`), snapshot installs (`snapshot.rs`) — over the in-memory state of `inner.rs`.
//!
//! What is stored (sled, through the checksumming [`Store`]): the leaves (`blocks.rs`), the
//! published checkpoints and the metadata (applied log id, membership, size, Merkle frontier,
//! ledger clock, genesis). Every apply writes one batch with the metadata last. The ledger's
//! batches are not atomic (`store::kv`: a crash may keep only a prefix of one); because the
//! metadata comes last, a crash leaves the state at some applied log id (plus stored leaves
//! beyond it, ignored at start) and Raft replays the rest. Everything else is derived from the
//! leaves in memory (`index.rs`) and rebuilt at start, which also checks every stored checksum
//! and that the leaves give the stored frontier.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use super::inner::Inner;
use super::keys;
use super::meta::LedgerMeta;
use crate::raft::StoredMembership;
use crate::store::{Store, StoreError, Tree};

/// Where the ledger stands; watchers wake on every change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub size: u64,
    pub clock: u64,
    pub published_size: u64,
    pub applied_index: u64,
}

/// The ledger. Shared (`Arc`) between the Raft state machine, the services and the checkpointer.
/// Reads take its read lock only; applies and snapshot installs its write lock.
#[derive(Debug)]
pub struct Ledger {
    store: Store,
    /// See [`Ledger::verified`].
    pub(super) verified: Arc<crate::sigcheck::Verified>,
    inner: RwLock<Inner>,
    progress: watch::Sender<Progress>,
    /// Simulation only: the known-bad behaviours of the state machine (`crate::known_bad`).
    #[cfg(madsim)]
    known_bad: std::sync::OnceLock<crate::known_bad::KnownBad>,
}

impl Ledger {
    /// Loads the ledger: reads every block (checking its checksum), rebuilds the derived indexes
    /// and checks the leaves give the stored Merkle frontier. With `verify_all`, every stored
    /// checkpoint note's checksum is checked too (otherwise only the latest one is read, and the
    /// others are checked when served). Corruption refuses the open.
    pub fn open(store: Store, verify_all: bool) -> Result<Arc<Ledger>, StoreError> {
        let inner = Inner::load(&store)?;
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

    /// The read lock. Never call [`Ledger::note_corruption`] (which takes the write lock)
    /// while holding it.
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

    pub(super) fn publish_progress(&self, inner: &Inner) {
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
}

fn progress_of(inner: &Inner) -> Progress {
    Progress {
        size: inner.meta.size,
        clock: inner.meta.clock,
        published_size: inner.meta.published_size,
        applied_index: inner.meta.applied.map_or(0, |l| l.index),
    }
}
