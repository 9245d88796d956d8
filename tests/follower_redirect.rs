//! A follower asked to write answers FAILED_PRECONDITION naming the leader (message and the
//! `x-stateledger-leader` metadata) and appends nothing; the client library, given only that
//! follower's address, follows the redirect and gets the record appended once, on the leader.
//! Admin calls sent to a follower's cluster port are redirected the same way.

use std::time::Duration;

use stateledger_client::ClientError;
use stateledger_proto::v1 as pb;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::wait;

const SYSTEM: &str = "billing";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_redirects_writes_to_the_leader() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let writer = writer_key("billing-writer");
    cluster.grant(SYSTEM, &writer).await;
    let before = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(10))
        .await;

    // Raw Submit to the follower.
    let record = records::signed(records::mutation(SYSTEM, "invoice-1", 1), &writer);
    let err = cluster
        .ledger(follower)
        .submit(pb::SubmitRequest {
            records: vec![record.to_proto()],
        })
        .await
        .expect_err("a follower does not append");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let hint = err
        .metadata()
        .get(stateledger_proto::metadata::LEADER)
        .expect("the redirect names the leader in x-stateledger-leader")
        .to_str()
        .expect("ascii");
    assert_eq!(
        hint,
        cluster.public_addr(leader),
        "the hint is the leader's public address"
    );
    assert!(
        err.message().contains(&cluster.public_addr(leader)),
        "the message names the leader: {}",
        err.message()
    );
    let after = cluster.status(leader).await.expect("leader status");
    assert_eq!(
        after.tree_size, before.tree_size,
        "the refused request appended nothing"
    );

    // The client library knows only the follower and still gets the record appended, once.
    let client = cluster.client_of(&[follower], Duration::from_secs(20));
    let submitted = client
        .submit(std::slice::from_ref(&record))
        .await
        .expect("the client follows the redirect");
    assert_eq!(submitted.len(), 1);
    assert!(!submitted[0].duplicate);
    assert_eq!(
        submitted[0].index, before.tree_size,
        "appended at the end, once"
    );
    let leaf = cluster
        .entry(leader, submitted[0].index)
        .await
        .expect("the leader holds it");
    assert_eq!(leaf.record, record.bytes);
    assert_eq!(leaf.leaf_hash().0, submitted[0].leaf_hash);
    let (_, summary) = client
        .receipt(submitted[0].index, Duration::from_secs(10))
        .await
        .expect("a verified receipt");
    assert_eq!(summary.leaf_hash.0, submitted[0].leaf_hash);
    // The follower replicates it and serves it too.
    wait::until(
        "the follower to serve the new leaf",
        Duration::from_secs(10),
        || async {
            match cluster.entry(follower, submitted[0].index).await {
                Ok(l) if l == leaf => Ok(()),
                Ok(l) => panic!("the follower serves another leaf: {l:?}"),
                Err(e) => Err(format!("{:?} {}", e.code(), e.message())),
            }
        },
    )
    .await;
    // Submitting the same bytes again through the follower is a duplicate, not a second leaf.
    match client.submit(std::slice::from_ref(&record)).await {
        Err(ClientError::Duplicate { indexes }) => assert_eq!(indexes, vec![submitted[0].index]),
        other => panic!("expected a duplicate refusal, got {other:?}"),
    }

    // Admin calls: a client that knows only the follower's cluster port reaches the leader,
    // whose answer (node 99 is not a member) proves the call got there.
    let cert = cluster.admin_cert();
    let admin =
        stateledger_client::admin::AdminClient::new(stateledger_client::admin::AdminOptions {
            endpoints: vec![cluster.cluster_addr(follower)],
            ca_pem: cluster.ca_pem().to_string(),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            timeout: Duration::from_secs(10),
        })
        .expect("admin client");
    match admin.remove(99).await {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(code, tonic::Code::NotFound, "{message}");
            assert!(message.contains("not a member"), "{message}");
        }
        other => panic!("expected NOT_FOUND from the leader, got {other:?}"),
    }
}

/// A client that reaches the nodes at other addresses than the ones they advertise (NAT, or a
/// container's published ports as with deploy/compose.yaml) is redirected by a follower to an
/// address it cannot reach. It must go on to the other endpoints it knows and find the leader
/// there, instead of going round between the follower and that address until its deadline
/// (what deploy/compose-test.sh ran into after the leader's container was killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_the_client_cannot_follow_does_not_hide_the_leader() {
    let mut cluster = TestCluster::new(3);
    // Every member advertises a public address on which nothing listens.
    cluster.edit_config(1, |c| {
        for m in &mut c.cluster.initial_members {
            m.public_addr = "127.0.0.1:1".to_string();
        }
    });
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let writer = writer_key("nat-writer");
    // The follower first: its redirect names 127.0.0.1:1.
    let client = cluster.client_of(&[follower, leader], Duration::from_secs(20));
    client
        .sign_and_submit(
            vec![records::grant(SYSTEM, &writer)],
            cluster.admin_signer().signing_key(),
        )
        .await
        .expect("the grant reaches the leader through its own endpoint");
    let record = records::signed(records::mutation(SYSTEM, "invoice-nat", 1), &writer);
    let started = std::time::Instant::now();
    let submitted = client
        .submit(std::slice::from_ref(&record))
        .await
        .expect("appended through the leader's own endpoint");
    assert_eq!(submitted.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "found the leader without waiting out the deadline: {:?}",
        started.elapsed()
    );
}
