//! A flipped byte in a node's stored data is detected, reported and not served, and the rest of
//! the cluster keeps serving. A follower is stopped and its data corrupted three ways, each on a
//! fresh copy of its good data:
//!
//! (a) a byte flipped inside sled's data file where a stored leaf lies (found by its bytes) —
//!     sled's own log checksums catch it: the node must refuse to start;
//! (b) the stored value holding the marked leaf (its block, or the leaf alone while its block is
//!     open) rewritten offline through `SledKv`
//!     with one byte changed, bypassing the node's checksum — the start-up check (which always
//!     reads every leaf) finds it: exit code 3, naming the key;
//! (c) an older published checkpoint rewritten the same way, with `verify_on_start = false`:
//!     the node starts, but asking for that checkpoint gives DATA_LOSS naming the key, and its
//!     status reports the corruption; with `verify_on_start = true` it refuses to start.
//!
//! Finally the good copy starts and catches up, showing that the refusals were the corruption's.

use std::path::Path;
use std::time::Duration;

use stateledger_client::LedgerClient;
use stateledger_core::note::NoteSigner;
use stateledger_node::ledger::blocks::BLOCK_LEAVES;
use stateledger_node::ledger::keys;
use stateledger_node::store::sled_kv::{SledKv, SYNCED_FILE};
use stateledger_node::store::{describe_key, Kv as _, Tree};
use stateledger_proto::v1 as pb;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::wait;

const SYSTEM: &str = "audit";
/// Exit status of `stateledger node run` when stored data is corrupt.
const EXIT_CORRUPT: i32 = 3;
/// How long a node with corrupt data may take to refuse.
const REFUSE_WITHIN: Duration = Duration::from_secs(20);

fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).expect("remove the old copy");
    }
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the data dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a data file");
        }
    }
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Rewrites the stored value holding leaf `index` (its full block, or the leaf on its own while
/// its block is open) with one byte of that leaf's record changed, through sled directly (the
/// node's checksum in front of the value is left as it was). Returns the described key.
fn corrupt_leaf_value(data_dir: &Path, index: u64, leaf_bytes: &[u8]) -> String {
    let kv = SledKv::open(data_dir)
        .expect("the stopped node's sled opens")
        .kv;
    let block = keys::block(index / BLOCK_LEAVES);
    let (key, mut stored) = match kv.get(Tree::Ledger, &block).expect("sled reads") {
        Some(v) => (block, v),
        None => {
            let key = keys::open_leaf(index);
            let v = kv
                .get(Tree::Ledger, &key)
                .expect("sled reads")
                .expect("the leaf is stored");
            (key, v)
        }
    };
    let at = find_all(&stored, leaf_bytes);
    assert_eq!(at.len(), 1, "the leaf is in its block once");
    // Inside the record bytes, after the 126-byte leaf header.
    stored[at[0] + 126 + 4] ^= 0x04;
    kv.write(Tree::Ledger, vec![(key.clone(), Some(stored))])
        .expect("sled writes");
    kv.sync_blocking().expect("sled syncs");
    format!("key {}", describe_key(&key))
}

/// Rewrites the oldest stored checkpoint note (not the latest, which is read at every start)
/// with one byte changed under the node's checksum. Returns its size and the described key.
fn corrupt_old_checkpoint(data_dir: &Path) -> (u64, String) {
    let kv = SledKv::open(data_dir)
        .expect("the stopped node's sled opens")
        .kv;
    let rows = kv
        .scan(
            Tree::Ledger,
            &keys::checkpoint(0),
            &keys::prefix_end(b"C"),
            2,
        )
        .expect("sled scans");
    assert_eq!(rows.len(), 2, "at least two checkpoints were published");
    let (key, mut stored) = rows[0].clone();
    let size = keys::u64_be(&key[1..]).expect("a checkpoint key");
    let last = stored.len() - 1;
    stored[last] ^= 0x01;
    kv.write(Tree::Ledger, vec![(key.clone(), Some(stored))])
        .expect("sled writes");
    kv.sync_blocking().expect("sled syncs");
    (size, format!("key {}", describe_key(&key)))
}

/// The number of the last completed sled sync (`synced` in the data dir; 0 before the first).
fn sled_sync_number(data_dir: &Path) -> u64 {
    match std::fs::read(data_dir.join(SYNCED_FILE)) {
        Ok(b) if b.is_empty() => 0,
        Ok(b) => u64::from_be_bytes(b.try_into().expect("the sync number is 8 bytes")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("reading the sync number: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_stored_data_is_detected_reported_and_not_served() {
    let mut cluster = TestCluster::new(3);
    // sled is synced only when a snapshot is built (the Raft log file is what the commit path
    // syncs); frequent snapshots make the stored leaves durable in sled soon after they apply.
    for id in 1..=3 {
        cluster.edit_config(id, |c| c.raft.snapshot_every_entries = 2);
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let healthy: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    let writer = writer_key("auditor");
    cluster.grant(SYSTEM, &writer).await;
    let client = cluster.client();

    // A record with a unique marker, then more records, so the victim applies the marker's leaf
    // and syncs after it.
    let marker = format!("marker-{}", hex::encode(rand::random::<[u8; 8]>()));
    let marked = client
        .submit(&[records::signed(
            records::mutation(SYSTEM, &marker, 1),
            &writer,
        )])
        .await
        .expect("appended")[0]
        .index;
    // A checkpoint covering the marker before the rest is submitted: case (c) needs two
    // distinct published checkpoints, whatever the checkpointer would coalesce.
    client
        .receipt(marked, Duration::from_secs(10))
        .await
        .expect("a checkpoint covers the marker");
    let more: Vec<_> = (2..=30)
        .map(|n| records::signed(records::mutation(SYSTEM, &format!("after-{n}"), n), &writer))
        .collect();
    let last = client
        .submit(&more)
        .await
        .expect("appended")
        .last()
        .expect("records")
        .index;
    client
        .receipt(last, Duration::from_secs(10))
        .await
        .expect("a checkpoint covers everything");
    let size = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(20))
        .await
        .tree_size;
    wait::until(
        "the victim to hold a checkpoint of the whole tree",
        Duration::from_secs(20),
        || async {
            let s = cluster.status(victim).await?;
            if s.checkpoint_size >= size {
                Ok(())
            } else {
                Err(format!("checkpoint size {} of {size}", s.checkpoint_size))
            }
        },
    )
    .await;
    // Only what a sled sync covered is guarded by the sync number (anything later in sled is
    // rebuilt from the Raft log after a crash): a few more appends make the victim build a
    // snapshot, which syncs sled with the marked leaf and the published checkpoint above it.
    let synced_before = sled_sync_number(&cluster.data_dir(victim));
    for n in 31..=33 {
        client
            .submit(&[records::signed(
                records::mutation(SYSTEM, &format!("after-{n}"), n),
                &writer,
            )])
            .await
            .expect("appended");
    }
    let size = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(20))
        .await
        .tree_size;
    wait::until(
        "the victim to sync sled after the marked leaf",
        Duration::from_secs(20),
        || async {
            let now = sled_sync_number(&cluster.data_dir(victim));
            if now > synced_before {
                Ok(())
            } else {
                Err(format!("sled sync number still {now}"))
            }
        },
    )
    .await;
    let leaf = cluster
        .entry(leader, marked)
        .await
        .expect("the marked leaf");
    let leaf_bytes = leaf.encode();

    cluster.kill9(victim);
    let data_dir = cluster.data_dir(victim);
    let good = cluster.scratch("good-copy");
    copy_dir(&data_dir, &good);

    // (a) A byte flipped in sled's data file, inside the stored leaf.
    let db_path = data_dir.join("db");
    let mut db = std::fs::read(&db_path).expect("sled's data file");
    let at = find_all(&db, &leaf_bytes);
    let marker_at = find_all(&db, marker.as_bytes());
    eprintln!(
        "(a) the marked leaf is stored at {at:?} in {} ({} bytes); the marker string at {marker_at:?}",
        db_path.display(),
        db.len()
    );
    assert!(!at.is_empty(), "the leaf's bytes are in sled's data file");
    for offset in &at {
        db[offset + 126 + 4] ^= 0x04;
    }
    std::fs::write(&db_path, &db).expect("write the corrupted data file");
    cluster.start(victim);
    let exit = cluster.node(victim).wait_exit(REFUSE_WITHIN);
    let log = cluster.node(victim).log_text();
    let status_seen = if exit.is_none() {
        format!("{:?}", cluster.status(victim).await)
    } else {
        String::new()
    };
    assert!(
        exit.is_some_and(|s| !s.success()),
        "(a) the node must refuse to start on a corrupted data file, but it {}; status: {status_seen}\nlog:\n{}",
        if exit.is_some() { "exited successfully" } else { "kept running" },
        cluster.node(victim).log_tail(30)
    );
    let line = last_error_line(&log);
    eprintln!("(a) refused with {exit:?}: {line}");
    // Either the node's own check (exit 3: sled came back with less than was synced) or sled's
    // checksum error on a read at start (exit 2).
    let code = exit.and_then(|s| s.code());
    assert!(
        (code == Some(EXIT_CORRUPT) && line.contains("stored data is corrupt"))
            || (code == Some(2) && line.contains("Corruption")),
        "(a) the refusal names the corruption: exit {code:?}: {line}"
    );
    cluster.kill9(victim);
    assert_others_serve(&cluster, &client, &writer, &healthy, "(a)").await;

    // (b) A leaf changed under the node's checksum.
    copy_dir(&good, &data_dir);
    let key = corrupt_leaf_value(&data_dir, marked, &leaf_bytes);
    cluster.start(victim);
    let exit = cluster.node(victim).wait_exit(REFUSE_WITHIN);
    let log = cluster.node(victim).log_text();
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(EXIT_CORRUPT),
        "(b) the node must exit {EXIT_CORRUPT} on a checksum mismatch; log:\n{}",
        cluster.node(victim).log_tail(30)
    );
    let line = last_error_line(&log);
    eprintln!("(b) refused with exit {EXIT_CORRUPT}: {line}");
    assert!(
        line.contains("stored data is corrupt")
            && line.contains("tree ledger")
            && line.contains(&key),
        "(b) the message names the corrupt value ({key}): {line}"
    );
    assert_others_serve(&cluster, &client, &writer, &healthy, "(b)").await;

    // (c) An old checkpoint changed under the checksum, with the start-up check of checkpoints
    // off: found when asked for, reported, not served.
    copy_dir(&good, &data_dir);
    let (cp_size, key) = corrupt_old_checkpoint(&data_dir);
    cluster.edit_config(victim, |c| c.node.verify_on_start = false);
    cluster.start(victim);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(20))
        .await;
    let at_size = |size| pb::GetCheckpointRequest {
        at_size: size,
        ..Default::default()
    };
    let err = cluster
        .ledger(victim)
        .get_checkpoint(at_size(cp_size))
        .await
        .expect_err("a corrupt checkpoint is not served");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(err.message().contains(&key), "{}", err.message());
    let status = cluster.status(victim).await.expect("the victim answers");
    eprintln!("(c) reported in status: {}", status.corruption);
    assert!(
        status.corruption.contains(&key),
        "status names it: {}",
        status.corruption
    );
    // A healthy node serves that checkpoint; the victim still serves intact data.
    let healthy_note = cluster
        .ledger(leader)
        .get_checkpoint(at_size(cp_size))
        .await
        .expect("the leader serves the checkpoint")
        .into_inner()
        .checkpoint;
    assert!(
        healthy_note.contains(&format!("\n{cp_size}\n")),
        "{healthy_note}"
    );
    // A size at which no checkpoint was published is NOT_FOUND, not corruption.
    let err = cluster
        .ledger(leader)
        .get_checkpoint(at_size(u64::MAX))
        .await
        .expect_err("no checkpoint at that size");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert_eq!(
        cluster
            .entry(victim, marked)
            .await
            .expect("an intact leaf is served"),
        leaf
    );
    cluster.kill9(victim);
    // With the full check on, the same data is refused at start.
    cluster.edit_config(victim, |c| c.node.verify_on_start = true);
    cluster.start(victim);
    let exit = cluster.node(victim).wait_exit(REFUSE_WITHIN);
    let line = last_error_line(&cluster.node(victim).log_text());
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(EXIT_CORRUPT),
        "(c) {line}"
    );
    assert!(line.contains(&key), "(c) names {key}: {line}");
    assert_others_serve(&cluster, &client, &writer, &healthy, "(c)").await;

    // The good copy starts, with the full check, and catches up.
    copy_dir(&good, &data_dir);
    cluster.start(victim);
    let status = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
    assert!(status.tree_size > size);
    assert_eq!(
        cluster.entry(victim, marked).await.expect("served again"),
        leaf
    );
}

/// The healthy nodes keep taking writes, prove them, report no corruption and agree.
async fn assert_others_serve(
    cluster: &TestCluster,
    client: &LedgerClient,
    writer: &NoteSigner,
    healthy: &[u64],
    what: &str,
) {
    let id = format!("still-serving-{}", hex::encode(rand::random::<[u8; 4]>()));
    let record = records::signed(records::mutation(SYSTEM, &id, 1), writer);
    let s = client
        .submit(std::slice::from_ref(&record))
        .await
        .unwrap_or_else(|e| panic!("after {what}, the healthy nodes stopped taking writes: {e}"));
    client
        .receipt(s[0].index, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("after {what}, no verified receipt: {e}"));
    for id in healthy {
        let st = cluster.status(*id).await.expect("a healthy node answers");
        assert!(st.corruption.is_empty(), "node {id}: {}", st.corruption);
    }
    cluster
        .wait_converged(healthy, Duration::from_secs(10))
        .await;
}

/// The last line of a node log that reports an error.
fn last_error_line(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("error") || l.contains("ERROR"))
        .unwrap_or("(no error line)")
        .to_string()
}
