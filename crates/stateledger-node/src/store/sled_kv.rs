//! sled behind the storage seam, with real durability.
//!
//! sled's `flush` writes its buffers with `sync_file_range`, which neither persists file metadata
//! nor flushes the device cache (sled issues #1452, #1351, #654). `sync` therefore follows the
//! flush with `fdatasync` of sled's data file, and the directory is fsynced once at open so the
//! files themselves survive power loss.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::kv::{Kv, KvBatch, KvError, KvPair, SyncFuture, Tree};

/// A sled database with one sled tree per [`Tree`].
#[derive(Clone)]
pub struct SledKv {
    db: sled::Db,
    trees: Arc<Vec<(Tree, sled::Tree)>>,
    data_file: Arc<File>,
    path: PathBuf,
}

impl std::fmt::Debug for SledKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SledKv({})", self.path.display())
    }
}

impl SledKv {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<SledKv, KvError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| KvError::new("create data dir", format!("{}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(256 * 1024 * 1024)
            // We flush explicitly when durability is needed; no background timer.
            .flush_every_ms(None)
            .open()
            .map_err(|e| KvError::new("open sled", format!("{}: {e}", dir.display())))?;
        let trees = Tree::ALL
            .iter()
            .map(|t| {
                Ok((
                    *t,
                    db.open_tree(t.name())
                        .map_err(|e| KvError::new("open tree", e))?,
                ))
            })
            .collect::<Result<Vec<_>, KvError>>()?;
        let data_path = dir.join("db");
        let data_file = File::open(&data_path)
            .map_err(|e| KvError::new("open data file", format!("{}: {e}", data_path.display())))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| KvError::new("fsync data dir", e))?;
        Ok(SledKv {
            db,
            trees: Arc::new(trees),
            data_file: Arc::new(data_file),
            path: dir.to_path_buf(),
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

    /// Flush and fdatasync, blocking.
    pub fn sync_blocking(&self) -> Result<(), KvError> {
        self.db.flush().map_err(|e| KvError::new("flush", e))?;
        self.data_file
            .sync_data()
            .map_err(|e| KvError::new("fdatasync", e))
    }
}

impl Kv for SledKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.tree(tree)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| KvError::new("get", e))
    }

    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, KvError> {
        self.tree(tree)
            .range(start..end)
            .take(limit)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| KvError::new("scan", e))
            })
            .collect()
    }

    fn last(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<Option<KvPair>, KvError> {
        self.tree(tree)
            .range(start..end)
            .next_back()
            .transpose()
            .map(|o| o.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .map_err(|e| KvError::new("scan", e))
    }

    fn write(&self, tree: Tree, batch: KvBatch) -> Result<(), KvError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.tree(tree)
            .apply_batch(b)
            .map_err(|e| KvError::new("write", e))
    }

    fn clear(&self, tree: Tree) -> Result<(), KvError> {
        self.tree(tree)
            .clear()
            .map_err(|e| KvError::new("clear", e))
    }

    fn sync(&self) -> SyncFuture<'_> {
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.sync_blocking())
                .await
                .map_err(|e| KvError::new("fsync task", e))?
        })
    }
}
