//! `stateledger certs` makes a PKI a cluster runs on: a 3-node cluster whose CA, node, admin and
//! client certificates all come from it elects, takes a write and verifies it; keys are mode
//! 0600; each certificate names its identity; existing files and a CA key that does not match
//! `ca.pem` are refused with exit status 2.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use stateledger_node::tls::identity::PeerIdentity;
use stateledger_tests::cli;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};

fn identity_of(pem_file: &std::path::Path) -> PeerIdentity {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_file(pem_file).expect("a certificate");
    PeerIdentity::from_cert_der(&der).expect("an identity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_on_certificates_from_stateledger_certs() {
    let mut cluster = TestCluster::new(3);
    let dir = cluster.dir();
    let d = dir.to_str().expect("UTF-8");
    // Replace everything `stateledger dev` issued.
    let ca = cli::run(&["certs", "ca", "--out", d, "--force", "--output", "json"]);
    ca.expect_code(0);
    assert!(ca.json()["not_after"].as_str().is_some(), "{ca}");
    for id in 1..=3 {
        cli::run(&[
            "certs",
            "node",
            "--ca",
            d,
            "--id",
            &id.to_string(),
            "--host",
            "127.0.0.1",
            "--host",
            "localhost",
            "--out",
            d,
            "--force",
        ])
        .expect_code(0);
    }
    for role in ["admin", "client"] {
        cli::run(&[
            "certs", role, "--ca", d, "--name", role, "--out", d, "--force",
        ])
        .expect_code(0);
    }
    for key in [
        "ca.key.pem",
        "node-1.key.pem",
        "admin.key.pem",
        "client.key.pem",
    ] {
        let mode = std::fs::metadata(dir.join(key))
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key} is private");
    }
    assert_eq!(identity_of(&dir.join("node-2.pem")), PeerIdentity::Node(2));
    assert_eq!(
        identity_of(&dir.join("admin.pem")),
        PeerIdentity::Admin("admin".into())
    );
    cluster.reread_ca();

    cluster.start_all();
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("w");
    cluster.grant("pki", &writer).await;
    let appended = cluster
        .client_of(&[1, 2, 3], Duration::from_secs(20))
        .submit(&[records::signed(records::mutation("pki", "one", 1), &writer)])
        .await
        .expect("appended and verified on a cluster with the new PKI");
    assert_eq!(appended.len(), 1);
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;

    // Nothing is overwritten without --force.
    let again = cli::run(&[
        "certs",
        "node",
        "--ca",
        d,
        "--id",
        "1",
        "--host",
        "127.0.0.1",
        "--out",
        d,
    ]);
    again.expect_code(2);
    assert!(again.stderr.contains("already exists"), "{again}");
    // A CA key that is not ca.pem's would issue certificates that chain to nothing.
    let other = cluster.scratch("other-ca");
    let o = other.to_str().expect("UTF-8");
    cli::run(&["certs", "ca", "--out", o]).expect_code(0);
    std::fs::copy(dir.join("ca.pem"), other.join("ca.pem")).expect("copied");
    let mixed = cli::run(&["certs", "client", "--ca", o, "--name", "x", "--out", o]);
    mixed.expect_code(2);
    assert!(mixed.stderr.contains("is not the key of"), "{mixed}");
    assert!(!other.join("x.pem").exists(), "nothing issued");
    // Bad names are refused before anything is written.
    let bad = cli::run(&["certs", "admin", "--ca", d, "--name", "../x", "--out", d]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("--name"), "{bad}");
}

/// A node given another node's certificate refuses to start (exit status 2, naming both
/// identities) before it creates its data directory.
#[test]
fn a_node_with_another_nodes_certificate_does_not_start() {
    let mut cluster = TestCluster::new(3);
    let dir = cluster.dir();
    for ext in ["pem", "key.pem"] {
        std::fs::copy(
            dir.join(format!("node-2.{ext}")),
            dir.join(format!("node-1.{ext}")),
        )
        .expect("swapped");
    }
    let data = cluster.data_dir(1);
    assert!(!data.exists(), "a fresh node has no data directory yet");
    cluster.start(1);
    let status = cluster
        .node(1)
        .wait_exit(Duration::from_secs(30))
        .expect("node 1 exits");
    assert_eq!(status.code(), Some(2), "{}", cluster.node(1).log_tail(20));
    let log = cluster.node(1).log_tail(20);
    assert!(
        log.contains("names stateledger:node:2, not this node (stateledger:node:1)"),
        "{log}"
    );
    assert!(!data.exists(), "nothing written to {}", data.display());
}
