//! A three-node cluster under concurrent writes. Several clients submit at the same time —
//! client-library tasks (single and multi-record requests) and a `stateledger submit` process —
//! every receipt verifies offline with the real `stateledger verify` against the quorum trust
//! policy (and a tampered one does not), and all nodes end at the same tree size with the same
//! root, by the Status RPC and by `stateledger cluster status --json`.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stateledger_tests::binary;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};

const SYSTEM: &str = "orders-service";
/// Client-library writers running at once.
const TASKS: u64 = 4;
/// Requests each writer task makes; task t puts t % 3 + 1 records in each request.
const REQUESTS_PER_TASK: u64 = 12;
/// Records the `stateledger submit` process sends (one request).
const CLI_RECORDS: u64 = 10;

fn records_of_task(t: u64) -> u64 {
    REQUESTS_PER_TASK * (t % 3 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_get_receipts_that_verify_offline_and_all_nodes_agree() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let dir = cluster.dir();
    let profile = dir.join("client.toml");

    // Writers: in-process keys granted through the client library, and one key made and granted
    // with the CLI.
    let keys: Vec<_> = (0..TASKS)
        .map(|t| writer_key(&format!("writer-{t}")))
        .collect();
    for key in &keys {
        cluster.grant(SYSTEM, key).await;
    }
    let keys_dir = cluster.scratch("keys");
    let out = binary::run(&[
        OsStr::new("keygen"),
        OsStr::new("--name"),
        OsStr::new("cli-writer"),
        OsStr::new("--out"),
        keys_dir.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = binary::run(&[
        OsStr::new("grant"),
        OsStr::new("--profile"),
        profile.as_os_str(),
        OsStr::new("--system"),
        OsStr::new(SYSTEM),
        OsStr::new("--writer"),
        keys_dir.join("cli-writer.pub").as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "grant: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grants = TASKS + 1;

    let cli_records: String = (1..=CLI_RECORDS)
        .map(|n| {
            format!(
                r#"{{"system":"{SYSTEM}","scope":"e2e","body":{{"mutation":{{"kind":"order_paid","id":"cli-{n}","source":"cli","sequence":{n}}}}}}}"#
            ) + "\n"
        })
        .collect();
    let cli_input = cluster.scratch("input").join("records.jsonl");
    std::fs::write(&cli_input, cli_records).expect("records file");
    let receipts_dir = cluster.scratch("receipts");

    let started = Instant::now();
    let cli = Command::new(binary::stateledger())
        .arg("submit")
        .arg("--profile")
        .arg(&profile)
        .arg("--key")
        .arg(keys_dir.join("cli-writer.key"))
        .arg("--out")
        .arg(&receipts_dir)
        .arg(&cli_input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stateledger submit starts");
    let mut tasks = Vec::new();
    for (t, key) in keys.into_iter().enumerate() {
        let t = t as u64;
        let client = cluster.client();
        tasks.push(tokio::spawn(async move {
            let per_request = t % 3 + 1;
            let mut indexes = Vec::new();
            for r in 0..REQUESTS_PER_TASK {
                let batch: Vec<_> = (0..per_request)
                    .map(|k| {
                        let n = r * per_request + k + 1;
                        records::signed(
                            records::mutation(SYSTEM, &format!("task-{t}-{n}"), n),
                            &key,
                        )
                    })
                    .collect();
                let submitted = client.submit(&batch).await.expect("the cluster appends");
                assert_eq!(submitted.len(), batch.len());
                indexes.extend(submitted.iter().map(|s| s.index));
            }
            let mut receipts = Vec::new();
            for index in indexes {
                let (receipt, summary) = client
                    .receipt(index, Duration::from_secs(10))
                    .await
                    .expect("a verified receipt");
                assert!(summary.checkpoint.signers.len() >= 2, "quorum-signed");
                receipts.push((index, serde_json::to_string_pretty(&receipt).expect("json")));
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.extend(task.await.expect("writer task"));
    }
    let cli = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .expect("join")
        .expect("stateledger submit runs");
    let elapsed = started.elapsed();
    assert!(
        cli.status.success(),
        "stateledger submit failed: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let task_records: u64 = (0..TASKS).map(records_of_task).sum();
    eprintln!(
        "{} records from {TASKS} client tasks and 1 CLI process appended with receipts in {elapsed:.2?}",
        task_records + CLI_RECORDS
    );

    // Every leaf index was handed out once.
    for (index, json) in &receipts {
        std::fs::write(receipts_dir.join(format!("receipt-{index}.json")), json)
            .expect("receipt written");
    }
    let mut files: Vec<_> = std::fs::read_dir(&receipts_dir)
        .expect("receipts dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert_eq!(
        files.len() as u64,
        task_records + CLI_RECORDS,
        "one receipt per record, no leaf index handed out twice"
    );

    // Offline verification with the real binary, against the quorum trust policy.
    let policy = cluster.trust_policy_path();
    for file in &files {
        let out = binary::run(&[
            OsStr::new("verify"),
            OsStr::new("--trust"),
            policy.as_os_str(),
            file.as_os_str(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("OK receipt"),
            "{} does not verify ({}): {stdout} {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("threshold 2"), "{stdout}");
    }
    // The verifier does check: a receipt with a changed proof hash is refused with exit 1.
    let mut tampered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[files.len() / 2]).expect("receipt"))
            .expect("receipt json");
    let proof = tampered["inclusion_proof"]
        .as_array_mut()
        .expect("an inclusion proof");
    assert!(!proof.is_empty(), "a tree of this size has proof hashes");
    proof[0] = serde_json::Value::String(format!("{}=", "A".repeat(43)));
    let tampered_path = cluster.scratch("tampered").join("receipt.json");
    std::fs::write(&tampered_path, tampered.to_string()).expect("write");
    let out = binary::run(&[
        OsStr::new("verify"),
        OsStr::new("--trust"),
        policy.as_os_str(),
        tampered_path.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a tampered receipt must fail verification: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // All nodes converge on one tree: same size, same root (Status RPC).
    let expected = grants + task_records + CLI_RECORDS;
    let status = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(20))
        .await;
    assert_eq!(
        status.tree_size, expected,
        "every record appended exactly once"
    );
    // ... and as `stateledger cluster status --output json` reports it (docs/CLI.md).
    let out = binary::run(&[
        OsStr::new("cluster"),
        OsStr::new("status"),
        OsStr::new("--profile"),
        profile.as_os_str(),
        OsStr::new("--output"),
        OsStr::new("json"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(report["quorum"], true, "{report}");
    assert_eq!(report["voters_reachable"], 3, "{report}");
    let rows = report["nodes"].as_array().expect("nodes");
    assert_eq!(rows.len(), 3);
    let root = stateledger_core::hash::Hash::from_slice(&status.root)
        .expect("a 32-byte root")
        .to_base64();
    for row in rows {
        assert_eq!(row["tree_size"].as_u64(), Some(expected), "{row}");
        assert_eq!(row["root"].as_str(), Some(root.as_str()), "{row}");
        assert!(row["corruption"].is_null(), "{row}");
        assert!(row["error"].is_null(), "{row}");
    }
    assert_eq!(
        rows.iter().filter(|r| r["role"] == "leader").count(),
        1,
        "exactly one leader: {rows:?}"
    );
}
