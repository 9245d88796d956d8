//! S(T): the declared state of one system at one ledger time, as folded from its records.

use serde::{Deserialize, Serialize};

use crate::hash::{domain_hash, Hash};
use crate::record::pb;

/// Domain of record content hashes (what the state digest binds).
pub const RECORD_CONTENT_DOMAIN: &str = "stateledger:record-content:v1";
/// Domain of the state digest.
pub const STATE_DIGEST_DOMAIN: &str = "stateledger:state:v1";

/// Hash of a record's bytes as the state digest uses it.
pub fn record_hash(record_bytes: &[u8]) -> Hash {
    domain_hash(RECORD_CONTENT_DOMAIN, record_bytes)
}

/// One record in the state, with where it sits in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateEntry<T> {
    pub leaf_index: u64,
    /// Ledger time (ns since the Unix epoch).
    pub ledger_time: u64,
    /// The collector's observation time (ns).
    pub observed_at: u64,
    pub scope: String,
    /// The writer's public key (hex).
    pub writer: String,
    /// [`record_hash`] of the record bytes.
    pub record_hash: Hash,
    pub value: T,
}

/// A writer grant in effect at T.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterInEffect {
    /// Public key (hex).
    pub writer: String,
    pub name: String,
    /// The leaf of the grant.
    pub granted_at: u64,
}

/// S(T) for one system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemState {
    pub system: String,
    /// T (ledger ns).
    pub at: u64,
    /// Records of the system up to T.
    pub records: u64,
    /// The latest code record.
    pub code: Option<StateEntry<pb::CodeState>>,
    /// The latest (complete) configuration snapshot.
    pub config: Option<StateEntry<pb::ConfigSnapshot>>,
    /// The latest environment record.
    pub environment: Option<StateEntry<pb::EnvironmentState>>,
    /// Every mutation, in ledger order.
    pub mutations: Vec<StateEntry<pb::Mutation>>,
    /// Every captured nondeterminism, in ledger order.
    pub nondeterminism: Vec<StateEntry<pb::Nondeterminism>>,
    /// Every declared state digest, in ledger order.
    pub state_digests: Vec<StateEntry<pb::StateDigest>>,
    /// Writers allowed at T.
    pub writers: Vec<WriterInEffect>,
}

impl SystemState {
    /// The state digest: BLAKE3 over the system, T, and the content hashes of the records that
    /// make up each dimension (docs/PROOFS.md §7.3):
    ///
    /// ```text
    /// H("stateledger:state:v1" || 0x00 || u32be(len(system)) || system || u64be(at)
    ///   || slot(code) || slot(config) || slot(environment)
    ///   || list(mutations) || list(nondeterminism) || list(state_digests))
    /// slot(x) = 0x00 if absent, else 0x01 || record_hash(x)
    /// list(xs) = u64be(len(xs)) || record_hash(x_1) || ... || record_hash(x_n)
    /// ```
    pub fn digest(&self) -> Hash {
        let mut buf = Vec::with_capacity(
            64 + 32
                * (3 + self.mutations.len() + self.nondeterminism.len() + self.state_digests.len()),
        );
        buf.extend_from_slice(&(self.system.len() as u32).to_be_bytes());
        buf.extend_from_slice(self.system.as_bytes());
        buf.extend_from_slice(&self.at.to_be_bytes());
        fn slot<T>(buf: &mut Vec<u8>, e: &Option<StateEntry<T>>) {
            match e {
                None => buf.push(0),
                Some(e) => {
                    buf.push(1);
                    buf.extend_from_slice(&e.record_hash.0);
                }
            }
        }
        fn list<T>(buf: &mut Vec<u8>, es: &[StateEntry<T>]) {
            buf.extend_from_slice(&(es.len() as u64).to_be_bytes());
            for e in es {
                buf.extend_from_slice(&e.record_hash.0);
            }
        }
        slot(&mut buf, &self.code);
        slot(&mut buf, &self.config);
        slot(&mut buf, &self.environment);
        list(&mut buf, &self.mutations);
        list(&mut buf, &self.nondeterminism);
        list(&mut buf, &self.state_digests);
        domain_hash(STATE_DIGEST_DOMAIN, &buf)
    }
}
