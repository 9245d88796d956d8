//! The JSON proof documents a client keeps and an auditor verifies offline: receipts, consistency
//! proofs and state proofs (docs/PROOFS.md §7), plus bare checkpoints.

pub mod base64_bytes;
pub mod consistency;
pub mod receipt;

pub use consistency::{ConsistencyDocument, ConsistencySummary, CONSISTENCY_FORMAT};
pub use receipt::{Receipt, ReceiptSummary, RECEIPT_FORMAT};

use crate::leaf::LeafError;
use crate::ledger_time::LedgerTime;
use crate::limits::DOCUMENT_BYTES_MAX;
use crate::merkle::ProofError;
use crate::trust::{CheckpointError, TrustPolicy, VerifiedCheckpoint};

/// Why a document does not verify. [`VerifyError::check`] names the failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("document is not valid: {reason}")]
    Document { reason: String },
    #[error("document format is {found:?}, expected {expected:?}")]
    Format {
        found: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Leaf(LeafError),
    #[error("document says leaf index {document} but the leaf encodes index {leaf}")]
    LeafIndexMismatch { document: u64, leaf: u64 },
    #[error("leaf ledger time {leaf_time} is after the checkpoint time {checkpoint_time}, which a checkpoint covering the leaf cannot be")]
    LeafAfterCheckpoint {
        leaf_time: LedgerTime,
        checkpoint_time: LedgerTime,
    },
    #[error("proof has {found} hashes, more than the limit of {max}")]
    ProofTooLong { found: usize, max: usize },
    #[error("inclusion proof: {0}")]
    Inclusion(ProofError),
    #[error("consistency proof: {0}")]
    Consistency(ProofError),
    #[error("the two checkpoints have different origins {old:?} and {new:?}")]
    OriginsDiffer { old: String, new: String },
    #[error("leaf {leaf_index} belongs to system {found:?}, not {expected:?}")]
    StateSystem {
        leaf_index: u64,
        found: String,
        expected: String,
    },
    #[error("leaf {leaf_index} has ledger time {ledger_time}, after T = {at}")]
    StateLeafAfterT {
        leaf_index: u64,
        ledger_time: u64,
        at: u64,
    },
    #[error("back-link chain broken at position {position} (leaf {leaf_index}): it links to {} but the previous shown leaf is {} — a leaf of the system is missing or out of order", describe_link(*found_prev), describe_link(*expected_prev))]
    StateChain {
        position: usize,
        leaf_index: u64,
        expected_prev: Option<u64>,
        found_prev: Option<u64>,
    },
    #[error("completeness boundary: {reason}")]
    StateBoundary { reason: String },
    #[error("the checkpoint's time {checkpoint_time} is before T = {at}: it does not cover T, so records up to T may lie beyond it")]
    StateNotCovered { checkpoint_time: u64, at: u64 },
    #[error("recomputed {what} does not match: {detail}")]
    StateRecomputed { what: String, detail: String },
}

/// "leaf N" or "none (first leaf of the system)".
fn describe_link(link: Option<u64>) -> String {
    match link {
        Some(i) => format!("leaf {i}"),
        None => "none (the system's first leaf)".to_string(),
    }
}

impl VerifyError {
    /// A short, stable name for the check that failed.
    pub fn check(&self) -> &'static str {
        match self {
            VerifyError::Document { .. } => "document",
            VerifyError::Format { .. } => "format",
            VerifyError::Checkpoint(e) => e.check(),
            VerifyError::Leaf(LeafError::Signature(_)) => "writer_signature",
            VerifyError::Leaf(LeafError::Record(_)) => "record",
            VerifyError::Leaf(_) => "leaf_encoding",
            VerifyError::LeafIndexMismatch { .. } => "leaf_index",
            VerifyError::LeafAfterCheckpoint { .. } => "leaf_time",
            VerifyError::ProofTooLong { .. } => "proof_length",
            VerifyError::Inclusion(_) => "inclusion_proof",
            VerifyError::Consistency(_) => "consistency_proof",
            VerifyError::OriginsDiffer { .. } => "checkpoint_origin",
            VerifyError::StateSystem { .. } => "state_system",
            VerifyError::StateLeafAfterT { .. } => "state_time",
            VerifyError::StateChain { .. } => "state_chain",
            VerifyError::StateBoundary { .. } => "state_boundary",
            VerifyError::StateNotCovered { .. } => "state_checkpoint_time",
            VerifyError::StateRecomputed { .. } => "state_recomputed",
        }
    }
}

/// Any document `stateledger verify` accepts.
#[derive(Debug, Clone)]
pub enum Document {
    Receipt(Receipt),
    Consistency(ConsistencyDocument),
    StateProof(Box<crate::state::StateProof>),
    /// A bare signed checkpoint note.
    Checkpoint(String),
}

/// The result of verifying any document.
#[derive(Debug, Clone)]
pub enum Verified {
    Receipt(ReceiptSummary),
    Consistency(ConsistencySummary),
    StateProof(Box<crate::state::StateProofSummary>),
    Checkpoint(VerifiedCheckpoint),
}

impl Document {
    /// Recognises a document: JSON objects by their `format`, anything else as a checkpoint note.
    pub fn parse(bytes: &[u8]) -> Result<Document, VerifyError> {
        if bytes.len() > DOCUMENT_BYTES_MAX {
            return Err(VerifyError::Document {
                reason: format!(
                    "{} bytes is more than the limit of {DOCUMENT_BYTES_MAX}",
                    bytes.len()
                ),
            });
        }
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_none() {
            return Err(VerifyError::Document {
                reason: "it is empty; expected a receipt, consistency proof or state proof \
                         (JSON) or a checkpoint note"
                    .to_string(),
            });
        }
        if first != Some(&b'{') {
            let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::Document {
                reason: "neither a JSON document nor a UTF-8 checkpoint note".to_string(),
            })?;
            return Ok(Document::Checkpoint(text.to_string()));
        }
        #[derive(serde::Deserialize)]
        struct Probe {
            format: String,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(json_error)?;
        match probe.format.as_str() {
            RECEIPT_FORMAT => Ok(Document::Receipt(
                serde_json::from_slice(bytes).map_err(json_error)?,
            )),
            CONSISTENCY_FORMAT => Ok(Document::Consistency(
                serde_json::from_slice(bytes).map_err(json_error)?,
            )),
            crate::state::STATE_PROOF_FORMAT => Ok(Document::StateProof(Box::new(
                serde_json::from_slice(bytes).map_err(json_error)?,
            ))),
            other => Err(VerifyError::Format {
                found: other.to_string(),
                expected: "stateledger.receipt.v1, stateledger.consistency_proof.v1 or stateledger.state_proof.v1",
            }),
        }
    }

    pub fn verify(&self, policy: &TrustPolicy) -> Result<Verified, VerifyError> {
        match self {
            Document::Receipt(r) => r.verify(policy).map(Verified::Receipt),
            Document::Consistency(c) => c.verify(policy).map(Verified::Consistency),
            Document::StateProof(s) => s.verify(policy).map(|v| Verified::StateProof(Box::new(v))),
            Document::Checkpoint(text) => Ok(Verified::Checkpoint(policy.verify_checkpoint(text)?)),
        }
    }
}

pub(crate) fn json_error(e: serde_json::Error) -> VerifyError {
    VerifyError::Document {
        reason: e.to_string(),
    }
}
