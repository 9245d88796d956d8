//! Running many seeds: each in its own child process (`stateledger-sim --child ...`), `jobs` at
//! a time. A process per seed is what makes a seed's result independent of what else ran: see
//! [`crate::run::run_seed`] for the process-wide state in tokio and std that would leak between
//! runs sharing a process.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::options::SimOptions;
use crate::run::Outcome;

/// The last line a child prints: `@result pass|fail kind=... invariants=a,b digest=...`.
const RESULT_PREFIX: &str = "@result ";

/// The result line for a finished run (printed by the child).
pub fn result_line(outcome: &Outcome) -> String {
    match &outcome.result {
        Ok(r) => format!("{RESULT_PREFIX}pass digest={}", r.trace_digest),
        Err(f) => format!(
            "{RESULT_PREFIX}fail kind={} invariants={}",
            f.kind(),
            f.invariants().join(",")
        ),
    }
}

/// A run that finished in a child process.
#[derive(Clone, Debug)]
pub struct Finished {
    pub options: SimOptions,
    pub passed: bool,
    /// The trace digest of a passing run.
    pub digest: Option<String>,
    /// `violation`, `liveness`, `panic`, `crash` when the child died without a result, or `hang`
    /// when it was killed for taking too long.
    pub failure_kind: Option<String>,
    pub invariants: Vec<String>,
    /// The child's one-line summary.
    pub summary: String,
    /// Everything the child printed (its failure report, panics, node logs).
    pub output: String,
    pub real_time: Duration,
}

impl Finished {
    /// What to print for a failed run: the child's report, or how it died.
    pub fn failure_text(&self) -> String {
        format!(
            "{}\n(replay: {})",
            self.output.trim_end(),
            self.options.replay_command()
        )
    }
}

/// Real time one seed may take before its child is killed and the run reported as a `hang`
/// (a seed normally takes seconds; only a bug — a loop that never yields to simulated time —
/// takes longer). `SIM_SEED_TIMEOUT_SECS` overrides it.
pub const SEED_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// Runs one seed in a child process of `exe` (the `stateledger-sim` binary), killed as a `hang`
/// after `SIM_SEED_TIMEOUT_SECS` (default [`SEED_TIMEOUT_DEFAULT`]).
pub fn run_isolated(exe: &Path, options: &SimOptions) -> Finished {
    let timeout = Duration::from_secs(env_u64(
        "SIM_SEED_TIMEOUT_SECS",
        SEED_TIMEOUT_DEFAULT.as_secs(),
    ));
    run_isolated_within(exe, options, timeout)
}

/// [`run_isolated`] with an explicit real-time limit.
pub fn run_isolated_within(exe: &Path, options: &SimOptions, timeout: Duration) -> Finished {
    let started = Instant::now();
    let (text, mut result_line) = match run_child(exe, options, timeout) {
        Ok(text) => {
            let line = text
                .lines()
                .rev()
                .find(|l| l.starts_with(RESULT_PREFIX))
                .map(str::to_string);
            (text, line)
        }
        Err(text) => (text, None),
    };
    let real_time = started.elapsed();
    let summary = text
        .lines()
        .find(|l| l.starts_with("seed "))
        .unwrap_or("no summary")
        .to_string();
    let line = result_line.take().unwrap_or_default();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    let passed = line.starts_with(&format!("{RESULT_PREFIX}pass"));
    Finished {
        options: options.clone(),
        passed,
        digest: field("digest="),
        failure_kind: if passed {
            None
        } else if text.starts_with(HANG_PREFIX) {
            Some("hang".into())
        } else {
            Some(field("kind=").unwrap_or_else(|| "crash".into()))
        },
        invariants: field("invariants=")
            .map(|l| {
                l.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        summary,
        output: text,
        real_time,
    }
}

const HANG_PREFIX: &str = "hang: ";

/// Runs the child to completion or until `timeout`; returns everything it printed, or why it
/// could not run or was killed.
fn run_child(exe: &Path, options: &SimOptions, timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(exe)
        .arg("--child")
        .args(options.replay_args().split_whitespace())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let hung = loop {
        match child.try_wait() {
            Ok(Some(_)) => break false,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            // A watchdog, not synchronisation: the child's exit cannot be awaited with a
            // deadline in std.
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for the child: {e}")),
        }
    };
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    if hung {
        return Err(format!(
            "{HANG_PREFIX}seed {} did not finish within {timeout:?} of real time (a loop that never \
             yields to simulated time?); killed. Its output so far:\n{text}",
            options.seed
        ));
    }
    Ok(text)
}

/// Runs every option set in child processes, `jobs` at a time; `progress` sees each as it
/// finishes. Results come back in the order of `runs`.
pub fn run_all(
    exe: &Path,
    runs: Vec<SimOptions>,
    jobs: usize,
    progress: impl Fn(&Finished) + Send + Sync,
) -> Vec<Finished> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Finished>>> = Mutex::new(vec![None; runs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(options) = runs.get(i) else {
                    return;
                };
                let finished = run_isolated(exe, options);
                progress(&finished);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(finished);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|o| o.expect("every run finished"))
        .collect()
}

/// Reads a number from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}
