//! The CI seed set: `SIM_SEEDS` seeds (default 32) from `SIM_SEED_START` (default 0), plus the
//! seeds that once found a bug, for a 3-node and a 5-node cluster, each seed in its own process.
//! Every failure prints its seed, what broke and the command that replays it. Run many more with the `stateledger-sim` binary
//! (docs/SIMULATION.md).
#![cfg(madsim)]

use std::path::Path;

use stateledger_simulation::batch::{env_u64, run_all};
use stateledger_simulation::SimOptions;

const SIM: &str = env!("CARGO_BIN_EXE_stateledger-sim");

/// Seeds that once failed, run on top of the range (a later code change can move a schedule
/// away from the bug, so each also has a note of what it found).
/// - 500 on 3 nodes: a checkpoint cosigned by 2 of 3 voters was refused when applied after a
///   4th voter joined, and the leader never cosigned that state again (checkpointer.rs).
fn regression_seeds(nodes: usize) -> &'static [u64] {
    match nodes {
        3 => &[500],
        _ => &[],
    }
}

fn run_set(nodes: usize) {
    let count = env_u64("SIM_SEEDS", 32);
    let start = env_u64("SIM_SEED_START", 0);
    let jobs = env_u64("SIM_JOBS", 1) as usize;
    let runs = (start..start + count)
        .chain(regression_seeds(nodes).iter().copied())
        .map(|seed| SimOptions::new(seed, nodes))
        .collect();
    let finished = run_all(Path::new(SIM), runs, jobs, |f| println!("{}", f.summary));
    let failed: Vec<_> = finished.iter().filter(|f| !f.passed).collect();
    for f in &failed {
        eprintln!("\n{}\n", f.failure_text());
    }
    assert!(
        failed.is_empty(),
        "{} of {count} seeds failed on {nodes} nodes: {:?} (each report above ends with its replay command)",
        failed.len(),
        failed.iter().map(|f| f.options.seed).collect::<Vec<_>>()
    );
}

#[test]
fn seeds_on_3_nodes() {
    run_set(3);
}

#[test]
fn seeds_on_5_nodes() {
    run_set(5);
}
