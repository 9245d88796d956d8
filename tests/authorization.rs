//! Who may do what. The cluster port (Raft, cosigning, admin) accepts only peers presenting a
//! certificate from the cluster CA: without a client certificate, or with one from another CA,
//! the connection fails before any Raft message is handled, while the same call with a node's
//! certificate reaches the service (which certificate may make which call: cert_roles.rs). On the public port, only writers granted for
//! a system (by a policy record signed by an admin key) may append for it; a refusal is
//! PERMISSION_DENIED and appends nothing.

use std::time::Duration;

use stateledger_core::record::{pb as rpb, Body};
use stateledger_node::tls::dev_ca::DevCa;
use stateledger_proto::v1 as pb;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::rpc::{self, ClientCert};

/// Not a valid postcard-encoded Raft message: a service that gets it answers INVALID_ARGUMENT.
const GARBAGE: &[u8] = &[0xff, 0xff, 0xff, 0xff];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_port_refuses_peers_without_a_cluster_ca_certificate() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let target = cluster.cluster_addr(leader);

    // Control: with a node's certificate (cluster CA) the call reaches the Raft service, which
    // refuses the garbage payload itself.
    let node = cluster.node_cert(leader % 3 + 1);
    let err = rpc::cluster(cluster.ca_pem(), &target, Some(&node))
        .append_entries(pb::RaftPayload {
            data: GARBAGE.to_vec(),
        })
        .await
        .expect_err("garbage is refused");
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "with a cluster certificate the service answers: {err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_none(),
        "a service's answer carries no transport error: {err:?}"
    );

    // No client certificate: the TLS handshake fails, the service never sees the message.
    let other_ca = DevCa::generate().expect("a second CA");
    let (cert_pem, key_pem) = other_ca
        .issue(
            &stateledger_node::tls::identity::PeerIdentity::Node(9),
            "node-9",
            &["127.0.0.1".to_string(), "localhost".to_string()],
        )
        .expect("a certificate from the other CA");
    let foreign = ClientCert { cert_pem, key_pem };
    for (what, cert) in [
        ("no client certificate", None),
        ("a certificate from another CA", Some(&foreign)),
    ] {
        let mut client = rpc::cluster(cluster.ca_pem(), &target, cert);
        let append = client
            .append_entries(pb::RaftPayload {
                data: GARBAGE.to_vec(),
            })
            .await
            .expect_err("refused");
        let vote = client
            .vote(pb::RaftPayload {
                data: GARBAGE.to_vec(),
            })
            .await
            .expect_err("refused");
        let admin_call = client
            .remove(pb::MemberRequest { node_id: 2 })
            .await
            .expect_err("refused");
        // The server ends the handshake with a TLS alert (CertificateRequired without a
        // certificate, DecryptError for a foreign CA's); whether the client reports the alert or
        // only the closed connection is a race, but either way the error comes from the
        // transport, never from the service.
        for err in [append, vote, admin_call] {
            assert!(
                std::error::Error::source(&err).is_some(),
                "with {what} the failure is a transport error, not a service answer: {err:?}"
            );
            let causes = error_chain(&err);
            eprintln!("cluster port with {what}: {:?}: {causes}", err.code());
            assert!(
                matches!(
                    err.code(),
                    tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Cancelled
                ),
                "with {what} the call must fail in the transport, not reach the service: {err:?}"
            );
        }
    }

    // The cluster still has its three members and an agreed leader.
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await;
    let status = cluster.status(leader).await.expect("status");
    assert_eq!(status.members.len(), 3);
}

/// A status with its chain of causes (the TLS alert, when there is one).
fn error_chain(status: &tonic::Status) -> String {
    let mut out = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_without_a_grant_is_refused_and_nothing_is_appended() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let granted = writer_key("granted");
    let stranger = writer_key("stranger");
    cluster.grant("orders", &granted).await;
    let mut api = cluster.ledger(leader);
    let size = || async { cluster.status(leader).await.expect("status").tree_size };
    let before = size().await;

    let refusing_api = api.clone();
    let refuse = move |request: pb::SubmitRequest, what: &'static str| {
        let mut api = refusing_api.clone();
        async move {
            let err = api.submit(request).await.expect_err(what);
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{what}: {err:?}");
            assert!(
                err.message().contains("nothing was appended"),
                "{what}: {}",
                err.message()
            );
            err
        }
    };
    // A key nobody granted.
    let err = refuse(
        pb::SubmitRequest {
            records: vec![
                records::signed(records::mutation("orders", "o-1", 1), &stranger).to_proto(),
            ],
        },
        "an ungranted writer",
    )
    .await;
    assert!(err.message().starts_with("record 0"), "{}", err.message());
    // A granted key writing for another system.
    refuse(
        pb::SubmitRequest {
            records: vec![
                records::signed(records::mutation("payments", "p-1", 1), &granted).to_proto(),
            ],
        },
        "a writer granted for another system",
    )
    .await;
    // One ungranted record spoils the request: the granted one is not appended either.
    let good = records::signed(records::mutation("orders", "o-2", 2), &granted);
    let err = refuse(
        pb::SubmitRequest {
            records: vec![
                good.to_proto(),
                records::signed(records::mutation("orders", "o-3", 3), &stranger).to_proto(),
            ],
        },
        "a request with one ungranted record",
    )
    .await;
    assert!(err.message().starts_with("record 1"), "{}", err.message());
    // A writer cannot grant itself: policy records need an admin key.
    refuse(
        pb::SubmitRequest {
            records: vec![
                records::signed(records::grant("orders", &stranger), &stranger).to_proto(),
            ],
        },
        "a self-signed grant",
    )
    .await;
    assert_eq!(size().await, before, "refused requests appended nothing");

    // The granted record alone is accepted (it was not appended before), and after a revocation
    // the same writer is refused.
    let ok = api
        .submit(pb::SubmitRequest {
            records: vec![good.to_proto()],
        })
        .await
        .expect("a granted writer appends")
        .into_inner();
    assert_eq!(ok.results[0].leaf_index, before);
    let revoke = rpb::Record {
        body: Some(Body::Policy(rpb::Policy {
            change: Some(rpb::policy::Change::Revoke(rpb::WriterGrant {
                writer_key: granted.verifier().key.to_bytes().to_vec(),
                writer_name: granted.name.clone(),
            })),
        })),
        ..records::grant("orders", &granted)
    };
    api.submit(pb::SubmitRequest {
        records: vec![records::signed(revoke, &cluster.admin_signer()).to_proto()],
    })
    .await
    .expect("the admin revokes");
    let revoked_at = size().await;
    refuse(
        pb::SubmitRequest {
            records: vec![
                records::signed(records::mutation("orders", "o-4", 4), &granted).to_proto(),
            ],
        },
        "a revoked writer",
    )
    .await;
    assert_eq!(size().await, revoked_at);
}
