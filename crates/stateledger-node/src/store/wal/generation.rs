//! The Raft log file's generations: compaction copies the live entries into the next
//! generation, written whole and renamed into place; preallocation grows the current one with
//! zeros ahead of the records (the rules are in the module comment of `store/wal/mod.rs`).

use std::sync::Arc;

use super::frame::{self, Loc, Maps, FILE_MAGIC};
use super::io::{WalFile, WalIo};
use super::marker::Mark;
use super::{file_name, io_err, kv_err, Inner, WalKv, COMPACT_RECORD_BYTES, HEADROOM_BYTES};
use crate::store::kv::KvError;

impl WalKv {
    /// Copies the live entries to the next generation, which replaces the current one (synced,
    /// renamed into place, marked). The old file is left for the caller.
    pub(super) fn rewrite(&self, inner: &mut Inner) -> Result<(), KvError> {
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

    pub(super) fn remove_generation(&self, generation: u64) {
        // The new generation is in place and synced: a leftover old file is only wasted space
        // (the next open removes it), not a reason to fail the write that triggered this.
        if let Err(e) = self.io.remove(&file_name(generation)) {
            tracing::warn!(log = %self.io.describe(), generation, error = %e, "cannot remove an old Raft log file");
        }
    }

    /// Copies the live entries to the next generation when the file is mostly dead.
    pub(super) fn maybe_compact(&self, inner: &mut Inner) -> Result<(), KvError> {
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
    pub(super) fn keep_headroom(&self) {
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
    pub(super) fn grow(&self, inner: &mut Inner, needed: u64) -> Result<(), KvError> {
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
pub(super) fn new_file(
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
