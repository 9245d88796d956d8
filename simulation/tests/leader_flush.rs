//! The leader sends its new log entries to the followers while its own fsync runs, and counts
//! itself toward the commit quorum only once that fsync is done (the openraft patch described in
//! `vendor/openraft/PATCHES.md`). One fixed seed; the leader's simulated fsync is made slow and a
//! link is cut exactly where the test says, so each case has one possible outcome:
//!
//! - with both followers reachable, a record is acknowledged long before the leader's slow fsync
//!   ends (two followers are a quorum). Stock openraft 0.9 fails this: its leader waits for its
//!   own fsync before replicating;
//! - with one follower cut off, the record can only be acknowledged once the leader's fsync ends:
//!   one synced follower plus an unsynced leader is not a quorum. A leader that counted its entries
//!   before syncing them fails this.
#![cfg(madsim)]

use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle, Runtime};
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_simulation::client::Conn;
use stateledger_simulation::cluster::{admin_signer, client_ip, Cluster, ServerTuning};
use stateledger_simulation::trace::Trace;
use stateledger_simulation::workload::writer_signer;
use stateledger_simulation::KnownBad;
use tokio::time::Instant;

/// How long the leader's slowed fsync takes (simulated time).
const SLOW_SYNC: Duration = Duration::from_secs(10);
/// Longest the test waits for any one condition (simulated time).
const WAIT_MAX: Duration = Duration::from_secs(120);
const STEP: Duration = Duration::from_millis(10);

/// A distinct admin-signed record: a grant of writer `i` (the admin key is trusted at genesis).
fn grant(i: usize) -> pb::SignedRecord {
    let writer = writer_signer(i);
    let record = pb::Record {
        system: "orders".into(),
        scope: "leader-flush-test".into(),
        observed_at_unix_nanos: 1_700_000_000_000_000_000 + i as u64,
        body: Some(Body::Policy(pb::Policy {
            change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                writer_key: writer.verifier().key.to_bytes().to_vec(),
                writer_name: writer.name.clone(),
            })),
        })),
    };
    CheckedRecord::sign(record, admin_signer().signing_key())
        .expect("a valid record")
        .to_proto()
}

/// Submits `record` to the node at `addr` from the client host and returns how long it took to
/// be acknowledged. With `retry`, refusals (such as "no genesis yet" while the cluster starts)
/// are retried until the wait runs out.
async fn time_to_ack(
    client: &NodeHandle,
    addr: &str,
    record: pb::SignedRecord,
    retry: bool,
) -> Duration {
    let addr = addr.to_string();
    client
        .spawn(async move {
            let mut c = Conn::new(vec![addr.clone()]).client(&addr);
            let started = Instant::now();
            loop {
                let request = pb::SubmitRequest {
                    records: vec![record.clone()],
                };
                let answer = tokio::time::timeout(WAIT_MAX, c.submit(request))
                    .await
                    .expect("an answer within the wait");
                match answer {
                    Ok(response) => {
                        assert_eq!(response.into_inner().results.len(), 1);
                        return started.elapsed();
                    }
                    Err(_) if retry && started.elapsed() < WAIT_MAX => {
                        tokio::time::sleep(STEP).await;
                    }
                    Err(status) => panic!("the leader refused the record: {status}"),
                }
            }
        })
        .await
        .expect("the client task")
}

/// Waits (in simulated time) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT_MAX, "gave up waiting for {what}");
        tokio::time::sleep(STEP).await;
    }
}

#[test]
fn the_leader_replicates_while_it_syncs_and_counts_itself_only_once_synced() {
    let mut rt = Runtime::with_seed_and_config(1, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(600));
    rt.block_on(async {
        let tuning = ServerTuning {
            snapshot_every_entries: 1_000,
            logs_kept_after_snapshot: 1_000,
            sync_delay: Vec::new(),
        };
        let mut cluster = Cluster::start(3, &tuning, KnownBad::default(), Trace::new(false));
        let client = Handle::current()
            .create_node()
            .name("client")
            .ip(client_ip())
            .build();
        wait_until("a leader", || cluster.leader().is_some()).await;
        let leader = cluster.leader().expect("a leader");
        let addr = cluster.servers[leader].public_addr.clone();
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        // Every node is up and replicating before the timings start.
        time_to_ack(&client, &addr, grant(0), true).await;

        // Case 1: the two followers form the quorum while the leader's fsync is still running.
        let log = cluster.servers[leader].log_dir.clone();
        log.set_sync_delay(SLOW_SYNC);
        let took = time_to_ack(&client, &addr, grant(1), false).await;
        assert!(
            took < SLOW_SYNC / 10,
            "acknowledged after {took:?}: the leader waited for its own {SLOW_SYNC:?} fsync \
             before replicating"
        );

        // Let the slow fsync finish with normal ones behind it.
        log.set_sync_delay(Duration::ZERO);
        wait_until("the leader's log to be synced", || {
            log.unsynced_bytes() == 0
        })
        .await;

        // Case 2: one follower cut off. The other follower syncs at once, but it and the leader
        // are a quorum only when the leader's fsync ends.
        let cut = followers[0];
        cluster.clog(leader, cut);
        cluster.clog(cut, leader);
        log.set_sync_delay(SLOW_SYNC);
        let took = time_to_ack(&client, &addr, grant(2), false).await;
        assert!(
            took >= SLOW_SYNC,
            "acknowledged after {took:?}, before the leader's {SLOW_SYNC:?} fsync ended: the \
             leader counted an entry it had not synced"
        );
        assert_eq!(cluster.leader(), Some(leader), "the leader stayed the same");
        log.set_sync_delay(Duration::ZERO);
        cluster.heal_network();
    });
}
