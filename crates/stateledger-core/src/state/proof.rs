//! State proofs: S(T) for a system with everything an auditor needs to check it offline — every
//! leaf used with its inclusion proof against one quorum-signed checkpoint, and the completeness
//! evidence that no record of the system up to T was left out (docs/PROOFS.md §7.3).
//!
//! ```json
//! {
//!   "format": "stateledger.state_proof.v1",
//!   "system": "orders-service",
//!   "at": 1764000000000000000,
//!   "checkpoint": "<signed note text>",
//!   "leaves": [{"leaf_index": 3, "leaf": "<base64>", "inclusion_proof": ["<base64>", ...]}, ...],
//!   "boundary": {"next": {"leaf_index": 9, "leaf": "...", "inclusion_proof": [...]}}
//!             | {"head": {"siblings": [...], "terminal": {"kind": "leaf", ...}}},
//!   "state": { S(T) },
//!   "state_digest": "<base64>",
//!   "verdict": {"result": "exact" | "impossible", "reasons": [...], "warnings": [...], "confidence": 0..100}
//! }
//! ```
//!
//! Completeness: the shown leaves form the system's back-link chain from its first leaf
//! (`prev` = none) through every later one (`prev` = the previous shown leaf), each with ledger
//! time <= T; and either the next leaf of the chain (inclusion-proven, time > T) or the head map
//! of the checkpoint proves the last shown leaf is the system's head. The checkpoint covers T
//! (its time >= T), so no leaf of the system with time <= T lies beyond it.

use serde::{Deserialize, Serialize};

use crate::documents::receipt::verify_leaf_inclusion;
use crate::documents::VerifyError;
use crate::hash::Hash;
use crate::heads::{verify_head_proof, HeadProof, SystemKey};
use crate::leaf::Leaf;
use crate::limits::STATE_PROOF_LEAVES_MAX;
use crate::merkle::LeafIndex;
use crate::record::pb;
use crate::state::fold::fold;
use crate::state::model::SystemState;
use crate::state::rules::{check, Verdict};
use crate::trust::{TrustPolicy, VerifiedCheckpoint};

pub const STATE_PROOF_FORMAT: &str = "stateledger.state_proof.v1";

/// A leaf with its inclusion proof against the state proof's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenLeaf {
    pub leaf_index: u64,
    #[serde(with = "crate::documents::base64_bytes")]
    pub leaf: Vec<u8>,
    pub inclusion_proof: Vec<Hash>,
}

/// The upper end of the completeness evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Boundary {
    /// The system's first leaf after T.
    Next(ProvenLeaf),
    /// The system's head at the checkpoint's size (or its absence).
    Head(HeadProof),
}

/// See the module comment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateProof {
    pub format: String,
    pub system: String,
    pub at: u64,
    pub checkpoint: String,
    pub leaves: Vec<ProvenLeaf>,
    pub boundary: Boundary,
    pub state: SystemState,
    pub state_digest: Hash,
    pub verdict: Verdict,
}

/// What a verified state proof establishes.
#[derive(Clone, Debug)]
pub struct StateProofSummary {
    pub checkpoint: VerifiedCheckpoint,
    pub state: SystemState,
    pub verdict: Verdict,
    pub state_digest: Hash,
}

/// Checks the material of a state proof: checkpoint, every leaf, the chain, the boundary and
/// the time cover. Returns the verified checkpoint and the leaves with their records.
fn verify_material(
    system: &str,
    at: u64,
    checkpoint: &str,
    leaves: &[ProvenLeaf],
    boundary: &Boundary,
    policy: &TrustPolicy,
) -> Result<(VerifiedCheckpoint, Vec<(Leaf, pb::Record)>), VerifyError> {
    crate::record::validate::check_system_name(system).map_err(|e| VerifyError::Document {
        reason: e.to_string(),
    })?;
    if leaves.len() > STATE_PROOF_LEAVES_MAX {
        return Err(VerifyError::Document {
            reason: format!(
                "{} leaves, more than the limit of {STATE_PROOF_LEAVES_MAX}",
                leaves.len()
            ),
        });
    }
    let cp = policy.verify_checkpoint(checkpoint)?;
    if cp.checkpoint.time.0 < at {
        return Err(VerifyError::StateNotCovered {
            checkpoint_time: cp.checkpoint.time.0,
            at,
        });
    }
    let mut verified: Vec<(Leaf, pb::Record)> = Vec::with_capacity(leaves.len());
    for (i, p) in leaves.iter().enumerate() {
        let (leaf, record, _) =
            verify_leaf_inclusion(&p.leaf, p.leaf_index, &p.inclusion_proof, &cp)?;
        if record.system != system {
            return Err(VerifyError::StateSystem {
                leaf_index: p.leaf_index,
                found: record.system,
                expected: system.to_string(),
            });
        }
        if leaf.ledger_time.0 > at {
            return Err(VerifyError::StateLeafAfterT {
                leaf_index: p.leaf_index,
                ledger_time: leaf.ledger_time.0,
                at,
            });
        }
        let expected_prev = verified.last().map(|(l, _)| l.index);
        if leaf.prev != expected_prev {
            return Err(VerifyError::StateChain {
                position: i,
                leaf_index: p.leaf_index,
                expected_prev: expected_prev.map(|p| p.0),
                found_prev: leaf.prev.map(|p| p.0),
            });
        }
        verified.push((leaf, record));
    }
    let last: Option<LeafIndex> = verified.last().map(|(l, _)| l.index);
    match boundary {
        Boundary::Next(p) => {
            let (leaf, record, _) =
                verify_leaf_inclusion(&p.leaf, p.leaf_index, &p.inclusion_proof, &cp)?;
            if record.system != system {
                return Err(VerifyError::StateBoundary {
                    reason: format!(
                        "the next leaf {} belongs to system {:?}",
                        p.leaf_index, record.system
                    ),
                });
            }
            if leaf.prev != last {
                return Err(VerifyError::StateBoundary {
                    reason: format!(
                        "the next leaf {} links back to {:?}, not to the last shown leaf {:?}: leaves are missing in between",
                        p.leaf_index,
                        leaf.prev.map(|p| p.0),
                        last.map(|l| l.0)
                    ),
                });
            }
            if leaf.ledger_time.0 <= at {
                return Err(VerifyError::StateBoundary {
                    reason: format!(
                        "the next leaf {} has ledger time {} <= T {at}: it belongs in the state",
                        p.leaf_index, leaf.ledger_time
                    ),
                });
            }
        }
        Boundary::Head(proof) => {
            let head = verify_head_proof(&cp.checkpoint.heads_root, &SystemKey::of(system), proof)
                .map_err(|e| VerifyError::StateBoundary {
                    reason: format!("head proof: {e}"),
                })?;
            match (head, last) {
                (None, None) => {}
                (Some(h), Some(l)) if h.index == l && h.count == verified.len() as u64 => {}
                (Some(h), _) => {
                    return Err(VerifyError::StateBoundary {
                        reason: format!(
                            "the system's head at size {} is leaf {} with {} records, but the proof shows {} records ending at {:?}: leaves are missing",
                            cp.checkpoint.size,
                            h.index,
                            h.count,
                            verified.len(),
                            last.map(|l| l.0)
                        ),
                    })
                }
                (None, Some(l)) => {
                    return Err(VerifyError::StateBoundary {
                        reason: format!("the head map says the system has no leaf, yet leaf {l} is shown"),
                    })
                }
            }
        }
    }
    Ok((cp, verified))
}

impl StateProof {
    /// Builds a state proof from proven material (as a node serves it), verifying all of it and
    /// computing S(T) and the verdict here: a client never takes the state from the server.
    pub fn build(
        system: &str,
        at: u64,
        checkpoint: String,
        leaves: Vec<ProvenLeaf>,
        boundary: Boundary,
        policy: &TrustPolicy,
    ) -> Result<(StateProof, StateProofSummary), VerifyError> {
        let (cp, verified) = verify_material(system, at, &checkpoint, &leaves, &boundary, policy)?;
        let state = fold(system, at, &verified);
        let verdict = check(&state);
        let state_digest = state.digest();
        let proof = StateProof {
            format: STATE_PROOF_FORMAT.to_string(),
            system: system.to_string(),
            at,
            checkpoint,
            leaves,
            boundary,
            state: state.clone(),
            state_digest,
            verdict: verdict.clone(),
        };
        Ok((
            proof,
            StateProofSummary {
                checkpoint: cp,
                state,
                verdict,
                state_digest,
            },
        ))
    }

    /// Verifies a state proof offline: the material (as in [`StateProof::build`]), and that the
    /// state, its digest and the verdict are exactly what the leaves give.
    pub fn verify(&self, policy: &TrustPolicy) -> Result<StateProofSummary, VerifyError> {
        if self.format != STATE_PROOF_FORMAT {
            return Err(VerifyError::Format {
                found: self.format.clone(),
                expected: STATE_PROOF_FORMAT,
            });
        }
        let (cp, verified) = verify_material(
            &self.system,
            self.at,
            &self.checkpoint,
            &self.leaves,
            &self.boundary,
            policy,
        )?;
        let state = fold(&self.system, self.at, &verified);
        if state != self.state {
            return Err(VerifyError::StateRecomputed {
                what: "state".into(),
                detail: "S(T) differs from what the proven leaves give".into(),
            });
        }
        let digest = state.digest();
        if digest != self.state_digest {
            return Err(VerifyError::StateRecomputed {
                what: "state_digest".into(),
                detail: format!(
                    "document says {}, the leaves give {digest}",
                    self.state_digest
                ),
            });
        }
        let verdict = check(&state);
        if verdict != self.verdict {
            return Err(VerifyError::StateRecomputed {
                what: "verdict".into(),
                detail: format!(
                    "document says {} with {} reasons, the rules give {} with {} reasons",
                    self.verdict.result,
                    self.verdict.reasons.len(),
                    verdict.result,
                    verdict.reasons.len()
                ),
            });
        }
        Ok(StateProofSummary {
            checkpoint: cp,
            state,
            verdict,
            state_digest: digest,
        })
    }
}
