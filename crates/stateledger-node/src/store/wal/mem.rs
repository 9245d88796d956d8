//! A simulated log directory for unit tests and the simulation: every file keeps what is durable
//! apart from writes not yet synced, and a simulated power loss keeps any subset of the unsynced
//! writes' sectors — a torn tail cut short, zero-filled, or written out of order — exactly the
//! damage [`super::WalKv`]'s recovery has to tell from damage to synced data.
//!
//! It also injects the faults a disk or an operator can cause to *synced* data: a deleted file, a
//! truncated one, a flipped bit, and a whole directory rolled back to an older copy.
//! Creations, renames and removals are durable at once (a journaling file system after the
//! directory fsync that [`super::WalKv`] always does).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::io::{WalFile, WalIo};
use crate::store::kv::{KvError, SyncFuture};

/// Bytes a simulated power loss keeps or loses together (a disk sector).
pub const SECTOR_BYTES: usize = 512;

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct FileState {
    /// What survives a power loss.
    durable: Vec<u8>,
    /// What reads see.
    current: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<Pending>,
}

fn write_into(buf: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let at = offset as usize;
    if buf.len() < at + bytes.len() {
        buf.resize(at + bytes.len(), 0);
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Bytes all files of a directory may hold (a full disk), shared by its files.
#[derive(Debug, Default)]
struct Space {
    /// 0: no limit.
    limit: AtomicU64,
    used: AtomicU64,
}

impl Space {
    /// Accounts for a file growing from `from` to `to` bytes, or refuses like a full disk.
    fn grow(&self, from: usize, to: usize) -> io::Result<()> {
        if to <= from {
            self.used.fetch_sub((from - to) as u64, Ordering::Relaxed);
            return Ok(());
        }
        let more = (to - from) as u64;
        let limit = self.limit.load(Ordering::Relaxed);
        let used = self.used.load(Ordering::Relaxed);
        if limit != 0 && used + more > limit {
            // ENOSPC, as the kernel reports it.
            return Err(io::Error::from_raw_os_error(28));
        }
        self.used.fetch_add(more, Ordering::Relaxed);
        Ok(())
    }
}

/// One simulated file.
#[derive(Debug, Default)]
pub struct MemFile {
    state: Mutex<FileState>,
    space: Arc<Space>,
}

impl MemFile {
    fn lock(&self) -> MutexGuard<'_, FileState> {
        // A panic while holding this lock already failed the test or run.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl WalFile for MemFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.lock();
        let len = s.current.len();
        self.space
            .grow(len, len.max(offset as usize + bytes.len()))?;
        write_into(&mut s.current, offset, bytes);
        s.pending.push(Pending::Write {
            offset,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let s = self.lock();
        let at = offset as usize;
        let src = s.current.get(at..at + buf.len()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of file")
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        self.space.grow(s.current.len(), len as usize)?;
        s.current.resize(len as usize, 0);
        s.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.lock();
        s.durable = s.current.clone();
        s.pending.clear();
        Ok(())
    }
}

/// A durable copy of a whole directory (see [`MemDir::snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct MemDirSnapshot {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemDirSnapshot {
    /// The files of the copy, by name.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct MemDir {
    files: Mutex<BTreeMap<String, Arc<MemFile>>>,
    sync_delay_nanos: AtomicU64,
    space: Arc<Space>,
}

impl MemDir {
    pub fn new() -> MemDir {
        MemDir::default()
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<String, Arc<MemFile>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every later sync take `delay` (simulated fsync latency).
    pub fn set_sync_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.sync_delay_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Refuses writes (ENOSPC) that would make the files hold more than `bytes` in all; 0 lifts
    /// the limit (space returns).
    pub fn set_space_limit(&self, bytes: u64) {
        self.space.limit.store(bytes, Ordering::Relaxed);
    }

    /// The limit set by [`MemDir::set_space_limit`] (0: none).
    pub fn space_limit(&self) -> u64 {
        self.space.limit.load(Ordering::Relaxed)
    }

    /// Bytes the files hold now.
    pub fn used_bytes(&self) -> u64 {
        self.space.used.load(Ordering::Relaxed)
    }

    fn recount(&self, files: &BTreeMap<String, Arc<MemFile>>) {
        let used: usize = files.values().map(|f| f.lock().current.len()).sum();
        self.space.used.store(used as u64, Ordering::Relaxed);
    }

    fn new_file(&self, bytes: Vec<u8>) -> Arc<MemFile> {
        Arc::new(MemFile {
            state: Mutex::new(FileState {
                durable: bytes.clone(),
                current: bytes,
                pending: Vec::new(),
            }),
            space: self.space.clone(),
        })
    }

    /// Simulated power loss: each file keeps what was durable plus, of each unsynced write, the
    /// sectors for which `keep` answers true (asked in write order, sector by sector; a resize
    /// is one question). Every sector kept is durable afterwards.
    pub fn crash(&self, keep: &mut dyn FnMut() -> bool) {
        for file in self.files().values() {
            let mut s = file.lock();
            let mut durable = std::mem::take(&mut s.durable);
            for p in std::mem::take(&mut s.pending) {
                match p {
                    Pending::SetLen(len) => {
                        if keep() {
                            durable.resize(len as usize, 0);
                        }
                    }
                    Pending::Write { offset, bytes } => {
                        for (i, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
                            if keep() {
                                write_into(
                                    &mut durable,
                                    offset + (i * SECTOR_BYTES) as u64,
                                    sector,
                                );
                            }
                        }
                    }
                }
            }
            s.current = durable.clone();
            s.durable = durable;
        }
        let files = self.files();
        self.recount(&files);
    }

    /// Bytes a power loss now could lose or tear.
    pub fn unsynced_bytes(&self) -> usize {
        self.files()
            .values()
            .map(|f| {
                f.lock()
                    .pending
                    .iter()
                    .map(|p| match p {
                        Pending::Write { bytes, .. } => bytes.len(),
                        Pending::SetLen(_) => 1,
                    })
                    .sum::<usize>()
            })
            .sum()
    }

    /// The durable bytes of every file: restoring it later rolls the directory back.
    pub fn snapshot(&self) -> MemDirSnapshot {
        MemDirSnapshot {
            files: self
                .files()
                .iter()
                .map(|(n, f)| (n.clone(), f.lock().durable.clone()))
                .collect(),
        }
    }

    /// Replaces the whole directory with an earlier snapshot (a restored backup or VM image).
    pub fn restore(&self, snapshot: &MemDirSnapshot) {
        let mut files = self.files();
        files.clear();
        for (name, bytes) in &snapshot.files {
            files.insert(name.clone(), self.new_file(bytes.clone()));
        }
        self.recount(&files);
    }

    /// Names of the files, sorted.
    pub fn names(&self) -> Vec<String> {
        self.files().keys().cloned().collect()
    }

    /// A file's durable bytes.
    pub fn durable(&self, name: &str) -> Option<Vec<u8>> {
        self.files().get(name).map(|f| f.lock().durable.clone())
    }

    /// Replaces a file's durable and current bytes (fault injection: truncation, bit flips).
    pub fn replace(&self, name: &str, bytes: Vec<u8>) {
        let mut files = self.files();
        let file = self.new_file(bytes);
        files.insert(name.to_string(), file);
        self.recount(&files);
    }

    /// Simulated bit rot: flips one bit at `offset` of a file, durable and current alike, in place
    /// (an open handle sees it). False if the file is absent or shorter.
    pub fn flip_bit(&self, name: &str, offset: usize, bit: u8) -> bool {
        let Some(file) = self.files().get(name).cloned() else {
            return false;
        };
        let mut s = file.lock();
        let mut hit = false;
        let FileState {
            current, durable, ..
        } = &mut *s;
        for bytes in [current, durable] {
            if let Some(b) = bytes.get_mut(offset) {
                *b ^= 1 << (bit % 8);
                hit = true;
            }
        }
        hit
    }

    /// Deletes a file (fault injection); false if there was none.
    pub fn delete(&self, name: &str) -> bool {
        let mut files = self.files();
        let found = files.remove(name).is_some();
        self.recount(&files);
        found
    }
}

impl WalIo for MemDir {
    fn describe(&self) -> String {
        "simulated log directory".into()
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.names())
    }

    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files().get(name).map(|f| f.lock().current.clone()))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        match self.files().get(name) {
            Some(f) => Ok(f.clone()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, name.to_string())),
        }
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        let file = self.new_file(Vec::new());
        let mut files = self.files();
        files.insert(name.to_string(), file.clone());
        self.recount(&files);
        Ok(file)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut files = self.files();
        let found = files.remove(name);
        self.recount(&files);
        match found {
            Some(_) => Ok(()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, name.to_string())),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files();
        let file = files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        files.insert(to.to_string(), file);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn free_bytes(&self) -> Option<u64> {
        match self.space_limit() {
            0 => None,
            limit => Some(limit.saturating_sub(self.used_bytes())),
        }
    }

    fn run_sync(
        &self,
        sync: Box<dyn FnOnce() -> Result<(), KvError> + Send>,
    ) -> SyncFuture<'static> {
        let delay = Duration::from_nanos(self.sync_delay_nanos.load(Ordering::Relaxed));
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            sync()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_loss_keeps_exactly_the_synced_bytes_and_the_sectors_it_chose() {
        let dir = Arc::new(MemDir::new());
        let f = dir.create("f").expect("create");
        f.write_at(b"synced", 0).expect("write");
        f.sync_data().expect("sync");
        f.write_at(&[7u8; SECTOR_BYTES * 2], 6).expect("write");
        assert_eq!(dir.unsynced_bytes(), SECTOR_BYTES * 2);
        // Keep the second sector only: a hole of old bytes (none) before it.
        let mut asked = 0;
        dir.crash(&mut || {
            asked += 1;
            asked == 2
        });
        let bytes = dir.durable("f").expect("file");
        assert_eq!(&bytes[..6], b"synced");
        assert_eq!(bytes.len(), 6 + SECTOR_BYTES * 2);
        assert!(bytes[6..6 + SECTOR_BYTES].iter().all(|b| *b == 0));
        assert!(bytes[6 + SECTOR_BYTES..].iter().all(|b| *b == 7));
        assert_eq!(dir.unsynced_bytes(), 0);
    }

    #[test]
    fn a_restored_snapshot_brings_back_the_old_files() {
        let dir = Arc::new(MemDir::new());
        dir.create("a")
            .and_then(|f| f.write_at(b"old", 0).and_then(|()| f.sync_data()))
            .expect("a");
        let old = dir.snapshot();
        dir.create("b").expect("b");
        dir.open("a")
            .and_then(|f| f.write_at(b"new", 0).and_then(|()| f.sync_data()))
            .expect("rewrite");
        dir.restore(&old);
        assert_eq!(dir.names(), vec!["a".to_string()]);
        assert_eq!(dir.durable("a"), Some(b"old".to_vec()));
    }
}
