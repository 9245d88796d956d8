//! Consistency proofs between two checkpoints of one log.
//!
//! ```json
//! {
//!   "format": "stateledger.consistency_proof.v1",
//!   "old_checkpoint": "<signed note text>",
//!   "new_checkpoint": "<signed note text>",
//!   "proof": ["<base64 hash>", ...]
//! }
//! ```

use crate::documents::VerifyError;
use crate::hash::Hash;
use crate::merkle::{verify_consistency, PROOF_HASHES_MAX};
use crate::trust::{TrustPolicy, VerifiedCheckpoint};

pub const CONSISTENCY_FORMAT: &str = "stateledger.consistency_proof.v1";

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyDocument {
    pub format: String,
    pub old_checkpoint: String,
    pub new_checkpoint: String,
    pub proof: Vec<Hash>,
}

/// What a verified consistency proof shows: `old` is a prefix of `new`.
#[derive(Clone, Debug)]
pub struct ConsistencySummary {
    pub old: VerifiedCheckpoint,
    pub new: VerifiedCheckpoint,
}

impl ConsistencyDocument {
    pub fn new(
        old_checkpoint: String,
        new_checkpoint: String,
        proof: Vec<Hash>,
    ) -> ConsistencyDocument {
        ConsistencyDocument {
            format: CONSISTENCY_FORMAT.to_string(),
            old_checkpoint,
            new_checkpoint,
            proof,
        }
    }

    /// Checks both checkpoints against the policy, then the proof between them.
    pub fn verify(&self, policy: &TrustPolicy) -> Result<ConsistencySummary, VerifyError> {
        if self.format != CONSISTENCY_FORMAT {
            return Err(VerifyError::Format {
                found: self.format.clone(),
                expected: CONSISTENCY_FORMAT,
            });
        }
        let old = policy.verify_checkpoint(&self.old_checkpoint)?;
        let new = policy.verify_checkpoint(&self.new_checkpoint)?;
        verify_checkpoint_consistency(&old, &new, &self.proof)?;
        Ok(ConsistencySummary { old, new })
    }
}

/// Verifies a consistency proof between two verified checkpoints (also used by clients that keep
/// their last checkpoint).
pub fn verify_checkpoint_consistency(
    old: &VerifiedCheckpoint,
    new: &VerifiedCheckpoint,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if proof.len() > PROOF_HASHES_MAX {
        return Err(VerifyError::ProofTooLong {
            found: proof.len(),
            max: PROOF_HASHES_MAX,
        });
    }
    let (o, n) = (&old.checkpoint, &new.checkpoint);
    if o.origin != n.origin {
        return Err(VerifyError::OriginsDiffer {
            old: o.origin.clone(),
            new: n.origin.clone(),
        });
    }
    verify_consistency(o.size, n.size, proof, &o.root, &n.root).map_err(VerifyError::Consistency)
}
