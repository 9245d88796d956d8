//! What stands between a leader that skips its signature check and the ledger: every node checks
//! the signatures of the records it is about to apply (`Ledger::signature_verdicts`), refuses a
//! group that holds a bad one and keeps the group as evidence. One fixed seed, no faults, the
//! `unsigned-record-accepted` switch on every node (the leader proposes records whose signature
//! failed):
//!
//! - a record with a broken signature is proposed, committed and refused by every node alike
//!   (INVALID_ARGUMENT naming the leader), each keeping the same evidence;
//! - no node stores it, and the quorum-cosigned checkpoint that covers the records around it
//!   matches every node's ledger, so no checkpoint a client can verify covers the record.
//!
//! Without the switch the same record is refused at submission (UNAUTHENTICATED) and nothing is
//! proposed. The hunt in `known_bad.rs` catches the switch through the `no_unsigned_proposals`
//! invariant; this test shows what the cluster does about it.
#![cfg(madsim)]

use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle, Runtime};
use stateledger_core::leaf::Leaf;
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_core::trust::TrustPolicy;
use stateledger_simulation::client::Conn;
use stateledger_simulation::cluster::{admin_signer, client_ip, Cluster, ServerTuning, ORIGIN};
use stateledger_simulation::trace::Trace;
use stateledger_simulation::workload::writer_signer;
use stateledger_simulation::{KnownBad, Switch};
use tokio::time::Instant;
use tonic::Code;

/// Longest the test waits for any one condition (simulated time).
const WAIT_MAX: Duration = Duration::from_secs(120);
const STEP: Duration = Duration::from_millis(10);

/// A distinct admin-signed record: a grant of writer `i` (the admin key is trusted at genesis).
fn grant(i: usize) -> pb::SignedRecord {
    let writer = writer_signer(i);
    let record = pb::Record {
        system: "orders".into(),
        scope: "unsigned-record-test".into(),
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

/// [`grant`] with one bit of its signature flipped.
fn forged(i: usize) -> pb::SignedRecord {
    let mut r = grant(i);
    r.signature[7] ^= 0x10;
    r
}

/// Submits `record` to `addr` from the client host: its leaf index, or the refusal. With
/// `retry`, refusals (such as "no genesis yet" while the cluster starts) are retried until the
/// wait runs out.
async fn submit(
    client: &NodeHandle,
    addr: &str,
    record: pb::SignedRecord,
    retry: bool,
) -> Result<u64, tonic::Status> {
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
                    Ok(response) => return Ok(response.into_inner().results[0].leaf_index),
                    Err(_) if retry && started.elapsed() < WAIT_MAX => {
                        tokio::time::sleep(STEP).await;
                    }
                    Err(status) => return Err(status),
                }
            }
        })
        .await
        .expect("the client task")
}

/// A checkpoint of at least `min_size` leaves from `addr`.
async fn checkpoint(client: &NodeHandle, addr: &str, min_size: u64) -> String {
    let addr = addr.to_string();
    client
        .spawn(async move {
            let mut c = Conn::new(vec![addr.clone()]).client(&addr);
            let request = pb::GetCheckpointRequest {
                min_size,
                covering_time: 0,
                wait_ms: 30_000,
                at_size: 0,
            };
            c.get_checkpoint(request)
                .await
                .expect("a checkpoint")
                .into_inner()
                .checkpoint
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

/// A three-node cluster with `known_bad`, a client host, and the leader's index once there is
/// one.
async fn start(known_bad: KnownBad) -> (Cluster, NodeHandle, usize) {
    let tuning = ServerTuning {
        snapshot_every_entries: 1_000,
        logs_kept_after_snapshot: 1_000,
        sync_delay: Vec::new(),
    };
    let cluster = Cluster::start(3, &tuning, known_bad, Trace::new(false));
    let client = Handle::current()
        .create_node()
        .name("client")
        .ip(client_ip())
        .build();
    wait_until("a leader", || cluster.leader().is_some()).await;
    let leader = cluster.leader().expect("a leader");
    (cluster, client, leader)
}

#[test]
fn every_node_refuses_a_record_the_leader_proposed_unchecked() {
    let mut rt = Runtime::with_seed_and_config(1, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(600));
    rt.block_on(async {
        let (cluster, client, leader) = start(KnownBad::only(Switch::UnsignedRecordAccepted)).await;
        let addr = cluster.servers[leader].public_addr.clone();
        submit(&client, &addr, grant(0), true)
            .await
            .expect("a valid record is appended");

        let bad = forged(1);
        let refused = submit(&client, &addr, bad.clone(), false)
            .await
            .expect_err("a record with a broken signature is not appended");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains("proposed it unchecked"),
            "refused at apply, not at submission: {refused:?}"
        );
        let after = submit(&client, &addr, grant(2), false)
            .await
            .expect("a valid record after it is appended");

        // Every node applied the entry, refused the same group and kept it as evidence.
        wait_until("every node to apply the record after it", || {
            cluster.servers.iter().take(3).all(|s| {
                s.shared()
                    .is_some_and(|n| n.ledger.current_progress().size > after)
            })
        })
        .await;
        let mut kept = Vec::new();
        for s in cluster.servers.iter().take(3) {
            let evidence = s
                .shared()
                .expect("running")
                .ledger
                .evidence()
                .expect("readable evidence");
            assert_eq!(evidence.len(), 1, "{}: {evidence:?}", s.name);
            let e = &evidence[0];
            assert_eq!(e.records[e.position as usize].signature, bad.signature);
            assert_eq!(e.log_id.leader_id.node_id, cluster.servers[leader].id);
            kept.push((e.log_id, e.group));
        }
        assert!(
            kept.windows(2).all(|w| w[0] == w[1]),
            "every node refused the same group: {kept:?}"
        );

        // No node stores the record.
        for s in cluster.servers.iter().take(3) {
            let ledger = &s.shared().expect("running").ledger;
            for i in 0..ledger.current_progress().size {
                let leaf = Leaf::decode(&ledger.leaf(i).expect("a leaf")).expect("decodes");
                assert_ne!(leaf.record, bad.record, "{} stores it at leaf {i}", s.name);
            }
        }

        // A checkpoint cosigned by a quorum that covers the records around it matches every
        // node's ledger: what it covers is what the nodes hold, without the record.
        let keys = cluster
            .servers
            .iter()
            .map(|s| s.signer.verifier())
            .collect();
        let policy = TrustPolicy::new(ORIGIN, 2, keys).expect("a valid policy");
        let note = checkpoint(&client, &addr, after + 1).await;
        let verified = policy
            .verify_checkpoint(&note)
            .expect("the checkpoint verifies against a majority");
        let size = verified.checkpoint.size.0;
        assert!(size > after);
        for s in cluster.servers.iter().take(3) {
            let root = s
                .shared()
                .expect("running")
                .ledger
                .root_of_prefix(size)
                .expect("the node holds the checkpoint's size");
            assert_eq!(root, verified.checkpoint.root, "{}", s.name);
        }
    });
}

#[test]
fn without_the_switch_the_leader_refuses_it_at_submission() {
    let mut rt = Runtime::with_seed_and_config(1, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(600));
    rt.block_on(async {
        let (cluster, client, leader) = start(KnownBad::default()).await;
        let addr = cluster.servers[leader].public_addr.clone();
        submit(&client, &addr, grant(0), true)
            .await
            .expect("a valid record is appended");
        let refused = submit(&client, &addr, forged(1), false)
            .await
            .expect_err("a record with a broken signature is not appended");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        let after = submit(&client, &addr, grant(2), false)
            .await
            .expect("a valid record after it is appended");
        wait_until("every node to apply the record after it", || {
            cluster.servers.iter().take(3).all(|s| {
                s.shared()
                    .is_some_and(|n| n.ledger.current_progress().size > after)
            })
        })
        .await;
        for s in cluster.servers.iter().take(3) {
            let evidence = s.shared().expect("running").ledger.evidence();
            assert_eq!(evidence.expect("readable"), Vec::new(), "{}", s.name);
        }
    });
}
