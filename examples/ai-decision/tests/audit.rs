//! The AI-decision audit (`audit.sh`, README.md here) run end to end against a real local
//! cluster: every decision is reproduced byte for byte from the restored state, and the two
//! impossible cases — the seed not captured, the model file swapped — say exactly why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stateledger_tests::binary;
use stateledger_tests::cluster::TestCluster;

fn restore_json(dir: &Path) -> serde_json::Value {
    let path = dir.join("restore.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("restore.json is JSON")
}

/// The findings of a report as (rule, message).
fn findings(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings is a list")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The mutations step's notes (where a replay that could not run is explained).
fn replay_note(report: &serde_json::Value) -> String {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "mutations")
        .map(|s| s["notes"].to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_reproduces_every_decision_and_explains_the_impossible_cases() {
    let mut cluster = TestCluster::new(1);
    cluster.start_all();
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let work: PathBuf = cluster.scratch("audit");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("audit.sh");
    let out = Command::new("sh")
        .arg(&script)
        .env("STATELEDGER", binary::stateledger())
        .env("AI_DECISION", env!("CARGO_BIN_EXE_ai-decision"))
        .env("STATELEDGER_PROFILE", cluster.dir().join("client.toml"))
        .env("WORK", &work)
        .env_remove("STATELEDGER_TIMEOUT")
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "audit.sh failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("every decision reproduced byte for byte"),
        "{stdout}"
    );

    // Everything restored and verified; every decision replayed and matched.
    let exact = restore_json(&work.join("restore"));
    assert_eq!(exact["result"], "exact", "{exact:#}");
    assert_eq!(exact["replay"]["mutations"], 5, "{exact:#}");
    assert_eq!(exact["replay"]["digests_checked"], 5, "{exact:#}");
    assert!(exact["replay"]["divergence"].is_null(), "{exact:#}");
    for step in exact["steps"].as_array().expect("steps") {
        assert_eq!(step["result"], "restored", "{step:#}");
    }
    let decisions = work.join("decisions/credit-decisions");
    let mut compared = 0;
    for entry in std::fs::read_dir(&decisions).expect("decisions were written") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().expect("a file name");
        let replayed = work.join("restore/replayed").join(name);
        assert_eq!(
            std::fs::read(&path).expect("the decision"),
            std::fs::read(&replayed).expect("the replayed decision"),
            "{}",
            path.display()
        );
        compared += 1;
    }
    assert_eq!(compared, 5);

    // The seed was never captured: impossible, because each mutation depends on it.
    let noseed = restore_json(&work.join("restore-noseed"));
    assert_eq!(noseed["result"], "impossible", "{noseed:#}");
    assert_eq!(
        noseed["ledger"]["verdict"]["result"], "impossible",
        "{noseed:#}"
    );
    let f = findings(&noseed);
    let undeclared: Vec<&(String, String)> = f
        .iter()
        .filter(|(rule, _)| rule == "undeclared_nondeterminism")
        .collect();
    assert_eq!(undeclared.len(), 5, "{f:#?}");
    assert!(
        undeclared[0].1.contains("\"sampling-seed\"") && undeclared[0].1.contains("never recorded"),
        "{f:#?}"
    );
    assert_eq!(f.len(), 5, "only the missing seed: {f:#?}");
    assert!(replay_note(&noseed).contains("did not run"), "{noseed:#}");
    assert!(
        !work.join("restore-noseed/replayed").exists(),
        "nothing may be replayed without the seed"
    );

    // The model file given to the auditor is not the recorded one: impossible, and the
    // finding names the file, both digests and what it means.
    let swapped = restore_json(&work.join("restore-swapped"));
    assert_eq!(swapped["result"], "impossible", "{swapped:#}");
    assert_eq!(
        swapped["ledger"]["verdict"]["result"], "exact",
        "{swapped:#}"
    );
    let f = findings(&swapped);
    let mismatch = f
        .iter()
        .find(|(rule, _)| rule == "artifact_digest_mismatch")
        .unwrap_or_else(|| panic!("no artifact_digest_mismatch: {f:#?}"));
    assert!(
        mismatch.1.contains("model/tiny-credit-lm-1.0.0.json"),
        "{mismatch:?}"
    );
    assert!(
        mismatch
            .1
            .contains("a different file under the recorded name"),
        "{mismatch:?}"
    );
    assert_eq!(f.len(), 1, "only the swapped model: {f:#?}");
    assert!(
        replay_note(&swapped).contains("the artifacts step failed"),
        "{swapped:#}"
    );
    let md = std::fs::read_to_string(work.join("restore-swapped/RESTORE.md")).expect("RESTORE.md");
    assert!(md.contains("artifact_digest_mismatch"), "{md}");
}
