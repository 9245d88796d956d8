//! Why a node could not start: what `node::start`, `recovery` and `NodeParts::load` report, and
//! what `stateledger node run` turns into its exit status.

use std::path::PathBuf;

use crate::config::ConfigInvalid;
use crate::store::StoreError;
use crate::tls::TlsError;

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
    // The typed reasons below are not marked as sources: their text is already in the message,
    // which `stateledger node run`'s error chain (`{:#}`) would otherwise print twice.
    #[error("configuration: {0}")]
    InvalidConfig(ConfigInvalid),
    #[error("configuration: {0}")]
    Tls(TlsError),
    #[error("configuration: TLS files ({}): {reason}", cert.display())]
    TlsFiles { cert: PathBuf, reason: TlsError },
}

impl From<ConfigInvalid> for StartError {
    fn from(e: ConfigInvalid) -> StartError {
        StartError::InvalidConfig(e)
    }
}

impl From<TlsError> for StartError {
    fn from(e: TlsError) -> StartError {
        StartError::Tls(e)
    }
}
