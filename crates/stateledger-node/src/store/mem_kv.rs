//! In-memory storage for unit tests and the simulation: keeps the synced (durable) state apart from
//! writes not yet synced, so a simulated crash loses exactly the unsynced writes.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    /// Sequence number of `unsynced[0]`: every write ever made gets the next number, so a sync
    /// knows which writes it covers even when another sync finished meanwhile.
    unsynced_first: u64,
    /// Bumped by every crash, so a sync that straddles a crash makes nothing durable.
    crashes: u64,
}

/// A durable copy of a [`MemKv`] (see [`MemKv::durable_copy`]); the default holds nothing.
#[derive(Debug, Clone, Default)]
pub struct MemKvCopy(Maps);

/// See the module comment.
#[derive(Debug, Default)]
pub struct MemKv {
    inner: Mutex<Inner>,
    /// How long a sync takes (simulated fsync latency); 0 by default.
    sync_delay_nanos: AtomicU64,
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
        self.crash_keeping(0);
    }

    /// Simulated crash that keeps the first `keep` unsynced writes and loses the rest: the
    /// storage happened to persist a prefix of them. The [`Kv`] contract allows it (a crash never
    /// reorders writes), and it is harsher than losing everything, because
    /// code may not assume "all or nothing since the last sync".
    ///
    /// When `keep` > 0 and the first lost write is to a tree whose batches a crash may cut
    /// ([`Tree::batches_atomic`] false, as on sled), the first half of its operations is kept too.
    pub fn crash_keeping(&self, keep: usize) {
        let half = {
            let inner = self.lock();
            match inner.unsynced.get(keep) {
                Some((tree, batch)) if keep > 0 && !tree.batches_atomic() => batch.len() / 2,
                _ => 0,
            }
        };
        self.crash_cutting(keep, half);
    }

    /// Simulated crash that keeps the first `keep` unsynced writes and the first `ops`
    /// operations of the next one. Panics if that write's tree keeps batches whole (a test bug).
    pub fn crash_cutting(&self, keep: usize, ops: usize) {
        let mut inner = self.lock();
        let unsynced = std::mem::take(&mut inner.unsynced);
        for (tree, batch) in unsynced.iter().take(keep) {
            apply(&mut inner.durable, *tree, batch);
        }
        if ops > 0 {
            if let Some((tree, batch)) = unsynced.get(keep) {
                assert!(
                    !tree.batches_atomic(),
                    "tree {} keeps batches whole",
                    tree.name()
                );
                let part: KvBatch = batch[..ops.min(batch.len())].to_vec();
                apply(&mut inner.durable, *tree, &part);
            }
        }
        inner.unsynced_first += unsynced.len() as u64;
        inner.current = inner.durable.clone();
        inner.crashes += 1;
    }

    /// Makes every later `sync` take `delay` (simulated fsync latency). Writes made while a sync
    /// is in flight are not made durable by it.
    pub fn set_sync_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.sync_delay_nanos.store(nanos, Ordering::Relaxed);
    }

    /// True when no tree holds anything.
    pub fn is_empty(&self) -> bool {
        self.lock().current.values().all(BTreeMap::is_empty)
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

    /// The durable state, to restore later ([`MemKv::restore`]): an older copy of the storage.
    pub fn durable_copy(&self) -> MemKvCopy {
        MemKvCopy(self.lock().durable.clone())
    }

    /// Replaces everything — durable and current, dropping unsynced writes — with an earlier
    /// copy (a restored backup), or with nothing (`MemKvCopy::default()`: the storage is gone).
    /// Only for a store whose process is down, as a crash is.
    pub fn restore(&self, copy: &MemKvCopy) {
        let mut inner = self.lock();
        let dropped = std::mem::take(&mut inner.unsynced);
        inner.unsynced_first += dropped.len() as u64;
        inner.durable = copy.0.clone();
        inner.current = copy.0.clone();
        inner.crashes += 1;
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
            let delay = Duration::from_nanos(self.sync_delay_nanos.load(Ordering::Relaxed));
            // What this sync covers is decided when it starts, as with a real fsync: every write
            // numbered below `end`.
            let (end, crashes) = {
                let inner = self.lock();
                (
                    inner.unsynced_first + inner.unsynced.len() as u64,
                    inner.crashes,
                )
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut inner = self.lock();
            if inner.crashes != crashes {
                return Err(KvError::new("sync", "the storage crashed during the sync"));
            }
            // A sync that started later may have finished first and covered some of them.
            let count = end.saturating_sub(inner.unsynced_first) as usize;
            let synced: Vec<(Tree, KvBatch)> = inner.unsynced.drain(..count).collect();
            inner.unsynced_first += synced.len() as u64;
            for (tree, batch) in &synced {
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

    #[tokio::test]
    async fn crash_keeping_a_prefix_keeps_exactly_that_prefix() {
        let kv = MemKv::new();
        for (k, v) in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")] {
            kv.write(Tree::Log, vec![(k.to_vec(), Some(v.to_vec()))])
                .expect("write");
        }
        kv.crash_keeping(2);
        assert_eq!(kv.get(Tree::Log, b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.get(Tree::Log, b"b").expect("get"), Some(b"2".to_vec()));
        assert_eq!(kv.get(Tree::Log, b"c").expect("get"), None);
        assert_eq!(kv.unsynced_writes(), 0);
        // What was kept is durable: another crash keeps it.
        kv.crash();
        assert_eq!(kv.get(Tree::Log, b"b").expect("get"), Some(b"2".to_vec()));
    }

    #[tokio::test]
    async fn a_delayed_sync_covers_only_the_writes_made_before_it_started() {
        let kv = std::sync::Arc::new(MemKv::new());
        kv.set_sync_delay(Duration::from_millis(5));
        kv.write(Tree::Log, vec![(b"a".to_vec(), Some(b"1".to_vec()))])
            .expect("write");
        let syncing = {
            let kv = kv.clone();
            tokio::spawn(async move { kv.sync().await })
        };
        tokio::task::yield_now().await;
        kv.write(Tree::Log, vec![(b"b".to_vec(), Some(b"2".to_vec()))])
            .expect("write");
        syncing.await.expect("joins").expect("sync");
        assert_eq!(kv.unsynced_writes(), 1);
        kv.crash();
        assert_eq!(kv.get(Tree::Log, b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.get(Tree::Log, b"b").expect("get"), None);
    }

    #[tokio::test]
    async fn a_slow_sync_overtaken_by_a_fast_one_finds_its_writes_durable() {
        let kv = std::sync::Arc::new(MemKv::new());
        kv.set_sync_delay(Duration::from_millis(5));
        kv.write(Tree::Log, vec![(b"a".to_vec(), Some(b"1".to_vec()))])
            .expect("write");
        let slow = {
            let kv = kv.clone();
            tokio::spawn(async move { kv.sync().await })
        };
        tokio::task::yield_now().await;
        kv.write(Tree::Log, vec![(b"b".to_vec(), Some(b"2".to_vec()))])
            .expect("write");
        kv.set_sync_delay(Duration::ZERO);
        kv.sync().await.expect("the fast sync covers both writes");
        slow.await.expect("joins").expect("the slow sync");
        assert_eq!(kv.unsynced_writes(), 0);
        kv.crash();
        assert_eq!(kv.get(Tree::Log, b"b").expect("get"), Some(b"2".to_vec()));
    }
}
