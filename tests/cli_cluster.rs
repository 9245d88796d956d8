//! The `stateledger` commands that talk to a cluster, run as a new user runs them (the binary,
//! a client profile, nothing else):
//!
//! - with the cluster down, every networked command gives up within `--timeout`, says what it
//!   was waiting for and from where, and exits 2 (membership changes included); `cluster
//!   status` exits 1 without a quorum; a configured voter that has not heard from the cluster
//!   is `starting`, not `learner`;
//! - with the cluster up, `--output json` of every command that prints a result parses as
//!   docs/CLI.md says; `consistency` proves exactly the sizes asked for (or names the published
//!   ones) and refuses `--old` > `--new`; a closed standard output stops a command quietly; a
//!   writer without a grant is told its name and the `stateledger grant` that fixes it; a
//!   misspelled system is "no records", with the name it was probably meant to be.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use stateledger_core::checkpoint::Checkpoint;
use stateledger_core::documents::Document;
use stateledger_core::note::Note;
use stateledger_core::record::pb::Record;
use stateledger_proto::v1 as pb;
use stateledger_tests::binary;
use stateledger_tests::cli::{self, Run};
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records;
use stateledger_tests::wait;

const SYSTEM: &str = "orders-service";
const WAIT: Duration = Duration::from_secs(30);

fn profile(cluster: &TestCluster) -> PathBuf {
    cluster.dir().join("client.toml")
}

fn sl(cluster: &TestCluster, args: &[&str]) -> Run {
    cli::with_profile(&profile(cluster), args)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary paths")
}

#[test]
fn with_the_cluster_down_commands_give_up_in_time_and_say_why() {
    let cluster = TestCluster::new(3);
    let endpoint = cluster.public_addr(1);
    let admin_pub = cluster.dir().join("keys/admin.pub");
    for args in [
        vec!["receipt", "--index", "0"],
        vec!["checkpoint"],
        vec!["consistency", "--old", "1", "--new", "2"],
        vec!["reconstruct", "--system", SYSTEM],
        vec!["gate", "--system", SYSTEM],
        vec!["grant", "--system", SYSTEM, "--writer", path(&admin_pub)],
        // Membership changes, too: add-learner then gives a learner minutes to catch up, but
        // a cluster that does not answer is found out within --timeout.
        vec![
            "cluster",
            "add-learner",
            "--id",
            "4",
            "--name",
            "node-4",
            "--public-addr",
            "127.0.0.1:1",
            "--cluster-addr",
            "127.0.0.1:2",
            "--checkpoint-key",
            path(&admin_pub),
        ],
        vec!["cluster", "promote", "--id", "3"],
        vec!["cluster", "remove", "--id", "3"],
    ] {
        let mut all = args.clone();
        all.extend(["--timeout", "1s"]);
        let run = sl(&cluster, &all);
        run.expect_code(2);
        assert!(
            run.elapsed < Duration::from_secs(8),
            "--timeout 1s was not kept: {run}"
        );
        for needle in ["no node answered within 1s", "waiting for", "--timeout"] {
            assert!(run.stderr.contains(needle), "{needle:?} missing: {run}");
        }
        assert!(run.stderr.contains(&endpoint), "endpoints not named: {run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
    }

    // No node answers: no quorum, exit 1, said in text and in JSON.
    let run = sl(&cluster, &["cluster", "status", "--timeout", "1s"]);
    run.expect_code(1);
    assert!(run.stdout.contains("NO QUORUM: 0 of 3 voters"), "{run}");
    let run = sl(
        &cluster,
        &["cluster", "status", "--timeout", "1s", "--output", "json"],
    );
    run.expect_code(1);
    let report = run.json();
    assert_eq!(report["quorum"], false, "{run}");
    assert_eq!(report["voters_reachable"], 0, "{run}");
    assert!(report["nodes"][0]["error"].is_string(), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_has_not_heard_from_the_cluster_is_starting() {
    let mut cluster = TestCluster::new(3);
    // Node 2 does not bootstrap: alone, it never learns its role.
    cluster.start(2);
    let status = wait::until("node 2 to answer", WAIT, || async {
        cluster.status(2).await
    })
    .await;
    assert_eq!(status.role, "starting", "{status:?}");
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    let run = sl(&cluster, &["cluster", "status", "--timeout", "2s"]);
    run.expect_code(1);
    assert!(run.stdout.contains("starting"), "{run}");
    assert!(!run.stdout.contains("learner"), "{run}");
    assert!(run.stdout.contains("NO QUORUM: 1 of 3 voters"), "{run}");
}

/// Writes records as `stateledger submit` reads them: one JSON object per line.
fn write_records(path: &Path, records: &[Record]) {
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).expect("records serialize"))
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write the records");
}

/// The sizes at which node 1 has published a checkpoint, among 1..=`size`.
async fn published_sizes(cluster: &TestCluster, size: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    for s in 1..=size {
        let answer = cluster
            .ledger(1)
            .get_checkpoint(pb::GetCheckpointRequest {
                at_size: s,
                ..Default::default()
            })
            .await;
        if answer.is_ok() {
            sizes.push(s);
        }
    }
    sizes
}

fn checkpoint_size(note: &str) -> u64 {
    let note = Note::parse(note.as_bytes()).expect("a note");
    Checkpoint::parse(&note.text).expect("a checkpoint").size.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_users_commands_against_a_running_cluster() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_leader(&[1, 2, 3], WAIT).await;
    let dir = cluster.scratch("user");
    let keys = dir.join("keys");

    // keygen and grant, as JSON.
    let run = cli::run(&[
        "keygen",
        "--name",
        "orders-collector",
        "--out",
        path(&keys),
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let key = run.json();
    assert_eq!(key["name"], "orders-collector", "{run}");
    assert!(key["verifier_key"]
        .as_str()
        .is_some_and(|k| k.starts_with("orders-collector+")));
    let pub_file = keys.join("orders-collector.pub");
    let key_file = keys.join("orders-collector.key");
    let run = sl(
        &cluster,
        &[
            "grant",
            "--system",
            SYSTEM,
            "--writer",
            path(&pub_file),
            "--output",
            "json",
        ],
    );
    run.expect_code(0);
    let grant = run.json();
    assert_eq!(grant["action"], "granted", "{run}");
    assert_eq!(grant["writer"], "orders-collector", "{run}");
    assert!(grant["leaf_index"].is_u64(), "{run}");

    // Three submissions, each waiting for its receipts: the log grows in steps, and
    // checkpoints are published along the way.
    let mut receipts = Vec::new();
    for batch in 0..3u64 {
        let file = dir.join(format!("batch-{batch}.jsonl"));
        let records: Vec<Record> = (0..2)
            .map(|i| {
                let seq = batch * 2 + i + 1;
                records::mutation_of(SYSTEM, "kafka:orders/0", seq, &[])
            })
            .collect();
        write_records(&file, &records);
        let run = sl(&cluster, &["submit", "--key", path(&key_file), path(&file)]);
        run.expect_code(0);
        for line in run.json_lines() {
            let text = line.to_string();
            Document::parse(text.as_bytes()).expect("submit prints receipts");
            receipts.push(line);
        }
    }
    assert_eq!(receipts.len(), 6);
    let size = cluster.wait_converged(&[1, 2, 3], WAIT).await.tree_size;
    let sizes = wait::until("two published checkpoint sizes", WAIT, || async {
        let sizes = published_sizes(&cluster, size).await;
        if sizes.len() >= 2 {
            Ok(sizes)
        } else {
            Err(format!("published: {sizes:?}"))
        }
    })
    .await;
    let (old, new) = (sizes[0], sizes[sizes.len() - 1]);

    // consistency proves exactly the sizes asked for.
    let run = sl(
        &cluster,
        &[
            "consistency",
            "--old",
            &old.to_string(),
            "--new",
            &new.to_string(),
            "--output",
            "json",
        ],
    );
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(
        checkpoint_size(doc["old_checkpoint"].as_str().expect("old")),
        old,
        "{run}"
    );
    assert_eq!(
        checkpoint_size(doc["new_checkpoint"].as_str().expect("new")),
        new,
        "{run}"
    );
    let doc_file = dir.join("consistency.json");
    std::fs::write(&doc_file, &run.stdout).expect("write");
    let trust = cluster.trust_policy_path();
    cli::run(&["verify", "--trust", path(&trust), path(&doc_file)]).expect_code(0);
    // ... refuses --old > --new, naming both flags ...
    let run = sl(
        &cluster,
        &[
            "consistency",
            "--old",
            &new.to_string(),
            "--new",
            &old.to_string(),
        ],
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("--old") && run.stderr.contains("larger than --new"),
        "{run}"
    );
    // ... and names the published sizes when a size has no checkpoint.
    let unpublished = (1..=size + 5)
        .find(|s| !sizes.contains(s))
        .expect("some size has no checkpoint");
    let run = sl(
        &cluster,
        &[
            "consistency",
            "--old",
            &unpublished.to_string(),
            "--new",
            &new.to_string(),
        ],
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!(
            "no checkpoint was published at size {unpublished}"
        )),
        "{run}"
    );
    assert!(run.stderr.contains("published sizes"), "{run}");

    // checkpoint, receipt, status, version: JSON.
    let run = sl(&cluster, &["checkpoint", "--output", "json"]);
    run.expect_code(0);
    let cp = run.json();
    assert!(cp["size"].as_u64().is_some_and(|s| s >= 1), "{run}");
    assert!(
        cp["signers"].as_array().map(Vec::len).unwrap_or(0) >= 2,
        "a quorum signed: {run}"
    );
    let run = sl(
        &cluster,
        &["checkpoint", "--size", &old.to_string(), "--output", "json"],
    );
    run.expect_code(0);
    assert_eq!(run.json()["size"], old, "{run}");
    let run = sl(&cluster, &["receipt", "--index", "1", "--output", "json"]);
    run.expect_code(0);
    Document::parse(run.stdout.as_bytes()).expect("a receipt document");
    let run = sl(&cluster, &["cluster", "status", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["quorum"], true, "{run}");
    let run = sl(&cluster, &["version", "--output", "json"]);
    run.expect_code(0);
    let v = run.json();
    assert!(v["commit"].is_string(), "{run}");
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{run}");
    assert!(nodes.iter().all(|n| n["version"] == v["version"]), "{run}");

    // reconstruct, gate, report, replay: JSON.
    let proof_file = dir.join("proof.json");
    let run = sl(
        &cluster,
        &[
            "reconstruct",
            "--system",
            SYSTEM,
            "--out",
            path(&proof_file),
            "--output",
            "json",
        ],
    );
    run.expect_code(0);
    let proof = run.json();
    assert_eq!(proof["format"], "stateledger.state_proof.v1", "{run}");
    assert_eq!(
        proof["state"]["records"], 7,
        "a grant and six mutations: {run}"
    );
    let run = sl(&cluster, &["gate", "--system", SYSTEM, "--output", "json"]);
    run.expect_code(1);
    let gate = run.json();
    assert_eq!(gate["passed"], false, "{run}");
    assert_eq!(
        gate["failure"], "impossible",
        "code, config, environment are missing"
    );
    assert_eq!(gate["verdict"]["result"], "impossible", "{run}");
    let run = cli::run(&[
        "report",
        "--trust",
        path(&trust),
        path(&proof_file),
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["verified"], true, "{run}");
    assert_eq!(report["records"], 7, "{run}");
    assert_eq!(
        report["state_digest"], proof["state_digest"],
        "one encoding"
    );
    let payloads = dir.join("payloads.jsonl");
    let lines: Vec<String> = (1..=6)
        .map(|seq| {
            serde_json::json!({"source": "kafka:orders/0", "sequence": seq, "payload": format!("payload {seq}")})
                .to_string()
        })
        .collect();
    std::fs::write(&payloads, lines.join("\n")).expect("write payloads");
    let reducer = format!("'{}' example-reducer", binary::stateledger().display());
    let run = cli::run(&[
        "replay",
        "--proof",
        path(&proof_file),
        "--trust",
        path(&trust),
        "--payloads",
        path(&payloads),
        "--reducer",
        &reducer,
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let replay = run.json();
    assert_eq!(replay["mutations"], 6, "{run}");
    assert!(replay["divergence"].is_null(), "{run}");

    // The state digest reads the same in the text report as in the proof.
    let run = cli::run(&["report", "--trust", path(&trust), path(&proof_file)]);
    run.expect_code(0);
    let digest = proof["state_digest"].as_str().expect("digest");
    assert!(run.stdout.contains(digest), "{run}");

    // A misspelled system: no records, the likely name, exit 1.
    let run = sl(&cluster, &["reconstruct", "--system", "ordres-service"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("no records for system \"ordres-service\""),
        "{run}"
    );
    assert!(run.stderr.contains("\"orders-service\""), "{run}");
    let run = sl(
        &cluster,
        &["gate", "--system", "ordres-service", "--output", "json"],
    );
    run.expect_code(1);
    assert_eq!(run.json()["failure"], "no_records", "{run}");

    // A writer without a grant: its name and the command that fixes it.
    let run = cli::run(&["keygen", "--name", "stranger", "--out", path(&keys)]);
    run.expect_code(0);
    let file = dir.join("stranger.jsonl");
    write_records(
        &file,
        &[records::mutation_of("payments", "kafka:pay/0", 1, &[])],
    );
    let run = sl(
        &cluster,
        &[
            "submit",
            "--key",
            path(&keys.join("stranger.key")),
            path(&file),
        ],
    );
    run.expect_code(2);
    assert!(run.stderr.contains("writer \"stranger\""), "{run}");
    assert!(
        run.stderr.contains(&format!(
            "stateledger grant --system payments --writer {}",
            keys.join("stranger.pub").display()
        )),
        "{run}"
    );

    // A closed standard output: a quiet stop (141), never a panic.
    let profile_file = profile(&cluster);
    for args in [
        vec!["receipt", "--index", "0"],
        vec!["cluster", "status"],
        vec!["reconstruct", "--system", SYSTEM, "--output", "json"],
    ] {
        let mut all = args.clone();
        all.extend(["--profile", path(&profile_file)]);
        let mut child = Command::new(binary::stateledger())
            .args(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stateledger starts");
        drop(child.stdout.take()); // before it has connected, let alone written
        let out = child.wait_with_output().expect("stateledger finishes");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
