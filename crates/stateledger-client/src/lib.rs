//! StateLedger client library: record the declared state of a system in a StateLedger cluster,
//! get proofs that it is there, and reconstruct the state at any time with a proof an auditor
//! checks offline.
//!
//! A [`LedgerClient`] talks to the nodes' public ports over TLS and follows the leader; it signs
//! and submits records with retries that never append a record twice; and it **trusts no node**:
//! every receipt, checkpoint and state proof it returns was verified here against your
//! [`TrustPolicy`], and every checkpoint it sees must be consistent with the ones it saw before
//! (a forked or rewritten log is an error, never accepted).
//!
//! This crate is enough for the common path: it re-exports the record types ([`pb`], [`Body`]),
//! keys ([`NoteSigner`], [`NoteVerifier`]), trust policies, proof documents and the reconstructed
//! state from `stateledger-core`, and the collectors as [`collect`].
//!
//! # Example: connect, grant, collect and submit, get a receipt, reconstruct and verify
//!
//! The cluster here is three real nodes started in-process (hidden lines); with a running
//! cluster, `endpoints`, the CA and the trust policy come from its client profile
//! (`stateledger dev` writes `stateledger-dev/client.toml`).
//!
//! ```
//! use std::time::Duration;
//!
//! use stateledger_client::collect::environment::EnvironmentCollector;
//! use stateledger_client::collect::RecordMeta;
//! use stateledger_client::{policy, Body, ConnectOptions, LedgerClient, NoteSigner, TrustPolicy};
//!
//! # fn free_base_port() -> u16 {
//! #     // Node i listens on base + i and base + 100 + i.
//! #     let mut base = 24_000 + (std::process::id() % 80) as u16 * 100;
//! #     while !(1..=3u16).all(|i| {
//! #         std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
//! #             && std::net::TcpListener::bind(("127.0.0.1", base + 100 + i)).is_ok()
//! #     }) {
//! #         base += 7;
//! #     }
//! #     base
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! # runtime.block_on(async {
//! # let dir = tempfile::tempdir()?;
//! # let cluster = stateledger_node::dev::create(dir.path(), 3, free_base_port(), "stateledger.example/docs")?;
//! # let mut nodes = Vec::new();
//! # let mut endpoints = Vec::new();
//! # for path in &cluster.configs {
//! #     let config = stateledger_node::config::NodeConfig::load(path)?;
//! #     endpoints.push(config.public_addr());
//! #     let parts = stateledger_node::node::NodeParts::load(config)?;
//! #     nodes.push(stateledger_node::node::start(parts).await?);
//! # }
//! # let ca_pem = std::fs::read_to_string(&cluster.ca_cert)?;
//! # let policy_json = std::fs::read(&cluster.trust_policy)?;
//! # let admin_key_text = std::fs::read_to_string(&cluster.admin_key)?;
//! // Connect: the nodes' public endpoints, the cluster's CA certificate, and what to trust.
//! let policy = TrustPolicy::from_json(&policy_json)?;
//! let client = LedgerClient::new(ConnectOptions::new(endpoints, ca_pem), policy.clone())?;
//! # while client.status(None).await.map_or(true, |s| s.leader_id == 0 || s.origin.is_empty()) {
//! #     tokio::time::sleep(Duration::from_millis(50)).await;
//! # }
//!
//! // Grant a writer (made with `stateledger keygen` in real life) the right to record
//! // orders-service: a policy record signed by an admin key of the cluster.
//! let admin = NoteSigner::parse(&admin_key_text)?;
//! let writer = NoteSigner::from_seed("orders-collector", &[7; 32])?;
//! let now = stateledger_client::collect::now_unix_nanos();
//! let grant = policy::grant("orders-service", &writer.verifier(), now);
//! client.sign_and_submit(vec![grant], admin.signing_key()).await?;
//!
//! // Collect the environment (OS, kernel, runtimes, time source...) and submit it, signed by
//! // the writer. All records of one call are appended, or none.
//! let environment = EnvironmentCollector::new().runtime_probes(Vec::new()).collect()?;
//! let record = RecordMeta::now("orders-service", "prod/eu-west-1")
//!     .record(Body::Environment(environment.state))?;
//! let appended = client.sign_and_submit(vec![record], writer.signing_key()).await?;
//!
//! // A receipt: the leaf, its inclusion proof and a quorum-signed checkpoint, verified.
//! let wait = Duration::from_secs(10);
//! let (receipt, proven) = client.receipt(appended[0].index, wait).await?;
//! assert_eq!(proven.leaf.index.0, appended[0].index);
//! let size = proven.checkpoint.checkpoint.size.0; // the log this receipt proves it is in
//! assert!(size > appended[0].index);
//! let receipt_json = serde_json::to_string_pretty(&receipt)?; // `stateledger verify` reads it
//!
//! // Reconstruct S(T) for orders-service at T = now, with its state proof. The client checked
//! // every leaf, the completeness evidence and the checkpoint, and computed the state itself.
//! let at = stateledger_client::collect::now_unix_nanos();
//! let (proof, state) = client.state_proof("orders-service", at, wait).await?;
//! assert_eq!(state.state.records, 2); // the grant and the environment
//! assert!(state.state.environment.is_some());
//! println!("verdict {} (confidence {})", state.verdict.result, state.verdict.confidence);
//!
//! // An auditor verifies the same proof offline, with nothing but the trust policy.
//! let offline = proof.verify(&policy)?;
//! assert_eq!(offline.state_digest, state.state_digest);
//! # let _ = receipt_json;
//! # for n in nodes { n.shutdown().await; }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! # Where things are
//!
//! - [`LedgerClient`]: submit ([`LedgerClient::sign_and_submit`], [`LedgerClient::submit`]),
//!   receipts, checkpoints (latest, covering a time, or of an exact size), consistency proofs,
//!   state proofs, node status.
//! - [`policy`]: grant and revoke records.
//! - [`collect`]: collectors for code, configuration, environment, mutations and captured
//!   nondeterminism; [`collect::RecordMeta`] turns a collected body into a record.
//! - [`CheckpointTracker`]: the newest verified checkpoint, kept across runs with
//!   [`LedgerClient::last_checkpoint`] and [`LedgerClient::restore_checkpoint`].
//! - [`admin::AdminClient`]: membership changes over the cluster port (admin certificate).
//! - [`ClientError`]: what went wrong, grouped by who is at fault.
//!
//! Architecture invariant: the client trusts no node. Everything it returns as verified was
//! checked here against the trust policy with `stateledger-core`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod checkpoints;
pub mod client;
pub mod connection;
pub mod error;
pub mod follow;
pub mod policy;

pub use checkpoints::CheckpointTracker;
pub use client::{state_proof_from_history, LedgerClient, Submitted};
pub use connection::ConnectOptions;
pub use error::ClientError;

/// The collectors (the `stateledger-collect` crate).
pub use stateledger_collect as collect;

pub use ed25519_dalek::SigningKey;
pub use stateledger_core::documents::{ConsistencyDocument, Receipt, ReceiptSummary, VerifyError};
pub use stateledger_core::note::{NoteSigner, NoteVerifier};
pub use stateledger_core::record::{pb, Body};
pub use stateledger_core::state::{Finding, StateProof, StateProofSummary, SystemState, Verdict};
pub use stateledger_core::trust::{TrustPolicy, VerifiedCheckpoint};
