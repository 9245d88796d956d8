//! One seed, one trace: running a seed twice (each in a fresh process) gives byte-identical
//! traces — every fault, every client answer, every server's state at every second.
#![cfg(madsim)]

use std::path::Path;

use stateledger_simulation::batch::run_isolated;
use stateledger_simulation::SimOptions;

const SIM: &str = env!("CARGO_BIN_EXE_stateledger-sim");

#[test]
fn the_same_seed_gives_the_same_trace() {
    for (seed, nodes) in [(7, 3), (11, 5), (23, 3)] {
        let options = SimOptions::new(seed, nodes);
        let first = run_isolated(Path::new(SIM), &options);
        let second = run_isolated(Path::new(SIM), &options);
        assert!(first.passed, "{}", first.failure_text());
        assert!(second.passed, "{}", second.failure_text());
        assert!(first.digest.is_some());
        assert_eq!(
            first.digest, second.digest,
            "seed {seed} ({nodes} nodes) ran twice with different traces:\n{}\n{}",
            first.summary, second.summary
        );
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let a = run_isolated(Path::new(SIM), &SimOptions::new(1, 3));
    let b = run_isolated(Path::new(SIM), &SimOptions::new(2, 3));
    assert!(
        a.passed && b.passed,
        "{}\n{}",
        a.failure_text(),
        b.failure_text()
    );
    assert_ne!(a.digest, b.digest, "the seed must matter");
}
