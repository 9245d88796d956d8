//! The ledger state machine and its snapshots, one job per file. Imports run one way:
//!
//! - `keys`, `meta`, `system_names`, `signed_checkpoint`, `blocks` (the leaf codec and leaf
//!   storage) and `admission` (the pure rules for appends) know nothing of the rest;
//! - `index` (the indexes derived from the leaves) builds on `admission`'s grant rule;
//! - `inner` is the in-memory state (loaded and checked at start) over `blocks` and `index`;
//! - `state` is the shared [`Ledger`]: its lock, progress and corruption report;
//! - `checkpoints`, `reads`, `apply`, `snapshot` each add one job's methods to [`Ledger`], and
//!   `state_machine` is openraft's face of it.

pub mod admission;
pub mod apply;
pub mod blocks;
pub mod checkpoints;
mod index;
mod inner;
pub mod keys;
pub mod meta;
pub mod reads;
pub mod signed_checkpoint;
pub mod snapshot;
pub mod state;
pub mod state_machine;
pub mod system_names;
#[cfg(test)]
mod tests;

pub use apply::{CommandRefusal, Evidence};
pub use checkpoints::{check_quorum, CheckpointError, CheckpointMismatch, PublishRefusal};
pub use reads::{ReadError, SystemHistory};
pub use signed_checkpoint::{SignedCheckpoint, SignedCheckpointError};
pub use state::{Ledger, Progress};
pub use state_machine::LedgerStateMachine;
