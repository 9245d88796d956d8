//! **Everything a node serves verifies offline.** Clients check each receipt, checkpoint and
//! consistency proof a node answers with, against the trust policy alone, as an auditor would;
//! a failure is reported as a violation of this invariant (or of `acknowledged_records` when a
//! verified receipt shows a different record at an acknowledged index).

use stateledger_core::documents::Receipt;
use stateledger_core::hash::Hash;
use stateledger_core::leaf::Leaf;
use stateledger_core::merkle::{verify_consistency, TreeSize};
use stateledger_core::trust::TrustPolicy;
use stateledger_proto::v1 as pb;

use crate::history::SeenCheckpoint;

pub const NAME: &str = "served_proofs_verify";

fn hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>, String> {
    proof
        .iter()
        .map(|h| Hash::from_slice(h).ok_or_else(|| format!("a proof hash is {} bytes", h.len())))
        .collect()
}

/// Verifies a checkpoint note a node served.
pub fn checkpoint(policy: &TrustPolicy, note: &str, from: &str) -> Result<SeenCheckpoint, String> {
    let v = policy
        .verify_checkpoint(note)
        .map_err(|e| format!("checkpoint served by {from} does not verify: {e}"))?;
    Ok(SeenCheckpoint {
        size: v.checkpoint.size.0,
        root: v.checkpoint.root,
        heads_root: v.checkpoint.heads_root,
        time: v.checkpoint.time.0,
        note: note.to_string(),
        from: from.to_string(),
    })
}

/// Verifies a receipt a node served for leaf `index`; returns the leaf's record hash and the
/// checkpoint it is proven against.
pub fn receipt(
    policy: &TrustPolicy,
    index: u64,
    r: &pb::GetReceiptResponse,
    from: &str,
) -> Result<([u8; 32], SeenCheckpoint), String> {
    let leaf = Leaf::decode(&r.leaf)
        .map_err(|e| format!("receipt for leaf {index} from {from}: leaf does not decode: {e}"))?;
    let proof = hashes(&r.inclusion_proof)
        .map_err(|e| format!("receipt for leaf {index} from {from}: {e}"))?;
    let doc = Receipt::new(&leaf, proof, r.checkpoint.clone());
    let summary = doc
        .verify(policy)
        .map_err(|e| format!("receipt for leaf {index} from {from} does not verify: {e}"))?;
    if summary.leaf.index.0 != index {
        return Err(format!(
            "asked {from} for a receipt of leaf {index}, got one for leaf {}",
            summary.leaf.index
        ));
    }
    let cp = checkpoint(policy, &r.checkpoint, from)?;
    Ok((*blake3::hash(&leaf.record).as_bytes(), cp))
}

/// Verifies a consistency proof a node served between two checkpoints clients saw.
pub fn consistency(
    old: &SeenCheckpoint,
    new: &SeenCheckpoint,
    r: &pb::GetConsistencyProofResponse,
    from: &str,
) -> Result<(), String> {
    let proof = hashes(&r.proof)?;
    verify_consistency(
        TreeSize(old.size),
        TreeSize(new.size),
        &proof,
        &old.root,
        &new.root,
    )
    .map_err(|e| {
        format!(
            "consistency proof {} → {} from {from} does not verify: {e}",
            old.size, new.size
        )
    })
}
