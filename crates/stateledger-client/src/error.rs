//! Client errors, grouped by who is at fault.

use stateledger_core::documents::VerifyError;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The cluster refused the request; `code` is the gRPC status code.
    #[error("refused by the ledger ({code:?}): {message}")]
    Rejected { code: tonic::Code, message: String },
    /// Every record of the request is already in the ledger (a genuine duplicate, not a retry).
    #[error("every record is already in the ledger at leaves {indexes:?}")]
    Duplicate { indexes: Vec<u64> },
    /// No node answered (or no leader could be found) before the deadline.
    #[error("no node could answer: {0}")]
    Unavailable(String),
    /// An answer did not verify: the node served something the trust policy does not back.
    #[error("answer from {endpoint} does not verify: {error}")]
    Verify {
        endpoint: String,
        error: VerifyError,
    },
    /// Two checkpoints the client verified are not consistent: the log was rewritten or forked.
    #[error("history was rewritten or forked: checkpoint of size {new_size} is not consistent with the verified checkpoint of size {old_size}: {reason}")]
    Fork {
        old_size: u64,
        new_size: u64,
        reason: String,
    },
    /// The answer is well-signed but malformed or not what was asked.
    #[error("answer from {endpoint} is malformed: {reason}")]
    Malformed { endpoint: String, reason: String },
    /// Bad input from the caller (invalid record, bad configuration).
    #[error("{0}")]
    Invalid(String),
}
