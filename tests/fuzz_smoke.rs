//! Every fuzz target (crates/stateledger-fuzz-targets) on its corpus — seeded from
//! docs/test-vectors — and on random mutations of it for a few seconds each, on stable Rust and
//! without libFuzzer: no input may panic or hang a parser. `STATELEDGER_FUZZ_SECONDS` sets the
//! time per target (default 3); the long, coverage-guided runs are `cargo +nightly fuzz run
//! <target>` (docs/SECURITY.md). A failing input is saved under fuzz/artifacts/<target>/ and
//! named in the panic.

use std::path::Path;
use std::time::Duration;

use stateledger_fuzz_targets as fuzz;

#[test]
fn every_fuzz_target_survives_its_corpus_and_random_mutations() {
    let seconds: u64 = std::env::var("STATELEDGER_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("STATELEDGER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match fuzz::drive_all(&root, Duration::from_secs(seconds), seed) {
        Ok(reports) => {
            for (name, r) in reports {
                eprintln!("{name:<16} {:>8} cases from {} seeds", r.cases, r.seeds);
                assert!(r.seeds > 1, "{name} has a corpus");
            }
        }
        Err(f) => {
            let saved = fuzz::save_failure(&root, &f)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("(not saved: {e})"));
            panic!(
                "fuzz target {} {} on an input saved at {saved}; replay with \
                 `cd fuzz && cargo run --bin drive -- --replay {saved}` (seed {seed})",
                f.target, f.what
            );
        }
    }
}
