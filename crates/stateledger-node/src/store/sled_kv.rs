//! sled behind the storage seam, with real durability.
//!
//! sled's `flush` writes its buffers with `sync_file_range`, which neither persists file metadata
//! nor flushes the device cache (sled issues #1452, #1351, #654). `sync` therefore follows the
//! flush with `fdatasync` of sled's data file, and the directory is fsynced once at open so the
//! files themselves survive power loss.
//!
//! sled's recovery takes a log message that fails its CRC for the torn end of the log: it drops
//! that message and everything after it, silently. So a flipped byte in the data file rolls the
//! node back to an earlier state — Raft vote and acknowledged log entries included — and it
//! would rejoin the cluster as if nothing happened (the leader then panics on the follower's
//! log reversion). To notice, every `sync` numbers itself: the number goes into sled before the
//! flush and, once sled's data is durable, into the small file `synced` beside it. At open, sled
//! must hold at least the number in `synced`; less means sled lost writes that were synced, and
//! the store refuses to open ([`StoreError::LostWrites`]). A missing `synced` file while sled
//! holds a sync number means the guard itself was lost: the store opens, says so
//! ([`SledOpen::marker_missing`]), and the next sync writes the file again.
//!
//! sled panics on some damage it finds while running ("tried to serialize Uninitialized"); every
//! call into sled is made under `catch_unwind`, so that reaches the node as
//! [`KvError::is_engine_failure`] (the node then stops with the corruption exit status) instead
//! of a crash.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::kv::{Kv, KvBatch, KvError, KvPair, SyncFuture, Tree};
use super::StoreError;

/// The sled tree holding the number of the last sync (not one of [`Tree::ALL`]).
const SYNC_TREE: &str = "durability";
const SYNC_KEY: &[u8] = b"synced";
/// The file beside sled's that holds the number of the last completed sync (u64 big-endian).
pub const SYNCED_FILE: &str = "synced";

/// A sled database with one sled tree per [`Tree`].
#[derive(Clone)]
pub struct SledKv {
    db: sled::Db,
    trees: Arc<Vec<(Tree, sled::Tree)>>,
    data_file: Arc<File>,
    /// The `synced` file and the number of the last completed sync; the lock also keeps syncs
    /// in order.
    synced: Arc<Mutex<(File, u64)>>,
    sync_tree: sled::Tree,
    path: PathBuf,
}

impl std::fmt::Debug for SledKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SledKv({})", self.path.display())
    }
}

/// What [`SledKv::open`] found.
#[derive(Debug)]
pub struct SledOpen {
    pub kv: SledKv,
    /// sled holds a sync number but the `synced` file beside it is gone or empty: writes it had
    /// synced may have been lost without a trace.
    pub marker_missing: bool,
    /// There was no database: a new one was made.
    pub fresh: bool,
}

/// How long [`SledKv::open`] waits for sled's lock on its files. A process that just closed
/// the same database (a test, `node repair`, a node restarted in place) releases it from sled's
/// background threads a moment later; another process still using it holds it for good.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a call into sled, turning a panic inside sled into an engine failure.
fn guarded<T>(op: &'static str, f: impl FnOnce() -> sled::Result<T>) -> Result<T, KvError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e @ sled::Error::Corruption { .. })) => Err(KvError::engine(op, e)),
        Ok(Err(sled::Error::Io(e))) => Err(KvError::io(op, "sled", &e)),
        Ok(Err(e)) => Err(KvError::new(op, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(KvError::engine(op, format!("sled panicked: {what}")))
        }
    }
}

fn open_db(dir: &Path) -> Result<sled::Db, KvError> {
    let config = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(256 * 1024 * 1024)
        // We flush explicitly when durability is needed; no background timer.
        .flush_every_ms(None);
    let started = std::time::Instant::now();
    loop {
        match guarded("open sled", || config.open()) {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_error(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) if is_lock_error(&e) => {
                return Err(KvError::new(
                    "open sled",
                    format!(
                        "{}: {e}; is another node process using this data directory?",
                        dir.display()
                    ),
                ))
            }
            Err(e) => {
                return Err(KvError {
                    reason: format!("{}: {}", dir.display(), e.reason),
                    ..e
                })
            }
        }
    }
}

/// sled's refusal to open files another handle still locks.
fn is_lock_error(e: &KvError) -> bool {
    e.reason.contains("could not acquire lock")
}

impl SledKv {
    /// Opens (or creates, mode 0700) the database in `dir`. Refuses with
    /// [`StoreError::LostWrites`] when sled recovered less than had been synced (see the module
    /// comment).
    pub fn open(dir: &Path) -> Result<SledOpen, StoreError> {
        let fresh = !dir.join("db").exists();
        super::create_private_dir(dir)
            .map_err(|e| KvError::new("create data dir", format!("{}: {e}", dir.display())))?;
        let db = open_db(dir)?;
        let trees = Tree::ALL
            .iter()
            .map(|t| Ok((*t, guarded("open tree", || db.open_tree(t.name()))?)))
            .collect::<Result<Vec<_>, KvError>>()?;
        let data_path = dir.join("db");
        let data_file = File::open(&data_path)
            .map_err(|e| KvError::new("open data file", format!("{}: {e}", data_path.display())))?;
        let sync_tree = guarded("open tree", || db.open_tree(SYNC_TREE))?;
        let recovered = match guarded("get", || sync_tree.get(SYNC_KEY))? {
            None => 0,
            Some(v) => u64::from_be_bytes(<[u8; 8]>::try_from(v.as_ref()).map_err(|_| {
                StoreError::Corrupt {
                    tree: SYNC_TREE,
                    key: super::describe_key(SYNC_KEY),
                    reason: format!("the sync number is {} bytes instead of 8", v.len()),
                }
            })?),
        };
        let synced_path = dir.join(SYNCED_FILE);
        let synced_file = super::private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&synced_path)
            .map_err(|e| KvError::new("open", format!("{}: {e}", synced_path.display())))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &synced_file, &mut bytes)
            .map_err(|e| KvError::new("read", format!("{}: {e}", synced_path.display())))?;
        let marker_missing = bytes.is_empty() && recovered > 0;
        if marker_missing {
            tracing::error!(
                file = %synced_path.display(),
                sled_sync = recovered,
                "the sync number file is missing or empty although sled has been synced: \
                 lost synced writes cannot be ruled out"
            );
        }
        let synced = match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(b) => u64::from_be_bytes(b),
            Err(_) if bytes.is_empty() => 0,
            Err(_) => {
                return Err(StoreError::LostWrites {
                    path: synced_path.display().to_string(),
                    reason: format!(
                        "the sync number file holds {} bytes instead of 8",
                        bytes.len()
                    ),
                })
            }
        };
        if recovered < synced {
            return Err(StoreError::LostWrites {
                path: data_path.display().to_string(),
                reason: format!(
                    "sled recovered its data only up to sync {recovered}, but sync {synced} had completed \
                     (a damaged or truncated data file: sled drops everything from the first message that \
                     fails its checksum)"
                ),
            });
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| KvError::new("fsync data dir", e))?;
        Ok(SledOpen {
            kv: SledKv {
                db,
                trees: Arc::new(trees),
                data_file: Arc::new(data_file),
                synced: Arc::new(Mutex::new((synced_file, recovered))),
                sync_tree,
                path: dir.to_path_buf(),
            },
            marker_missing,
            fresh,
        })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        // Every Tree variant was opened in `open`.
        &self
            .trees
            .iter()
            .find(|(t, _)| *t == tree)
            .expect("all trees are opened at start")
            .1
    }

    /// Flush and fdatasync, blocking; then records the sync's number (see the module comment).
    pub fn sync_blocking(&self) -> Result<(), KvError> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        let number = synced.1 + 1;
        guarded("write", || {
            self.sync_tree.insert(SYNC_KEY, &number.to_be_bytes())
        })?;
        guarded("flush", || self.db.flush())?;
        self.data_file
            .sync_data()
            .map_err(|e| KvError::io("fdatasync", "sled", &e))?;
        // Only now that sled holds `number` durably may the file claim it.
        synced
            .0
            .write_all_at(&number.to_be_bytes(), 0)
            .and_then(|()| synced.0.sync_data())
            .map_err(|e| KvError::io("write sync number", "sled", &e))?;
        synced.1 = number;
        Ok(())
    }
}

impl Kv for SledKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        guarded("get", || self.tree(tree).get(key)).map(|v| v.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, KvError> {
        guarded("scan", || {
            self.tree(tree)
                .range(start..end)
                .take(limit)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect()
        })
    }

    fn last(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<Option<KvPair>, KvError> {
        guarded("scan", || {
            self.tree(tree)
                .range(start..end)
                .next_back()
                .transpose()
                .map(|o| o.map(|(k, v)| (k.to_vec(), v.to_vec())))
        })
    }

    fn write(&self, tree: Tree, batch: KvBatch) -> Result<(), KvError> {
        if !tree.batches_atomic() {
            // One sled operation each, in order: sled recovers a prefix of its operations, and
            // an atomic sled batch would cost a write of sled's I/O buffer (a pwrite and a
            // sync_file_range on its I/O threads) every time.
            let t = self.tree(tree);
            for (k, v) in batch {
                guarded("write", || match v {
                    Some(v) => t.insert(k, v).map(drop),
                    None => t.remove(k).map(drop),
                })?;
            }
            return Ok(());
        }
        let mut b = sled::Batch::default();
        for (k, v) in batch {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        guarded("write", || self.tree(tree).apply_batch(b))
    }

    fn clear(&self, tree: Tree) -> Result<(), KvError> {
        guarded("clear", || self.tree(tree).clear())
    }

    fn sync(&self) -> SyncFuture<'_> {
        let this = self.clone();
        super::kv::sync_on_blocking_pool(move || this.sync_blocking())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(kv: &SledKv, key: &[u8], value: &[u8]) {
        kv.write(Tree::Ledger, vec![(key.to_vec(), Some(value.to_vec()))])
            .expect("write");
    }

    #[test]
    fn reopening_after_syncs_keeps_the_data_and_the_sync_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let kv = SledKv::open(dir.path()).expect("opens").kv;
            for i in 0..3u8 {
                put(&kv, &[i], b"value");
                kv.sync_blocking().expect("sync");
            }
        }
        let kv = SledKv::open(dir.path()).expect("reopens").kv;
        assert_eq!(
            kv.get(Tree::Ledger, &[2]).expect("get"),
            Some(b"value".to_vec())
        );
        put(&kv, &[3], b"value");
        kv.sync_blocking().expect("a fourth sync");
        let file = std::fs::read(dir.path().join(SYNCED_FILE)).expect("sync number file");
        assert_eq!(file, 4u64.to_be_bytes());
    }

    #[test]
    fn a_data_file_that_lost_synced_writes_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = b"a value that appears once in the data file";
        {
            let kv = SledKv::open(dir.path()).expect("opens").kv;
            put(&kv, b"k", marker);
            kv.sync_blocking().expect("sync");
            for i in 0..3u8 {
                put(&kv, &[i], b"later");
                kv.sync_blocking().expect("sync");
            }
        }
        // One flipped byte: sled's recovery stops at that message and drops the rest, silently.
        let db = dir.path().join("db");
        let mut bytes = std::fs::read(&db).expect("data file");
        let at = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("the value is in the data file");
        bytes[at + 3] ^= 0x01;
        std::fs::write(&db, bytes).expect("write");
        match SledKv::open(dir.path()) {
            Err(StoreError::LostWrites { reason, .. }) => {
                assert!(reason.contains("but sync 4 had completed"), "{reason}");
            }
            other => panic!("expected LostWrites, got {other:?}"),
        }
    }

    /// sled releases its file lock from background threads a moment after the last handle is
    /// dropped; an open right after a drop must wait for it instead of failing (this made
    /// `a_damaged_sync_number_file_is_refused` flaky on a loaded machine: its reopen failed on
    /// the lock, not on the damaged file).
    #[test]
    fn reopening_right_after_a_drop_waits_for_the_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 0..30u8 {
            let kv = SledKv::open(dir.path())
                .unwrap_or_else(|e| panic!("open {i}: {e}"))
                .kv;
            put(&kv, &[i], b"value");
            kv.sync_blocking().expect("sync");
        }
        let kv = SledKv::open(dir.path()).expect("reopens").kv;
        assert_eq!(
            kv.get(Tree::Ledger, &[29]).expect("get"),
            Some(b"value".to_vec())
        );
    }

    /// sled panics on some damage it finds while running; a call into it then fails as an
    /// engine failure (the node stops with exit status 3) instead of unwinding through the node.
    #[test]
    fn a_panic_inside_sled_is_an_engine_failure() {
        let err = guarded::<()>("get", || panic!("tried to serialize Uninitialized"))
            .expect_err("a panic is an error");
        assert!(err.is_engine_failure());
        assert!(
            err.to_string()
                .contains("sled panicked: tried to serialize Uninitialized"),
            "{err}"
        );
        let err = guarded::<()>("get", || {
            Err(sled::Error::Corruption {
                at: None,
                bt: Default::default(),
            })
        })
        .expect_err("corruption");
        assert!(err.is_engine_failure(), "{err}");
        let err =
            guarded::<()>("get", || Err(sled::Error::Unsupported("x".into()))).expect_err("other");
        assert!(!err.is_engine_failure(), "{err}");
    }

    /// The sync number file deleted while sled holds a sync number: reported, not ignored.
    #[test]
    fn a_missing_sync_number_file_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let kv = SledKv::open(dir.path()).expect("opens").kv;
            put(&kv, b"k", b"v");
            kv.sync_blocking().expect("sync");
        }
        std::fs::remove_file(dir.path().join(SYNCED_FILE)).expect("rm");
        let o = SledKv::open(dir.path()).expect("opens");
        assert!(o.marker_missing && !o.fresh);
        o.kv.sync_blocking().expect("sync");
        drop(o);
        let o = SledKv::open(dir.path()).expect("reopens");
        assert!(!o.marker_missing, "the next sync wrote the file again");
    }

    #[test]
    fn a_damaged_sync_number_file_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(SledKv::open(dir.path()).expect("opens").kv);
        std::fs::write(dir.path().join(SYNCED_FILE), b"123").expect("write");
        assert!(matches!(
            SledKv::open(dir.path()),
            Err(StoreError::LostWrites { .. })
        ));
    }
}
