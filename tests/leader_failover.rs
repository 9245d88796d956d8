//! `kill -9` of the leader under load. Writers keep submitting through the client library; the
//! leader process is killed with SIGKILL; a surviving node takes over within seconds (the time to
//! the new leader and to the first acknowledged write after the kill are printed); no record the
//! cluster acknowledged is lost — every acknowledged leaf index still holds the acknowledged leaf
//! on the new leader, with a receipt that verifies — and the killed node, restarted, catches up
//! to the identical root and serves the same leaves.

use std::time::{Duration, Instant};

use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::writer_key;
use stateledger_tests::writer::{assert_acks_present, Writer};

const SYSTEM: &str = "payments";
const WRITERS: usize = 3;
/// A new leader must be elected within this (election timeouts are 400-800 ms).
const TAKEOVER_MAX: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_record() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let key = writer_key(&format!("payments-{w}"));
        cluster.grant(SYSTEM, &key).await;
        let client = cluster.client_of(&[1, 2, 3], Duration::from_secs(20));
        writers.push(Writer::spawn(
            client,
            key,
            SYSTEM,
            &format!("w{w}"),
            Duration::ZERO,
        ));
    }
    let start = Instant::now();
    for w in &writers {
        w.wait_acked_after(start, 20, Duration::from_secs(30)).await;
    }

    // kill -9 the leader while every writer has requests in flight.
    let old_leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await;
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != old_leader).collect();
    cluster.kill9(old_leader);
    let killed = Instant::now();
    let new_leader = cluster.wait_leader(&survivors, TAKEOVER_MAX).await;
    let elected_after = killed.elapsed();
    assert_ne!(new_leader, old_leader);
    for w in &writers {
        w.wait_acked_after(killed, 10, Duration::from_secs(30))
            .await;
    }
    let first_write_after = writers
        .iter()
        .filter_map(|w| w.first_ack_after(killed))
        .min()
        .expect("writes resumed")
        - killed;
    eprintln!(
        "leader takeover: kill -9 of node {old_leader}; node {new_leader} leads after {elected_after:.2?}; \
         first acknowledged write after {first_write_after:.2?}"
    );
    assert!(
        first_write_after < TAKEOVER_MAX,
        "writes resumed only after {first_write_after:?}"
    );

    // The killed node comes back while the writers go on.
    cluster.start(old_leader);
    let restarted = Instant::now();
    for w in &writers {
        w.wait_acked_after(restarted, 10, Duration::from_secs(30))
            .await;
    }
    let mut acks = Vec::new();
    let mut failures = 0;
    for w in writers {
        let log = w.stop().await;
        failures += log.failures.len();
        acks.extend(log.acked);
    }
    eprintln!(
        "{} acknowledged writes, {failures} failed attempts (not acknowledged, may or may not be in the ledger)",
        acks.len()
    );
    let mut indexes: Vec<u64> = acks.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(
        indexes.len(),
        acks.len(),
        "no leaf index acknowledged twice"
    );

    // No acknowledged record is lost: the new leader holds each, with a verified receipt.
    let client = cluster.client();
    assert_acks_present(&cluster, new_leader, &client, &acks).await;

    // The restarted node catches up to the identical root and holds the same leaves.
    let status = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
    assert!(status.tree_size > *indexes.last().expect("acks"));
    for ack in &acks {
        let leaf = cluster
            .entry(old_leader, ack.index)
            .await
            .expect("the restarted node serves the leaf");
        assert_eq!(leaf.leaf_hash().0, ack.leaf_hash, "leaf {}", ack.index);
    }
    let restarted_status = cluster.status(old_leader).await.expect("status");
    assert!(restarted_status.corruption.is_empty());
    assert_eq!(restarted_status.leader_id, new_leader);
}
