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
pub mod io;
pub mod marker;
pub mod mem;

use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use self::frame::{Loc, Maps, FILE_MAGIC};
use self::io::{WalFile, WalIo};
use self::marker::{Mark, Slot, MARKER_FILE};
use super::kv::{Kv, KvBatch, KvError, KvPair, SyncFuture, Tree};
use super::StoreError;

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
    /// Opens the log in `data_dir/raft-log`, creating it (mode 0700) if missing.
    #[cfg(not(madsim))]
    pub fn open_dir(data_dir: &std::path::Path) -> Result<WalOpen, StoreError> {
        WalKv::open_dir_with(data_dir, WalOptions::default())
    }

    /// [`WalKv::open_dir`] with other sizes.
    #[cfg(not(madsim))]
    pub fn open_dir_with(
        data_dir: &std::path::Path,
        options: WalOptions,
    ) -> Result<WalOpen, StoreError> {
        let dir = data_dir.join(WAL_DIR);
        let io = io::OsDir::new(&dir)
            .map_err(|e| KvError::new("create log dir", format!("{}: {e}", dir.display())))?;
        WalKv::open_with(Arc::new(io), options)
    }

    /// Opens (or creates) the log in `io`. A torn tail is cut off; lost or damaged synced data
    /// is reported in [`WalOpen::damage`]. Errors are I/O failures only.
    pub fn open(io: Arc<dyn WalIo>) -> Result<WalOpen, StoreError> {
        WalKv::open_with(io, WalOptions::default())
    }

    /// [`WalKv::open`] with other sizes.
    pub fn open_with(io: Arc<dyn WalIo>, options: WalOptions) -> Result<WalOpen, StoreError> {
        let mut generations = Vec::new();
        for name in io.list().map_err(|e| kv_err("list log dir", &*io, e))? {
            if name.ends_with(".tmp") {
                // An unfinished compaction: the previous generation is still complete.
                io.remove(&name).map_err(|e| kv_err("remove", &*io, e))?;
            } else if let Some(g) = name
                .strip_suffix(".wal")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                generations.push(g);
            }
        }
        generations.sort_unstable();
        let marker_bytes = io
            .read(MARKER_FILE)
            .map_err(|e| kv_err("read sync marker", &*io, e))?;
        let mark = marker_bytes.as_deref().and_then(marker::read);
        // KNOWN-BAD (simulation only) when set: the marker is read but never consulted.
        let consult_marker = !known_bad!(options.known_bad, SyncMarkerIgnored);
        let marker_file = match marker_bytes {
            Some(_) => Some(
                io.open(MARKER_FILE)
                    .map_err(|e| kv_err("open sync marker", &*io, e))?,
            ),
            None => None,
        };
        let marker_state = MarkerState {
            file: marker_file,
            last: mark,
        };
        let Some(&generation) = generations.last() else {
            let Some(m) = mark.filter(|_| consult_marker) else {
                let kv = WalKv::fresh(io, 1, marker_state, options)?;
                return Ok(WalOpen {
                    kv,
                    fresh: true,
                    damage: None,
                });
            };
            // A marker without a log: the log was deleted. Nothing is written until the damage
            // is accepted, so the next open finds the same.
            let damage = WalDamage::Missing {
                generation: m.mark.generation,
                synced: m.mark.synced,
            };
            let end = FILE_MAGIC.len() as u64;
            let kv = WalKv {
                inner: Arc::new(RwLock::new(Inner {
                    file: Arc::new(mem::MemFile::default()),
                    generation: m.mark.generation,
                    end,
                    synced: end,
                    maps: Default::default(),
                    live: 0,
                    allocated: end,
                    failed: None,
                    damage: Some(damage.clone()),
                })),
                marker: Arc::new(Mutex::new(marker_state)),
                io,
                options,
            };
            return Ok(WalOpen {
                kv,
                fresh: false,
                damage: Some(damage),
            });
        };
        // A finished compaction renamed its file into place before removing the old one.
        for old in &generations[..generations.len() - 1] {
            io.remove(&file_name(*old))
                .map_err(|e| kv_err("remove", &*io, e))?;
        }
        let name = file_name(generation);
        let bytes = io
            .read(&name)
            .map_err(|e| kv_err("read", &*io, e))?
            .unwrap_or_default();
        let recovered = frame::recover(&bytes);
        let valid_end = recovered.valid_end as u64;
        let has_records = recovered.valid_end > FILE_MAGIC.len();
        let damage = if let Some(d) = &recovered.damage {
            Some(WalDamage::Corrupt {
                generation,
                offset: d.offset as u64,
                reason: d.reason.clone(),
            })
        } else {
            match mark {
                _ if !consult_marker => None,
                Some(m) if m.mark.generation > generation => Some(WalDamage::Missing {
                    generation: m.mark.generation,
                    synced: m.mark.synced,
                }),
                Some(m) if m.mark.generation == generation && valid_end < m.mark.synced => {
                    Some(WalDamage::LostSyncedWrites {
                        generation,
                        valid_end,
                        synced: m.mark.synced,
                    })
                }
                None if has_records => Some(WalDamage::MarkerMissing { generation }),
                _ => None,
            }
        };
        let file = io.open(&name).map_err(|e| kv_err("open", &*io, e))?;
        let tail = &bytes[recovered.valid_end..];
        let allocated = if damage.is_some() {
            // Nothing is cut or written until the damage is accepted.
            bytes.len() as u64
        } else if tail.iter().all(|b| *b == 0) {
            // Zeros after the last record are preallocated space, kept. After a process crash
            // without a power loss, what was read here may still be only in the page cache;
            // everything read counts as durable from now on (Raft acts on it at once), so make
            // it so.
            file.sync_data()
                .map_err(|e| kv_err("fsync at open", &*io, e))?;
            bytes.len() as u64
        } else {
            // Anything else is a torn write, cut off so that no stale bytes can ever follow a
            // new record.
            tracing::warn!(
                log = %io.describe(),
                offset = valid_end,
                bytes = tail.len(),
                "cutting off the torn end of the Raft log (unsynced writes lost in a crash)"
            );
            file.set_len(valid_end)
                .and_then(|()| file.sync_data())
                .map_err(|e| kv_err("truncate torn tail", &*io, e))?;
            valid_end
        };
        let kv = WalKv {
            inner: Arc::new(RwLock::new(Inner {
                file,
                generation,
                end: valid_end,
                synced: valid_end,
                maps: recovered.maps,
                live: recovered.live,
                allocated,
                failed: None,
                damage: damage.clone(),
            })),
            marker: Arc::new(Mutex::new(marker_state)),
            io,
            options,
        };
        if damage.is_none() {
            // What is on disk now is durable: say so (also after a compaction whose marker
            // update a crash cut off).
            kv.mark(Mark {
                generation,
                synced: valid_end,
            })?;
            kv.keep_headroom();
        }
        Ok(WalOpen {
            kv,
            fresh: false,
            damage,
        })
    }

    /// A new, empty generation `generation` with its marker.
    fn fresh(
        io: Arc<dyn WalIo>,
        generation: u64,
        marker: MarkerState,
        options: WalOptions,
    ) -> Result<WalKv, StoreError> {
        let file = new_file(&*io, generation, &[])?;
        let end = FILE_MAGIC.len() as u64;
        let kv = WalKv {
            inner: Arc::new(RwLock::new(Inner {
                file,
                generation,
                end,
                synced: end,
                maps: Default::default(),
                live: 0,
                allocated: end,
                failed: None,
                damage: None,
            })),
            marker: Arc::new(Mutex::new(marker)),
            io,
            options,
        };
        kv.mark(Mark {
            generation,
            synced: end,
        })?;
        kv.keep_headroom();
        Ok(kv)
    }

    /// Continues from the valid records before the damage found at open: the damaged file is
    /// kept beside the log as `<generation>.damaged`, the valid records are copied to the next
    /// generation, and writes are accepted again. Call it only once the node has recorded that
    /// it is repairing (the damage is then no longer visible in the log itself).
    pub fn accept_damage(&self) -> Result<(), StoreError> {
        let mut inner = self.write_lock();
        let Some(damage) = inner.damage.clone() else {
            return Ok(());
        };
        let old = inner.generation;
        self.rewrite(&mut inner)?;
        match damage {
            WalDamage::Missing { .. } => {}
            WalDamage::MarkerMissing { .. } => self.remove_generation(old),
            WalDamage::LostSyncedWrites { .. } | WalDamage::Corrupt { .. } => {
                let evidence = format!("{old:016x}{EVIDENCE_SUFFIX}");
                self.io
                    .rename(&file_name(old), &evidence)
                    .and_then(|()| self.io.sync_dir())
                    .map_err(|e| kv_err("keep the damaged log", &*self.io, e))?;
                tracing::warn!(log = %self.io.describe(), file = %evidence, "kept the damaged Raft log file as evidence");
            }
        }
        inner.damage = None;
        Ok(())
    }

    /// Reads the whole file back from storage and checks every record written so far (bit rot,
    /// or the file changed behind the node's back). Returns the bytes checked.
    pub fn scrub(&self) -> Result<u64, WalDamage> {
        let (file, generation, end) = {
            let inner = self.read();
            if inner.damage.is_some() {
                return Ok(0);
            }
            (inner.file.clone(), inner.generation, inner.end)
        };
        let mut bytes = vec![0u8; end as usize];
        if let Err(e) = file.read_at(&mut bytes, 0) {
            return Err(WalDamage::Corrupt {
                generation,
                offset: 0,
                reason: format!("cannot read the file back: {e}"),
            });
        }
        let recovered = frame::recover(&bytes);
        match recovered.damage {
            Some(d) => Err(WalDamage::Corrupt {
                generation,
                offset: d.offset as u64,
                reason: d.reason,
            }),
            None if (recovered.valid_end as u64) < end => Err(WalDamage::Corrupt {
                generation,
                offset: recovered.valid_end as u64,
                reason: format!(
                    "a record written before byte {end} no longer reads back: {}",
                    frame::parse_at(&bytes, recovered.valid_end)
                        .err()
                        .unwrap_or_default()
                ),
            }),
            None => Ok(end),
        }
    }

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

    /// Copies the live entries to the next generation, which replaces the current one (synced,
    /// renamed into place, marked). The old file is left for the caller.
    fn rewrite(&self, inner: &mut Inner) -> Result<(), KvError> {
        // Past whatever the marker names too (a deleted newer generation).
        let marked = self.marker_lock().last.map_or(0, |l| l.mark.generation);
        let generation = inner.generation.max(marked) + 1;
        let mut records = Vec::new();
        let mut maps: Maps = Default::default();
        let mut live = 0;
        let mut offset = FILE_MAGIC.len() as u64;
        for (slot, map) in inner.maps.iter().enumerate() {
            let mut entries: Vec<(&Vec<u8>, Vec<u8>)> = Vec::new();
            let mut bytes = 0;
            let mut iter = map.iter().peekable();
            while let Some((key, loc)) = iter.next() {
                entries.push((key, self.value(inner, *loc)?));
                bytes += key.len() + loc.len as usize;
                if bytes >= COMPACT_RECORD_BYTES || iter.peek().is_none() {
                    let ops: Vec<(&[u8], Option<&[u8]>)> = entries
                        .iter()
                        .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
                        .collect();
                    let (rec, locs) = frame::encode_record(slot as u8, &ops, 0)
                        .map_err(|e| KvError::new("write-ahead log", e))?;
                    for ((k, _), loc) in entries.iter().zip(locs) {
                        let loc = loc.map(|l| Loc {
                            offset: l.offset + offset,
                            len: l.len,
                        });
                        frame::apply(&mut maps, &mut live, slot, k, loc);
                    }
                    offset += rec.len() as u64;
                    records.push(rec);
                    entries.clear();
                    bytes = 0;
                }
            }
        }
        let file = new_file(&*self.io, generation, &records)?;
        *inner = Inner {
            file,
            generation,
            end: offset,
            synced: offset,
            maps,
            live,
            allocated: offset,
            failed: None,
            damage: inner.damage.clone(),
        };
        self.mark(Mark {
            generation,
            synced: offset,
        })
    }

    fn remove_generation(&self, generation: u64) {
        // The new generation is in place and synced: a leftover old file is only wasted space
        // (the next open removes it), not a reason to fail the write that triggered this.
        if let Err(e) = self.io.remove(&file_name(generation)) {
            tracing::warn!(log = %self.io.describe(), generation, error = %e, "cannot remove an old Raft log file");
        }
    }

    /// Copies the live entries to the next generation when the file is mostly dead.
    fn maybe_compact(&self, inner: &mut Inner) -> Result<(), KvError> {
        if inner.end < self.options.compact_bytes_min || inner.live.saturating_mul(2) > inner.end {
            return Ok(());
        }
        let old = inner.generation;
        let before = inner.end;
        self.rewrite(inner)?;
        self.remove_generation(old);
        tracing::info!(
            from_bytes = before,
            to_bytes = inner.end,
            "compacted the Raft log file"
        );
        Ok(())
    }

    /// Makes sure some preallocated space follows the last record, so that Raft's own small
    /// writes (votes, ticks) still fit when the disk fills up. Best effort.
    fn keep_headroom(&self) {
        let mut inner = self.write_lock();
        let wanted = inner.end + HEADROOM_BYTES.min(self.options.preallocate_bytes);
        if inner.allocated < wanted {
            if let Err(e) = self.grow(&mut inner, wanted) {
                tracing::warn!(log = %self.io.describe(), error = %e, "cannot preallocate room in the Raft log file");
            }
        }
    }

    /// Grows the preallocated zeros so that `needed` bytes fit: by [`PREALLOCATE_BYTES`] (at
    /// most an eighth of the free space), or only as far as needed when that much space is not
    /// there. Zeros only, so a failure leaves
    /// the file consistent.
    fn grow(&self, inner: &mut Inner, needed: u64) -> Result<(), KvError> {
        let before = inner.allocated;
        // Never more than an eighth of what is free: on a small disk the log must not take the
        // room the ledger and the disk space alarm's reserve need.
        let ahead = self
            .options
            .preallocate_bytes
            .min(self.io.free_bytes().map_or(u64::MAX, |f| f / 8));
        let step = preallocate(&*inner.file, before, needed + ahead);
        if let Ok(to) = step {
            inner.allocated = to;
            return Ok(());
        }
        // Not that much room: give back what the attempt took (it must not fill the disk),
        // then grow only as far as needed.
        let exact = inner
            .file
            .set_len(before)
            .map_err(|e| (before, e))
            .and_then(|()| preallocate(&*inner.file, before, needed));
        match exact {
            Ok(to) => {
                inner.allocated = to;
                Ok(())
            }
            Err((_, e)) => {
                // Zeros only were written: cutting them keeps the file consistent.
                let _ = inner.file.set_len(before);
                Err(io_err("preallocate", &*self.io, &e))
            }
        }
    }
}

/// Fills `from..to` of the file with zeros; on failure says how far it got.
fn preallocate(file: &dyn WalFile, from: u64, to: u64) -> Result<u64, (u64, std::io::Error)> {
    const PIECE: usize = 1 << 20;
    let zeros = vec![0u8; PIECE];
    let mut at = from;
    while at < to {
        let n = PIECE.min((to - at) as usize);
        file.write_at(&zeros[..n], at).map_err(|e| (at, e))?;
        at += n as u64;
    }
    Ok(at.max(from))
}

/// Writes a complete log file durably: a temporary file, synced, renamed into place, and the
/// directory synced.
fn new_file(
    io: &dyn WalIo,
    generation: u64,
    records: &[Vec<u8>],
) -> Result<Arc<dyn WalFile>, KvError> {
    let tmp = format!("{generation:016x}.tmp");
    let file = io.create(&tmp).map_err(|e| kv_err("create", io, e))?;
    let mut at = 0u64;
    for chunk in std::iter::once(&FILE_MAGIC[..]).chain(records.iter().map(Vec::as_slice)) {
        file.write_at(chunk, at)
            .map_err(|e| kv_err("write", io, e))?;
        at += chunk.len() as u64;
    }
    file.sync_data().map_err(|e| kv_err("fsync", io, e))?;
    io.rename(&tmp, &file_name(generation))
        .map_err(|e| kv_err("rename", io, e))?;
    io.sync_dir().map_err(|e| kv_err("fsync log dir", io, e))?;
    Ok(file)
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
