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
    let line = stdout
        .lines()
        .find(|l| l.starts_with("stateledger") && l.contains("clients"))
        .unwrap_or_else(|| panic!("no result line in:\n{stdout}"));
    assert!(line.contains("rec/s (4 per request)"), "{line}");
    assert!(line.contains("errors    0"), "{line}");
    let rate: f64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {line}"));
    assert!(rate > 0.0, "{line}");

    let floor = stdout
        .lines()
        .find(|l| l.starts_with("rpc floor") && l.contains("clients"))
        .unwrap_or_else(|| panic!("no floor line in:\n{stdout}"));
    assert!(floor.contains("ops/s"), "{floor}");
    assert!(floor.contains("errors    0"), "{floor}");
    let calls: f64 = floor
        .split_whitespace()
        .nth(4)
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {floor}"));
    assert!(calls > 0.0, "{floor}");
}
