//! cargo-fuzz target; the body is `stateledger_fuzz_targets::targets::wal_frame`
//! (crates/stateledger-fuzz-targets), which the stable driver (src/bin/drive.rs) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stateledger_fuzz_targets::targets::wal_frame(data));
