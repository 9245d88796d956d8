//! Disk faults beyond a clean crash, with real processes (root needed for the small disks):
//!
//! - the ledger's sync number file deleted while the node is down: noticed, reported, repaired
//!   from the cluster, and the file is written again;
//! - a byte flipped in a running node's Raft log file: background scrubbing finds it, the node
//!   stops with exit status 3 naming the file and offset, and restarted it repairs;
//! - a full disk: writes are refused with RESOURCE_EXHAUSTED before the disk is full, nothing
//!   crashes, the cluster still elects and serves reads, and writes resume by themselves once
//!   space returns; and a node starts on an 8 MiB disk.

use std::time::Duration;

use stateledger_client::LedgerClient;
use stateledger_core::note::NoteSigner;
use stateledger_node::config::NodeConfig;
use stateledger_node::store::sled_kv::SYNCED_FILE;
use stateledger_node::store::wal::frame;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::tmpfs::Tmpfs;
use stateledger_tests::wait;

const SYSTEM: &str = "disks";
/// Exit status of `stateledger node run` when stored data is corrupt.
const EXIT_CORRUPT: i32 = 3;

/// The first line of node `id`'s log (this start or an earlier one) that contains `text`.
async fn wait_log(cluster: &mut TestCluster, id: u64, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = cluster
            .node(id)
            .log_text()
            .lines()
            .find(|l| l.contains(text))
        {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} never logged {text:?}:\n{}",
            cluster.node(id).log_tail(20)
        );
        tokio::time::sleep(wait::POLL).await;
    }
}

/// A started 3-node cluster (each config edited first) with `count` records from one granted
/// writer, every node converged. Returns the cluster, a follower to harm, the writer and a client.
async fn converged_with_records(
    edit: impl Fn(&mut NodeConfig),
    prefix: &str,
    count: u64,
) -> (TestCluster, u64, NoteSigner, LedgerClient) {
    let mut cluster = TestCluster::new(3);
    for id in 1..=3 {
        cluster.edit_config(id, &edit);
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let writer = writer_key("w");
    cluster.grant(SYSTEM, &writer).await;
    let client = cluster.client();
    for n in 0..count {
        client
            .submit(&[records::signed(
                records::mutation(SYSTEM, &format!("{prefix}{n}"), n + 1),
                &writer,
            )])
            .await
            .expect("appended");
    }
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(20))
        .await;
    (cluster, victim, writer, client)
}

async fn wait_repaired(cluster: &TestCluster, id: u64) {
    wait::until(
        "the node to finish repairing",
        Duration::from_secs(30),
        || async {
            let s = cluster.status(id).await?;
            if s.repair.is_empty() {
                Ok(())
            } else {
                Err(s.repair)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_sync_number_file_is_noticed_and_the_node_repairs() {
    // Snapshots (which sync sled) early and often, so the victim's sled has synced.
    let (mut cluster, victim, writer, client) =
        converged_with_records(|c| c.raft.snapshot_every_entries = 5, "a", 20).await;
    let marker = cluster.data_dir(victim).join(SYNCED_FILE);
    assert!(marker.exists(), "sled has synced");
    cluster.kill9(victim);
    std::fs::remove_file(&marker).expect("delete the sync number file");
    cluster.start(victim);
    // It may catch up (and so end its repair) before a status call could see it: the log keeps
    // what it found.
    let found = wait_log(&mut cluster, victim, "lost durable state").await;
    assert!(found.contains("sync number file"), "{found}");
    assert!(
        cluster
            .node(victim)
            .log_text()
            .contains("lost synced writes cannot be ruled out"),
        "the log says so"
    );
    client
        .submit(&[records::signed(
            records::mutation(SYSTEM, "after", 99),
            &writer,
        )])
        .await
        .expect("the cluster writes on");
    wait_repaired(&cluster, victim).await;
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(20))
        .await;
    assert!(marker.exists(), "the sync number file is written again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_in_a_running_nodes_raft_log_stops_it_and_it_repairs() {
    let scrub_fast = |c: &mut NodeConfig| {
        c.storage.scrub_bytes_per_second = 256 << 20;
        c.storage.scrub_pause_ms = 100;
    };
    let (mut cluster, victim, writer, client) = converged_with_records(scrub_fast, "b", 30).await;
    let scrubbed = wait::until(
        "a scrub pass on the victim",
        Duration::from_secs(20),
        || async {
            let s = cluster.status(victim).await?;
            if s.scrub_passes > 0 {
                Ok(s.scrub_passes)
            } else {
                Err("no pass yet".to_string())
            }
        },
    )
    .await;
    eprintln!("{scrubbed} scrub passes before the flip");

    // One bit of a synced record, in the file, behind the running node's back.
    let dir = cluster.data_dir(victim).join("raft-log");
    let wal = std::fs::read_dir(&dir)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("the log file");
    let bytes = std::fs::read(&wal).expect("read");
    let end = frame::recover(&bytes).valid_end;
    let offset = (frame::FILE_MAGIC.len() + end) / 2;
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .expect("open");
        f.write_all_at(&[bytes[offset] ^ 0x08], offset as u64)
            .expect("flip");
    }
    let exit = cluster.node(victim).wait_exit(Duration::from_secs(30));
    let log = cluster.node(victim).log_text();
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(EXIT_CORRUPT),
        "the victim stops with exit 3; log:\n{}",
        cluster.node(victim).log_tail(20)
    );
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    assert!(
        line.contains("Raft log") && line.contains("damaged"),
        "the last error names what is corrupt: {line}"
    );
    // Restarted, it repairs from the cluster.
    cluster.start(victim);
    // It may catch up (and so end its repair) before a status call could see it: the log keeps
    // what it found.
    let found = wait_log(&mut cluster, victim, "lost durable state").await;
    assert!(found.contains("damaged"), "{found}");
    client
        .submit(&[records::signed(
            records::mutation(SYSTEM, "after", 99),
            &writer,
        )])
        .await
        .expect("the cluster writes on");
    wait_repaired(&cluster, victim).await;
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
}

/// A record of about 30 KB (a configuration snapshot of 300 entries).
fn big_record(n: u64) -> stateledger_core::record::pb::Record {
    let keys: Vec<String> = (0..300)
        .map(|k| format!("service.setting.{k:04}"))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    records::config(SYSTEM, &format!("v{n}"), &keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_electing_and_resumes_when_space_returns() {
    let mut cluster = TestCluster::new(3);
    let small = 3;
    let disk = Tmpfs::mount(&cluster.data_dir(small), 24);
    for id in 1..=3 {
        cluster.edit_config(id, |c| c.storage.disk_check_ms = 100);
    }
    cluster.start_all();
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("filler");
    cluster.grant(SYSTEM, &writer).await;
    let client = cluster.client_of(&[1, 2, 3], Duration::from_secs(20));
    let mut acked = Vec::new();
    let refusal = loop {
        let n = acked.len() as u64;
        assert!(n < 5_000, "the small disk never filled up");
        match client
            .submit(&[records::signed(big_record(n), &writer)])
            .await
        {
            Ok(s) => acked.extend(s),
            Err(e) => break e.to_string(),
        }
    };
    eprintln!(
        "a 24 MiB disk took {} records of ~30 KB before: {refusal}",
        acked.len()
    );
    if std::env::var_os("SHOW_DU").is_some() {
        let out = std::process::Command::new("du")
            .arg("-ab")
            .arg(cluster.data_dir(small))
            .output()
            .expect("du");
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(
        refusal.contains("ResourceExhausted") || refusal.contains("resource"),
        "{refusal}"
    );
    assert!(
        refusal.contains("node-3's disk"),
        "names the node: {refusal}"
    );
    assert!(acked.len() >= 100, "only {} records fit", acked.len());
    cluster.assert_running(&[1, 2, 3]);
    // Reads go on: a verified receipt for the last acknowledged record.
    let last = acked.last().expect("records").index;
    client
        .receipt(last, Duration::from_secs(20))
        .await
        .expect("a receipt while the disk is full");
    // The leader, which refuses the writes, says why in its status.
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(20))
        .await;
    let s = cluster.status(leader).await.expect("the leader answers");
    assert!(s.disk_alarm.contains("node-3"), "{s:?}");

    // Elections go on: the leader is killed, the others elect one.
    cluster.kill9(leader);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    cluster
        .wait_leader(&survivors, Duration::from_secs(30))
        .await;
    cluster.start(leader);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;

    // Space returns: writes resume without anyone restarting anything.
    disk.resize(128);
    let resumed = wait::until("writes to resume", Duration::from_secs(30), || async {
        client
            .submit(&[records::signed(big_record(1_000_000), &writer)])
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    eprintln!("writes resumed at index {}", resumed[0].index);
    cluster.assert_running(&[1, 2, 3]);
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_and_catches_up_on_an_8_mib_disk() {
    let mut cluster = TestCluster::new(3);
    let _disk = Tmpfs::mount(&cluster.data_dir(3), 8);
    cluster.start_all();
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("w");
    cluster.grant(SYSTEM, &writer).await;
    cluster
        .client()
        .submit(&[records::signed(
            records::mutation(SYSTEM, "one", 1),
            &writer,
        )])
        .await
        .expect("appended");
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await;
    cluster.assert_running(&[1, 2, 3]);
}
