//! The `stateledger` command run as a user runs it: arguments in, exit status, standard output
//! and standard error out, and how long it took.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// One finished run.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Panics (showing the run) unless the exit status is `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "{self}");
        self
    }

    /// Standard output parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self}"))
    }

    /// Standard output parsed as JSON lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("line {l:?} is not JSON ({e}): {self}"))
            })
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`stateledger {}` exited {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `stateledger <args>` with `STATELEDGER_PROFILE` and `STATELEDGER_TIMEOUT` cleared, so
/// only what the test passes counts.
pub fn run(args: &[&str]) -> Run {
    let started = Instant::now();
    let out = Command::new(super::binary::stateledger())
        .args(args)
        .env_remove("STATELEDGER_PROFILE")
        .env_remove("STATELEDGER_TIMEOUT")
        .output()
        .expect("stateledger runs");
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Runs `stateledger <args> --profile <profile>`.
pub fn with_profile(profile: &Path, args: &[&str]) -> Run {
    let profile = profile.to_str().expect("a UTF-8 temporary path");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--profile", profile]);
    run(&all)
}
