//! The Raft log's own file: an append-only write-ahead log behind the storage seam, for the
//! [`Tree::Raft`] and [`Tree::Log`] trees only.
//!
//! Why not sled: every Raft append must be durable before it is acknowledged, and a sled flush
//! on this path costs several `pwrite` + `sync_file_range` calls on sled's I/O threads, then an
//! `fdatasync` of its data file and one of the sync-number file (docs/PERFORMANCE.md). Here an
//! append is one `pwrite` and a sync is one `fdatasync`, shared by every append queued meanwhile.
//!
//! Layout: `<data_dir>/raft-log/<generation>.wal` (16 hex digits), starting with [`FILE_MAGIC`],
//! then one record per written batch:
//!
//! ```text
//! magic "SLw1" | body length u32 | synced-before u64 | checksum 8 bytes | body
//! body = tree u8 | op count u32 | ops;  op = 1 | key len u32 | key | value len u32 | value
//!                                          | 0 | key len u32 | key            (a removal)
//! ```
//!
//! All integers are big-endian; the checksum is the first 8 bytes of a BLAKE3 hash of the
//! length, synced-before and body. Only keys and value locations are kept in memory; values are
//! read back with `pread` (the page cache holds the recent ones).
//!
//! **Torn tails and corruption.** A crash can leave the unsynced end of the file torn: cut short,
//! zero-filled, or written out of order. `synced-before` tells the two apart: it is the offset up
//! to which the records had been made durable when the record was written. At open, the first
//! record that fails its checks ends the log — the tail is torn and is cut off — unless a later
//! valid record says that offset had already been synced: then synced data was damaged and the
//! store refuses to open ([`StoreError::Corrupt`]). Damage to the last synced group of records, with nothing
//! valid written after it, cannot be told from a torn write; it is cut off like one.
//!
//! **Preallocation.** The file grows by [`PREALLOCATE_BYTES`] of zeros at a time, so a sync of
//! an append does not also have to persist a new file length. Zeros after the last record are
//! kept at open; any other bytes there are a torn write and are cut off, so stale bytes never
//! follow a new record. After a failed write the store refuses further writes until reopened.
//!
//! **Compaction.** Purged entries stay in the file until it holds more than
//! [`COMPACT_BYTES_MIN`] and less than half of it is live; then the live entries are copied to
//! the next generation, which is synced and renamed into place before the old file is removed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::kv::{Kv, KvBatch, KvError, KvPair, SyncFuture, Tree};
use super::StoreError;

/// The directory, inside the node's data directory.
pub const WAL_DIR: &str = "raft-log";
/// First bytes of every log file.
pub const FILE_MAGIC: &[u8; 16] = b"stateledger-wal1";
const RECORD_MAGIC: &[u8; 4] = b"SLw1";
const HEADER_LEN: usize = 4 + 4 + 8 + 8;
/// Largest record body; a batch bigger than this is refused. A Raft entry is at most
/// `limits.batch_records_max` records of at most `RECORD_BYTES_MAX` each, far below it.
pub const RECORD_BODY_BYTES_MAX: usize = 1 << 30;
/// Compaction copies live entries in records of about this size.
const COMPACT_RECORD_BYTES: usize = 4 << 20;
/// The file grows by this many zero bytes at a time. Syncing an append inside the file does not
/// have to persist a new file length too: `fdatasync` p50 121 µs instead of 175 µs here.
pub const PREALLOCATE_BYTES: u64 = 8 << 20;
/// The file is not compacted below this size.
pub const COMPACT_BYTES_MIN: u64 = 64 << 20;
const OP_PUT: u8 = 1;
const OP_REMOVE: u8 = 0;

fn slot(tree: Tree) -> Result<usize, KvError> {
    match tree {
        Tree::Raft => Ok(0),
        Tree::Log => Ok(1),
        other => Err(KvError::new(
            "write-ahead log",
            format!("tree {} is not kept in the Raft log file", other.name()),
        )),
    }
}

const SLOT_TREES: [Tree; 2] = [Tree::Raft, Tree::Log];

/// Where a value is in the current file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    offset: u64,
    len: u32,
}

type Maps = [BTreeMap<Vec<u8>, Loc>; 2];

#[derive(Debug)]
struct Inner {
    file: Arc<File>,
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
}

/// See the module comment.
#[derive(Clone)]
pub struct WalKv {
    inner: Arc<RwLock<Inner>>,
    dir: PathBuf,
}

impl std::fmt::Debug for WalKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WalKv({})", self.dir.display())
    }
}

fn file_name(generation: u64) -> String {
    format!("{generation:016x}.wal")
}

fn checksum(body_len: u32, synced_before: u64, body: &[u8]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(b"stateledger:wal:v1\0");
    h.update(&body_len.to_be_bytes());
    h.update(&synced_before.to_be_bytes());
    h.update(body);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

fn kv_err(op: &'static str, path: &Path, e: impl std::fmt::Display) -> KvError {
    KvError::new(op, format!("{}: {e}", path.display()))
}

/// One record, encoded, with where each put's value lands relative to the record's start.
fn encode_record(
    slot: u8,
    ops: &[(&[u8], Option<&[u8]>)],
    synced_before: u64,
) -> Result<(Vec<u8>, Vec<Option<Loc>>), KvError> {
    let body_len: usize = 5 + ops
        .iter()
        .map(|(k, v)| 1 + 4 + k.len() + v.map_or(0, |v| 4 + v.len()))
        .sum::<usize>();
    if body_len > RECORD_BODY_BYTES_MAX {
        return Err(KvError::new(
            "write-ahead log",
            format!("a batch of {body_len} bytes is over the limit of {RECORD_BODY_BYTES_MAX}"),
        ));
    }
    let too_long = |what: &str| KvError::new("write-ahead log", format!("{what} over 4 GiB"));
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&synced_before.to_be_bytes());
    out.extend_from_slice(&[0u8; 8]); // checksum, filled in below
    out.push(slot);
    out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
    let mut locs = Vec::with_capacity(ops.len());
    for (k, v) in ops {
        let klen = u32::try_from(k.len()).map_err(|_| too_long("a key"))?;
        match v {
            Some(v) => {
                let vlen = u32::try_from(v.len()).map_err(|_| too_long("a value"))?;
                out.push(OP_PUT);
                out.extend_from_slice(&klen.to_be_bytes());
                out.extend_from_slice(k);
                out.extend_from_slice(&vlen.to_be_bytes());
                locs.push(Some(Loc {
                    offset: out.len() as u64,
                    len: vlen,
                }));
                out.extend_from_slice(v);
            }
            None => {
                out.push(OP_REMOVE);
                out.extend_from_slice(&klen.to_be_bytes());
                out.extend_from_slice(k);
                locs.push(None);
            }
        }
    }
    let sum = checksum(body_len as u32, synced_before, &out[HEADER_LEN..]);
    out[16..24].copy_from_slice(&sum);
    Ok((out, locs))
}

/// A record read back: its ops with value locations (absolute), and where it ends.
struct Parsed<'a> {
    slot: usize,
    ops: Vec<(&'a [u8], Option<Loc>)>,
    synced_before: u64,
    end: usize,
}

/// Parses the record at `at`, or says why there is none.
fn parse_at(bytes: &[u8], at: usize) -> Result<Parsed<'_>, String> {
    let rest = bytes.get(at..).unwrap_or_default();
    if rest.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes where a record header needs {HEADER_LEN}",
            rest.len()
        ));
    }
    if &rest[..4] != RECORD_MAGIC {
        return Err("no record marker".into());
    }
    let body_len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let synced_before = u64::from_be_bytes(rest[8..16].try_into().unwrap_or([0; 8]));
    let body_end = HEADER_LEN + body_len as usize;
    if body_len as usize > RECORD_BODY_BYTES_MAX || body_end > rest.len() {
        return Err(format!(
            "the record claims {body_len} body bytes but {} remain",
            rest.len() - HEADER_LEN
        ));
    }
    let body = &rest[HEADER_LEN..body_end];
    if rest[16..24] != checksum(body_len, synced_before, body) {
        return Err("checksum mismatch".into());
    }
    // The checksum held, so a malformed body is damage the checksum missed or a bug: refuse it
    // like any other bad record.
    let mut r = Reader { bytes: body, at: 0 };
    let slot = r.u8()? as usize;
    if slot >= SLOT_TREES.len() {
        return Err(format!("unknown tree number {slot}"));
    }
    let count = r.u32()?;
    let mut ops = Vec::new();
    for _ in 0..count {
        let kind = r.u8()?;
        let klen = r.u32()? as usize;
        let key = r.take(klen)?;
        match kind {
            OP_PUT => {
                let vlen = r.u32()?;
                let offset = (at + HEADER_LEN + r.at) as u64;
                r.take(vlen as usize)?;
                ops.push((key, Some(Loc { offset, len: vlen })));
            }
            OP_REMOVE => ops.push((key, None)),
            other => return Err(format!("unknown operation {other}")),
        }
    }
    if r.at != body.len() {
        return Err(format!(
            "{} bytes after the last operation",
            body.len() - r.at
        ));
    }
    Ok(Parsed {
        slot,
        ops,
        synced_before,
        end: at + body_end,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| "an operation runs past the record's end".to_string())?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What a file holds, read back at open.
#[derive(Debug)]
struct Recovered {
    maps: Maps,
    live: u64,
    /// Where the valid records end; anything after is a torn tail.
    valid_end: usize,
}

fn apply(maps: &mut Maps, live: &mut u64, slot: usize, key: &[u8], loc: Option<Loc>) {
    let weight = |k: &[u8], l: &Loc| (k.len() + l.len as usize + 9) as u64;
    let old = match loc {
        Some(loc) => {
            *live += weight(key, &loc);
            maps[slot].insert(key.to_vec(), loc)
        }
        None => maps[slot].remove(key),
    };
    if let Some(old) = old {
        *live = live.saturating_sub(weight(key, &old));
    }
}

/// Reads every record of a file's bytes (see the module comment for torn tails).
fn recover(bytes: &[u8]) -> Result<Recovered, (usize, String)> {
    if bytes.len() < FILE_MAGIC.len() || &bytes[..FILE_MAGIC.len()] != FILE_MAGIC {
        return Err((0, "the file does not start with the log file marker".into()));
    }
    let mut maps: Maps = Default::default();
    let mut live = 0;
    let mut at = FILE_MAGIC.len();
    while at < bytes.len() {
        match parse_at(bytes, at) {
            Ok(rec) => {
                for (key, loc) in &rec.ops {
                    apply(&mut maps, &mut live, rec.slot, key, *loc);
                }
                at = rec.end;
            }
            Err(why) => {
                // Torn tail, or damage to synced data? Look for a later valid record that says
                // this offset had been synced.
                let mut from = at + 1;
                while let Some(found) = find(bytes, from, RECORD_MAGIC) {
                    if let Ok(later) = parse_at(bytes, found) {
                        if later.synced_before > at as u64 {
                            return Err((
                                at,
                                format!(
                                    "{why}, but the record at offset {found} shows the log had been \
                                     synced up to offset {}",
                                    later.synced_before
                                ),
                            ));
                        }
                    }
                    from = found + 1;
                }
                break;
            }
        }
    }
    Ok(Recovered {
        maps,
        live,
        valid_end: at.min(bytes.len()),
    })
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

impl WalKv {
    /// Opens (or creates) the log in `data_dir/raft-log`. A torn tail is cut off; damaged synced
    /// data is [`StoreError::Corrupt`].
    pub fn open(data_dir: &Path) -> Result<WalKv, StoreError> {
        let dir = data_dir.join(WAL_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| kv_err("create log dir", &dir, e))?;
        let mut generations = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| kv_err("list log dir", &dir, e))? {
            let entry = entry.map_err(|e| kv_err("list log dir", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // An unfinished compaction: the previous generation is still complete.
                std::fs::remove_file(entry.path())
                    .map_err(|e| kv_err("remove", &entry.path(), e))?;
            } else if let Some(g) = name
                .strip_suffix(".wal")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                generations.push(g);
            }
        }
        generations.sort_unstable();
        let Some(&generation) = generations.last() else {
            return WalKv::create(dir);
        };
        // A finished compaction renamed its file into place before removing the old one.
        for old in &generations[..generations.len() - 1] {
            let p = dir.join(file_name(*old));
            std::fs::remove_file(&p).map_err(|e| kv_err("remove", &p, e))?;
        }
        let path = dir.join(file_name(generation));
        let bytes = std::fs::read(&path).map_err(|e| kv_err("read", &path, e))?;
        let recovered = recover(&bytes).map_err(|(offset, reason)| StoreError::Corrupt {
            tree: "raft-log",
            key: format!("{} offset {offset}", path.display()),
            reason,
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| kv_err("open", &path, e))?;
        let tail = &bytes[recovered.valid_end..];
        // Zeros after the last record are preallocated space, kept; anything else is a torn
        // write, cut off so that no stale bytes can ever follow a new record.
        let allocated = if tail.iter().all(|b| *b == 0) {
            // After a process crash without a power loss, what was read back may still be only in
            // the page cache. Everything read here counts as durable from now on (Raft acts on
            // it at once), so make it so.
            file.sync_data()
                .map_err(|e| kv_err("fsync at open", &path, e))?;
            bytes.len() as u64
        } else {
            tracing::warn!(
                file = %path.display(),
                offset = recovered.valid_end,
                bytes = tail.len(),
                "cutting off the torn end of the Raft log (unsynced writes lost in a crash)"
            );
            file.set_len(recovered.valid_end as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| kv_err("truncate torn tail", &path, e))?;
            recovered.valid_end as u64
        };
        let end = recovered.valid_end as u64;
        Ok(WalKv {
            inner: Arc::new(RwLock::new(Inner {
                file: Arc::new(file),
                generation,
                end,
                synced: end,
                maps: recovered.maps,
                live: recovered.live,
                allocated,
                failed: None,
            })),
            dir,
        })
    }

    fn create(dir: PathBuf) -> Result<WalKv, StoreError> {
        let generation = 1;
        let file = new_file(&dir, generation, &[])?;
        let end = FILE_MAGIC.len() as u64;
        Ok(WalKv {
            inner: Arc::new(RwLock::new(Inner {
                file: Arc::new(file),
                generation,
                end,
                synced: end,
                maps: Default::default(),
                live: 0,
                allocated: end,
                failed: None,
            })),
            dir,
        })
    }

    /// True when neither tree holds anything.
    pub fn is_empty(&self) -> bool {
        self.read().maps.iter().all(BTreeMap::is_empty)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every update of `Inner` is completed before its guard drops; a panic elsewhere while
        // holding it leaves it consistent.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn value(&self, inner: &Inner, loc: Loc) -> Result<Vec<u8>, KvError> {
        let mut buf = vec![0u8; loc.len as usize];
        inner
            .file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|e| kv_err("read", &self.dir, e))?;
        Ok(buf)
    }

    /// fdatasync of everything written so far, blocking.
    pub fn sync_blocking(&self) -> Result<(), KvError> {
        let (file, generation, end) = {
            let inner = self.read();
            if inner.synced >= inner.end {
                return Ok(());
            }
            (inner.file.clone(), inner.generation, inner.end)
        };
        file.sync_data()
            .map_err(|e| kv_err("fdatasync", &self.dir, e))?;
        let mut inner = self.write_lock();
        // A compaction meanwhile wrote a new, fully synced file: nothing to record.
        if inner.generation == generation && inner.synced < end {
            inner.synced = end;
        }
        Ok(())
    }

    /// Copies the live entries to the next generation when the file is mostly dead.
    fn maybe_compact(&self, inner: &mut Inner) -> Result<(), KvError> {
        if inner.end < COMPACT_BYTES_MIN || inner.live.saturating_mul(2) > inner.end {
            return Ok(());
        }
        let generation = inner.generation + 1;
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
                    let (rec, locs) = encode_record(slot as u8, &ops, 0)?;
                    for ((k, _), loc) in entries.iter().zip(locs) {
                        let loc = loc.map(|l| Loc {
                            offset: l.offset + offset,
                            len: l.len,
                        });
                        apply(&mut maps, &mut live, slot, k, loc);
                    }
                    offset += rec.len() as u64;
                    records.push(rec);
                    entries.clear();
                    bytes = 0;
                }
            }
        }
        let file = new_file(&self.dir, generation, &records)?;
        let old = self.dir.join(file_name(inner.generation));
        let before = inner.end;
        *inner = Inner {
            file: Arc::new(file),
            generation,
            end: offset,
            synced: offset,
            maps,
            live,
            allocated: offset,
            failed: None,
        };
        // The new generation is in place and synced: a leftover old file is only wasted space
        // (the next open removes it), not a reason to fail the write that triggered this.
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(file = %old.display(), error = %e, "cannot remove the compacted Raft log file");
        }
        tracing::info!(
            from_bytes = before,
            to_bytes = offset,
            "compacted the Raft log file"
        );
        Ok(())
    }
}

/// Data directories written before the Raft log had its own file keep it in sled's `raft` and
/// `log` trees. When the log file is new, those are copied into it and synced first; once the
/// log file holds anything it is the only authority, and what remains in sled is removed.
#[cfg(not(madsim))]
pub fn adopt_sled_log(log: &WalKv, sled: &super::sled_kv::SledKv) -> Result<(), StoreError> {
    const BATCH: usize = 1024;
    let mut found = false;
    for tree in SLOT_TREES {
        found |= !sled.scan(tree, &[], &[0xff; 16], 1)?.is_empty();
    }
    if !found {
        return Ok(());
    }
    if log.is_empty() {
        for tree in SLOT_TREES {
            let mut from = Vec::new();
            loop {
                let rows = sled.scan(tree, &from, &[0xff; 16], BATCH)?;
                let Some((last, _)) = rows.last() else { break };
                from = last.clone();
                from.push(0);
                let full = rows.len() == BATCH;
                log.write(tree, rows.into_iter().map(|(k, v)| (k, Some(v))).collect())?;
                if !full {
                    break;
                }
            }
        }
        log.sync_blocking()?;
        tracing::info!("moved the Raft log from sled into its own file");
    }
    for tree in SLOT_TREES {
        sled.clear(tree)?;
    }
    sled.sync_blocking()?;
    Ok(())
}

/// Fills `from..to` of the file with zeros.
fn preallocate(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const PIECE: usize = 1 << 20;
    let zeros = vec![0u8; PIECE];
    let mut at = from;
    while at < to {
        let n = PIECE.min((to - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Writes a complete log file durably: a temporary file, synced, renamed into place, and the
/// directory synced.
fn new_file(dir: &Path, generation: u64, records: &[Vec<u8>]) -> Result<File, KvError> {
    let tmp = dir.join(format!("{generation:016x}.tmp"));
    let path = dir.join(file_name(generation));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| kv_err("create", &tmp, e))?;
    let mut at = 0u64;
    for chunk in std::iter::once(&FILE_MAGIC[..]).chain(records.iter().map(Vec::as_slice)) {
        file.write_all_at(chunk, at)
            .map_err(|e| kv_err("write", &tmp, e))?;
        at += chunk.len() as u64;
    }
    file.sync_all().map_err(|e| kv_err("fsync", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| kv_err("rename", &tmp, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| kv_err("fsync log dir", dir, e))?;
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
        let ops: Vec<(&[u8], Option<&[u8]>)> = batch
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        if let Some(why) = &inner.failed {
            return Err(KvError::new(
                "write-ahead log",
                format!("an earlier write failed ({why}); restart the node"),
            ));
        }
        let (record, locs) = encode_record(slot as u8, &ops, inner.synced)?;
        let base = inner.end;
        let needed = base + record.len() as u64;
        if needed > inner.allocated {
            let to = needed + PREALLOCATE_BYTES;
            if let Err(e) = preallocate(&inner.file, inner.allocated, to) {
                // The file may have grown part-way, with zeros only: still consistent.
                return Err(kv_err("preallocate", &self.dir, e));
            }
            inner.allocated = to;
        }
        if let Err(e) = inner.file.write_all_at(&record, base) {
            // Part of the record may be on disk: recovery cuts it off at the next open.
            inner.failed = Some(e.to_string());
            return Err(kv_err("write", &self.dir, e));
        }
        inner.end = base + record.len() as u64;
        let Inner { maps, live, .. } = &mut *inner;
        for ((key, _), loc) in batch.iter().zip(locs) {
            let loc = loc.map(|l| Loc {
                offset: l.offset + base,
                len: l.len,
            });
            apply(maps, live, slot, key, loc);
        }
        self.maybe_compact(&mut inner)
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
        super::kv::sync_on_blocking_pool(move || this.sync_blocking())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(kv: &WalKv, tree: Tree, key: &[u8], value: &[u8]) {
        kv.write(tree, vec![(key.to_vec(), Some(value.to_vec()))])
            .expect("write");
    }

    /// A log in `dir` with each of `puts` written to [`Tree::Log`] and synced.
    fn synced_log(dir: &Path, puts: &[(&[u8], &[u8])]) -> WalKv {
        let kv = WalKv::open(dir).expect("opens");
        for (key, value) in puts {
            put(&kv, Tree::Log, key, value);
            kv.sync_blocking().expect("sync");
        }
        kv
    }

    fn only_file(dir: &Path) -> PathBuf {
        let files: Vec<PathBuf> = std::fs::read_dir(dir.join(WAL_DIR))
            .expect("log dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    #[test]
    fn writes_read_back_before_and_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let kv = WalKv::open(dir.path()).expect("opens");
            assert!(kv.is_empty());
            put(&kv, Tree::Log, &[0, 1], b"one");
            put(&kv, Tree::Log, &[0, 2], b"two");
            put(&kv, Tree::Raft, b"vote", b"v1");
            put(&kv, Tree::Raft, b"vote", b"v2");
            kv.write(Tree::Log, vec![(vec![0, 1], None)])
                .expect("remove");
            assert_eq!(
                kv.get(Tree::Raft, b"vote").expect("get"),
                Some(b"v2".to_vec())
            );
            kv.sync_blocking().expect("sync");
        }
        let kv = WalKv::open(dir.path()).expect("reopens");
        assert_eq!(
            kv.get(Tree::Raft, b"vote").expect("get"),
            Some(b"v2".to_vec())
        );
        assert_eq!(kv.get(Tree::Log, &[0, 1]).expect("get"), None);
        assert_eq!(
            kv.scan(Tree::Log, &[0], &[1], usize::MAX).expect("scan"),
            vec![(vec![0, 2], b"two".to_vec())]
        );
        assert_eq!(
            kv.last(Tree::Log, &[0], &[1]).expect("last"),
            Some((vec![0, 2], b"two".to_vec()))
        );
        let err = kv
            .write(Tree::Ledger, vec![(b"k".to_vec(), Some(b"v".to_vec()))])
            .expect_err("only the Raft trees live here");
        assert!(err.reason.contains("tree ledger"), "{err}");
    }

    /// A crash can leave any prefix of the unsynced writes on disk. Cutting the file at every
    /// byte after the last sync must open and keep exactly the whole records before the cut.
    #[test]
    fn every_torn_tail_is_cut_off_and_synced_records_survive() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let kv = synced_log(dir.path(), &[(&[1], b"synced")]);
            put(&kv, Tree::Log, &[2], b"unsynced one");
            put(&kv, Tree::Log, &[3], b"unsynced two");
        }
        let path = only_file(dir.path());
        let raw = std::fs::read(&path).expect("read");
        assert!(
            raw.len() as u64 >= PREALLOCATE_BYTES,
            "the file is preallocated"
        );
        // The records, without the preallocated zeros after them.
        let full = raw[..recover(&raw).expect("valid").valid_end].to_vec();
        let synced_end = parse_at(&full, FILE_MAGIC.len()).expect("record").end;
        let second_end = parse_at(&full, synced_end).expect("record").end;
        for cut in synced_end..=full.len() {
            for zeros in [false, true] {
                let mut bytes = full.clone();
                if zeros {
                    // The file grew but the data never landed: zeros from the cut on.
                    bytes[cut..].fill(0);
                } else {
                    bytes.truncate(cut);
                }
                std::fs::write(&path, &bytes).expect("write");
                let kv = WalKv::open(dir.path()).expect("a torn tail opens");
                let keys: Vec<Vec<u8>> = kv
                    .scan(Tree::Log, &[0], &[9], usize::MAX)
                    .expect("scan")
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                let expected: Vec<Vec<u8>> = match cut {
                    c if c == full.len() => vec![vec![1], vec![2], vec![3]],
                    c if c >= second_end => vec![vec![1], vec![2]],
                    _ => vec![vec![1]],
                };
                assert_eq!(keys, expected, "cut at {cut}, zero-filled {zeros}");
                // Writing after recovery appends after the valid records.
                put(&kv, Tree::Log, &[4], b"after");
                kv.sync_blocking().expect("sync");
                drop(kv);
                let kv = WalKv::open(dir.path()).expect("reopens");
                assert_eq!(
                    kv.get(Tree::Log, &[4]).expect("get"),
                    Some(b"after".to_vec())
                );
            }
        }
    }

    /// Garbage after the last record (not zeros) is cut off, so a new record can never be
    /// followed by stale bytes that might parse.
    #[test]
    fn a_torn_tail_is_cut_off_but_preallocated_zeros_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(synced_log(dir.path(), &[(&[1], b"synced")]));
        let path = only_file(dir.path());
        let len = std::fs::metadata(&path).expect("meta").len();
        drop(WalKv::open(dir.path()).expect("reopens"));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            len,
            "zeros kept"
        );
        let mut bytes = std::fs::read(&path).expect("read");
        let end = recover(&bytes).expect("valid").valid_end;
        bytes[end + 100] = 0x5a;
        std::fs::write(&path, &bytes).expect("write");
        let kv = WalKv::open(dir.path()).expect("a torn tail opens");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            end as u64,
            "cut at the last record"
        );
        assert_eq!(
            kv.get(Tree::Log, &[1]).expect("get"),
            Some(b"synced".to_vec())
        );
    }

    #[test]
    fn damage_to_synced_records_is_refused_not_cut_off() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(synced_log(
            dir.path(),
            &[(&[1], b"first synced value"), (&[2], b"second")],
        ));
        let path = only_file(dir.path());
        let good = std::fs::read(&path).expect("read");
        let at = find(&good, 0, b"first synced").expect("value in file");
        for (what, byte) in [("value", at + 2), ("record marker", FILE_MAGIC.len())] {
            let mut bytes = good.clone();
            bytes[byte] ^= 0x40;
            std::fs::write(&path, &bytes).expect("write");
            match WalKv::open(dir.path()) {
                Err(StoreError::Corrupt { tree, reason, .. }) => {
                    assert_eq!(tree, "raft-log");
                    assert!(reason.contains("had been synced"), "{what}: {reason}");
                }
                other => panic!("{what}: expected Corrupt, got {other:?}"),
            }
        }
        std::fs::write(&path, b"not a log file").expect("write");
        assert!(matches!(
            WalKv::open(dir.path()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_mostly_purged_file_is_compacted_and_reopens_the_same() {
        let dir = tempfile::tempdir().expect("temp dir");
        let value = vec![7u8; 256 * 1024];
        let kv = WalKv::open(dir.path()).expect("opens");
        put(&kv, Tree::Raft, b"vote", b"kept");
        let mut index = 0u64;
        while kv.read().generation == 1 {
            put(&kv, Tree::Log, &index.to_be_bytes(), &value);
            if index >= 4 {
                // Keep only the last four entries, like purging after snapshots.
                kv.write(Tree::Log, vec![((index - 4).to_be_bytes().to_vec(), None)])
                    .expect("purge");
            }
            index += 1;
            assert!(index < 10_000, "never compacted");
        }
        let size = std::fs::metadata(only_file(dir.path()))
            .expect("meta")
            .len();
        assert!(size < COMPACT_BYTES_MIN / 4, "compacted to {size} bytes");
        let before = kv.scan(Tree::Log, &[0], &[0xff], usize::MAX).expect("scan");
        assert_eq!(before.len(), 4);
        drop(kv);
        let kv = WalKv::open(dir.path()).expect("reopens");
        assert_eq!(
            kv.get(Tree::Raft, b"vote").expect("get"),
            Some(b"kept".to_vec())
        );
        assert_eq!(
            kv.scan(Tree::Log, &[0], &[0xff], usize::MAX).expect("scan"),
            before
        );
    }

    #[test]
    fn a_log_kept_in_sled_by_an_older_version_moves_into_the_file() {
        use super::super::sled_kv::SledKv;
        let dir = tempfile::tempdir().expect("temp dir");
        // What an older version left (sled stays open throughout: its lock is released by
        // background threads some time after a drop).
        let sled = SledKv::open(dir.path()).expect("sled opens");
        let entries: KvBatch = (0..3000u64)
            .map(|i| (i.to_be_bytes().to_vec(), Some(vec![i as u8; 40])))
            .collect();
        sled.write(Tree::Log, entries).expect("write");
        sled.write(Tree::Raft, vec![(b"vote".to_vec(), Some(b"v".to_vec()))])
            .expect("write");
        sled.write(Tree::Ledger, vec![(b"M".to_vec(), Some(b"meta".to_vec()))])
            .expect("write");
        sled.sync_blocking().expect("sync");
        let log = WalKv::open(dir.path()).expect("log opens");
        adopt_sled_log(&log, &sled).expect("adopts");
        let moved = log
            .scan(Tree::Log, &[], &[0xff; 16], usize::MAX)
            .expect("scan");
        assert_eq!(moved.len(), 3000);
        assert_eq!(
            moved[2999],
            (2999u64.to_be_bytes().to_vec(), vec![2999u64 as u8; 40])
        );
        assert_eq!(
            log.get(Tree::Raft, b"vote").expect("get"),
            Some(b"v".to_vec())
        );
        assert!(sled
            .scan(Tree::Log, &[], &[0xff; 16], 1)
            .expect("scan")
            .is_empty());
        assert_eq!(
            sled.get(Tree::Ledger, b"M").expect("get"),
            Some(b"meta".to_vec())
        );
        // Once moved, the file is the authority: a later start changes nothing.
        drop(log);
        let log = WalKv::open(dir.path()).expect("log opens");
        adopt_sled_log(&log, &sled).expect("nothing to adopt");
        assert_eq!(
            log.scan(Tree::Log, &[], &[0xff; 16], usize::MAX)
                .expect("scan"),
            moved
        );
    }

    /// After a write failed part-way, the bytes after the last record are unknown: the store
    /// refuses every later write, naming why, until it is reopened (which cuts them off).
    #[test]
    fn after_a_failed_write_nothing_is_written_until_reopened() {
        let dir = tempfile::tempdir().expect("temp dir");
        let kv = synced_log(dir.path(), &[(&[1], b"synced")]);
        // A real write error cannot be caused on demand here; set what one leaves behind.
        kv.write_lock().failed = Some("No space left on device".into());
        let err = kv
            .write(Tree::Log, vec![(vec![2], Some(b"refused".to_vec()))])
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("No space left on device"), "{text}");
        assert!(text.contains("restart the node"), "{text}");
        assert_eq!(kv.get(Tree::Log, &[2]).expect("get"), None);
        drop(kv);
        let kv = WalKv::open(dir.path()).expect("reopens");
        put(&kv, Tree::Log, &[2], b"accepted");
        assert_eq!(
            kv.get(Tree::Log, &[1]).expect("get"),
            Some(b"synced".to_vec())
        );
        assert_eq!(
            kv.get(Tree::Log, &[2]).expect("get"),
            Some(b"accepted".to_vec())
        );
    }

    #[test]
    fn a_leftover_compaction_file_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(synced_log(dir.path(), &[(&[1], b"v")]));
        std::fs::write(
            dir.path().join(WAL_DIR).join(format!("{:016x}.tmp", 2)),
            b"half",
        )
        .expect("write");
        let kv = WalKv::open(dir.path()).expect("opens");
        assert_eq!(kv.get(Tree::Log, &[1]).expect("get"), Some(b"v".to_vec()));
        only_file(dir.path());
    }
}
