//! One damaged disk plus one crash must not lose an acknowledged record or fork the history.
//!
//! Three nodes L (leader), F and T, each its own host on loopback. T is cut off; 300 records are
//! acknowledged by L and F; L and F are killed with SIGKILL. F's Raft log is then damaged — in
//! one variant deleted, in the other truncated in the middle of a synced record — and F and T
//! run without L. F must find that it lost synced state, say so (log and status), and refuse to
//! vote: F and T elect nobody and acknowledge nothing, because the only other copy of those
//! records is on L. When L comes back, the cluster elects a leader that holds them, F is repaired
//! from it, every acknowledged record is present on every node, and the checkpoint L and F had
//! cosigned before the crash is consistent with the new ones.
//!
//! Needs root (iptables rules cut T off; see `support/partition.rs`).

use std::time::Duration;

use stateledger_client::Submitted;
use stateledger_node::store::wal::frame;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::partition::Partition;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::wait;

const SYSTEM: &str = "ledger-of-record";
const RECORDS: u64 = 300;
/// F and T may try for this long; neither may win (election timeouts are 400-800 ms).
const NO_LEADER_FOR: Duration = Duration::from_secs(6);

#[derive(Clone, Copy, Debug)]
enum Damage {
    Deleted,
    Truncated,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_raft_log_loses_nothing_and_forks_nothing() {
    lose_state_then_crash(Damage::Deleted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_log_truncated_inside_a_synced_record_loses_nothing_and_forks_nothing() {
    lose_state_then_crash(Damage::Truncated).await;
}

/// The one `*.wal` file of a node's Raft log.
fn wal_file(cluster: &TestCluster, id: u64) -> std::path::PathBuf {
    let dir = cluster.data_dir(id).join("raft-log");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the Raft log directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Cuts the log file inside the record in the middle of its records.
fn truncate_inside_a_synced_record(path: &std::path::Path) -> (usize, usize) {
    let bytes = std::fs::read(path).expect("the log file");
    let valid_end = frame::recover(&bytes).valid_end;
    let mut starts = Vec::new();
    let mut at = frame::FILE_MAGIC.len();
    while at < valid_end {
        let record = frame::parse_at(&bytes, at).expect("a valid record");
        starts.push((at, record.end));
        at = record.end;
    }
    let (start, end) = starts[starts.len() / 2];
    let cut = start + (end - start) / 2;
    std::fs::write(path, &bytes[..cut]).expect("truncate");
    (cut, valid_end)
}

async fn lose_state_then_crash(damage: Damage) {
    let mut cluster = TestCluster::with_hosts(3);
    cluster.start_all();
    let l = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != l).collect();
    let (f, t) = (others[0], others[1]);
    let writer = writer_key("recorder");
    cluster.grant(SYSTEM, &writer).await;

    // T is cut off; L and F acknowledge every record.
    let partition = Partition::new();
    partition.isolate(
        &cluster.cluster_endpoint(t),
        &[cluster.cluster_endpoint(l), cluster.cluster_endpoint(f)],
    );
    let client = cluster.client_of(&[l, f], Duration::from_secs(20));
    let mut acked: Vec<Submitted> = Vec::new();
    for n in 0..RECORDS {
        let record = records::signed(records::mutation(SYSTEM, &format!("m-{n}"), n + 1), &writer);
        acked.extend(
            client
                .submit(&[record])
                .await
                .expect("acknowledged by L and F"),
        );
    }
    let last = acked.last().expect("records").index;
    let (_, before) = client
        .receipt(last, Duration::from_secs(20))
        .await
        .expect("L and F cosign a checkpoint over every record");
    let before = before.checkpoint;

    cluster.kill9(l);
    cluster.kill9(f);
    let wal = wal_file(&cluster, f);
    match damage {
        Damage::Deleted => std::fs::remove_file(&wal).expect("delete F's Raft log"),
        Damage::Truncated => {
            let (cut, end) = truncate_inside_a_synced_record(&wal);
            eprintln!("cut F's log at byte {cut} of {end}");
        }
    }
    partition.heal();
    cluster.start(f);

    // F says it lost state and repairs; F and T elect nobody and acknowledge nothing.
    let status = wait::until(
        "F to report that it repairs",
        Duration::from_secs(20),
        || async {
            let s = cluster.status(f).await?;
            if s.repair.is_empty() {
                Err("no repair reported".to_string())
            } else {
                Ok(s)
            }
        },
    )
    .await;
    eprintln!("F reports: {}", status.repair);
    let expected = match damage {
        Damage::Deleted => "missing",
        Damage::Truncated => "had been synced",
    };
    assert!(status.repair.contains(expected), "{}", status.repair);
    let survivors = cluster.client_of(&[f, t], NO_LEADER_FOR);
    let probe = records::signed(records::mutation(SYSTEM, "must-wait-for-l", 1), &writer);
    let refused = survivors.submit(&[probe]).await;
    assert!(
        refused.is_err(),
        "F and T acknowledged a write without L: {refused:?}"
    );
    for id in [f, t] {
        let s = cluster.status(id).await.expect("answers");
        assert_ne!(s.role, "leader", "node {id} became leader without L: {s:?}");
    }
    let log = cluster.node(f).log_text();
    assert!(
        log.contains("does not vote"),
        "F's log says that it does not vote:\n{}",
        cluster.node(f).log_tail(30)
    );

    // L returns: a leader that holds the records is elected, F is repaired from it.
    cluster.start(l);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let all = cluster.client_of(&[1, 2, 3], Duration::from_secs(20));
    let after = all
        .submit(&[records::signed(
            records::mutation(SYSTEM, "after", 1),
            &writer,
        )])
        .await
        .expect("writes resume with L back");
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
    wait::until("F to finish repairing", Duration::from_secs(30), || async {
        let s = cluster.status(f).await?;
        if s.repair.is_empty() {
            Ok(())
        } else {
            Err(s.repair)
        }
    })
    .await;
    for id in [l, f, t] {
        for a in &acked {
            let leaf = cluster
                .entry(id, a.index)
                .await
                .unwrap_or_else(|e| panic!("node {id} lost acknowledged leaf {}: {e}", a.index));
            assert_eq!(
                leaf.leaf_hash().0,
                a.leaf_hash,
                "node {id} holds another record at acknowledged index {}",
                a.index
            );
        }
    }
    // No fork: the checkpoint cosigned before the crash is consistent with the newest one.
    let (_, now) = all
        .receipt(after[0].index, Duration::from_secs(20))
        .await
        .expect("a receipt after the repair");
    all.consistency_document(&before, &now.checkpoint)
        .await
        .expect("the old checkpoint is consistent with the new one");
}
