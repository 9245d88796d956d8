use std::path::{Path, PathBuf};

use super::frame::{find, parse_at, recover, FILE_MAGIC};
use super::mem::MemDir;
use super::*;

fn put(kv: &WalKv, tree: Tree, key: &[u8], value: &[u8]) {
    kv.write(tree, vec![(key.to_vec(), Some(value.to_vec()))])
        .expect("write");
}

fn open(dir: &Path) -> WalOpen {
    WalKv::open_dir_with(dir, SMALL).expect("opens")
}

/// Opens a log that must be intact.
fn intact(dir: &Path) -> WalKv {
    let o = open(dir);
    assert_eq!(o.damage, None);
    o.kv
}

/// A log in `dir` with each of `puts` written to [`Tree::Log`] and synced.
fn synced_log(dir: &Path, puts: &[(&[u8], &[u8])]) -> WalKv {
    let kv = intact(dir);
    for (key, value) in puts {
        put(&kv, Tree::Log, key, value);
        kv.sync_blocking().expect("sync");
    }
    kv
}

/// The one log file (`*.wal`).
fn wal_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join(WAL_DIR))
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn marker_file(dir: &Path) -> PathBuf {
    dir.join(WAL_DIR).join(MARKER_FILE)
}

fn log_keys(kv: &WalKv) -> Vec<Vec<u8>> {
    kv.scan(Tree::Log, &[0], &[0xff], usize::MAX)
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn writes_read_back_before_and_after_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let o = open(dir.path());
        assert!(o.fresh && o.damage.is_none());
        let kv = o.kv;
        assert!(kv.is_empty());
        put(&kv, Tree::Log, &[0, 1], b"one");
        put(&kv, Tree::Log, &[0, 2], b"two");
        put(&kv, Tree::Raft, b"vote", b"v1");
        put(&kv, Tree::Raft, b"vote", b"v2");
        put(&kv, Tree::Node, b"state", b"n");
        kv.write(Tree::Log, vec![(vec![0, 1], None)])
            .expect("remove");
        assert_eq!(
            kv.get(Tree::Raft, b"vote").expect("get"),
            Some(b"v2".to_vec())
        );
        kv.sync_blocking().expect("sync");
    }
    let o = open(dir.path());
    assert!(!o.fresh && o.damage.is_none());
    let kv = o.kv;
    assert_eq!(
        kv.get(Tree::Raft, b"vote").expect("get"),
        Some(b"v2".to_vec())
    );
    assert_eq!(
        kv.get(Tree::Node, b"state").expect("get"),
        Some(b"n".to_vec())
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
    let path = wal_file(dir.path());
    let raw = std::fs::read(&path).expect("read");
    let marker = std::fs::read(marker_file(dir.path())).expect("marker");
    assert!(
        raw.len() as u64 >= SMALL.preallocate_bytes,
        "the file is preallocated"
    );
    // The records, without the preallocated zeros after them.
    let full = raw[..recover(&raw).valid_end].to_vec();
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
            std::fs::write(marker_file(dir.path()), &marker).expect("write marker");
            let o = open(dir.path());
            assert_eq!(o.damage, None, "cut at {cut}, zero-filled {zeros}");
            let kv = o.kv;
            let expected: Vec<Vec<u8>> = match cut {
                c if c == full.len() => vec![vec![1], vec![2], vec![3]],
                c if c >= second_end => vec![vec![1], vec![2]],
                _ => vec![vec![1]],
            };
            assert_eq!(log_keys(&kv), expected, "cut at {cut}, zero-filled {zeros}");
            // Writing after recovery appends after the valid records.
            put(&kv, Tree::Log, &[4], b"after");
            kv.sync_blocking().expect("sync");
            drop(kv);
            let kv = intact(dir.path());
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
    let path = wal_file(dir.path());
    let len = std::fs::metadata(&path).expect("meta").len();
    drop(intact(dir.path()));
    assert_eq!(
        std::fs::metadata(&path).expect("meta").len(),
        len,
        "zeros kept"
    );
    let mut bytes = std::fs::read(&path).expect("read");
    let end = recover(&bytes).valid_end;
    bytes[end + 100] = 0x5a;
    std::fs::write(&path, &bytes).expect("write");
    let kv = intact(dir.path());
    let after = std::fs::read(&path).expect("read");
    assert_eq!(after[..end], bytes[..end], "the records are kept");
    assert!(
        after[end..].iter().all(|b| *b == 0),
        "cut at the last record: only preallocated zeros follow it"
    );
    assert_eq!(
        kv.get(Tree::Log, &[1]).expect("get"),
        Some(b"synced".to_vec())
    );
}

/// Damage to a synced record is reported, the log serves what precedes it and refuses writes
/// until the damage is accepted; accepting keeps the damaged file and continues from the valid
/// records.
#[test]
fn damage_to_synced_records_is_reported_then_accepted_keeping_evidence() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(synced_log(
        dir.path(),
        &[
            (&[1], b"first synced value"),
            (&[2], b"second"),
            (&[3], b"third"),
        ],
    ));
    let path = wal_file(dir.path());
    let good = std::fs::read(&path).expect("read");
    let at = find(&good, 0, b"second").expect("value in file");
    let mut bytes = good.clone();
    bytes[at + 2] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let o = open(dir.path());
    match &o.damage {
        Some(WalDamage::Corrupt { reason, .. }) => {
            assert!(reason.contains("had been synced"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let kv = o.kv;
    assert_eq!(
        log_keys(&kv),
        vec![vec![1]],
        "the records before the damage"
    );
    let err = kv
        .write(Tree::Log, vec![(vec![9], Some(b"x".to_vec()))])
        .expect_err("refused while damaged");
    assert!(err.to_string().contains("repairing"), "{err}");
    // Until accepted, a reopen finds the same damage.
    drop(kv);
    let o = open(dir.path());
    assert!(matches!(o.damage, Some(WalDamage::Corrupt { .. })));
    o.kv.accept_damage().expect("accepted");
    put(&o.kv, Tree::Log, &[9], b"after");
    o.kv.sync_blocking().expect("sync");
    drop(o);
    let kv = intact(dir.path());
    assert_eq!(log_keys(&kv), vec![vec![1], vec![9]]);
    let evidence: Vec<String> = std::fs::read_dir(dir.path().join(WAL_DIR))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(EVIDENCE_SUFFIX))
        .collect();
    assert_eq!(evidence.len(), 1, "the damaged file is kept: {evidence:?}");
    assert_eq!(
        std::fs::read(dir.path().join(WAL_DIR).join(&evidence[0])).expect("evidence"),
        bytes
    );
}

/// A log cut anywhere below what its marker says was synced — at a record boundary or inside
/// a record — lost acknowledged data: reported, not taken for a torn tail.
#[test]
fn a_truncation_below_the_synced_offset_is_damage_at_every_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(synced_log(
        dir.path(),
        &[(&[1], b"one"), (&[2], b"two"), (&[3], b"three")],
    ));
    let path = wal_file(dir.path());
    let good = std::fs::read(&path).expect("read");
    let marker = std::fs::read(marker_file(dir.path())).expect("marker");
    let end = recover(&good).valid_end;
    for cut in FILE_MAGIC.len()..end {
        std::fs::write(&path, &good[..cut]).expect("write");
        std::fs::write(marker_file(dir.path()), &marker).expect("marker");
        match open(dir.path()).damage {
            Some(WalDamage::LostSyncedWrites {
                valid_end, synced, ..
            }) => {
                assert!(
                    valid_end <= cut as u64 && synced == end as u64,
                    "cut at {cut}"
                );
            }
            other => panic!("cut at {cut}: expected LostSyncedWrites, got {other:?}"),
        }
    }
}

#[test]
fn a_deleted_log_or_marker_is_damage_and_both_deleted_is_a_new_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(synced_log(dir.path(), &[(&[1], b"one")]));
    let path = wal_file(dir.path());
    let good = std::fs::read(&path).expect("read");
    let marker = std::fs::read(marker_file(dir.path())).expect("marker");

    std::fs::remove_file(&path).expect("rm log");
    let o = open(dir.path());
    assert!(
        matches!(o.damage, Some(WalDamage::Missing { .. })),
        "{:?}",
        o.damage
    );
    assert!(o.kv.is_empty() && !o.fresh);
    drop(o);
    // Not accepted: still missing at the next open (nothing was written meanwhile).
    let o = open(dir.path());
    assert!(matches!(o.damage, Some(WalDamage::Missing { .. })));
    o.kv.accept_damage().expect("accept");
    put(&o.kv, Tree::Log, &[5], b"new");
    o.kv.sync_blocking().expect("sync");
    drop(o);
    assert_eq!(log_keys(&intact(dir.path())), vec![vec![5]]);

    // The marker deleted while the log holds records.
    std::fs::remove_dir_all(dir.path().join(WAL_DIR)).expect("rm dir");
    std::fs::create_dir_all(dir.path().join(WAL_DIR)).expect("mkdir");
    std::fs::write(dir.path().join(WAL_DIR).join(file_name(1)), &good).expect("log back");
    let o = open(dir.path());
    assert_eq!(o.damage, Some(WalDamage::MarkerMissing { generation: 1 }));
    o.kv.accept_damage().expect("accept");
    drop(o);
    assert_eq!(log_keys(&intact(dir.path())), vec![vec![1]]);

    // Both gone: indistinguishable from a new node here (the node's own record elsewhere
    // tells them apart).
    std::fs::remove_dir_all(dir.path().join(WAL_DIR)).expect("rm dir");
    let o = open(dir.path());
    assert!(o.fresh && o.damage.is_none());
    drop(marker);
}

/// The log file replaced by an older copy of itself: valid, but shorter than what was synced.
#[test]
fn a_log_rolled_back_to_an_older_copy_is_damage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kv = synced_log(dir.path(), &[(&[1], b"one")]);
    let older = std::fs::read(wal_file(dir.path())).expect("older copy");
    put(&kv, Tree::Log, &[2], b"two");
    kv.sync_blocking().expect("sync");
    drop(kv);
    std::fs::write(wal_file(dir.path()), &older).expect("roll back");
    assert!(matches!(
        open(dir.path()).damage,
        Some(WalDamage::LostSyncedWrites { .. })
    ));
}

#[test]
fn a_mostly_purged_file_is_compacted_and_reopens_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    let value = vec![7u8; 256 * 1024];
    let kv = WalKv::open_dir(dir.path()).expect("opens").kv;
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
    let size = std::fs::metadata(wal_file(dir.path())).expect("meta").len();
    assert!(size < COMPACT_BYTES_MIN / 4, "compacted to {size} bytes");
    let before = kv.scan(Tree::Log, &[0], &[0xff], usize::MAX).expect("scan");
    assert_eq!(before.len(), 4);
    drop(kv);
    let kv = intact(dir.path());
    assert_eq!(
        kv.get(Tree::Raft, b"vote").expect("get"),
        Some(b"kept".to_vec())
    );
    assert_eq!(
        kv.scan(Tree::Log, &[0], &[0xff], usize::MAX).expect("scan"),
        before
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
    let kv = intact(dir.path());
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
    let kv = intact(dir.path());
    assert_eq!(kv.get(Tree::Log, &[1]).expect("get"), Some(b"v".to_vec()));
    wal_file(dir.path());
}

/// Sizes small enough for simulated files.
const SMALL: WalOptions = WalOptions {
    preallocate_bytes: 16 * 1024,
    compact_bytes_min: 1 << 20,
};

/// A small deterministic generator, so that each case below can be replayed by its number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Power losses at random points, each keeping a random subset of the unsynced sectors (cut
/// short, zero-filled, out of order): the log always reopens without damage and keeps every
/// synced write. A crash must never look like lost synced data, or every power loss would take
/// nodes out of the vote.
#[test]
fn power_losses_never_look_like_damage_and_keep_every_synced_write() {
    for case in 0..200u64 {
        let mut rng = Rng(case);
        let dir = Arc::new(MemDir::new());
        let io = || -> Arc<dyn WalIo> { dir.clone() };
        let mut synced: Vec<Vec<u8>> = Vec::new();
        for round in 0..4 {
            let o = WalKv::open_with(io(), SMALL).expect("opens");
            assert_eq!(o.damage, None, "case {case} round {round}");
            let kv = o.kv;
            for key in &synced {
                assert!(
                    kv.get(Tree::Log, key).expect("get").is_some(),
                    "case {case} round {round}: synced key {key:?} lost"
                );
            }
            for i in 0..(rng.next() % 12) {
                let key = (round * 100 + i).to_be_bytes().to_vec();
                let len = (rng.next() % 3000) as usize;
                put(&kv, Tree::Log, &key, &vec![i as u8; len]);
                if rng.chance(40) {
                    kv.sync_blocking().expect("sync");
                    synced = log_keys(&kv);
                }
            }
            drop(kv);
            let keep_percent = [0, 50, 90, 100][(rng.next() % 4) as usize];
            dir.crash(&mut || rng.chance(keep_percent));
        }
    }
}

/// On a disk that is nearly full the file grows only as far as a record needs, and a disk
/// that is full refuses the write without poisoning the log: it works again once space returns.
#[test]
fn a_full_disk_refuses_writes_without_damaging_the_log() {
    let dir = Arc::new(MemDir::new());
    let kv = WalKv::open(dir.clone()).expect("opens").kv;
    put(&kv, Tree::Log, &[1], b"first");
    kv.sync_blocking().expect("sync");
    let used = dir.used_bytes();
    // Less room than a preallocation step, more than one record.
    dir.set_space_limit(used + 64 * 1024);
    // Fill the preallocated space, then a little more.
    let mut i = 2u64;
    let err = loop {
        match kv.write(
            Tree::Log,
            vec![(i.to_be_bytes().to_vec(), Some(vec![1; 4000]))],
        ) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 100_000, "never ran out of space");
    };
    assert!(err.to_string().contains("preallocate"), "{err}");
    kv.sync_blocking().expect("what was written syncs");
    let written = log_keys(&kv).len();
    dir.set_space_limit(0);
    put(&kv, Tree::Log, &[0xfe], b"space is back");
    kv.sync_blocking().expect("sync");
    drop(kv);
    let kv = WalKv::open(dir.clone()).expect("reopens");
    assert_eq!(kv.damage, None);
    assert_eq!(log_keys(&kv.kv).len(), written + 1);
}
