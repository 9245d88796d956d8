//! `stateledger bench cluster` runs end to end on a real 3-node cluster (TLS, fsync), counts
//! records, not requests, when requests carry several records, and measures the RPC floor when
//! asked; with `--output json` both benchmarks print one JSON document (docs/CLI.md) on
//! standard output and their running lines on standard error. It measures nothing here:
//! the numbers are for docs/PERFORMANCE.md, printed by the benchmark itself.

use std::process::Command;

#[test]
fn bench_cluster_runs_counts_records_per_request_and_measures_the_floor() {
    let out = Command::new(env!("CARGO_BIN_EXE_stateledger"))
        .args([
            "bench",
            "cluster",
            "--levels",
            "2",
            "--seconds",
            "2",
            "--records-per-request",
            "4",
            "--pool",
            "20000",
            "--floor",
        ])
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = result_line(&stdout, "stateledger");
    assert!(line.contains("rec/s (4 per request)"), "{line}");
    let floor = result_line(&stdout, "rpc floor");
    assert!(floor.contains("ops/s"), "{floor}");
}

/// The result line that starts with `name`, checked to have no errors and a positive rate.
fn result_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(name) && l.contains("clients"))
        .unwrap_or_else(|| panic!("no {name} line in:\n{stdout}"));
    assert!(line.contains("errors    0"), "{line}");
    // The rate follows "<clients> clients".
    let words: Vec<&str> = line.split_whitespace().collect();
    let rate: f64 = words
        .iter()
        .position(|w| *w == "clients")
        .and_then(|i| words.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {line}"));
    assert!(rate > 0.0, "{line}");
    line
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_stateledger"))
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("leaves") || stderr.contains("clients"),
        "the running lines are on stderr:\n{stderr}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout is one JSON document:\n{stdout}"))
}

#[test]
fn both_benchmarks_print_json_on_request() {
    let run = json_of(&[
        "bench",
        "cluster",
        "--levels",
        "2",
        "--seconds",
        "1",
        "--records-per-request",
        "2",
        "--pool",
        "4000",
    ]);
    let levels = run["stateledger"].as_array().expect("levels");
    assert_eq!(levels.len(), 1, "{run}");
    assert_eq!(levels[0]["clients"], 2, "{run}");
    assert_eq!(levels[0]["records_per_request"], 2, "{run}");
    assert!(
        levels[0]["records_per_second"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{run}"
    );
    assert!(levels[0]["latency_ms_p99"].is_f64(), "{run}");
    assert_eq!(run["floor"], serde_json::json!([]), "no --floor: {run}");
    assert_eq!(run["etcd"], serde_json::json!([]), "no --etcd: {run}");

    let run = json_of(&[
        "bench",
        "reconstruct",
        "--ledgers",
        "300",
        "--system-records",
        "20",
    ]);
    let ledgers = run["ledgers"].as_array().expect("ledgers");
    assert_eq!(ledgers.len(), 1, "{run}");
    assert_eq!(ledgers[0]["leaves"], 300, "{run}");
    assert_eq!(
        ledgers[0]["records"], 21,
        "its 20 records and its grant: {run}"
    );
    assert!(ledgers[0]["total_ms"].is_f64(), "{run}");
    assert!(ledgers[0]["verdict"].is_string(), "{run}");
}
