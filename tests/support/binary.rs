//! The `stateledger` executable under test.
//!
//! It lives next to the test executables' directory: `<target dir>/<profile>/stateledger`, found
//! from `std::env::current_exe()` (`<target dir>/<profile>/deps/<test>-<hash>`). `cargo test`
//! builds it only for the CLI's own tests, so when it is missing — or older than the sources of
//! the crates it is made of — it is built here once per test process with
//! `cargo build -p stateledger-cli`, and that is said on stderr. `STATELEDGER_BIN` overrides the
//! path (then nothing is built).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// What the binary is built from, relative to the workspace root (each crate's `src/`,
/// `build.rs` and manifest; not its tests, which cargo does not link into the binary).
const SOURCES: &[&str] = &[
    "Cargo.lock",
    "proto",
    "crates/stateledger-cli/src",
    "crates/stateledger-cli/build.rs",
    "crates/stateledger-cli/Cargo.toml",
    "crates/stateledger-client/src",
    "crates/stateledger-client/Cargo.toml",
    "crates/stateledger-collect/src",
    "crates/stateledger-collect/Cargo.toml",
    "crates/stateledger-core/src",
    "crates/stateledger-core/Cargo.toml",
    "crates/stateledger-node/src",
    "crates/stateledger-node/Cargo.toml",
    "crates/stateledger-proto/src",
    "crates/stateledger-proto/build.rs",
    "crates/stateledger-proto/Cargo.toml",
    "vendor/openraft/src",
];

/// The path of the `stateledger` executable, built if missing or stale.
pub fn stateledger() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate_or_build)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace root")
        .to_path_buf()
}

fn locate_or_build() -> PathBuf {
    if let Some(path) = std::env::var_os("STATELEDGER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable knows its path");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in <target>/<profile>/deps");
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory sits in the target directory");
    let bin = profile_dir.join("stateledger");
    let why = match std::fs::metadata(&bin).and_then(|m| m.modified()) {
        Err(_) => Some("is missing".to_string()),
        Ok(built) => newest_source(&workspace_root())
            .filter(|(newest, _)| *newest > built)
            .map(|(_, path)| format!("is older than {}", path.display())),
    };
    let Some(why) = why else { return bin };
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "stateledger-tests: {} {why}; building it with `cargo build -p stateledger-cli --profile {profile}`",
        bin.display()
    );
    let status = Command::new(cargo)
        .args(["build", "-p", "stateledger-cli", "--bin", "stateledger"])
        .args(["--profile", &profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo build -p stateledger-cli failed ({status})"
    );
    assert!(
        bin.exists(),
        "cargo build did not produce {}",
        bin.display()
    );
    bin
}

/// The most recently modified file among [`SOURCES`] (skipping build output directories).
fn newest_source(root: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = SOURCES.iter().map(|s| root.join(s)).collect();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if let Ok(modified) = meta.modified() {
            if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                newest = Some((modified, path));
            }
        }
    }
    newest
}

/// Runs `stateledger <args>` to completion.
pub fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(stateledger())
        .args(args)
        .output()
        .expect("stateledger runs")
}
