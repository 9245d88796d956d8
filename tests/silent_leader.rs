//! A leader that goes silent — stopped, not dead — costs a client's call a few seconds, not its
//! deadline: the client library's HTTP/2 pings find the connection dead and it moves on.
//! (Its own test binary: a stopped process is best kept away from other tests' clusters.)

use std::time::{Duration, Instant};

use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};

const SYSTEM: &str = "payments";

/// A leader that goes silent (SIGSTOP: its sockets stay open, nothing answers) does not hold a
/// client's call until the deadline: the client's HTTP/2 pings find the connection dead, it moves
/// on, follows the new leader's redirect, and the record is appended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_leader_does_not_hold_a_client_until_its_deadline() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("silent");
    cluster.grant(SYSTEM, &writer).await;
    let ids: Vec<u64> = (1..=3).collect();
    let deadline = Duration::from_secs(60);
    let client = cluster.client_of(&ids, deadline);
    client
        .submit(&[records::signed(
            records::mutation(SYSTEM, "before", 1),
            &writer,
        )])
        .await
        .expect("appended while the leader answers");
    cluster.node(leader).signal("STOP");
    let started = Instant::now();
    let result = client
        .submit(&[records::signed(
            records::mutation(SYSTEM, "while-silent", 2),
            &writer,
        )])
        .await;
    let took = started.elapsed();
    cluster.node(leader).signal("CONT");
    let appended = result.expect("appended by the new leader");
    assert!(
        took < deadline / 2,
        "the call took {took:?}, most of its {deadline:?} deadline"
    );
    eprintln!(
        "silent leader: appended at {} after {took:?}",
        appended[0].index
    );
}
