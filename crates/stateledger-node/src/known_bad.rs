//! Simulation-only switches that re-introduce known-bad behaviour, so the deterministic
//! simulation can prove it catches that class of bug (`simulation/tests/known_bad.rs`).
//!
//! Compiled only under `cfg(madsim)`: a production build has no such code path. The switches
//! travel with [`crate::node::NodeParts`] (one value per started node), never through a static,
//! so parallel simulation runs in one process cannot leak them into each other (STACK.md
//! pitfall 4).

/// Which known-bad behaviours a node re-introduces. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KnownBad {
    /// Report Raft log appends as durable as soon as they are written, without syncing them
    /// (`store/log_store.rs`). Breaks openraft's `RaftLogStorage` contract: a crash can then lose
    /// entries a quorum acknowledged, i.e. committed and acknowledged records.
    pub ack_log_before_sync: bool,
}
