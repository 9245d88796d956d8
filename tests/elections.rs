//! Elections under partitions (each node its own host; iptables rules cut them apart, so this
//! needs root):
//!
//! - a leader cut off from every follower stops taking writes within two election timeouts,
//!   answering UNAVAILABLE with the other members' addresses (CheckQuorum), and says in its status
//!   that it has no quorum; the others elect a new leader and the client library's writes go on;
//! - a follower cut off for many election timeouts does not raise its term (PreVote), and when it
//!   comes back the leader and the term stay as they were.

use std::time::{Duration, Instant};

use stateledger_node::config::RaftSection;
use stateledger_proto::v1 as pb;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::partition::Partition;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::wait;

const SYSTEM: &str = "elections";

/// Longer election timeouts than the default, so that "within two election timeouts" leaves
/// room for a loaded machine.
fn raft() -> RaftSection {
    RaftSection {
        heartbeat_ms: 100,
        election_timeout_min_ms: 1_000,
        election_timeout_max_ms: 2_000,
        ..RaftSection::default()
    }
}

async fn cluster() -> (TestCluster, u64) {
    let mut cluster = TestCluster::with_hosts(3);
    for id in 1..=3 {
        cluster.edit_config(id, |c| c.raft = raft());
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    (cluster, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_stops_taking_writes_and_names_the_others() {
    let (cluster, old) = cluster().await;
    let writer = writer_key("e1");
    cluster.grant(SYSTEM, &writer).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let partition = Partition::new();
    partition.isolate(
        &cluster.cluster_endpoint(old),
        &others
            .iter()
            .map(|id| cluster.cluster_endpoint(*id))
            .collect::<Vec<_>>(),
    );
    let cut = Instant::now();

    // Writes straight to the old leader: refused, naming the other members, within two
    // election timeouts.
    let limit = Duration::from_millis(2 * raft().election_timeout_max_ms);
    let mut n = 0;
    let refusal = loop {
        n += 1;
        let record = records::signed(
            records::mutation(SYSTEM, &format!("direct-{n}"), n),
            &writer,
        );
        let request = pb::SubmitRequest {
            records: vec![record.to_proto()],
        };
        let mut direct = cluster.ledger(old);
        let answer = tokio::time::timeout(Duration::from_millis(500), direct.submit(request)).await;
        match answer {
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => break status,
            other => {
                assert!(
                    cut.elapsed() < limit + Duration::from_secs(5),
                    "the isolated leader still takes writes {:?} after the cut: {other:?}",
                    cut.elapsed()
                );
            }
        }
    };
    let refused_after = cut.elapsed();
    eprintln!(
        "the isolated leader refused writes {refused_after:?} after the cut: {}",
        refusal.message()
    );
    assert!(
        refused_after <= limit,
        "refused only after {refused_after:?} (two election timeouts: {limit:?})"
    );
    assert!(
        refusal.message().contains("quorum"),
        "{}",
        refusal.message()
    );
    let try_others = refusal
        .metadata()
        .get(stateledger_proto::metadata::TRY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    for id in &others {
        assert!(
            try_others.contains(&cluster.public_addr(*id)),
            "the refusal names node {id}: {try_others:?}"
        );
    }
    let status = cluster.status(old).await.expect("the old leader answers");
    assert_eq!(status.role, "leader-without-quorum", "{status:?}");

    // The others elect a leader; the client library, which knows every node, keeps writing.
    let new = wait::until(
        "a new leader among the others",
        Duration::from_secs(30),
        || async {
            let s = cluster.status(others[0]).await?;
            if s.leader_id != 0 && s.leader_id != old && s.role != "candidate" {
                Ok(s.leader_id)
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    let client = cluster.client_of(&[old, others[0], others[1]], Duration::from_secs(30));
    let record = records::signed(records::mutation(SYSTEM, "via-client", 1), &writer);
    client
        .submit(&[record])
        .await
        .expect("the client library finds the new leader");
    eprintln!("node {new} leads; the isolated node {old} refused writes meanwhile");

    // Healed: the old leader follows the new one and catches up.
    partition.heal();
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let s = cluster.status(old).await.expect("answers");
    assert_eq!(s.leader_id, new, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_does_not_raise_its_term_or_depose_the_leader() {
    let (cluster, leader) = cluster().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let before = cluster.status(follower).await.expect("answers");
    let partition = Partition::new();
    partition.isolate(
        &cluster.cluster_endpoint(follower),
        &(1..=3)
            .filter(|id| *id != follower)
            .map(|id| cluster.cluster_endpoint(id))
            .collect::<Vec<_>>(),
    );
    // Many election timeouts: without PreVote a node alone raises its term at each one.
    let alone = Duration::from_millis(6 * raft().election_timeout_max_ms);
    let started = Instant::now();
    while started.elapsed() < alone {
        let s = cluster
            .status(follower)
            .await
            .expect("the cut-off follower answers");
        assert_eq!(
            s.term,
            before.term,
            "the cut-off follower raised its term after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    partition.heal();
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
    for id in 1..=3 {
        let s = cluster.status(id).await.expect("answers");
        assert_eq!(s.leader_id, leader, "node {id}: the leader changed: {s:?}");
        assert_eq!(s.term, before.term, "node {id}: the term changed: {s:?}");
    }
}
