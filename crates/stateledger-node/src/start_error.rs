//! Why a node could not start: what `node::start`, `recovery` and `NodeParts::load` report, and
//! what `stateledger node run` turns into its exit status.

use crate::store::StoreError;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{0}; this node will not serve it — remove its data directory and re-add the node so it copies the ledger from the cluster")]
    Corrupt(StoreError),
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("configuration: {0}")]
    Config(String),
}
