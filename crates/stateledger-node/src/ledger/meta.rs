//! The ledger's metadata, written with every apply as the last operation of its batch: a crash
//! may cut the batch (`store::kv`: the ledger's batches are kept only to a prefix), so stored
//! metadata always says what a whole number of applies left.

use serde::{Deserialize, Serialize};

use super::keys;
use crate::raft::codec;
use crate::raft::{LogId, StoredMembership};
use crate::store::{StoreError, Tree};

/// Fixed at genesis: the log's origin and who may sign policy records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub origin: String,
    pub admin_keys: Vec<[u8; 32]>,
}

/// Everything about the ledger that is not per leaf.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMeta {
    /// Last Raft log entry applied.
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Number of leaves.
    pub size: u64,
    /// The Merkle frontier of `size` leaves.
    pub frontier: Vec<[u8; 32]>,
    /// The ledger clock: every later leaf gets a strictly greater time (ns).
    pub clock: u64,
    /// Size of the latest published checkpoint (0: none).
    pub published_size: u64,
    pub genesis: Option<Genesis>,
}

impl LedgerMeta {
    /// The stored form (`keys::META`, postcard).
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        codec::encode("ledger meta", self)
            .map_err(|e| StoreError::corrupt(Tree::Ledger, keys::META, e))
    }

    /// Reads the stored form; bytes that do not decode are corrupt.
    pub fn decode(bytes: &[u8]) -> Result<LedgerMeta, StoreError> {
        codec::decode("ledger meta", bytes)
            .map_err(|e| StoreError::corrupt(Tree::Ledger, keys::META, e))
    }
}
