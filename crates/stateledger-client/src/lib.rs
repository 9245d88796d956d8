//! StateLedger client library.
//!
//! Connects to any node (and follows the leader for writes), signs and submits records with
//! retries that cannot duplicate, waits for receipts proven against quorum-signed checkpoints,
//! fetches entries and proofs, and keeps the last verified checkpoint so that every newer one is
//! checked with a consistency proof: a rewritten or forked history is reported, never accepted.
//!
//! Architecture invariant: the client trusts no node. Everything it returns as verified was
//! checked here against the trust policy with `stateledger-core`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod checkpoints;
pub mod client;
pub mod connection;
pub mod error;

pub use checkpoints::CheckpointTracker;
pub use client::{state_proof_from_history, LedgerClient, Submitted};
pub use connection::ConnectOptions;
pub use error::ClientError;
