//! The Raft log's own file: an append-only write-ahead log behind the storage seam, for the
//! [`Tree::Raft`], [`Tree::Log`] and [`Tree::Node`] trees.
//!
//! Why not sled: every Raft append must be durable before it is acknowledged, and a sled flush
//! on this path costs several `pwrite` + `sync_file_range` calls on sled's I/O threads, then an
//! `fdatasync` of its data file and one of the sync-number file (docs/PERFORMANCE.md). Here an
//! append is one `pwrite` and a sync is one `fdatasync` of the log plus one of its marker,
//! shared by every append queued meanwhile.
//!
//! Layout: `<data_dir>/raft-log/<generation>.wal` (16 hex digits) in the byte format of
//! [`frame`], and the sync marker `<data_dir>/raft-log/synced` ([`marker`]). Only keys and value
//! locations are kept in memory; values are read back with `pread` (the page cache holds the
//! recent ones). All file access goes through [`io::WalIo`], so the simulation runs this code on
//! simulated files ([`mem::MemDir`]).
//!
//! **Torn tails and lost synced data.** A crash can leave the unsynced end of the file torn: cut
//! short, zero-filled, or written out of order. At open, the first record that fails its checks
//! ends the log and the tail after it is cut off — that is an ordinary crash. It is *damage* when
//! the lost bytes had been synced: a later valid record says so (its `synced-before`), or the
//! valid records end before the offset the sync marker says was synced (a truncated file, or one
//! rolled back to an older copy), or the marker names a file that is gone (a deleted log), or the
//! log holds records but its marker is missing. Damage is reported ([`WalDamage`]), never cut off
//! silently: the node must not vote on a log that forgot what it acknowledged
//! (`crate::repair`). Until the caller accepts it ([`WalKv::accept_damage`], after it recorded
//! elsewhere that the node is repairing) the log serves the valid records before the damage and
//! refuses writes; accepting keeps the damaged file beside the log as evidence
//! (`<generation>.damaged`) and continues from the valid records.
//!
//! **Preallocation.** The file grows by [`PREALLOCATE_BYTES`] of zeros at a time, so a sync of
//! an append does not also have to persist a new file length (when the disk is nearly full it
//! grows only as far as the record needs). Zeros after the last record are kept at open; any
//! other bytes there are a torn write and are cut off, so stale bytes never follow a new record.
//! After a failed write the store refuses further writes until reopened.
//!
//! **Compaction.** Purged entries stay in the file until it holds more than
//! [`COMPACT_BYTES_MIN`] and less than half of it is live; then the live entries are copied to
//! the next generation, which is synced and renamed into place before the marker moves to it and
//! the old file is removed.

pub mod frame;
mod generation;
pub mod io;
pub mod marker;
pub mod mem;
mod open;

use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use self::frame::{Loc, Maps};
use self::io::{WalFile, WalIo};
use self::marker::{Mark, Slot, MARKER_FILE};
use super::kv::{Kv, KvBatch, KvError, KvPair, SyncFuture, Tree};

/// The directory, inside the node's data directory.
pub const WAL_DIR: &str = "raft-log";
/// Compaction copies live entries in records of about this size.
const COMPACT_RECORD_BYTES: usize = 4 << 20;
/// The file grows by this many zero bytes at a time. Syncing an append inside the file does not
/// have to persist a new file length too: `fdatasync` p50 121 µs instead of 175 µs here.
pub const PREALLOCATE_BYTES: u64 = 8 << 20;
/// The file is not compacted below this size.
pub const COMPACT_BYTES_MIN: u64 = 64 << 20;
/// Preallocated bytes kept after the last record from the start (see `WalKv::keep_headroom`).
const HEADROOM_BYTES: u64 = 1 << 20;
/// File names of damaged logs kept as evidence end with this.
pub const EVIDENCE_SUFFIX: &str = ".damaged";

const SLOT_TREES: [Tree; frame::SLOTS] = [Tree::Raft, Tree::Log, Tree::Node];

fn slot(tree: Tree) -> Result<usize, KvError> {
    SLOT_TREES.iter().position(|t| *t == tree).ok_or_else(|| {
        KvError::new(
            "write-ahead log",
            format!("tree {} is not kept in the Raft log file", tree.name()),
        )
    })
}

fn file_name(generation: u64) -> String {
    format!("{generation:016x}.wal")
}

/// Lost or damaged synced data found when the log was opened (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalDamage {
    #[error("the Raft log file is missing, but its sync marker says generation {generation} had been synced up to byte {synced}")]
    Missing { generation: u64, synced: u64 },
    #[error("the Raft log's valid records end at byte {valid_end} of generation {generation}, but it had been synced up to byte {synced} (truncated, or rolled back to an older copy)")]
    LostSyncedWrites {
        generation: u64,
        valid_end: u64,
        synced: u64,
    },
    #[error("the Raft log record at byte {offset} of generation {generation} is damaged although it had been synced: {reason}")]
    Corrupt {
        generation: u64,
        offset: u64,
        reason: String,
    },
    #[error("the Raft log holds records but its sync marker is missing, so lost synced writes cannot be ruled out")]
    MarkerMissing { generation: u64 },
}

/// Sizes that tests and the simulation shrink (a simulated file holds its bytes in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// See [`PREALLOCATE_BYTES`].
    pub preallocate_bytes: u64,
    /// See [`COMPACT_BYTES_MIN`].
    pub compact_bytes_min: u64,
    /// Simulation only: known-bad behaviours of the log's recovery (`crate::known_bad`).
    #[cfg(madsim)]
    pub known_bad: crate::known_bad::KnownBad,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            preallocate_bytes: PREALLOCATE_BYTES,
            compact_bytes_min: COMPACT_BYTES_MIN,
            #[cfg(madsim)]
            known_bad: Default::default(),
        }
    }
}

/// What [`WalKv::open`] found.
#[derive(Debug)]
pub struct WalOpen {
    pub kv: WalKv,
    /// There was no log at all: a new one was made.
    pub fresh: bool,
    /// Synced data was lost or damaged (the log serves the valid records before it).
    pub damage: Option<WalDamage>,
}

#[derive(Debug)]
struct Inner {
    file: Arc<dyn WalFile>,
    generation: u64,
    /// Bytes written (the next record goes here).
    end: u64,
    /// Bytes known durable.
    synced: u64,
    maps: Maps,
    /// Bytes of live keys and values (drives compaction).
    live: u64,
    /// The file's length: everything from `end` to here is zeros (preallocated).
    allocated: u64,
    /// Set when a write failed part-way: the bytes after `end` are no longer known to be zeros,
    /// so nothing more is written until the file is reopened (which cuts them off).
    failed: Option<String>,
    /// Damage found at open and not yet accepted: writes are refused.
    damage: Option<WalDamage>,
}

#[derive(Debug, Default)]
struct MarkerState {
    file: Option<Arc<dyn WalFile>>,
    last: Option<Slot>,
}

/// See the module comment.
#[derive(Clone)]
pub struct WalKv {
    inner: Arc<RwLock<Inner>>,
    marker: Arc<Mutex<MarkerState>>,
    io: Arc<dyn WalIo>,
    options: WalOptions,
}

impl std::fmt::Debug for WalKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WalKv({})", self.io.describe())
    }
}

fn kv_err(op: &'static str, io: &dyn WalIo, e: impl std::fmt::Display) -> KvError {
    KvError::new(op, format!("{}: {e}", io.describe()))
}

fn io_err(op: &'static str, io: &dyn WalIo, e: &std::io::Error) -> KvError {
    KvError::io(op, io.describe(), e)
}

impl WalKv {
    /// The damage found at open, while not accepted.
    pub fn damage(&self) -> Option<WalDamage> {
        self.read().damage.clone()
    }

    /// True when no tree holds anything.
    pub fn is_empty(&self) -> bool {
        self.read().maps.iter().all(|m| m.is_empty())
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every update of `Inner` is completed before its guard drops; a panic elsewhere while
        // holding it leaves it consistent.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn marker_lock(&self) -> MutexGuard<'_, MarkerState> {
        self.marker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn value(&self, inner: &Inner, loc: Loc) -> Result<Vec<u8>, KvError> {
        let mut buf = vec![0u8; loc.len as usize];
        inner
            .file
            .read_at(&mut buf, loc.offset)
            .map_err(|e| kv_err("read", &*self.io, e))?;
        Ok(buf)
    }

    /// Records durably that `mark` is synced; never moves the marker back.
    fn mark(&self, mark: Mark) -> Result<(), KvError> {
        let mut m = self.marker_lock();
        if m.last.is_some_and(|l| l.mark >= mark) {
            return Ok(());
        }
        let file = match &m.file {
            Some(f) => f.clone(),
            None => {
                let f = self
                    .io
                    .create(MARKER_FILE)
                    .and_then(|f| self.io.sync_dir().map(|()| f))
                    .map_err(|e| kv_err("create sync marker", &*self.io, e))?;
                m.file = Some(f.clone());
                f
            }
        };
        let slot = Slot {
            sequence: m.last.map_or(1, |l| l.sequence + 1),
            mark,
        };
        file.write_at(&slot.encode(), slot.offset())
            .and_then(|()| file.sync_data())
            .map_err(|e| kv_err("write sync marker", &*self.io, e))?;
        m.last = Some(slot);
        Ok(())
    }

    /// fdatasync of everything written so far, then the marker; blocking.
    pub fn sync_blocking(&self) -> Result<(), KvError> {
        let (file, generation, end) = {
            let inner = self.read();
            if inner.synced >= inner.end {
                return Ok(());
            }
            (inner.file.clone(), inner.generation, inner.end)
        };
        file.sync_data()
            .map_err(|e| io_err("fdatasync", &*self.io, &e))?;
        self.mark(Mark {
            generation,
            synced: end,
        })?;
        let mut inner = self.write_lock();
        // A compaction meanwhile wrote a new, fully synced file: nothing to record.
        if inner.generation == generation && inner.synced < end {
            inner.synced = end;
        }
        Ok(())
    }
}

impl Kv for WalKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let slot = slot(tree)?;
        let inner = self.read();
        match inner.maps[slot].get(key) {
            None => Ok(None),
            Some(loc) => self.value(&inner, *loc).map(Some),
        }
    }

    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, KvError> {
        let slot = slot(tree)?;
        let inner = self.read();
        inner.maps[slot]
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .take(limit)
            .map(|(k, loc)| Ok((k.clone(), self.value(&inner, *loc)?)))
            .collect()
    }

    fn last(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<Option<KvPair>, KvError> {
        let slot = slot(tree)?;
        let inner = self.read();
        match inner.maps[slot]
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .next_back()
        {
            None => Ok(None),
            Some((k, loc)) => Ok(Some((k.clone(), self.value(&inner, *loc)?))),
        }
    }

    fn write(&self, tree: Tree, batch: KvBatch) -> Result<(), KvError> {
        let slot = slot(tree)?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut inner = self.write_lock();
        if let Some(damage) = &inner.damage {
            return Err(KvError::new(
                "write-ahead log",
                format!("{damage}; writes wait until the node has recorded that it is repairing"),
            ));
        }
        if let Some(why) = &inner.failed {
            return Err(KvError::new(
                "write-ahead log",
                format!("an earlier write failed ({why}); restart the node"),
            ));
        }
        let ops: Vec<(&[u8], Option<&[u8]>)> = batch
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        let (record, locs) = frame::encode_record(slot as u8, &ops, inner.synced)
            .map_err(|e| KvError::new("write-ahead log", e))?;
        let base = inner.end;
        let needed = base + record.len() as u64;
        if needed > inner.allocated {
            self.grow(&mut inner, needed)?;
        }
        if let Err(e) = inner.file.write_at(&record, base) {
            // Part of the record may be on disk: recovery cuts it off at the next open.
            inner.failed = Some(e.to_string());
            return Err(kv_err("write", &*self.io, e));
        }
        inner.end = base + record.len() as u64;
        let Inner { maps, live, .. } = &mut *inner;
        for ((key, _), loc) in batch.iter().zip(locs) {
            let loc = loc.map(|l| Loc {
                offset: l.offset + base,
                len: l.len,
            });
            frame::apply(maps, live, slot, key, loc);
        }
        // The write itself is done; a compaction that cannot run now (a nearly full disk)
        // runs at a later write.
        if let Err(e) = self.maybe_compact(&mut inner) {
            tracing::warn!(log = %self.io.describe(), error = %e, "cannot compact the Raft log file now; will retry");
        }
        Ok(())
    }

    fn clear(&self, tree: Tree) -> Result<(), KvError> {
        let slot = slot(tree)?;
        let keys: KvBatch = self.read().maps[slot]
            .keys()
            .map(|k| (k.clone(), None))
            .collect();
        self.write(tree, keys)
    }

    fn sync(&self) -> SyncFuture<'_> {
        let this = self.clone();
        self.io.run_sync(Box::new(move || this.sync_blocking()))
    }
}

#[cfg(test)]
mod tests;
