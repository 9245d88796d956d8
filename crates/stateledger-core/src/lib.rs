//! StateLedger's pure core.
//!
//! Records and their validation, signed records, leaves, the BLAKE3 Merkle log (RFC 9162 shape),
//! the system head map, checkpoints as C2SP signed notes, trust policies, receipts and proofs, and
//! the reconstruction fold with its determinism rules — with their offline verification.
//!
//! Architecture invariant: this crate does no I/O, has no async, and knows nothing of Raft,
//! gRPC or storage. Everything it needs arrives as bytes or values; every check an auditor runs
//! offline lives here.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod documents;
pub mod hash;
pub mod heads;
pub mod leaf;
pub mod ledger_time;
pub mod limits;
pub mod merkle;
pub mod note;
pub mod record;
pub mod state;
pub mod trust;
