//! The Raft log on the storage seam.
//!
//! Contract (openraft `RaftLogStorage`): entries are readable when `append` returns, and the
//! callback fires only once they are durable. The leader's own appends hand their callbacks to
//! one syncer task, which syncs once for everything queued — group fsync — so concurrent appends
//! share one fsync, and the leader replicates meanwhile. A follower's append (entries led by
//! another node) is synced inside `append`: openraft waits for it before anything else anyway.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;

use super::node_state::NodeStateHandle;
use super::{Batch, Store, StoreError, Tree};
use crate::raft::codec;
use crate::raft::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Key of the vote in [`Tree::Raft`].
pub(crate) const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"purged";

fn io_error<E: std::error::Error + 'static>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: &E,
) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::new(e)),
    }
}

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    io_error(ErrorSubject::Logs, ErrorVerb::Read, &e)
}

pub(crate) fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    io_error(ErrorSubject::Logs, ErrorVerb::Write, &e)
}

/// Key of a log entry in [`Tree::Log`].
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The id of the last entry in the log, or of the last purged one when the log is empty
/// (openraft's `last_log_id`).
pub(crate) fn last_log_id(store: &Store) -> Result<Option<LogId>, StoreError> {
    match store.last(Tree::Log, &index_key(0), &index_key(u64::MAX))? {
        Some((k, v)) => codec::decode::<Entry>("log entry", &v)
            .map(|e| Some(e.log_id))
            .map_err(|e| StoreError::corrupt(Tree::Log, &k, e)),
        None => read_purged(store),
    }
}

/// The last purged log id, as stored.
pub(crate) fn read_purged(store: &Store) -> Result<Option<LogId>, StoreError> {
    match store.get(Tree::Raft, PURGED_KEY)? {
        None => Ok(None),
        Some(b) => codec::decode("purged log id", &b)
            .map(Some)
            .map_err(|e| StoreError::corrupt(Tree::Raft, PURGED_KEY, e)),
    }
}

/// Most leader appends waiting for the syncer. Each sync covers everything queued, so the queue
/// empties with every sync; a leader that appends faster than its disk syncs waits here instead
/// of queueing without limit.
pub const LOG_SYNC_QUEUE_MAX: usize = 1024;

/// One sync of the log, timed.
async fn timed_sync(store: &Store, seconds: &Histogram) -> Result<(), StoreError> {
    let start = std::time::Instant::now();
    let result = store.sync_log().await;
    crate::metrics::observe_since(seconds, start);
    result
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    /// This node: entries it created as leader are synced by the syncer task, others in place.
    /// Both paths fire the callback only after the sync; the choice only decides who waits.
    node_id: u64,
    syncer: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// The node's record: every vote is copied there (both storages) before it counts.
    node_state: Arc<NodeStateHandle>,
    /// How long each sync of the log takes (`stateledger_log_sync_seconds`).
    sync_seconds: Histogram,
    /// Simulation only: known-bad behaviours of the log (`crate::known_bad`).
    #[cfg(madsim)]
    known_bad: crate::known_bad::KnownBad,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

impl LogStore {
    /// Creates the log store and starts its syncer task.
    pub fn new(store: Store, node_id: u64, node_state: Arc<NodeStateHandle>) -> LogStore {
        LogStore::observed(
            store,
            node_id,
            node_state,
            crate::metrics::latency_histogram(),
        )
    }

    /// [`LogStore::new`], timing each sync of the log in `sync_seconds`.
    pub fn observed(
        store: Store,
        node_id: u64,
        node_state: Arc<NodeStateHandle>,
        sync_seconds: Histogram,
    ) -> LogStore {
        let (tx, mut rx) = mpsc::channel::<LogFlushed<TypeConfig>>(LOG_SYNC_QUEUE_MAX);
        let sync_store = store.clone();
        let syncer_seconds = sync_seconds.clone();
        tokio::spawn(async move {
            // Every append queued behind the first is covered by the same sync.
            while let Some(batch) = crate::drain::recv_batch(&mut rx, usize::MAX, |_| 1).await {
                let waiting = batch.items;
                let result = super::wait_for_space_async("sync the Raft log", || {
                    timed_sync(&sync_store, &syncer_seconds)
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()));
                for callback in waiting {
                    callback.log_io_completed(
                        result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|e| std::io::Error::other(e.to_string())),
                    );
                }
            }
        });
        LogStore {
            store,
            node_id,
            syncer: tx,
            node_state,
            sync_seconds,
            #[cfg(madsim)]
            known_bad: Default::default(),
        }
    }

    /// Simulation only: re-introduces the known-bad behaviours that concern the log.
    #[cfg(madsim)]
    pub fn with_known_bad(mut self, known_bad: crate::known_bad::KnownBad) -> LogStore {
        self.known_bad = known_bad;
        self
    }

    fn read_raft<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StorageError> {
        match self.store.get(Tree::Raft, key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => codec::decode(what, &bytes).map(Some).map_err(read_err),
        }
    }

    fn write_raft<T: serde::Serialize>(
        &self,
        key: &[u8],
        what: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let mut b = Batch::new(Tree::Raft);
        b.put(
            key.to_vec(),
            &codec::encode(what, value).map_err(write_err)?,
        );
        self.store.write(b).map_err(write_err)
    }

    fn decode_entry(key: &[u8], bytes: &[u8]) -> Result<Entry, StorageError> {
        codec::decode::<Entry>("log entry", bytes)
            .map_err(|e| read_err(StoreError::corrupt(Tree::Log, key, e)))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .scan(Tree::Log, &index_key(start), &index_key(end), usize::MAX)
            .map_err(read_err)?;
        rows.iter()
            .map(|(k, v)| LogStore::decode_entry(k, v))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = read_purged(&self.store).map_err(read_err)?;
        let last_log_id = last_log_id(&self.store).map_err(read_err)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_raft(VOTE_KEY, "vote", vote)?;
        // The copy is written and both storages synced (the log's own vote with them) before
        // openraft acts on the vote: losing the log then never loses a vote that was sent.
        let vote = *vote;
        self.node_state
            .update(|s| s.vote = Some(vote))
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_raft(VOTE_KEY, "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_raft(COMMITTED_KEY, "committed log id", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_raft::<Option<LogId>>(COMMITTED_KEY, "committed log id")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut b = Batch::new(Tree::Log);
        let mut own = true;
        for entry in entries {
            own = entry.log_id.leader_id.node_id == self.node_id;
            b.put(
                index_key(entry.log_id.index).to_vec(),
                &codec::encode("log entry", &entry).map_err(write_err)?,
            );
        }
        let store = self.store.clone();
        super::wait_for_space("append to the Raft log", || store.write(b.clone()))
            .await
            .map_err(write_err)?;
        #[cfg(madsim)]
        if self
            .known_bad
            .is_on(crate::known_bad::Switch::AckLogBeforeSync)
        {
            // KNOWN-BAD, simulation only: claims durability that the entries do not have.
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        if !own {
            // Entries from another leader: this node follows, and openraft waits for this flush
            // before it does anything else. Syncing here instead of in the syncer task saves two
            // hand-offs on the commit path. (A leader's own appends go to the syncer: the leader
            // replicates while its flush runs, see vendor/openraft/PATCHES.md.)
            let store = self.store.clone();
            let seconds = self.sync_seconds.clone();
            let result =
                super::wait_for_space_async("sync the Raft log", || timed_sync(&store, &seconds))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(result);
            return Ok(());
        }
        // A full queue makes the append wait for the syncer (back-pressure on the leader).
        if let Err(mpsc::error::SendError(callback)) = self.syncer.send(callback).await {
            // The syncer only stops when the runtime shuts down; report instead of hanging.
            callback.log_io_completed(Err(std::io::Error::other("log syncer stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let rows = self
            .store
            .backend(Tree::Log)
            .scan(
                Tree::Log,
                &index_key(log_id.index),
                &index_key(u64::MAX),
                usize::MAX,
            )
            .map_err(write_err)?;
        let mut b = Batch::new(Tree::Log);
        for (k, _) in rows {
            b.remove(k);
        }
        self.store.write(b).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_raft(PURGED_KEY, "purged log id", &log_id)?;
        let rows = self
            .store
            .backend(Tree::Log)
            .scan(
                Tree::Log,
                &index_key(0),
                &index_key(log_id.index.saturating_add(1)),
                usize::MAX,
            )
            .map_err(write_err)?;
        let mut b = Batch::new(Tree::Log);
        for (k, _) in rows {
            b.remove(k);
        }
        self.store.write(b).map_err(write_err)
    }
}
