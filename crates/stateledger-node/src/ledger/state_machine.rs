//! openraft's `RaftStateMachine` over the [`Ledger`].

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError,
};

use super::keys;
use super::snapshot::{LedgerSnapshot, SnapshotHeader, SnapshotSource, StoredSnapshot};
use super::state::Ledger;
use crate::raft::codec;
use crate::raft::{
    CommandResponse, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::store::{Batch, StoreError, Tree};

fn sm_error<E: std::error::Error + 'static>(verb: ErrorVerb, e: &E) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(e)),
    }
}

/// The Raft state machine: a handle on the shared ledger.
#[derive(Debug, Clone)]
pub struct LedgerStateMachine {
    ledger: Arc<Ledger>,
}

impl LedgerStateMachine {
    pub fn new(ledger: Arc<Ledger>) -> LedgerStateMachine {
        LedgerStateMachine { ledger }
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        match self
            .ledger
            .store()
            .get(Tree::Ledger, keys::SNAPSHOT)
            .map_err(|e| sm_error(ErrorVerb::Read, &e))?
        {
            None => Ok(None),
            Some(bytes) => codec::decode("snapshot", &bytes)
                .map(Some)
                .map_err(|e| sm_error(ErrorVerb::Read, &e)),
        }
    }

    fn save_snapshot(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let mut b = Batch::new(Tree::Ledger);
        b.put(
            keys::SNAPSHOT.to_vec(),
            &codec::encode("snapshot", stored).map_err(|e| sm_error(ErrorVerb::Write, &e))?,
        );
        self.ledger
            .store()
            .write(b)
            .map_err(|e| sm_error(ErrorVerb::Write, &e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Read the state first, then sync: everything up to that state is then durable before
        // Raft may purge the log entries it came from.
        let meta = self.ledger.meta();
        let root = self.ledger.root();
        let store = self.ledger.store().clone();
        crate::store::wait_for_space_async("sync the ledger for a snapshot", || store.sync())
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, &e))?;
        let header = SnapshotHeader {
            size: meta.size,
            root: root.0,
            clock: meta.clock,
            published_size: meta.published_size,
            genesis: meta.genesis.clone(),
        };
        let snapshot_meta = SnapshotMeta {
            last_log_id: meta.applied,
            last_membership: meta.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                meta.applied.map_or(0, |l| l.leader_id.term),
                meta.applied.map_or(0, |l| l.index),
                meta.size
            ),
        };
        self.save_snapshot(&StoredSnapshot {
            meta: snapshot_meta.clone(),
            header: header.clone(),
        })?;
        Ok(Snapshot {
            meta: snapshot_meta,
            snapshot: Box::new(LedgerSnapshot {
                header: Some(header),
                from: 0,
                source: SnapshotSource::Ledger(self.ledger.clone()),
            }),
        })
    }
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotBuilder = LedgerStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.ledger.applied_state())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let ledger = self.ledger.clone();
        // Every record's signature, checked before anything is applied (sigcheck.rs), off the
        // runtime's workers when there are more than a few.
        #[cfg(not(madsim))]
        let (entries, bad) =
            if crate::sigcheck::records_in(&entries) <= crate::sigcheck::SIG_INLINE_RECORDS_MAX {
                let bad = ledger.signature_verdicts(&entries);
                (entries, bad)
            } else {
                let checker = ledger.clone();
                tokio::task::spawn_blocking(move || {
                    let bad = checker.signature_verdicts(&entries);
                    (entries, bad)
                })
                .await
                .map_err(|e| {
                    sm_error(
                        ErrorVerb::Read,
                        &crate::store::StoreError::Kv(crate::store::KvError::new(
                            "check record signatures",
                            e.to_string(),
                        )),
                    )
                })?
            };
        #[cfg(madsim)]
        let bad = ledger.signature_verdicts(&entries);
        crate::store::wait_for_space("apply log entries to the ledger", || {
            ledger.apply_checked(entries.clone(), &bad)
        })
        .await
        .map_err(|e| {
            self.ledger.note_corruption(&e);
            sm_error(ErrorVerb::Write, &e)
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<LedgerSnapshot>, StorageError> {
        Ok(Box::new(LedgerSnapshot::empty()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<LedgerSnapshot>,
    ) -> Result<(), StorageError> {
        let header = snapshot.header.clone().ok_or_else(|| {
            sm_error(
                ErrorVerb::Write,
                &StoreError::corrupt(Tree::Staging, b"header", "snapshot has no header"),
            )
        })?;
        let checkpoints = snapshot
            .checkpoints()
            .map_err(|e| sm_error(ErrorVerb::Read, &e))?;
        self.ledger
            .install(
                snapshot.from,
                &header,
                meta.last_log_id,
                meta.last_membership.clone(),
                |start, limit| snapshot.leaves(start, limit),
                checkpoints,
            )
            .map_err(|e| sm_error(ErrorVerb::Write, &e))?;
        if let SnapshotSource::Staged(store) = &snapshot.source {
            store
                .clear(Tree::Staging)
                .map_err(|e| sm_error(ErrorVerb::Write, &e))?;
        }
        // Synced before openraft purges the log entries the snapshot replaces. (KNOWN-BAD,
        // simulation only, when the switch is on: not synced.)
        if !known_bad!(self.ledger.known_bad(), SnapshotInstallWithoutSync) {
            self.ledger
                .store()
                .sync()
                .await
                .map_err(|e| sm_error(ErrorVerb::Write, &e))?;
        }
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            header,
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.stored_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(LedgerSnapshot {
                header: Some(s.header),
                from: 0,
                source: SnapshotSource::Ledger(self.ledger.clone()),
            }),
        }))
    }
}
