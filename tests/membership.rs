//! Membership changes without downtime. A background writer submits all along while a fourth
//! node joins as a learner — by snapshot, because the leader's log was purged — catches up to
//! the same root, is promoted to voter, and then one of the original followers is removed. Every
//! write acknowledged during all that is in the final ledger, and no gap between two
//! acknowledgements approaches an outage.

use std::time::{Duration, Instant};

use stateledger_core::note::NoteVerifier;
use stateledger_core::trust::TrustPolicy;
use stateledger_node::config::NodeConfig;
use stateledger_proto::v1 as pb;
use stateledger_tests::cli;
use stateledger_tests::cluster::{TestCluster, ORIGIN};
use stateledger_tests::records::writer_key;
use stateledger_tests::wait;
use stateledger_tests::writer::{assert_acks_present, Writer};

const SYSTEM: &str = "catalog";
/// Nodes build a snapshot after this many applied Raft entries (`[raft] snapshot_every_entries`)
/// and keep this many entries that a snapshot already covers (`logs_kept_after_snapshot`),
/// purging older ones: once the log is past both, a new node can only catch up by snapshot.
const SNAPSHOT_EVERY: u64 = 50;
const LOGS_KEPT: u64 = 50;
/// Writers that fill the log before the membership changes.
const FILLERS: u64 = 4;
/// Longest pause between two acknowledged writes that still counts as "writes continued".
const ACK_GAP_MAX: Duration = Duration::from_secs(5);

fn small_log(config: &mut NodeConfig) {
    config.raft.snapshot_every_entries = SNAPSHOT_EVERY;
    config.raft.logs_kept_after_snapshot = LOGS_KEPT;
}

async fn leader_members(cluster: &TestCluster, leader: u64) -> Vec<pb::Member> {
    cluster.status(leader).await.expect("leader status").members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_by_snapshot_is_promoted_and_another_is_removed_while_writes_continue() {
    let mut cluster = TestCluster::new(3);
    for id in 1..=3 {
        cluster.edit_config(id, small_log);
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;

    // Fill the log past what openraft keeps after a snapshot, so that it is purged.
    let fill_started = Instant::now();
    let mut fillers = Vec::new();
    for f in 0..FILLERS {
        let key = writer_key(&format!("filler-{f}"));
        cluster.grant(SYSTEM, &key).await;
        let client = cluster.client();
        fillers.push(Writer::spawn(
            client,
            key,
            SYSTEM,
            &format!("fill{f}"),
            Duration::ZERO,
        ));
    }
    let target = LOGS_KEPT + 3 * SNAPSHOT_EVERY;
    wait::until(
        "the Raft log to grow past the kept entries",
        Duration::from_secs(120),
        || async {
            let applied = cluster.status(leader).await?.applied_log_index;
            if applied >= target {
                Ok(())
            } else {
                Err(format!("applied log index {applied} of {target}"))
            }
        },
    )
    .await;
    let mut acks = Vec::new();
    for f in fillers {
        acks.extend(f.stop().await.acked);
    }
    eprintln!(
        "filled the log to index {target}+ with {} records in {:.2?}",
        acks.len(),
        fill_started.elapsed()
    );

    // The writer that runs through every change.
    let key = writer_key("steady");
    cluster.grant(SYSTEM, &key).await;
    let writer = Writer::spawn(
        cluster.client(),
        key,
        SYSTEM,
        "steady",
        Duration::from_millis(20),
    );
    let steady_started = Instant::now();
    writer
        .wait_acked_after(steady_started, 5, Duration::from_secs(20))
        .await;

    // Node 4 joins as a learner and is caught up by a snapshot.
    let node4 = cluster.add_node(4);
    cluster.edit_config(4, small_log);
    cluster.start(4);
    let admin = cluster.admin(Duration::from_secs(120));
    let added = Instant::now();
    admin
        .add_learner(pb::AddLearnerRequest {
            node_id: 4,
            name: node4.name.clone(),
            raft_addr: node4.member.cluster_addr.clone(),
            public_addr: node4.member.public_addr.clone(),
            checkpoint_key: node4.member.checkpoint_key.clone(),
        })
        .await
        .expect("node 4 is added as a learner");
    eprintln!(
        "node 4 added as a learner and caught up in {:.2?}",
        added.elapsed()
    );
    let log4 = cluster.node(4).log_text();
    assert!(
        log4.contains("receiving a snapshot"),
        "node 4 should have been caught up by a snapshot (the log was purged); its log:\n{}",
        cluster.node(4).log_tail(30)
    );
    // The learner learns that it is one from the membership entry it receives after the
    // snapshot, a moment after the leader counts it caught up.
    let learner = stateledger_tests::wait::until(
        "node 4 to call itself a learner",
        Duration::from_secs(10),
        || async {
            let s = cluster.status(4).await?;
            if s.role == "learner" {
                Ok(s)
            } else {
                Err(format!(
                    "role {:?}, applied {}",
                    s.role, s.applied_log_index
                ))
            }
        },
    )
    .await;
    eprintln!(
        "node 4 called itself a learner {:.2?} after AddLearner began",
        added.elapsed()
    );
    // AddLearner returns once the learner is within one replication batch of the leader.
    assert!(learner.tree_size > 0, "node 4 holds the snapshot's leaves");
    cluster
        .wait_converged(&[leader, 4], Duration::from_secs(30))
        .await;
    writer
        .wait_acked_after(added, 5, Duration::from_secs(20))
        .await;

    // Promotion, as an operator does it: `stateledger cluster promote` (JSON out).
    let promoted = Instant::now();
    let profile = cluster.dir().join("client.toml");
    let run = tokio::task::spawn_blocking(move || {
        cli::with_profile(
            &profile,
            &["cluster", "promote", "--id", "4", "--output", "json"],
        )
    })
    .await
    .expect("the CLI ran");
    run.expect_code(0);
    let answer = run.json();
    assert!(answer["log_index"].is_u64(), "{run}");
    assert!(answer["message"].is_string(), "{run}");
    let members = leader_members(&cluster, leader).await;
    assert!(
        members.iter().any(|m| m.node_id == 4 && m.voter),
        "node 4 is a voter: {members:?}"
    );
    wait::until(
        "node 4 to see itself as a follower",
        Duration::from_secs(10),
        || async {
            let s = cluster.status(4).await?;
            if s.role == "follower" && s.leader_id == leader {
                Ok(())
            } else {
                Err(format!("role {} leader {}", s.role, s.leader_id))
            }
        },
    )
    .await;
    writer
        .wait_acked_after(promoted, 5, Duration::from_secs(20))
        .await;

    // Removal of one of the original followers.
    let removed_id = (1..=3).find(|id| *id != leader).expect("a follower");
    let removed = Instant::now();
    admin
        .remove(removed_id)
        .await
        .expect("the follower is removed");
    let members = leader_members(&cluster, leader).await;
    assert!(
        members.iter().all(|m| m.node_id != removed_id),
        "node {removed_id} is no longer a member: {members:?}"
    );
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3, "{members:?}");
    writer
        .wait_acked_after(removed, 5, Duration::from_secs(20))
        .await;
    cluster.kill9(removed_id);
    let after_kill = Instant::now();
    writer
        .wait_acked_after(after_kill, 5, Duration::from_secs(20))
        .await;

    let log = writer.stop().await;
    let mut gap_max = Duration::ZERO;
    for pair in log.acked.windows(2) {
        gap_max = gap_max.max(pair[1].at - pair[0].at);
    }
    eprintln!(
        "steady writer: {} acknowledged, {} failed attempts, longest gap between acks {gap_max:.2?}",
        log.acked.len(),
        log.failures.len()
    );
    assert!(
        gap_max < ACK_GAP_MAX,
        "writes stalled for {gap_max:?} during the membership changes"
    );
    acks.extend(log.acked);

    // Every acknowledged write is in the final ledger, on the leader and on node 4, and the
    // remaining members hold identical trees.
    let remaining: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != removed_id)
        .collect();
    let leader = cluster
        .wait_leader(&remaining, Duration::from_secs(20))
        .await;
    cluster
        .wait_converged(&remaining, Duration::from_secs(30))
        .await;
    // Checkpoints made after the changes are cosigned by a majority of the new voters, which may
    // be node 4 and a single original node: an auditor adds node 4's key to its trust policy.
    let mut verifiers = cluster.policy().verifiers;
    verifiers.push(NoteVerifier::parse(&node4.member.checkpoint_key).expect("node 4's key"));
    let policy = TrustPolicy::new(ORIGIN, 2, verifiers).expect("a trust policy with node 4");
    let client = cluster.client_with_policy(&remaining, policy, Duration::from_secs(20));
    assert_acks_present(&cluster, leader, &client, &acks).await;
    for ack in acks.iter().step_by(7) {
        let leaf = cluster
            .entry(4, ack.index)
            .await
            .expect("node 4 serves the leaf");
        assert_eq!(leaf.leaf_hash().0, ack.leaf_hash);
    }
}
