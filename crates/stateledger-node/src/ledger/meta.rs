//! The ledger's metadata, written atomically with every apply.

use serde::{Deserialize, Serialize};

use crate::raft::{LogId, StoredMembership};

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
