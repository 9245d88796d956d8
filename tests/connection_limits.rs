//! Idle sockets cannot take a node down (crates/stateledger-node/src/conn_limit.rs). Before the
//! limits, 20 108 TCP connections that never sent a TLS byte used up the leader's descriptors and
//! the cluster stopped committing. Here a leader with small caps gets more idle connections than
//! its caps on both ports — from one address (the per-address cap refuses them) and from many
//! (the listener cap evicts the ones that never carried a call) — and still serves real clients,
//! the cluster still commits, the refusals are counted in Status, and the TLS handshake timeout
//! closes what is left.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::wait;

const SYSTEM: &str = "orders-service";
const PUBLIC_MAX: usize = 48;
const PER_IP_MAX: usize = 12;
const CLUSTER_MAX: usize = 32;
const HANDSHAKE_MS: u64 = 3_000;

/// Opens a TCP connection from `from` to `to` that never sends a byte.
async fn idle_socket(from: Ipv4Addr, to: SocketAddr) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(to))
        .await
        .ok()?
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_idle_connections_than_the_caps_leave_the_node_serving() {
    let mut cluster = TestCluster::new(3);
    for id in 1..=3 {
        cluster.edit_config(id, |c| {
            c.connections.public_max = PUBLIC_MAX;
            c.connections.public_per_ip_max = PER_IP_MAX;
            c.connections.cluster_max = CLUSTER_MAX;
            // All three nodes of a test cluster connect from 127.0.0.1, with a few connections
            // each: well under this.
            c.connections.cluster_per_ip_max = PER_IP_MAX;
            c.connections.tls_handshake_timeout_ms = HANDSHAKE_MS;
        });
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("writer");
    cluster.grant(SYSTEM, &writer).await;
    let public: SocketAddr = cluster.public_addr(leader).parse().expect("an address");
    let cluster_port: SocketAddr = cluster.cluster_addr(leader).parse().expect("an address");
    let follower = leader % 3 + 1;
    let follower_port: SocketAddr = cluster.cluster_addr(follower).parse().expect("an address");

    // From one address: four times the per-address cap, on each port.
    let mut held = Vec::new();
    let one = Ipv4Addr::new(127, 0, 0, 2);
    for to in [public, cluster_port] {
        for _ in 0..4 * PER_IP_MAX {
            held.extend(idle_socket(one, to).await);
        }
    }
    // From many addresses: three times the listener cap on the public port, twice on the
    // cluster port (each address below its own cap).
    let mut n = 0u32;
    for (to, count) in [
        (public, 3 * PUBLIC_MAX),
        (cluster_port, 2 * CLUSTER_MAX),
        // A follower's cluster port too: the leader's replication reaches it all the same.
        (follower_port, 2 * CLUSTER_MAX),
    ] {
        for _ in 0..count {
            n += 1;
            let from = Ipv4Addr::new(127, 0, 2 + (n / 200) as u8, 1 + (n % 200) as u8);
            held.extend(idle_socket(from, to).await);
        }
    }
    let opened = held.len();
    eprintln!("opened {opened} idle TCP connections to node {leader}");
    assert!(
        opened >= 8 * PER_IP_MAX + 3 * PUBLIC_MAX + 4 * CLUSTER_MAX,
        "the kernel accepts them all (the node closes what it does not take): {opened}"
    );

    // Real clients are still served, and the cluster still commits, while the idle sockets are
    // held open by this test.
    let started = Instant::now();
    let client = cluster.client();
    for i in 0..10u64 {
        let record = records::mutation(SYSTEM, &format!("evt-{i}"), i);
        client
            .sign_and_submit(vec![record], writer.signing_key())
            .await
            .expect("a real client's write commits");
    }
    let write_time = started.elapsed();
    eprintln!("10 writes through the loaded leader took {write_time:?}");
    let converged = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(20))
        .await;
    assert_eq!(converged.tree_size, 11, "the grant and ten records");

    let status = cluster.status(leader).await.expect("the leader answers");
    let security = status.security.expect("counters");
    eprintln!("leader's counters with the idle sockets held: {security:?}");
    assert!(
        security.connections_refused >= 2 * 3 * PER_IP_MAX as u64,
        "connections over the per-address cap were refused: {security:?}"
    );
    assert!(
        security.connections_evicted > 0,
        "a full listener made room by closing idle connections: {security:?}"
    );
    assert!(
        security.public_connections <= PUBLIC_MAX as u64,
        "{security:?}"
    );
    assert!(
        security.cluster_connections <= CLUSTER_MAX as u64,
        "{security:?}"
    );

    // The handshake timeout closes every idle socket the node still holds.
    let drained = wait::until(
        "the idle sockets closed by the handshake timeout",
        Duration::from_millis(HANDSHAKE_MS * 4),
        || async {
            let s = cluster
                .status(leader)
                .await?
                .security
                .ok_or_else(|| "no counters".to_string())?;
            // What is left: the test's own client channel and the other nodes' connections.
            if s.public_connections <= 4 && s.cluster_connections <= 12 {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    eprintln!("after the handshake timeout: {drained:?}");
    drop(held);
    let log = std::fs::read_to_string(cluster.dir().join(format!("node-{leader}.log")))
        .expect("the node's log");
    assert!(
        log.contains("connection refused"),
        "refusals are logged (WARN)"
    );
}
