//! The Raft log's seam to the file system: a directory of files that can be written at an
//! offset, read back, resized and synced. Production uses [`OsDir`]; unit tests and the
//! simulation use [`super::mem::MemDir`], which keeps synced and unsynced bytes apart and tears
//! unsynced writes on a simulated power loss, so the same recovery code runs under both.

use std::fmt::Debug;
use std::io;
use std::sync::Arc;

use crate::store::kv::{KvError, SyncFuture};

/// One open file of the log directory.
pub trait WalFile: Send + Sync + Debug {
    /// Writes all of `bytes` at `offset`, growing the file if needed.
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset`; an error if the file is shorter.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every completed write durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// The log's directory. Names are plain file names inside it.
pub trait WalIo: Send + Sync + Debug + 'static {
    /// Where the directory is, for messages.
    fn describe(&self) -> String;
    /// Every file name in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// A whole file, or `None` if there is no such file.
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>>;
    /// Creates a file, or empties an existing one.
    fn create(&self, name: &str) -> io::Result<Arc<dyn WalFile>>;
    fn remove(&self, name: &str) -> io::Result<()>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Bytes still free where the files live, if known (preallocation stays well below it).
    fn free_bytes(&self) -> Option<u64>;
    /// Runs `sync` (which blocks on fsync) without blocking the async threads.
    fn run_sync(
        &self,
        sync: Box<dyn FnOnce() -> Result<(), KvError> + Send>,
    ) -> SyncFuture<'static>;
}

#[cfg(not(madsim))]
pub use os::OsDir;

#[cfg(not(madsim))]
mod os {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::unix::fs::FileExt as _;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::{WalFile, WalIo};
    use crate::store::kv::{KvError, SyncFuture};

    /// A directory on the local file system.
    #[derive(Debug, Clone)]
    pub struct OsDir {
        dir: PathBuf,
    }

    impl OsDir {
        /// The directory, created (mode 0700) if missing.
        pub fn new(dir: &Path) -> io::Result<OsDir> {
            crate::store::create_private_dir(dir)?;
            Ok(OsDir {
                dir: dir.to_path_buf(),
            })
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.join(name)
        }
    }

    #[derive(Debug)]
    struct OsFile(File);

    impl WalFile for OsFile {
        fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_all_at(bytes, offset)
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.0.read_exact_at(buf, offset)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
    }

    impl WalIo for OsDir {
        fn describe(&self) -> String {
            self.dir.display().to_string()
        }

        fn list(&self) -> io::Result<Vec<String>> {
            std::fs::read_dir(&self.dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        }

        fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
            match std::fs::read(self.path(name)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }

        fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.path(name))?;
            Ok(Arc::new(OsFile(f)))
        }

        fn create(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
            let f = crate::store::private_file_options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(self.path(name))?;
            Ok(Arc::new(OsFile(f)))
        }

        fn remove(&self, name: &str) -> io::Result<()> {
            std::fs::remove_file(self.path(name))
        }

        fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            std::fs::rename(self.path(from), self.path(to))
        }

        fn sync_dir(&self) -> io::Result<()> {
            File::open(&self.dir)?.sync_all()
        }

        fn free_bytes(&self) -> Option<u64> {
            let s = rustix::fs::statvfs(&self.dir).ok()?;
            Some(s.f_bavail.saturating_mul(s.f_frsize))
        }

        fn run_sync(
            &self,
            sync: Box<dyn FnOnce() -> Result<(), KvError> + Send>,
        ) -> SyncFuture<'static> {
            crate::store::kv::sync_on_blocking_pool(sync)
        }
    }
}
