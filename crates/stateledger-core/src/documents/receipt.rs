//! Receipts: a leaf, its index, its inclusion proof, and a quorum-signed checkpoint.
//!
//! ```json
//! {
//!   "format": "stateledger.receipt.v1",
//!   "leaf_index": 42,
//!   "leaf": "<base64 leaf bytes>",
//!   "inclusion_proof": ["<base64 hash>", ...],
//!   "checkpoint": "<signed note text>"
//! }
//! ```

use crate::documents::VerifyError;
use crate::hash::Hash;
use crate::leaf::Leaf;
use crate::merkle::{verify_inclusion, LeafIndex, PROOF_HASHES_MAX};
use crate::record::pb;
use crate::trust::{TrustPolicy, VerifiedCheckpoint};

pub const RECEIPT_FORMAT: &str = "stateledger.receipt.v1";

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub format: String,
    pub leaf_index: u64,
    #[serde(with = "crate::documents::base64_bytes")]
    pub leaf: Vec<u8>,
    pub inclusion_proof: Vec<Hash>,
    pub checkpoint: String,
}

/// What a verified receipt proves.
#[derive(Clone, Debug)]
pub struct ReceiptSummary {
    pub leaf: Leaf,
    pub record: pb::Record,
    pub leaf_hash: Hash,
    pub checkpoint: VerifiedCheckpoint,
}

/// Verifies one leaf with its inclusion proof against an already verified checkpoint. Shared by
/// receipts and state proofs.
pub(crate) fn verify_leaf_inclusion(
    leaf_bytes: &[u8],
    leaf_index: u64,
    proof: &[Hash],
    checkpoint: &VerifiedCheckpoint,
) -> Result<(Leaf, pb::Record, Hash), VerifyError> {
    if proof.len() > PROOF_HASHES_MAX {
        return Err(VerifyError::ProofTooLong {
            found: proof.len(),
            max: PROOF_HASHES_MAX,
        });
    }
    let leaf = Leaf::decode(leaf_bytes).map_err(VerifyError::Leaf)?;
    if leaf.index.0 != leaf_index {
        return Err(VerifyError::LeafIndexMismatch {
            document: leaf_index,
            leaf: leaf.index.0,
        });
    }
    let cp = &checkpoint.checkpoint;
    let leaf_hash = crate::hash::leaf_hash(leaf_bytes);
    verify_inclusion(&leaf_hash, LeafIndex(leaf_index), cp.size, proof, &cp.root)
        .map_err(VerifyError::Inclusion)?;
    if leaf.ledger_time > cp.time {
        return Err(VerifyError::LeafAfterCheckpoint {
            leaf_time: leaf.ledger_time,
            checkpoint_time: cp.time,
        });
    }
    let record = leaf.verify().map_err(VerifyError::Leaf)?;
    Ok((leaf, record, leaf_hash))
}

impl Receipt {
    pub fn new(leaf: &Leaf, inclusion_proof: Vec<Hash>, checkpoint_note: String) -> Receipt {
        Receipt {
            format: RECEIPT_FORMAT.to_string(),
            leaf_index: leaf.index.0,
            leaf: leaf.encode(),
            inclusion_proof,
            checkpoint: checkpoint_note,
        }
    }

    /// Checks, in order: format, checkpoint (origin, signatures, threshold), leaf encoding, leaf
    /// index, inclusion proof, leaf time within the checkpoint, record validity, writer signature.
    pub fn verify(&self, policy: &TrustPolicy) -> Result<ReceiptSummary, VerifyError> {
        if self.format != RECEIPT_FORMAT {
            return Err(VerifyError::Format {
                found: self.format.clone(),
                expected: RECEIPT_FORMAT,
            });
        }
        let checkpoint = policy.verify_checkpoint(&self.checkpoint)?;
        let (leaf, record, leaf_hash) = verify_leaf_inclusion(
            &self.leaf,
            self.leaf_index,
            &self.inclusion_proof,
            &checkpoint,
        )?;
        Ok(ReceiptSummary {
            leaf,
            record,
            leaf_hash,
            checkpoint,
        })
    }
}
