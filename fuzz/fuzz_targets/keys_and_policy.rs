//! cargo-fuzz target; the body is `stateledger_fuzz::targets::keys_and_policy` (src/lib.rs), which the
//! stable driver (src/bin/drive.rs) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stateledger_fuzz::targets::keys_and_policy(data));
