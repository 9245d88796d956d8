//! Each certificate may do only what its role allows (docs/SECURITY.md, crates/stateledger-node/
//! src/grpc/authz.rs): on the cluster port, Raft messages only from member nodes, each only as
//! itself; cosign requests only from the leader; membership changes only from admins. Every
//! refusal is PERMISSION_DENIED naming the certificate's identity, and counted in Status.
//!
//! The first test is the reproduction from the issue: the admin certificate sent a hand-built
//! AppendEntries at term + 50, which moved the cluster's term and changed the leader.

use std::time::Duration;

use openraft::raft::AppendEntriesRequest;
use openraft::Vote;
use stateledger_node::raft::{codec, TypeConfig};
use stateledger_proto::v1 as pb;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::{rpc, wait};

/// A heartbeat that says it comes from `leader` at `term`.
fn heartbeat(term: u64, leader: u64) -> Vec<u8> {
    let rpc: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    codec::encode("append entries", &rpc).expect("encodes")
}

fn vote_request(term: u64, candidate: u64) -> Vec<u8> {
    let rpc = openraft::raft::VoteRequest::<u64> {
        vote: Vote::new(term, candidate),
        last_log_id: None,
    };
    codec::encode("vote", &rpc).expect("encodes")
}

fn assert_denied(err: &tonic::Status, identity: &str, words: &[&str]) {
    assert_eq!(
        err.code(),
        tonic::Code::PermissionDenied,
        "refused with PERMISSION_DENIED: {err:?}"
    );
    for w in std::iter::once(&identity).chain(words) {
        assert!(
            err.message().contains(w),
            "the refusal names {w:?}: {}",
            err.message()
        );
    }
}

async fn started(nodes: u64) -> (TestCluster, u64, pb::StatusResponse) {
    let mut cluster = TestCluster::new(nodes);
    cluster.start_all();
    let ids: Vec<u64> = (1..=nodes).collect();
    let leader = cluster.wait_leader(&ids, Duration::from_secs(30)).await;
    let status = cluster.status(leader).await.expect("status");
    (cluster, leader, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_admin_certificates_cannot_send_raft_messages() {
    let (cluster, leader, before) = started(3).await;
    let follower = leader % 3 + 1;
    let target = cluster.cluster_addr(follower);
    for (cert, identity) in [
        (cluster.admin_cert(), "stateledger:admin:admin"),
        (cluster.client_cert(), "stateledger:client:client"),
    ] {
        let mut client = rpc::cluster(cluster.ca_pem(), &target, Some(&cert));
        let err = client
            .append_entries(pb::RaftPayload {
                data: heartbeat(before.term + 50, leader),
            })
            .await
            .expect_err("refused");
        assert_denied(
            &err,
            identity,
            &["AppendEntries", "only a node certificate"],
        );
        let err = client
            .vote(pb::RaftPayload {
                data: vote_request(before.term + 50, leader),
            })
            .await
            .expect_err("refused");
        assert_denied(&err, identity, &["Vote"]);
        let err = client
            .cosign(pb::CosignRequest {
                checkpoint: "x\n".into(),
            })
            .await
            .expect_err("refused");
        assert_denied(&err, identity, &["Cosign"]);
        let err = client
            .health(pb::HealthRequest {})
            .await
            .expect_err("refused");
        assert_denied(&err, identity, &["Health"]);
    }

    // Nothing moved: same term, same leader.
    let mut cluster = cluster;
    let after_leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await;
    let after = cluster.status(follower).await.expect("status");
    assert_eq!(after_leader, leader, "the leader did not change");
    assert_eq!(after.term, before.term, "the term did not move");
    let security = after.security.expect("status has security counters");
    assert_eq!(security.permission_denied, 8, "{security:?}");
    assert!(
        security
            .last_permission_denied
            .contains("stateledger:client:client"),
        "{security:?}"
    );
    // The other nodes refused nothing.
    let other = cluster
        .status(leader)
        .await
        .expect("status")
        .security
        .expect("counters");
    assert_eq!(other.permission_denied, 0, "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_cannot_change_the_membership() {
    let (cluster, leader, _) = started(3).await;
    let other = leader % 3 + 1;
    let mut client = rpc::cluster(
        cluster.ca_pem(),
        &cluster.cluster_addr(leader),
        Some(&cluster.node_cert(other)),
    );
    let identity = format!("stateledger:node:{other}");
    let err = client
        .remove(pb::MemberRequest { node_id: other })
        .await
        .expect_err("refused");
    assert_denied(&err, &identity, &["Remove", "only an admin certificate"]);
    let err = client
        .promote(pb::MemberRequest { node_id: other })
        .await
        .expect_err("refused");
    assert_denied(&err, &identity, &["Promote"]);
    let err = client
        .add_learner(pb::AddLearnerRequest {
            node_id: 9,
            name: "node-9".into(),
            raft_addr: "127.0.0.1:1".into(),
            public_addr: "127.0.0.1:2".into(),
            checkpoint_key: String::new(),
        })
        .await
        .expect_err("refused");
    assert_denied(&err, &identity, &["AddLearner"]);

    // The leader's own certificate is no admin either.
    let err = rpc::cluster(
        cluster.ca_pem(),
        &cluster.cluster_addr(leader),
        Some(&cluster.node_cert(leader)),
    )
    .remove(pb::MemberRequest { node_id: other })
    .await
    .expect_err("refused");
    assert_denied(&err, &format!("stateledger:node:{leader}"), &["Remove"]);

    let status = cluster.status(leader).await.expect("status");
    assert_eq!(status.members.len(), 3, "the membership is unchanged");

    // Control: the admin certificate may (the call reaches the membership logic).
    let err = rpc::cluster(
        cluster.ca_pem(),
        &cluster.cluster_addr(leader),
        Some(&cluster.admin_cert()),
    )
    .remove(pb::MemberRequest { node_id: 99 })
    .await
    .expect_err("node 99 is not a member");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_speak_or_cosign_as_another() {
    let (mut cluster, leader, before) = started(3).await;
    let mut followers = (1..=3).filter(|id| *id != leader);
    let (a, b) = (
        followers.next().expect("two followers"),
        followers.next().expect("two followers"),
    );
    let as_a = |cluster: &TestCluster, to: u64| {
        rpc::cluster(
            cluster.ca_pem(),
            &cluster.cluster_addr(to),
            Some(&cluster.node_cert(a)),
        )
    };
    let identity = format!("stateledger:node:{a}");

    // Node a claims to be the leader in a heartbeat to node b, at a higher term.
    let err = as_a(&cluster, b)
        .append_entries(pb::RaftPayload {
            data: heartbeat(before.term + 50, leader),
        })
        .await
        .expect_err("refused");
    assert_denied(
        &err,
        &identity,
        &[&format!("comes from node {leader}"), "only as itself"],
    );
    // ... or asks for votes as the leader.
    let err = as_a(&cluster, b)
        .vote(pb::RaftPayload {
            data: vote_request(before.term + 50, leader),
        })
        .await
        .expect_err("refused");
    assert_denied(&err, &identity, &["Vote", "only as itself"]);

    // Node a, not the leader, asks node b to cosign a checkpoint.
    let checkpoint = stateledger_core::checkpoint::Checkpoint {
        origin: stateledger_tests::cluster::ORIGIN.to_string(),
        size: stateledger_core::merkle::TreeSize(before.tree_size),
        root: stateledger_core::hash::Hash(before.root.clone().try_into().expect("32 bytes")),
        time: stateledger_core::ledger_time::LedgerTime(before.ledger_time),
        heads_root: stateledger_core::hash::Hash([0; 32]),
    };
    let text = checkpoint.to_text();
    let err = as_a(&cluster, b)
        .cosign(pb::CosignRequest {
            checkpoint: text.clone(),
        })
        .await
        .expect_err("refused");
    assert_denied(
        &err,
        &identity,
        &[
            "Cosign",
            &format!("only the leader may, and this node follows node {leader}"),
        ],
    );

    // Control: the leader's certificate reaches the cosigning logic (which cosigns this
    // checkpoint of the empty ledger if node b computed the same; either way, who asked is not
    // the question).
    let answer = rpc::cluster(
        cluster.ca_pem(),
        &cluster.cluster_addr(b),
        Some(&cluster.node_cert(leader)),
    )
    .cosign(pb::CosignRequest { checkpoint: text })
    .await;
    if let Err(err) = answer {
        assert_ne!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    }

    let after = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await;
    assert_eq!(after, leader);
    let status = cluster.status(b).await.expect("status");
    assert_eq!(status.term, before.term, "the term did not move");
    assert_eq!(
        status.security.expect("counters").permission_denied,
        3,
        "node b counted the three refusals"
    );
}

/// A node's certificate cannot answer for another node: node V is stopped and an impostor
/// holding node O's certificate (valid for the same host, signed by the cluster CA) listens on
/// V's cluster address. The leader keeps dialing V, and refuses every handshake: the server's
/// certificate does not name node V. The impostor never hears a Raft message (before the check,
/// a node with two addresses could vote twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_certificate_cannot_answer_at_a_nodes_address() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let (mut cluster, leader, _) = started(3).await;
    let victim = leader % 3 + 1;
    let other = victim % 3 + 1;
    assert!(other != leader && other != victim);
    let cert = cluster.node_cert(other);
    let addr = cluster.cluster_addr(victim);
    cluster.kill9(victim);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("chain"),
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key"),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = wait::until(
        "node V's port to be free",
        Duration::from_secs(10),
        || async {
            tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let refused = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let impostor = {
        let (refused, completed) = (refused.clone(), completed.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                match acceptor.accept(tcp).await {
                    Ok(_) => completed.fetch_add(1, Ordering::SeqCst),
                    Err(_) => refused.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };
    wait::until(
        "the leader to dial node V's address three times",
        Duration::from_secs(30),
        || async {
            let (r, c) = (
                refused.load(Ordering::SeqCst),
                completed.load(Ordering::SeqCst),
            );
            if r + c >= 3 {
                Ok(())
            } else {
                Err(format!("{r} handshakes refused, {c} completed"))
            }
        },
    )
    .await;
    impostor.abort();
    assert_eq!(
        completed.load(Ordering::SeqCst),
        0,
        "a handshake with node {other}'s certificate at node {victim}'s address completed"
    );
    // The cluster goes on with the two real nodes.
    cluster
        .wait_leader(&[leader, other], Duration::from_secs(30))
        .await;
}

/// With `--log-format json` (here through STATELEDGER_LOG_FORMAT) a node logs one JSON object per
/// line, and an admin's membership change names the certificate identity that asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_logged_as_json_with_the_admin_who_asked() {
    let mut cluster = TestCluster::new(3);
    let node4 = cluster.add_node(4);
    for id in 1..=4 {
        cluster
            .node(id)
            .env
            .push(("STATELEDGER_LOG_FORMAT".into(), "json".into()));
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    cluster
        .admin(Duration::from_secs(60))
        .add_learner(pb::AddLearnerRequest {
            node_id: 4,
            name: node4.name.clone(),
            raft_addr: node4.member.cluster_addr.clone(),
            public_addr: node4.member.public_addr.clone(),
            checkpoint_key: node4.member.checkpoint_key.clone(),
        })
        .await
        .expect("node 4 is added as a learner");
    let log = cluster.node(leader).log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    let added = lines
        .iter()
        .find(|l| l["fields"]["message"] == "admin: node added as a learner")
        .unwrap_or_else(|| panic!("no audit line in the leader's log:\n{log}"));
    assert_eq!(added["fields"]["by"], "stateledger:admin:admin", "{added}");
    assert_eq!(added["fields"]["node_id"], 4, "{added}");
}
