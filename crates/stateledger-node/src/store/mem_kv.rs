//! In-memory storage for unit tests and the simulation: keeps the synced (durable) state apart from
//! writes not yet synced, so a simulated crash loses exactly the unsynced writes.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use super::kv::{Kv, KvBatch, KvError, KvPair, SyncFuture, Tree};

type Maps = HashMap<Tree, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Debug, Default)]
struct Inner {
    /// What reads see: durable plus unsynced writes.
    current: Maps,
    /// What survives a crash.
    durable: Maps,
    /// Writes since the last sync, in order.
    unsynced: Vec<(Tree, KvBatch)>,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct MemKv {
    inner: Mutex<Inner>,
}

fn apply(maps: &mut Maps, tree: Tree, batch: &KvBatch) {
    let map = maps.entry(tree).or_default();
    for (k, v) in batch {
        match v {
            Some(v) => {
                map.insert(k.clone(), v.clone());
            }
            None => {
                map.remove(k);
            }
        }
    }
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock already failed the test or simulation run.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Simulated crash: every write since the last sync is lost.
    pub fn crash(&self) {
        let mut inner = self.lock();
        inner.current = inner.durable.clone();
        inner.unsynced.clear();
    }

    /// Number of writes that a crash now would lose.
    pub fn unsynced_writes(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// Simulated bit rot: flips one bit of a stored value, durable and current alike.
    /// Returns false if the key is absent.
    pub fn corrupt(&self, tree: Tree, key: &[u8], byte: usize) -> bool {
        let mut inner = self.lock();
        let mut hit = false;
        let Inner {
            current, durable, ..
        } = &mut *inner;
        for maps in [current, durable] {
            if let Some(v) = maps.get_mut(&tree).and_then(|m| m.get_mut(key)) {
                if !v.is_empty() {
                    let i = byte % v.len();
                    v[i] ^= 0x01;
                    hit = true;
                }
            }
        }
        hit
    }

    /// Every key of a tree (tests and fault injection).
    pub fn keys(&self, tree: Tree) -> Vec<Vec<u8>> {
        self.lock()
            .current
            .get(&tree)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Kv for MemKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self
            .lock()
            .current
            .get(&tree)
            .and_then(|m| m.get(key))
            .cloned())
    }

    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, KvError> {
        let inner = self.lock();
        let Some(map) = inner.current.get(&tree) else {
            return Ok(Vec::new());
        };
        Ok(map
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<Option<KvPair>, KvError> {
        let inner = self.lock();
        Ok(inner.current.get(&tree).and_then(|map| {
            map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .next_back()
                .map(|(k, v)| (k.clone(), v.clone()))
        }))
    }

    fn write(&self, tree: Tree, batch: KvBatch) -> Result<(), KvError> {
        let mut inner = self.lock();
        apply(&mut inner.current, tree, &batch);
        inner.unsynced.push((tree, batch));
        Ok(())
    }

    fn clear(&self, tree: Tree) -> Result<(), KvError> {
        let mut inner = self.lock();
        let keys: KvBatch = inner
            .current
            .get(&tree)
            .map(|m| m.keys().map(|k| (k.clone(), None)).collect())
            .unwrap_or_default();
        apply(&mut inner.current, tree, &keys);
        inner.unsynced.push((tree, keys));
        Ok(())
    }

    fn sync(&self) -> SyncFuture<'_> {
        Box::pin(async move {
            let mut inner = self.lock();
            let unsynced = std::mem::take(&mut inner.unsynced);
            for (tree, batch) in &unsynced {
                apply(&mut inner.durable, *tree, batch);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn crash_loses_exactly_the_unsynced_writes() {
        let kv = MemKv::new();
        kv.write(Tree::Log, vec![(b"a".to_vec(), Some(b"1".to_vec()))])
            .expect("write");
        kv.sync().await.expect("sync");
        kv.write(Tree::Log, vec![(b"b".to_vec(), Some(b"2".to_vec()))])
            .expect("write");
        assert_eq!(kv.get(Tree::Log, b"b").expect("get"), Some(b"2".to_vec()));
        assert_eq!(kv.unsynced_writes(), 1);
        kv.crash();
        assert_eq!(kv.get(Tree::Log, b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.get(Tree::Log, b"b").expect("get"), None);
    }
}
