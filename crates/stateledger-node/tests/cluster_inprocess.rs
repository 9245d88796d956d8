//! Three real nodes in one process: sled on disk, TLS on loopback, Raft, cosigned checkpoints.
//! Submits records and verifies receipts offline against the trust policy.
#![cfg(not(madsim))]

use std::time::Duration;

use stateledger_core::documents::Receipt;
use stateledger_core::hash::Hash;
use stateledger_core::leaf::Leaf;
use stateledger_core::note::NoteSigner;
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_core::trust::TrustPolicy;
use stateledger_node::config::NodeConfig;
use stateledger_node::node::{start, NodeHandle, NodeParts};
use stateledger_proto::v1::ledger_client::LedgerClient;
use tonic::transport::{Channel, Endpoint};

fn free_base_port() -> u16 {
    // Ports base+1..=base+3 and base+101..=base+103 must be free; pick a random base and check.
    loop {
        let base = 20_000 + (rand::random::<u16>() % 20_000);
        let ok = (1..=3).all(|i| {
            std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + 100 + i)).is_ok()
        });
        if ok {
            return base;
        }
    }
}

async fn client(ca_pem: &str, addr: std::net::SocketAddr) -> LedgerClient<Channel> {
    let tls = stateledger_node::tls::public_client(ca_pem, "127.0.0.1");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .expect("valid uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connects");
    LedgerClient::new(channel)
}

fn record(system: &str, n: u64, body: Body) -> pb::Record {
    pb::Record {
        system: system.into(),
        scope: "test".into(),
        observed_at_unix_nanos: 1_700_000_000_000_000_000 + n,
        body: Some(body),
    }
}

fn mutation(n: u64) -> Body {
    Body::Mutation(pb::Mutation {
        kind: "order_created".into(),
        id: format!("evt-{n}"),
        source: "kafka:orders/0".into(),
        sequence: n,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_commit_and_prove() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_base_port();
    let cluster = stateledger_node::dev::create(dir.path(), 3, base, "stateledger.test/inprocess")
        .expect("dev cluster");
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for path in &cluster.configs {
        let config = NodeConfig::load(path).expect("config");
        let parts = NodeParts::load(config).expect("parts");
        nodes.push(start(parts).await.expect("node starts"));
    }

    // Wait for a leader with genesis applied.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(n) = nodes
            .iter()
            .find(|n| n.shared.is_leader() && n.shared.ledger.origin().is_some())
        {
            break n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader with genesis within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ca = std::fs::read_to_string(&cluster.ca_cert).expect("ca");
    let mut c = client(&ca, leader.public_addr).await;

    let admin = NoteSigner::parse(&std::fs::read_to_string(&cluster.admin_key).expect("admin key"))
        .expect("admin key parses");
    let writer = NoteSigner::from_seed("writer", &[42u8; 32]).expect("writer");
    let grant = record(
        "orders-service",
        0,
        Body::Policy(pb::Policy {
            change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                writer_key: writer.verifier().key.to_bytes().to_vec(),
                writer_name: "writer".into(),
            })),
        }),
    );
    let signed = CheckedRecord::sign(grant, admin.signing_key()).expect("valid");
    c.submit(pb::SubmitRequest {
        records: vec![signed.to_proto()],
    })
    .await
    .expect("grant accepted");

    // An unauthorized writer is refused.
    let stranger = NoteSigner::from_seed("stranger", &[7u8; 32]).expect("stranger");
    let bad = CheckedRecord::sign(
        record("orders-service", 99, mutation(99)),
        stranger.signing_key(),
    )
    .expect("valid");
    let err = c
        .submit(pb::SubmitRequest {
            records: vec![bad.to_proto()],
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    let mut indexes = Vec::new();
    for n in 1..=20u64 {
        let r = CheckedRecord::sign(
            record("orders-service", n, mutation(n)),
            writer.signing_key(),
        )
        .expect("valid");
        let resp = c
            .submit(pb::SubmitRequest {
                records: vec![r.to_proto()],
            })
            .await
            .expect("accepted");
        indexes.push(resp.into_inner().results[0].leaf_index);
    }

    // A duplicate is refused with ALREADY_EXISTS.
    let again = CheckedRecord::sign(
        record("orders-service", 1, mutation(1)),
        writer.signing_key(),
    )
    .expect("valid");
    let err = c
        .submit(pb::SubmitRequest {
            records: vec![again.to_proto()],
        })
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");

    let policy = TrustPolicy::from_json(&std::fs::read(&cluster.trust_policy).expect("policy"))
        .expect("policy parses");
    for &i in &indexes {
        let r = c
            .get_receipt(pb::GetReceiptRequest {
                leaf_index: i,
                wait_ms: 5000,
            })
            .await
            .expect("receipt")
            .into_inner();
        let leaf = Leaf::decode(&r.leaf).expect("leaf");
        let receipt = Receipt::new(
            &leaf,
            r.inclusion_proof
                .iter()
                .map(|h| Hash::from_slice(h).expect("32 bytes"))
                .collect(),
            r.checkpoint,
        );
        let summary = receipt.verify(&policy).expect("receipt verifies offline");
        assert!(summary.checkpoint.signers.len() >= 2);
    }

    // Every node converges to the same root.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sizes: Vec<u64> = nodes
            .iter()
            .map(|n| n.shared.ledger.current_progress().size)
            .collect();
        let roots: Vec<Hash> = nodes.iter().map(|n| n.shared.ledger.root()).collect();
        if sizes.iter().all(|s| *s == sizes[0]) && roots.iter().all(|r| *r == roots[0]) {
            assert_eq!(sizes[0], 21);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not converge: {sizes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}
