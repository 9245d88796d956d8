//! Why a call on either port failed, as a type: grouped by who must act (the caller, whoever
//! retries elsewhere or later, or this node), each variant carrying its evidence. The services
//! return these; [`ApiError::into_status`] is the one place that turns them into a gRPC status:
//! its code, a message a person can act on, and [`pb::ErrorDetails`] (a machine-readable reason
//! and the leader hint) as the status details, which clients read instead of the message text.
//! The `x-stateledger-*` metadata the node always set is still set alongside, for callers that
//! read it.

use prost::Message as _;
use stateledger_core::record::RecordError;
use stateledger_proto::metadata::{EXISTING, LEADER, LEADER_CLUSTER, TRY};
use stateledger_proto::v1 as pb;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::ledger::ReadError;
use crate::raft::{NodeId, Refusal};
use crate::store::StoreError;

/// A failed call (see the module comment).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is wrong: the caller must change it.
    #[error(transparent)]
    Caller(#[from] CallerError),
    /// The cluster cannot serve it here and now: retry, later or where the hint says.
    #[error(transparent)]
    Retry(#[from] RetryError),
    /// This node is at fault.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// What is wrong with a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallerError {
    #[error("the request has no records")]
    NoRecords,
    #[error("the request has {count} records, more than the limit of {max}")]
    TooManyRecords { count: usize, max: usize },
    #[error(
        "record {position} is {len} bytes, more than the limit of {max}; nothing was appended"
    )]
    RecordTooLong {
        position: usize,
        len: usize,
        max: usize,
    },
    #[error("record {position}: {error}; nothing was appended")]
    InvalidRecord { position: usize, error: RecordError },
    #[error("record {position}: writer_key must be 32 bytes, found {len}; nothing was appended")]
    WriterKeyLength { position: usize, len: usize },
    /// Found by this node's signature check before anything was proposed.
    #[error("record {position}: {reason}; nothing was appended")]
    BadSignature { position: usize, reason: String },
    /// Refused by the ledger's rules (at precheck or at apply).
    #[error("{}", refusal_message(*position, refusal))]
    Refused { position: usize, refusal: Refusal },
    /// Every record of the request is already in the ledger (a retried request).
    #[error(
        "every record of the request is already in the ledger (leaves {}); nothing was appended",
        join(indexes)
    )]
    AllDuplicates { indexes: Vec<u64> },
    /// A field of the request is not acceptable (`what` names it).
    #[error("{what}{reason}")]
    InvalidArgument { what: String, reason: String },
    /// A read the ledger cannot answer for this request (out of range, no such proof).
    #[error(transparent)]
    Read(ReadError),
    /// No checkpoint was published at exactly this size; `near` names the sizes that were.
    #[error("no checkpoint was published at size {size}; {near}")]
    NoCheckpointAt { size: u64, near: String },
    /// A membership change for a node that is not a member.
    #[error("node {0} is not a member")]
    NotAMember(NodeId),
    /// The caller's certificate may not make this call (`grpc/authz.rs`).
    #[error("{who} may not call {call} on {node}: {why}")]
    Denied {
        who: String,
        call: String,
        node: String,
        why: String,
    },
    /// A call that only makes sense in another state of the cluster (e.g. a snapshot session
    /// that does not exist, a membership change Raft refused).
    #[error("{0}")]
    Precondition(String),
}

/// Where a write should go instead of this node: the evidence of a NOT_LEADER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// Another node leads.
    Leader {
        id: NodeId,
        name: String,
        public_addr: String,
        cluster_addr: String,
    },
    /// This node leads in Raft but has lost contact with a quorum (CheckQuorum): the other
    /// members' public addresses.
    QuorumLost { others: Vec<String> },
    /// No leader is known yet.
    Unknown,
}

/// A queue that refuses new work when full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// Requests waiting for their signatures to be checked (`sigcheck.rs`).
    Signatures,
    /// Requests waiting to be proposed (`batcher.rs`).
    Proposals,
}

impl std::fmt::Display for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queue::Signatures => "signature queue",
            Queue::Proposals => "queue",
        })
    }
}

/// Why the cluster cannot serve a request here and now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    /// This node (`node`, by name) does not lead; `redirect` says where to go.
    #[error("{}", not_leader_message(node, redirect))]
    NotLeader { node: String, redirect: Redirect },
    #[error("the leader's {queue} is full ({max} requests); retry with backoff")]
    QueueFull { queue: Queue, max: usize },
    /// A voter's disk is below its reserve (`why` names it).
    #[error("{why}: writes are refused until space is freed (reads go on); nothing was appended")]
    DiskSpace { why: String },
    #[error("the node is shutting down; retry")]
    ShuttingDown,
    /// Raft did not commit the proposal.
    #[error("not committed: {reason}; retry (a retry cannot duplicate)")]
    NotCommitted { reason: String },
    /// What was awaited did not happen in time.
    #[error("{what} within {wait:?}")]
    TimedOut {
        what: String,
        wait: std::time::Duration,
    },
    #[error("no published checkpoint yet; retry shortly")]
    NoCheckpoint,
    /// This node has not applied what the call needs yet.
    #[error("{0}")]
    NotApplied(String),
    /// This node is repairing lost state (`repair.rs`) and will not vote or cosign.
    #[error("{0}")]
    Repairing(#[from] crate::repair::Repairing),
}

/// What went wrong inside this node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Stored data failed its checksum: never served.
    #[error("{0}; this node refuses to serve it")]
    Corrupt(StoreError),
    /// The storage engine failed: the node stops.
    #[error("{0}; this node stops")]
    EngineFailed(StoreError),
    #[error("{0}")]
    Store(StoreError),
    /// Anything else (an encoding that failed, a held value that does not parse).
    #[error("{0}")]
    Internal(String),
}

fn join(indexes: &[u64]) -> String {
    indexes
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn refusal_message(position: usize, refusal: &Refusal) -> String {
    match refusal {
        Refusal::Duplicate { index: Some(index) } => format!(
            "record {position} is already in the ledger at leaf {index}; nothing was appended"
        ),
        Refusal::Duplicate { index: None } => {
            format!("record {position} appears twice in the request; nothing was appended")
        }
        Refusal::Unauthorized(reason) => {
            format!("record {position}: {reason}; nothing was appended")
        }
        Refusal::Invalid(reason) => format!("record {position}: {reason}; nothing was appended"),
        Refusal::BadSignature { reason } => format!("{reason}; nothing was appended"),
    }
}

fn not_leader_message(node: &str, redirect: &Redirect) -> String {
    match redirect {
        Redirect::Leader {
            id,
            name,
            public_addr,
            ..
        } => format!(
            "this node ({node}) is not the leader; the leader is {name} (node {id}) at {public_addr}"
        ),
        Redirect::QuorumLost { others } => format!(
            "this node ({node}) has lost contact with a quorum and cannot commit writes; try \
             another node: {}",
            others.join(", ")
        ),
        Redirect::Unknown => format!(
            "this node ({node}) is not the leader and no leader is known yet; retry shortly"
        ),
    }
}

impl From<crate::checkpoint_wait::NotInTime> for ApiError {
    fn from(e: crate::checkpoint_wait::NotInTime) -> ApiError {
        RetryError::TimedOut {
            what: e.what,
            wait: e.wait,
        }
        .into()
    }
}

impl From<crate::checkpoint_wait::NotInTime> for Status {
    fn from(e: crate::checkpoint_wait::NotInTime) -> Status {
        ApiError::from(e).into_status()
    }
}

impl From<crate::snapshot_receiver::ReceiveError> for ApiError {
    fn from(e: crate::snapshot_receiver::ReceiveError) -> ApiError {
        use crate::snapshot_receiver::ReceiveError as E;
        match e {
            E::Store(s) => s.into(),
            e @ E::BadChunk(_) => ApiError::invalid("", e),
            e @ (E::NoSession | E::OutOfOrder { .. } | E::Short { .. }) => {
                CallerError::Precondition(e.to_string()).into()
            }
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::NoCheckpoint => RetryError::NoCheckpoint.into(),
            ReadError::Store(s) => NodeError::from(s).into(),
            e @ (ReadError::OutOfRange { .. }
            | ReadError::Proof(_)
            | ReadError::Unprovable { .. }
            | ReadError::NotCovered { .. }
            | ReadError::HistoryTooLong { .. }) => CallerError::Read(e).into(),
        }
    }
}

impl From<StoreError> for NodeError {
    fn from(s: StoreError) -> NodeError {
        match s {
            s @ StoreError::Corrupt { .. } => NodeError::Corrupt(s),
            StoreError::Kv(k) if k.is_engine_failure() => {
                NodeError::EngineFailed(StoreError::Kv(k))
            }
            s => NodeError::Store(s),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(s: StoreError) -> ApiError {
        NodeError::from(s).into()
    }
}

impl ApiError {
    /// An unacceptable request field: the message is `what` followed by `reason`.
    pub fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> ApiError {
        CallerError::InvalidArgument {
            what: what.into(),
            reason: reason.to_string(),
        }
        .into()
    }

    /// A failure inside this node.
    pub fn internal(reason: impl std::fmt::Display) -> ApiError {
        NodeError::Internal(reason.to_string()).into()
    }

    /// The status code and the machine-readable reason.
    pub fn code(&self) -> (Code, pb::ErrorReason) {
        use pb::ErrorReason as R;
        match self {
            ApiError::Caller(e) => match e {
                CallerError::NoRecords
                | CallerError::TooManyRecords { .. }
                | CallerError::RecordTooLong { .. }
                | CallerError::InvalidRecord { .. }
                | CallerError::WriterKeyLength { .. }
                | CallerError::InvalidArgument { .. } => (Code::InvalidArgument, R::InvalidRequest),
                CallerError::BadSignature { .. } => (Code::Unauthenticated, R::BadSignature),
                CallerError::Refused { refusal, .. } => match refusal {
                    Refusal::Duplicate { index: Some(_) } => (Code::AlreadyExists, R::Duplicate),
                    Refusal::Duplicate { index: None } | Refusal::Invalid { .. } => {
                        (Code::InvalidArgument, R::InvalidRequest)
                    }
                    Refusal::Unauthorized { .. } => (Code::PermissionDenied, R::PermissionDenied),
                    Refusal::BadSignature { .. } => (Code::InvalidArgument, R::BadSignature),
                },
                CallerError::AllDuplicates { .. } => (Code::AlreadyExists, R::Duplicate),
                CallerError::Read(ReadError::OutOfRange { .. }) => (Code::OutOfRange, R::NotFound),
                CallerError::Read(_) => (Code::FailedPrecondition, R::InvalidRequest),
                CallerError::NotAMember(_) | CallerError::NoCheckpointAt { .. } => {
                    (Code::NotFound, R::NotFound)
                }
                CallerError::Denied { .. } => (Code::PermissionDenied, R::PermissionDenied),
                CallerError::Precondition(_) => (Code::FailedPrecondition, R::InvalidRequest),
            },
            ApiError::Retry(e) => match e {
                RetryError::NotLeader {
                    redirect: Redirect::Leader { .. },
                    ..
                } => (Code::FailedPrecondition, R::NotLeader),
                RetryError::NotLeader {
                    redirect: Redirect::QuorumLost { .. },
                    ..
                } => (Code::Unavailable, R::QuorumLost),
                RetryError::NotLeader {
                    redirect: Redirect::Unknown,
                    ..
                } => (Code::Unavailable, R::NotLeader),
                RetryError::QueueFull { .. } => (Code::ResourceExhausted, R::Busy),
                RetryError::DiskSpace { .. } => (Code::ResourceExhausted, R::DiskSpace),
                RetryError::ShuttingDown | RetryError::NotCommitted { .. } => {
                    (Code::Unavailable, R::NotCommitted)
                }
                RetryError::TimedOut { .. } => (Code::DeadlineExceeded, R::NotReady),
                RetryError::NoCheckpoint | RetryError::NotApplied(_) => {
                    (Code::Unavailable, R::NotReady)
                }
                RetryError::Repairing(_) => (Code::FailedPrecondition, R::Repairing),
            },
            ApiError::Node(e) => match e {
                NodeError::Corrupt(_) | NodeError::EngineFailed(_) => (Code::DataLoss, R::DataLoss),
                NodeError::Store(_) | NodeError::Internal(_) => (Code::Internal, R::Internal),
            },
        }
    }

    /// The machine-readable part: the reason and, where there is one, the hint.
    pub fn details(&self) -> pb::ErrorDetails {
        let (_, reason) = self.code();
        let mut d = pb::ErrorDetails {
            reason: reason as i32,
            ..Default::default()
        };
        match self {
            ApiError::Retry(RetryError::NotLeader { redirect, .. }) => match redirect {
                Redirect::Leader {
                    public_addr,
                    cluster_addr,
                    ..
                } => {
                    d.leader_public_addr = public_addr.clone();
                    d.leader_cluster_addr = cluster_addr.clone();
                }
                Redirect::QuorumLost { others } => d.try_public_addrs = others.clone(),
                Redirect::Unknown => {}
            },
            ApiError::Caller(CallerError::AllDuplicates { indexes }) => {
                d.existing_leaf_indexes = indexes.clone();
            }
            ApiError::Caller(CallerError::Refused { position, refusal }) => {
                d.record_position = u32::try_from(*position).ok();
                if let Refusal::Duplicate { index: Some(index) } = refusal {
                    d.existing_leaf_indexes = vec![*index];
                }
            }
            ApiError::Caller(
                CallerError::RecordTooLong { position, .. }
                | CallerError::InvalidRecord { position, .. }
                | CallerError::WriterKeyLength { position, .. }
                | CallerError::BadSignature { position, .. },
            ) => d.record_position = u32::try_from(*position).ok(),
            _ => {}
        }
        d
    }

    /// The gRPC status: the one mapping from errors to codes (module comment).
    pub fn into_status(self) -> Status {
        let (code, _) = self.code();
        let details = self.details();
        let mut status = Status::with_details(
            code,
            self.to_string(),
            prost::bytes::Bytes::from(details.encode_to_vec()),
        );
        let mut set = |key: &'static str, value: &str| {
            if let Ok(v) = MetadataValue::try_from(value) {
                status.metadata_mut().insert(key, v);
            }
        };
        if !details.leader_public_addr.is_empty() {
            set(LEADER, &details.leader_public_addr);
        }
        if !details.leader_cluster_addr.is_empty() {
            set(LEADER_CLUSTER, &details.leader_cluster_addr);
        }
        if let ApiError::Retry(RetryError::NotLeader {
            redirect: Redirect::QuorumLost { others },
            ..
        }) = &self
        {
            set(TRY, &others.join(","));
        }
        if !details.existing_leaf_indexes.is_empty() {
            set(EXISTING, &join(&details.existing_leaf_indexes));
        }
        if matches!(self, ApiError::Retry(RetryError::DiskSpace { .. })) {
            set(
                stateledger_proto::metadata::REASON,
                stateledger_proto::metadata::REASON_DISK_SPACE,
            );
        }
        status
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        e.into_status()
    }
}

impl From<CallerError> for Status {
    fn from(e: CallerError) -> Status {
        ApiError::from(e).into_status()
    }
}

impl From<RetryError> for Status {
    fn from(e: RetryError) -> Status {
        ApiError::from(e).into_status()
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        ApiError::from(e).into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(s: &Status) -> pb::ErrorDetails {
        pb::ErrorDetails::decode(s.details()).expect("details decode")
    }

    #[test]
    fn a_redirect_carries_the_leader_in_the_details_and_the_metadata() {
        let s: Status = RetryError::NotLeader {
            node: "n2".into(),
            redirect: Redirect::Leader {
                id: 1,
                name: "n1".into(),
                public_addr: "127.0.0.1:7001".into(),
                cluster_addr: "127.0.0.1:8001".into(),
            },
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let d = details(&s);
        assert_eq!(d.reason(), pb::ErrorReason::NotLeader);
        assert_eq!(d.leader_public_addr, "127.0.0.1:7001");
        assert_eq!(d.leader_cluster_addr, "127.0.0.1:8001");
        assert_eq!(
            s.metadata().get(LEADER).and_then(|v| v.to_str().ok()),
            Some("127.0.0.1:7001")
        );
        assert!(s.message().contains("not the leader"), "{}", s.message());
    }

    #[test]
    fn no_known_leader_and_a_lost_quorum_are_unavailable_with_their_reasons() {
        let s: Status = RetryError::NotLeader {
            node: "n2".into(),
            redirect: Redirect::Unknown,
        }
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(details(&s).reason(), pb::ErrorReason::NotLeader);
        assert!(details(&s).leader_public_addr.is_empty());

        let s: Status = RetryError::NotLeader {
            node: "n1".into(),
            redirect: Redirect::QuorumLost {
                others: vec!["a:1".into(), "b:2".into()],
            },
        }
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(details(&s).reason(), pb::ErrorReason::QuorumLost);
        assert_eq!(details(&s).try_public_addrs, vec!["a:1", "b:2"]);
        assert_eq!(
            s.metadata().get(TRY).and_then(|v| v.to_str().ok()),
            Some("a:1,b:2")
        );
    }

    #[test]
    fn duplicates_carry_the_existing_leaves() {
        let s: Status = CallerError::AllDuplicates {
            indexes: vec![3, 4],
        }
        .into();
        assert_eq!(s.code(), Code::AlreadyExists);
        assert_eq!(details(&s).existing_leaf_indexes, vec![3, 4]);
        assert_eq!(
            s.metadata().get(EXISTING).and_then(|v| v.to_str().ok()),
            Some("3,4")
        );
        let s: Status = CallerError::Refused {
            position: 1,
            refusal: Refusal::Duplicate { index: Some(9) },
        }
        .into();
        assert_eq!(s.code(), Code::AlreadyExists);
        assert_eq!(details(&s).record_position, Some(1));
        assert_eq!(details(&s).existing_leaf_indexes, vec![9]);
    }

    #[test]
    fn a_full_disk_is_marked_so_clients_do_not_retry() {
        let s: Status = RetryError::DiskSpace {
            why: "node n1's disk is below its reserve".into(),
        }
        .into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(details(&s).reason(), pb::ErrorReason::DiskSpace);
        assert_eq!(
            s.metadata()
                .get(stateledger_proto::metadata::REASON)
                .and_then(|v| v.to_str().ok()),
            Some(stateledger_proto::metadata::REASON_DISK_SPACE)
        );
    }
}
