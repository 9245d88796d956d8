//! Raft: the openraft type configuration, the madsim runtime, and the network over tonic.
//! Elections are driven by `crate::election`.

pub mod codec;
pub mod network;
#[cfg(madsim)]
pub mod runtime;
pub mod types;

pub use types::*;
