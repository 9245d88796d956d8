//! The ledger state machine and its snapshots.

pub mod keys;
pub mod meta;
pub mod snapshot;
pub mod state;
pub mod state_machine;
pub mod system_names;

pub use state::{check_quorum, Ledger, Progress, ReadError, SystemHistory};
pub use state_machine::LedgerStateMachine;
