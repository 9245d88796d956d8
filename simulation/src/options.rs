//! What one simulation run is: a seed, a cluster size, phase lengths and the known-bad switches.
//! Everything else — faults, workload, scheduling — is drawn from the seed.

use std::time::Duration;

pub use stateledger_node::known_bad::{KnownBad, Switch};

/// Default length of the safety phase (faults active), in simulated time.
pub const SAFETY_DEFAULT: Duration = Duration::from_secs(20);
/// Default bound on the liveness phase: after the faults heal, the cluster must converge and
/// accept a write within this much simulated time.
pub const LIVENESS_BOUND_DEFAULT: Duration = Duration::from_secs(60);

/// One simulation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    pub seed: u64,
    /// Voters at the start (3 or 5). One more node runs as a spare for membership changes.
    pub nodes: usize,
    pub safety: Duration,
    pub liveness_bound: Duration,
    pub known_bad: KnownBad,
    /// Print trace lines as they happen (debugging a replay).
    pub echo_trace: bool,
}

impl SimOptions {
    pub fn new(seed: u64, nodes: usize) -> SimOptions {
        SimOptions {
            seed,
            nodes,
            safety: SAFETY_DEFAULT,
            liveness_bound: LIVENESS_BOUND_DEFAULT,
            known_bad: KnownBad::default(),
            echo_trace: false,
        }
    }

    /// The arguments of `stateledger-sim` that replay exactly this run.
    pub fn replay_args(&self) -> String {
        let mut args = format!("--seed {} --nodes {}", self.seed, self.nodes);
        if self.safety != SAFETY_DEFAULT {
            args.push_str(&format!(" --safety-ms {}", self.safety.as_millis()));
        }
        if self.liveness_bound != LIVENESS_BOUND_DEFAULT {
            args.push_str(&format!(
                " --liveness-ms {}",
                self.liveness_bound.as_millis()
            ));
        }
        for switch in self.known_bad.switches() {
            args.push_str(&format!(" --known-bad {switch}"));
        }
        args
    }

    /// The shell command that replays exactly this run, printing its trace.
    pub fn replay_command(&self) -> String {
        format!(
            "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run --release -p stateledger-simulation --bin stateledger-sim -- {} --trace",
            self.replay_args()
        )
    }
}
