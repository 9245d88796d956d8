//! A StateLedger node: the ledger state machine on sled, replicated with openraft over tonic
//! gRPC with rustls TLS, serving proofs and cosigning checkpoints.
//!
//! Architecture invariant: every effect on the outside world goes through a seam — storage
//! ([`store::Kv`]), time ([`clock::Clock`]), the Raft runtime ([`raft::Runtime`]) and the network
//! (tonic, which madsim replaces) — so the same code runs under the deterministic simulation.
#![forbid(unsafe_code)]

pub mod batcher;
pub mod checkpointer;
pub mod clock;
pub mod config;
#[cfg(not(madsim))]
pub mod conn_limit;
#[cfg(not(madsim))]
pub mod dev;
pub mod grpc;
#[cfg(madsim)]
pub mod known_bad;
pub mod ledger;
pub mod node;
pub mod raft;
pub mod recovery;
pub mod repair;
pub mod scrub;
pub mod sigcheck;
pub mod space;
pub mod store;
pub mod tls;
#[cfg(not(madsim))]
pub mod wire;
