//! The harness catches real bugs: with a known-bad behaviour switched back on, some seed fails
//! an invariant. Here: log appends acknowledged before they are synced
//! (`KnownBad::ack_log_before_sync`), so power losses lose committed, acknowledged records.
#![cfg(madsim)]

use std::path::Path;

use stateledger_simulation::batch::run_isolated;
use stateledger_simulation::{KnownBad, SimOptions};

const SIM: &str = env!("CARGO_BIN_EXE_stateledger-sim");
/// Seeds tried before giving up; the first catches it on most seed ranges.
const SEEDS_MAX: u64 = 16;

#[test]
fn acknowledging_log_appends_before_sync_is_caught() {
    let known_bad = KnownBad {
        ack_log_before_sync: true,
    };
    for seed in 0..SEEDS_MAX {
        let options = SimOptions {
            known_bad,
            ..SimOptions::new(seed, 3)
        };
        let run = run_isolated(Path::new(SIM), &options);
        println!("{}", run.summary);
        // Caught by an invariant (a lost or changed acknowledged record, diverged ledgers or
        // conflicting checkpoints), not only by its side effects (a cluster that cannot make
        // progress after losing committed entries: a repairing node waits for a commit index
        // that no longer exists).
        if run.failure_kind.as_deref() != Some("violation") {
            continue;
        }
        println!(
            "caught at seed {seed} by {:?}; replay: {}",
            run.invariants,
            options.replay_command()
        );
        return;
    }
    panic!("no seed of 0..{SEEDS_MAX} caught log appends acknowledged before sync");
}
