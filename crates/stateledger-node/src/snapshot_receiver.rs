//! The receiving side of a snapshot transfer (`raft/network.rs` is the sending side): one
//! session at a time, whose leaves and published checkpoints are staged in the ledger's staging
//! tree as they arrive, then handed to Raft as a [`LedgerSnapshot`] that reads from it. The
//! cluster service only checks who calls and decodes; what is written where is decided here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::ledger::blocks::{split_leaves, LeafCodecError};
use crate::ledger::keys;
use crate::ledger::snapshot::{LedgerSnapshot, SnapshotHeader, SnapshotSource};
use crate::ledger::Ledger;
use crate::node_id::NodeId;
use crate::store::{Batch, StoreError, Tree};

/// A snapshot being received.
#[derive(Debug)]
struct Session {
    id: u64,
    /// The index of the next leaf expected.
    next: u64,
    /// The node sending it: chunks and the finish come from it only.
    sender: NodeId,
}

/// Why a snapshot message was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    #[error("no such snapshot session; start again")]
    NoSession,
    #[error("snapshot chunk starts at {start} but {expected} was expected")]
    OutOfOrder { start: u64, expected: u64 },
    #[error("snapshot chunk: {0}")]
    BadChunk(#[from] LeafCodecError),
    #[error("snapshot has leaves up to {received} but {promised} were promised")]
    Short { received: u64, promised: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The snapshot being received, if any (see the module comment).
#[derive(Debug)]
pub struct SnapshotReceiver {
    ledger: Arc<Ledger>,
    session: tokio::sync::Mutex<Option<Session>>,
    ids: AtomicU64,
}

impl SnapshotReceiver {
    pub fn new(ledger: Arc<Ledger>) -> SnapshotReceiver {
        SnapshotReceiver {
            ledger,
            session: tokio::sync::Mutex::new(None),
            ids: AtomicU64::new(1),
        }
    }

    /// Starts a session from `sender`, dropping any other (and what it staged). Returns the
    /// session id.
    pub async fn begin(&self, sender: NodeId, snapshot_size: u64) -> Result<u64, ReceiveError> {
        let mut session = self.session.lock().await;
        self.ledger.store().clear(Tree::Staging)?;
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            session = id,
            snapshot_size,
            have = self.ledger.meta().size,
            "receiving a snapshot"
        );
        *session = Some(Session {
            id,
            next: 0,
            sender,
        });
        Ok(id)
    }

    /// The node sending session `id`.
    pub async fn sender(&self, id: u64) -> Result<NodeId, ReceiveError> {
        self.session
            .lock()
            .await
            .as_ref()
            .filter(|s| s.id == id)
            .map(|s| s.sender)
            .ok_or(ReceiveError::NoSession)
    }

    /// Stages the leaves of one chunk (`leaves` as `raft/network.rs` packs them) starting at
    /// `start`. Chunks come in order.
    pub async fn chunk(&self, id: u64, start: u64, leaves: &[u8]) -> Result<(), ReceiveError> {
        let mut guard = self.session.lock().await;
        let session = guard
            .as_mut()
            .filter(|s| s.id == id)
            .ok_or(ReceiveError::NoSession)?;
        if session.next != 0 && session.next != start {
            return Err(ReceiveError::OutOfOrder {
                start,
                expected: session.next,
            });
        }
        let mut batch = Batch::new(Tree::Staging);
        let mut index = start;
        for leaf in split_leaves(leaves)? {
            batch.put(keys::leaf(index), leaf);
            index += 1;
        }
        self.ledger.store().write(batch)?;
        session.next = index;
        Ok(())
    }

    /// Ends session `id`: checks that every promised leaf arrived, stages the published
    /// checkpoints, and returns the snapshot for Raft to install. The session stays until
    /// [`SnapshotReceiver::end`].
    pub async fn finish(
        &self,
        id: u64,
        header: SnapshotHeader,
        from: u64,
        checkpoints: &[(u64, String)],
    ) -> Result<LedgerSnapshot, ReceiveError> {
        {
            let guard = self.session.lock().await;
            let session = guard
                .as_ref()
                .filter(|s| s.id == id)
                .ok_or(ReceiveError::NoSession)?;
            if from < header.size && session.next != header.size {
                return Err(ReceiveError::Short {
                    received: session.next,
                    promised: header.size,
                });
            }
        }
        let store = self.ledger.store().clone();
        let mut batch = Batch::new(Tree::Staging);
        for (size, note) in checkpoints {
            batch.put(keys::checkpoint(*size), note.as_bytes());
        }
        store.write(batch)?;
        Ok(LedgerSnapshot {
            header: Some(header),
            from,
            source: SnapshotSource::Staged(store),
        })
    }

    /// Forgets the session (after Raft installed the snapshot, or failed to).
    pub async fn end(&self) {
        *self.session.lock().await = None;
    }
}
