//! The metrics listener (`[metrics] listen`): `/metrics` names every metric in the OpenMetrics
//! text format, `/healthz` answers while the process runs, and `/readyz` follows whether the node
//! hears from a leader — 503 while it is cut off (the other two nodes stopped with SIGSTOP), 200
//! again once they run. (Its own test binary: stopped processes are best kept away from other
//! tests' clusters.)

use std::time::Duration;

use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::wait;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SYSTEM: &str = "payments";

/// Every metric the node registers, as its `# TYPE` line names it.
const METRIC_NAMES: &[&str] = &[
    "stateledger_raft_term",
    "stateledger_raft_leader_id",
    "stateledger_raft_is_leader",
    "stateledger_raft_last_log_index",
    "stateledger_raft_applied_index",
    "stateledger_raft_follower_lag_entries",
    "stateledger_checkpoint_size",
    "stateledger_checkpoint_age_seconds",
    "stateledger_checkpoint_cosigners",
    "stateledger_corrupt",
    "stateledger_repairing",
    "stateledger_disk_space_alarm",
    "stateledger_ready",
    "stateledger_records_appended",
    "stateledger_submissions_refused",
    "stateledger_commit_seconds",
    "stateledger_log_sync_seconds",
];

/// A plain HTTP/1.1 GET: the status code and the body.
async fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .map_err(|_| format!("GET {path}: no answer within 5 s"))?
        .map_err(|e| format!("read: {e}"))?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of an unlabelled sample `name` in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_follow_the_node() {
    let mut cluster = TestCluster::new(3);
    let metrics_addr = |id: u64| format!("127.0.0.1:{}", cluster.base_port() + 50 + id as u16);
    let addrs: Vec<String> = (1..=3).map(metrics_addr).collect();
    for id in 1..=3u64 {
        let addr = addrs[id as usize - 1].clone();
        cluster.edit_config(id, |c| c.metrics.listen = Some(addr));
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let follower = (1..=3).find(|&id| id != leader).expect("three nodes");
    let others: Vec<u64> = (1..=3).filter(|&id| id != follower).collect();
    let at = |id: u64| addrs[id as usize - 1].clone();

    // A record appended through the leader shows in its counter and its commit latency.
    let writer = writer_key("metrics");
    cluster.grant(SYSTEM, &writer).await;
    let client = cluster.client_of(&[1, 2, 3], Duration::from_secs(20));
    client
        .submit(&[records::signed(
            records::mutation(SYSTEM, "metrics", 1),
            &writer,
        )])
        .await
        .expect("appended");
    // A writer without a grant is refused: counted by reason where it was refused.
    let stranger = writer_key("stranger");
    client
        .submit(&[records::signed(
            records::mutation(SYSTEM, "refused", 1),
            &stranger,
        )])
        .await
        .expect_err("a writer without a grant is refused");

    let leader_addr = at(leader);
    let text = wait::until(
        "the leader's metrics to count the appended records",
        Duration::from_secs(20),
        || {
            let addr = leader_addr.clone();
            async move {
                let (status, text) = get(&addr, "/metrics").await?;
                let appended = sample(&text, "stateledger_records_appended_total").unwrap_or(0.0);
                if status == 200 && appended >= 1.0 {
                    Ok(text)
                } else {
                    Err(format!("status {status}, records appended {appended}"))
                }
            }
        },
    )
    .await;
    // Labelled families appear once they hold a sample: the refusal is counted on whichever
    // node refused it.
    let mut all = text.clone();
    for id in (1..=3).filter(|&id| id != leader) {
        all.push_str(&get(&at(id), "/metrics").await.expect("metrics").1);
    }
    for name in METRIC_NAMES {
        assert!(
            all.contains(&format!("# TYPE {name} ")),
            "/metrics does not list {name}:\n{all}"
        );
    }
    assert!(
        all.contains(
            "stateledger_submissions_refused_total{reason=\"ERROR_REASON_PERMISSION_DENIED\"} 1"
        ),
        "the refusal is counted by reason:\n{all}"
    );
    assert_eq!(sample(&text, "stateledger_raft_is_leader"), Some(1.0));
    assert_eq!(
        sample(&text, "stateledger_raft_leader_id"),
        Some(leader as f64)
    );
    assert!(
        text.contains("stateledger_raft_follower_lag_entries{follower="),
        "the leader reports each follower's lag:\n{text}"
    );
    assert!(
        sample(&text, "stateledger_commit_seconds_count").unwrap_or(0.0) >= 1.0,
        "the commit latency histogram counted the submit:\n{text}"
    );
    assert_eq!(sample(&text, "stateledger_corrupt"), Some(0.0));

    let follower_addr = at(follower);
    assert_eq!(
        get(&follower_addr, "/healthz").await.expect("healthz").0,
        200
    );
    let (status, _) = get(&follower_addr, "/nothing-here").await.expect("404");
    assert_eq!(status, 404);
    let readyz = |expected: u16| {
        let addr = follower_addr.clone();
        async move {
            let (status, body) = get(&addr, "/readyz").await?;
            if status == expected {
                Ok(body)
            } else {
                Err(format!("status {status}: {body}"))
            }
        }
    };
    wait::until("the follower to be ready", Duration::from_secs(20), || {
        readyz(200)
    })
    .await;

    // Cut off: the other two stop answering; the follower no longer hears a leader.
    for &id in &others {
        cluster.node(id).signal("STOP");
    }
    let why = wait::until(
        "the cut-off follower to be not ready",
        Duration::from_secs(30),
        || readyz(503),
    )
    .await;
    assert!(why.contains("no leader"), "the 503 says why: {why}");
    // Still alive, and its metrics say it is not ready.
    assert_eq!(
        get(&follower_addr, "/healthz").await.expect("healthz").0,
        200
    );
    let (_, text) = get(&follower_addr, "/metrics").await.expect("metrics");
    assert_eq!(sample(&text, "stateledger_ready"), Some(0.0));

    for &id in &others {
        cluster.node(id).signal("CONT");
    }
    wait::until(
        "the healed follower to be ready again",
        Duration::from_secs(60),
        || readyz(200),
    )
    .await;
}
