//! Storage: the key-value seam ([`kv`]), its implementations (sled for the ledger, the Raft log's
//! own file [`wal`], [`MemKv`] in memory), and [`Store`], which checksums every value it writes
//! and verifies it on every read (sled is treated as untrusted: it has lost and corrupted data).

pub mod kv;
#[cfg(all(test, not(madsim)))]
mod kv_contract;
pub mod log_store;
pub mod mem_kv;
pub mod node_state;
#[cfg(not(madsim))]
pub mod sled_kv;
pub mod wal;

use std::sync::Arc;

pub use kv::{Kv, KvBatch, KvError, KvPair, Tree};
pub use mem_kv::{MemKv, MemKvCopy};

/// Creates `dir` and any missing parents readable by the owner only (mode 0700): a data
/// directory holds the ledger and the node's keys.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Options that create files readable by the owner only (mode 0600).
pub fn private_file_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = std::fs::OpenOptions::new();
    o.mode(0o600);
    o
}

/// Runs `attempt` until it does not fail for want of disk space, waiting between tries: a full
/// disk pauses the node's writes (the disk space alarm keeps it from happening in the first
/// place) instead of stopping Raft, and everything resumes once space returns.
pub async fn wait_for_space<T>(
    what: &str,
    mut attempt: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut pause = std::time::Duration::from_millis(50);
    let mut waited = std::time::Duration::ZERO;
    loop {
        match attempt() {
            Err(e) if e.is_no_space() => {
                if waited.is_zero() {
                    tracing::error!(error = %e, "the disk is full: waiting for space to {what}");
                }
                tokio::time::sleep(pause).await;
                waited += pause;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            other => {
                if !waited.is_zero() && other.is_ok() {
                    tracing::info!(
                        waited_ms = waited.as_millis() as u64,
                        "disk space is back: could {what}"
                    );
                }
                return other;
            }
        }
    }
}

/// [`wait_for_space`] for an asynchronous attempt (a sync).
pub async fn wait_for_space_async<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = std::time::Duration::from_millis(50);
    let mut waited = false;
    loop {
        match attempt().await {
            Err(e) if e.is_no_space() => {
                if !waited {
                    tracing::error!(error = %e, "the disk is full: waiting for space to {what}");
                    waited = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Bytes of checksum in front of every stored value.
pub const CHECKSUM_LEN: usize = 8;

/// Why stored data could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("stored data is corrupt: tree {tree}, key {key}: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
    /// The storage engine came back with less than had been made durable.
    #[error("stored data is corrupt: {path} lost writes that had been synced: {reason}")]
    LostWrites { path: String, reason: String },
}

impl StoreError {
    /// The disk is full: the same write can succeed once space returns.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Kv(k) if k.is_no_space())
    }

    pub fn corrupt(tree: Tree, key: &[u8], reason: impl ToString) -> StoreError {
        StoreError::Corrupt {
            tree: tree.name(),
            key: describe_key(key),
            reason: reason.to_string(),
        }
    }
}

/// A readable name for a key: printable prefix letter plus hex.
pub fn describe_key(key: &[u8]) -> String {
    match key.split_first() {
        Some((p, rest)) if p.is_ascii_alphabetic() => {
            format!("{}:{}", *p as char, hex::encode(rest))
        }
        _ => hex::encode(key),
    }
}

fn checksum(tree: Tree, key: &[u8], value: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(b"stateledger:stored:v1\0");
    h.update(tree.name().as_bytes());
    h.update(&[0]);
    h.update(&(key.len() as u32).to_be_bytes());
    h.update(key);
    h.update(value);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM_LEN]);
    out
}

/// A value as stored: its checksum, then the value.
pub(crate) fn seal_value(tree: Tree, key: &[u8], value: &[u8]) -> Vec<u8> {
    seal(tree, key, value)
}

/// A stored value checked against its checksum.
pub(crate) fn open_value(tree: Tree, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    open(tree, key, stored)
}

fn seal(tree: Tree, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKSUM_LEN + value.len());
    out.extend_from_slice(&checksum(tree, key, value));
    out.extend_from_slice(value);
    out
}

fn open(tree: Tree, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if stored.len() < CHECKSUM_LEN {
        return Err(StoreError::corrupt(
            tree,
            key,
            "value shorter than its checksum",
        ));
    }
    let (sum, value) = stored.split_at(CHECKSUM_LEN);
    if sum != checksum(tree, key, value) {
        return Err(StoreError::corrupt(tree, key, "checksum mismatch"));
    }
    Ok(value.to_vec())
}

/// A batch of checksummed writes to one tree.
#[derive(Debug, Clone)]
pub struct Batch {
    tree: Tree,
    ops: KvBatch,
}

impl Batch {
    pub fn new(tree: Tree) -> Batch {
        Batch {
            tree,
            ops: Vec::new(),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: &[u8]) {
        let sealed = seal(self.tree, &key, value);
        self.ops.push((key, Some(sealed)));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Simulation only: a put ahead of every other write of the batch
    /// (`known_bad::Switch::LedgerMetaWrittenFirst`).
    #[cfg(madsim)]
    pub(crate) fn put_first(&mut self, key: Vec<u8>, value: &[u8]) {
        let sealed = seal(self.tree, &key, value);
        self.ops.insert(0, (key, Some(sealed)));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Checksummed access to the node's storage: the Raft trees ([`Tree::Raft`], [`Tree::Log`], and
/// the log's copy of [`Tree::Node`]) in one [`Kv`] and the ledger's trees in another.
/// Production keeps the Raft log in its own file ([`wal`]) and the ledger in sled; the
/// simulation runs the same log code on simulated files and the ledger on a [`MemKv`], synced
/// apart the same way; unit tests often use one [`MemKv`] for both.
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
    log: Arc<dyn Kv>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// One storage for every tree.
    pub fn new(kv: Arc<dyn Kv>) -> Store {
        Store {
            log: kv.clone(),
            kv,
        }
    }

    /// The Raft trees in `log`, the rest in `kv`.
    pub fn with_log(kv: Arc<dyn Kv>, log: Arc<dyn Kv>) -> Store {
        Store { kv, log }
    }

    /// The storage that holds `tree` ([`Tree::Node`]: the log's copy).
    pub fn backend(&self, tree: Tree) -> &Arc<dyn Kv> {
        match tree {
            Tree::Raft | Tree::Log | Tree::Node => &self.log,
            Tree::Ledger | Tree::Staging => &self.kv,
        }
    }

    fn separate(&self) -> bool {
        !Arc::ptr_eq(&self.kv, &self.log)
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.backend(tree).get(tree, key)? {
            None => Ok(None),
            Some(stored) => open(tree, key, stored).map(Some),
        }
    }

    pub fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        self.backend(tree)
            .scan(tree, start, end, limit)?
            .into_iter()
            .map(|(k, v)| {
                let v = open(tree, &k, v)?;
                Ok((k, v))
            })
            .collect()
    }

    pub fn last(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<Option<KvPair>, StoreError> {
        match self.backend(tree).last(tree, start, end)? {
            None => Ok(None),
            Some((k, v)) => {
                let v = open(tree, &k, v)?;
                Ok(Some((k, v)))
            }
        }
    }

    pub fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.backend(batch.tree)
            .write(batch.tree, batch.ops)
            .map_err(StoreError::from)
    }

    pub fn clear(&self, tree: Tree) -> Result<(), StoreError> {
        self.backend(tree).clear(tree).map_err(StoreError::from)
    }

    /// Makes every write so far durable, in both storages.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.log.sync().await.map_err(StoreError::from)?;
        if self.separate() {
            self.kv.sync().await.map_err(StoreError::from)?;
        }
        Ok(())
    }

    /// Makes every write to the Raft trees durable (and, when one storage holds everything,
    /// the rest too).
    pub async fn sync_log(&self) -> Result<(), StoreError> {
        self.log.sync().await.map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_catch_flipped_bits_and_moved_values() {
        let mem = Arc::new(MemKv::new());
        let store = Store::new(mem.clone());
        let mut b = Batch::new(Tree::Ledger);
        b.put(b"Lkey1".to_vec(), b"value one");
        b.put(b"Lkey2".to_vec(), b"value two");
        store.write(b).expect("write");
        assert_eq!(
            store.get(Tree::Ledger, b"Lkey1").expect("read"),
            Some(b"value one".to_vec())
        );

        assert!(mem.corrupt(Tree::Ledger, b"Lkey1", 12));
        let err = store
            .get(Tree::Ledger, b"Lkey1")
            .expect_err("corruption is detected");
        assert_eq!(
            err.to_string(),
            "stored data is corrupt: tree ledger, key L:6b657931: checksum mismatch"
        );

        // A valid value under the wrong key is also caught.
        let raw = mem
            .get(Tree::Ledger, b"Lkey2")
            .expect("raw")
            .expect("present");
        mem.write(Tree::Ledger, vec![(b"Lkey3".to_vec(), Some(raw))])
            .expect("raw write");
        assert!(store.get(Tree::Ledger, b"Lkey3").is_err());
    }
}
