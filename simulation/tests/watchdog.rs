//! A seed whose child never finishes is killed after the real-time limit and reported as a
//! `hang`, with the seed, instead of stalling the batch (and CI).
#![cfg(madsim)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use stateledger_simulation::batch::run_isolated_within;
use stateledger_simulation::SimOptions;

#[test]
fn a_child_that_never_finishes_is_killed_and_reported_as_a_hang() {
    let dir = std::env::temp_dir().join(format!("stateledger-watchdog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Stands in for a seed stuck in a loop: prints a line, then never exits on its own.
    let exe = dir.join("stuck-sim");
    std::fs::write(
        &exe,
        "#!/bin/sh\necho 'seed 7 (3 nodes): running'\nexec sleep 600\n",
    )
    .expect("write the script");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let started = Instant::now();
    let run = run_isolated_within(&exe, &SimOptions::new(7, 3), Duration::from_millis(500));
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(!run.passed);
    assert_eq!(run.failure_kind.as_deref(), Some("hang"), "{}", run.output);
    assert!(
        run.output.contains("seed 7 did not finish"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("running"),
        "its output so far is kept: {}",
        run.output
    );
    assert!(
        run.failure_text().contains("--seed 7"),
        "{}",
        run.failure_text()
    );
    assert!(
        took < Duration::from_secs(60),
        "killed promptly, not after the sleep: {took:?}"
    );
}
