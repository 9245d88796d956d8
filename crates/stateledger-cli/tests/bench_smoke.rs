//! `stateledger bench cluster` runs end to end on a real 3-node cluster (TLS, fsync), counts
//! records, not requests, when requests carry several records, and measures the RPC floor when
//! asked. It measures nothing here:
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
