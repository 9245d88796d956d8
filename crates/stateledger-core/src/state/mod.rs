//! Reconstruction: S(T) for a system, the determinism contract, and state proofs
//! (docs/DETERMINISM.md; docs/PROOFS.md §7.3).

pub mod fold;
pub mod model;
pub mod proof;
pub mod replay;
pub mod rules;

pub use fold::fold;
pub use model::{record_hash, StateEntry, SystemState, WriterInEffect};
pub use proof::{Boundary, ProvenLeaf, StateProof, StateProofSummary, STATE_PROOF_FORMAT};
pub use rules::{check, Finding, Severity, Verdict};

#[cfg(test)]
mod tests;
