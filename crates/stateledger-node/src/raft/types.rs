//! openraft type configuration: what the Raft log carries and what applying it returns.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ledger::snapshot::LedgerSnapshot;

/// The async runtime openraft runs on: tokio for real, madsim in the simulation.
#[cfg(not(madsim))]
pub type Runtime = openraft::TokioRuntime;
#[cfg(madsim)]
pub type Runtime = crate::raft::runtime::MadsimRuntime;

openraft::declare_raft_types!(
    /// StateLedger's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = LedgerSnapshot,
        AsyncRuntime = Runtime,
);

pub use crate::node_id::NodeId;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type StorageError = openraft::StorageError<NodeId>;

/// A cluster member as Raft's membership records it. The checkpoint key is part of the
/// replicated membership so every node knows, deterministically, whose signatures count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// host:port of the cluster (mutual TLS) listener.
    pub raft_addr: String,
    /// host:port of the public (server TLS) listener.
    pub public_addr: String,
    /// C2SP verifier key text of the node's checkpoint signing key.
    pub checkpoint_key: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.raft_addr)
    }
}

/// A record as it travels through the Raft log: the submitted bytes, untouched.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedRecord {
    pub record: Vec<u8>,
    pub writer_key: [u8; 32],
    pub signature: Vec<u8>,
}

impl fmt::Debug for SubmittedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubmittedRecord({} bytes)", self.record.len())
    }
}

/// What the leader proposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Fixes the log's origin and the admin keys allowed to sign policy records. Only the first
    /// genesis takes effect.
    Genesis {
        origin: String,
        admin_keys: Vec<[u8; 32]>,
    },
    /// Appends groups of records (each group is one client request: all or nothing), checked by
    /// the leader (valid, signed), at the leader's proposed time. With no groups it only advances
    /// the ledger clock (a tick).
    Append {
        groups: Vec<Vec<SubmittedRecord>>,
        proposed_time: u64,
    },
    /// Makes a quorum-cosigned checkpoint known to every node.
    PublishCheckpoint { note: String },
}

impl Command {
    /// A clock tick: an [`Command::Append`] with no groups, which only advances the ledger clock
    /// to `proposed_time` (the checkpointer proposes one when a reader wants a checkpoint
    /// covering a time no record has reached yet). The entry format has no variant of its own
    /// for it, so that logs written before stay readable.
    pub fn tick(proposed_time: u64) -> Command {
        Command::Append {
            groups: Vec::new(),
            proposed_time,
        }
    }

    /// Whether this is a clock tick ([`Command::tick`]).
    pub fn is_tick(&self) -> bool {
        matches!(self, Command::Append { groups, .. } if groups.is_empty())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Genesis { origin, .. } => write!(f, "genesis({origin})"),
            Command::Append {
                groups,
                proposed_time,
            } if groups.is_empty() => write!(f, "tick(@{proposed_time})"),
            Command::Append {
                groups,
                proposed_time,
            } => {
                write!(f, "append({} groups @{proposed_time})", groups.len())
            }
            Command::PublishCheckpoint { .. } => write!(f, "publish-checkpoint"),
        }
    }
}

/// One appended record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub index: u64,
    pub time: u64,
    pub leaf_hash: [u8; 32],
}

/// Why a group was refused (the ledger's admission rules).
pub use crate::ledger::admission::Refusal;

/// What happened to one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupOutcome {
    Appended(Vec<Appended>),
    /// Every record of the group was already in the ledger (a retried request): their indexes.
    AllDuplicates(Vec<u64>),
    /// Nothing of the group was appended.
    Refused {
        position: usize,
        refusal: Refusal,
    },
}

/// The state machine's answer to a command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    #[default]
    None,
    Appended(Vec<GroupOutcome>),
    Published {
        size: u64,
    },
    Refused {
        reason: crate::ledger::CommandRefusal,
    },
}
