//! The fuzz targets without libFuzzer (stable Rust): each target's corpus, then random mutations
//! of it, for a while (crates/stateledger-fuzz-targets). A failing input is saved under
//! `fuzz/artifacts/<target>/`.
//!
//! ```text
//! cargo run --release --bin drive -- [SECONDS_PER_TARGET] [--target NAME] [--seed N]
//! cargo run --release --bin drive -- --replay fuzz/artifacts/<target>/crash-...
//! cargo run --release --bin drive -- --write-corpus    # seeds into fuzz/corpus/ for cargo-fuzz
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use stateledger_fuzz_targets::{drive, save_failure, TARGETS};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seconds = 10u64;
    let mut only: Option<String> = None;
    let mut seed = 1u64;
    let mut replay: Option<PathBuf> = None;
    let mut write_corpus = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--target" => only = args.next(),
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            "--replay" => replay = args.next().map(PathBuf::from),
            "--write-corpus" => write_corpus = true,
            s => match s.parse() {
                Ok(n) => seconds = n,
                Err(_) => {
                    eprintln!("usage: drive [SECONDS_PER_TARGET] [--target NAME] [--seed N] [--replay FILE]");
                    return ExitCode::from(2);
                }
            },
        }
    }
    if write_corpus {
        // cargo-fuzz starts from fuzz/corpus/<target>/: give it every seed the driver uses.
        for t in TARGETS {
            let dir = root.join("fuzz/corpus").join(t.name);
            let seeds = stateledger_fuzz_targets::seeds(&root, t.name);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("cannot create {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            for (i, s) in seeds.iter().enumerate() {
                if let Err(e) = std::fs::write(dir.join(format!("seed-{i:04}")), s) {
                    eprintln!("cannot write into {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
            }
            eprintln!("{}: {} seeds in {}", t.name, seeds.len(), dir.display());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = replay {
        let Some(target) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| TARGETS.iter().find(|t| n == t.name))
        else {
            eprintln!("{}: expected fuzz/artifacts/<target>/<file>", path.display());
            return ExitCode::from(2);
        };
        let input = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        (target.run)(&input);
        eprintln!("{}: no failure", target.name);
        return ExitCode::SUCCESS;
    }
    for t in TARGETS {
        if only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        match drive(&root, t, Duration::from_secs(seconds), seed) {
            Ok(r) => eprintln!("{:<16} {:>9} cases from {} seeds: ok", t.name, r.cases, r.seeds),
            Err(f) => {
                let saved = save_failure(&root, &f)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("(not saved: {e})"));
                eprintln!("{}: {} — input saved at {saved}", f.target, f.what);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
