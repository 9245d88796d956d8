//! Reconstruction of S(T) against a real 3-node TLS cluster, with state proofs checked offline by
//! the real `stateledger verify`:
//!
//! - several T — before the first record, exactly at a record's ledger time, between two
//!   records, at the last record and after it — each give the records up to T and nothing more,
//!   the same state from every node, and a proof that verifies offline;
//! - editing any byte of a proof, dropping any leaf, or presenting a proof for another T or
//!   another system fails verification with a reason;
//! - a mutation gap, a missing dimension, a partial config and undeclared nondeterminism each
//!   give `impossible` with exactly that reason, and `stateledger gate` refuses them;
//! - a node answer that leaves out records of the system is caught by the client.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use stateledger_client::{state_proof_from_history, ClientError, LedgerClient, Submitted};
use stateledger_core::documents::Document;
use stateledger_core::note::NoteSigner;
use stateledger_core::record::pb::Record;
use stateledger_core::state::{Finding, StateProof};
use stateledger_core::trust::TrustPolicy;
use stateledger_proto::v1 as pb;
use stateledger_tests::binary;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};

const SYSTEM: &str = "orders-service";
/// Another system whose records interleave with SYSTEM's: they must never show up in its state.
const NOISE: &str = "billing";
const WAIT: Duration = Duration::from_secs(20);
const REQUIRED: &[&str] = &["file:app.yaml", "env:DB_URL"];

/// Submits one record (so that each gets its own ledger time) and returns its ack.
async fn submit(client: &LedgerClient, record: Record, writer: &NoteSigner) -> Submitted {
    let mut acks = client
        .submit(&[records::signed(record, writer)])
        .await
        .expect("the record is appended");
    acks.pop().expect("one ack")
}

/// Runs `stateledger verify` on a proof file; returns (exit code, stdout).
fn cli_verify(trust: &Path, proof: &Path, extra: &[&str]) -> (i32, String) {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("verify"),
        OsStr::new("--trust"),
        trust.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    args.push(proof.as_os_str());
    let out = binary::run(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn verify_bytes(bytes: &[u8], policy: &TrustPolicy) -> Result<(), String> {
    Document::parse(bytes)
        .and_then(|d| d.verify(policy))
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", e.check()))
}

fn to_json(proof: &StateProof) -> Vec<u8> {
    serde_json::to_vec_pretty(proof).expect("a state proof serializes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_at_several_times_verify_offline_and_any_tampering_fails() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("orders-collector");
    let other = writer_key("billing-collector");
    // The grant is the system's first record (a policy record of the system).
    let grant = cluster.grant(SYSTEM, &writer).await;
    cluster.grant(NOISE, &other).await;
    let client = cluster.client();
    let policy = cluster.policy();
    let trust = cluster.trust_policy_path();

    // The story, one record at a time, with another system's records in between.
    let story: Vec<(bool, Record)> = vec![
        (true, records::code(SYSTEM, 'a', REQUIRED)),
        (true, records::config(SYSTEM, "v1", REQUIRED)),
        (false, records::environment(NOISE, "6.1.0")),
        (true, records::environment(SYSTEM, "6.1.0")),
        (true, records::seed(SYSTEM, "seed-1")),
        (
            true,
            records::mutation_of(SYSTEM, "kafka:orders/0", 1, &["seed-1"]),
        ),
        (
            false,
            records::mutation_of(NOISE, "kafka:billing/0", 1, &[]),
        ),
        (true, records::mutation_of(SYSTEM, "kafka:orders/0", 2, &[])),
        (true, records::config(SYSTEM, "v2", REQUIRED)),
        (true, records::code(SYSTEM, 'b', REQUIRED)),
        (true, records::mutation_of(SYSTEM, "kafka:orders/0", 3, &[])),
    ];
    let mut ours: Vec<Submitted> = vec![grant];
    for (mine, record) in story {
        let ack = if mine {
            submit(&client, record, &writer).await
        } else {
            submit(&client, record, &other).await
        };
        if mine {
            ours.push(ack);
        }
    }
    let times: Vec<u64> = ours.iter().map(|a| a.ledger_time).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "records submitted one by one get increasing ledger times: {times:?}"
    );
    // Between mutation 2 and config v2.
    let between = times[6] + (times[7] - times[6]) / 2;
    assert!(times[6] < between && between < times[7]);
    let cases: Vec<(&str, u64, usize)> = vec![
        ("before the first record", times[0] - 1, 0),
        ("exactly at the environment record", times[3], 4),
        ("between two records", between, 7),
        ("exactly at the last record", times[9], 10),
        ("after the last record", times[9] + 1_000, 10),
    ];

    let dir = cluster.scratch("proofs");
    let mut proofs = Vec::new();
    for (what, at, expected) in &cases {
        let (proof, summary) = client
            .state_proof(SYSTEM, *at, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{what}: reconstruction at {at}: {e}"));
        let indexes: Vec<u64> = proof.leaves.iter().map(|l| l.leaf_index).collect();
        let want: Vec<u64> = ours[..*expected].iter().map(|a| a.index).collect();
        assert_eq!(
            indexes, want,
            "{what}: the leaves of S({at}) are exactly the records up to T"
        );
        assert_eq!(summary.state.records, *expected as u64, "{what}");
        assert_eq!(summary.state.at, *at, "{what}");
        if *expected == 0 {
            assert_eq!(summary.verdict.result, "impossible", "{what}");
            let missing: Vec<&Finding> = summary.verdict.reasons.iter().collect();
            assert_eq!(
                missing.len(),
                3,
                "{what}: code, config, environment: {missing:?}"
            );
        } else {
            assert_eq!(
                summary.verdict.result, "exact",
                "{what}: {:?}",
                summary.verdict.reasons
            );
        }
        // The dimensions in effect at T.
        if *expected >= 10 {
            let code = summary.state.code.as_ref().expect("code");
            assert_eq!(code.leaf_index, ours[8].index, "{what}: the second deploy");
            let config = summary.state.config.as_ref().expect("config");
            assert_eq!(config.value.version, "v2", "{what}");
            assert_eq!(summary.state.mutations.len(), 3, "{what}");
        } else if *expected == 7 {
            assert_eq!(
                summary.state.config.as_ref().expect("config").value.version,
                "v1"
            );
            assert_eq!(summary.state.mutations.len(), 2);
            assert_eq!(summary.state.nondeterminism.len(), 1);
        }
        // Every node gives the same state.
        for id in 1..=3 {
            let (_, s) = cluster
                .client_of(&[id], WAIT)
                .state_proof(SYSTEM, *at, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{what}: node {id}: {e}"));
            assert_eq!(s.state_digest, summary.state_digest, "{what}: node {id}");
        }
        // Offline, by the real verifier, expecting this system and this T.
        let path = dir.join(format!("at-{at}.json"));
        std::fs::write(&path, to_json(&proof)).expect("write the proof");
        let (code, out) = cli_verify(
            &trust,
            &path,
            &["--system", SYSTEM, "--at", &at.to_string()],
        );
        assert_eq!(code, 0, "{what}: {out}");
        assert!(out.starts_with("OK state_proof:"), "{what}: {out}");
        proofs.push((*at, path, proof));
    }
    let (at_between, between_path, between_proof) = &proofs[2];
    let (at_last, last_path, _) = &proofs[3];
    assert_eq!(*at_between, between);

    // A proof for another T, or another system, is refused when T and the system are expected.
    let (code, out) = cli_verify(
        &trust,
        between_path,
        &["--system", SYSTEM, "--at", &at_last.to_string()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("FAILED expectation:") && out.contains("not the expected T"),
        "{out}"
    );
    let (code, out) = cli_verify(&trust, last_path, &["--system", NOISE]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not the expected \"billing\""), "{out}");
    // Rewriting T inside the proof (to the last record's time) breaks it too: the state it
    // carries is no longer the one its leaves give at that T, or leaves are missing.
    let mut moved: serde_json::Value =
        serde_json::from_slice(&to_json(between_proof)).expect("json");
    moved["at"] = serde_json::json!(at_last);
    moved["state"]["at"] = serde_json::json!(at_last);
    let moved = serde_json::to_vec(&moved).expect("json");
    let err = verify_bytes(&moved, &policy).expect_err("a proof moved to another T fails");
    eprintln!("moved to another T: {err}");

    // Dropping any one leaf fails, naming the break.
    let good: serde_json::Value = serde_json::from_slice(&to_json(between_proof)).expect("json");
    let leaves = good["leaves"].as_array().expect("leaves").len();
    for i in 0..leaves {
        let mut v = good.clone();
        v["leaves"].as_array_mut().expect("leaves").remove(i);
        let bytes = serde_json::to_vec(&v).expect("json");
        let err =
            verify_bytes(&bytes, &policy).expect_err("a proof with a leaf dropped must not verify");
        assert!(
            err.starts_with("state_chain")
                || err.starts_with("state_boundary")
                || err.contains("state"),
            "dropping leaf {i}: {err}"
        );
        if i == 1 {
            let path = dir.join("dropped.json");
            std::fs::write(&path, &bytes).expect("write");
            let (code, out) = cli_verify(&trust, &path, &[]);
            assert_eq!(code, 1, "{out}");
            eprintln!("dropped leaf 1: {out}");
        }
    }

    // Flipping any bit-0 of any byte of the proof fails.
    let bytes = to_json(between_proof);
    assert!(verify_bytes(&bytes, &policy).is_ok());
    let mut checks = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..bytes.len() {
        let mut edited = bytes.clone();
        edited[i] ^= 0x01;
        match verify_bytes(&edited, &policy) {
            Ok(()) => panic!(
                "editing byte {i} ({:?} -> {:?}) still verifies; context: {}",
                bytes[i] as char,
                edited[i] as char,
                String::from_utf8_lossy(&bytes[i.saturating_sub(40)..(i + 40).min(bytes.len())])
            ),
            Err(e) => {
                let check = e.split(':').next().unwrap_or_default().to_string();
                *checks.entry(check).or_default() += 1;
            }
        }
    }
    eprintln!(
        "{} single-byte edits, all refused, by check: {checks:?}",
        bytes.len()
    );
}

/// Reconstructs `system` after its last record and returns the verdict's reasons.
async fn reasons(client: &LedgerClient, system: &str, at: u64) -> (String, Vec<Finding>) {
    let (_, summary) = client
        .state_proof(system, at, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{system}: {e}"));
    (summary.verdict.result, summary.verdict.reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_reconstructions_say_why_and_omitted_records_are_caught() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("collector");
    let systems = [
        "gap-service",
        "nodim-service",
        "partial-service",
        "undeclared-service",
    ];
    for s in systems {
        cluster.grant(s, &writer).await;
    }
    let client = cluster.client();
    let policy = cluster.policy();
    let mut last = 0;
    let put = |r: Record| records::signed(r, &writer);
    let mut batch = Vec::new();

    // A gap: source kafka:orders/0 goes 1, 2, 4.
    let gap = "gap-service";
    batch.push(put(records::code(gap, 'a', REQUIRED)));
    batch.push(put(records::config(gap, "v1", REQUIRED)));
    batch.push(put(records::environment(gap, "6.1.0")));
    for seq in [1, 2, 4] {
        batch.push(put(records::mutation_of(gap, "kafka:orders/0", seq, &[])));
    }
    // A missing dimension: no environment.
    let nodim = "nodim-service";
    batch.push(put(records::code(nodim, 'a', REQUIRED)));
    batch.push(put(records::config(nodim, "v1", REQUIRED)));
    // A partial config: the code needs a key the snapshot lacks.
    let partial = "partial-service";
    batch.push(put(records::code(
        partial,
        'a',
        &["file:app.yaml", "env:DB_URL", "file:flags.yaml"],
    )));
    batch.push(put(records::config(partial, "v1", REQUIRED)));
    batch.push(put(records::environment(partial, "6.1.0")));
    // Undeclared nondeterminism: a mutation depends on a seed never recorded.
    let undeclared = "undeclared-service";
    batch.push(put(records::code(undeclared, 'a', REQUIRED)));
    batch.push(put(records::config(undeclared, "v1", REQUIRED)));
    batch.push(put(records::environment(undeclared, "6.1.0")));
    batch.push(put(records::mutation_of(
        undeclared,
        "kafka:orders/0",
        1,
        &["seed-9"],
    )));
    for record in batch {
        let ack = client.submit(&[record]).await.expect("appended").remove(0);
        last = last.max(ack.ledger_time);
    }

    // A configuration snapshot that says it is incomplete is refused at the door, by name, and
    // nothing is appended.
    let mut incomplete = records::config(gap, "v2", REQUIRED);
    if let Some(stateledger_core::record::Body::Config(c)) = &mut incomplete.body {
        c.complete = false;
    }
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await;
    let before = cluster.status(leader).await.expect("status").tree_size;
    let err = cluster
        .ledger(leader)
        .submit(pb::SubmitRequest {
            records: vec![records::signed_unchecked(&incomplete, &writer)],
        })
        .await
        .expect_err("a partial config is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("partial config"),
        "{}",
        err.message()
    );
    assert_eq!(
        cluster.status(leader).await.expect("status").tree_size,
        before
    );

    let (result, found) = reasons(&client, gap, last).await;
    assert_eq!(result, "impossible");
    assert!(
        matches!(
            found.as_slice(),
            [Finding::MutationGap { source, expected: 3, found: 4, .. }] if source == "kafka:orders/0"
        ),
        "{found:?}"
    );
    let (result, found) = reasons(&client, nodim, last).await;
    assert_eq!(result, "impossible");
    assert_eq!(
        found,
        vec![Finding::MissingDimension {
            dimension: "environment".into()
        }]
    );
    let (result, found) = reasons(&client, partial, last).await;
    assert_eq!(result, "impossible");
    assert!(
        matches!(
            found.as_slice(),
            [Finding::PartialConfig { missing_keys, .. }] if missing_keys == &["file:flags.yaml".to_string()]
        ),
        "{found:?}"
    );
    let (result, found) = reasons(&client, undeclared, last).await;
    assert_eq!(result, "impossible");
    assert!(
        matches!(
            found.as_slice(),
            [Finding::UndeclaredNondeterminism { capture_id, .. }] if capture_id == "seed-9"
        ),
        "{found:?}"
    );

    // The CI gate turns each into a failing exit code naming the rule, offline from the proof.
    let dir = cluster.scratch("gate");
    let trust = cluster.trust_policy_path();
    for (system, rule) in [
        (gap, "mutation_gap"),
        (nodim, "missing_dimension"),
        (partial, "partial_config"),
        (undeclared, "undeclared_nondeterminism"),
    ] {
        let (proof, _) = client.state_proof(system, last, WAIT).await.expect("proof");
        let path = dir.join(format!("{system}.json"));
        std::fs::write(&path, to_json(&proof)).expect("write");
        let out = binary::run(&[
            OsStr::new("gate"),
            OsStr::new("--proof"),
            path.as_os_str(),
            OsStr::new("--trust"),
            trust.as_os_str(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{system}: {stdout}");
        assert!(
            stdout.starts_with("GATE FAILED") && stdout.contains(&format!("[{rule}]")),
            "{system}: {stdout}"
        );
    }

    // A node answer with a record of the system left out is caught by the client.
    let (history, endpoint) = client
        .system_history(gap, last, WAIT)
        .await
        .expect("the history");
    assert_eq!(history.leaves.len(), 7, "the grant and six records");
    state_proof_from_history(gap, last, history.clone(), &endpoint, &policy)
        .expect("the untouched answer verifies");
    for drop_at in 0..history.leaves.len() {
        let mut tampered = history.clone();
        tampered.leaves.remove(drop_at);
        let err = state_proof_from_history(gap, last, tampered, &endpoint, &policy)
            .expect_err("an answer with a record left out must be caught");
        assert!(matches!(err, ClientError::Verify { .. }), "{err}");
        eprintln!("record {drop_at} left out: {err}");
    }
    // Leaving out the completeness boundary is caught too.
    let mut tampered = history.clone();
    tampered.next = None;
    tampered.head_proof = None;
    let err = state_proof_from_history(gap, last, tampered, &endpoint, &policy)
        .expect_err("an answer without its completeness evidence must be caught");
    assert!(err.to_string().contains("completeness"), "{err}");
}
