//! Deterministic simulation of whole StateLedger clusters under faults.
//!
//! The real node code — openraft, the ledger state machine, checkpoint cosigning, the gRPC
//! services over madsim-tonic — runs for 3- and 5-node clusters inside one madsim runtime. One
//! seed decides everything: the fault plan (partitions, packet loss and latency, crashes that lose
//! unsynced writes, pauses, clock skew and jumps, membership changes, a flipped stored bit), the
//! client workload, and every scheduling and network decision. Invariants are checked
//! continuously (`invariants/`, one file each); after the safety phase the faults heal and the
//! cluster must converge and accept writes within a bound of simulated time (`liveness.rs`).
//! A failure names the seed and the command that replays it.
//!
//! Built only with `RUSTFLAGS="--cfg madsim"`; see docs/SIMULATION.md.
#![cfg(madsim)]
#![forbid(unsafe_code)]

pub mod batch;
pub mod client;
pub mod cluster;
pub mod faults;
pub mod history;
pub mod invariants;
pub mod liveness;
pub mod options;
pub mod plan;
pub mod run;
pub mod trace;
pub mod workload;
pub mod world;

pub use options::{KnownBad, SimOptions, Switch};
pub use run::{run_seed, Failure, Outcome, Report};
