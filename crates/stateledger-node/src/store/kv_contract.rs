//! The [`Kv`] contract (`store/kv.rs`) as one test suite, run against every implementation:
//! [`MemKv`], [`SledKv`] and [`WalKv`]. The simulation trusts `MemKv` as the model of both sled
//! and the Raft log file; this suite is what holds the three to the same behaviour.
//!
//! Every implementation: reads see a write at once, a batch applies in order, scans and `last`
//! are ordered, half-open and limited, trees are apart, `clear` empties one tree, and what was
//! synced survives a reopen.
//!
//! Crashes, as far as each implementation can show one in a test: `MemKv` by its crash model
//! (it keeps a prefix of the unsynced writes, cutting a batch only in trees whose batches a crash
//! may cut), `WalKv` by a power loss of its simulated files (`wal::mem::MemDir`: unsynced sectors
//! kept at random, so the file's tail is torn — cut short, zero-filled, written out of order —
//! and recovery must cut it back to whole records). Either must come back holding the state
//! after some prefix of the writes, never less than was synced. sled cannot be crashed inside a
//! process (dropping it flushes its buffers), so for `SledKv` the suite checks reopening only.
//! One seed decides each crash case; a failure names it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::kv::{Kv, KvBatch, Tree};
use super::mem_kv::MemKv;
use super::sled_kv::SledKv;
use super::wal::io::WalIo;
use super::wal::mem::MemDir;
use super::wal::{WalKv, WalOptions};

/// One implementation under test: a store, and how to reopen it.
trait Subject {
    fn kv(&self) -> &dyn Kv;
    /// The trees it holds.
    fn trees(&self) -> &'static [Tree];
    /// Closes the store and opens it again (after a sync nothing may be lost).
    fn reopen(&mut self);
}

/// An implementation that can show a crash in a test.
trait Crash: Subject {
    /// A crash in which `rng` decides what of the unsynced writes (the last ones to `tree`)
    /// reaches the disk, then a reopen.
    fn crash(&mut self, rng: &mut Rng, tree: Tree);
}

/// A small deterministic generator (splitmix64), so each crash case replays by its number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct MemSubject(MemKv);

impl Subject for MemSubject {
    fn kv(&self) -> &dyn Kv {
        &self.0
    }

    fn trees(&self) -> &'static [Tree] {
        &Tree::ALL
    }

    fn reopen(&mut self) {
        // A MemKv outlives its "process"; a crash right after a sync is its reopen.
        self.0.crash();
    }
}

impl Crash for MemSubject {
    fn crash(&mut self, rng: &mut Rng, tree: Tree) {
        let keep = rng.below(self.0.unsynced_writes() + 1);
        let ops = if tree.batches_atomic() {
            0
        } else {
            rng.below(BATCH_OPS_MAX + 1)
        };
        self.0.crash_cutting(keep, ops);
    }
}

struct SledSubject {
    dir: tempfile::TempDir,
    kv: Option<SledKv>,
}

impl SledSubject {
    fn new() -> SledSubject {
        let dir = tempfile::tempdir().expect("temp dir");
        let kv = SledKv::open(dir.path()).expect("opens").kv;
        SledSubject { dir, kv: Some(kv) }
    }
}

impl Subject for SledSubject {
    fn kv(&self) -> &dyn Kv {
        self.kv.as_ref().expect("open")
    }

    fn trees(&self) -> &'static [Tree] {
        &Tree::ALL
    }

    fn reopen(&mut self) {
        drop(self.kv.take());
        let open = SledKv::open(self.dir.path()).expect("reopens");
        assert!(!open.marker_missing && !open.fresh);
        self.kv = Some(open.kv);
    }
}

/// Sizes small enough for simulated files.
const SMALL: WalOptions = WalOptions {
    preallocate_bytes: 16 * 1024,
    compact_bytes_min: 1 << 20,
};

struct WalSubject {
    dir: Arc<MemDir>,
    kv: Option<WalKv>,
}

impl WalSubject {
    fn new() -> WalSubject {
        let dir = Arc::new(MemDir::new());
        let kv = WalSubject::open(&dir);
        WalSubject { dir, kv: Some(kv) }
    }

    /// Opens the log, which must be intact: a crash is never damage.
    fn open(dir: &Arc<MemDir>) -> WalKv {
        let io: Arc<dyn WalIo> = dir.clone();
        let open = WalKv::open_with(io, SMALL).expect("opens");
        assert_eq!(open.damage, None, "a crash is never damage");
        open.kv
    }
}

impl Subject for WalSubject {
    fn kv(&self) -> &dyn Kv {
        self.kv.as_ref().expect("open")
    }

    fn trees(&self) -> &'static [Tree] {
        &[Tree::Raft, Tree::Log, Tree::Node]
    }

    fn reopen(&mut self) {
        drop(self.kv.take());
        self.kv = Some(WalSubject::open(&self.dir));
    }
}

impl Crash for WalSubject {
    /// A power loss: of each unsynced write, each sector is kept or lost at random, so the
    /// file's tail is torn and its recovery has to cut it back to whole records.
    fn crash(&mut self, rng: &mut Rng, _: Tree) {
        drop(self.kv.take());
        let keep_percent = [0, 50, 90, 100][rng.below(4)];
        self.dir.crash(&mut || rng.next() % 100 < keep_percent);
        self.kv = Some(WalSubject::open(&self.dir));
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn apply(model: &mut Model, ops: &[(Vec<u8>, Option<Vec<u8>>)]) {
    for (k, v) in ops {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}

/// Everything a tree holds (every key here sorts below `ff ff ff`).
fn contents(kv: &dyn Kv, tree: Tree) -> Model {
    kv.scan(tree, &[], &[0xff, 0xff, 0xff], usize::MAX)
        .expect("scan")
        .into_iter()
        .collect()
}

fn put(k: &[u8], v: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    (k.to_vec(), Some(v.to_vec()))
}

fn del(k: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    (k.to_vec(), None)
}

fn write(kv: &dyn Kv, tree: Tree, batch: KvBatch) {
    kv.write(tree, batch).expect("write");
}

async fn reads_see_each_write_at_once(s: &mut dyn Subject) {
    for &tree in s.trees() {
        let kv = s.kv();
        write(
            kv,
            tree,
            vec![put(b"a", b"1"), put(b"b", b"2"), put(b"c", b"")],
        );
        assert_eq!(kv.get(tree, b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(
            kv.get(tree, b"c").expect("get"),
            Some(Vec::new()),
            "an empty value is a value"
        );
        write(kv, tree, vec![put(b"a", b"9"), del(b"b"), del(b"absent")]);
        assert_eq!(kv.get(tree, b"a").expect("get"), Some(b"9".to_vec()));
        assert_eq!(kv.get(tree, b"b").expect("get"), None);
        assert_eq!(kv.get(tree, b"absent").expect("get"), None);
    }
}

async fn a_batch_applies_in_order(s: &mut dyn Subject) {
    for &tree in s.trees() {
        let kv = s.kv();
        write(kv, tree, vec![put(b"k", b"1"), del(b"k")]);
        assert_eq!(kv.get(tree, b"k").expect("get"), None);
        write(kv, tree, vec![del(b"k"), put(b"k", b"2")]);
        assert_eq!(kv.get(tree, b"k").expect("get"), Some(b"2".to_vec()));
        write(kv, tree, vec![put(b"k", b"3"), put(b"k", b"4")]);
        assert_eq!(kv.get(tree, b"k").expect("get"), Some(b"4".to_vec()));
    }
}

async fn scans_and_last_are_ordered_half_open_and_limited(s: &mut dyn Subject) {
    let keys: [&[u8]; 8] = [
        &[2],
        &[0, 1],
        &[1],
        &[255],
        &[0],
        &[1, 0],
        &[0, 0],
        &[254, 9],
    ];
    let mut model = Model::new();
    for &tree in s.trees() {
        let kv = s.kv();
        for (i, k) in keys.iter().enumerate() {
            write(kv, tree, vec![put(k, &[i as u8])]);
            model.insert(k.to_vec(), vec![i as u8]);
        }
        let ranges: [(&[u8], &[u8]); 6] = [
            (&[], &[0xff, 0xff]),
            (&[0], &[1]),
            (&[0, 1], &[1, 0]),
            (&[1], &[1]),
            (&[3], &[200]),
            (&[255], &[255, 0]),
        ];
        for (start, end) in ranges {
            let all: Vec<_> = model
                .range(start.to_vec()..end.to_vec())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for limit in [0, 1, 2, usize::MAX] {
                let expected: Vec<_> = all.iter().take(limit).cloned().collect();
                assert_eq!(
                    kv.scan(tree, start, end, limit).expect("scan"),
                    expected,
                    "{} scan {start:?}..{end:?} limit {limit}",
                    tree.name()
                );
            }
            assert_eq!(
                kv.last(tree, start, end).expect("last"),
                all.last().cloned(),
                "{} last {start:?}..{end:?}",
                tree.name()
            );
        }
    }
}

async fn trees_are_apart_and_clear_empties_one(s: &mut dyn Subject) {
    let trees = s.trees();
    let kv = s.kv();
    for (i, &tree) in trees.iter().enumerate() {
        write(
            kv,
            tree,
            vec![put(b"same", &[i as u8]), put(&[i as u8], b"own")],
        );
    }
    for (i, &tree) in trees.iter().enumerate() {
        assert_eq!(kv.get(tree, b"same").expect("get"), Some(vec![i as u8]));
    }
    let (first, rest) = trees.split_first().expect("a tree");
    kv.clear(*first).expect("clear");
    assert_eq!(contents(kv, *first), Model::new());
    for (i, &tree) in rest.iter().enumerate() {
        let i = i + 1;
        assert_eq!(
            contents(kv, tree),
            Model::from([
                (b"same".to_vec(), vec![i as u8]),
                (vec![i as u8], b"own".to_vec())
            ]),
            "clearing {} left {} alone",
            first.name(),
            tree.name()
        );
    }
    write(kv, *first, vec![put(b"again", b"1")]);
    assert_eq!(
        contents(kv, *first),
        Model::from([(b"again".to_vec(), b"1".to_vec())])
    );
}

async fn synced_writes_survive_a_reopen(s: &mut dyn Subject) {
    let mut models: BTreeMap<Tree, Model> = BTreeMap::new();
    for round in 0..3u8 {
        for &tree in s.trees() {
            let batch = vec![
                put(&[round], &[round; 100]),
                put(&[round, 1], b"x"),
                del(&[round.wrapping_sub(1), 1]),
            ];
            apply(models.entry(tree).or_default(), &batch);
            write(s.kv(), tree, batch);
        }
        s.kv().sync().await.expect("sync");
        s.reopen();
        for &tree in s.trees() {
            assert_eq!(
                contents(s.kv(), tree),
                models[&tree],
                "{} after reopen {round}",
                tree.name()
            );
        }
    }
}

/// Most operations in one random batch.
const BATCH_OPS_MAX: usize = 4;

/// After a crash a tree holds the state after a prefix of its writes — all the synced ones at
/// least — plus, in a tree whose batches a crash may cut, a prefix of the next write's
/// operations. Never a later write without an earlier one, never less than was synced.
async fn a_crash_keeps_a_prefix_of_the_writes<S: Crash>(make: impl Fn() -> S) {
    let (mut lost_some, mut kept_some) = (false, false);
    for case in 0..60u64 {
        let mut s = make();
        let mut rng = Rng(case);
        let trees = s.trees();
        let tree = trees[rng.below(trees.len())];
        let mut writes: Vec<KvBatch> = Vec::new();
        let mut synced = 0;
        for _ in 0..1 + rng.below(10) {
            let batch: KvBatch = (0..1 + rng.below(BATCH_OPS_MAX))
                .map(|_| {
                    let key = vec![rng.below(6) as u8];
                    if rng.below(4) == 0 {
                        (key, None)
                    } else {
                        (key, Some(vec![rng.below(256) as u8; rng.below(2000)]))
                    }
                })
                .collect();
            write(s.kv(), tree, batch.clone());
            writes.push(batch);
            if rng.below(4) == 0 {
                s.kv().sync().await.expect("sync");
                synced = writes.len();
            }
        }
        s.crash(&mut rng, tree);
        let found = contents(s.kv(), tree);

        // Every state the contract allows: after writes[..n] for n from `synced` on, and in
        // a tree whose batches may be cut, after writes[..n] and part of writes[n].
        let mut model = Model::new();
        let mut allowed = Vec::new();
        for (n, batch) in writes.iter().enumerate() {
            if n >= synced {
                allowed.push(model.clone());
                if !tree.batches_atomic() {
                    let mut partial = model.clone();
                    for op in batch {
                        apply(&mut partial, std::slice::from_ref(op));
                        allowed.push(partial.clone());
                    }
                }
            }
            apply(&mut model, batch);
        }
        allowed.push(model.clone());
        assert!(
            allowed.contains(&found),
            "case {case} ({}): after a crash the tree holds no prefix of its {} writes \
             ({synced} synced): {found:?}",
            tree.name(),
            writes.len()
        );
        lost_some |= found != model;
        kept_some |= found != allowed[0];

        // The store works on after its recovery.
        write(s.kv(), tree, vec![put(b"after", b"crash")]);
        s.kv().sync().await.expect("sync after the crash");
        s.reopen();
        assert_eq!(
            s.kv().get(tree, b"after").expect("get"),
            Some(b"crash".to_vec()),
            "case {case}"
        );
    }
    assert!(
        lost_some && kept_some,
        "the crashes lost some unsynced writes and kept others"
    );
}

/// The contract's tests for one implementation, and the crash test named last for one that can
/// show a crash.
macro_rules! contract {
    ($name:ident, $make:expr $(, $crash:ident)?) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn reads_see_each_write_at_once() {
                super::reads_see_each_write_at_once(&mut $make).await;
            }

            #[tokio::test]
            async fn a_batch_applies_in_order() {
                super::a_batch_applies_in_order(&mut $make).await;
            }

            #[tokio::test]
            async fn scans_and_last_are_ordered_half_open_and_limited() {
                super::scans_and_last_are_ordered_half_open_and_limited(&mut $make).await;
            }

            #[tokio::test]
            async fn trees_are_apart_and_clear_empties_one() {
                super::trees_are_apart_and_clear_empties_one(&mut $make).await;
            }

            #[tokio::test]
            async fn synced_writes_survive_a_reopen() {
                super::synced_writes_survive_a_reopen(&mut $make).await;
            }

            $(
                #[tokio::test]
                async fn $crash() {
                    super::$crash(|| $make).await;
                }
            )?
        }
    };
}

contract!(
    mem_kv,
    MemSubject(MemKv::new()),
    a_crash_keeps_a_prefix_of_the_writes
);
// sled cannot be crashed inside a process (see the module comment).
contract!(sled_kv, SledSubject::new());
contract!(
    wal_kv,
    WalSubject::new(),
    a_crash_keeps_a_prefix_of_the_writes
);
