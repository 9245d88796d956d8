//! Raft: the openraft type configuration, the madsim runtime, and the network over tonic.

pub mod codec;
pub mod election;
pub mod network;
#[cfg(madsim)]
pub mod runtime;
pub mod types;

pub use types::*;
