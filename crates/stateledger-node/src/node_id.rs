//! A node's id in the cluster: what Raft calls it, what its certificate names
//! (`stateledger:node:<id>`, `tls/identity.rs`) and what the configuration gives it. Here, below
//! both `raft` and `tls`, so that neither imports the other for it.

/// A node's id (openraft's `NodeId`, so a plain `u64`).
pub type NodeId = u64;
