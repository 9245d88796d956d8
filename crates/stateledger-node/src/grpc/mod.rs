//! The gRPC services: the public ledger API and the cluster (Raft, cosigning, admin) API.

pub mod authz;
pub mod cluster_service;
pub mod ledger_service;

use stateledger_proto::metadata;
use tonic::metadata::MetadataValue;
use tonic::Status;

use crate::ledger::ReadError;
use crate::node::NodeShared;
use crate::store::StoreError;

/// FAILED_PRECONDITION naming the leader (in the message and the metadata) so the client follows.
pub fn not_leader(shared: &NodeShared) -> Status {
    match shared.leader() {
        // A node that has not yet received the membership knows the leader's id but not its
        // address: that is no redirect.
        Some((id, info)) if id != shared.id && !info.public_addr.is_empty() => {
            let mut status = Status::failed_precondition(format!(
                "this node ({}) is not the leader; the leader is {} (node {id}) at {}",
                shared.config.node.name, info.name, info.public_addr
            ));
            if let Ok(v) = MetadataValue::try_from(info.public_addr.as_str()) {
                status.metadata_mut().insert(metadata::LEADER, v);
            }
            if let Ok(v) = MetadataValue::try_from(info.raft_addr.as_str()) {
                status.metadata_mut().insert(metadata::LEADER_CLUSTER, v);
            }
            status
        }
        _ if shared.quorum_lease.is_lost() => {
            // CheckQuorum: this node leads in Raft but cannot commit; the others may have
            // elected someone else. Say where else to go.
            let others: Vec<String> = shared
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != shared.id)
                .map(|(_, n)| n.public_addr.clone())
                .filter(|a| !a.is_empty())
                .collect();
            let mut status = Status::unavailable(format!(
                "this node ({}) has lost contact with a quorum and cannot commit writes; \
                 try another node: {}",
                shared.config.node.name,
                others.join(", ")
            ));
            if let Ok(v) = MetadataValue::try_from(others.join(",")) {
                status.metadata_mut().insert(metadata::TRY, v);
            }
            status
        }
        _ => Status::unavailable(format!(
            "this node ({}) is not the leader and no leader is known yet; retry shortly",
            shared.config.node.name
        )),
    }
}

/// Maps a read failure to a status: corrupt data is DATA_LOSS (and never served).
pub fn read_status(e: ReadError) -> Status {
    match e {
        ReadError::OutOfRange { .. } => Status::out_of_range(e.to_string()),
        ReadError::Invalid(m) => Status::failed_precondition(m),
        ReadError::NoCheckpoint => {
            Status::unavailable("no published checkpoint yet; retry shortly")
        }
        ReadError::Store(s @ StoreError::Corrupt { .. }) => {
            Status::data_loss(format!("{s}; this node refuses to serve it"))
        }
        ReadError::Store(s @ StoreError::Kv(_)) if matches!(&s, StoreError::Kv(k) if k.is_engine_failure()) => {
            Status::data_loss(format!("{s}; this node stops"))
        }
        ReadError::Store(s) => Status::internal(s.to_string()),
    }
}
